//! Approvals with Block Kit buttons: a decommission by one admin posts a request with Approve
//! (which asks for confirmation first) and Deny; the requester's click and a deployer's are
//! refused, another admin's starts the job; and the request's buttons still work after a
//! restart, because a button carries only its command.

use argos::store::{JobState, Store};

use super::world::*;
use crate::support::fake_slack::{FakeSlackLimits, Post, SlackButton, SlackUser, CHANNEL};

const REQUEST: &str = "🔐 *Approval needed* · job #1 · staging decommission requested by U0ADMIN";
const APPROVE: &str = "argos:cmd:0";

/// Staging's stack, whose next deletion succeeds, and the default approval policy: a
/// decommission needs one approver allowed to `approve` on staging (the admins).
async fn approvals_world() -> World {
    let w = world_with(FakeSlackLimits::TEST, CHAT, true).await;
    w.aws.set_time_scale(20.0);
    add_deletable_stack(&w.aws, STACK, 2.0);
    w
}

/// A button as the tests compare it: action id, label, value, style, whether it asks first.
type ButtonBrief<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, bool);

/// The admin asks for the decommission; returns the request post, its buttons checked.
async fn request(w: &World) -> Post {
    w.chat
        .push_message(CHANNEL, &SlackUser::admin(), "!argos staging decommission");
    let req = w.chat.expect_post(CHANNEL, REQUEST).await;
    assert!(req.text.starts_with(REQUEST), "{req:#?}");
    let body = req.all_text();
    assert!(
        body.contains("Decommission argos-staging (CREATE_COMPLETE): 2 resource(s)"),
        "{body}"
    );
    let buttons = req.buttons();
    let brief: Vec<ButtonBrief> = buttons
        .iter()
        .map(|b| {
            (
                b.action_id.as_str(),
                b.text.as_str(),
                b.value.as_deref(),
                b.style.as_deref(),
                b.confirm,
            )
        })
        .collect();
    assert_eq!(
        brief,
        [
            (APPROVE, "Approve", Some("approve 1"), Some("primary"), true),
            ("argos:cmd:1", "Deny", Some("deny 1"), Some("danger"), false),
        ],
        "Approve asks first, Deny does not"
    );
    let approve = &req
        .blocks
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("an actions block")["elements"][0];
    assert_eq!(approve["confirm"]["confirm"]["text"], "Approve");
    assert_eq!(approve["confirm"]["text"]["text"], "This runs `approve 1` as you.");
    req
}

