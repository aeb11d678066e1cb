//! A fake Discord on loopback: the REST API (reached through serenity's `api_proxy`) and the
//! gateway websocket. It records everything the bot sends, enforces Discord's rate limits
//! (answering 429 like Discord does, and counting them), and lets a test wait for what it
//! expects without sleeping. A test fails if the bot sent a message it did not read
//! ([`FakeDiscord::assert_all_read`]).
//!
//! Endpoints served (under `/api/v10`): `GET gateway`, `GET gateway/bot`, `GET users/@me`,
//! `GET|PUT|POST applications/{app}/commands`, `GET|PUT|POST applications/{app}/guilds/{g}/commands`,
//! `POST channels/{c}/messages` (JSON or multipart), `GET|PATCH channels/{c}/messages/{m}`,
//! `POST users/@me/channels` (a DM channel; `dm.rs`), `POST interactions/{id}/{token}/callback`,
//! `GET|PATCH webhooks/{app}/{token}/messages/@original`,
//! `POST webhooks/{app}/{token}` (followups), `PATCH webhooks/{app}/{token}/messages/{m}`.
//! Anything else is answered 404 and recorded in [`State::unexpected`].
//!
//! Message components (buttons) are recorded as sent ([`Sent::components`],
//! [`StoredMessage::components`]) and echoed back; [`FakeDiscord::push_button`] clicks one.
//!
//! Several bot processes (replicas): [`FakeDiscord::start_sharded`] delivers every gateway event
//! to every open session, as Discord does for the sessions on one shard (the default fake hands
//! each event to one session only). [`FakeDiscord::add_session`] gives each replica its own
//! REST base URL (and through it its own gateway address), so the fake records which replica
//! sent each request ([`Sent::session`], [`Callback::session`]) and which session each event
//! was written to ([`State::deliveries`]).
//!
//! Layout: this file holds the constants, test users and what the fake records; `fixtures.rs`
//! the JSON it sends, `rest.rs` the REST API, `gateway.rs` the websocket, `api.rs` what the
//! tests call.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub use super::fake_discord_limits::{Announced, Limited, Refusal};
use super::fake_discord_limits::{Decision, Limits};
use super::http_server::{HttpServer, Request, Response, Router};

/// The bot token the fake accepts.
pub const TOKEN: &str = "fake-token-Zm9vYmFyYmF6cXV4.argos-tests";
pub const BOT_ID: u64 = 1_100_000_000_000_000_001;
pub const APP_ID: u64 = 1_100_000_000_000_000_002;
pub const GUILD_ID: u64 = 1_100_000_000_000_000_003;
pub const COMMAND_ID: u64 = 1_100_000_000_000_000_004;
/// Two channels of the test guild.
pub const CHANNEL: u64 = 1_200_000_000_000_000_001;
pub const OTHER_CHANNEL: u64 = 1_200_000_000_000_000_002;
pub const ADMIN_ROLE: u64 = 1_300_000_000_000_000_001;
pub const DEPLOYER_ROLE: u64 = 1_300_000_000_000_000_002;
pub const MEMBER_ROLE: u64 = 1_300_000_000_000_000_003;

const INTENT_MESSAGE_CONTENT: u64 = 1 << 15;
const TIMESTAMP: &str = "2025-01-01T00:00:00.000000+00:00";
/// How long a wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);
/// The header the per-session REST endpoints ([`FakeDiscord::add_session`]) add to each request
/// before it is served, naming the session.
const SESSION_HEADER: &str = "x-fake-discord-session";

/// A short rate-limit window so pacing tests stay quick; the fake enforces the same window
/// as the adapter's limits below, and the adapter stays under the fake's global limit.
pub const FAST_WINDOW: Duration = Duration::from_millis(250);
pub const FAST_FAKE_LIMITS: FakeLimits = FakeLimits {
    per_channel: 5,
    window: FAST_WINDOW,
    global_per_second: 50,
};
pub const FAST_LIMITS: argos::platform::discord::RateLimits = argos::platform::discord::RateLimits {
    per_channel: 5,
    window: FAST_WINDOW,
    global_per_second: 40,
};

