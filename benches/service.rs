//! Argos as a service beside a peer (Hubot 14 on its shell adapter), measured side by side in
//! one run, so both columns share the machine's load. The binary under test is the release
//! `argos` (`--argos PATH`, default `<target>/release/argos`); this harness itself may be a dev
//! build, since it only spawns processes, writes their stdin and timestamps their stdout.
//!
//! - binary size: the file, and what `strip` would leave (symbols are not loaded at run time,
//!   so they cost disk, not memory).
//! - each subject's executable is dropped from the page cache and started once unmeasured
//!   first (see [`evict`]), so every figure below is of a warm start.
//! - console start-up to first reply, median of 5: from `spawn` to the first line of a
//!   `whoami` reply. `whoami` is written every millisecond until it is answered, because Hubot's
//!   shell adapter drops lines that arrive before its scripts are loaded (argos queues them).
//! - idle RSS of the console: VmRSS after the first reply and `--idle-secs` (3) of nothing, in
//!   each of the 5 start-ups (min–max), and its file-backed part (RssFile: the pages of the
//!   binary and libraries the kernel mapped, in 64 KiB windows around each page touched).
//! - round trip: one `whoami` at a time, `--round-trips` (2,000) after 200 warm-up commands:
//!   from writing the line to reading the reply's second line (`Roles: ...`). p50 and p99.
//! - throughput: `--commands` (5,000) lines written in one go, until the last reply; 3 rounds
//!   (min–max commands/s), and the CPU time the process used per 1,000 commands.
//! - idle RSS of `argos bot`: the real release binary against the fake Discord
//!   (`tests/it/support/fake_discord.rs`, in this process), connected (READY, one `!argos whoami`
//!   answered), then `--idle-secs` of nothing; VmRSS of the argos process, 3 start-ups.
//!
//! Hubot's answer is a tiny script with the same three lines as argos's `whoami` (who, roles,
//! grants); `scripts/compare-hubot` installs Hubot and writes that script, then runs this.
//! Argos runs its real dispatcher: rate limiter, grammar, permissions and an audit record in
//! SQLite (WAL, `synchronous=FULL`) per command, with the config's command budget lifted.
//!
//! Run: `scripts/compare-hubot`, or by hand `cargo bench --profile dev --bench service --
//! [--argos PATH] [--hubot DIR] [--commands N] [--round-trips N] [--idle-secs N]
//! [--state-dir DIR]` (`--state-dir /dev/shm` puts the console's database on a tmpfs, where
//! fsync is free: the difference is what the audit record's durable commit costs).
#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code, clippy::all)]
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::fake_discord::{FakeDiscord, FakeLimits, TestUser, ADMIN_ROLE, CHANNEL, GUILD_ID, TOKEN};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// The reply line every `whoami` answer has once, in both bots.
const MARKER: &str = "Roles: ";
const STARTS: usize = 5;
const BOT_STARTS: usize = 3;
const ROUNDS: usize = 3;
const WARM_UP: usize = 200;

struct Options {
    argos: PathBuf,
    hubot: Option<PathBuf>,
    commands: usize,
    round_trips: usize,
    idle: Duration,
    /// Where the argos console keeps its database (default: a temporary folder under /tmp).
    state: Option<PathBuf>,
}

