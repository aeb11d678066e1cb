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

#[tokio::test]
async fn a_successful_run_reports_tasks_and_writes_only_into_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let pb = playbook(
        dir.path(),
        "ok.yml",
        "    - name: Make the output folder\n      ansible.builtin.file: {path: \"{{ out }}/{{ inventory_hostname }}\", state: directory}\n    - name: Write a file\n      ansible.builtin.copy: {dest: \"{{ out }}/{{ inventory_hostname }}/hello.txt\", content: hi}\n",
    );
    let (tx, mut rx) = ProgressTx::channel();
    let report = ansible::run(
        &run_for(dir.path(), pb, Duration::from_secs(60)),
        &Redactor::default(),
        &tx,
        &CancellationToken::new(),
    )
    .await
    .expect("the playbook succeeds");
    assert_eq!(report.tasks, 2);
    assert_eq!(report.changed, 4, "two changed tasks on two hosts");
    assert_eq!(report.hosts, ["web-1", "web-2"]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/web-1/hello.txt")).unwrap(),
        "hi"
    );
    let events = drain(&mut rx);
    assert!(events.contains(&Progress::Playbook(PlaybookEvent::Task {
        role: "web".into(),
        task: "Write a file".into()
    })));
    assert!(matches!(
        events.last(),
        Some(Progress::Playbook(PlaybookEvent::Finished { ok: true, .. }))
    ));
    let mut entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        ["ok.yml", "out", "run.log"],
        "nothing written outside the run's folders, and the run folder is removed"
    );
}

#[tokio::test]
async fn a_failing_task_names_the_task_and_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let pb = playbook(
        dir.path(),
        "fail.yml",
        "    - name: Fine\n      ansible.builtin.debug: {msg: ok}\n    - name: Break on purpose\n      ansible.builtin.fail: {msg: the disk is full}\n      when: inventory_hostname == 'web-2'\n    - name: Never reached on web-2\n      ansible.builtin.debug: {msg: after}\n",
    );
    let (tx, mut rx) = ProgressTx::channel();
    let err = ansible::run(
        &run_for(dir.path(), pb, Duration::from_secs(60)),
        &Redactor::default(),
        &tx,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Playbook(_)));
    assert_eq!(
        err.to_string(),
        "task 'Break on purpose' failed on host web-2: the disk is full"
    );
    let events = drain(&mut rx);
    assert!(events.iter().any(|p| matches!(p, Progress::Playbook(PlaybookEvent::HostResult { host, status: HostStatus::Failed, .. }) if host == "web-2")));
    assert!(!dir.path().join("work").exists(), "a failed run's folder is removed");
}

#[tokio::test]
async fn a_secret_printed_by_a_task_never_reaches_the_output() {
    std::env::set_var("ARGOS_TEST_SECRET_FOR_RUNNER", SECRET);
    let dir = tempfile::tempdir().unwrap();
    let pb = playbook(
        dir.path(),
        "leak.yml",
        "    - name: Print the secret\n      ansible.builtin.debug: {msg: \"password is {{ lookup('env', 'ARGOS_TEST_SECRET_FOR_RUNNER') }}\"}\n    - name: Fail with the secret\n      ansible.builtin.fail: {msg: \"cannot log in with {{ lookup('env', 'ARGOS_TEST_SECRET_FOR_RUNNER') }}\"}\n",
    );
    let (tx, mut rx) = ProgressTx::channel();
    let redactor = Redactor::new([SECRET]);
    let err = ansible::run(
        &run_for(dir.path(), pb, Duration::from_secs(60)),
        &redactor,
        &tx,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(!text.contains(SECRET) && text.contains("[redacted]"), "{text}");
    let events = drain(&mut rx);
    let all = serde_json::to_string(&events).unwrap();
    assert!(all.contains("password is [redacted]"), "the debug line arrives, masked");
    assert!(!all.contains(SECRET));
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
    assert!(log.contains("[redacted]") && !log.contains(SECRET));
}

#[tokio::test]
async fn a_run_over_its_time_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let work = work_dir(dir.path());
    let arg = unique_sleep();
    let pb = sleep_playbook(dir.path(), "Hang", &arg);
    let (tx, _rx) = ProgressTx::channel();
    let started = Instant::now();
    let err = ansible::run(
        &run_for(dir.path(), pb, Duration::from_secs(3)),
        &Redactor::default(),
        &tx,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // No waiting here: the timeout is reported once the tree is gone.
    assert_run_gone(&work, &arg);
}

#[tokio::test]
async fn cancel_stops_the_playbook() {
    let dir = tempfile::tempdir().unwrap();
    let work = work_dir(dir.path());
    let arg = unique_sleep();
    let pb = sleep_playbook(dir.path(), "Hang longer", &arg);
    let (tx, _rx) = ProgressTx::channel();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let run = run_for(dir.path(), pb, Duration::from_secs(120));
    let handle = tokio::spawn(async move { ansible::run(&run, &Redactor::default(), &tx, &cancel).await });
    // Cancel once the task's command runs.
    wait_until(Duration::from_secs(60), || !sleeps(&arg).is_empty())
        .await
        .expect("the task starts its sleep");
    trigger.cancel();
    let err = handle.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Cancelled));
    assert_run_gone(&work, &arg);
}

