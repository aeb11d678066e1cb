//! The console adapter through the real binary's stdin and stdout: commands typed by named
//! users (an admin, a deployer, a stranger) against a moto server and the sandbox playbooks.
use crate::support;

use std::process::Stdio;

use support::fake_aws::FakeAws;
use support::moto::Moto;
use support::TestProject;
use tokio::io::AsyncWriteExt;

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
    admins: { console_users: [alice] }
    deployers: { console_users: [bob] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
    - role: deployers
      environments: [staging]
      actions: [deploy, status, events]
"#;

async fn console(project: &TestProject, user: &str, input: impl AsRef<[u8]>) -> (String, i32) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_argos"))
        .arg("--config")
        .arg(&project.config_path)
        .args(["console", "--user", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("argos starts");
    let mut stdin = child.stdin.take().unwrap();
    // A console that stopped reading early shows in what it answered, not as a broken pipe.
    let _ = stdin.write_all(input.as_ref()).await;
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the console ends after its input and jobs")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (text, out.status.code().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_session_with_three_users() {
    let moto = Moto::start().await;
    let project = TestProject::with_roles(&moto.url, PERMISSIONS, FEWER_ROLES);
    // Nothing is taken over here: a 1 s lease lost to a heartbeat held up on a loaded machine
    // failed bob's deploy once (the console gave its own job up mid-playbook).
    project.set_lease(10_000, 500);

    // The stranger may ask for help and nothing else.
    let (out, code) = console(&project, "mallory", "help\nstaging status\njobs\n").await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Commands you may run") && out.contains("help [command]"),
        "{out}"
    );
    assert!(
        !out.contains("<env> deploy"),
        "help lists only what the user may run: {out}"
    );
    assert!(out.contains("You don't have permission for status on staging"), "{out}");
    assert!(out.contains("You have no role with Argos"), "{out}");

    // The admin commissions: one status message followed to the end, then status.
    let (out, code) = console(
        &project,
        "alice",
        "staging deplyo\n!argos staging commission\nstaging status\n",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("unknown command 'deplyo'; did you mean 'deploy'?"),
        "{out}"
    );
    assert!(out.contains("staging · commission · job #1 · alice"), "{out}");
    assert!(
        out.contains("✅ staging · commission · job #1 · alice · done in"),
        "{out}"
    );
    assert!(out.contains("full log: "), "{out}");
    assert!(!out.contains(support::DB_PASSWORD));

    // The deployer may deploy staging but not decommission it; jobs are listed.
    let (out, code) = console(&project, "bob", "staging decommission\nstaging deploy api\njobs\n").await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("You don't have permission for decommission on staging"),
        "{out}"
    );
    assert!(out.contains("✅ staging · deploy · job #2 · bob"), "{out}");
    assert!(out.contains("#1 staging commission — succeeded by alice"), "{out}");

    // Every command is in the audit log, allowed or denied.
    let store = argos::store::Store::open(&project.config().database_path()).unwrap();
    let audit = store.audit_log(100).unwrap();
    assert!(audit
        .iter()
        .any(|a| a.user_id == "mallory" && a.outcome.starts_with("denied")));
    assert!(audit
        .iter()
        .any(|a| a.user_id == "bob" && a.outcome == "denied: missing decommission on staging"));
    assert!(audit
        .iter()
        .any(|a| a.user_id == "alice" && a.outcome.starts_with("malformed")));
    assert!(audit
        .iter()
        .any(|a| a.job_id == Some(1) && a.outcome == "ok: job #1 started"));
    drop(moto);
}

