//! A fake Discord on loopback: the REST API (reached through serenity's `api_proxy`) and the
//! gateway websocket. It records everything the bot sends, enforces Discord's rate limits
//! (answering 429 like Discord does, and counting them), and lets a test wait for what it
//! expects without sleeping. A test fails if the bot sent a message it did not read
//! ([`FakeDiscord::assert_all_read`]).
//!
//! Endpoints served (under `/api/v10`): `GET gateway`, `GET gateway/bot`, `GET users/@me`,
//! `GET|PUT|POST applications/{app}/commands`, `GET|PUT|POST applications/{app}/guilds/{g}/commands`,
//! `POST channels/{c}/messages` (JSON or multipart), `GET|PATCH channels/{c}/messages/{m}`,
//! `POST interactions/{id}/{token}/callback`, `GET|PATCH webhooks/{app}/{token}/messages/@original`,
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

// ---------------------------------------------------------------------------------------------
// Fixtures. Each one deserializes into serenity's model type (see `fixtures_deserialize`).

pub fn user_json(u: &TestUser) -> Value {
    json!({
        "id": u.id_str(),
        "username": u.name,
        "discriminator": "0",
        "global_name": u.name,
        "avatar": null,
        "bot": u.bot,
        "public_flags": 0,
    })
}

pub fn bot_user_json() -> Value {
    let mut u = user_json(&TestUser::argos());
    u["verified"] = json!(true);
    u["mfa_enabled"] = json!(false);
    u["flags"] = json!(0);
    u
}

/// A member as messages carry it (without `user`).
pub fn partial_member_json(u: &TestUser) -> Value {
    json!({
        "roles": u.role_strs(),
        "joined_at": TIMESTAMP,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "premium_since": null,
        "nick": null,
        "avatar": null,
    })
}

/// A member as interactions carry it (with `user` and `permissions`).
pub fn member_json(u: &TestUser) -> Value {
    let mut m = partial_member_json(u);
    m["user"] = user_json(u);
    m["permissions"] = json!("2248473465835073");
    m
}

pub fn ready_json(ws_url: &str) -> Value {
    json!({
        "v": 10,
        "user": bot_user_json(),
        "guilds": [{"id": GUILD_ID.to_string(), "unavailable": true}],
        "session_id": "fake-session-1",
        "resume_gateway_url": ws_url,
        "shard": [0, 1],
        "application": {"id": APP_ID.to_string(), "flags": 0},
        "private_channels": [],
    })
}

pub fn attachment_json(id: &str, name: &str, size: usize) -> Value {
    let url = format!("https://cdn.discordapp.com/attachments/0/{id}/{name}");
    json!({"id": id, "filename": name, "size": size, "url": url, "proxy_url": url, "content_type": "text/plain"})
}

/// A message; `guild` adds `guild_id` and `member` as the gateway sends them.
pub fn message_json(
    id: &str,
    channel: &str,
    author: &TestUser,
    content: &str,
    attachments: &[Value],
    edited: bool,
    guild: bool,
) -> Value {
    let mut mentions = Vec::new();
    if content.contains(&format!("<@{BOT_ID}>")) || content.contains(&format!("<@!{BOT_ID}>")) {
        mentions.push(user_json(&TestUser::argos()));
    }
    let mut m = json!({
        "id": id,
        "channel_id": channel,
        "author": user_json(author),
        "content": content,
        "timestamp": TIMESTAMP,
        "edited_timestamp": if edited { json!(TIMESTAMP) } else { Value::Null },
        "tts": false,
        "mention_everyone": false,
        "mentions": mentions,
        "mention_roles": [],
        "attachments": attachments,
        "embeds": [],
        "pinned": false,
        "type": 0,
        "flags": 0,
        "components": [],
    });
    if guild {
        m["guild_id"] = json!(GUILD_ID.to_string());
        m["member"] = partial_member_json(author);
    }
    m
}

pub fn option(name: &str, value: &str, focused: bool) -> Value {
    let mut o = json!({"name": name, "type": 3, "value": value});
    if focused {
        o["focused"] = json!(true);
    }
    o
}

/// An interaction: `kind` 2 (slash command) or 4 (autocomplete).
pub fn interaction_json(id: &str, token: &str, kind: u8, channel: &str, user: &TestUser, options: Vec<Value>) -> Value {
    json!({
        "id": id,
        "application_id": APP_ID.to_string(),
        "type": kind,
        "data": {"id": COMMAND_ID.to_string(), "name": "argos", "type": 1, "options": options, "guild_id": GUILD_ID.to_string()},
        "guild_id": GUILD_ID.to_string(),
        "channel": {"id": channel, "type": 0, "name": "ops", "permissions": "2248473465835073"},
        "channel_id": channel,
        "member": member_json(user),
        "token": token,
        "version": 1,
        "app_permissions": "2248473465835073",
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD_ID.to_string()},
        "context": 0,
        "attachment_size_limit": 26_214_400,
    })
}