/// A person in the test guild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestUser {
    pub id: u64,
    pub name: &'static str,
    pub roles: Vec<u64>,
    pub bot: bool,
}

impl TestUser {
    pub fn admin() -> TestUser {
        TestUser {
            id: 1_400_000_000_000_000_001,
            name: "alice",
            roles: vec![ADMIN_ROLE, MEMBER_ROLE],
            bot: false,
        }
    }
    pub fn deployer() -> TestUser {
        TestUser {
            id: 1_400_000_000_000_000_002,
            name: "bob",
            roles: vec![DEPLOYER_ROLE, MEMBER_ROLE],
            bot: false,
        }
    }
    pub fn stranger() -> TestUser {
        TestUser {
            id: 1_400_000_000_000_000_003,
            name: "mallory",
            roles: vec![],
            bot: false,
        }
    }
    /// Another bot in the guild.
    pub fn other_bot() -> TestUser {
        TestUser {
            id: 1_400_000_000_000_000_004,
            name: "otherbot",
            roles: vec![],
            bot: true,
        }
    }
    /// The bot under test itself.
    pub fn argos() -> TestUser {
        TestUser {
            id: BOT_ID,
            name: "argos",
            roles: vec![],
            bot: true,
        }
    }
    /// The `n`th of many ordinary members (`user<n>`, with the member role only), e.g. for
    /// load: each has an id of its own that a config can grant permissions to.
    pub fn numbered(n: u32) -> TestUser {
        TestUser {
            id: 1_400_000_000_000_100_000 + u64::from(n),
            name: Box::leak(format!("user{n}").into_boxed_str()),
            roles: vec![MEMBER_ROLE],
            bot: false,
        }
    }
    pub fn id_str(&self) -> String {
        self.id.to_string()
    }
    pub fn role_strs(&self) -> Vec<String> {
        self.roles.iter().map(u64::to_string).collect()
    }
}

/// The rate limits the fake enforces (sliding windows, measured when requests arrive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeLimits {
    /// Message creates + edits per channel in any `window`.
    pub per_channel: u32,
    pub window: Duration,
    /// All requests in any second.
    pub global_per_second: u32,
}

impl FakeLimits {
    pub const DISCORD: FakeLimits = FakeLimits {
        per_channel: 5,
        window: Duration::from_secs(5),
        global_per_second: 50,
    };
}

/// What kind of output the bot produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentKind {
    /// `POST channels/{c}/messages`.
    Create,
    /// `PATCH channels/{c}/messages/{m}`.
    Edit,
    /// `PATCH webhooks/{app}/{token}/messages/@original` (the answer to a slash command).
    InteractionEdit,
    /// `POST webhooks/{app}/{token}` or a channel-message interaction callback.
    Followup,
}

/// One message the bot sent or edited, in order.
#[derive(Debug, Clone)]
pub struct Sent {
    pub kind: SentKind,
    pub message_id: String,
    pub channel: String,
    pub content: String,
    /// File names uploaded with this request.
    pub attachments: Vec<String>,
    /// The interaction id, for interaction answers.
    pub interaction: Option<String>,
    /// The action rows this request set (`Some(vec![])` removes them); `None`: left as they were.
    pub components: Option<Vec<Value>>,
    pub at: Instant,
    /// The [`FakeDiscord::add_session`] endpoint the request came through (`None`: [`FakeDiscord::url`]).
    pub session: Option<String>,
    /// The request's `allowed_mentions` (`None`: it sent none, so Discord would ping whatever
    /// the content mentions).
    pub allowed_mentions: Option<Value>,
}

