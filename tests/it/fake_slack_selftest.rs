//! Self-tests of the fake Slack, driven by the real slack-morphism client (its Web API client
//! and its Socket Mode listener), so the Slack adapter's tests can trust that the fake speaks
//! the wire format the library expects: every payload the fake sends must reach the library's
//! callbacks as the typed event it stands for (not `Unknown`, not a parse error, which the
//! library would acknowledge silently).
use crate::support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use support::fake_slack::{
    broadcast_mentions, buttons_in, texts_in, FakeSlack, FakeSlackLimits, SlackButton, SlackUser, ACK_DEADLINE, APP_ID,
    APP_TOKEN, APP_TOKEN_ENV, BOT_ID, BOT_TOKEN, BOT_TOKEN_ENV, BOT_USER_ID, CHANNEL, COMMAND, DEPLOYERS_GROUP,
    DEPLOYERS_HANDLE, OTHER_CHANNEL, TEAM_ID, WAIT,
};
use tokio::sync::mpsc;

type Connector = SlackClientHyperConnector<HttpConnector>;
type Client = SlackClient<Connector>;
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

fn client_at(api_url: &str) -> Arc<Client> {
    let connector = SlackClientHyperConnector::with_connector(HttpConnector::new()).with_slack_api_url(api_url);
    Arc::new(SlackClient::new(connector))
}

fn client(fake: &FakeSlack) -> Arc<Client> {
    client_at(&fake.api_url())
}

fn bot_token() -> SlackApiToken {
    SlackApiToken::new(BOT_TOKEN.into())
}

fn app_token() -> SlackApiToken {
    SlackApiToken::new(APP_TOKEN.into())
}

fn api_error(r: Result<impl std::fmt::Debug, SlackClientError>) -> String {
    match r {
        Err(SlackClientError::ApiError(e)) => e.code,
        other => panic!("expected a Slack API error, got {other:?}"),
    }
}

/// Blocks as the adapter would send them: a section and two buttons, one with a confirm dialog.
fn approval_blocks() -> Vec<SlackBlock> {
    let blocks: Vec<SlackBlock> = serde_json::from_value(json!([
        {"type": "section", "block_id": "summary", "text": {"type": "mrkdwn", "text": "*Deploy* staging?"}},
        {"type": "actions", "block_id": "decide", "elements": [
            {"type": "button", "action_id": "approve", "value": "job-1", "style": "primary",
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": "reject", "value": "job-1", "style": "danger",
             "text": {"type": "plain_text", "text": "Reject"},
             "confirm": {"title": {"type": "plain_text", "text": "Sure?"},
                         "text": {"type": "mrkdwn", "text": "This stops the deploy."},
                         "confirm": {"type": "plain_text", "text": "Reject"},
                         "deny": {"type": "plain_text", "text": "Back"}}},
        ]},
    ]))
    .expect("blocks");
    assert!(matches!(blocks[1], SlackBlock::Actions(_)), "{blocks:?}");
    blocks
}

// ---------------------------------------------------------------------------------------------
// What the Socket Mode callbacks saw. The callbacks are plain `fn`s: they reach the test
// through the listener's user state.

#[derive(Debug)]
enum Got {
    Hello(u32),
    Push(Box<SlackPushEventCallback>),
    Command(Box<SlackCommandEvent>),
    Interaction(Box<SlackInteractionEvent>),
    Error(String),
}

struct Seen {
    tx: mpsc::UnboundedSender<Got>,
}

async fn tell(states: &SlackClientEventsUserState, got: Got) {
    if let Some(seen) = states.read().await.get_user_state::<Seen>() {
        let _ = seen.tx.send(got);
    }
}

