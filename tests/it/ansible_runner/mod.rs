//! Real `ansible-playbook` on `ansible_connection=local` hosts, with playbooks that write only
//! into a temporary folder: success, a failing task, a secret printed by a task, a timeout and
//! a cancel; and that no process of a run outlives it or the argos that started it (`kill -9`
//! included), with the sweep that cleans up after a dead owner. Tests find their own processes
//! by the run's `ARGOS_RUN_DIR` marker and a `sleep` argument no other process uses.
use crate::support;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use argos::ansible::{self, PlaybookRun};
use argos::error::Error;
use argos::progress::{HostStatus, PlaybookEvent, Progress, ProgressTx};
use argos::redact::Redactor;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "s3cr3t-value-for-redaction";

fn inventory(dir: &Path, hosts: &[&str]) -> String {
    let python = support::repo().join(".venv/bin/python");
    let hosts: serde_json::Map<String, serde_json::Value> = hosts
        .iter()
        .map(|h| (h.to_string(), serde_json::json!({"ansible_host": "127.0.0.1"})))
        .collect();
    let _ = dir;
    serde_json::json!({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": python},
        "children": {"web": {"hosts": hosts}}
    }})
    .to_string()
}

fn playbook(dir: &Path, name: &str, tasks: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("- hosts: web\n  gather_facts: false\n  tasks:\n{tasks}")).unwrap();
    path
}

/// A playbook whose one task runs `sleep <arg>`.
fn sleep_playbook(dir: &Path, task: &str, arg: &str) -> PathBuf {
    playbook(
        dir,
        "slow.yml",
        &format!("    - name: {task}\n      ansible.builtin.command: sleep {arg}\n"),
    )
}

/// Right now, not eventually: no process of the run is left, and its folder is gone.
fn assert_run_gone(work: &Path, arg: &str) {
    let left = run_processes(work);
    assert!(left.is_empty(), "every process of the run was killed, but: {left:#?}");
    assert!(sleeps(arg).is_empty(), "the task's own sleep was killed");
    assert!(!work.exists(), "the run folder is removed");
}

fn run_for(dir: &Path, playbook: std::path::PathBuf, timeout: Duration) -> PlaybookRun {
    PlaybookRun {
        command: support::repo().join(".venv/bin/ansible-playbook"),
        playbook,
        role: "web".into(),
        then: Vec::new(),
        inventory_json: inventory(dir, &["web-1", "web-2"]),
        extra_vars: BTreeMap::from([("out".to_string(), dir.join("out").display().to_string())]),
        private_key: None,
        ssh: Default::default(),
        timeout,
        workdir: dir.join("work"),
        log: Some(dir.join("run.log")),
    }
}

/// The run folder `run_for` uses, as its processes' `ARGOS_RUN_DIR` names it.
fn work_dir(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap().join("work")
}

fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Progress>) -> Vec<Progress> {
    let mut v = Vec::new();
    while let Ok(p) = rx.try_recv() {
        v.push(p);
    }
    v
}

/// Held by the tests that sweep, so that one's sweep does not kill the other's orphans first.
static SWEEPS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A `sleep` argument no other process on the machine uses.
fn unique_sleep() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::UNIX_EPOCH.elapsed().unwrap().subsec_nanos();
    format!(
        "{}.{:07}{nanos}",
        900 + N.fetch_add(1, Ordering::SeqCst),
        std::process::id()
    )
}

/// A process as the tests see it, from /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proc {
    pid: u32,
    ppid: u32,
    start: u64,
    command: String,
    owner: String,
    env: Vec<String>,
}

impl Proc {
    /// Still this process (same start time) and not a zombie.
    fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|(_, state, start)| start == self.start && state != 'Z')
    }
}

/// (ppid, state, start time) from /proc/<pid>/stat.
fn stat(pid: u32) -> Option<(u32, char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = s[s.rfind(')')? + 1..].split_whitespace().collect();
    Some((f[1].parse().ok()?, f[0].chars().next()?, f[19].parse().ok()?))
}

fn start_time(pid: u32) -> u64 {
    stat(pid).unwrap().2
}

fn pids() -> impl Iterator<Item = u32> {
    let entries = std::fs::read_dir("/proc").unwrap().flatten();
    entries.filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
}

/// Every live process whose environment has `ARGOS_RUN_DIR=<run>`.
fn run_processes(run: &Path) -> Vec<Proc> {
    let marker = format!("ARGOS_RUN_DIR={}", run.display());
    let split = |raw: Vec<u8>| -> Vec<String> {
        let parts = raw.split(|b| *b == 0).filter(|v| !v.is_empty());
        parts.map(|v| String::from_utf8_lossy(v).into_owned()).collect()
    };
    pids()
        .filter_map(|pid| {
            let env = split(std::fs::read(format!("/proc/{pid}/environ")).ok()?);
            let (ppid, _, start) = stat(pid).filter(|s| s.1 != 'Z' && env.contains(&marker))?;
            let command = split(std::fs::read(format!("/proc/{pid}/cmdline")).ok()?).join(" ");
            let owner = env
                .iter()
                .find_map(|v| v.strip_prefix("ARGOS_RUN_OWNER="))
                .unwrap_or("");
            let owner = owner.to_string();
            Some(Proc {
                pid,
                ppid,
                start,
                command,
                owner,
                env,
            })
        })
        .collect()
}

/// The live `sleep <arg>` processes.
fn sleeps(arg: &str) -> Vec<u32> {
    let want = format!("sleep\0{arg}\0");
    pids()
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes()))
        .filter(|pid| stat(*pid).is_some_and(|(_, state, _)| state != 'Z'))
        .collect()
}

/// Polls `done` every 10 ms until it holds or `limit` passes.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn wait_until_blocking(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

mod killing;
mod roles;
mod runs;