/// A click on the button `custom_id` under `message` (a [`message_json`] value): an interaction
/// of type 3 (MESSAGE_COMPONENT), component type 2 (button).
pub fn component_interaction_json(
    id: &str,
    token: &str,
    channel: &str,
    user: &TestUser,
    message: Value,
    custom_id: &str,
) -> Value {
    let mut v = interaction_json(id, token, 3, channel, user, vec![]);
    v["data"] = json!({"custom_id": custom_id, "component_type": 2});
    v["message"] = message;
    v
}

/// What Discord answers for a registered command (the request plus the ids Discord adds).
pub fn command_json(request: &Value, guild: Option<&str>) -> Value {
    let mut c = request.clone();
    c["id"] = json!(COMMAND_ID.to_string());
    c["application_id"] = json!(APP_ID.to_string());
    c["version"] = json!("1");
    if c.get("type").is_none() {
        c["type"] = json!(1);
    }
    if c.get("default_member_permissions").is_none() {
        c["default_member_permissions"] = Value::Null;
    }
    if c.get("description").is_none() {
        c["description"] = json!("");
    }
    if let Some(g) = guild {
        c["guild_id"] = json!(g);
    }
    c
}

/// A stored message as Discord shows it, with its components.
fn stored_message_json(m: &StoredMessage, guild: bool) -> Value {
    let att: Vec<Value> = m.attachments.iter().map(|n| attachment_json(&m.id, n, 1)).collect();
    let mut v = message_json(
        &m.id,
        &m.channel,
        &TestUser::argos(),
        &m.content,
        &att,
        m.edits > 0,
        guild,
    );
    v["components"] = Value::Array(m.components.clone());
    v
}

// ---------------------------------------------------------------------------------------------
// REST

fn json_error(status: u16, message: &str) -> Response {
    Response::json(status, &json!({"message": message, "code": 0}))
}

/// Splits a multipart body into (name, filename, bytes).
fn multipart_parts(req: &Request) -> Vec<(String, Option<String>, Vec<u8>)> {
    let Some(ct) = req.header("content-type") else {
        return Vec::new();
    };
    let Some(boundary) = ct.split(';').find_map(|p| p.trim().strip_prefix("boundary=")) else {
        return Vec::new();
    };
    let delimiter = format!("--{}", boundary.trim_matches('"'));
    let body = &req.body;
    let mut starts = Vec::new();
    let d = delimiter.as_bytes();
    let mut i = 0;
    while i + d.len() <= body.len() {
        if &body[i..i + d.len()] == d {
            starts.push(i);
            i += d.len();
        } else {
            i += 1;
        }
    }
    let mut parts = Vec::new();
    for w in starts.windows(2) {
        let chunk = &body[w[0] + d.len()..w[1]];
        let chunk = chunk.strip_prefix(b"\r\n").unwrap_or(chunk);
        let chunk = chunk.strip_suffix(b"\r\n").unwrap_or(chunk);
        let Some(split) = chunk.windows(4).position(|x| x == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&chunk[..split]).to_string();
        let data = chunk[split + 4..].to_vec();
        let field = |key: &str| {
            let pat = format!("{key}=\"");
            head.find(&pat).map(|s| {
                let rest = &head[s + pat.len()..];
                rest[..rest.find('"').unwrap_or(rest.len())].to_string()
            })
        };
        let Some(name) = field(" name").or_else(|| field(";name")) else {
            continue;
        };
        parts.push((name, field("filename"), data));
    }
    parts
}

/// The JSON payload and the uploaded files (name, size) of a JSON or multipart request.
fn payload(req: &Request) -> (Value, Vec<(String, usize)>) {
    let is_multipart = req.header("content-type").is_some_and(|c| c.starts_with("multipart/"));
    if !is_multipart {
        return (serde_json::from_slice(&req.body).unwrap_or(Value::Null), Vec::new());
    }
    let mut json_body = Value::Null;
    let mut files = Vec::new();
    for (name, filename, data) in multipart_parts(req) {
        if name == "payload_json" {
            json_body = serde_json::from_slice(&data).unwrap_or(Value::Null);
        } else if let Some(f) = filename {
            files.push((f, data.len()));
        }
    }
    (json_body, files)
}

impl Inner {
    /// Records the request and applies the global limit; `Some` is the 429 to answer. As on
    /// Discord, the interaction endpoints (callbacks, and the webhooks that edit and follow up
    /// an interaction's answer) are not counted against the global limit.
    fn admit(&self, req: &Request, channel: Option<&str>) -> Option<Response> {
        let now = Instant::now();
        let mut s = self.state();
        s.requests.push((req.method.clone(), req.path.clone(), now));
        let interaction = req.path.contains("/interactions/") || req.path.contains("/webhooks/");
        let request = format!("{} {}", req.method, req.path);
        if let Decision::Refuse {
            retry_after,
            global,
            headers,
        } = s.limits.decide(&request, interaction, now)
        {
            s.record_429(req, now, retry_after, global);
            drop(s);
            self.changed();
            let refusal = too_many(retry_after, global);
            return Some(headers.iter().fold(refusal, |r, (n, v)| r.with_header(n, v)));
        }
        if interaction {
            return None;
        }
        let second = Duration::from_secs(1);
        while s.global_log.front().is_some_and(|t| now.duration_since(*t) >= second) {
            s.global_log.pop_front();
        }
        if s.global_log.len() >= self.limits.global_per_second as usize {
            let retry = second.saturating_sub(now.duration_since(s.global_log[0]));
            s.record_429(req, now, retry, true);
            drop(s);
            self.changed();
            return Some(too_many(retry, true));
        }
        if let Some(channel) = channel {
            let window = self.limits.window;
            let log = s.channel_log.entry(channel.to_string()).or_default();
            while log.front().is_some_and(|t| now.duration_since(*t) >= window) {
                log.pop_front();
            }
            if log.len() >= self.limits.per_channel as usize {
                let retry = window.saturating_sub(now.duration_since(log[0]));
                s.record_429(req, now, retry, false);
                drop(s);
                self.changed();
                return Some(too_many(retry, false));
            }
            log.push_back(now);
        }
        s.global_log.push_back(now);
        None
    }

