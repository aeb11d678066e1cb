//! The CLI under the same approval rules as chat, through the real binary, with a bot on the
//! same database: the CLI files the request (the bot announces it in the environment's
//! channel from the outbox), waits, and runs once a second person approves; `--no-wait` exits
//! and a later run picks the request up; a denial ends it; `--break-glass` runs at once,
//! audited and announced.
use crate::support;

use std::process::Stdio;
use std::time::Duration;

use argos::bot::port::ChatEvent;
use argos::permissions::Identity;
use argos::store::{JobState, Store};
use support::chat::{Posted, RecordingPort};
use support::fake_aws::{Op, StackScript};
use support::world::{Console, World as AnyWorld};
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

const TEMPLATE: &str = r#"{"Resources": {
  "ApiEc2Instance": {"Type": "AWS::EC2::Instance", "Properties": {}}}}"#;
const RESOURCES: &[(&str, &str)] = &[("ApiEc2Instance", "AWS::EC2::Instance")];

fn carol(text: &str) -> ChatEvent {
    ChatEvent {
        identity: Identity {
            platform: argos::address::Surface::CONSOLE,
            user_id: "carol".into(),
            display_name: "carol".into(),
            platform_roles: vec![],
        },
        channel: "ops".into(),
        text: text.into(),
    }
}

fn cli(project: &TestProject, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_argos"))
        .arg("--config")
        .arg(&project.config_path)
        .args(args)
        .env("USER", "alice")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("argos starts")
}

async fn finished(child: tokio::process::Child) -> (String, i32) {
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("the CLI ends")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (text, out.status.code().unwrap_or(-1))
}

/// Waits (polling the store) until job `id` has an approval request in `state`.
async fn until_request(store: &Store, id: u64, state: &str) {
    let ok = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if store
                .approval_for_job(id)
                .ok()
                .flatten()
                .is_some_and(|a| a.state.as_str() == state)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "request #{id} never became {state}");
}