async fn on_push(
    ev: SlackPushEventCallback,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    // "slow" keeps the ack back long enough for the test to drop the connection first.
    let slow = matches!(&ev.event, SlackEventCallbackBody::Message(m)
        if m.content.as_ref().and_then(|c| c.text.as_deref()) == Some("slow"));
    tell(&states, Got::Push(Box::new(ev))).await;
    if slow {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

async fn on_command(
    ev: SlackCommandEvent,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let text = format!("on it: {}", ev.text.clone().unwrap_or_default());
    tell(&states, Got::Command(Box::new(ev))).await;
    Ok(SlackCommandEventResponse::new(
        SlackMessageContent::new().with_text(text),
    ))
}

async fn on_interaction(
    ev: SlackInteractionEvent,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    tell(&states, Got::Interaction(Box::new(ev))).await;
    Ok(())
}

/// Parse errors of what the fake sent land here (the library then acks the envelope anyway).
fn on_error(err: BoxError, _client: Arc<Client>, states: SlackClientEventsUserState) -> hyper::StatusCode {
    if let Ok(guard) = states.try_read() {
        if let Some(seen) = guard.get_user_state::<Seen>() {
            let _ = seen.tx.send(Got::Error(err.to_string()));
        }
    }
    hyper::StatusCode::OK
}

/// A Socket Mode listener of the real library on the fake.
struct Bot {
    listener: SlackClientSocketModeListener<Connector>,
    rx: mpsc::UnboundedReceiver<Got>,
    /// Connection errors the library reported (expected after `drop_connections`).
    wss_errors: Vec<String>,
}

impl Bot {
    async fn start(fake: &FakeSlack, connections: u32) -> Bot {
        let (tx, rx) = mpsc::unbounded_channel();
        let env = Arc::new(
            SlackClientEventsListenerEnvironment::new(client(fake))
                .with_error_handler(on_error)
                .with_user_state(Seen { tx }),
        );
        let callbacks = SlackSocketModeListenerCallbacks::new()
            // A closure: slack-morphism's hello event type has no public path to name it by.
            .with_hello_events(|ev, _client, states| async move { tell(&states, Got::Hello(ev.num_connections)).await })
            .with_push_events(on_push)
            .with_command_events(on_command)
            .with_interaction_events(on_interaction);
        // The library opens connection i after i * initial_backoff seconds (default 5).
        let config = SlackClientSocketModeConfig::new()
            .with_max_connections_count(connections)
            .with_initial_backoff_in_seconds(1)
            .with_reconnect_timeout_in_seconds(1);
        let listener = SlackClientSocketModeListener::new(&config, env, callbacks);
        listener.listen_for(&app_token()).await.expect("listen_for");
        listener.start().await;
        Bot {
            listener,
            rx,
            wss_errors: Vec::new(),
        }
    }

    /// The next thing a callback saw, hellos and connection errors skipped; a parse error fails
    /// the test.
    async fn next(&mut self) -> Got {
        loop {
            let got = tokio::time::timeout(WAIT, self.rx.recv())
                .await
                .expect("a callback within WAIT")
                .expect("listener alive");
            match got {
                Got::Hello(_) => continue,
                Got::Error(e) if e.contains("WSS error") => self.wss_errors.push(e),
                Got::Error(e) => panic!("the library could not use what the fake sent: {e}"),
                other => return other,
            }
        }
    }

    async fn next_push(&mut self) -> SlackPushEventCallback {
        match self.next().await {
            Got::Push(p) => *p,
            other => panic!("expected a push event, got {other:?}"),
        }
    }

    /// Waits for `n` hellos (nothing else may come first); returns their `num_connections`.
    async fn hellos(&mut self, n: usize) -> Vec<u32> {
        let mut seen = Vec::new();
        while seen.len() < n {
            match tokio::time::timeout(WAIT, self.rx.recv())
                .await
                .expect("hello within WAIT")
            {
                Some(Got::Hello(k)) => seen.push(k),
                other => panic!("expected hello, got {other:?}"),
            }
        }
        seen
    }

    /// Fails on anything left unseen but hellos.
    fn assert_quiet(&mut self) {
        while let Ok(got) = self.rx.try_recv() {
            let fine = matches!(&got, Got::Hello(_)) || matches!(&got, Got::Error(e) if e.contains("WSS error"));
            assert!(fine, "unexpected callback: {got:?}");
        }
    }

    async fn stop(self) {
        self.listener.shutdown().await;
    }
}

fn message_event(p: &SlackPushEventCallback) -> &SlackMessageEvent {
    match &p.event {
        SlackEventCallbackBody::Message(m) => m,
        other => panic!("expected a message event, got {other:?}"),
    }
}

/// Every payload the fake sent parses as the library's model of it, with known event types (the
/// envelope around it is parsed by the listener itself: the callbacks saw each one).
fn assert_envelopes_parse(fake: &FakeSlack) {
    let envelopes = fake.with_state(|s| s.envelopes.clone());
    for e in envelopes {
        let id = &e.envelope_id;
        match e.kind.as_str() {
            "events_api" => {
                let p: SlackPushEventCallback =
                    serde_json::from_value(e.payload.clone()).unwrap_or_else(|err| panic!("{id}: {err}"));
                assert!(
                    !matches!(p.event, SlackEventCallbackBody::Unknown(_)),
                    "{id} is Unknown: {:?}",
                    p.event
                );
            }
            "slash_commands" => {
                serde_json::from_value::<SlackCommandEvent>(e.payload.clone())
                    .unwrap_or_else(|err| panic!("{id}: {err}"));
            }
            "interactive" => {
                serde_json::from_value::<SlackInteractionEvent>(e.payload.clone())
                    .unwrap_or_else(|err| panic!("{id}: {err}"));
            }
            other => panic!("{id}: unknown envelope type {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Web API

#[tokio::test]
async fn web_api_round_trip() {
    let fake = FakeSlack::start().await;
    let client = client(&fake);
    let token = bot_token();
    let session = client.open_session(&token);

    let me = session.auth_test().await.expect("auth.test");
    assert_eq!(me.user_id.0, BOT_USER_ID);
    assert_eq!(me.bot_id.map(|b| b.0).as_deref(), Some(BOT_ID));
    assert_eq!(me.team_id.0, TEAM_ID);

    let posted = session
        .chat_post_message(
            &SlackApiChatPostMessageRequest::new(
                CHANNEL.into(),
                SlackMessageContent::new()
                    .with_text("Deploy staging?".into())
                    .with_blocks(approval_blocks()),
            )
            .with_unfurl_links(false)
            .with_unfurl_media(false),
        )
        .await
        .expect("chat.postMessage");
    assert_eq!(posted.channel.0, CHANNEL);
    assert!(matches!(
        posted.message.content.blocks.as_deref(),
        Some([SlackBlock::Section(_), SlackBlock::Actions(_)])
    ));
    let ts = posted.ts.0.clone();
    let post = fake.expect_post(CHANNEL, "*Deploy* staging?").await;
    assert_eq!(post.ts, ts);
    assert_eq!(post.params["unfurl_links"], json!(false));
    let buttons = post.buttons();
    assert_eq!(buttons.len(), 2, "{buttons:?}");
    assert_eq!(
        buttons[0],
        SlackButton {
            action_id: "approve".into(),
            block_id: Some("decide".into()),
            value: Some("job-1".into()),
            text: "Approve".into(),
            style: Some("primary".into()),
            confirm: false,
            url: None,
        }
    );
    assert!(buttons[1].confirm && buttons[1].style.as_deref() == Some("danger"));

    // A reply in the thread, in the other channel: unique, increasing ts.
    let reply = session
        .chat_post_message(
            &SlackApiChatPostMessageRequest::new(
                OTHER_CHANNEL.into(),
                SlackMessageContent::new().with_text("<!here> staging is down".into()),
            )
            .with_thread_ts(SlackTs(ts.clone())),
        )
        .await
        .expect("reply");
    assert!(reply.ts.0 > ts, "{} after {ts}", reply.ts.0);
    let reply_post = fake.expect_post(OTHER_CHANNEL, "staging is down").await;
    assert_eq!(reply_post.thread_ts.as_deref(), Some(ts.as_str()));
    assert_eq!(reply_post.broadcasts(), vec!["<!here>"]);
    assert!(post.broadcasts().is_empty());

    // Update: new text, blocks left out are kept (as Slack does); then blocks removed.
    let updated = session
        .chat_update(&SlackApiChatUpdateRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new().with_text("Deploying staging".into()),
            SlackTs(ts.clone()),
        ))
        .await
        .expect("chat.update");
    assert_eq!(updated.ts.0, ts);
    let m = fake.message(CHANNEL, &ts).expect("stored");
    assert_eq!(
        (m.text.as_str(), m.buttons().len(), m.edits),
        ("Deploying staging", 2, 1)
    );
    session
        .chat_update(&SlackApiChatUpdateRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new()
                .with_text("Deployed".into())
                .with_blocks(vec![]),
            SlackTs(ts.clone()),
        ))
        .await
        .expect("chat.update");
    let m = fake.message(CHANNEL, &ts).expect("stored");
    assert!(m.buttons().is_empty() && m.edits == 2, "{m:?}");
    fake.with_state(|s| {
        assert_eq!(s.updates.len(), 2);
        assert_eq!(s.updates[1].blocks, Some(vec![]));
        assert_eq!(s.updates[0].blocks_now.len(), 2);
    });

    session
        .chat_post_ephemeral(&SlackApiChatPostEphemeralRequest::new(
            CHANNEL.into(),
            SlackUser::stranger().id.into(),
            SlackMessageContent::new().with_text("You may not deploy.".into()),
        ))
        .await
        .expect("chat.postEphemeral");
    fake.with_state(|s| {
        assert_eq!(s.ephemerals.len(), 1);
        assert_eq!(s.ephemerals[0].user, "U0STRANGER");
        assert!(s.ephemerals[0].all_text().contains("may not"));
    });

    // A user id as the channel: the bot's direct message channel with them.
    let admin = SlackUser::admin();
    let dm = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            admin.id.clone().into(),
            SlackMessageContent::new().with_text("Your deploy finished".into()),
        ))
        .await
        .expect("direct message");
    assert_eq!(dm.channel.0, admin.dm());
    fake.expect_post(&admin.dm(), "finished").await;

    let groups = session
        .usergroups_list(&SlackApiUserGroupsListRequest::new().with_include_users(true))
        .await
        .expect("usergroups.list");
    assert_eq!(groups.usergroups.len(), 1);
    let g = &groups.usergroups[0];
    assert_eq!(
        (g.id.0.as_str(), g.handle.as_str()),
        (DEPLOYERS_GROUP, DEPLOYERS_HANDLE)
    );
    assert_eq!(g.users.as_ref().map(|u| u[0].0.clone()), Some(SlackUser::deployer().id));
    let without = session
        .usergroups_list(&SlackApiUserGroupsListRequest::new())
        .await
        .expect("usergroups.list");
    assert!(without.usergroups[0].users.is_none());
    fake.set_group_members(DEPLOYERS_GROUP, &[&SlackUser::deployer(), &SlackUser::numbered(7)]);
    let members = session
        .usergroups_users_list(&SlackApiUserGroupsUsersListRequest::new(DEPLOYERS_GROUP.into()))
        .await
        .expect("usergroups.users.list");
    assert_eq!(members.users.len(), 2);
    assert_eq!(members.users[1].0, "U0USER7");

    // What each method sent, as the adapter author needs to know.
    assert_eq!(fake.calls("auth.test").len(), 1);
    assert_eq!(fake.calls("usergroups.list")[0].params["include_users"], json!("true"));
    assert_eq!(fake.rate_limited(), 0);
    fake.assert_all_read();
    fake.assert_no_unexpected();
}

#[tokio::test]
async fn web_api_rejections_are_slacks() {
    let fake = FakeSlack::start().await;
    let client = client(&fake);

    let wrong = SlackApiToken::new("xoxb-not-ours".into());
    assert_eq!(api_error(client.open_session(&wrong).auth_test().await), "invalid_auth");
    let app = app_token();
    let r = client
        .open_session(&app)
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new().with_text("hi".into()),
        ))
        .await;
    assert_eq!(api_error(r), "not_allowed_token_type");
    let bot = bot_token();
    let session = client.open_session(&bot);
    let r = session
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await;
    assert_eq!(api_error(r), "not_allowed_token_type");
    let r = session
        .chat_update(&SlackApiChatUpdateRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new().with_text("x".into()),
            SlackTs("1.000001".into()),
        ))
        .await;
    assert_eq!(api_error(r), "message_not_found");
    let r = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            "C0NOWHERE".into(),
            SlackMessageContent::new().with_text("x".into()),
        ))
        .await;
    assert_eq!(api_error(r), "channel_not_found");

    // Block Kit limits: a button label over 75 characters.
    let long: Vec<SlackBlock> = serde_json::from_value(json!([{"type": "actions", "elements": [
        {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "x".repeat(80)}}]}]))
    .expect("blocks");
    let r = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new().with_blocks(long),
        ))
        .await;
    match r {
        Err(SlackClientError::ApiError(e)) => {
            assert_eq!(e.code, "invalid_blocks");
            assert!(
                format!("{:?}", e.errors).contains("/blocks/0/elements/0/text/text"),
                "{e:?}"
            );
        }
        other => panic!("expected invalid_blocks, got {other:?}"),
    }

    // A method the fake does not serve: 404.
    let r = session
        .users_info(&SlackApiUsersInfoRequest::new(SlackUser::admin().id.into()))
        .await;
    assert!(
        matches!(&r, Err(SlackClientError::HttpError(e)) if e.status_code.as_u16() == 404),
        "{r:?}"
    );

    // A base URL with a trailing slash makes `/api//auth.test`: slack-morphism joins with '/'.
    let slashed = client_at(&format!("{}/", fake.api_url()));
    assert!(slashed.open_session(&bot).auth_test().await.is_err());

    let unexpected = fake.with_state(|s| s.unexpected.clone());
    let want = [
        "invalid_auth",
        "not_allowed_token_type",
        "message_not_found",
        "channel_not_found",
        "invalid_blocks",
        "users.info",
        "double slash",
    ];
    for w in want {
        assert!(unexpected.iter().any(|u| u.contains(w)), "{w} not in {unexpected:#?}");
    }
    assert!(fake.with_state(|s| s.posts.is_empty()));

    // The canned failures.
    fake.fail_next("auth.test", "account_inactive");
    assert_eq!(api_error(session.auth_test().await), "account_inactive");
    session.auth_test().await.expect("only the next call fails");
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let fake = FakeSlack::start().await;
    let client = client(&fake);
    let token = bot_token();
    let session = client.open_session(&token);
    let post = |channel: &str, text: &str| {
        SlackApiChatPostMessageRequest::new(channel.into(), SlackMessageContent::new().with_text(text.into()))
    };

    let first = session.chat_post_message(&post(CHANNEL, "one")).await.expect("first");
    match session.chat_post_message(&post(CHANNEL, "two")).await {
        Err(SlackClientError::RateLimitError(e)) => {
            assert_eq!(e.retry_after, Some(Duration::from_secs(1)), "{e:?}");
            assert_eq!(e.code.as_deref(), Some("ratelimited"));
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    assert_eq!(fake.rate_limited(), 1);
    // Per channel: the other channel is free, and the limited post was not applied.
    session
        .chat_post_message(&post(OTHER_CHANNEL, "three"))
        .await
        .expect("other channel");
    assert_eq!(fake.with_state(|s| s.posts.len()), 2);

    // chat.update: 10 per 2 s for the workspace by default.
    let ts = first.ts;
    let update = |n: u32| {
        SlackApiChatUpdateRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new().with_text(format!("edit {n}")),
            ts.clone(),
        )
    };
    for n in 0..FakeSlackLimits::TEST.updates_per_window {
        session.chat_update(&update(n)).await.expect("within the update limit");
    }
    match session.chat_update(&update(99)).await {
        Err(SlackClientError::RateLimitError(e)) => {
            let after = e.retry_after.expect("Retry-After");
            assert!(
                after >= Duration::from_secs(1) && after <= Duration::from_secs(2),
                "{after:?}"
            );
        }
        other => panic!("expected a 429, got {other:?}"),
    }
    assert_eq!(fake.rate_limited(), 2);
    assert_eq!(fake.message(CHANNEL, &ts.0).expect("stored").text, "edit 9");
    fake.with_state(|s| assert_eq!(s.limited, vec!["chat.postMessage C0DEPLOYS", "chat.update C0DEPLOYS"]));

    // Waiting Retry-After out is enough.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    session
        .chat_post_message(&post(CHANNEL, "four"))
        .await
        .expect("after the window");

    fake.rate_limit_next("chat.postEphemeral", 7);
    let r = session
        .chat_post_ephemeral(&SlackApiChatPostEphemeralRequest::new(
            CHANNEL.into(),
            SlackUser::admin().id.into(),
            SlackMessageContent::new().with_text("x".into()),
        ))
        .await;
    assert!(
        matches!(&r, Err(SlackClientError::RateLimitError(e)) if e.retry_after == Some(Duration::from_secs(7))),
        "{r:?}"
    );
    fake.assert_no_unexpected();
}

