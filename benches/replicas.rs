//! Replicas benchmark: real `argos bot` processes side by side on one PostgreSQL database, each
//! with a gateway session of its own on one fake Discord that delivers every event to every
//! session (`FakeDiscord::start_sharded`), AWS on the scripted fake. Each phase runs in its own
//! child process and prints `RESULT key\tvalue` lines; the figures are printed as a table.
//!
//! - `takeover` (`replicas/takeover.rs`): 2 replicas with the default lease (10 s, heartbeat
//!   2 s). A decommission whose stack delete is scripted to take 10 minutes; kill -9 of the
//!   replica that owns it; the time from the kill until the other replica owns the job in the
//!   store and has edited the same status message ("picking it up again"). Then the job is
//!   cancelled and a fresh replica started, so every trial starts with two. Target p95 < 20 s.
//! - `duplicates` (`replicas/duplicates.rs`): 3 replicas, 1,000 `!argos whoami` from 1,000
//!   users in 200 channels, in 10 waves; answers per command (target: exactly one each), 429s,
//!   and the split of the answers between the replicas.
//! - `ack` (`replicas/ack.rs`): slash-command acknowledgement (push to the deferral callback the
//!   fake records) for 100 users at once, through 1 replica and through 3. Target: 3 replicas
//!   within 10 ms of 1 at p99.
//!
//! Run: `cargo bench --profile dev --bench replicas` (or `-- --phase takeover|duplicates|ack`).
//! `ARGOS_BENCH_TRIALS=N` changes the number of takeover trials (default 20);
//! `ARGOS_BENCH_PG_LOG=FILE` keeps the `ack` phase's PostgreSQL log (every statement, timed).
#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code, clippy::all)]
mod support;

#[path = "replicas/ack.rs"]
mod ack;
#[path = "replicas/duplicates.rs"]
mod duplicates;
#[path = "replicas/takeover.rs"]
mod takeover;

use std::process::Command;
use std::time::{Duration, Instant};

use argos::store::Store;
use support::fake_discord::*;
use support::replicas::*;
use support::TestProject;

/// How long any one wait may take before the phase fails.
const LONG: Duration = Duration::from_secs(120);
/// The channels of the benchmark (one per trial, per user, ...).
const CHANNEL_BASE: u64 = 1_700_000_000_000_000_000;
/// The lease lines of the TestProject config, and the defaults they are rewritten to.
const TEST_LEASE: &str = "  lease_ms: 1000\n  heartbeat_ms: 200\n";
const DEFAULT_LEASE: &str = "  lease_ms: 10000\n  heartbeat_ms: 2000\n";

