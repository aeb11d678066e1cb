//! Bot replicas as real processes: several `argos bot` processes side by side, each with a
//! Discord session of its own on the fake Discord (`fake_discord::FakeDiscord::start_sharded`
//! and `add_session`) and all on one PostgreSQL database, for the replica tests
//! (`tests/replicas.rs`) and benchmarks.
//!
//! - [`replica_yaml`]: the config keys a replica needs (Discord through the fake, quick pacing,
//!   permissions granted to Discord user ids, no approvals for the jobs), to append to a
//!   [`TestProject`] (whose store lease is 1000 ms with a 200 ms heartbeat).
//! - [`write_replica_config`]: one config file per replica from the project's: its own
//!   `discord.api_proxy` (its fake session) and its own state folder (as on a host of its own).
//! - [`BotReplica::spawn`]: starts `argos --config FILE bot` with `ARGOS_DATABASE_URL`, the fake's
//!   token and `ARGOS_LOG` (no colours); stdout and stderr go to a log file ([`BotReplica::log`],
//!   [`BotReplica::wait_log`], [`BotReplica::wait_running`], [`BotReplica::wait_share`]); killed
//!   (SIGKILL) when dropped. [`BotReplica::kill9`], [`BotReplica::pause`] (SIGSTOP),
//!   [`BotReplica::resume`] (SIGCONT), [`BotReplica::terminate`] (SIGTERM and wait).
//!   [`BotReplica::owns`] tells whether a store owner id (`bot-<host>-<pid>-<start>`) is this
//!   process; [`BotReplica::run_processes`] lists the playbook processes it started (found by
//!   their `ARGOS_RUN_OWNER` marker).
//! - [`Gate`]: an `ansible.command` that runs the real `ansible-playbook`, but holds
//!   [`GATED_PLAYBOOK`] while the gate is closed, so a test can act while a job is certainly in
//!   the middle of a playbook.
//! - [`log_statements`], [`statement_params`]: PostgreSQL's statement log, to see which process
//!   tried which claim; [`pg_rows`]: a quick query as text.
//! - [`poll_until`]: waits for a condition checked by polling (the store, `/proc`, a log file).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::fake_discord::{TestUser, GUILD_ID, TOKEN};
use super::postgres::PgServer;
use super::TestProject;

/// `ARGOS_LOG` of the replicas: warnings, and argos's own info lines ("bot running").
pub const REPLICA_LOG: &str = "warn,argos=info";

/// The playbook a [`Gate`] holds while it is closed: commission's deploy, after the image and
/// the stack exist (its roles run in one `ansible-playbook`, so the gate holds the whole deploy,
/// before `knowledge.yml` too).
pub const GATED_PLAYBOOK: &str = "api.yml";

/// The config keys of a bot replica: Discord (through the fake; every replica's own
/// `api_proxy` is set by [`write_replica_config`]), the content intent, chat pacing for the
/// tests, `admins` (the [`TestUser`]s given) allowed everything everywhere, and no approval
/// needed for any job. `extra` is appended (more top-level keys, e.g. `schedules:`).
pub fn replica_yaml(admins: &[TestUser], content_intent: bool, extra: &str) -> String {
    let ids: Vec<String> = admins.iter().map(|u| format!("\"{}\"", u.id)).collect();
    format!(
        r#"
discord:
  enabled: true
  api_proxy: http://127.0.0.1:9
  guild_id: "{GUILD_ID}"
  message_content_intent: {content_intent}
chat:
  commands_per_minute: 6
  command_burst: 3
  edit_interval_ms: 200
  edit_burst: 5
  edit_refill_secs: 1
  shutdown_grace_secs: 2
permissions:
  roles:
    admins: {{ discord_users: [{ids}] }}
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
approvals:
  policies:
    - environments: ["*"]
      actions: ["*"]
      approvers: 0
{extra}"#,
        ids = ids.join(", ")
    )
}