    /// A served answer with the headers of the bucket its request belongs to, if announced.
    fn announced(&self, req: &Request, answer: Response) -> Response {
        if answer.status == 429 {
            return answer;
        }
        let headers = self
            .state()
            .limits
            .headers(&format!("{} {}", req.method, req.path), Instant::now());
        headers.iter().fold(answer, |r, (n, v)| r.with_header(n, v))
    }

    fn authorized(&self, req: &Request) -> Option<Response> {
        if req.header("authorization") == Some(&format!("Bot {TOKEN}")) {
            return None;
        }
        self.state()
            .unexpected
            .push(format!("{} {} (bad token)", req.method, req.path));
        self.changed();
        Some(json_error(401, "401: Unauthorized"))
    }

    fn create_message(&self, req: &Request) -> Response {
        let channel = req.param("channel").unwrap_or("").to_string();
        if let Some(r) = self.authorized(req).or_else(|| self.admit(req, Some(&channel))) {
            return r;
        }
        let (body, files) = payload(req);
        let content = body["content"].as_str().unwrap_or("").to_string();
        let components = body["components"].as_array().cloned().unwrap_or_default();
        let mut s = self.state();
        let id = s.new_id();
        let attachments: Vec<Value> = files
            .iter()
            .map(|(n, size)| attachment_json(&format!("{id}{}", n.len()), n, *size))
            .collect();
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        s.messages.insert(
            id.clone(),
            StoredMessage {
                id: id.clone(),
                channel: channel.clone(),
                content: content.clone(),
                attachments: names.clone(),
                components: components.clone(),
                edits: 0,
            },
        );
        s.sent.push(Sent {
            kind: SentKind::Create,
            message_id: id.clone(),
            channel: channel.clone(),
            content: content.clone(),
            attachments: names,
            interaction: None,
            components: Some(components.clone()),
            at: Instant::now(),
            session: session_of(req),
            allowed_mentions: body.get("allowed_mentions").cloned(),
        });
        drop(s);
        // Discord echoes the bot's own messages to it through the gateway.
        let mut echo = message_json(&id, &channel, &TestUser::argos(), &content, &attachments, false, true);
        echo["components"] = Value::Array(components.clone());
        self.dispatch("MESSAGE_CREATE", echo);
        self.changed();
        let mut answer = message_json(&id, &channel, &TestUser::argos(), &content, &attachments, false, false);
        answer["components"] = Value::Array(components);
        Response::json(200, &answer)
    }

    fn edit_message(&self, req: &Request) -> Response {
        let channel = req.param("channel").unwrap_or("").to_string();
        let id = req.param("message").unwrap_or("").to_string();
        if let Some(r) = self.authorized(req).or_else(|| self.admit(req, Some(&channel))) {
            return r;
        }
        let (body, files) = payload(req);
        let mut s = self.state();
        let Some(stored) = s.messages.get_mut(&id).filter(|m| m.channel == channel) else {
            drop(s);
            return json_error(404, "Unknown Message");
        };
        if let Some(c) = body["content"].as_str() {
            stored.content = c.to_string();
        }
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        if !names.is_empty() {
            stored.attachments = names.clone();
        }
        let components = body["components"].as_array().cloned();
        if let Some(c) = &components {
            stored.components = c.clone();
        }
        stored.edits += 1;
        let content = stored.content.clone();
        let rows = stored.components.clone();
        let attachments: Vec<Value> = stored.attachments.iter().map(|n| attachment_json(&id, n, 1)).collect();
        s.sent.push(Sent {
            kind: SentKind::Edit,
            message_id: id.clone(),
            channel: channel.clone(),
            content: content.clone(),
            attachments: names,
            interaction: None,
            components,
            at: Instant::now(),
            session: session_of(req),
            allowed_mentions: body.get("allowed_mentions").cloned(),
        });
        drop(s);
        self.changed();
        let mut answer = message_json(&id, &channel, &TestUser::argos(), &content, &attachments, true, false);
        answer["components"] = Value::Array(rows);
        Response::json(200, &answer)
    }

    fn get_message(&self, req: &Request) -> Response {
        if let Some(r) = self.authorized(req).or_else(|| self.admit(req, None)) {
            return r;
        }
        let s = self.state();
        match s.messages.get(req.param("message").unwrap_or("")) {
            Some(m) => Response::json(200, &stored_message_json(m, false)),
            None => json_error(404, "Unknown Message"),
        }
    }