impl Sent {
    /// Whether Discord would ping nobody for this request: `allowed_mentions` present with
    /// nothing to parse and no user or role listed.
    pub fn pings_nobody(&self) -> bool {
        let Some(a) = &self.allowed_mentions else { return false };
        let empty = |k: &str| a.get(k).is_none_or(|v| v.as_array().is_some_and(|x| x.is_empty()));
        a.get("parse").is_some() && empty("parse") && empty("users") && empty("roles")
    }

    /// The buttons this request set (none when it left them as they were).
    pub fn buttons(&self) -> Vec<FakeButton> {
        buttons_in(self.components.as_deref().unwrap_or_default())
    }
}

/// A message as it stands now.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: String,
    pub channel: String,
    pub content: String,
    /// File names, as of the last upload.
    pub attachments: Vec<String>,
    /// The action rows as they stand now.
    pub components: Vec<Value>,
    pub edits: u32,
}

impl StoredMessage {
    /// The buttons under the message now.
    pub fn buttons(&self) -> Vec<FakeButton> {
        buttons_in(&self.components)
    }
}

/// A button as the bot sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeButton {
    pub label: String,
    /// 1 primary, 2 secondary, 3 success, 4 danger, 5 link.
    pub style: u64,
    pub custom_id: String,
}

/// The buttons in some action rows, in order.
pub fn buttons_in(rows: &[Value]) -> Vec<FakeButton> {
    rows.iter()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["type"].as_u64() == Some(2))
        .map(|c| FakeButton {
            label: c["label"].as_str().unwrap_or("").to_string(),
            style: c["style"].as_u64().unwrap_or(0),
            custom_id: c["custom_id"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

/// An interaction callback (`type` 5 = deferred, 4 = message, 8 = autocomplete choices).
#[derive(Debug, Clone)]
pub struct Callback {
    pub interaction_id: String,
    pub kind: u64,
    pub data: Value,
    pub at: Instant,
    /// The [`FakeDiscord::add_session`] endpoint the callback came through.
    pub session: Option<String>,
}

/// One dispatch (MESSAGE_CREATE, INTERACTION_CREATE, ...) written to one gateway session.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The session's [`FakeDiscord::add_session`] name (`None`: the fake's own gateway address).
    pub session: Option<String>,
    /// The event's `id` (message or interaction id).
    pub id: String,
    /// When it was written to the session.
    pub at: Instant,
}

/// One gateway connection.
#[derive(Debug, Clone)]
pub struct GatewayConn {
    pub session: Option<String>,
    /// READY was sent on it.
    pub ready: bool,
    /// Still connected.
    pub open: bool,
}

/// Everything the fake saw.
#[derive(Debug, Default)]
pub struct State {
    pub sent: Vec<Sent>,
    pub messages: BTreeMap<String, StoredMessage>,
    pub callbacks: Vec<Callback>,
    /// Registered commands: (guild id or None for global, the command JSON).
    pub commands: Vec<(Option<String>, Value)>,
    /// The intents of every IDENTIFY.
    pub identifies: Vec<u64>,
    pub ready_sent: u32,
    pub heartbeats: u32,
    /// 429 answers sent.
    pub rate_limited: u32,
    /// Requests no route matched, or with a wrong token: `"METHOD /path"`.
    pub unexpected: Vec<String>,
    /// Every REST request: (method, path, arrival).
    pub requests: Vec<(String, String, Instant)>,
    /// Each 429 answer: (session, `"METHOD /path"`).
    pub limited: Vec<(Option<String>, String)>,
    /// Each 429 answer, with its time and what it asked for.
    pub limited_at: Vec<Limited>,
    /// Scripted 429s and announced buckets ([`FakeDiscord::refuse`], [`FakeDiscord::announce`]).
    limits: Limits,
    /// Every event written to a gateway session, in order.
    pub deliveries: Vec<Delivery>,
    /// Every gateway connection, in the order they were opened.
    pub gateway_conns: Vec<GatewayConn>,
    read: usize,
    next_id: u64,
    channel_log: HashMap<String, VecDeque<Instant>>,
    global_log: VecDeque<Instant>,
    /// interaction token → (interaction id, channel).
    interactions: HashMap<String, (String, String)>,
    /// Person → the DM channel the bot opened with them (`POST users/@me/channels`).
    pub dm_channels: BTreeMap<String, String>,
    /// People who take no direct messages from the bot (a message to them: 403, code 50007).
    pub dms_refused: std::collections::BTreeSet<String>,
}

impl State {
    fn record_429(&mut self, req: &Request, at: Instant, retry_after: Duration, global: bool) {
        let request = format!("{} {}", req.method, req.path);
        self.rate_limited += 1;
        self.limited.push((session_of(req), request.clone()));
        self.limited_at.push(Limited {
            request,
            session: session_of(req),
            at,
            retry_after,
            global,
        });
    }

    /// Requests that came back before a 429's wait was over: to the refused route, or after
    /// a global 429 to any route but the interaction endpoints. (`"METHOD /path"`, how long
    /// after the 429.)
    pub fn early_retries(&self) -> Vec<(String, Duration)> {
        let mut early = Vec::new();
        for l in &self.limited_at {
            for (m, p, at) in &self.requests {
                let request = format!("{m} {p}");
                let held = if l.global {
                    !p.contains("/interactions/") && !p.contains("/webhooks/")
                } else {
                    request == l.request
                };
                if held && *at > l.at && *at < l.at + l.retry_after {
                    early.push((request, *at - l.at));
                }
            }
        }
        early
    }

    /// When each request matching `"METHOD /path"` prefix `request` arrived, in order.
    pub fn arrivals(&self, request: &str) -> Vec<Instant> {
        self.requests
            .iter()
            .filter(|(m, p, _)| format!("{m} {p}").starts_with(request))
            .map(|(_, _, at)| *at)
            .collect()
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        (1_500_000_000_000_000_000 + self.next_id).to_string()
    }

    /// Unread output, oldest first.
    pub fn unread(&self) -> &[Sent] {
        &self.sent[self.read..]
    }

    /// The intents of the last IDENTIFY.
    pub fn intents(&self) -> Option<u64> {
        self.identifies.last().copied()
    }
}

struct Inner {
    state: Mutex<State>,
    notify: Notify,
    limits: FakeLimits,
    dispatch: mpsc::UnboundedSender<Value>,
    dispatch_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
    ws_url: String,
    /// Every event goes to every open session ([`FakeDiscord::start_sharded`]).
    sharded: bool,
    /// The open sessions' own queues (sharded mode): (connection number, sender).
    subscribers: Mutex<Vec<(u64, mpsc::UnboundedSender<Value>)>>,
    next_conn: AtomicU64,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.notify.notify_waiters();
    }

    fn dispatch(&self, t: &str, d: Value) {
        let ev = json!({"t": t, "d": d});
        if self.sharded {
            let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
            subs.retain(|(_, tx)| tx.send(ev.clone()).is_ok());
        } else {
            let _ = self.dispatch.send(ev);
        }
    }
}

/// The session a request came through ([`SESSION_HEADER`]).
fn session_of(req: &Request) -> Option<String> {
    req.header(SESSION_HEADER).map(str::to_string)
}

/// A replica's own endpoints: its REST server and its gateway listener.
struct SessionEndpoint {
    http: HttpServer,
    gateway: JoinHandle<()>,
}

/// The fake: a REST server and a gateway listener on 127.0.0.1.
pub struct FakeDiscord {
    inner: Arc<Inner>,
    http: HttpServer,
    gateway: JoinHandle<()>,
    sessions: Mutex<Vec<SessionEndpoint>>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.gateway.abort();
        for s in self.sessions.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            s.gateway.abort();
            s.http.shutdown();
        }
    }
}

mod api;
mod dm;
mod fixtures;
mod gateway;
mod rest;
pub use fixtures::*;
use gateway::*;
use rest::*;