#[tokio::test]
async fn a_missing_ansible_playbook_is_a_clear_error_and_leaves_no_folder() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = run_for(dir.path(), playbook(dir.path(), "ok.yml", ""), Duration::from_secs(60));
    run.command = dir.path().join("no-such-ansible-playbook");
    let (tx, _rx) = ProgressTx::channel();
    let err = ansible::run(&run, &Redactor::default(), &tx, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(
        err.to_string().contains("cannot start") && err.to_string().contains("No such file"),
        "{err}"
    );
    assert!(!dir.path().join("work").exists());
}

#[tokio::test]
async fn dropping_a_run_half_way_kills_it_and_removes_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let work = work_dir(dir.path());
    let arg = unique_sleep();
    let pb = sleep_playbook(dir.path(), "Hang until dropped", &arg);
    let (tx, _rx) = ProgressTx::channel();
    let run = run_for(dir.path(), pb, Duration::from_secs(120));
    let handle =
        tokio::spawn(async move { ansible::run(&run, &Redactor::default(), &tx, &CancellationToken::new()).await });
    wait_until(Duration::from_secs(60), || !sleeps(&arg).is_empty())
        .await
        .expect("the task starts its sleep");
    let before = run_processes(&work);
    assert!(
        before.len() >= 5,
        "supervisor, ansible-playbook, workers, sleeps: {before:?}"
    );
    handle.abort();
    assert!(handle.await.unwrap_err().is_cancelled());
    wait_until(Duration::from_secs(10), || {
        run_processes(&work).is_empty() && !work.exists() && before.iter().all(|p| !p.alive())
    })
    .await
    .unwrap_or_else(|_| panic!("left: {:?}, folder there: {}", run_processes(&work), work.exists()));
}

