//! Runs `ansible-playbook` for real: a generated inventory, extra variables from a file (never
//! on the command line, where `ps` would show secrets), our JSON-lines stdout callback for
//! per-task events, a timeout, and a cancel. Every line is redacted before it goes anywhere.
//! The run's processes die with the run and with argos, `kill -9` included ([`supervise`]);
//! [`sweep_orphans`] cleans up after an argos that died anyway ([`reaper`]).
//! (Linux only: death signals, subreapers and `/proc`, where the bot runs.)

pub mod inventory;
mod procfs;
pub mod reaper;
pub mod ssh;
pub mod supervise;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

pub use reaper::{new_run_dir, runs_dir, sweep_orphans, SweepReport, SweptProcess};
use supervise::RunGuard;

use crate::error::{Error, Result};
use crate::progress::{HostStatus, PlaybookEvent, Progress, ProgressTx};
use crate::redact::Redactor;

/// The stdout callback plugin, shipped inside the binary so any working directory works.
pub const CALLBACK_PLUGIN: &str = include_str!("argos_jsonl.py");
const CALLBACK_NAME: &str = "argos_jsonl";

/// The environment variable naming a process's run folder; every process of a run has it.
pub const ENV_RUN_DIR: &str = "ARGOS_RUN_DIR";
/// The environment variable naming the argos process that started the run, `<pid>:<start>`
/// (start: field 22 of `/proc/<pid>/stat`); every process of a run has it.
pub const ENV_RUN_OWNER: &str = "ARGOS_RUN_OWNER";

/// One `ansible-playbook` run: one role's playbook, and the playbooks of the roles that
/// follow it in the same run (`then`).
#[derive(Debug, Clone)]
pub struct PlaybookRun {
    pub command: PathBuf,
    pub playbook: PathBuf,
    /// The role the playbook configures (for progress events).
    pub role: String,
    /// More roles, run after this one by the same `ansible-playbook` (one start of Ansible
    /// for a deploy instead of one per role), each only if every role before it succeeded.
    /// The inventory holds every role's hosts, each role in the group of its name.
    pub then: Vec<RolePlaybook>,
    pub inventory_json: String,
    pub extra_vars: BTreeMap<String, String>,
    pub private_key: Option<PathBuf>,
    /// Host keys and connect timeout, for hosts reached over SSH.
    pub ssh: ssh::SshOptions,
    pub timeout: Duration,
    /// A private directory for this run: inventory, vars, plugin, Ansible's temp files.
    /// Created by [`run`] and removed when the run ends; the engine uses [`new_run_dir`].
    pub workdir: PathBuf,
    /// Where the redacted output is appended, if anywhere.
    pub log: Option<PathBuf>,
}

/// A role and the playbook that configures it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePlaybook {
    pub role: String,
    pub playbook: PathBuf,
}

/// What a finished run reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaybookReport {
    pub tasks: usize,
    pub changed: usize,
    pub hosts: Vec<String>,
}

/// The events our callback prints, one JSON object a line.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum CallbackEvent {
    PlaybookStart {
        playbook: String,
    },
    /// A role failed, and the run ended before the next playbook.
    Stopped {},
    PlayStart {},
    TaskStart {
        task: String,
    },
    HostOk {
        task: String,
        host: String,
        changed: bool,
        msg: Option<serde_json::Value>,
    },
    HostFailed {
        task: String,
        host: String,
        msg: Option<serde_json::Value>,
        ignored: bool,
    },
    HostUnreachable {
        task: String,
        host: String,
        msg: Option<serde_json::Value>,
    },
    HostSkipped {
        task: String,
        host: String,
    },
    Warning {
        msg: Option<serde_json::Value>,
    },
    Stats {},
}