#[tokio::test]
async fn file_upload_in_three_steps() {
    let fake = FakeSlack::start().await;
    let client = client(&fake);
    let token = bot_token();
    let session = client.open_session(&token);
    let content = b"TASK [deploy] ok\nPLAY RECAP failed=0\n".to_vec();

    let url = session
        .get_upload_url_external(&SlackApiFilesGetUploadUrlExternalRequest::new(
            "deploy.log".into(),
            content.len(),
        ))
        .await
        .expect("files.getUploadURLExternal");
    assert!(url
        .upload_url
        .0
        .as_str()
        .starts_with(&format!("{}/upload/", fake.url())));
    session
        .files_upload_via_url(&SlackApiFilesUploadViaUrlRequest::new(
            url.upload_url.clone(),
            content.clone(),
            "text/plain".into(),
        ))
        .await
        .expect("upload");
    let done = session
        .files_complete_upload_external(
            &SlackApiFilesCompleteUploadExternalRequest::new(vec![
                SlackApiFilesComplete::new(url.file_id.clone()).with_title("Deploy log".into())
            ])
            .with_channel_id(CHANNEL.into())
            .with_thread_ts(SlackTs("1700000000.000100".into()))
            .with_initial_comment("The log".into()),
        )
        .await
        .expect("files.completeUploadExternal");
    assert_eq!(done.files[0].id, url.file_id);
    assert_eq!(done.files[0].title.as_deref(), Some("Deploy log"));

    let u = fake.upload(&url.file_id.0).expect("recorded");
    assert!(u.completed);
    assert_eq!(u.filename, "deploy.log");
    assert_eq!(u.length, content.len());
    assert_eq!(u.bytes.as_deref(), Some(content.as_slice()));
    assert_eq!(u.content_type.as_deref(), Some("text/plain"));
    assert_eq!(u.channel.as_deref(), Some(CHANNEL));
    assert_eq!(u.thread_ts.as_deref(), Some("1700000000.000100"));
    assert_eq!(u.initial_comment.as_deref(), Some("The log"));
    assert!(u.text().contains("PLAY RECAP"));

    // Completing a file that was never uploaded fails.
    let r = session
        .files_complete_upload_external(&SlackApiFilesCompleteUploadExternalRequest::new(vec![
            SlackApiFilesComplete::new(SlackFileId("F0NOPE".into())),
        ]))
        .await;
    assert_eq!(api_error(r), "file_not_found");
}