    fn commands(&self, req: &Request) -> Response {
        if let Some(r) = self.authorized(req).or_else(|| self.admit(req, None)) {
            return r;
        }
        let guild = req.param("guild").map(str::to_string);
        let (body, _) = payload(req);
        let mut s = self.state();
        let list: Vec<Value> = match req.method.as_str() {
            "PUT" => {
                s.commands.retain(|(g, _)| *g != guild);
                let cmds = body.as_array().cloned().unwrap_or_default();
                for c in &cmds {
                    s.commands.push((guild.clone(), c.clone()));
                }
                cmds
            }
            "POST" => {
                s.commands.push((guild.clone(), body.clone()));
                drop(s);
                self.changed();
                return Response::json(201, &command_json(&body, guild.as_deref()));
            }
            _ => s
                .commands
                .iter()
                .filter(|(g, _)| *g == guild)
                .map(|(_, c)| c.clone())
                .collect(),
        };
        drop(s);
        self.changed();
        let out: Vec<Value> = list.iter().map(|c| command_json(c, guild.as_deref())).collect();
        Response::json(200, &Value::Array(out))
    }

    fn callback(&self, req: &Request) -> Response {
        let id = req.param("id").unwrap_or("").to_string();
        let token = req.param("token").unwrap_or("").to_string();
        if let Some(r) = self.admit(req, None) {
            return r;
        }
        let (body, files) = payload(req);
        let kind = body["type"].as_u64().unwrap_or(0);
        let mut s = self.state();
        let Some((known_id, channel)) = s.interactions.get(&token).cloned() else {
            s.unexpected
                .push(format!("{} {} (unknown interaction)", req.method, req.path));
            drop(s);
            self.changed();
            return json_error(404, "Unknown interaction");
        };
        if known_id != id || s.callbacks.iter().any(|c| c.interaction_id == id) {
            drop(s);
            return json_error(400, "Interaction has already been acknowledged.");
        }
        s.callbacks.push(Callback {
            interaction_id: id.clone(),
            kind,
            data: body["data"].clone(),
            at: Instant::now(),
            session: session_of(req),
        });
        if kind == 4 {
            let mid = s.new_id();
            s.sent.push(Sent {
                kind: SentKind::Followup,
                message_id: mid,
                channel,
                content: body["data"]["content"].as_str().unwrap_or("").to_string(),
                attachments: files.into_iter().map(|(n, _)| n).collect(),
                interaction: Some(id),
                components: body["data"]["components"].as_array().cloned(),
                at: Instant::now(),
                session: session_of(req),
                allowed_mentions: body["data"].get("allowed_mentions").cloned(),
            });
        }
        drop(s);
        self.changed();
        Response::new(204)
    }

    fn webhook(&self, req: &Request) -> Response {
        let token = req.param("token").unwrap_or("").to_string();
        if let Some(r) = self.admit(req, None) {
            return r;
        }
        let (body, files) = payload(req);
        let mut s = self.state();
        let Some((interaction, channel)) = s.interactions.get(&token).cloned() else {
            s.unexpected
                .push(format!("{} {} (unknown webhook token)", req.method, req.path));
            drop(s);
            self.changed();
            return json_error(404, "Unknown Webhook");
        };
        if !s.callbacks.iter().any(|c| c.interaction_id == interaction) {
            drop(s);
            return json_error(404, "Unknown Message (interaction not acknowledged)");
        }
        let target = req.param("message").map(str::to_string);
        let kind = match (req.method.as_str(), target.as_deref()) {
            ("POST", None) => SentKind::Followup,
            ("PATCH", Some("@original")) => SentKind::InteractionEdit,
            ("PATCH", Some(_)) => SentKind::Followup,
            _ => {
                drop(s);
                return Response::json(
                    200,
                    &message_json(&interaction, &channel, &TestUser::argos(), "", &[], false, false),
                );
            }
        };
        let content = body["content"].as_str().unwrap_or("").to_string();
        let id = match target.as_deref() {
            Some("@original") => interaction.clone(),
            Some(m) => m.to_string(),
            None => s.new_id(),
        };
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        s.sent.push(Sent {
            kind,
            message_id: id.clone(),
            channel: channel.clone(),
            content: content.clone(),
            attachments: names,
            interaction: Some(interaction),
            components: body["components"].as_array().cloned(),
            at: Instant::now(),
            session: session_of(req),
            allowed_mentions: body.get("allowed_mentions").cloned(),
        });
        drop(s);
        self.changed();
        Response::json(
            200,
            &message_json(&id, &channel, &TestUser::argos(), &content, &[], false, false),
        )
    }
}

fn too_many(retry: Duration, global: bool) -> Response {
    let secs = retry.as_secs_f64().max(0.001);
    // Discord's documented body has no `code`; serenity then reports "could not decode json",
    // so the fake adds `code: 0` to keep failures readable.
    let body = json!({"message": "You are being rate limited.", "retry_after": secs, "global": global, "code": 0});
    Response::json(429, &body)
        .with_header("retry-after", &format!("{}", secs.ceil() as u64))
        .with_header("x-ratelimit-scope", if global { "global" } else { "user" })
        .with_header("x-ratelimit-global", if global { "true" } else { "false" })
}