fn options() -> Options {
    let debug_bin = PathBuf::from(env!("CARGO_BIN_EXE_argos"));
    let target = debug_bin.parent().and_then(Path::parent).expect("target dir");
    let mut o = Options {
        argos: target.join("release").join("argos"),
        hubot: None,
        commands: 5_000,
        round_trips: 2_000,
        idle: Duration::from_secs(3),
        state: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--argos" => o.argos = value().into(),
            "--hubot" => o.hubot = Some(value().into()),
            "--commands" => o.commands = value().parse().expect("--commands N"),
            "--round-trips" => o.round_trips = value().parse().expect("--round-trips N"),
            "--idle-secs" => o.idle = Duration::from_secs(value().parse().expect("--idle-secs N")),
            // E.g. a tmpfs (/dev/shm), where fsync costs nothing: the audit record's share.
            "--state-dir" => o.state = Some(value().into()),
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(o.argos.is_file(), "no argos binary at {}", o.argos.display());
    o
}

/// One field of /proc/PID/status, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_micros(ticks * 1_000_000 / hz.max(1))
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn range<T: PartialOrd + Copy>(v: &[T], show: impl Fn(T) -> String) -> String {
    let lo = v.iter().copied().fold(v[0], |a, b| if b < a { b } else { a });
    let hi = v.iter().copied().fold(v[0], |a, b| if b > a { b } else { a });
    if show(lo) == show(hi) {
        show(lo)
    } else {
        format!("{}–{}", show(lo), show(hi))
    }
}

/// How to start one console-like bot that answers `whoami` on stdin.
trait Subject {
    fn name(&self) -> &'static str;
    fn command(&self) -> Command;
    /// The executable whose pages the process maps (argos, or node).
    fn executable(&self) -> PathBuf;
}

/// Drops the file's pages from the page cache (clean pages only; nothing else is touched), so
/// each subject's binary is cached the way its own first start reads it, not the way `cp` or
/// the linker wrote it: the kernel maps cached pages in 64 KiB windows around each page a
/// process touches, so the file-backed RSS depends on what is cached (measured: 1–2 MiB apart
/// for the same binary right after a build).
fn evict(path: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(f) = std::fs::File::open(path) {
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

struct ArgosConsole {
    bin: PathBuf,
    config: PathBuf,
}

impl Subject for ArgosConsole {
    fn name(&self) -> &'static str {
        "argos console"
    }
    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--config").arg(&self.config).args(["console", "--user", "alice"]);
        c.env("ARGOS_LOG", "warn");
        c
    }
    fn executable(&self) -> PathBuf {
        self.bin.clone()
    }
}

struct Hubot {
    dir: PathBuf,
}

impl Subject for Hubot {
    fn name(&self) -> &'static str {
        "Hubot 14 (shell)"
    }
    fn command(&self) -> Command {
        let mut c = Command::new("node");
        // No HTTP listener: the argos console serves none either.
        c.arg(self.dir.join("node_modules/hubot/bin/hubot")).args([
            "--adapter",
            "Shell",
            "--disable-httpd",
            "--name",
            "hubot",
        ]);
        c.current_dir(&self.dir)
            .env("HUBOT_SHELL_USER_NAME", "alice")
            .env("HUBOT_LOG_LEVEL", "error");
        c
    }
    fn executable(&self) -> PathBuf {
        which_node()
    }
}

/// A running subject: its stdin, and the arrival times of its reply markers (stamped by a
/// reader task on this single-threaded runtime, so handing one over costs no thread wake-up).
struct Running {
    child: Child,
    pid: u32,
    /// `None` only while a throughput round's writer task holds it.
    stdin: Option<ChildStdin>,
    replies: mpsc::UnboundedReceiver<Instant>,
    started: Instant,
}

impl Running {
    fn spawn(s: &dyn Subject) -> Running {
        let mut cmd = s.command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {}: {e}", s.name()));
        let pid = child.id().expect("pid");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, replies) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut line = Vec::new();
            loop {
                line.clear();
                match stdout.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if line.windows(MARKER.len()).any(|w| w == MARKER.as_bytes())
                            && tx.send(Instant::now()).is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
        Running {
            child,
            pid,
            stdin: Some(stdin),
            replies,
            started,
        }
    }

    async fn write(&mut self, line: &[u8]) {
        self.stdin
            .as_mut()
            .expect("stdin")
            .write_all(line)
            .await
            .expect("write");
    }

    async fn reply(&mut self) -> Instant {
        tokio::time::timeout(Duration::from_secs(30), self.replies.recv())
            .await
            .expect("a reply within 30 s")
            .expect("the process is still answering")
    }

