//! One playbook run: tasks reported, failures named, secrets redacted, time limits, cancel, a missing ansible-playbook, a run dropped half way.
use super::*;

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
