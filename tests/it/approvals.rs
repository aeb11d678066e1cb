//! Approvals against the scripted fake AWS through a recording chat port, with tokio's clock
//! paused where time matters: approve, deny, expiry (also across a restart), self-approval,
//! an approver without the role, two approvers at once, a plan that changes after approval,
//! and the request's button command working on a restarted bot.
use crate::support;

use std::time::Duration;

use argos::bot::port::ChatEvent;
use argos::bot::Bot;
use argos::permissions::Identity;
use argos::store::JobState;
use support::chat::{Posted, RecordingPort};
use support::world::{Console, World as AnyWorld};

const CONFIG: &str = r#"
chat:
  commands_per_minute: 120
  command_burst: 50
  edit_interval_ms: 20
permissions:
  roles:
    admins: { console_users: [alice, carol] }
    leads: { console_users: [dave] }
    deployers: { console_users: [bob] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
    - role: leads
      environments: ["*"]
      actions: [approve, status]
    - role: deployers
      environments: [staging]
      actions: [deploy, status]
approvals:
  ttl_minutes: 30
  policies:
    - environments: [sandbox]
      actions: [decommission]
      approvers: 2
      roles: [admins, leads]
    - environments: [staging]
      actions: [clean]
      approvers: 1
      roles: [leads]
"#;

const TEMPLATE: &str = r#"{"Resources": {
  "Database": {"Type": "AWS::RDS::DBInstance", "Properties": {}},
  "ApiEc2Instance": {"Type": "AWS::EC2::Instance", "Properties": {}}}}"#;

fn said(name: &str, text: &str) -> ChatEvent {
    ChatEvent {
        identity: Identity {
            platform: argos::address::Surface::CONSOLE,
            user_id: name.into(),
            display_name: name.into(),
            platform_roles: vec![],
        },
        channel: "ops".into(),
        text: text.into(),
    }
}

type World = AnyWorld<Console>;

/// Staging and sandbox stacks on the fake AWS (50 times faster than scenario time) and a bot
/// with a recording port, the clock reset.
async fn world() -> World {
    argos::clock::reset();
    let w = AnyWorld::builder().time_scale(50.0).config(CONFIG).console().await;
    for stack in ["argos-staging", "argos-sandbox"] {
        w.aws.add_stack(
            stack,
            TEMPLATE,
            &[],
            &[
                ("Database", "AWS::RDS::DBInstance"),
                ("ApiEc2Instance", "AWS::EC2::Instance"),
            ],
        );
    }
    w
}