    /// Writes `whoami` every millisecond until the first reply; the start-up time.
    async fn first_reply(&mut self) -> Duration {
        let mut sent = 0usize;
        let first = loop {
            tokio::select! {
                r = self.replies.recv() => break r.expect("the process answers"),
                _ = tokio::time::sleep(Duration::from_millis(1)) => {
                    self.write(b"whoami\n").await;
                    sent += 1;
                    assert!(sent < 30_000, "no answer within 30 s");
                }
            }
        };
        // The probes queued meanwhile (argos answers all; Hubot dropped those before its
        // scripts loaded): let them drain, so they are not counted later.
        tokio::time::sleep(Duration::from_millis(300)).await;
        while self.replies.try_recv().is_ok() {}
        first - self.started
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

#[derive(Default)]
struct Figures {
    starts: Vec<Duration>,
    idle_kb: Vec<u64>,
    /// The file-backed part of each idle RSS (pages of the binary and libraries, shared with
    /// the page cache and any other process running them).
    idle_file_kb: Vec<u64>,
    p50: Duration,
    p99: Duration,
    /// Commands per second one at a time: the round trips over their total time.
    sequential_per_sec: f64,
    per_sec: Vec<f64>,
    cpu_per_1000: Vec<Duration>,
    loaded_kb: u64,
}

async fn measure(s: &dyn Subject, o: &Options) -> Figures {
    let mut f = Figures::default();
    // A cold start first, not measured: it reads the binary as a service's first start does.
    evict(&s.executable());
    let mut r = Running::spawn(s);
    r.first_reply().await;
    r.stop().await;
    for _ in 0..STARTS {
        let mut r = Running::spawn(s);
        f.starts.push(r.first_reply().await);
        tokio::time::sleep(o.idle).await;
        f.idle_kb.push(status_kb(r.pid, "VmRSS:"));
        f.idle_file_kb.push(status_kb(r.pid, "RssFile:"));
        r.stop().await;
    }
    let mut r = Running::spawn(s);
    r.first_reply().await;
    let mut times = Vec::with_capacity(o.round_trips);
    let mut loop_start = Instant::now();
    for i in 0..WARM_UP + o.round_trips {
        if i == WARM_UP {
            loop_start = Instant::now();
        }
        let t0 = Instant::now();
        r.write(b"whoami\n").await;
        let t1 = r.reply().await;
        if i >= WARM_UP {
            times.push(t1 - t0);
        }
    }
    f.sequential_per_sec = o.round_trips as f64 / loop_start.elapsed().as_secs_f64();
    times.sort();
    f.p50 = percentile(&times, 0.50);
    f.p99 = percentile(&times, 0.99);
    let batch = "whoami\n".repeat(o.commands);
    for _ in 0..ROUNDS {
        let cpu0 = cpu_time(r.pid);
        let t0 = Instant::now();
        // Written by a task of its own: the pipe fills long before the bot has answered all.
        let mut stdin = r.stdin.take().expect("stdin");
        let text = batch.clone();
        let writer = tokio::spawn(async move {
            stdin.write_all(text.as_bytes()).await.expect("write");
            stdin
        });
        let mut last = t0;
        for _ in 0..o.commands {
            last = r.reply().await;
        }
        r.stdin = Some(writer.await.expect("writer"));
        f.per_sec.push(o.commands as f64 / (last - t0).as_secs_f64());
        f.cpu_per_1000.push((cpu_time(r.pid) - cpu0) * 1000 / o.commands as u32);
    }
    f.loaded_kb = status_kb(r.pid, "VmRSS:");
    r.stop().await;
    f
}

/// The argos config for both the console and the bot: the sandbox's environments and
/// playbooks, AWS on an address nothing listens on (no AWS call is made), the command budget
/// lifted (the benchmark sends thousands a second as one user), default store and watch pacing.
fn argos_config(dir: &Path, state: &Path, discord: Option<&FakeDiscord>) -> PathBuf {
    let root = support::repo();
    let discord = match discord {
        Some(fake) => format!(
            r#"discord:
  enabled: true
  api_proxy: {url}
  guild_id: "{GUILD_ID}"
  message_content_intent: true
"#,
            url = fake.url()
        ),
        None => String::new(),
    };
    let yaml = format!(
        r#"paths:
  root: {root}
  state: {state}
aws:
  region: us-east-1
  endpoint_url: http://127.0.0.1:9
  local_credentials: true
ansible:
  command: .venv/bin/ansible-playbook
  playbooks: config/sandbox/playbooks
  connection: local
  address: private
  python_interpreter: .venv/bin/python
environments:
  sandbox: {{}}
  staging: {{}}
chat:
  commands_per_minute: 100000000
  command_burst: 100000000
{discord}permissions:
  roles:
    admins: {{ console_users: [alice], discord_roles: ["{ADMIN_ROLE}"] }}
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
"#,
        root = root.display(),
        state = state.join("state").display(),
    );
    let path = dir.join(if discord.is_empty() { "console.yaml" } else { "bot.yaml" });
    std::fs::write(&path, yaml).expect("write the config");
    path
}

/// `argos bot` on the fake Discord: VmRSS once connected and idle.
async fn bot_idle_kb(o: &Options) -> Vec<u64> {
    let mut out = Vec::new();
    for _ in 0..BOT_STARTS {
        let dir = tempfile::tempdir().expect("temp dir");
        let fake = FakeDiscord::start_with(FakeLimits::DISCORD).await;
        let config = argos_config(dir.path(), dir.path(), Some(&fake));
        support::set_test_secrets();
        let mut child = Command::new(&o.argos)
            .arg("--config")
            .arg(&config)
            .arg("bot")
            .env("DISCORD_TOKEN", TOKEN)
            .env("ARGOS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("argos bot starts");
        let pid = child.id().expect("pid");
        fake.wait_for("READY", |s| (s.ready_sent > 0).then_some(())).await;
        fake.push_message(CHANNEL, &TestUser::admin(), "!argos whoami");
        fake.expect_message(CHANNEL, MARKER).await;
        tokio::time::sleep(o.idle).await;
        out.push(status_kb(pid, "VmRSS:"));
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    out
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The size `strip` leaves, measured on a copy.
fn stripped_size(path: &Path) -> Option<u64> {
    let copy = std::env::temp_dir().join(format!("argos-stripped-{}", std::process::id()));
    std::fs::copy(path, &copy).ok()?;
    let ok = std::process::Command::new("strip").arg(&copy).status().ok()?.success();
    let size = file_size(&copy);
    let _ = std::fs::remove_file(&copy);
    ok.then_some(size)
}

fn du_bytes(path: &Path) -> u64 {
    let out = std::process::Command::new("du").arg("-sb").arg(path).output();
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = options();
    let dir = tempfile::tempdir().expect("temp dir");
    let state_parent = tempfile::tempdir_in(o.state.clone().unwrap_or_else(std::env::temp_dir)).expect("state dir");
    let console = ArgosConsole {
        bin: o.argos.clone(),
        config: argos_config(dir.path(), state_parent.path(), None),
    };
    eprintln!("argos: {}", o.argos.display());
    let argos = measure(&console, &o).await;
    let bot = bot_idle_kb(&o).await;
    let hubot = match &o.hubot {
        Some(d) => {
            eprintln!("hubot: {}", d.display());
            Some(measure(&Hubot { dir: d.clone() }, &o).await)
        }
        None => None,
    };

    let size = file_size(&o.argos);
    let stripped = stripped_size(&o.argos);
    let argos_size = match stripped {
        Some(s) if s < size => format!("{} ({} stripped)", mb(size), mb(s)),
        _ => format!("{} (stripped)", mb(size)),
    };
    let node = which_node();
    let hubot_size = o.hubot.as_ref().map(|d| {
        format!(
            "node {} + node_modules {}",
            mb(file_size(&node)),
            mb(du_bytes(&d.join("node_modules")))
        )
    });
    let row = |figure: &str, a: String, h: Option<String>| {
        println!("| {figure} | {a} | {} |", h.unwrap_or_else(|| "—".into()));
    };
    let hf = hubot.as_ref();
    println!();
    println!(
        "| figure | argos (release) | {} |",
        if hf.is_some() {
            "Hubot 14.1.0 (shell adapter)"
        } else {
            "(no peer)"
        }
    );
    println!("|---|---|---|");
    row("binary size", argos_size, hubot_size);
    let start = |f: &Figures| {
        let mut s = f.starts.clone();
        s.sort();
        format!("{} ms", ms(s[s.len() / 2]))
    };
    row(
        "console start-up to first reply (median of 5)",
        start(&argos),
        hf.map(start),
    );
    let idle = |f: &Figures| format!("{} MiB", range(&f.idle_kb, mib));
    row("console idle RSS (5 start-ups)", idle(&argos), hf.map(idle));
    let file = |f: &Figures| format!("{} MiB", range(&f.idle_file_kb, mib));
    row("… of which file-backed (RssFile)", file(&argos), hf.map(file));
    row(
        "`argos bot` idle RSS (fake Discord, 3 start-ups)",
        format!("{} MiB", range(&bot, mib)),
        None,
    );
    let rt = |f: &Figures| format!("p50 {} ms, p99 {} ms", ms(f.p50), ms(f.p99));
    row(
        &format!("`whoami` round trip, one at a time ({})", o.round_trips),
        rt(&argos),
        hf.map(rt),
    );
    let seq = |f: &Figures| format!("{:.0}/s", f.sequential_per_sec);
    row("`whoami` one at a time, commands/s", seq(&argos), hf.map(seq));
    let tp = |f: &Figures| format!("{}/s", range(&f.per_sec, |x| format!("{:.0}", x)));
    row(
        &format!("`whoami` throughput, {} piped ({ROUNDS} rounds)", o.commands),
        tp(&argos),
        hf.map(tp),
    );
    let cpu = |f: &Figures| {
        format!(
            "{} ms",
            range(&f.cpu_per_1000, |d| format!("{:.0}", d.as_secs_f64() * 1e3))
        )
    };
    row("CPU time per 1,000 commands", cpu(&argos), hf.map(cpu));
    let loaded = |f: &Figures| format!("{} MiB", mib(f.loaded_kb));
    row("RSS after the load", loaded(&argos), hf.map(loaded));
    if let Some(h) = hf {
        let piped =
            argos.per_sec.iter().cloned().fold(f64::INFINITY, f64::min) / h.per_sec.iter().cloned().fold(0.0, f64::max);
        println!();
        println!(
            "argos / Hubot: one at a time {:.2}×; piped {piped:.2}× (argos's slowest round over Hubot's fastest)",
            argos.sequential_per_sec / h.sequential_per_sec
        );
    }
}

fn which_node() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("node")).find(|p| p.is_file()))
        .unwrap_or_else(|| PathBuf::from("node"))
}
