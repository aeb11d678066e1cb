//! A fake Slack on loopback for the integration tests: the Web API (what `slack-morphism`'s
//! `SlackClient` calls, pointed here with `with_slack_api_url`) and Socket Mode (the websocket
//! `apps.connections.open` hands out). It records everything the bot sends, enforces Slack's
//! rate limits (answering 429 with `Retry-After`, and counting them), checks Block Kit limits
//! the way Slack rejects `invalid_blocks`, and lets a test wait for what it expects without
//! sleeping. A test can fail the bot for an envelope it did not acknowledge within Slack's 3 s
//! ([`FakeSlack::assert_acked_in_time`]).
//!
//! Web API (`{api_url}/{method}`, token in `Authorization: Bearer`): `auth.test`,
//! `apps.connections.open` (app token), `chat.postMessage`, `chat.update`, `chat.postEphemeral`,
//! `files.getUploadURLExternal`, `files.completeUploadExternal`, `usergroups.list`,
//! `usergroups.users.list`; plus `POST /upload/{file}` (the upload URL) and
//! `POST /respond/{n}` (the `response_url` of slash commands and interactions). Anything else
//! is answered 404 and recorded in [`State::unexpected`].
//!
//! Socket Mode (`ws://127.0.0.1:PORT/link?ticket=N`, one ticket per `apps.connections.open`):
//! `hello` on connect, then the envelopes the test pushes, each to ONE open connection in turn
//! (round-robin, as Slack does); an envelope pushed while no connection is open waits for the
//! next one. The bot's own posts are echoed back as `message` events (with `bot_id`), as Slack
//! does for an app subscribed to `message.channels` ([`FakeSlack::set_echo_own_messages`]).
//!
//! Layout: `web.rs` serves the Web API, `socket.rs` the Socket Mode websocket, `events.rs`
//! builds the payloads and reads Block Kit, `state.rs` holds what the fake records.

mod api;
mod events;
mod params;
mod socket;
mod state;
mod web;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::http_server::HttpServer;

#[allow(unused_imports)]
pub use events::{broadcast_mentions, buttons_in, texts_in, SlackButton};
pub use state::*;

/// The bot token (`xoxb-`) the Web API accepts for every method but `apps.connections.open`.
pub const BOT_TOKEN: &str = "xoxb-fake-1111-argos-tests-Zm9vYmFy";
/// The app-level token (`xapp-`) `apps.connections.open` takes.
pub const APP_TOKEN: &str = "xapp-1-fake-argos-tests-cXV4YmF6";
pub const TEAM_ID: &str = "T0ARGOS";
pub const TEAM_DOMAIN: &str = "argos-tests";
pub const APP_ID: &str = "A0ARGOS";
pub const BOT_USER_ID: &str = "U0ARGOSBOT";
pub const BOT_ID: &str = "B0ARGOS";
/// Two public channels the bot is in.
pub const CHANNEL: &str = "C0DEPLOYS";
pub const OTHER_CHANNEL: &str = "C0OTHER";
/// A user group (`@deployers`); [`SlackUser::deployer`] is its member.
pub const DEPLOYERS_GROUP: &str = "S0DEPLOYERS";
pub const DEPLOYERS_HANDLE: &str = "deployers";
/// The slash command the fake's `slash_commands` envelopes carry.
pub const COMMAND: &str = "/argos";
/// The environment variables [`FakeSlack::bot_config`] names and [`FakeSlack::set_token_env`] sets.
pub const APP_TOKEN_ENV: &str = "ARGOS_TEST_SLACK_APP_TOKEN";
pub const BOT_TOKEN_ENV: &str = "ARGOS_TEST_SLACK_BOT_TOKEN";

/// How long a wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);
/// Slack redelivers an envelope that was not acknowledged within 3 s.
pub const ACK_DEADLINE: Duration = Duration::from_secs(3);
/// After a `disconnect` that is not a `warning`, Slack closes the socket shortly after.
pub const CLOSE_AFTER_DISCONNECT: Duration = Duration::from_millis(250);
/// A `response_url` may be used this many times (Slack: 5 times within 30 minutes).
pub const RESPONSE_URL_USES: u32 = 5;

/// A person in the test workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackUser {
    pub id: String,
    pub name: String,
}

impl SlackUser {
    pub fn new(id: &str, name: &str) -> SlackUser {
        SlackUser {
            id: id.to_string(),
            name: name.to_string(),
        }
    }
    pub fn admin() -> SlackUser {
        SlackUser::new("U0ADMIN", "alice")
    }
    /// A member of [`DEPLOYERS_GROUP`].
    pub fn deployer() -> SlackUser {
        SlackUser::new("U0DEPLOY", "bob")
    }
    pub fn stranger() -> SlackUser {
        SlackUser::new("U0STRANGER", "mallory")
    }
    /// The `n`th of many ordinary members (`U0USER{n}`, `user{n}`), e.g. for load.
    pub fn numbered(n: u32) -> SlackUser {
        SlackUser::new(&format!("U0USER{n}"), &format!("user{n}"))
    }
    /// The bot's direct message channel with this user (`U0ADMIN` → `D0ADMIN`); posting to the
    /// user id lands there, as on Slack.
    pub fn dm(&self) -> String {
        format!("D{}", self.id.strip_prefix('U').unwrap_or(&self.id))
    }
}