#[tokio::test]
async fn config_snippet_points_at_the_fake() {
    let fake = FakeSlack::start().await;
    let yaml = fake.bot_config();
    assert!(yaml.contains(&format!("  api_url: {}\n", fake.api_url())), "{yaml}");
    assert!(!fake.api_url().ends_with('/'));
    assert!(yaml.contains("app_token_env: ARGOS_TEST_SLACK_APP_TOKEN"));
    fake.set_token_env();
    assert_eq!(std::env::var(BOT_TOKEN_ENV).as_deref(), Ok(BOT_TOKEN));
    assert_eq!(std::env::var(APP_TOKEN_ENV).as_deref(), Ok(APP_TOKEN));
    // The Block Kit readers.
    let blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": "Title"}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": "hi"},
               "accessory": {"type": "button", "action_id": "x", "text": {"type": "plain_text", "text": "X"}}}),
    ];
    assert_eq!(texts_in(&blocks), vec!["Title", "hi", "X"]);
    assert_eq!(buttons_in(&blocks)[0].action_id, "x");
    assert_eq!(
        broadcast_mentions("<!channel> <!here|here> <!everyone> <!subteam^S1|@d> <@U1> <!date^1|x>"),
        vec!["<!channel>", "<!here|here>", "<!everyone>"]
    );
}