fn text(v: &Option<serde_json::Value>) -> Option<String> {
    match v {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// Runs the playbooks of a run to its end, emitting progress, and reports the run as a whole;
/// a failed task becomes `Error::Playbook("task T failed on host H: message")`.
///
/// `run.workdir` is created (mode 0700, with an owner file, see [`reaper`]) and removed when
/// the run ends, however it ends: success, failure, timeout, cancel, or this future dropped
/// half-way. No process of the run outlives it, nor argos (see [`supervise`]). A timeout or a
/// cancel is reported only once the process tree is gone (or after a bounded wait of a few
/// seconds if something refuses to die).
pub async fn run(
    run: &PlaybookRun,
    redactor: &Redactor,
    progress: &ProgressTx,
    cancel: &CancellationToken,
) -> Result<PlaybookReport> {
    let roles = run_roles(run, redactor, progress, cancel).await?;
    let mut whole = PlaybookReport::default();
    for (_, report) in roles {
        whole.tasks += report.tasks;
        whole.changed += report.changed;
        whole.hosts.extend(report.hosts);
    }
    whole.hosts.sort();
    whole.hosts.dedup();
    Ok(whole)
}

/// Like [`run`], with a report per role, in the order they ran.
pub async fn run_roles(
    run: &PlaybookRun,
    redactor: &Redactor,
    progress: &ProgressTx,
    cancel: &CancellationToken,
) -> Result<Vec<(String, PlaybookReport)>> {
    // Before anything starts: a key ssh would ignore fails every host with a misleading
    // "Permission denied", so it is refused here with the remedy.
    if let Some(key) = &run.private_key {
        ssh::check_private_key(key)?;
    }
    if let Some(file) = &run.ssh.known_hosts {
        ssh::prepare_known_hosts(file)?;
    }
    let dir = reaper::create_run_dir(&run.workdir)?;
    let mut guard = RunGuard::new(dir.clone());
    let result = run_in(run, &dir, &mut guard, redactor, progress, cancel).await;
    guard.finish().await;
    result
}

async fn run_in(
    run: &PlaybookRun,
    dir: &Path,
    guard: &mut RunGuard,
    redactor: &Redactor,
    progress: &ProgressTx,
    cancel: &CancellationToken,
) -> Result<Vec<(String, PlaybookReport)>> {
    let plugins = dir.join("callback_plugins");
    let tmp = dir.join("tmp");
    for d in [&plugins, &tmp] {
        tokio::fs::create_dir_all(d)
            .await
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", d.display())))?;
    }
    write_private(&plugins.join(format!("{CALLBACK_NAME}.py")), CALLBACK_PLUGIN).await?;
    write_private(&dir.join(supervise::SUPERVISOR_FILE), supervise::SUPERVISOR).await?;
    write_private(&dir.join(supervise::SITECUSTOMIZE_FILE), supervise::SITECUSTOMIZE).await?;
    let inventory = dir.join("inventory.json");
    write_private(&inventory, &run.inventory_json).await?;
    let vars = dir.join("vars.json");
    write_private(&vars, &serde_json::to_string(&run.extra_vars).expect("vars serialize")).await?;

    let mut args: Vec<OsString> = vec![
        "-i".into(),
        inventory.into(),
        "-e".into(),
        format!("@{}", vars.display()).into(),
        run.playbook.clone().into(),
    ];
    args.extend(run.then.iter().map(|r| r.playbook.clone().into()));
    if let Some(key) = &run.private_key {
        args.extend(["--private-key".into(), key.clone().into()]);
    }
    let env = |k: &str, v: &dyn AsRef<std::ffi::OsStr>| (OsString::from(k), v.as_ref().to_os_string());
    let envs = vec![
        env("ANSIBLE_CALLBACK_PLUGINS", &plugins),
        env("ANSIBLE_STDOUT_CALLBACK", &CALLBACK_NAME),
        env("ANSIBLE_LOAD_CALLBACK_PLUGINS", &"1"),
        env("ANSIBLE_NOCOLOR", &"1"),
        env("ANSIBLE_RETRY_FILES_ENABLED", &"0"),
        env("ANSIBLE_LOCAL_TEMP", &tmp),
        env("ANSIBLE_HOME", &dir.join("home")),
        env("ANSIBLE_REMOTE_TEMP", &dir.join("remote-tmp")),
        env("ANSIBLE_SSH_CONTROL_PATH_DIR", &dir.join("cp")),
        env("ANSIBLE_SSH_ARGS", &ssh::ssh_args(&run.ssh)),
        // Explicit, so that no ansible.cfg or environment turns host key checking off.
        env("ANSIBLE_HOST_KEY_CHECKING", &"True"),
        env("ANSIBLE_TIMEOUT", &run.ssh.connect_timeout.as_secs().max(1).to_string()),
        env("PYTHONUNBUFFERED", &"1"),
    ];
    let launch = supervise::Launch {
        program: run.command.clone(),
        args,
        envs,
        cwd: run.playbook.parent().unwrap_or(Path::new(".")).to_path_buf(),
        run_dir: dir.to_path_buf(),
    };
    let mut child = supervise::spawn(launch, guard).await.map_err(|e| {
        Error::Invalid(format!(
            "cannot start {}: {e} (run scripts/bootstrap, or set ansible.command in the config)",
            run.command.display()
        ))
    })?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");

    let mut log = match &run.log {
        Some(p) => Some(
            tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .await
                .map_err(|e| Error::Io(format!("cannot open log {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let stderr_task = tokio::spawn({
        let redactor = redactor.clone();
        async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut tail: Vec<String> = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                tail.push(redactor.redact(&line));
                if tail.len() > 20 {
                    tail.remove(0);
                }
            }
            tail
        }
    });

    let mut state = RunState {
        role: run.role.clone(),
        known_hosts: run.ssh.known_hosts.clone(),
        ..RunState::default()
    };
    run.report_started(&run.role, progress);
    let mut lines = BufReader::new(stdout).lines();
    let deadline = tokio::time::sleep(run.timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    let line = redactor.redact(&line);
                    if let Some(f) = log.as_mut() {
                        let _ = f.write_all(format!("{line}\n").as_bytes()).await;
                    }
                    if let Some(next) = state.absorb(&line, progress, run) {
                        // Each role has the whole timeout, as when it was a run of its own.
                        deadline.as_mut().reset(tokio::time::Instant::now() + run.timeout);
                        run.report_started(&next, progress);
                    }
                }
                _ => break,
            },
            _ = &mut deadline => {
                guard.stop(&mut child).await;
                return Err(Error::Timeout(format!("playbook {} ran longer than {} s and was stopped", state.role, run.timeout.as_secs())));
            }
            _ = cancel.cancelled() => {
                guard.stop(&mut child).await;
                return Err(Error::Cancelled);
            }
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| Error::Io(format!("ansible-playbook: {e}")))?;
    // Reaped: its pid may be reused from now on, so the guard must not signal it any more.
    guard.reaped();
    let stderr_tail = stderr_task.await.unwrap_or_default();
    if let Some(f) = log.as_mut() {
        for l in &stderr_tail {
            let _ = f.write_all(format!("stderr: {l}\n").as_bytes()).await;
        }
    }
    let ok = status.success() && state.first_failure.is_none();
    if !status.success() && state.first_failure.is_none() {
        // Ansible reads each playbook when its turn comes: an error that names a later one
        // means the running role's playbook ended, and that later one could not be read.
        let failed = run.failed_role(&state.role, &stderr_tail).to_string();
        if failed != state.role {
            state.finish_role(true, progress);
            run.report_started(&failed, progress);
            state.role = failed;
        }
    }
    state.finish_role(ok, progress);
    if let Some(failure) = state.first_failure {
        return Err(Error::Playbook(failure));
    }
    if !status.success() {
        let code = status
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "a signal".into());
        let last = stderr_tail
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .cloned()
            .unwrap_or_default();
        return Err(Error::Playbook(format!(
            "playbook {}.yml failed (exit {code}): {last}",
            state.role
        )));
    }
    Ok(state.done)
}

