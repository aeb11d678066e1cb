//! Socket Mode connections going away in the middle of a job: Slack's `disconnect`
//! (`refresh_requested`) and a socket that just drops. The job's status message keeps being
//! edited (edits go over the Web API), slack-morphism reconnects, commands sent after the
//! reconnect (and one sent while no connection was open) are answered exactly once, and every
//! envelope is acknowledged, none handled twice.

use argos::store::JobState;

use super::commands::audited;
use super::world::*;
use crate::support::fake_aws::{Op, StackScript};
use crate::support::fake_slack::{SlackUser, CHANNEL, OTHER_CHANNEL};

/// Waits until the status message has been edited more than `n` times.
async fn edited_past(w: &World, ts: &str, n: usize) -> usize {
    w.chat
        .wait_for(&format!("more than {n} edits of the status message"), |s| {
            let edits = s.updates.iter().filter(|u| u.ts == ts).count();
            (edits > n).then_some(edits)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disconnect_and_a_dropped_socket_in_the_middle_of_a_job_lose_nothing() {
    let w = world().await;
    w.aws.set_time_scale(1.0);
    // A decommission of 4 resources, 1.5 s each: about 6.5 s.
    let resources = [
        ("WebSecurityGroup", "AWS::EC2::SecurityGroup"),
        ("ApiInstance", "AWS::EC2::Instance"),
        ("FrontInstance", "AWS::EC2::Instance"),
        ("Database", "AWS::RDS::DBInstance"),
    ];
    w.aws.add_stack(STACK, TINY_TEMPLATE, &[], &resources);
    w.aws.script_next_for(
        STACK,
        Op::Delete,
        StackScript::delete_success(STACK, &resources, &[1.5; 4]),
    );
    let mut r = start_bot(w.project.config()).await;
    w.chat.wait_connections(2).await;
    assert_eq!(w.chat.connections_opened(), 2);

    w.chat
        .push_message(CHANNEL, &SlackUser::admin(), "!argos staging decommission");
    let status = w
        .chat
        .expect_post(CHANNEL, "⏳ *staging · decommission* · job #1 · U0ADMIN")
        .await;
    let before = edited_past(&w, &status.ts, 0).await;

    // Slack asks for a refresh: both connections get `disconnect` and are closed shortly after;
    // slack-morphism opens new ones.
    w.chat.disconnect("refresh_requested");
    w.chat
        .wait_for("two new connections after the disconnect", |s| {
            (s.connections_opened >= 4 && s.open_sockets() == 2).then_some(())
        })
        .await;
    let during = edited_past(&w, &status.ts, before).await;
    w.chat
        .push_message(OTHER_CHANNEL, &SlackUser::deployer(), "!argos whoami");
    w.chat.expect_post(OTHER_CHANNEL, "You are U0DEPLOY").await;

    // Then both sockets drop without a word. A slash command sent at once waits for a
    // connection (Slack keeps it), and arrives once slack-morphism has reconnected.
    w.chat.drop_connections();
    let slash = w.chat.push_slash(CHANNEL, &SlackUser::deployer(), "envs");
    w.chat
        .wait_for("connections again after the drop", |s| {
            (s.connections_opened >= 6 && s.open_sockets() >= 1).then_some(())
        })
        .await;
    let answer = w.chat.wait_response(&slash).await;
    assert!(answer.text.ends_with("environment(s):"), "{answer:#?}");
    // What was written to the dropped sockets and not acknowledged, Slack sends again.
    let again = redeliver_unacked(&w.chat);
    edited_past(&w, &status.ts, during).await;
    w.chat.push_message(OTHER_CHANNEL, &SlackUser::admin(), "!argos jobs");
    let jobs = w.chat.expect_post(OTHER_CHANNEL, "#1 staging decommission").await;
    assert!(jobs.text.contains("running by U0ADMIN"), "{jobs:#?}");

    let last = wait_finished(&w.chat, CHANNEL, &status.ts).await;
    r.handled(4).await;
    r.bot.idle().await;
    assert!(last.contains("decommissioned argos-staging"), "{last}");

    // One job, one status message, edited all along; each command answered once.
    let job = r.bot.store().job(1).unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(
        w.chat.with_state(|s| s.posts_in(CHANNEL).len()),
        1,
        "one status message"
    );
    assert_eq!(w.chat.with_state(|s| s.responses.len()), 1);
    for command in ["staging decommission", "whoami", "envs", "jobs"] {
        assert_eq!(audited(&r, command), 1, "{command} handled once");
    }
    assert_eq!(r.handled_now(), 4);
    assert_eq!(w.aws.count("DeleteStack"), 1);
    // Every envelope was delivered and acknowledged (the redelivered ones too).
    let undelivered = w
        .chat
        .with_state(|s| s.envelopes.iter().filter(|e| e.delivered.is_none()).count());
    assert_eq!(undelivered, 0, "redelivered: {again:?}");
    assert!(w.chat.unacked().is_empty(), "{:?}", w.chat.unacked());
    clean_finish(&w.chat).await;
    r.stop().await;
}