/// Waits until the port shows a message containing `needle`.
async fn until_posted(port: &RecordingPort, needle: &str) -> String {
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            for p in port.posted() {
                if let Posted::Sent { text, .. } = p {
                    if text.contains(needle) {
                        return text;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("nothing with {needle:?} was posted: {:#?}", port.posted()))
}

type World = AnyWorld<Console>;

async fn world() -> World {
    world_with("").await
}

/// Staging's stack, whose next deletion succeeds, on the fake AWS (50 times faster than
/// scenario time), and a bot on the project's store with a recording port; `extra` is added
/// to the config.
async fn world_with(extra: &str) -> World {
    let w = AnyWorld::builder()
        .time_scale(50.0)
        .config(CONFIG)
        .config(extra)
        .console()
        .await;
    w.aws.add_stack("argos-staging", TEMPLATE, &[], RESOURCES);
    w.aws.script_next_for(
        "argos-staging",
        Op::Delete,
        StackScript::delete_success("argos-staging", RESOURCES, &[1.0]),
    );
    w.chat.bot.resume_unfinished().await;
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_waits_for_a_second_person_and_then_runs() {
    let w = world().await;
    let child = cli(&w.project, &["staging", "decommission", "--yes"]);
    let store = w.chat.bot.store().clone();
    until_request(&store, 1, "pending").await;
    // The bot announces the request in the environment's channel, with its buttons.
    let request = until_posted(&w.chat.port, "Approval needed").await;
    assert!(
        request.contains("job #1 · staging decommission requested by alice from the CLI"),
        "{request}"
    );
    assert!(request.contains("ApiEc2Instance"), "the plan is shown: {request}");
    assert_eq!(w.aws.count("DeleteStack"), 0, "nothing happens before approval");

    let reply = w.chat.bot.handle(carol("approve 1")).await.unwrap();
    assert!(
        reply.starts_with("✅ Approved: job #1 runs from alice's CLI"),
        "{reply}"
    );
    let (out, code) = finished(child).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("approval request #1 filed"), "{out}");
    assert!(out.contains("request #1 approved by carol"), "{out}");
    assert!(out.contains("decommissioned argos-staging"), "{out}");

    let job = store.job(1).unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.platform, argos::address::Surface::Cli);
    assert_eq!(w.aws.count("DeleteStack"), 1);
    let audit: Vec<String> = store.audit_log(50).unwrap().into_iter().map(|a| a.outcome).collect();
    assert!(
        audit.iter().any(|o| o.starts_with("approval requested: job #1")),
        "{audit:?}"
    );
    assert!(audit.iter().any(|o| o == "ok: approved job #1 started"), "{audit:?}");
    assert!(audit.iter().any(|o| o == "approved job #1 (1/1)"), "{audit:?}");
    assert!(store.held_locks().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wait_files_the_request_and_a_denial_ends_it() {
    let w = world().await;
    let (out, code) = finished(cli(&w.project, &["staging", "decommission", "--yes", "--no-wait"])).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("approval request #1 is waiting"), "{out}");
    let store = w.chat.bot.store().clone();
    assert_eq!(store.job(1).unwrap().unwrap().state, JobState::Queued);

    // Running it again finds the same request, still waiting.
    let (out, code) = finished(cli(&w.project, &["staging", "decommission", "--yes", "--no-wait"])).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("approval request #1 for `staging decommission` is on file"),
        "{out}"
    );
    assert_eq!(store.recent_jobs(10).unwrap().len(), 1, "no second request");

    let reply = w.chat.bot.handle(carol("deny 1 not today")).await.unwrap();
    assert_eq!(reply, "❌ Job #1 denied.");
    // The denied request is over: another run files a new one.
    let (out, code) = finished(cli(&w.project, &["staging", "decommission", "--yes", "--no-wait"])).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("approval request #2 is waiting"), "{out}");
    let a = store.approval_for_job(1).unwrap().unwrap();
    assert_eq!(a.state, argos::store::ApprovalState::Denied);
    assert_eq!(store.job(1).unwrap().unwrap().state, JobState::Cancelled);
    assert_eq!(w.aws.count("DeleteStack"), 0, "nothing was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_cli_hears_the_denial() {
    let w = world().await;
    let child = cli(&w.project, &["staging", "decommission", "--yes"]);
    let store = w.chat.bot.store().clone();
    until_request(&store, 1, "pending").await;
    w.chat.bot.handle(carol("deny 1 change freeze")).await.unwrap();
    let (out, code) = finished(child).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("approval request #1 was denied by carol: change freeze; nothing was done"),
        "{out}"
    );
    assert_eq!(w.aws.count("DeleteStack"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_runs_at_once_audited_and_announced() {
    let w = world().await;
    let (out, code) = finished(cli(
        &w.project,
        &[
            "staging",
            "decommission",
            "--yes",
            "--break-glass",
            "the database is on fire",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("decommissioned argos-staging"), "{out}");
    let store = w.chat.bot.store().clone();
    assert!(store.approval_for_job(1).unwrap().is_none(), "no request was filed");
    let audit: Vec<String> = store.audit_log(50).unwrap().into_iter().map(|a| a.outcome).collect();
    assert!(
        audit.iter().any(|o| o == "break-glass: the database is on fire"),
        "{audit:?}"
    );
    let said = until_posted(&w.chat.port, "Break-glass").await;
    assert!(
        said.contains("alice runs `staging decommission` from the CLI") && said.contains("the database is on fire"),
        "{said}"
    );

    // A break-glass without a reason is refused before anything happens.
    let (out, code) = finished(cli(&w.project, &["staging", "decommission", "--yes", "--break-glass"])).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--break-glass needs a reason"), "{out}");
}

/// `argos console` as the operating-system user `user` (no `--user`: it goes by `$USER`, as
/// the CLI does), reading commands from a pipe.
fn console_as(project: &TestProject, user: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_argos"))
        .arg("--config")
        .arg(&project.config_path)
        .arg("console")
        .env("USER", user)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("argos console starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requester_cannot_approve_from_another_surface() {
    use tokio::io::AsyncWriteExt;
    let w = world().await;
    let (out, code) = finished(cli(&w.project, &["staging", "decommission", "--yes", "--no-wait"])).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("approval request #1 is waiting"), "{out}");

    // alice's own console (the same operating-system user) may not approve alice's CLI request.
    let mut console = console_as(&w.project, "alice");
    let mut stdin = console.stdin.take().unwrap();
    stdin.write_all(b"approve 1\n").await.unwrap();
    drop(stdin);
    let (said, code) = finished(console).await;
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("You requested job #1; someone else has to approve it."),
        "{said}"
    );
    let store = w.chat.bot.store().clone();
    let a = store.approval_for_job(1).unwrap().unwrap();
    assert_eq!(a.state, argos::store::ApprovalState::Pending);
    assert!(a.votes.is_empty(), "no vote was recorded: {:?}", a.votes);
    let (out, code) = finished(cli(&w.project, &["staging", "decommission", "--yes", "--no-wait"])).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("approval request #1 is waiting"), "{out}");
    assert_eq!(w.aws.count("DeleteStack"), 0, "nothing was deleted");

    // Someone else approves, and the CLI runs it.
    let reply = w.chat.bot.handle(carol("approve 1")).await.unwrap();
    assert!(
        reply.starts_with("✅ Approved: job #1 runs from alice's CLI"),
        "{reply}"
    );
    let (out, code) = finished(cli(&w.project, &["staging", "decommission", "--yes"])).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("request #1 approved by carol"), "{out}");
    assert_eq!(w.aws.count("DeleteStack"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_to_console_carol_reach_carols_console() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    // The form the settings document: `console:<user>`. No bot here but carol's console.
    let w = AnyWorld::builder()
        .time_scale(50.0)
        .config(&CONFIG.replace("announce: \"console:ops\"", "announce: \"console:carol\""))
        .build()
        .await;
    w.aws.add_stack("argos-staging", TEMPLATE, &[], RESOURCES);
    let project = &w.project;
    let mut console = console_as(project, "carol");
    let mut lines = tokio::io::BufReader::new(console.stdout.take().unwrap()).lines();
    let (out, code) = finished(cli(project, &["staging", "decommission", "--yes", "--no-wait"])).await;
    assert_eq!(code, 0, "{out}");
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let hit = line.contains("Approval needed · job #1 · staging decommission requested by alice");
            seen.push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "carol's console never showed the request: {seen:#?}"
    );
    eprintln!(
        "TIMING the request reached carol's console {:?} after the CLI filed it",
        started.elapsed()
    );
    let mut stdin = console.stdin.take().unwrap();
    stdin.write_all(b"deny 1\n").await.unwrap();
    drop(stdin);
    let (rest, code) = finished(console).await;
    assert_eq!(code, 0, "{rest}");
    let store = Store::open(&project.config().database_path()).unwrap();
    assert_eq!(
        store.approval_for_job(1).unwrap().unwrap().state,
        argos::store::ApprovalState::Denied
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_is_one_person_on_every_platform() {
    let w = world_with(
        r#"
approvals:
  policies:
    - { environments: ["*"], actions: [decommission], approvers: 2 }
people:
  alice: { discord: "112233445566778899" }
  carol: { discord: "112233445566778900" }
"#,
    )
    .await;
    let (out, code) = finished(cli(&w.project, &["staging", "decommission", "--yes", "--no-wait"])).await;
    assert_eq!(code, 0, "{out}");
    let alice_on_discord = ChatEvent {
        identity: Identity {
            platform: argos::address::Surface::DISCORD,
            user_id: "112233445566778899".into(),
            display_name: "Alice".into(),
            platform_roles: vec![],
        },
        channel: "1200000000000000001".into(),
        text: "approve 1".into(),
    };
    // alice's Discord account (`people.alice.discord`) holds her console roles, ...
    let reply = w
        .chat
        .bot
        .handle(ChatEvent {
            text: "whoami".into(),
            ..alice_on_discord.clone()
        })
        .await
        .unwrap();
    assert!(reply.contains("admins"), "{reply}");
    // ... and is alice: it may not approve alice's CLI request.
    let reply = w.chat.bot.handle(alice_on_discord.clone()).await.unwrap();
    assert_eq!(reply, "✋ You requested job #1; someone else has to approve it.");
    let a = w.chat.bot.store().approval_for_job(1).unwrap().unwrap();
    assert_eq!((a.state.as_str(), a.votes.len()), ("pending", 0));

    // One person, one vote: carol on the console and then on Discord counts once.
    let reply = w.chat.bot.handle(carol("approve 1")).await.unwrap();
    assert_eq!(reply, "✔ Approved (1/2): job #1 needs more approval.");
    let carol_on_discord = ChatEvent {
        identity: Identity {
            user_id: "112233445566778900".into(),
            display_name: "Carol".into(),
            ..alice_on_discord.identity.clone()
        },
        ..alice_on_discord
    };
    let reply = w.chat.bot.handle(carol_on_discord).await.unwrap();
    assert_eq!(reply, "You have already voted on job #1.");
    let a = w.chat.bot.store().approval_for_job(1).unwrap().unwrap();
    assert_eq!((a.state.as_str(), a.approvals()), ("pending", 1));
    assert_eq!(w.aws.count("DeleteStack"), 0);
}