// ---------------------------------------------------------------------------------------------
// Socket Mode

#[tokio::test]
async fn socket_mode_delivers_envelopes_and_records_acks() {
    let fake = FakeSlack::start_with(FakeSlackLimits::UNLIMITED).await;
    fake.set_echo_own_messages(false);
    let mut bot = Bot::start(&fake, 2).await;
    fake.wait_connections(2).await;
    assert_eq!(fake.connections_opened(), 2);
    assert_eq!(bot.hellos(2).await, vec![1, 2], "num_connections");

    // A message, then another: each envelope to one connection, in turn.
    let deployer = SlackUser::deployer();
    let first = fake.push_message(CHANNEL, &deployer, "status staging");
    let p = bot.next_push().await;
    let m = message_event(&p);
    assert_eq!(m.origin.channel.as_ref().map(|c| c.0.as_str()), Some(CHANNEL));
    assert_eq!(m.origin.channel_type.as_ref().map(|c| c.0.as_str()), Some("channel"));
    assert_eq!(m.sender.user.as_ref().map(|u| u.0.as_str()), Some("U0DEPLOY"));
    assert_eq!(
        m.content.as_ref().and_then(|c| c.text.as_deref()),
        Some("status staging")
    );
    assert_eq!(Some(m.origin.ts.0.clone()), fake.ts_of(&first));
    assert_eq!((p.team_id.0.as_str(), p.api_app_id.0.as_str()), (TEAM_ID, APP_ID));
    let ack = fake.wait_acked(&first).await;
    assert!(ack.payload.is_none() && ack.latency.expect("latency") < ACK_DEADLINE);
    // When the ack came is recorded after the envelope was pushed (the benchmarks time acks by it).
    let pushed = fake.with_state(|s| s.attempts(&first)[0].pushed);
    assert!(ack.at >= pushed, "the ack is timed before its envelope");
    let second = fake.push_message(CHANNEL, &deployer, "again");
    bot.next_push().await;
    fake.wait_acked(&second).await;
    fake.with_state(|s| {
        let (a, b) = (s.attempts(&first)[0].connection, s.attempts(&second)[0].connection);
        assert!(a.is_some() && b.is_some() && a != b, "round-robin: {a:?} then {b:?}");
    });

    // A direct message.
    let admin = SlackUser::admin();
    let direct = fake.push_message(&admin.dm(), &admin, "help");
    let p2 = bot.next_push().await;
    let dm = message_event(&p2);
    assert_eq!(dm.origin.channel_type.as_ref().map(|c| c.0.as_str()), Some("im"));
    assert_eq!(dm.origin.channel.as_ref().map(|c| c.0.clone()), Some(admin.dm()));
    fake.wait_acked(&direct).await;

    // A mention: a `message` and an `app_mention` event for the same message.
    let (as_message, as_mention) = fake.push_mention(CHANNEL, &SlackUser::admin(), "deploy staging");
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let p = bot.next_push().await;
        match &p.event {
            SlackEventCallbackBody::Message(m) => {
                let text = m.content.as_ref().and_then(|c| c.text.clone()).unwrap_or_default();
                assert_eq!(text, format!("<@{BOT_USER_ID}> deploy staging"));
                kinds.push(("message", m.origin.ts.0.clone(), p.event_id.0.clone()));
            }
            SlackEventCallbackBody::AppMention(m) => {
                assert_eq!(m.user.0, "U0ADMIN");
                assert_eq!(m.channel.0, CHANNEL);
                assert!(m
                    .content
                    .text
                    .as_deref()
                    .is_some_and(|t| t.starts_with("<@U0ARGOSBOT>")));
                kinds.push(("app_mention", m.origin.ts.0.clone(), p.event_id.0.clone()));
            }
            other => panic!("expected a message or app_mention, got {other:?}"),
        }
    }
    kinds.sort();
    assert_eq!((kinds[0].0, kinds[1].0), ("app_mention", "message"));
    assert_eq!(kinds[0].1, kinds[1].1, "same ts");
    assert_ne!(kinds[0].2, kinds[1].2, "different event ids");
    fake.wait_acked(&as_message).await;
    fake.wait_acked(&as_mention).await;

    // A slash command: the ack carries the command's immediate answer; then the response_url.
    let slash = fake.push_slash(CHANNEL, &SlackUser::admin(), "deploy staging");
    let command = match bot.next().await {
        Got::Command(c) => *c,
        other => panic!("expected a command, got {other:?}"),
    };
    assert_eq!(command.command.0, COMMAND);
    assert_eq!(command.text.as_deref(), Some("deploy staging"));
    assert_eq!(
        (command.user_id.0.as_str(), command.channel_id.0.as_str()),
        ("U0ADMIN", CHANNEL)
    );
    let ack = fake.wait_acked(&slash).await;
    assert_eq!(
        ack.payload.as_ref().map(|p| p["text"].clone()),
        Some(json!("on it: deploy staging"))
    );
    let client = client(&fake);
    client
        .respond_to_event(
            &command.response_url,
            &SlackApiPostWebhookMessageRequest::new(SlackMessageContent::new().with_text("Deployed.".into())),
        )
        .await
        .expect("respond_to_event");
    let r = fake.wait_response(&slash).await;
    assert_eq!((r.text.as_str(), r.channel.as_str()), ("Deployed.", CHANNEL));
    assert!(!r.replace_original && r.response_type.is_none());

    // A button click on a message the bot posted, answered through its response_url.
    let token = bot_token();
    let posted = client
        .open_session(&token)
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new()
                .with_text("Deploy staging?".into())
                .with_blocks(approval_blocks()),
        ))
        .await
        .expect("post");
    let click = fake.push_button(CHANNEL, &deployer, &posted.ts.0, "approve", "job-1");
    let actions = match bot.next().await {
        Got::Interaction(i) => match *i {
            SlackInteractionEvent::BlockActions(a) => a,
            other => panic!("expected block_actions, got {other:?}"),
        },
        other => panic!("expected block_actions, got {other:?}"),
    };
    let action = &actions.actions.as_ref().expect("actions")[0];
    assert_eq!(
        (action.action_id.0.as_str(), action.value.as_deref()),
        ("approve", Some("job-1"))
    );
    assert_eq!(action.block_id.as_ref().map(|b| b.0.as_str()), Some("decide"));
    assert_eq!(actions.user.as_ref().map(|u| u.id.0.as_str()), Some("U0DEPLOY"));
    assert_eq!(actions.channel.as_ref().map(|c| c.id.0.as_str()), Some(CHANNEL));
    match &actions.container {
        SlackInteractionActionContainer::Message(c) => assert_eq!(c.message_ts, posted.ts),
        other => panic!("expected a message container, got {other:?}"),
    }
    let clicked = actions.message.as_ref().expect("the clicked message");
    assert_eq!(clicked.origin.ts, posted.ts);
    assert_eq!(clicked.content.blocks.as_ref().map(Vec::len), Some(2));
    fake.wait_acked(&click).await;
    client
        .respond_to_event(
            actions.response_url.as_ref().expect("response_url"),
            &SlackApiPostWebhookMessageRequest::new(SlackMessageContent::new().with_text("Approved by bob".into()))
                .with_replace_original(true),
        )
        .await
        .expect("respond_to_event");
    fake.wait_response(&click).await;
    let m = fake.message(CHANNEL, &posted.ts.0).expect("stored");
    assert_eq!((m.text.as_str(), m.buttons().len(), m.edits), ("Approved by bob", 0, 1));

    // A redelivery: same envelope id and event, retry_attempt 1, to the other connection.
    fake.redeliver(&first);
    let again = bot.next_push().await;
    assert_eq!(again.event_id, p.event_id);
    fake.wait_for("the redelivery's ack", |s| {
        (s.acks.iter().filter(|a| a.envelope_id == first).count() == 2).then_some(())
    })
    .await;
    fake.with_state(|s| {
        let attempts = s.attempts(&first);
        assert_eq!(attempts.len(), 2);
        assert_eq!(
            (attempts[1].retry_attempt, attempts[1].retry_reason.as_str()),
            (1, "timeout")
        );
    });

    assert_envelopes_parse(&fake);
    fake.assert_acked_in_time().await;
    fake.assert_no_unexpected();
    bot.assert_quiet();
    bot.stop().await;
}