fn result(key: &str, value: impl std::fmt::Display) {
    println!("RESULT {key}\t{value}");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// "p50 x / p95 y / max z" of some durations (sorted here), each shown with `show`.
fn spread(v: &mut [Duration], high: f64, show: fn(Duration) -> String) -> String {
    v.sort();
    format!(
        "p50 {} / p{} {} / max {} (n={})",
        show(percentile(v, 0.50)),
        (high * 100.0).round(),
        show(percentile(v, high)),
        show(v.last().copied().unwrap_or_default()),
        v.len()
    )
}

/// A pseudo-random number in `0..n` (no rand crate in the tree; good enough for jitter).
fn jitter(n: u64, salt: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x % n.max(1)
}

/// Rewrites one line (or block) of the generated project config.
fn patch(project: &TestProject, from: &str, to: &str) {
    let yaml = std::fs::read_to_string(&project.config_path).expect("config");
    assert!(yaml.contains(from), "{from:?} not in the project config");
    std::fs::write(&project.config_path, yaml.replacen(from, to, 1)).expect("write config");
}

/// The fake Discord, the project, the database and the live replicas.
struct Cluster {
    discord: FakeDiscord,
    project: TestProject,
    db_url: String,
    /// The benchmark's own connection to the replicas' database.
    store: Store,
    replicas: Vec<BotReplica>,
    /// Replicas started so far (names `r1`, `r2`, ...).
    started: usize,
}

impl Cluster {
    /// Starts `n` replicas at once on a new fake Discord (Discord's limits) and waits until each
    /// is running and shares the token's budget with the others. `edits` rewrite lines of the
    /// project config (from `replica_yaml(admins, true, "")`) before the replica configs are
    /// written.
    async fn start(
        aws_endpoint: &str,
        db_url: String,
        n: usize,
        admins: &[TestUser],
        edits: &[(&str, &str)],
    ) -> Cluster {
        let discord = FakeDiscord::start_sharded(FakeLimits::DISCORD).await;
        let project = TestProject::new(aws_endpoint, &replica_yaml(admins, true, ""));
        for (from, to) in edits {
            patch(&project, from, to);
        }
        let store = {
            let url = db_url.clone();
            tokio::task::spawn_blocking(move || Store::connect(&url))
                .await
                .unwrap()
                .expect("the benchmark connects to the replicas' database")
        };
        let mut c = Cluster {
            discord,
            project,
            db_url,
            store,
            replicas: Vec::new(),
            started: 0,
        };
        for _ in 0..n {
            c.spawn().await;
        }
        let names: Vec<String> = c.replicas.iter().map(|r| r.name.clone()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        c.discord.wait_sessions_ready(&names).await;
        for r in &mut c.replicas {
            r.wait_running().await;
        }
        c.wait_share().await;
        c
    }

    /// Starts one more replica (not waiting for it); returns its index.
    async fn spawn(&mut self) -> usize {
        self.started += 1;
        let name = format!("r{}", self.started);
        let url = self.discord.add_session(&name).await;
        let config = write_replica_config(&self.project, &name, &url);
        self.replicas
            .push(BotReplica::spawn(&name, &config, &self.db_url, self.project.dir.path()));
        self.replicas.len() - 1
    }

    /// Waits until every live replica splits the token's budget among all of them.
    async fn wait_share(&mut self) {
        let n = self.replicas.len();
        if n > 1 {
            for r in &mut self.replicas {
                r.wait_share(n).await;
            }
        }
    }

    /// The index of the replica a store owner id names.
    fn index_of(&self, owner: &str) -> Option<usize> {
        self.replicas.iter().position(|r| r.owns(owner))
    }

    /// Lines containing `needle` in all the replicas' logs.
    fn log_lines(&self, needle: &str) -> usize {
        self.replicas
            .iter()
            .map(|r| r.log().lines().filter(|l| l.contains(needle)).count())
            .sum()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tails(&self.replicas, 40);
        }
        // The replicas go first (SIGKILL), before the fake Discord and the project folder.
        self.replicas.clear();
    }
}

// ---------------------------------------------------------------------------------------------

fn run_phase(phase: &str) {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match phase {
            "takeover" => takeover::run().await,
            "duplicates" => duplicates::run().await,
            "ack" => ack::run().await,
            other => panic!("unknown phase {other:?} (takeover, duplicates, ack)"),
        }
    });
    rt.shutdown_background();
}

const PHASES: [&str; 3] = ["takeover", "duplicates", "ack"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--phase") {
        run_phase(args.get(i + 1).map(String::as_str).unwrap_or(""));
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut failed = Vec::new();
    for phase in PHASES {
        let started = Instant::now();
        eprintln!("phase {phase} ...");
        // Progress (one line per takeover trial) and a failure's details go straight to stderr.
        let out = Command::new(&exe)
            .args(["--phase", phase])
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run phase");
        // The rows a failed phase printed before it failed are kept.
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.strip_prefix("RESULT ").and_then(|l| l.split_once('\t')) {
                rows.push((k.to_string(), v.to_string()));
            }
        }
        let took = format!("{:.1} s", started.elapsed().as_secs_f64());
        if out.status.success() {
            rows.push((format!("({phase} took)"), took));
        } else {
            eprintln!("phase {phase} failed ({})", out.status);
            rows.push((format!("({phase} FAILED after)"), format!("{took}, {}", out.status)));
            failed.push(phase);
        }
    }
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    println!("\n{:<width$}  value", "replicas benchmark");
    println!("{}", "-".repeat(width + 40));
    for (k, v) in rows {
        println!("{k:<width$}  {v}");
    }
    println!(
        "\ntargets: takeover p95 < 20 s (default lease 10 s, heartbeat 2 s); 0 duplicate answers; ack p99 with 3 replicas within 10 ms of 1"
    );
    if !failed.is_empty() {
        eprintln!("failed phases: {failed:?}");
        std::process::exit(1);
    }
}
