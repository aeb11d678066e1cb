//! Commands through every door Slack has (`!argos` in a channel, a mention, `/argos`), with the
//! same answers, permissions and refusals as on Discord; roles from member ids and from user
//! groups; typed broadcast mentions that ping nobody; redelivered envelopes handled once; and
//! acknowledgements that do not wait for the store.

use std::sync::Arc;
use std::time::Duration;

use argos::bot::port::{CommandHandler, EventClaim};
use argos::platform::slack;
use argos::store::JobState;
use serde_json::json;

use super::world::*;
use crate::support::fake_slack::{SlackUser, CHANNEL, DEPLOYERS_GROUP, OTHER_CHANNEL};

/// How many audit records carry `command` (every command handled is audited once).
pub fn audited(r: &Running, command: &str) -> usize {
    r.bot
        .store()
        .audit_log(500)
        .unwrap()
        .iter()
        .filter(|a| a.command == command)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prefix_mention_and_slash_commands_each_get_one_answer() {
    let w = world().await;
    let mut r = start_bot(w.project.config()).await;
    add_app(&w.aws, r.bot.engine());
    // Both connections up, so a mention's two envelopes reach the bot on two sockets at once.
    w.chat.wait_connections(2).await;

    w.chat.push_message(CHANNEL, &SlackUser::admin(), "!argos help");
    let help = w
        .chat
        .expect_post(CHANNEL, "Commands you may run (prefix `!argos`, or mention me):")
        .await;
    assert_eq!(help.text, "Commands you may run (prefix `!argos`, or mention me):");
    let body = help.all_text();
    // The grammar's `<env>` is escaped, so Slack shows it instead of reading it as markup.
    assert!(body.contains("• `&lt;env&gt; decommission` — "), "{body}");
    assert!(body.contains("• `whoami` — "), "{body}");
    assert_eq!((help.link_names, help.thread_ts.as_deref()), (false, None));

    // Slack sends the bot its own post back; once that echo is in, nothing comes between the
    // mention's two envelopes, which then go to the two connections in turn.
    w.chat
        .wait_for("the echo of the help post acknowledged", |s| {
            s.envelopes
                .iter()
                .any(|e| e.echo && s.ack_of(&e.envelope_id).is_some())
                .then_some(())
        })
        .await;
    // A mention arrives twice (a `message` and an `app_mention` event): one answer.
    let (message, mention) = w
        .chat
        .push_mention(OTHER_CHANNEL, &SlackUser::deployer(), "staging status");
    let status = w
        .chat
        .expect_post(OTHER_CHANNEL, "stack argos-staging: CREATE_COMPLETE")
        .await;
    // The notification reads the first line that says something, not the code fence.
    assert_eq!(status.text, "stack argos-staging: CREATE_COMPLETE");
    assert!(
        status.all_text().contains("i-0"),
        "instances listed: {}",
        status.all_text()
    );
    w.chat.wait_acked(&message).await;
    w.chat.wait_acked(&mention).await;
    let (a, b) = w.chat.with_state(|s| {
        (
            s.attempts(&message)[0].event_type().map(str::to_string),
            s.attempts(&mention)[0].event_type().map(str::to_string),
        )
    });
    assert_eq!((a.as_deref(), b.as_deref()), (Some("message"), Some("app_mention")));
    let sockets = w
        .chat
        .with_state(|s| (s.attempts(&message)[0].connection, s.attempts(&mention)[0].connection));
    assert_ne!(sockets.0, sockets.1, "the two envelopes went to two connections");

    // /argos whoami: acknowledged, then answered through the response_url, to the asker only.
    let slash = w.chat.push_slash(CHANNEL, &SlackUser::deployer(), "whoami");
    let answer = w.chat.wait_response(&slash).await;
    assert_eq!(answer.text, "You are U0DEPLOY (slack id U0DEPLOY).");
    assert_eq!(
        answer.all_text(),
        "You are U0DEPLOY (slack id U0DEPLOY).\nYou are U0DEPLOY (slack id U0DEPLOY).\nRoles: deployers.\n• staging: deploy, status"
    );
    assert_eq!(answer.response_type, None, "ephemeral");
    assert!(!answer.replace_original);
    // The acknowledgement carries nothing to show (the answer is the response).
    let ack = w.chat.wait_acked(&slash).await;
    assert_eq!(ack.payload, Some(json!({})), "an empty acknowledgement");
    r.handled(3).await;

    assert_eq!(audited(&r, "help"), 1);
    assert_eq!(audited(&r, "staging status"), 1, "the mention was handled once");
    assert_eq!(audited(&r, "whoami"), 1);
    assert_eq!(r.handled_now(), 3);
    assert_eq!(
        w.chat.with_state(|s| s.posts.len()),
        2,
        "nothing posted for the slash command"
    );
    clean_finish(&w.chat).await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn denials_unknown_environments_and_rate_limits_are_polite_and_start_nothing() {
    let w = world().await;
    let mut r = start_bot(w.project.config()).await;

    w.chat
        .push_message(CHANNEL, &SlackUser::stranger(), "!argos staging deploy");
    let denied = w.chat.next_post().await;
    assert_eq!(denied.channel, CHANNEL);
    assert_eq!(
        denied.text,
        "⛔ You don't have permission for deploy on staging. Ask an admin to grant it in config/argos.yaml."
    );
    // The deployer may not update staging either; the answer goes to them alone.
    let slash = w.chat.push_slash(CHANNEL, &SlackUser::deployer(), "staging update");
    let answer = w.chat.wait_response(&slash).await;
    assert!(
        answer
            .text
            .starts_with("⛔ You don't have permission for update on staging."),
        "{answer:#?}"
    );
    // An environment that is not configured is refused, before any AWS call.
    let slash = w.chat.push_slash(CHANNEL, &SlackUser::admin(), "qa-9 deploy");
    assert_eq!(
        w.chat.wait_response(&slash).await.text,
        "❓ unknown environment 'qa-9'; configured: sandbox, staging"
    );
    // A stranger's help lists only what anyone may run, and other commands need a role.
    let slash = w.chat.push_slash(OTHER_CHANNEL, &SlackUser::stranger(), "help");
    let help = w.chat.wait_response(&slash).await.all_text();
    assert!(help.contains("• `whoami` — "), "{help}");
    assert!(!help.contains("decommission"), "{help}");
    assert!(
        help.contains("You have no environment permissions; ask an admin."),
        "{help}"
    );
    let slash = w.chat.push_slash(OTHER_CHANNEL, &SlackUser::stranger(), "jobs");
    assert!(w
        .chat
        .wait_response(&slash)
        .await
        .text
        .starts_with("⛔ You have no role with Argos."));

    // A burst of 3: the deployer has used one; two more pass, the next is refused politely.
    for _ in 0..2 {
        let slash = w.chat.push_slash(OTHER_CHANNEL, &SlackUser::deployer(), "whoami");
        assert!(w.chat.wait_response(&slash).await.text.starts_with("You are U0DEPLOY"));
    }
    let slash = w.chat.push_slash(OTHER_CHANNEL, &SlackUser::deployer(), "whoami");
    let slow = w.chat.wait_response(&slash).await.text;
    assert!(
        slow.starts_with("🐢 Easy — you've sent a lot of commands. Try again in ") && slow.ends_with(" s."),
        "{slow}"
    );
    // Per user: the admin is not held up.
    let slash = w.chat.push_slash(OTHER_CHANNEL, &SlackUser::admin(), "whoami");
    assert!(w.chat.wait_response(&slash).await.text.starts_with("You are U0ADMIN"));
    r.handled(9).await;
    r.bot.idle().await;

    assert!(w.aws.calls().is_empty(), "nothing reached AWS: {:?}", w.aws.actions());
    assert!(r.bot.store().recent_jobs(10).unwrap().is_empty(), "no job");
    let audit = r.bot.store().audit_log(50).unwrap();
    let stranger = audit
        .iter()
        .find(|a| a.command == "staging deploy")
        .expect("the denial is audited");
    assert_eq!(
        (
            stranger.platform.as_str(),
            stranger.user_id.as_str(),
            stranger.channel.as_str(),
            stranger.outcome.as_str()
        ),
        ("slack", "U0STRANGER", CHANNEL, "denied: missing deploy on staging")
    );
    assert_eq!(audit.iter().filter(|a| a.outcome == "rate limited").count(), 1);
    clean_finish(&w.chat).await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_come_from_member_ids_and_from_user_groups() {
    let w = world().await;
    // dave is an admin only as a member of @admins; bob a deployer only through @deployers.
    w.chat.set_group_members(ADMINS_GROUP, &[&dave()]);
    let mut r = start_bot(w.project.config()).await;

    let slack = &w.chat;
    let whoami = |user: SlackUser| {
        let slash = slack.push_slash(OTHER_CHANNEL, &user, "whoami");
        async move { slack.wait_response(&slash).await.all_text() }
    };
    let admin = whoami(SlackUser::admin()).await;
    assert!(admin.contains("Roles: admins.\n• sandbox: "), "{admin}");
    let by_group = whoami(dave()).await;
    assert!(
        by_group.contains("You are U0DAVE (slack id U0DAVE).\nRoles: admins.\n• sandbox: "),
        "{by_group}"
    );
    assert!(
        by_group.contains("• staging: approve, break-glass, clean, commission, decommission, deploy"),
        "{by_group}"
    );
    let deployer = whoami(SlackUser::deployer()).await;
    assert!(
        deployer.ends_with("Roles: deployers.\n• staging: deploy, status"),
        "{deployer}"
    );
    let stranger = whoami(SlackUser::stranger()).await;
    assert!(
        stranger.ends_with("Roles: none.\nYou may not run any environment command."),
        "{stranger}"
    );

    // What the roles allow: the group's admin may update anywhere, the group's deployer not.
    let slash = w.chat.push_slash(CHANNEL, &dave(), "help update");
    let help = w.chat.wait_response(&slash).await.text;
    assert!(help.ends_with("(you may on: sandbox, staging)"), "{help}");
    let slash = w.chat.push_slash(CHANNEL, &SlackUser::deployer(), "help update");
    let help = w.chat.wait_response(&slash).await.text;
    assert!(help.ends_with("— you may not run it."), "{help}");
    r.handled(6).await;

    // One usergroups.list (with its members) answered every lookup.
    let lists = w.chat.calls("usergroups.list");
    assert_eq!(lists.len(), 1, "{lists:#?}");
    assert_eq!(lists[0].params["include_users"], json!("true"));
    assert!(w
        .chat
        .with_state(|s| s.groups.get(DEPLOYERS_GROUP).cloned())
        .is_some_and(|m| m == [SlackUser::deployer().id]));
    clean_finish(&w.chat).await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broadcast_mentions_in_a_command_ping_nobody() {
    let w = world().await;
    let third = "C0THIRD";
    let fourth = "C0FOURTH";
    w.chat.add_channel(third, "third");
    w.chat.add_channel(fourth, "fourth");
    let mut r = start_bot(w.project.config()).await;
    // Strangers (replies quote what was typed before any permission check), one command each
    // so that none runs out of its command budget.
    let stranger = |n| SlackUser::numbered(n);

    // What people type reaches the bot as Slack's markup; replies quote it decoded, as text.
    for (n, channel, typed, quoted) in [
        (1, CHANNEL, "!argos <!channel> deploy", "'@channel'"),
        (2, OTHER_CHANNEL, "!argos <!here> deploy", "'@here'"),
        (3, third, "!argos <!everyone> deploy", "'@everyone'"),
    ] {
        w.chat.push_message(channel, &stranger(n), typed);
        let reply = w.chat.expect_post(channel, quoted).await;
        assert!(
            reply.text.starts_with(&format!("❓ invalid environment name {quoted}")),
            "{reply:#?}"
        );
        assert!(reply.broadcasts().is_empty(), "{reply:#?}");
        assert!(!reply.link_names);
    }
    w.chat.push_mention(fourth, &stranger(4), "<!channel> status");
    let reply = w.chat.expect_post(fourth, "'@channel'").await;
    assert!(reply.broadcasts().is_empty(), "{reply:#?}");
    let slash = w.chat.push_slash(CHANNEL, &stranger(5), "<!here|here> deploy");
    let answer = w.chat.wait_response(&slash).await;
    assert!(
        answer.text.starts_with("❓ invalid environment name '@here'"),
        "{answer:#?}"
    );
    assert!(answer.broadcasts().is_empty());
    r.handled(5).await;

    // The typed markup was there to begin with: the fake would have seen a ping if it went out.
    assert_eq!(
        w.chat.with_state(|s| s
            .messages
            .values()
            .filter(|m| !m.bot && !m.broadcasts().is_empty())
            .count()),
        4
    );
    clean_finish(&w.chat).await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_envelope_is_acknowledged_and_handled_once() {
    let w = world().await;
    w.aws.set_time_scale(10.0);
    add_deletable_stack(&w.aws, STACK, 2.0);
    let mut r = start_bot(w.project.config()).await;
    w.chat.wait_connections(2).await;
    let acks = |id: &str| {
        let id = id.to_string();
        move |s: &mut crate::support::fake_slack::State| {
            (s.acks.iter().filter(|a| a.envelope_id == id).count() >= 2).then_some(())
        }
    };

    // A job: Slack redelivers the message (same envelope id, retry_attempt 1).
    let job = w
        .chat
        .push_message(CHANNEL, &SlackUser::admin(), "!argos staging decommission");
    w.chat.wait_acked(&job).await;
    w.chat.redeliver(&job);
    w.chat
        .wait_for("both deliveries of the job's envelope acknowledged", acks(&job))
        .await;
    let status = w
        .chat
        .expect_post(CHANNEL, "⏳ *staging · decommission* · job #1 · U0ADMIN")
        .await;

    // A slash command and a mention (both of its envelopes), each delivered twice.
    let slash = w.chat.push_slash(OTHER_CHANNEL, &SlackUser::deployer(), "whoami");
    w.chat.wait_acked(&slash).await;
    w.chat.redeliver(&slash);
    w.chat
        .wait_for("both deliveries of the slash command acknowledged", acks(&slash))
        .await;
    let (message, mention) = w.chat.push_mention(OTHER_CHANNEL, &SlackUser::deployer(), "envs");
    w.chat.wait_acked(&message).await;
    w.chat.wait_acked(&mention).await;
    w.chat.redeliver(&mention);
    w.chat.redeliver(&message);
    w.chat
        .wait_for("the mention's envelopes acknowledged twice", acks(&message))
        .await;
    w.chat
        .wait_for("the mention's envelopes acknowledged twice", acks(&mention))
        .await;
    let redelivered = w.chat.with_state(|s| {
        s.envelopes
            .iter()
            .filter(|e| e.retry_attempt == 1)
            .map(|e| e.retry_reason.clone())
            .collect::<Vec<_>>()
    });
    assert_eq!(redelivered, ["timeout"; 4]);

    let envs = w.chat.expect_post(OTHER_CHANNEL, "environment(s):").await;
    assert!(envs.text.contains("environment(s)"), "{envs:#?}");
    wait_finished(&w.chat, CHANNEL, &status.ts).await;
    r.handled(3).await;
    r.bot.idle().await;

    let answers = w.chat.with_state(|s| s.responses.len());
    assert_eq!(answers, 1, "one answer to the slash command");
    let jobs = r.bot.store().recent_jobs(10).unwrap();
    assert_eq!(jobs.len(), 1, "one job: {jobs:#?}");
    assert_eq!(jobs[0].state, JobState::Succeeded);
    assert_eq!(w.aws.count("DeleteStack"), 1);
    assert_eq!(audited(&r, "staging decommission"), 1);
    assert_eq!(audited(&r, "whoami"), 1);
    assert_eq!(audited(&r, "envs"), 1);
    assert_eq!(r.handled_now(), 3);
    clean_finish(&w.chat).await;
    r.stop().await;
}

/// The adapter alone, with a store that takes 200 ms per claim: envelopes are acknowledged at
/// once and claimed afterwards, one at a time, so a slow store (PostgreSQL across a network, a
/// burst of commands) holds up no acknowledgement of the envelopes behind it on a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_store_holds_up_no_acknowledgement() {
    let w = world().await;
    let settings = w.project.config().settings.slack;
    let claim: EventClaim = Arc::new(|_, _| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            true
        })
    });
    let handler: CommandHandler = Arc::new(|ev| Box::pin(async move { Some(format!("echo: {}", ev.text).into()) }));
    let tokens = slack::SlackTokens::from_env(&settings).expect("tokens");
    let (_port, connection) = slack::start(&settings, tokens, "!argos".into(), handler, claim, LIMITS)
        .await
        .expect("the adapter connects");

    let ids: Vec<String> = (0..8)
        .map(|i| w.chat.push_slash(CHANNEL, &SlackUser::numbered(i), &format!("job {i}")))
        .collect();
    for id in &ids {
        let latency = w.chat.wait_acked(id).await.latency.expect("delivered");
        assert!(
            latency < Duration::from_millis(150),
            "{id} acknowledged after {latency:?}"
        );
    }
    let mut answers = Vec::new();
    for id in &ids {
        answers.push(w.chat.wait_response(id).await);
    }
    // Each answered, the claims one at a time.
    let mut texts: Vec<String> = answers.iter().map(|a| a.text.clone()).collect();
    texts.sort();
    assert_eq!(texts, (0..8).map(|i| format!("echo: job {i}")).collect::<Vec<_>>());
    answers.sort_by_key(|a| a.at);
    let took = answers[7].at.duration_since(answers[0].at);
    assert!(took >= Duration::from_millis(7 * 200), "claims overlapped: {took:?}");
    clean_finish(&w.chat).await;
    connection.shutdown().await;
}
