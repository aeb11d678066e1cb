//! Announcements of mutating jobs in the environment's announce channel
//! (`environments.<env>.announce`), through the outbox: a console job's start and end (a
//! failure with the first line of its error), none for a job asked in the announce channel
//! itself; a CLI job's, delivered to the announcing console exactly once; and a chat job's,
//! posted once by three `argos bot` replicas on one PostgreSQL database.
use crate::support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use argos::bot::port::ChatEvent;
use argos::permissions::Identity;
use argos::store::{JobState, Store};
use support::chat::Posted;
use support::fake_aws::{FakeAws, Op, StackScript};
use support::fake_discord::*;
use support::replicas::*;
use support::world::{World, NO_APPROVALS};
use support::TestProject;

const CONFIG: &str = r#"
defaults:
  announce: "console:ops"
chat:
  commands_per_minute: 120
  command_burst: 50
  edit_interval_ms: 20
permissions:
  roles:
    admins: { console_users: [alice, carol] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
"#;

const STACK: &str = "argos-staging";
const TEMPLATE: &str = r#"{"Resources": {
  "ApiEc2Instance": {"Type": "AWS::EC2::Instance", "Properties": {}}}}"#;
const RESOURCES: &[(&str, &str)] = &[("ApiEc2Instance", "AWS::EC2::Instance")];

/// Staging's stack on the fake AWS, whose next deletion runs `script`.
fn stack_to_delete(aws: &FakeAws, script: StackScript) {
    aws.add_stack(STACK, TEMPLATE, &[], RESOURCES);
    aws.script_next_for(STACK, Op::Delete, script);
}

fn deleted() -> StackScript {
    StackScript::delete_success(STACK, RESOURCES, &[1.0])
}

/// carol's command from the console channel `channel` (a console's channel is `console:<user>`).
fn carol_in(channel: &str, text: &str) -> ChatEvent {
    ChatEvent {
        identity: Identity {
            platform: argos::address::Surface::CONSOLE,
            user_id: "carol".into(),
            display_name: "carol".into(),
            platform_roles: vec![],
        },
        channel: channel.into(),
        text: text.into(),
    }
}

/// Waits (polling the store) until job `id` has ended.
async fn until_ended(store: &Store, id: u64) -> argos::store::JobRecord {
    poll_until(&format!("the end of job #{id}"), Duration::from_secs(60), || {
        store.job(id).ok().flatten().filter(|j| j.state.is_finished())
    })
    .await
}