/// The rate limits the fake enforces (sliding windows, measured when requests arrive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeSlackLimits {
    /// `chat.postMessage` per channel in any `post_window`.
    pub post_per_channel: u32,
    pub post_window: Duration,
    /// `chat.update` for the whole workspace in any `update_window`.
    pub updates_per_window: u32,
    pub update_window: Duration,
}

impl FakeSlackLimits {
    /// What [`FakeSlack::start`] uses: Slack's post limit, and tier 3 scaled down to a window a
    /// test can wait out.
    pub const TEST: FakeSlackLimits = FakeSlackLimits {
        post_per_channel: 1,
        post_window: Duration::from_secs(1),
        updates_per_window: 10,
        update_window: Duration::from_secs(2),
    };
    /// Limits no test reaches, for tests about something else.
    pub const UNLIMITED: FakeSlackLimits = FakeSlackLimits {
        post_per_channel: u32::MAX,
        post_window: Duration::from_secs(1),
        updates_per_window: u32::MAX,
        update_window: Duration::from_secs(1),
    };
}

impl Default for FakeSlackLimits {
    fn default() -> FakeSlackLimits {
        FakeSlackLimits::TEST
    }
}

pub(crate) struct Inner {
    state: Mutex<State>,
    notify: Notify,
    limits: Mutex<FakeSlackLimits>,
    echo: AtomicBool,
    /// `http://127.0.0.1:PORT` of the Web API server.
    http_base: String,
    /// `ws://127.0.0.1:PORT` of the Socket Mode listener.
    ws_base: String,
    links: Mutex<socket::Links>,
    /// Open: `hello` is said on connect; closed: connections wait for it ([`FakeSlack::hold_hello`]).
    hello_gate: tokio::sync::watch::Sender<bool>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.notify.notify_waiters();
    }

    fn limits(&self) -> FakeSlackLimits {
        *self.limits.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unexpected(&self, what: String) {
        self.state().unexpected.push(what);
        self.changed();
    }

    fn envelope_id(&self) -> String {
        let n = self.state().new_id();
        format!("00000000-fa4e-4000-8000-{n:012x}")
    }

    /// A `response_url` for the envelope `envelope_id`.
    fn response_url(&self, envelope_id: &str, channel: &str, message_ts: Option<&str>) -> String {
        let mut s = self.state();
        s.targets.push(ResponseTarget {
            envelope_id: envelope_id.to_string(),
            channel: channel.to_string(),
            message_ts: message_ts.map(str::to_string),
            uses: 0,
        });
        format!("{}/respond/{}", self.http_base, s.targets.len())
    }

    /// Records a new envelope and hands it to the next connection (or queues it).
    fn enqueue(&self, envelope_id: String, kind: &str, accepts: bool, payload: Value, echo: bool) -> String {
        let envelope = Envelope {
            envelope_id: envelope_id.clone(),
            kind: kind.to_string(),
            retry_attempt: 0,
            retry_reason: String::new(),
            accepts_response_payload: accepts,
            payload,
            pushed: Instant::now(),
            delivered: None,
            connection: None,
            echo,
        };
        self.send_attempt(envelope);
        envelope_id
    }

    fn send_attempt(&self, envelope: Envelope) {
        let frame = events::envelope_frame(&envelope);
        let idx = {
            let mut s = self.state();
            s.envelopes.push(envelope);
            s.envelopes.len() - 1
        };
        self.changed();
        socket::deliver(self, idx, frame);
    }

    /// Echoes one of the bot's posts as a `message` event, when a connection is open (Slack
    /// does not keep events for an app that is not connected).
    fn echo_post(&self, post: &Post) {
        if !self.echo.load(Ordering::Relaxed) || !socket::has_open_link(self) {
            return;
        }
        let event_id = self.state().new_id();
        let event = events::bot_message_event(post);
        let payload = events::event_callback(event, event_id, &post.ts);
        let id = self.envelope_id();
        self.enqueue(id, "events_api", false, payload, true);
    }
}

/// The fake: a Web API server and a Socket Mode listener on 127.0.0.1.
pub struct FakeSlack {
    inner: Arc<Inner>,
    http: HttpServer,
    socket: JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.socket.abort();
        socket::drop_all(&self.inner);
    }
}

/// `{"ok":true, ...}` with `fields` merged in.
fn ok(fields: Value) -> Value {
    let mut v = json!({"ok": true});
    if let (Some(o), Value::Object(f)) = (v.as_object_mut(), fields) {
        o.extend(f);
    }
    v
}