/// The "argos" that `argos_killed_with_sigkill_takes_its_playbook_along` kills: that test runs
/// this one in a child process (the current test binary), which then runs a long playbook.
#[tokio::test]
#[ignore = "a helper: run in a child process by argos_killed_with_sigkill_takes_its_playbook_along"]
async fn helper_run_a_long_playbook_until_killed() {
    let (Ok(dir), Ok(arg)) = (std::env::var(HELPER_DIR), std::env::var(HELPER_SLEEP)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let pb = sleep_playbook(&dir, "Hang until argos is killed", &arg);
    let (tx, _rx) = ProgressTx::channel();
    let result = ansible::run(
        &run_for(&dir, pb, Duration::from_secs(600)),
        &Redactor::default(),
        &tx,
        &CancellationToken::new(),
    )
    .await;
    panic!("the helper should have been killed, but the run ended: {result:?}");
}

/// The helper process, killed if the test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const HELPER_DIR: &str = "ARGOS_TEST_HELPER_DIR";
const HELPER_SLEEP: &str = "ARGOS_TEST_HELPER_SLEEP";

#[tokio::test]
async fn argos_killed_with_sigkill_takes_its_playbook_along() {
    let dir = tempfile::tempdir().unwrap();
    let work = work_dir(dir.path());
    let arg = unique_sleep();
    let out = std::fs::File::create(dir.path().join("helper.out")).unwrap();
    let mut argos = KillOnDrop(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ansible_runner::helper_run_a_long_playbook_until_killed",
                "--nocapture",
                "--ignored",
            ])
            .env(HELPER_DIR, dir.path())
            .env(HELPER_SLEEP, &arg)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );
    let helper_log = || std::fs::read_to_string(dir.path().join("helper.out")).unwrap_or_default();
    wait_until(Duration::from_secs(60), || sleeps(&arg).len() == 2)
        .await
        .unwrap_or_else(|_| panic!("the playbook's sleeps never started; helper said:\n{}", helper_log()));
    let tree = run_processes(&work);
    let count = |s: &str| tree.iter().filter(|p| p.command.contains(s)).count();
    assert_eq!(count("argos_supervisor.py"), 1, "{tree:#?}");
    assert!(
        count("ansible-playbook") >= 4,
        "the supervisor, the controller and two workers: {tree:#?}"
    );
    assert_eq!(count(&format!("sleep {arg}")), 2, "{tree:#?}");
    let owner = format!("{}:{}", argos.0.id(), start_time(argos.0.id()));
    assert!(
        tree.iter().all(|p| p.owner == owner),
        "every process names its argos: {tree:#?}"
    );

    let killed_at = Instant::now();
    argos.0.kill().unwrap(); // SIGKILL
    assert_eq!(argos.0.wait().unwrap().signal(), Some(libc::SIGKILL));
    wait_until(Duration::from_secs(10), || {
        run_processes(&work).is_empty() && tree.iter().all(|p| !p.alive())
    })
    .await
    .unwrap_or_else(|_| panic!("still running 10 s after kill -9: {:#?}", run_processes(&work)));
    let took = killed_at.elapsed();
    eprintln!(
        "the run's {} processes were gone {took:?} after kill -9 of argos",
        tree.len()
    );
    assert!(sleeps(&arg).is_empty());
    assert!(!work.exists(), "the supervisor removed the run folder");

    let report = {
        let _serial = SWEEPS.lock().unwrap_or_else(|e| e.into_inner());
        ansible::sweep_orphans(Some(dir.path()))
    };
    assert!(
        report
            .killed
            .iter()
            .all(|k| k.run_dir.as_deref() != Some(work.as_path())),
        "nothing of the run was left for the sweep: {report:?}"
    );
    assert!(!report.removed_dirs.contains(&work), "{report:?}");
}

