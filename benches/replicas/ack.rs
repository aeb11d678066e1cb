//! `ack`: how long a slash command waits for its acknowledgement, through 1 replica and through
//! 3 (which all see the interaction and race to claim it in PostgreSQL; the winner defers).
//!
//! Per setup: a fresh database and fake Discord, the replicas started, a warm-up of 10 slash
//! commands, then 5 rounds of 100 users at once (`/argos command:whoami`, each user in a
//! channel of its own, 500 distinct users so no per-user budget plays a part). Both setups
//! live side by side and take turns round by round, 1 s apart. Latency = from
//! just before the fake pushes INTERACTION_CREATE to the fake receiving the deferral callback
//! (type 5). Interaction endpoints are outside Discord's global limit (the adapter and the fake
//! both exempt them). The whoami answer (the edit of the deferred response) is timed too.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::fake_aws::FakeAws;
use crate::support::fake_discord::*;
use crate::support::postgres::PgServer;
use crate::support::replicas::pg_rows;

use super::*;

const USERS: usize = 100;
const ROUNDS: usize = 5;
const WARM_UP: u32 = 10;

/// What one setup measured.
struct Measured {
    acks: Vec<Duration>,
    /// Push to the event written to the acknowledging replica's gateway socket, and from there
    /// to the deferral.
    written: Vec<Duration>,
    handled: Vec<Duration>,
    answers: Vec<Duration>,
    round_p99: Vec<Duration>,
    split: BTreeMap<String, usize>,
    /// Interactions acknowledged more than once (the fake refuses the second).
    double: usize,
    /// Callbacks that were not a deferral.
    not_deferred: usize,
    limited: u32,
    startup: Duration,
    /// CPU time all the replicas used per round, in seconds.
    cpu: Vec<f64>,
    /// The replicas' database (for its lines in the server log).
    db: String,
}

/// CPU time (user + system) a process used so far, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|i| stat[i + 1..].split_whitespace().collect())
        .unwrap_or_default();
    // After the command name: state is field 3, utime 14, stime 15.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / hz
}

/// The durations PostgreSQL logged for executing the claim insert in database `db`.
fn claim_durations(log: &str, db: &str) -> Vec<Duration> {
    let tag = format!("] {db} ");
    log.lines()
        .filter(|l| l.contains(&tag) && l.contains("INSERT INTO event_claims") && l.contains(" execute "))
        .filter_map(|l| {
            let rest = &l[l.find("duration: ")? + 10..];
            let ms: f64 = rest[..rest.find(" ms")?].parse().ok()?;
            Some(Duration::from_secs_f64(ms / 1000.0))
        })
        .collect()
}

/// `n` slash commands at once; waits for every answer; (interaction id, pushed at).
async fn burst(c: &Cluster, users: &[TestUser]) -> Vec<(String, Instant)> {
    let mut pushed = Vec::with_capacity(users.len());
    for (i, u) in users.iter().enumerate() {
        let at = Instant::now();
        let id = c.discord.push_slash(CHANNEL_BASE + i as u64, u, "whoami", "", "");
        pushed.push((id, at));
    }
    c.discord
        .wait_for_within("every answer of the burst", LONG, |s| {
            pushed
                .iter()
                .all(|(id, _)| {
                    s.sent
                        .iter()
                        .any(|m| m.kind == SentKind::InteractionEdit && m.interaction.as_deref() == Some(id.as_str()))
                })
                .then_some(())
        })
        .await;
    pushed
}

/// One setup: its cluster (and the fake AWS it points at) and what it measured so far.
struct Setup {
    _aws: FakeAws,
    c: Cluster,
    m: Measured,
}

async fn setup(pg: &PgServer, replicas: usize) -> Setup {
    let aws = FakeAws::start().await;
    let started = Instant::now();
    let url = pg.new_database();
    let db = url.rsplit('/').next().unwrap_or_default().to_string();
    let c = Cluster::start(&aws.endpoint_url(), url, replicas, &[TestUser::admin()], &[]).await;
    let startup = started.elapsed();
    let warm: Vec<TestUser> = (0..WARM_UP).map(|i| TestUser::numbered(9000 + i)).collect();
    burst(&c, &warm).await;
    let m = Measured {
        acks: Vec::new(),
        written: Vec::new(),
        handled: Vec::new(),
        answers: Vec::new(),
        round_p99: Vec::new(),
        split: BTreeMap::new(),
        double: 0,
        not_deferred: 0,
        limited: 0,
        startup,
        cpu: Vec::new(),
        db,
    };
    Setup { _aws: aws, c, m }
}