#[tokio::test]
async fn bad_lines_get_a_short_answer_and_the_console_goes_on() {
    let fake = FakeAws::start().await;
    let project = TestProject::new(&fake.endpoint_url(), PERMISSIONS);
    let long = "a".repeat(100_000);
    let mut input: Vec<u8> = b"\xff\xfe\x80 junk\nwhoami\n".to_vec();
    input.extend_from_slice(format!("{long}\nstaging \x1b[2J\x1b[H\nstaging status now\x07\nenvs\n").as_bytes());

    let (out, code) = console(&project, "alice", &input).await;

    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("❓ that line is not valid UTF-8; type commands as plain text\nusage: <env> <commission|"),
        "{out}"
    );
    // Every line after the bad one is still answered, the last one too.
    assert!(out.contains("You are alice (console id alice)."), "{out}");
    assert!(out.contains("2 environment(s):"), "{out}");
    // A long line is quoted short; an escape sequence is shown, never sent to the terminal.
    let reply = out
        .lines()
        .skip_while(|l| !l.contains("aaaa"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        reply.starts_with(&format!("❓ unknown command '{}…'\nusage: ", "a".repeat(59))),
        "{reply}"
    );
    assert!(reply.chars().count() < 300, "{} chars: {reply}", reply.chars().count());
    assert!(out.chars().count() < 2000, "{} chars in all", out.chars().count());
    assert!(out.contains("❓ unknown command '\\x1b[2J\\x1b[H'"), "{out}");
    assert!(out.contains("status takes no arguments (got 'now\\x07')"), "{out}");
    assert!(
        !out.contains(['\x1b', '\x07']),
        "control characters reached the terminal: {out:?}"
    );
    assert!(fake.calls().is_empty(), "{:?}", fake.actions());
    // The audit keeps the long line, bounded and escaped too.
    let store = argos::store::Store::open(&project.config().database_path()).unwrap();
    let audit = store.audit_log(20).unwrap();
    let long_one = audit.iter().find(|a| a.command.starts_with("aaaa")).expect("audited");
    assert_eq!(long_one.command.chars().count(), 500, "{long_one:?}");
    assert!(long_one.outcome.chars().count() < 100, "{long_one:?}");
    assert!(
        audit.iter().any(|a| a.command == "staging \\x1b[2J\\x1b[H"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_piped_burst_is_answered_in_order_and_every_command_is_audited_in_order() {
    let fake = FakeAws::start().await;
    // The per-user command budget lifted: this is about bursts, not the rate limit.
    let config = PERMISSIONS.replace(
        "commands_per_minute: 120\n  command_burst: 20",
        "commands_per_minute: 100000\n  command_burst: 100000",
    );
    let project = TestProject::new(&fake.endpoint_url(), &config);
    // More lines than one burst holds (256), a bad line and a refused command among them.
    let mut input = Vec::new();
    for i in 0..600 {
        match i {
            100 => input.extend_from_slice(b"\xff bad\n"),
            300 => input.extend_from_slice(b"nosuchenv deploy\n"),
            _ => input.extend_from_slice(b"whoami\n"),
        }
    }
    input.extend_from_slice(b"envs\n");

    let (out, code) = console(&project, "alice", &input).await;

    assert_eq!(code, 0, "{out}");
    // One reply per line, in the order of the lines.
    let firsts: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("You are") || l.starts_with('❓') || l.ends_with("environment(s):"))
        .collect();
    assert_eq!(firsts.len(), 601, "{out}");
    assert!(firsts[100].contains("not valid UTF-8"), "{}", firsts[100]);
    assert!(firsts[300].starts_with("❓"), "{}", firsts[300]);
    assert!(firsts
        .iter()
        .enumerate()
        .all(|(i, l)| i == 100 || i == 300 || i == 600 || l.starts_with("You are")));
    assert_eq!(firsts[600], "2 environment(s):");

    // Every answered command is in the audit log, in the order it was typed (the bad line is
    // not a command).
    let store = argos::store::Store::open(&project.config().database_path()).unwrap();
    let audit: Vec<_> = store.audit_log(1000).unwrap().into_iter().rev().collect();
    assert_eq!(audit.len(), 600, "599 lines and envs");
    assert_eq!(audit[299].command, "nosuchenv deploy", "{:?}", audit[299]);
    assert_eq!(audit.last().unwrap().command, "envs");
    assert!(audit.windows(2).all(|w| w[0].id < w[1].id && w[0].at <= w[1].at));
    assert!(fake.calls().is_empty(), "{:?}", fake.actions());
}

/// The chat pacing of the config (the defaults: an edit at most every 2 s, 5 at once, then one
/// every 30 s) and no approvals, for alice.
const DEFAULT_PACING: &str = r#"
permissions:
  roles:
    admins: { console_users: [alice] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
approvals:
  policies:
    - { environments: ["*"], actions: ["*"], approvers: 0 }
"#;

/// A terminal is not a chat API: a running job's status line on the console is redrawn at
/// least once a second, its elapsed time with it, although the chat pacing in the config would
/// hold a Discord or Slack message back and the stack reports something only every 2.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_redraws_a_running_job_at_least_once_a_second() {
    use support::fake_aws::{Op, StackScript};
    use tokio::io::AsyncBufReadExt;

    let fake = FakeAws::start().await;
    fake.set_time_scale(1.0);
    let resources = [
        ("WebSecurityGroup", "AWS::EC2::SecurityGroup"),
        ("ApiInstance", "AWS::EC2::Instance"),
        ("FrontInstance", "AWS::EC2::Instance"),
    ];
    let template = r#"{"Resources":{"WebSecurityGroup":{"Type":"AWS::EC2::SecurityGroup","Properties":{"GroupDescription":"web"}}}}"#;
    fake.add_stack("argos-staging", template, &[], &resources);
    fake.script_next_for(
        "argos-staging",
        Op::Delete,
        StackScript::delete_success("argos-staging", &resources, &[2.5, 2.5, 2.5]),
    );
    let project = TestProject::new(&fake.endpoint_url(), DEFAULT_PACING);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_argos"))
        .arg("--config")
        .arg(&project.config_path)
        .args(["console", "--user", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("argos starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"staging decommission\n").await.unwrap();
    drop(stdin);
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Piped, the console prints the lines an edit adds: each redraw of the running status
    // adds its first line, with the elapsed time of the moment.
    let mut running = Vec::new();
    let mut all = String::new();
    let done = loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("the console goes on")
            .unwrap()
            .unwrap_or_else(|| panic!("the console ended before the job: {all}"));
        all.push_str(&line);
        all.push('\n');
        if line.contains("⏳ staging · decommission · job #1 · alice · ") {
            running.push((std::time::Instant::now(), line));
        } else if line.contains("✅ staging · decommission · job #1 · alice · done in") {
            break (std::time::Instant::now(), line);
        }
    };
    assert!(running.len() >= 5, "the job ran 7.5 s: {all}");
    let arrivals: Vec<std::time::Instant> = running.iter().map(|(at, _)| *at).chain([done.0]).collect();
    let longest = arrivals.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        longest <= std::time::Duration::from_millis(1500),
        "the status line went {longest:?} without a redraw: {all}"
    );
    // The elapsed time shown moves on with them, one second at a time.
    let shown: Vec<u64> = running
        .iter()
        .map(|(_, l)| l.rsplit(" · ").next().unwrap().trim_end_matches('s').parse().unwrap())
        .collect();
    assert!(shown.windows(2).all(|w| w[1] >= w[0] && w[1] <= w[0] + 2), "{shown:?}");
    assert!(*shown.last().unwrap() >= 5, "{shown:?}");
    let _ = child.wait().await;
}
