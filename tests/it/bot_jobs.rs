//! The bot's jobs against the scripted fake AWS, seen through a recording chat port: a restart
//! in the middle of a job re-attaches and keeps editing the same status message, two users
//! racing for one environment, a cancel that reaches AWS, rate limits and denials.
use crate::support;

use std::time::Duration;

use argos::bot::port::ChatEvent;
use argos::bot::Bot;
use argos::permissions::Identity;
use argos::store::{JobState, LeaseSettings, NewJob, StartOutcome, Store};
use support::chat::{Posted, RecordingPort};
use support::fake_aws::{Ec2Image, FakeAws, Op, StackScript};
use support::TestProject;

const CONFIG: &str = r#"
chat:
  commands_per_minute: 60
  command_burst: 3
  edit_interval_ms: 50
permissions:
  roles:
    admins: { console_users: [alice, carol] }
    deployers: { console_users: [bob] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
    - role: deployers
      environments: [staging]
      actions: [deploy, status]
"#;

const TEMPLATE: &str = r#"{"Resources": {"ApiEc2Instance": {"Type": "AWS::EC2::Instance", "Properties": {}}}}"#;

fn user(name: &str) -> Identity {
    Identity {
        platform: argos::address::Surface::CONSOLE,
        user_id: name.into(),
        display_name: name.into(),
        platform_roles: vec![],
    }
}

fn said(name: &str, text: &str) -> ChatEvent {
    ChatEvent {
        identity: user(name),
        channel: "ops".into(),
        text: text.into(),
    }
}

/// Waits (bounded) until the fake has seen `action`.
async fn until_called(fake: &FakeAws, action: &str) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !fake.actions().iter().any(|a| a.ends_with(action)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{action} was never called; calls: {:?}", fake.actions()));
}

async fn setup(fake: &FakeAws) -> (TestProject, Bot, std::sync::Arc<RecordingPort>) {
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    let engine = project.engine().await;
    let store = Store::open(&project.config().database_path()).unwrap();
    let bot = Bot::new(engine, store);
    let port = RecordingPort::new();
    bot.add_port(port.clone());
    (project, bot, port)
}

fn slow_update(fake: &FakeAws) {
    support::slow_staging_update(fake);
    fake.add_image(Ec2Image::owned("ami-0123", "argos-image", &[("App", "argos")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_job_re_attaches_and_edits_the_same_message() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(4.0);
    let (project, bot, port) = setup(&fake).await;
    // The bot "crashed" while decommissioning: the stack is still being deleted, and the job
    // is recorded as running with its status message.
    fake.add_stack(
        "argos-staging",
        TEMPLATE,
        &[],
        &[("ApiEc2Instance", "AWS::EC2::Instance")],
    );
    fake.script_next_for(
        "argos-staging",
        Op::Delete,
        StackScript::delete_success("argos-staging", &[("ApiEc2Instance", "AWS::EC2::Instance")], &[4.0]),
    );
    bot.engine()
        .aws
        .cfn()
        .await
        .delete_stack()
        .stack_name("argos-staging")
        .send()
        .await
        .unwrap();
    let job = NewJob {
        requester_id: "alice".into(),
        requester_name: "alice".into(),
        platform: argos::address::Surface::CONSOLE,
        channel: "ops".into(),
        env: "staging".into(),
        action: "decommission".into(),
        args: "{}".into(),
        person: String::new(),
        break_glass: None,
    };
    // It was started by a replica that is gone: its lease has run out.
    let gone = LeaseSettings {
        lease: Duration::ZERO,
        heartbeat: Duration::ZERO,
    };
    let StartOutcome::Started { id, token } = bot.store().start_job(&job, "bot-gone", gone).unwrap() else {
        panic!("the environment is free");
    };
    bot.store().set_status_message(id, token, "msg-before-restart").unwrap();
    std::thread::sleep(Duration::from_millis(5));

    let resumed = bot.resume_unfinished().await;
    assert_eq!(resumed, vec![id]);
    bot.idle().await;

    let posted = port.posted();
    assert!(
        posted
            .iter()
            .all(|p| matches!(p, Posted::Edited { id, .. } if id == "msg-before-restart")),
        "{posted:?}"
    );
    assert!(posted
        .iter()
        .any(|p| matches!(p, Posted::Edited { text, .. } if text.contains("picking it up again"))));
    let last = port.text_of("msg-before-restart").unwrap();
    assert!(last.starts_with("✅ **staging · decommission** · job #1"), "{last}");
    assert_eq!(bot.store().job(id).unwrap().unwrap().state, JobState::Succeeded);
    // It followed the deletion to its end before re-running the (idempotent) decommission.
    assert_eq!(fake.stack_status("argos-staging"), None);
    let events = fake
        .actions()
        .iter()
        .filter(|a| a.ends_with("DescribeStackEvents"))
        .count();
    assert!(events >= 2, "{:?}", fake.actions());
    drop(project);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_racing_for_one_environment_and_a_cancel() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(1.0);
    let (_project, bot, port) = setup(&fake).await;
    slow_update(&fake);

    assert_eq!(
        bot.handle(said("alice", "staging update")).await,
        None,
        "the status message is the answer"
    );
    let busy = bot.handle(said("carol", "staging deploy")).await.unwrap();
    assert!(
        busy.starts_with(
            "⏸ staging is busy: job #1 (update by alice) is running. Try again when it finishes, or `cancel 1`. It runs in bot-"
        ),
        "{busy}"
    );

    until_called(&fake, "ExecuteChangeSet").await;
    // Bob may not cancel alice's update (he has no update permission on staging)...
    let denied = bot.handle(said("bob", "cancel 1")).await.unwrap();
    assert!(
        denied.contains("You don't have permission for update on staging"),
        "{denied}"
    );
    // ...carol, an admin, may.
    assert_eq!(
        bot.handle(said("carol", "cancel 1")).await.unwrap(),
        "🛑 Cancelling job #1…"
    );
    bot.idle().await;

    assert!(
        fake.actions().iter().any(|a| a == "cloudformation:CancelUpdateStack"),
        "{:?}",
        fake.actions()
    );
    let job = bot.store().job(1).unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    let Some(Posted::Sent { id, .. }) = port.posted().into_iter().next() else {
        panic!("no status message")
    };
    let last = port.text_of(&id).unwrap();
    assert!(
        last.starts_with("🛑 **staging · update** · job #1 · alice · cancelled after"),
        "{last}"
    );
    // Only one job ever started: the second request changed nothing.
    assert_eq!(bot.store().recent_jobs(10).unwrap().len(), 1);
    let audit = bot.store().audit_log(20).unwrap();
    assert!(audit
        .iter()
        .any(|a| a.user_id == "carol" && a.outcome == "busy: job #1 running"));
}

#[tokio::test]
async fn rate_limits_and_denials_are_polite_and_start_nothing() {
    let fake = FakeAws::start().await;
    let (_project, bot, _port) = setup(&fake).await;
    for _ in 0..3 {
        assert!(bot
            .handle(said("bob", "whoami"))
            .await
            .unwrap()
            .starts_with("You are bob"));
    }
    let limited = bot.handle(said("bob", "whoami")).await.unwrap();
    assert!(
        limited.starts_with("🐢 Easy — you've sent a lot of commands. Try again in "),
        "{limited}"
    );
    // Limits are per user.
    assert!(bot
        .handle(said("alice", "whoami"))
        .await
        .unwrap()
        .starts_with("You are alice"));
    let denied = bot.handle(said("mallory", "staging commission")).await.unwrap();
    assert_eq!(
        denied,
        "⛔ You don't have permission for commission on staging. Ask an admin to grant it in config/argos.yaml."
    );
    let unknown = bot.handle(said("alice", "qa status")).await.unwrap();
    assert!(unknown.contains("unknown environment 'qa'"), "{unknown}");
    assert!(fake.calls().is_empty(), "nothing reached AWS: {:?}", fake.actions());
    assert!(bot.store().recent_jobs(10).unwrap().is_empty());
    assert_eq!(bot.store().audit_log(50).unwrap().len(), 7, "every command is audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_mode_runs_the_second_job_after_the_first() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(1.0);
    let project = TestProject::new(
        &fake.endpoint_url(),
        &CONFIG.replace(
            "  edit_interval_ms: 50",
            "  edit_interval_ms: 50\n  queue_when_busy: true",
        ),
    );
    let bot = Bot::new(
        project.engine().await,
        Store::open(&project.config().database_path()).unwrap(),
    );
    let port = RecordingPort::new();
    bot.add_port(port.clone());
    slow_update(&fake);

    assert_eq!(bot.handle(said("alice", "staging update")).await, None);
    let queued = bot.handle(said("carol", "staging clean")).await.unwrap();
    assert_eq!(
        queued,
        "🕒 Job #2 is queued behind job #1 (update by alice) on staging."
    );
    assert_eq!(bot.store().job(2).unwrap().unwrap().state, JobState::Queued);
    until_called(&fake, "ExecuteChangeSet").await;
    assert!(
        !fake.actions().iter().any(|a| a.ends_with("DeregisterImage")),
        "the queued job waits its turn"
    );
    bot.handle(said("alice", "cancel 1")).await;
    bot.idle().await;

    let first = bot.store().job(1).unwrap().unwrap();
    let second = bot.store().job(2).unwrap().unwrap();
    assert_eq!((first.state, second.state), (JobState::Cancelled, JobState::Succeeded));
    assert!(
        second.started_at.unwrap() >= first.finished_at.unwrap(),
        "one operation per environment at a time"
    );
    assert!(fake.actions().iter().any(|a| a == "ec2:DeregisterImage"));
}

#[tokio::test]
async fn a_missing_job_and_an_unknown_role_are_answered_audited_and_start_nothing() {
    let fake = FakeAws::start().await;
    let (_project, bot, port) = setup(&fake).await;

    assert_eq!(
        bot.handle(said("alice", "job 999")).await.unwrap(),
        "❓ There is no job #999."
    );
    assert_eq!(
        bot.handle(said("alice", "cancel 999")).await.unwrap(),
        "❓ There is no job #999."
    );
    // An unknown role is refused before a job exists, naming the configured roles...
    assert_eq!(
        bot.handle(said("bob", "staging deploy api nosuchrole")).await.unwrap(),
        "❓ unknown role 'nosuchrole'; configured roles: knowledge, api, front, collector"
    );
    // ...to those who may deploy there; others learn only that they may not.
    assert!(bot
        .handle(said("mallory", "staging deploy nosuchrole"))
        .await
        .unwrap()
        .starts_with("⛔ You don't have permission for deploy on staging."));

    assert!(bot.store().recent_jobs(10).unwrap().is_empty(), "no job row");
    assert!(port.posted().is_empty(), "no status message");
    assert!(fake.calls().is_empty(), "nothing reached AWS: {:?}", fake.actions());
    let audit: Vec<(String, String, Option<u64>)> = bot
        .store()
        .audit_log(10)
        .unwrap()
        .into_iter()
        .rev()
        .map(|a| (a.command, a.outcome, a.job_id))
        .collect();
    let record = |command: &str, outcome: &str| (command.to_string(), outcome.to_string(), None);
    assert_eq!(
        audit,
        [
            record("job 999", "not found: no job #999"),
            record("cancel 999", "not found: no job #999"),
            record(
                "staging deploy api nosuchrole",
                "refused: unknown role 'nosuchrole'; configured roles: knowledge, api, front, collector"
            ),
            record("staging deploy nosuchrole", "denied: missing deploy on staging"),
        ]
    );
}