#[tokio::test]
async fn socket_mode_reconnects_after_disconnect_and_drop() {
    let fake = FakeSlack::start().await;
    let mut bot = Bot::start(&fake, 1).await;
    fake.wait_connections(1).await;

    // refresh_requested: the library opens a new connection; the old one is closed.
    fake.disconnect("refresh_requested");
    fake.wait_for("a second connection, the first closed", |s| {
        (s.sockets.len() == 2 && !s.sockets[0].open && s.open_sockets() == 1).then_some(())
    })
    .await;
    assert_eq!(fake.connections_opened(), 2);
    let id = fake.push_message(CHANNEL, &SlackUser::admin(), "after refresh");
    bot.next_push().await;
    assert_eq!(fake.wait_acked(&id).await.connection, 1);

    // slack-morphism restarts its connection on any disconnect, a warning too.
    fake.disconnect("warning");
    fake.wait_for("a third connection", |s| {
        (s.sockets.len() == 3 && s.open_sockets() == 1 && s.sockets[2].open).then_some(())
    })
    .await;

    // A dropped connection (no close frame): the envelope being handled is never acked there;
    // the library reconnects, and the redelivery is acked.
    let slow = fake.push_message(CHANNEL, &SlackUser::admin(), "slow");
    bot.next_push().await;
    fake.drop_connections();
    fake.wait_for("a fourth connection", |s| {
        (s.sockets.len() == 4 && s.open_sockets() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.unacked(), vec![slow.clone()]);
    fake.redeliver(&slow);
    let again = bot.next_push().await;
    assert_eq!(
        message_event(&again).content.as_ref().and_then(|c| c.text.as_deref()),
        Some("slow")
    );
    assert_eq!(fake.wait_acked(&slow).await.connection, 3);
    assert!(
        bot.wss_errors
            .iter()
            .any(|e| e.contains("ResetWithoutClosingHandshake")),
        "the library saw no abrupt close: {:?}",
        bot.wss_errors
    );

    // The bot's own post comes back as a `message` event from its bot id.
    let client = client(&fake);
    let token = bot_token();
    client
        .open_session(&token)
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            CHANNEL.into(),
            SlackMessageContent::new().with_text("Deploying".into()),
        ))
        .await
        .expect("post");
    let echo = bot.next_push().await;
    let m = message_event(&echo);
    assert_eq!(m.sender.bot_id.as_ref().map(|b| b.0.as_str()), Some(BOT_ID));
    fake.expect_post(CHANNEL, "Deploying").await;

    assert_envelopes_parse(&fake);
    fake.assert_acked_in_time().await;
    fake.assert_no_unexpected();
    bot.assert_quiet();
    bot.stop().await;
}