/// Whether `text` announces a staging decommission's start or end (a status message reads
/// `**staging · decommission**`).
fn is_announcement(text: &str) -> bool {
    text.contains("**staging decommission** · job #")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_jobs_are_announced_once_and_not_in_the_channel_they_were_asked_in() {
    let w = World::builder()
        .time_scale(50.0)
        .config(CONFIG)
        .config(NO_APPROVALS)
        .console()
        .await;
    w.chat.bot.resume_unfinished().await;
    let store = w.chat.bot.store().clone();

    // Job #1 is asked in the announce channel itself: its status message is all it posts there.
    stack_to_delete(&w.aws, deleted());
    w.chat.bot.handle(carol_in("console:ops", "staging decommission")).await;
    assert_eq!(until_ended(&store, 1).await.state, JobState::Succeeded);

    // Job #2, asked in carol's own console, fails: its start and end go to console:ops.
    stack_to_delete(
        &w.aws,
        StackScript::delete_failed(STACK, RESOURCES, "ApiEc2Instance", "the volume is in use", &[1.0]),
    );
    let started = Instant::now();
    w.chat
        .bot
        .handle(carol_in("console:carol", "staging decommission"))
        .await;
    assert_eq!(until_ended(&store, 2).await.state, JobState::Failed);
    let announced = poll_until("job #2's end announced", Duration::from_secs(30), || {
        let sent: Vec<(String, String)> = w
            .chat
            .port
            .posted()
            .into_iter()
            .filter_map(|p| match p {
                Posted::Sent { channel, text, .. } if is_announcement(&text) => Some((channel, text)),
                _ => None,
            })
            .collect();
        sent.iter().any(|(_, t)| t.contains("job #2 · failed")).then_some(sent)
    })
    .await;
    println!(
        "TIMING job #2's start and end announced {:?} after it was asked",
        started.elapsed()
    );
    // The outbox is delivered in order: job #1's would have come before job #2's end.
    let texts: Vec<&str> = announced.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        announced.len(),
        2,
        "job #2's start and end, nothing of job #1: {texts:#?}"
    );
    assert!(announced.iter().all(|(c, _)| c == "console:ops"), "{announced:#?}");
    assert_eq!(
        texts[0],
        "▶️ **staging decommission** · job #2 · started by carol from the console"
    );
    assert!(
        texts[1].starts_with("❌ **staging decommission** · job #2 · failed after ") && !texts[1].contains('\n'),
        "one line: {}",
        texts[1]
    );
    let result = store.job(2).unwrap().unwrap().result.unwrap_or_default();
    let first = result.lines().next().unwrap_or_default();
    assert!(
        !first.is_empty() && texts[1].ends_with(first),
        "{} / {result}",
        texts[1]
    );
    // Job #1's status message went to console:ops, once, as to any channel a job is asked in.
    let status_in_ops: Vec<Posted> = w
        .chat
        .port
        .posted()
        .into_iter()
        .filter(
            |p| matches!(p, Posted::Sent { channel, text, .. } if channel == "console:ops" && text.contains("job #1")),
        )
        .collect();
    assert_eq!(status_in_ops.len(), 1, "{status_in_ops:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_taken_over_does_not_announce_its_start_again() {
    use argos::bot::announcements::{self, Announced, JobFacts};
    use argos::store::{LeaseSettings, NewJob, StartOutcome};
    let w = World::builder()
        .time_scale(50.0)
        .config(CONFIG)
        .config(NO_APPROVALS)
        .console()
        .await;
    let store = w.chat.bot.store().clone();
    let config = w.project.config();
    stack_to_delete(&w.aws, deleted());
    // A replica that is gone (its lease ran out at once) started job #1 and announced it.
    let job = NewJob {
        requester_id: "carol".into(),
        requester_name: "carol".into(),
        platform: argos::address::Surface::CONSOLE,
        channel: "console:carol".into(),
        env: "staging".into(),
        action: "decommission".into(),
        args: "{}".into(),
        person: "console:carol".into(),
        break_glass: None,
    };
    let gone = LeaseSettings {
        lease: Duration::ZERO,
        heartbeat: Duration::ZERO,
    };
    let StartOutcome::Started { id, .. } = store.start_job(&job, "bot-gone", gone).unwrap() else {
        panic!("the environment is free");
    };
    let record = store.job(id).unwrap().unwrap();
    let action = argos::command::Action::Decommission;
    let facts = JobFacts::of(&record, &action);
    assert_eq!(announcements::job_started(&store, &config, &facts), Announced::Queued);
    std::thread::sleep(Duration::from_millis(5));

    // This bot takes it over and runs it to its end: the start is not announced twice.
    assert_eq!(w.chat.bot.resume_unfinished().await, vec![id]);
    assert_eq!(until_ended(&store, id).await.state, JobState::Succeeded);
    let announced = poll_until("the end announced", Duration::from_secs(30), || {
        let sent: Vec<String> = w
            .chat
            .port
            .posted()
            .into_iter()
            .filter_map(|p| match p {
                Posted::Sent { channel, text, .. } if is_announcement(&text) && channel == "console:ops" => Some(text),
                _ => None,
            })
            .collect();
        sent.iter().any(|t| t.contains("succeeded")).then_some(sent)
    })
    .await;
    assert_eq!(announced.len(), 2, "{announced:#?}");
    assert!(announced[0].starts_with("▶️ **staging decommission** · job #1 · started by carol"));
    assert!(announced[1].starts_with("✅ **staging decommission** · job #1 · succeeded in "));
    // The end has its key too: announcing it again queues nothing.
    let again = announcements::job_ended(&store, &config, &facts, JobState::Succeeded, "", Duration::ZERO);
    assert_eq!(again, Announced::AlreadyQueued);
}

/// `argos` with `args` as the operating-system user `user`.
fn argos_as(project: &TestProject, user: &str, args: &[&str], stdin: Stdio) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_argos"))
        .arg("--config")
        .arg(&project.config_path)
        .args(args)
        .env("USER", user)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("argos starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_job_is_announced_once_in_the_console_that_is_its_announce_channel() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let w = World::builder()
        .time_scale(50.0)
        .config(&CONFIG.replace("console:ops", "console:carol"))
        .config(NO_APPROVALS)
        .build()
        .await;
    stack_to_delete(&w.aws, deleted());
    let project = &w.project;
    let mut console = argos_as(project, "carol", &["console"], Stdio::piped());
    let mut lines = tokio::io::BufReader::new(console.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let cli = argos_as(project, "alice", &["staging", "decommission", "--yes"], Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(90), cli.wait_with_output())
        .await
        .expect("the CLI ends")
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("decommissioned argos-staging"), "{said}");

    // The console shows plain text: no bold markers.
    const START: &str = "▶️ staging decommission · job #1 · started by alice from the CLI";
    const END: &str = "✅ staging decommission · job #1 · succeeded in ";
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line);
            if seen.iter().any(|l| l.contains(START)) && seen.iter().any(|l| l.contains(END)) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "carol's console never showed both: {seen:#?}"
    );
    println!(
        "TIMING the CLI job's start and end reached carol's console {:?} after the CLI started",
        started.elapsed()
    );
    // Leaving the console: whatever else it prints, no second copy.
    let mut stdin = console.stdin.take().unwrap();
    stdin.write_all(b"jobs\n").await.unwrap();
    drop(stdin);
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line);
        }
    })
    .await;
    assert!(rest.is_ok(), "the console ends at the end of its input");
    let _ = console.wait().await;
    assert!(
        seen.iter()
            .any(|l| l.contains("#1 staging decommission — succeeded by alice")),
        "the console read the job list after them: {seen:#?}"
    );
    assert_eq!(seen.iter().filter(|l| l.contains(START)).count(), 1, "{seen:#?}");
    assert_eq!(seen.iter().filter(|l| l.contains(END)).count(), 1, "{seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_announce_a_chat_job_once() {
    let aws = FakeAws::start().await;
    aws.set_time_scale(20.0);
    stack_to_delete(&aws, deleted());
    let discord = FakeDiscord::start_sharded(FakeLimits::DISCORD).await;
    let extra = format!("defaults:\n  announce: \"discord:{OTHER_CHANNEL}\"\n");
    let project = TestProject::new(&aws.endpoint_url(), &replica_yaml(&[TestUser::admin()], true, &extra));
    let db_url = support::postgres::shared().new_database();
    let names = ["a", "b", "c"];
    let mut replicas = Replicas(Vec::new());
    for name in names {
        let url = discord.add_session(name).await;
        let config = write_replica_config(&project, name, &url);
        replicas
            .0
            .push(BotReplica::spawn(name, &config, &db_url, project.dir.path()));
    }
    let up = Instant::now();
    discord.wait_sessions_ready(&names).await;
    for r in &mut replicas.0 {
        r.wait_running().await;
        r.wait_share(names.len()).await;
    }
    println!("TIMING 3 replicas connected and running in {:?}", up.elapsed());

    let asked = Instant::now();
    discord.push_message(CHANNEL, &TestUser::admin(), "!argos staging decommission");
    let in_announce = |s: &State| -> Vec<Sent> {
        s.sent
            .iter()
            .filter(|m| m.channel == OTHER_CHANNEL.to_string())
            .cloned()
            .collect()
    };
    discord
        .wait_for_within("the end announced", Duration::from_secs(90), |s| {
            in_announce(s)
                .iter()
                .any(|m| {
                    m.content
                        .starts_with("✅ **staging decommission** · job #1 · succeeded in")
                })
                .then_some(())
        })
        .await;
    println!(
        "TIMING the job's end announced {:?} after it was asked",
        asked.elapsed()
    );
    let store = {
        let url = db_url.clone();
        tokio::task::spawn_blocking(move || Store::connect(&url))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(until_ended(&store, 1).await.state, JobState::Succeeded);
    // Every replica has delivered its outbox share a few times since (a round each 200 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = discord.with_state(|s| in_announce(s));
    let texts: Vec<&str> = sent.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(sent.len(), 2, "one start and one end, once: {texts:#?}");
    assert!(sent.iter().all(|m| m.kind == SentKind::Create), "{sent:#?}");
    assert!(
        texts[0].starts_with("▶️ **staging decommission** · job #1 · started by ")
            && texts[0].ends_with(" from Discord"),
        "{}",
        texts[0]
    );
    assert!(texts[1].starts_with("✅ **staging decommission** · job #1 · succeeded in"));
    // The channel it was asked in has the status message only (one message and its edits).
    let asked_in: Vec<Sent> = discord.with_state(|s| {
        s.sent
            .iter()
            .filter(|m| m.channel == CHANNEL.to_string())
            .cloned()
            .collect()
    });
    let creates = asked_in.iter().filter(|m| m.kind == SentKind::Create).count();
    assert_eq!(creates, 1, "{asked_in:#?}");
    assert!(!asked_in.iter().any(|m| is_announcement(&m.content)), "{asked_in:#?}");
    let posted_by: Vec<Option<String>> = sent.iter().map(|m| m.session.clone()).collect();
    println!("TIMING announcements posted through sessions {posted_by:?}");
    discord.assert_no_unexpected();
}

/// The replicas, whose logs are shown when the test fails; killed when dropped.
struct Replicas(Vec<BotReplica>);

impl Drop for Replicas {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tails(&self.0, 40);
        }
    }
}