fn router(inner: Arc<Inner>) -> Router {
    let i = |inner: &Arc<Inner>| inner.clone();
    let (a, b, c, d, e, f, g, h, k, l, m, n) = (
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
        i(&inner),
    );
    Router::new()
        .route("GET", "/api/v10/gateway", move |req| {
            if let Some(r) = a.admit(&req, None) {
                return r;
            }
            Response::json(200, &json!({"url": a.ws_url}))
        })
        .route("GET", "/api/v10/gateway/bot", move |req| {
            if let Some(r) = b.authorized(&req).or_else(|| b.admit(&req, None)) {
                return r;
            }
            Response::json(
                200,
                &json!({"url": b.ws_url, "shards": 1,
                    "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}}),
            )
        })
        .route("GET", "/api/v10/users/@me", move |req| {
            if let Some(r) = c.authorized(&req).or_else(|| c.admit(&req, None)) {
                return r;
            }
            Response::json(200, &bot_user_json())
        })
        .route("*", "/api/v10/applications/{app}/commands", move |req| d.commands(&req))
        .route("*", "/api/v10/applications/{app}/guilds/{guild}/commands", move |req| e.commands(&req))
        .route("POST", "/api/v10/channels/{channel}/messages", move |req| {
            f.announced(&req, f.create_message(&req))
        })
        .route("PATCH", "/api/v10/channels/{channel}/messages/{message}", move |req| {
            g.announced(&req, g.edit_message(&req))
        })
        .route("GET", "/api/v10/channels/{channel}/messages/{message}", move |req| h.get_message(&req))
        .route("POST", "/api/v10/interactions/{id}/{token}/callback", move |req| {
            k.announced(&req, k.callback(&req))
        })
        .route("*", "/api/v10/webhooks/{app}/{token}/messages/{message}", move |req| {
            l.announced(&req, l.webhook(&req))
        })
        .route("POST", "/api/v10/webhooks/{app}/{token}", move |req| m.announced(&req, m.webhook(&req)))
        .fallback(move |req| {
            n.state().unexpected.push(format!("{} {}", req.method, req.path));
            n.changed();
            json_error(404, "404: Not Found")
        })
}

// ---------------------------------------------------------------------------------------------
// Gateway

async fn gateway(listener: TcpListener, inner: Arc<Inner>, session: Option<String>, ws_url: String) {
    while let Ok((stream, _)) = listener.accept().await {
        let inner = inner.clone();
        let session = session.clone();
        let ws_url = ws_url.clone();
        tokio::spawn(async move {
            if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
                connection(ws, inner, session, ws_url).await;
            }
        });
    }
}

/// Where a connection's events come from: the one shared queue (the first session to identify
/// holds it until it closes), or, sharded, a queue of its own that every dispatch feeds.
enum Events<'a> {
    Shared(tokio::sync::MutexGuard<'a, mpsc::UnboundedReceiver<Value>>),
    /// The session's own queue, and what takes it off the dispatch list when dropped.
    Own {
        events: mpsc::UnboundedReceiver<Value>,
        _unsubscribe: Unsubscribe,
    },
}

impl Events<'_> {
    async fn recv(&mut self) -> Option<Value> {
        match self {
            Events::Shared(rx) => rx.recv().await,
            Events::Own { events, .. } => events.recv().await,
        }
    }
}

/// Removes a sharded session's queue when its connection ends.
struct Unsubscribe {
    inner: Arc<Inner>,
    conn: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(c, _)| *c != self.conn);
    }
}

/// Marks the connection closed in [`State::gateway_conns`] when it ends, however it ends.
struct ConnClosed {
    inner: Arc<Inner>,
    index: usize,
}

impl Drop for ConnClosed {
    fn drop(&mut self) {
        if let Some(c) = self.inner.state().gateway_conns.get_mut(self.index) {
            c.open = false;
        }
        self.inner.changed();
    }
}

