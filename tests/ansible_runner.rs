//! Real `ansible-playbook` on `ansible_connection=local` hosts, with playbooks that write only
//! into a temporary folder: success, a failing task, a secret printed by a task, a timeout and
//! a cancel.
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

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

fn run_for(dir: &Path, playbook: std::path::PathBuf, timeout: Duration) -> PlaybookRun {
    PlaybookRun {
        command: support::repo().join(".venv/bin/ansible-playbook"),
        playbook,
        role: "web".into(),
        inventory_json: inventory(dir, &["web-1", "web-2"]),
        extra_vars: BTreeMap::from([("out".to_string(), dir.join("out").display().to_string())]),
        private_key: None,
        timeout,
        workdir: dir.join("work"),
        log: Some(dir.join("run.log")),
    }
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
        ["ok.yml", "out", "run.log", "work"],
        "nothing written outside the run's folders"
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
    let pb = playbook(
        dir.path(),
        "slow.yml",
        "    - name: Hang\n      ansible.builtin.command: sleep 60\n",
    );
    let (tx, _rx) = ProgressTx::channel();
    let started = std::time::Instant::now();
    let err = ansible::run(
        &run_for(dir.path(), pb, Duration::from_secs(2)),
        &Redactor::default(),
        &tx,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!sleep_running(), "the whole process group was killed");
}

#[tokio::test]
async fn cancel_stops_the_playbook() {
    let dir = tempfile::tempdir().unwrap();
    let pb = playbook(
        dir.path(),
        "slow.yml",
        "    - name: Hang longer\n      ansible.builtin.command: sleep 61\n",
    );
    let (tx, _rx) = ProgressTx::channel();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    // Cancel once the task has started: the progress stream says so.
    let run = run_for(dir.path(), pb, Duration::from_secs(120));
    let handle = tokio::spawn(async move { ansible::run(&run, &Redactor::default(), &tx, &cancel).await });
    tokio::time::timeout(Duration::from_secs(30), async {
        while !std::fs::read_to_string(dir.path().join("run.log"))
            .unwrap_or_default()
            .contains("Hang longer")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the task starts");
    trigger.cancel();
    let err = handle.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Cancelled));
}

fn sleep_running() -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", "^sleep 60$"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