/// Round `r`: 100 new users at once through this setup.
async fn round(s: &mut Setup, r: usize) {
    let (c, m) = (&s.c, &mut s.m);
    let users: Vec<TestUser> = (0..USERS).map(|i| TestUser::numbered((r * USERS + i) as u32)).collect();
    let cpu = || c.replicas.iter().map(|r| cpu_secs(r.pid)).sum::<f64>();
    let before = cpu();
    let pushed = burst(c, &users).await;
    m.cpu.push(cpu() - before);
    let (callbacks, sent, deliveries) = c
        .discord
        .with_state(|s| (s.callbacks.clone(), s.sent.clone(), s.deliveries.clone()));
    let mut round = Vec::new();
    for (id, at) in &pushed {
        let cbs: Vec<&Callback> = callbacks.iter().filter(|cb| &cb.interaction_id == id).collect();
        m.double += cbs.len().saturating_sub(1);
        let Some(cb) = cbs.first() else { continue };
        if cb.kind != 5 {
            m.not_deferred += 1;
        }
        round.push(cb.at.duration_since(*at));
        if let Some(d) = deliveries.iter().find(|d| &d.id == id && d.session == cb.session) {
            m.written.push(d.at.duration_since(*at));
            m.handled.push(cb.at.duration_since(d.at));
        }
        *m.split
            .entry(cb.session.clone().unwrap_or_else(|| "?".into()))
            .or_default() += 1;
        if let Some(a) = sent
            .iter()
            .find(|s| s.kind == SentKind::InteractionEdit && s.interaction.as_deref() == Some(id.as_str()))
        {
            m.answers.push(a.at.duration_since(*at));
        }
    }
    round.sort();
    m.round_p99.push(percentile(&round, 0.99));
    m.acks.extend(round);
    m.limited = c.discord.rate_limited();
}

pub async fn run() {
    let pg = PgServer::start();
    // Every statement's duration in the server log, with the database's name.
    for sql in [
        "ALTER SYSTEM SET log_min_duration_statement = 0",
        "ALTER SYSTEM SET log_line_prefix = '%m [%p] %d '",
        "SELECT pg_reload_conf()",
    ] {
        pg_rows(&pg.url("postgres"), sql);
    }
    // Both setups run side by side and take turns, so a change in the machine's load (other
    // builds, other tests) weighs on both alike.
    let mut one = setup(&pg, 1).await;
    let mut three = setup(&pg, 3).await;
    for r in 0..ROUNDS {
        for s in [&mut one, &mut three] {
            tokio::time::sleep(Duration::from_secs(1)).await;
            round(s, r).await;
        }
    }
    let (mut one, mut three) = (one.m, three.m);
    one.acks.sort();
    three.acks.sort();
    let log = pg.log();
    if let Some(path) = std::env::var_os("ARGOS_BENCH_PG_LOG") {
        let _ = std::fs::write(path, &log);
    }
    for (label, m) in [("1 replica", &one), ("3 replicas", &three)] {
        let (mut answers, mut written, mut handled) = (m.answers.clone(), m.written.clone(), m.handled.clone());
        result(
            &format!("ack, 100 users at once, {label}: p50"),
            ms(percentile(&m.acks, 0.50)),
        );
        result(
            &format!("ack, 100 users at once, {label}: p99"),
            ms(percentile(&m.acks, 0.99)),
        );
        result(
            &format!("ack, 100 users at once, {label}: max"),
            ms(m.acks.last().copied().unwrap_or_default()),
        );
        result(
            &format!("ack,   {label}: p99 of each round of 100"),
            m.round_p99.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", "),
        );
        result(
            &format!("ack,   {label}: samples, acks per replica"),
            format!(
                "{} ({})",
                m.acks.len(),
                m.split
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        result(
            &format!("ack,   {label}: push -> event written to the acking replica's socket"),
            spread(&mut written, 0.99, ms),
        );
        result(
            &format!("ack,   {label}: written -> deferral received (replica: decode, claim, defer)"),
            spread(&mut handled, 0.99, ms),
        );
        let mut claims = claim_durations(&log, &m.db);
        result(
            &format!("ack,   {label}: claim INSERT, as PostgreSQL timed it"),
            spread(&mut claims, 0.99, us),
        );
        result(
            &format!("ack,   {label}: CPU of the replicas per round of 100"),
            m.cpu.iter().map(|c| format!("{c:.2} s")).collect::<Vec<_>>().join(", "),
        );
        result(
            &format!("ack,   {label}: whoami answer (deferred response edited)"),
            spread(&mut answers, 0.99, ms),
        );
        result(
            &format!("ack,   {label}: double acks / not deferred / 429s"),
            format!("{} / {} / {}", m.double, m.not_deferred, m.limited),
        );
        result(&format!("ack,   {label}: started and running after"), secs(m.startup));
    }
    let d50 = percentile(&three.acks, 0.50).as_secs_f64() - percentile(&one.acks, 0.50).as_secs_f64();
    let d99 = percentile(&three.acks, 0.99).as_secs_f64() - percentile(&one.acks, 0.99).as_secs_f64();
    result(
        "ack: 3 replicas minus 1, p50 / p99",
        format!("{:+.1} ms / {:+.1} ms", d50 * 1000.0, d99 * 1000.0),
    );
}