/// Waits (bounded) until the request of job `id` has expired.
async fn expired(bot: &Bot, id: u64) {
    for _ in 0..500 {
        if bot.store().approval_for_job(id).unwrap().unwrap().state == argos::store::ApprovalState::Expired {
            // The expiry edits the request message right after recording it.
            tokio::task::yield_now().await;
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("request #{id} did not expire");
}

fn request_text(port: &RecordingPort) -> String {
    match port.posted().first() {
        Some(Posted::Sent { id, .. }) => port.text_of(id).unwrap(),
        other => panic!("no request message: {other:?}"),
    }
}

#[tokio::test]
async fn a_request_shows_the_plan_and_one_approval_starts_the_job() {
    let w = world().await;
    assert_eq!(
        w.chat.bot.handle(said("alice", "staging decommission")).await,
        None,
        "the request message is the answer"
    );
    let text = request_text(&w.chat.port);
    assert!(
        text.starts_with("🔐 **Approval needed** · job #1 · staging decommission requested by alice"),
        "{text}"
    );
    assert!(
        text.contains("snapshot, then delete: Database (AWS::RDS::DBInstance)"),
        "{text}"
    );
    assert!(text.contains("delete: ApiEc2Instance (AWS::EC2::Instance)"), "{text}");
    assert!(
        text.contains("Needs 1 approval(s) from anyone allowed to approve on staging, not alice"),
        "{text}"
    );
    assert!(
        !w.aws.actions().iter().any(|a| a.ends_with("DeleteStack")),
        "nothing happens before approval"
    );

    let own = w.chat.bot.handle(said("alice", "approve 1")).await.unwrap();
    assert_eq!(own, "✋ You requested job #1; someone else has to approve it.");
    let stranger = w.chat.bot.handle(said("bob", "approve 1")).await.unwrap();
    assert!(
        stranger.contains("You don't have permission for approve on staging"),
        "{stranger}"
    );

    let ok = w.chat.bot.handle(said("dave", "approve 1")).await.unwrap();
    assert_eq!(ok, "✅ Approved: job #1 starts now.");
    w.chat.bot.idle().await;
    assert_eq!(w.chat.bot.store().job(1).unwrap().unwrap().state, JobState::Succeeded);
    assert!(w.aws.actions().iter().any(|a| a == "cloudformation:DeleteStack"));
    let audit = w.chat.bot.store().audit_log(50).unwrap();
    assert!(audit
        .iter()
        .any(|a| a.user_id == "dave" && a.outcome == "approved job #1 (1/1)"));
    assert!(audit
        .iter()
        .any(|a| a.user_id == "alice" && a.outcome == "approve refused: own request #1"));
    drop(w.project);
}

#[tokio::test]
async fn deny_tells_the_requester_and_does_nothing() {
    let w = world().await;
    w.chat.bot.handle(said("alice", "staging decommission")).await;
    assert_eq!(
        w.chat
            .bot
            .handle(said("carol", "deny 1 not during the demo"))
            .await
            .unwrap(),
        "❌ Job #1 denied."
    );
    let job = w.chat.bot.store().job(1).unwrap().unwrap();
    assert_eq!(
        (job.state, job.result.as_deref()),
        (JobState::Cancelled, Some("denied by carol: not during the demo"))
    );
    let posted = w.chat.port.posted();
    assert!(posted.iter().any(|p| matches!(p, Posted::Sent { text, .. } if text.starts_with("❌ alice: job #1 (staging decommission) was denied by carol: not during the demo"))));
    assert!(request_text(&w.chat.port).contains("❌ Denied by carol: not during the demo. Nothing was done."));
    assert!(!w.aws.actions().iter().any(|a| a.ends_with("DeleteStack")));
    let late = w.chat.bot.handle(said("dave", "approve 1")).await.unwrap();
    assert_eq!(late, "Job #1's approval request is denied.");
}

#[tokio::test]
async fn a_request_expires_after_its_time() {
    let w = world().await;
    w.chat.bot.handle(said("alice", "staging decommission")).await;
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(29 * 60)).await;
    tokio::task::yield_now().await;
    assert_eq!(
        w.chat.bot.store().approval_for_job(1).unwrap().unwrap().state,
        argos::store::ApprovalState::Pending
    );
    tokio::time::advance(Duration::from_secs(2 * 60)).await;
    expired(&w.chat.bot, 1).await;
    assert_eq!(w.chat.bot.store().job(1).unwrap().unwrap().state, JobState::Cancelled);
    assert!(request_text(&w.chat.port).contains("⌛ Expired: nobody approved in time"));
    assert!(w
        .chat
        .bot
        .store()
        .audit_log(10)
        .unwrap()
        .iter()
        .any(|a| a.outcome == "expired" && a.job_id == Some(1)));
}

#[tokio::test]
async fn expiry_and_buttons_survive_a_restart() {
    let w = world().await;
    w.chat.bot.handle(said("alice", "staging decommission")).await;
    w.chat.bot.handle(said("alice", "staging clean")).await;
    // A new bot on the same database (the old one is gone: its in-memory tasks do not count).
    let Console { bot: bot2, port: port2 } = Console::on(&w.project).await;
    assert_eq!(
        bot2.resume_unfinished().await,
        Vec::<u64>::new(),
        "pending requests are not jobs to resume"
    );
    // The button under request #1 carries `approve 1`: it works on the new bot.
    let ok = bot2.handle(said("carol", "approve 1")).await.unwrap();
    assert_eq!(ok, "✅ Approved: job #1 starts now.");
    bot2.idle().await;
    assert_eq!(bot2.store().job(1).unwrap().unwrap().state, JobState::Succeeded);
    // Request #2 expires on the new bot's clock.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(31 * 60)).await;
    expired(&bot2, 2).await;
    // In this one process the old bot's timer is still alive too; whichever fires first
    // expires it, exactly once (the decision is a compare-and-set in the database).
    let edited = |port: &RecordingPort| {
        port.posted()
            .iter()
            .filter(|p| matches!(p, Posted::Edited { text, .. } if text.contains("⌛ Expired")))
            .count()
    };
    assert_eq!(edited(&port2) + edited(&w.chat.port), 1);
    let expiries = bot2
        .store()
        .audit_log(50)
        .unwrap()
        .into_iter()
        .filter(|a| a.outcome == "expired")
        .count();
    assert_eq!(expiries, 1);
}

#[tokio::test]
async fn an_approver_without_the_role_is_told_so() {
    let w = world().await;
    w.chat.bot.handle(said("alice", "staging clean")).await;
    let carol = w.chat.bot.handle(said("carol", "approve 1")).await.unwrap();
    assert_eq!(carol, "⛔ Approving job #1 needs the role leads; you have admins.");
    assert_eq!(
        w.chat.bot.store().approval_for_job(1).unwrap().unwrap().state,
        argos::store::ApprovalState::Pending
    );
    assert_eq!(
        w.chat.bot.handle(said("dave", "approve 1")).await.unwrap(),
        "✅ Approved: job #1 starts now."
    );
    w.chat.bot.idle().await;
}

#[tokio::test]
async fn two_approvers_at_once_start_one_job() {
    let w = world().await;
    w.chat.bot.handle(said("alice", "staging decommission")).await;
    let (a, b) = tokio::join!(
        w.chat.bot.handle(said("carol", "approve 1")),
        w.chat.bot.handle(said("dave", "approve 1"))
    );
    let replies = [a.unwrap(), b.unwrap()];
    let started = replies
        .iter()
        .filter(|r| *r == "✅ Approved: job #1 starts now.")
        .count();
    assert_eq!(started, 1, "{replies:?}");
    // The other one lost the race: told the request is decided, whichever check caught it.
    assert!(
        replies
            .iter()
            .any(|r| r == "Job #1 has already been decided." || r == "Job #1's approval request is approved."),
        "{replies:?}"
    );
    w.chat.bot.idle().await;
    let deletes = w
        .aws
        .actions()
        .iter()
        .filter(|a| *a == "cloudformation:DeleteStack")
        .count();
    assert_eq!(deletes, 1);
}

#[tokio::test]
async fn a_plan_that_changes_after_approval_voids_it() {
    let w = world().await;
    w.chat.bot.handle(said("alice", "sandbox decommission")).await;
    assert!(request_text(&w.chat.port).contains("Needs 2 approval(s) from role admins or leads"));
    assert_eq!(
        w.chat.bot.handle(said("carol", "approve 1")).await.unwrap(),
        "✔ Approved (1/2): job #1 needs more approval."
    );
    // Someone changes the stack in the meantime: a resource is added.
    let body = TEMPLATE.replace(
        "\"ApiEc2Instance\"",
        "\"FrontEc2Instance\": {\"Type\": \"AWS::EC2::Instance\", \"Properties\": {}},\n  \"ApiEc2Instance\"",
    );
    w.chat
        .bot
        .engine()
        .aws
        .cfn()
        .await
        .update_stack()
        .stack_name("argos-sandbox")
        .template_body(body)
        .send()
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while w.aws.stack_status("argos-sandbox").as_deref() != Some("UPDATE_COMPLETE") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let reply = w.chat.bot.handle(said("dave", "approve 1")).await.unwrap();
    assert_eq!(
        reply,
        "⚠️ The plan for job #1 changed since it was requested; the approval is void and alice has been told."
    );
    assert_eq!(
        w.chat.bot.store().approval_for_job(1).unwrap().unwrap().state,
        argos::store::ApprovalState::Void
    );
    assert_eq!(w.chat.bot.store().job(1).unwrap().unwrap().state, JobState::Cancelled);
    assert!(w
        .chat
        .port
        .posted()
        .iter()
        .any(|p| matches!(p, Posted::Sent { text, .. } if text.starts_with("⚠️ alice: the plan for job #1"))));
    assert!(!w.aws.actions().iter().any(|a| a.ends_with("DeleteStack")));
}
