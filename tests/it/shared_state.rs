//! Several argos processes on one SQLite file, through the real binary: two consoles and the
//! CLI racing for one environment (one runs, the others are refused naming it), a console
//! opened beside a running job that leaves it alone, and a console killed with SIGKILL whose
//! job another console takes over and finishes once its lease has run out.
use crate::support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use argos::store::{JobState, Store};
use support::moto::Moto;
use support::TestProject;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The roles the moto commissions here deploy: what these tests show does not depend on how
/// many roles there are, and each one more is an ansible-playbook run per commission.
const FEWER_ROLES: &[&str] = &["api"];

const PERMISSIONS: &str = r#"
chat:
  commands_per_minute: 120
  command_burst: 20
  edit_interval_ms: 100
permissions:
  roles:
    admins: { console_users: [alice, carol] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
"#;

fn argos(project: &TestProject) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_argos"));
    c.arg("--config")
        .arg(&project.config_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

fn console(project: &TestProject, user: &str) -> Child {
    argos(project)
        .args(["console", "--user", user])
        .spawn()
        .expect("argos console starts")
}

async fn type_and_close(child: &mut Child, input: &str) {
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).await.unwrap();
}

async fn output(child: Child) -> (String, i32) {
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the process ends")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (text, out.status.code().unwrap_or(-1))
}

/// No two jobs on one environment ever overlapped in time.
fn assert_no_overlap(store: &Store) {
    let jobs = store.recent_jobs(100).unwrap();
    for a in &jobs {
        for b in &jobs {
            if a.id >= b.id || a.env != b.env {
                continue;
            }
            let (Some(a0), Some(b0)) = (a.started_at, b.started_at) else {
                continue;
            };
            let a1 = a.finished_at.unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
            let b1 = b.finished_at.unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
            assert!(
                a1 <= b0 || b1 <= a0,
                "jobs #{} and #{} overlapped on {}",
                a.id,
                b.id,
                a.env
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consoles_and_the_cli_never_run_two_operations_on_one_environment() {
    let moto = Moto::start().await;
    let project = TestProject::with_roles(&moto.url, PERMISSIONS, FEWER_ROLES);
    // All three at once.
    let mut a = console(&project, "alice");
    let mut b = console(&project, "carol");
    let cli = argos(&project).args(["staging", "commission"]).spawn().unwrap();
    type_and_close(&mut a, "staging commission\n").await;
    type_and_close(&mut b, "staging commission\n").await;
    let ((out_a, code_a), (out_b, code_b), (out_cli, code_cli)) = tokio::join!(output(a), output(b), output(cli));
    assert_eq!((code_a, code_b), (0, 0), "{out_a}\n{out_b}");

    let store = Store::open(&project.config().database_path()).unwrap();
    let jobs = store.recent_jobs(10).unwrap();
    assert_eq!(
        jobs.len(),
        1,
        "exactly one commission ran: {jobs:#?}\n{out_a}\n{out_b}\n{out_cli}"
    );
    assert_eq!(jobs[0].state, JobState::Succeeded, "{jobs:#?}");
    let winner = &jobs[0];
    let busy_replies = [&out_a, &out_b]
        .iter()
        .filter(|o| o.contains("staging is busy: job #1 (commission by "))
        .count();
    let cli_refused = code_cli == 2 && out_cli.contains("staging is busy: job #1 (commission by");
    assert_eq!(
        busy_replies + usize::from(cli_refused),
        2,
        "the two losers were told who holds staging:\nA: {out_a}\nB: {out_b}\nCLI ({code_cli}): {out_cli}"
    );
    if winner.platform == argos::address::Surface::Cli {
        assert_eq!(code_cli, 0, "{out_cli}");
    }
    // Every attempt is in the audit log, the refused ones too.
    let audit = store.audit_log(50).unwrap();
    assert_eq!(
        audit.iter().filter(|r| r.outcome.starts_with("busy")).count(),
        2,
        "{audit:#?}"
    );
    assert_no_overlap(&store);
    drop(moto);
}

/// Reads `child`'s stdout until a line contains `needle`; returns what was read.
async fn read_until(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>, needle: &str) -> String {
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(180), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(needle) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "no line with {needle:?} in:\n{seen}");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_beside_a_running_job_leaves_it_alone_and_takes_it_over_when_its_owner_dies() {
    let moto = Moto::start().await;
    let project = TestProject::with_roles(&moto.url, PERMISSIONS, FEWER_ROLES);

    // Console A starts a commission; while it runs, a second console only looks.
    let mut a = console(&project, "alice");
    let mut a_in = a.stdin.take().unwrap();
    let mut a_out = BufReader::new(a.stdout.take().unwrap()).lines();
    a_in.write_all(b"staging commission\n").await.unwrap();
    read_until(&mut a_out, "CREATE_COMPLETE argos-image").await;

    let mut look = console(&project, "carol");
    type_and_close(&mut look, "jobs\nenvs\n").await;
    let (seen, code) = output(look).await;
    assert_eq!(code, 0, "{seen}");
    assert!(!seen.contains("resumed"), "a live console's job is not resumed: {seen}");
    assert!(seen.contains("#1 staging commission — running by alice"), "{seen}");
    assert!(seen.contains("• staging: running job #1"), "{seen}");

    // A dies mid-job. Console B of the same user takes the job over once A's lease (1 s in
    // the tests' config) has run out, and finishes it.
    a.start_kill().unwrap();
    let killed = Instant::now();
    a.wait().await.unwrap();
    let mut b = console(&project, "alice");
    let mut b_in = b.stdin.take().unwrap();
    let mut b_out = BufReader::new(b.stdout.take().unwrap()).lines();
    let resumed = read_until(&mut b_out, "picking it up again").await;
    let takeover = killed.elapsed();
    let done = read_until(&mut b_out, "✅ staging · commission · job #1 · alice · done in").await;
    b_in.write_all(b"jobs\n").await.unwrap();
    drop(b_in);
    let (rest, code) = output(b).await;
    assert_eq!(code, 0, "{resumed}{done}{rest}");
    assert!(takeover < Duration::from_secs(15), "took over after {takeover:?}");

    let store = Store::open(&project.config().database_path()).unwrap();
    let jobs = store.recent_jobs(10).unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].state, JobState::Succeeded);
    assert!(
        jobs[0].owner.as_deref().is_some_and(|o| o.starts_with("console-")),
        "{jobs:#?}"
    );
    assert!(store.held_locks().unwrap().is_empty(), "staging is free again");
    // A's playbooks and run folders did not outlive it.
    let runs = argos::ansible::runs_dir(&project.config().state_dir());
    let left: Vec<_> = std::fs::read_dir(&runs)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "run folders left: {left:?}");
    drop(moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_request_budget_is_shared_by_the_live_replicas() {
    // No AWS call is made: the endpoint only has to parse.
    // The tests' config allows 200 requests a second.
    let project = TestProject::new("http://127.0.0.1:9", "");
    let path = project.config().database_path();
    let mut bots = Vec::new();
    for _ in 0..3 {
        let bot = argos::bot::Bot::new(project.engine().await, Store::open(&path).unwrap());
        bots.push(bot);
    }
    for bot in &bots {
        bot.resume_unfinished().await;
    }
    // Each takes a third (the last one saw all three at its first round; the others at their
    // next heartbeat).
    let shared = |bots: &[argos::bot::Bot], n: u32| bots.iter().all(|b| b.engine().aws.budget_share() == (n, 200 / n));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !shared(&bots, 3) {
        assert!(Instant::now() < deadline, "never shared by 3");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One stops cleanly: the other two take its share back.
    let gone = bots.pop().unwrap();
    gone.shutdown(Duration::ZERO).await;
    while !shared(&bots, 2) {
        assert!(Instant::now() < deadline, "never shared by 2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