/// `who` clicks Approve under `req` (as read from the message now): the job starts and runs to
/// the end in `r`'s bot.
async fn approve_and_finish(w: &World, r: &Running, req: &Post, who: &SlackUser) {
    let click = w.chat.push_button(CHANNEL, who, &req.ts, APPROVE, "approve 1");
    let answer = w.chat.wait_response(&click).await;
    assert_eq!(answer.text, "✅ Approved: job #1 starts now.");
    assert_eq!(
        (answer.response_type.as_deref(), answer.replace_original),
        (None, false)
    );
    assert_eq!(answer.message_ts.as_deref(), Some(req.ts.as_str()));
    let status = w
        .chat
        .expect_post(CHANNEL, "⏳ *staging · decommission* · job #1 · U0ADMIN")
        .await;
    assert!(status.buttons().is_empty());
    let last = wait_finished(&w.chat, CHANNEL, &status.ts).await;
    r.bot.idle().await;
    assert!(
        last.contains("✅ *staging · decommission* · job #1 · U0ADMIN · done in"),
        "{last}"
    );

    // The request says it was approved and has no buttons left to click.
    let stored = w.chat.message(CHANNEL, &req.ts).unwrap();
    assert!(stored.all_text().contains("✅ Approved: starting."), "{stored:#?}");
    assert!(stored.all_text().contains("• approved by "), "{stored:#?}");
    assert!(stored.buttons().is_empty(), "{stored:#?}");
    assert_eq!(updates_of(&w.chat, CHANNEL, &req.ts).len(), 1);

    let store = r.bot.store();
    assert_eq!(store.job(1).unwrap().unwrap().state, JobState::Succeeded);
    let approval = store.approval_for_job(1).unwrap().unwrap();
    assert_eq!(approval.state, argos::store::ApprovalState::Started);
    let votes: Vec<(&str, &str, &str)> = approval
        .votes
        .iter()
        .map(|v| (v.user_id.as_str(), v.user_name.as_str(), v.decision.as_str()))
        .collect();
    assert_eq!(
        votes,
        [(who.id.as_str(), who.name.as_str(), "approve")],
        "the clicker voted"
    );
    let audit = store.audit_log(50).unwrap();
    let decided = audit
        .iter()
        .find(|a| a.outcome == "approved job #1 (1/1)")
        .expect("the approval is audited");
    assert_eq!(
        (
            decided.platform.as_str(),
            decided.user_id.as_str(),
            decided.command.as_str()
        ),
        ("slack", who.id.as_str(), "approve 1")
    );
    assert_eq!(w.aws.stack_status(STACK), None, "the stack is gone");
    assert_eq!(w.aws.count("DeleteStack"), 1, "{:?}", w.aws.actions());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_approve_button_needs_another_approver_and_runs_as_the_clicker() {
    let w = approvals_world().await;
    let mut r = start_bot(w.project.config()).await;
    let req = request(&w).await;
    r.handled(1).await;

    // The requester may not approve their own request: told so, privately.
    let click = w
        .chat
        .push_button(CHANNEL, &SlackUser::admin(), &req.ts, APPROVE, "approve 1");
    let answer = w.chat.wait_response(&click).await;
    assert_eq!(answer.text, "✋ You requested job #1; someone else has to approve it.");
    assert_eq!(answer.response_type, None, "ephemeral");
    // Nor may a deployer, who has no `approve` on staging.
    let click = w
        .chat
        .push_button(CHANNEL, &SlackUser::deployer(), &req.ts, APPROVE, "approve 1");
    let answer = w.chat.wait_response(&click).await;
    assert!(
        answer
            .text
            .starts_with("⛔ You don't have permission for approve on staging"),
        "{answer:#?}"
    );
    r.handled(3).await;
    assert_eq!(r.bot.store().job(1).unwrap().unwrap().state, JobState::Queued);
    assert_eq!(
        r.bot.store().approval_for_job(1).unwrap().unwrap().state,
        argos::store::ApprovalState::Pending
    );
    let stored = w.chat.message(CHANNEL, &req.ts).unwrap();
    assert_eq!((stored.edits, stored.buttons().len()), (0, 2), "{stored:#?}");
    assert_eq!(w.aws.count("DeleteStack"), 0);

    // Another admin's click: the job starts, approved by carol, run for alice.
    approve_and_finish(&w, &r, &req, &carol()).await;
    clean_finish(&w.chat).await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_request_buttons_work_after_a_restart() {
    let w = approvals_world().await;

    // Bot A on its own runtime, stopped as a crash would stop it, once the request is out.
    let rt_a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime A");
    let mut a = rt_a.spawn(start_bot(w.project.config())).await.expect("bot A starts");
    let req = request(&w).await;
    a.handled(1).await;
    drop(a);
    rt_a.shutdown_background();
    w.chat
        .wait_for("bot A's sockets closed", |s| (s.open_sockets() == 0).then_some(()))
        .await;
    let store = Store::open(&w.project.config().database_path()).unwrap();
    assert_eq!(
        store.job(1).unwrap().unwrap().state,
        JobState::Queued,
        "waiting for approval"
    );
    drop(store);

    // A restart takes longer than Slack's post window, which a new process knows nothing of
    // (were it quicker, Slack's 429 and Retry-After would cover it).
    tokio::time::sleep_until(tokio::time::Instant::from_std(req.at + LIMITS.post_window * 11 / 10)).await;
    // Bot B: the same store, a new Socket Mode connection. The button is read off the message.
    let b = start_bot(w.project.config()).await;
    assert_eq!(b.bot.resume_unfinished().await, Vec::<u64>::new(), "nothing to resume");
    // What A left unacknowledged when it died, Slack sends again; B takes it and does nothing.
    redeliver_unacked(&w.chat);
    let original = w.chat.message(CHANNEL, &req.ts).expect("the request message");
    let approve: SlackButton = original.button(APPROVE).expect("the Approve button");
    assert_eq!(approve.value.as_deref(), Some("approve 1"));
    approve_and_finish(&w, &b, &req, &carol()).await;
    let job = b.bot.store().job(1).unwrap().unwrap();
    assert_eq!(job.owner.as_deref(), Some(b.bot.replica_id()), "B runs it");
    assert!(w.chat.connections_opened() >= 2, "A's and B's connections");
    clean_finish(&w.chat).await;
    b.stop().await;
}