impl PlaybookRun {
    /// Reports `role` as started, with the number of its hosts.
    fn report_started(&self, role: &str, progress: &ProgressTx) {
        progress.emit(Progress::Playbook(PlaybookEvent::Started {
            role: role.to_string(),
            hosts: self.inventory_hosts(role),
        }));
    }

    /// How many hosts `role` configures: its group's, or the whole inventory's when no group
    /// has its name.
    fn inventory_hosts(&self, role: &str) -> usize {
        let inventory = serde_json::from_str::<serde_json::Value>(&self.inventory_json).unwrap_or_default();
        let count = |g: &serde_json::Value| g["hosts"].as_object().map_or(0, |h| h.len());
        let Some(groups) = inventory["all"]["children"].as_object() else {
            return 0;
        };
        match groups.get(role) {
            Some(group) => count(group),
            None => groups.values().map(count).sum(),
        }
    }

    /// Each role of the run with its playbook, in the order they run.
    fn roles(&self) -> impl Iterator<Item = (&str, &Path)> {
        std::iter::once((self.role.as_str(), self.playbook.as_path()))
            .chain(self.then.iter().map(|r| (r.role.as_str(), r.playbook.as_path())))
    }

    /// The role whose playbook is `file` (a file name, as the callback prints it).
    fn role_of(&self, file: &str) -> Option<&str> {
        self.roles()
            .find(|(_, p)| p.file_name().is_some_and(|n| n == file))
            .map(|(role, _)| role)
    }