async fn connection(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    inner: Arc<Inner>,
    session: Option<String>,
    ws_url: String,
) {
    let index = {
        let mut s = inner.state();
        s.gateway_conns.push(GatewayConn {
            session: session.clone(),
            ready: false,
            open: true,
        });
        s.gateway_conns.len() - 1
    };
    let _closed = ConnClosed {
        inner: inner.clone(),
        index,
    };
    let (mut tx, mut rx) = ws.split();
    let hello = json!({"op": 10, "d": {"heartbeat_interval": 41_250}, "s": null, "t": null});
    if tx.send(WsMessage::Text(hello.to_string())).await.is_err() {
        return;
    }
    let mut seq: u64 = 0;
    // Wait for IDENTIFY, answering heartbeats meanwhile.
    loop {
        let Some(Ok(msg)) = rx.next().await else { return };
        let WsMessage::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match v["op"].as_u64() {
            Some(1) => {
                inner.state().heartbeats += 1;
                let _ = tx.send(WsMessage::Text(json!({"op": 11}).to_string())).await;
            }
            Some(2) => {
                let intents = v["d"]["intents"].as_u64().unwrap_or(0);
                inner.state().identifies.push(intents);
                break;
            }
            _ => {}
        }
    }
    let mut events = if inner.sharded {
        let conn = inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let (sub_tx, sub_rx) = mpsc::unbounded_channel();
        inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((conn, sub_tx));
        Events::Own {
            events: sub_rx,
            _unsubscribe: Unsubscribe {
                inner: inner.clone(),
                conn,
            },
        }
    } else {
        Events::Shared(inner.dispatch_rx.lock().await)
    };
    seq += 1;
    let mut ready_d = ready_json(&ws_url);
    if let Some(name) = &session {
        ready_d["session_id"] = json!(format!("fake-session-{name}"));
    }
    let ready = json!({"op": 0, "t": "READY", "s": seq, "d": ready_d});
    if tx.send(WsMessage::Text(ready.to_string())).await.is_err() {
        return;
    }
    {
        let mut s = inner.state();
        s.ready_sent += 1;
        if let Some(c) = s.gateway_conns.get_mut(index) {
            c.ready = true;
        }
    }
    inner.changed();
    loop {
        tokio::select! {
            msg = rx.next() => {
                let Some(Ok(msg)) = msg else { return };
                if let WsMessage::Text(text) = msg {
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if v["op"].as_u64() == Some(1) {
                        inner.state().heartbeats += 1;
                        inner.changed();
                        let _ = tx.send(WsMessage::Text(json!({"op": 11}).to_string())).await;
                    }
                }
            }
            ev = events.recv() => {
                let Some(ev) = ev else { return };
                seq += 1;
                let frame = json!({"op": 0, "t": ev["t"], "s": seq, "d": ev["d"]});
                if tx.send(WsMessage::Text(frame.to_string())).await.is_err() {
                    return;
                }
                inner.state().deliveries.push(Delivery {
                    session: session.clone(),
                    id: ev["d"]["id"].as_str().unwrap_or("").to_string(),
                    at: Instant::now(),
                });
                inner.changed();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test-facing API

impl FakeDiscord {
    pub async fn start_with(limits: FakeLimits) -> FakeDiscord {
        FakeDiscord::start_mode(limits, false).await
    }

    /// A fake for several bot replicas: every gateway event (MESSAGE_CREATE,
    /// INTERACTION_CREATE, the echo of the bot's own messages) is written to every open session,
    /// as Discord does for every session of a shard. An event pushed while no session is open is
    /// lost (Discord would not deliver it either). Give each replica its own endpoint with
    /// [`FakeDiscord::add_session`] to tell their requests apart.
    pub async fn start_sharded(limits: FakeLimits) -> FakeDiscord {
        FakeDiscord::start_mode(limits, true).await
    }

    async fn start_mode(limits: FakeLimits, sharded: bool) -> FakeDiscord {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gateway");
        let ws_url = format!("ws://{}", listener.local_addr().expect("gateway addr"));
        let (dispatch, dispatch_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            limits,
            dispatch,
            dispatch_rx: tokio::sync::Mutex::new(dispatch_rx),
            ws_url: ws_url.clone(),
            sharded,
            subscribers: Mutex::new(Vec::new()),
            next_conn: AtomicU64::new(0),
        });
        let http = router(inner.clone()).serve().await.expect("start fake Discord REST");
        let gateway = tokio::spawn(gateway(listener, inner.clone(), None, ws_url));
        FakeDiscord {
            inner,
            http,
            gateway,
            sessions: Mutex::new(Vec::new()),
        }
    }

    /// A REST base URL of its own for one bot replica (put it in that replica's
    /// `discord.api_proxy`): the same fake (same state, limits, token), but every request that
    /// comes through it is recorded with `name` ([`Sent::session`], [`Callback::session`],
    /// [`State::limited`]), and its `GET gateway` / `GET gateway/bot` hand out a gateway
    /// address of its own, whose connections are recorded with `name` too
    /// ([`State::gateway_conns`], [`State::deliveries`]). The rate limits stay shared, as
    /// Discord's are per bot token.
    pub async fn add_session(&self, name: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind session gateway");
        let ws_url = format!("ws://{}", listener.local_addr().expect("gateway addr"));
        let gateway = tokio::spawn(gateway(
            listener,
            self.inner.clone(),
            Some(name.to_string()),
            ws_url.clone(),
        ));
        let router = router(self.inner.clone());
        let tag = name.to_string();
        let session_ws = ws_url.clone();
        let http = HttpServer::start(move |mut req: Request| {
            req.headers.push((SESSION_HEADER.to_string(), tag.clone()));
            let gateway_lookup =
                req.method == "GET" && (req.path == "/api/v10/gateway" || req.path == "/api/v10/gateway/bot");
            let mut resp = router.handle(req);
            if gateway_lookup && resp.status == 200 {
                if let Ok(mut v) = serde_json::from_slice::<Value>(&resp.body) {
                    v["url"] = json!(session_ws);
                    resp.body = v.to_string().into_bytes();
                }
            }
            resp
        })
        .await
        .expect("start a session's REST endpoint");
        let url = http.url();
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(SessionEndpoint { http, gateway });
        url
    }

    /// Waits (at most [`WAIT`]) until each of `names` has an open gateway connection that got
    /// READY.
    pub async fn wait_sessions_ready(&self, names: &[&str]) {
        self.wait_for(&format!("READY on sessions {names:?}"), |s| {
            names
                .iter()
                .all(|n| {
                    s.gateway_conns
                        .iter()
                        .any(|c| c.open && c.ready && c.session.as_deref() == Some(*n))
                })
                .then_some(())
        })
        .await
    }

    /// The sessions (by name; `None` for the fake's own address) that event `id` was written to.
    pub fn deliveries_of(&self, id: &str) -> Vec<Option<String>> {
        self.inner
            .state()
            .deliveries
            .iter()
            .filter(|d| d.id == id)
            .map(|d| d.session.clone())
            .collect()
    }

    /// Everything sent or edited through session `name`'s endpoint, in order.
    pub fn sent_by(&self, name: &str) -> Vec<Sent> {
        self.inner
            .state()
            .sent
            .iter()
            .filter(|m| m.session.as_deref() == Some(name))
            .cloned()
            .collect()
    }

    /// [`FakeDiscord::wait_for`] with another time limit.
    pub async fn wait_for_within<T>(
        &self,
        what: &str,
        limit: Duration,
        mut f: impl FnMut(&mut State) -> Option<T>,
    ) -> T {
        let result = tokio::time::timeout(limit, async {
            loop {
                let notified = self.inner.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(v) = f(&mut self.inner.state()) {
                    return v;
                }
                notified.await;
            }
        })
        .await;
        match result {
            Ok(v) => v,
            Err(_) => {
                let s = self.inner.state();
                panic!(
                    "timed out after {limit:?} waiting for {what}\nunread: {:#?}\ncallbacks: {:#?}\nunexpected: {:?}\n\
                     gateway connections: {:?}\nevents delivered: {}\nlast requests: {:?}",
                    s.unread(),
                    s.callbacks,
                    s.unexpected,
                    s.gateway_conns,
                    s.deliveries.len(),
                    s.requests
                        .iter()
                        .rev()
                        .take(10)
                        .map(|(m, p, _)| format!("{m} {p}"))
                        .collect::<Vec<_>>(),
                )
            }
        }
    }

    /// The base URL for `DiscordSettings::api_proxy`.
    pub fn url(&self) -> String {
        self.http.url()
    }

    /// Settings that point the adapter at this fake (guild commands in the test guild).
    /// The YAML a test project needs for a bot on this fake: Discord through it, quick pacing,
    /// and the test users' roles mapped (admins may do everything; deployers may deploy and
    /// see status on staging).
    pub fn bot_config(&self, content_intent: bool) -> String {
        format!(
            r#"
discord:
  enabled: true
  api_proxy: {url}
  guild_id: "{GUILD_ID}"
  message_content_intent: {content_intent}
chat:
  commands_per_minute: 6
  command_burst: 3
  edit_interval_ms: 200
  edit_burst: 5
  edit_refill_secs: 1
permissions:
  roles:
    admins: {{ discord_roles: ["{ADMIN_ROLE}"] }}
    deployers: {{ discord_roles: ["{DEPLOYER_ROLE}"] }}
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
    - role: deployers
      environments: [staging]
      actions: [deploy, status]
"#,
            url = self.url()
        )
    }

    pub fn settings(&self, message_content_intent: bool) -> argos::config::DiscordSettings {
        argos::config::DiscordSettings {
            enabled: true,
            guild_id: Some(GUILD_ID.to_string()),
            api_proxy: Some(self.url()),
            message_content_intent,
            ..Default::default()
        }
    }

    /// Refuses the next request whose `"METHOD /path"` starts with `refusal.request` with a 429
    /// (and refuses again whatever comes back before its `retry_after` is over).
    pub fn refuse(&self, refusal: Refusal) {
        self.inner.state().limits.refuse(refusal);
    }

    /// Announces (and enforces) a bucket for the requests `bucket.request` matches.
    pub fn announce(&self, bucket: Announced) {
        self.inner.state().limits.announce(bucket);
    }

    /// Reads the state.
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.inner.state())
    }

    /// Waits (at most [`WAIT`], else the test fails) until `f` returns `Some`.
    pub async fn wait_for<T>(&self, what: &str, f: impl FnMut(&mut State) -> Option<T>) -> T {
        self.wait_for_within(what, WAIT, f).await
    }

    /// The next message the bot sent or edited that the test has not read yet.
    pub async fn next_message(&self) -> Sent {
        self.wait_for("a message from the bot", |s| {
            let next = s.sent.get(s.read).cloned()?;
            s.read += 1;
            Some(next)
        })
        .await
    }

    /// Like [`Self::next_message`], checking it is in `channel` and contains `text`.
    pub async fn expect_message(&self, channel: u64, text: &str) -> Sent {
        let m = self.next_message().await;
        assert_eq!(m.channel, channel.to_string(), "message in the wrong channel: {m:#?}");
        assert!(
            m.content.contains(text),
            "expected a message containing {text:?}, got {m:#?}"
        );
        m
    }

    /// Fails the test if the bot sent something the test did not read.
    pub fn assert_all_read(&self) {
        let s = self.inner.state();
        assert!(
            s.unread().is_empty(),
            "the bot sent messages the test did not read: {:#?}",
            s.unread()
        );
    }

    /// Fails the test on requests the fake does not serve (or with a wrong token).
    /// No request the fake did not expect, and no message that could ping anyone.
    pub fn assert_no_unexpected(&self) {
        let s = self.inner.state();
        assert!(s.unexpected.is_empty(), "unexpected requests: {:?}", s.unexpected);
        let pinging: Vec<&Sent> = s.sent.iter().filter(|m| !m.pings_nobody()).collect();
        assert!(
            pinging.is_empty(),
            "messages sent without allowed_mentions: none: {pinging:#?}"
        );
    }

    /// 429 answers sent so far.
    pub fn rate_limited(&self) -> u32 {
        self.inner.state().rate_limited
    }

    /// A message as it stands now.
    pub fn message(&self, id: &str) -> Option<StoredMessage> {
        self.inner.state().messages.get(id).cloned()
    }

    /// A person posts `content` in `channel` (MESSAGE_CREATE). Without the message-content
    /// intent, the content is blanked unless it mentions the bot, as Discord does. Returns the
    /// message id.
    pub fn push_message(&self, channel: u64, author: &TestUser, content: &str) -> String {
        let (id, visible) = {
            let mut s = self.inner.state();
            let id = s.new_id();
            let intent = s.intents().unwrap_or(0) & INTENT_MESSAGE_CONTENT != 0;
            let mentioned = content.contains(&format!("<@{BOT_ID}>")) || content.contains(&format!("<@!{BOT_ID}>"));
            let own = author.id == BOT_ID;
            (
                id,
                if intent || mentioned || own {
                    content.to_string()
                } else {
                    String::new()
                },
            )
        };
        let mut m = message_json(&id, &channel.to_string(), author, &visible, &[], false, true);
        if visible.is_empty() && !content.is_empty() {
            // Mentions are still delivered without the intent; content is not.
            m["mentions"] = json!([]);
        }
        self.inner.dispatch("MESSAGE_CREATE", m);
        id
    }

    fn new_interaction(&self, channel: u64) -> (String, String) {
        let mut s = self.inner.state();
        let id = s.new_id();
        let token = format!("interaction-token-{id}");
        s.interactions.insert(token.clone(), (id.clone(), channel.to_string()));
        (id, token)
    }

    /// A person runs `/argos command:<command> env:<env> args:<args>` (empty strings are left
    /// out). Returns the interaction id.
    pub fn push_slash(&self, channel: u64, user: &TestUser, command: &str, env: &str, args: &str) -> String {
        let (id, token) = self.new_interaction(channel);
        let mut options = vec![option("command", command, false)];
        if !env.is_empty() {
            options.push(option("env", env, false));
        }
        if !args.is_empty() {
            options.push(option("args", args, false));
        }
        let d = interaction_json(&id, &token, 2, &channel.to_string(), user, options);
        self.inner.dispatch("INTERACTION_CREATE", d);
        id
    }

    /// A person is typing `typed` into the `env` option. Returns the interaction id.
    pub fn push_autocomplete(&self, channel: u64, user: &TestUser, command: &str, typed: &str) -> String {
        let (id, token) = self.new_interaction(channel);
        let options = vec![option("command", command, false), option("env", typed, true)];
        let d = interaction_json(&id, &token, 4, &channel.to_string(), user, options);
        self.inner.dispatch("INTERACTION_CREATE", d);
        id
    }

    /// A person clicks the button `custom_id` under the bot's message `message_id` in `channel`
    /// (INTERACTION_CREATE, type 3). The button must be on the message as it stands now, as
    /// only those can be clicked. Returns the interaction id.
    pub fn push_button(&self, channel: u64, user: &TestUser, message_id: &str, custom_id: &str) -> String {
        let message = {
            let s = self.inner.state();
            let m = s
                .messages
                .get(message_id)
                .unwrap_or_else(|| panic!("no message {message_id} to click a button of"));
            assert_eq!(
                m.channel,
                channel.to_string(),
                "message {message_id} is in another channel"
            );
            assert!(
                m.buttons().iter().any(|b| b.custom_id == custom_id),
                "message {message_id} has no button {custom_id:?}: {:?}",
                m.buttons()
            );
            stored_message_json(m, true)
        };
        self.push_button_unchecked(channel, user, message, custom_id)
    }

    /// Like [`Self::push_button`] under any `message` (a [`message_json`] value) with any
    /// `custom_id`, e.g. another app's button. Returns the interaction id.
    pub fn push_button_unchecked(&self, channel: u64, user: &TestUser, message: Value, custom_id: &str) -> String {
        let (id, token) = self.new_interaction(channel);
        let d = component_interaction_json(&id, &token, &channel.to_string(), user, message, custom_id);
        self.inner.dispatch("INTERACTION_CREATE", d);
        id
    }

    /// Waits for the callback of interaction `id`.
    pub async fn callback(&self, id: &str) -> Callback {
        self.wait_for(&format!("the callback of interaction {id}"), |s| {
            s.callbacks.iter().find(|c| c.interaction_id == id).cloned()
        })
        .await
    }
}
