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

mod socket_mode;
mod web_api;