/// The at-fork hook of the shipped sitecustomize.py, on its own: with no supervisor, a SIGKILL of
/// ansible-playbook still takes its (setsid) workers along.
#[tokio::test]
async fn ansible_workers_die_with_the_controller() {
    let dir = tempfile::tempdir().unwrap();
    let site = std::fs::canonicalize(dir.path()).unwrap().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("sitecustomize.py"), ansible::supervise::SITECUSTOMIZE).unwrap();
    let arg = unique_sleep();
    let pb = sleep_playbook(dir.path(), "Hang in a worker", &arg);
    std::fs::write(
        dir.path().join("inventory.json"),
        inventory(dir.path(), &["web-1", "web-2"]),
    )
    .unwrap();
    let mut controller = std::process::Command::new(support::repo().join(".venv/bin/ansible-playbook"))
        .arg("-i")
        .arg(dir.path().join("inventory.json"))
        .arg(&pb)
        .current_dir(dir.path())
        .env("PYTHONPATH", &site)
        .env("ARGOS_PDEATHSIG", "1")
        .env(ansible::ENV_RUN_DIR, &site)
        .env("ANSIBLE_LOCAL_TEMP", dir.path().join("tmp"))
        .env("ANSIBLE_HOME", dir.path().join("home"))
        .env("ANSIBLE_REMOTE_TEMP", dir.path().join("remote-tmp"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = wait_until(Duration::from_secs(60), || sleeps(&arg).len() == 2).await;
    let tree = run_processes(&site);
    let workers: Vec<&Proc> = tree.iter().filter(|p| p.ppid == controller.id()).collect();
    let modules: Vec<&Proc> = tree.iter().filter(|p| p.command.contains("AnsiballZ")).collect();
    controller.kill().unwrap();
    let _ = controller.wait();
    let gone = wait_until(Duration::from_secs(5), || workers.iter().all(|w| !w.alive())).await;
    // What runs below the workers is the supervisor's to kill; here the test cleans up itself.
    for p in run_processes(&site) {
        unsafe { libc::kill(p.pid as i32, libc::SIGKILL) };
    }
    ready.expect("the sleeps started");
    assert_eq!(workers.len(), 2, "two forked workers: {tree:#?}");
    assert!(
        workers.iter().all(|w| w.command.contains("ansible-playbook")),
        "{tree:#?}"
    );
    gone.unwrap_or_else(|_| panic!("workers outlived the controller: {workers:#?}"));
    // The modules' environment no longer names the sitecustomize folder nor arms the hook.
    assert!(!modules.is_empty(), "{tree:#?}");
    assert!(
        modules
            .iter()
            .all(|m| !m.env.contains(&format!("PYTHONPATH={}", site.display()))
                && !m.env.contains(&"ARGOS_PDEATHSIG=1".to_string())),
        "{modules:#?}"
    );
}

#[test]
fn the_sweep_kills_what_a_dead_argos_left_and_removes_its_folders() {
    let dir = tempfile::tempdir().unwrap();
    let runs = std::fs::canonicalize(dir.path()).unwrap().join("runs");
    std::fs::create_dir(&runs).unwrap();
    // An owner that is gone: a process that ran and was reaped.
    let mut gone = std::process::Command::new("sleep").arg(unique_sleep()).spawn().unwrap();
    let dead = (gone.id(), start_time(gone.id()));
    gone.kill().unwrap();
    gone.wait().unwrap();
    let me = (std::process::id(), start_time(std::process::id()));
    let owner_file = |folder: &Path, (pid, start): (u32, u64)| {
        std::fs::create_dir(folder).unwrap();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        let text = format!("pid={pid}\nstart={start}\nhost={}\nboot={}\n", host.trim(), boot.trim());
        std::fs::write(folder.join(ansible::reaper::OWNER_FILE), text).unwrap();
        std::fs::write(folder.join("vars.json"), "{}").unwrap();
    };
    let dead_run = runs.join("web-dead");
    owner_file(&dead_run, dead);
    let live_run = runs.join("web-live");
    owner_file(&live_run, me);
    // A folder from before owner files, named <role>-<pid>-<nanos>, of the dead owner.
    let legacy = runs.join(format!("api-{}-1700000000000000000", dead.0));
    std::fs::create_dir(&legacy).unwrap();
    // Nothing else in this binary sweeps while these processes exist (an argos starting on the
    // machine at this very moment would: it would kill the same ones).
    let _serial = SWEEPS.lock().unwrap_or_else(|e| e.into_inner());
    let marked = |owner: String, run: &Path| {
        let arg = unique_sleep();
        let child = std::process::Command::new("sleep")
            .arg(&arg)
            .env(ansible::ENV_RUN_OWNER, owner)
            .env(ansible::ENV_RUN_DIR, run)
            .spawn()
            .unwrap();
        // Exec'd, so /proc shows its own environment, not ours.
        wait_until_blocking(Duration::from_secs(5), || sleeps(&arg).contains(&child.id()));
        child
    };
    let mut orphan = marked(format!("{}:{}", dead.0, dead.1), &dead_run);
    // Our own pid, but another start time: the pid was reused, the owner is gone.
    let mut reused = marked(format!("{}:{}", me.0, me.1 + 1), &live_run);
    let mut alive = marked(format!("{}:{}", me.0, me.1), &live_run);
    let ids = (orphan.id(), reused.id(), alive.id());

    let report = ansible::sweep_orphans(Some(&runs));

    let killed: Vec<u32> = report.killed.iter().map(|k| k.pid).collect();
    assert!(killed.contains(&ids.0) && killed.contains(&ids.1), "{report:?}");
    assert!(
        !killed.contains(&ids.2),
        "a live owner's process is left alone: {report:?}"
    );
    let k = report.killed.iter().find(|k| k.pid == ids.0).unwrap();
    assert_eq!(k.run_dir.as_deref(), Some(dead_run.as_path()));
    assert!(k.command.starts_with("sleep "), "{k:?}");
    assert!(report.survivors.is_empty(), "{report:?}");
    assert_eq!(orphan.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(reused.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(alive.try_wait().unwrap(), None, "still running");
    alive.kill().unwrap();
    alive.wait().unwrap();

    assert!(
        report.removed_dirs.contains(&dead_run) && report.removed_dirs.contains(&legacy),
        "{report:?}"
    );
    assert!(!dead_run.exists() && !legacy.exists());
    assert!(live_run.join("vars.json").exists(), "a live owner's folder is kept");
    assert!(!report.to_string().is_empty());
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