/// Writes `<project>/argos-<name>.yaml`: the project's config with `discord.api_proxy` set to
/// `api_proxy` (the replica's session on the fake) and `paths.state` set to `state-<name>/`
/// (each replica keeps its logs and run folders apart, as on hosts of their own). The project
/// config must hold the keys of [`replica_yaml`].
pub fn write_replica_config(project: &TestProject, name: &str, api_proxy: &str) -> PathBuf {
    let text = std::fs::read_to_string(&project.config_path).expect("read the project config");
    let state = project.dir.path().join(format!("state-{name}"));
    let mut proxy = false;
    let mut state_set = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("  api_proxy: ") {
                proxy = true;
                format!("  api_proxy: {api_proxy}")
            } else if l.starts_with("  state: ") {
                state_set = true;
                format!("  state: {}", state.display())
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(
        proxy && state_set,
        "the project config has no discord.api_proxy or paths.state line"
    );
    let path = project.dir.path().join(format!("argos-{name}.yaml"));
    std::fs::write(&path, lines.join("\n") + "\n").expect("write the replica config");
    path
}

/// Prints the last `lines` lines of each replica's log (for a failing test or benchmark).
pub fn print_log_tails(replicas: &[BotReplica], lines: usize) {
    for r in replicas {
        let log = r.log();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        eprintln!(
            "--- replica {} (pid {}) log, last lines ---\n{}",
            r.name,
            r.pid,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

/// One `argos bot` process.
pub struct BotReplica {
    /// The test's name for it (also its fake Discord session name).
    pub name: String,
    pub pid: u32,
    /// stdout and stderr of the process.
    pub log_path: PathBuf,
    child: Child,
    paused: bool,
}

impl BotReplica {
    /// Starts `argos --config <config> bot` in `dir` with `ARGOS_DATABASE_URL=<database_url>`,
    /// `DISCORD_TOKEN` (the fake's token), [`REPLICA_LOG`] and the test secrets; its output goes
    /// to `<dir>/<name>.log`.
    pub fn spawn(name: &str, config: &Path, database_url: &str, dir: &Path) -> BotReplica {
        super::set_test_secrets();
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).expect("create the replica log");
        let err = log.try_clone().expect("clone the log file");
        let child = Command::new(env!("CARGO_BIN_EXE_argos"))
            .arg("--config")
            .arg(config)
            .arg("bot")
            .current_dir(dir)
            .env(argos::config::DATABASE_URL_ENV, database_url)
            .env("DISCORD_TOKEN", TOKEN)
            .env("ARGOS_LOG", REPLICA_LOG)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("argos bot starts");
        BotReplica {
            name: name.to_string(),
            pid: child.id(),
            log_path,
            child,
            paused: false,
        }
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits (polling its log) until the process wrote a line containing `needle`; fails the
    /// test with the log after `limit`, or at once if the process exited.
    pub async fn wait_log(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.log().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "replica {} exited ({status}) before logging {needle:?}:\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "replica {} did not log {needle:?} within {limit:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the bot is up: connected to Discord and past its first round of takeovers
    /// (`bot running` in its log).
    pub async fn wait_running(&mut self) {
        self.wait_log("bot running", Duration::from_secs(90)).await;
    }

    /// Waits until the replica has split its token's and account's budgets among `replicas`
    /// live replicas (it logs each change of its share).
    pub async fn wait_share(&mut self, replicas: usize) {
        self.wait_log(
            &format!("request budget shared replicas={replicas} "),
            Duration::from_secs(90),
        )
        .await;
    }

    /// Whether a store owner id (`bot-<host>-<pid>-<start>`) names this process.
    pub fn owns(&self, owner: &str) -> bool {
        owner_pid(owner) == Some(self.pid)
    }

    /// Still running (or paused), not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid);
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill9(&mut self) {
        if self.alive() {
            self.signal(libc::SIGKILL);
        }
        let _ = self.child.wait();
        self.paused = false;
    }

    /// SIGSTOP: the process stops at once, with everything it holds (its heartbeats stop, its
    /// playbook's processes run on).
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
    }

    /// SIGCONT after [`BotReplica::pause`].
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// The live processes this replica started for playbooks (the supervisor, ansible-playbook
    /// and whatever they started): every process whose environment has
    /// `ARGOS_RUN_OWNER=<pid>:...`. Returns (pid, command line).
    pub fn run_processes(&self) -> Vec<(u32, String)> {
        processes_with_env_prefix(&format!("ARGOS_RUN_OWNER={}:", self.pid))
    }
}

impl Drop for BotReplica {
    fn drop(&mut self) {
        if self.paused {
            // SAFETY: as in `signal`; a stopped process still dies of SIGKILL, but resume it
            // anyway so its children's death signals are not delayed.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGCONT) };
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: as in `signal`.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

/// The pid in a replica id `<kind>-<host>-<pid>-<start hex>` (the host may contain `-`).
pub fn owner_pid(owner: &str) -> Option<u32> {
    let mut parts = owner.rsplitn(3, '-');
    let _start = parts.next()?;
    parts.next()?.parse().ok()
}

/// Live processes (not zombies) whose environment has a variable starting with `prefix`
/// (`NAME=value...`): (pid, command line).
pub fn processes_with_env_prefix(prefix: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|v| v.starts_with(prefix.as_bytes())) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X");
        if zombie {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| {
                c.split(|b| *b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        out.push((pid, cmd.trim().to_string()));
    }
    out
}

/// Polls `check` every 20 ms until it returns `Some`; fails the test naming `what` after
/// `limit`.
pub async fn poll_until<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A stand-in for `ansible-playbook` that holds [`GATED_PLAYBOOK`] while the gate is closed.
///
/// It is a Python script (so argos runs it under its supervisor like the real one) that, when
/// asked to run the gated playbook, creates `reached-<pid>` in the gate folder and waits while
/// the `closed` file exists, then execs the project's `.venv/bin/ansible-playbook` with the
/// same arguments. Every other playbook runs at once. Put [`Gate::command`] in
/// `ansible.command` ([`Gate::install`]).
pub struct Gate {
    pub dir: PathBuf,
}

impl Gate {
    /// Writes the script into `<dir>/gate/`; the gate starts closed.
    pub fn new(dir: &Path) -> Gate {
        use std::os::unix::fs::PermissionsExt;
        let gate = Gate { dir: dir.join("gate") };
        std::fs::create_dir_all(&gate.dir).expect("gate folder");
        let repo = super::repo();
        let script = format!(
            r#"#!{python}
# tests/it/support/replicas.rs Gate: ansible-playbook, holding {gated} while the gate is closed.
import os, sys, time
gate = {dir:?}
if any(a.endswith("/{gated}") for a in sys.argv[1:]):
    open(os.path.join(gate, "reached-%d" % os.getpid()), "w").close()
    while os.path.exists(os.path.join(gate, "closed")):
        time.sleep(0.05)
real = {real:?}
os.execv(real, [real] + sys.argv[1:])
"#,
            python = repo.join(".venv/bin/python").display(),
            gated = GATED_PLAYBOOK,
            dir = gate.dir.display().to_string(),
            real = repo.join(".venv/bin/ansible-playbook").display().to_string(),
        );
        let path = gate.command();
        std::fs::write(&path, script).expect("write the gate script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod the gate script");
        gate.close();
        gate
    }

    /// The script's path, for `ansible.command`.
    pub fn command(&self) -> PathBuf {
        self.dir.join("ansible-playbook-gate")
    }

    /// Points the project's `ansible.command` at the gate (before the replica configs are
    /// written from it).
    pub fn install(&self, project: &TestProject) {
        let text = std::fs::read_to_string(&project.config_path).expect("read the project config");
        let old = "  command: .venv/bin/ansible-playbook";
        assert!(text.contains(old), "the project config has no ansible.command line");
        let text = text.replace(old, &format!("  command: {}", self.command().display()));
        std::fs::write(&project.config_path, text).expect("write the project config");
    }

    pub fn close(&self) {
        std::fs::write(self.dir.join("closed"), b"").expect("close the gate");
    }

    pub fn open(&self) {
        let _ = std::fs::remove_file(self.dir.join("closed"));
    }

    /// The pids of the gated playbook runs that reached the gate so far.
    pub fn reached(&self) -> Vec<u32> {
        std::fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.strip_prefix("reached-")?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Runs `sql` (simple query protocol, several statements run as one transaction) on `url` and returns every
/// row's columns as text (`NULL` as `None`). Blocking; runs on a helper thread with its own
/// runtime, so it works from any test.
pub fn pg_rows(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect for {sql}: {e}"));
            let conn = tokio::spawn(conn);
            let messages = client.simple_query(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            drop(client);
            let _ = conn.await;
            messages
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                    }
                    _ => None,
                })
                .collect()
        })
    })
    .join()
    .expect("query thread")
}

/// Turns on PostgreSQL's statement log on `server` (`log_statement = all`, every line prefixed
/// with the backend's pid in brackets), so [`statement_params`] can tell which statements ran
/// with which parameters. For a private server ([`PgServer::start`]); it logs every statement.
pub fn log_statements(server: &PgServer) {
    // One statement per call: ALTER SYSTEM cannot run inside the implicit transaction of a
    // multi-statement query.
    for sql in [
        "ALTER SYSTEM SET log_statement = 'all'",
        "ALTER SYSTEM SET log_line_prefix = '%m [%p] '",
        "SELECT pg_reload_conf()",
    ] {
        pg_rows(&server.url("postgres"), sql);
    }
}

/// From a server log with [`log_statements`] on: the parameter lists (`$1 = 'a', $2 = 'b'`) of
/// every executed statement whose text contains `needle`, in log order.
pub fn statement_params(log: &str, needle: &str) -> Vec<String> {
    // A statement spans lines (continuations start with a tab); its parameters are on a later
    // `DETAIL:  parameters:` line of the same backend.
    const DETAIL: &str = "DETAIL:  parameters: ";
    let backend = |line: &str| -> Option<String> {
        let start = line.find(" [")? + 2;
        let end = line[start..].find(']')? + start;
        Some(line[start..end].to_string())
    };
    let lines: Vec<&str> = log.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.contains("LOG:  execute ") {
            let mut text = line.to_string();
            let mut j = i + 1;
            while j < lines.len() && lines[j].starts_with('\t') {
                text.push_str(lines[j]);
                j += 1;
            }
            if text.contains(needle) {
                let pid = backend(line);
                let params = lines[j..]
                    .iter()
                    .find(|l| l.contains(DETAIL) && backend(l) == pid)
                    .and_then(|l| l.split(DETAIL).nth(1))
                    .unwrap_or("")
                    .to_string();
                out.push(params);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}