    /// The role a run that ended without a failed task failed in: Ansible reads each playbook
    /// only when its turn comes, so a broken one after `running` ends the run with an error
    /// that names its file; otherwise the role that was running.
    fn failed_role<'a>(&'a self, running: &'a str, stderr: &[String]) -> &'a str {
        let named = |path: &Path| {
            path.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| stderr.iter().any(|l| l.contains(n.as_ref())))
        };
        self.roles()
            .skip_while(|(role, _)| *role != running)
            .skip(1)
            .find(|(_, path)| named(path))
            .map_or(running, |(role, _)| role)
    }
}

/// What a run has seen so far: the role running now and its tallies, and the roles done.
#[derive(Default)]
struct RunState {
    role: String,
    tasks: usize,
    changed: usize,
    hosts: std::collections::BTreeSet<String>,
    first_failure: Option<String>,
    known_hosts: Option<PathBuf>,
    done: Vec<(String, PlaybookReport)>,
}

impl RunState {
    /// Reports the running role as finished and keeps its tallies.
    fn finish_role(&mut self, ok: bool, progress: &ProgressTx) {
        progress.emit(Progress::Playbook(PlaybookEvent::Finished {
            role: self.role.clone(),
            ok,
            tasks: self.tasks,
            changed: self.changed,
        }));
        let hosts = std::mem::take(&mut self.hosts).into_iter().collect();
        let report = PlaybookReport {
            tasks: std::mem::take(&mut self.tasks),
            changed: std::mem::take(&mut self.changed),
            hosts,
        };
        self.done.push((self.role.clone(), report));
    }

    /// Takes one line of the callback's output; returns the next role when its playbook
    /// starts (the caller reports it as started).
    fn absorb(&mut self, line: &str, progress: &ProgressTx, run: &PlaybookRun) -> Option<String> {
        let Ok(event) = serde_json::from_str::<CallbackEvent>(line) else {
            if !line.trim().is_empty() {
                progress.info(line.to_string());
            }
            return None;
        };
        if let CallbackEvent::PlaybookStart { playbook } = &event {
            let role = run.role_of(playbook)?;
            if role == self.role {
                return None;
            }
            self.finish_role(self.first_failure.is_none(), progress);
            self.role = role.to_string();
            return Some(self.role.clone());
        }
        let role = self.role.clone();
        let host_result = |task: String, host: String, status, message| {
            Progress::Playbook(PlaybookEvent::HostResult {
                role: role.clone(),
                task,
                host,
                status,
                message,
            })
        };
        match event {
            CallbackEvent::PlaybookStart { .. }
            | CallbackEvent::Stopped {}
            | CallbackEvent::PlayStart {}
            | CallbackEvent::Stats {} => {}
            CallbackEvent::TaskStart { task } => {
                self.tasks += 1;
                progress.emit(Progress::Playbook(PlaybookEvent::Task {
                    role: self.role.clone(),
                    task,
                }));
            }
            CallbackEvent::HostOk {
                task,
                host,
                changed,
                msg,
            } => {
                self.hosts.insert(host.clone());
                if changed {
                    self.changed += 1;
                }
                let status = if changed { HostStatus::Changed } else { HostStatus::Ok };
                progress.emit(host_result(task, host, status, text(&msg)));
            }
            CallbackEvent::HostFailed {
                task,
                host,
                msg,
                ignored,
            } => {
                self.hosts.insert(host.clone());
                let message = text(&msg).unwrap_or_else(|| "no message".into());
                if !ignored && self.first_failure.is_none() {
                    self.first_failure = Some(format!("task '{task}' failed on host {host}: {message}"));
                }
                progress.emit(host_result(task, host, HostStatus::Failed, Some(message)));
            }
            CallbackEvent::HostUnreachable { task, host, msg } => {
                let message = text(&msg).unwrap_or_else(|| "unreachable".into());
                if self.first_failure.is_none() {
                    self.first_failure = Some(ssh::unreachable_line(
                        &host,
                        &task,
                        &message,
                        self.known_hosts.as_deref(),
                    ));
                }
                progress.emit(host_result(task, host, HostStatus::Unreachable, Some(message)));
            }
            CallbackEvent::HostSkipped { task, host } => {
                progress.emit(host_result(task, host, HostStatus::Skipped, None));
            }
            CallbackEvent::Warning { msg } => {
                if let Some(m) = text(&msg) {
                    progress.info(format!("ansible warning: {m}"));
                }
            }
        }
        None
    }
}

async fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = path.to_path_buf();
    let contents = contents.to_string();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))?;
        std::io::Write::write_all(&mut f, contents.as_bytes())
            .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))
    })
    .await
    .map_err(|e| Error::Io(e.to_string()))?
}