#[tokio::test]
async fn envelopes_wait_for_a_connection_and_tickets_are_single_use() {
    let fake = FakeSlack::start().await;
    // Pushed before the bot connects: delivered on its first connection.
    let early = fake.push_slash(OTHER_CHANNEL, &SlackUser::numbered(3), "status");
    let mut bot = Bot::start(&fake, 1).await;
    match bot.next().await {
        Got::Command(c) => assert_eq!(
            (c.user_id.0.as_str(), c.channel_id.0.as_str()),
            ("U0USER3", OTHER_CHANNEL)
        ),
        other => panic!("expected a command, got {other:?}"),
    }
    fake.wait_acked(&early).await;
    bot.stop().await;

    // A ticket works once; a made-up one is refused.
    let client = client(&fake);
    let app = app_token();
    let url = client
        .open_session(&app)
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await
        .expect("apps.connections.open")
        .url;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.0.as_str()).await.expect("connect");
    let hello: Value = match ws.next().await {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => serde_json::from_str(&t).expect("json"),
        other => panic!("expected hello, got {other:?}"),
    };
    assert_eq!(
        (hello["type"].as_str(), hello["connection_info"]["app_id"].as_str()),
        (Some("hello"), Some(APP_ID))
    );
    assert!(
        hello["debug_info"]["host"].is_string() && hello["num_connections"].is_u64(),
        "{hello}"
    );
    assert!(
        tokio_tungstenite::connect_async(url.0.as_str()).await.is_err(),
        "ticket reused"
    );
    let forged = format!("{}/link?ticket=999", fake.socket_url());
    assert!(tokio_tungstenite::connect_async(forged.as_str()).await.is_err());
    let unexpected = fake.with_state(|s| s.unexpected.clone());
    assert_eq!(unexpected.len(), 2, "{unexpected:?}");
    assert!(unexpected.iter().all(|u| u.contains("ticket")));
}

#[tokio::test]
#[should_panic(expected = "not acknowledged")]
async fn an_envelope_never_acked_fails_the_check() {
    let fake = FakeSlack::start().await;
    fake.push_message(CHANNEL, &SlackUser::stranger(), "nobody listens");
    fake.assert_acked_in_time().await;
}
