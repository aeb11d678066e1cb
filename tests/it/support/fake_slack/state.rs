//! What the fake Slack records: every request the bot made and every envelope it was sent,
//! the messages as they stand now, and the bookkeeping behind the rate limits, tickets and
//! `response_url`s.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::events::{broadcast_mentions, buttons_in, texts_in, SlackButton};
use super::{SlackUser, ACK_DEADLINE, CHANNEL, DEPLOYERS_GROUP, OTHER_CHANNEL};

/// One Web API call, whatever its outcome.
#[derive(Debug, Clone)]
pub struct ApiCall {
    pub method: String,
    /// Query, form and JSON parameters merged (form values that hold JSON, like `blocks`, decoded).
    pub params: Value,
    /// `"ok"`, the Slack error (`"invalid_auth"`, `"ratelimited"`, ...), or `"404"`.
    pub outcome: String,
    pub at: Instant,
}

/// One accepted `chat.postMessage`, in order.
#[derive(Debug, Clone)]
pub struct Post {
    pub channel: String,
    pub ts: String,
    /// The raw `text` (the notification fallback when there are blocks).
    pub text: String,
    pub blocks: Vec<Value>,
    pub thread_ts: Option<String>,
    /// `link_names: true` makes Slack turn a literal `@channel` in `text` into a ping.
    pub link_names: bool,
    /// Every parameter as sent.
    pub params: Value,
    pub at: Instant,
}

impl Post {
    /// `text` and every text in the blocks, one per line: what a person can see.
    pub fn all_text(&self) -> String {
        all_text(&self.text, &self.blocks)
    }
    pub fn buttons(&self) -> Vec<SlackButton> {
        buttons_in(&self.blocks)
    }
    /// The `<!channel>`, `<!here>` and `<!everyone>` in the text and blocks.
    pub fn broadcasts(&self) -> Vec<String> {
        broadcast_mentions(&self.all_text())
    }
}

/// One accepted `chat.update`, in order.
#[derive(Debug, Clone)]
pub struct Update {
    pub channel: String,
    pub ts: String,
    /// What the request set (`None`: left as it was; Slack keeps the blocks when they are left out).
    pub text: Option<String>,
    pub blocks: Option<Vec<Value>>,
    /// The message as it stands after this update.
    pub text_now: String,
    pub blocks_now: Vec<Value>,
    pub params: Value,
    pub at: Instant,
}

impl Update {
    pub fn all_text(&self) -> String {
        all_text(&self.text_now, &self.blocks_now)
    }
    pub fn broadcasts(&self) -> Vec<String> {
        broadcast_mentions(&self.all_text())
    }
}

/// One accepted `chat.postEphemeral`.
#[derive(Debug, Clone)]
pub struct Ephemeral {
    pub channel: String,
    pub user: String,
    pub text: String,
    pub blocks: Vec<Value>,
}

impl Ephemeral {
    pub fn all_text(&self) -> String {
        all_text(&self.text, &self.blocks)
    }
}

/// A file upload, from `files.getUploadURLExternal` to `files.completeUploadExternal`.
#[derive(Debug, Clone)]
pub struct Upload {
    pub file_id: String,
    pub filename: String,
    /// The `length` announced to `files.getUploadURLExternal`.
    pub length: usize,
    /// What was POSTed to the upload URL (`None`: not yet).
    pub bytes: Option<Vec<u8>>,
    pub content_type: Option<String>,
    /// Set by `files.completeUploadExternal`.
    pub completed: bool,
    pub title: Option<String>,
    pub channel: Option<String>,
    pub thread_ts: Option<String>,
    pub initial_comment: Option<String>,
}

impl Upload {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.bytes.as_deref().unwrap_or_default()).into_owned()
    }
}

/// A POST to a `response_url`.
#[derive(Debug, Clone)]
pub struct Response {
    /// The envelope whose payload carried this `response_url`.
    pub envelope_id: String,
    pub channel: String,
    /// The clicked message, for an interaction's `response_url`.
    pub message_ts: Option<String>,
    pub text: String,
    pub blocks: Vec<Value>,
    /// `in_channel` or `ephemeral` (Slack's default when absent).
    pub response_type: Option<String>,
    pub replace_original: bool,
    pub at: Instant,
}

impl Response {
    pub fn all_text(&self) -> String {
        all_text(&self.text, &self.blocks)
    }
    pub fn broadcasts(&self) -> Vec<String> {
        broadcast_mentions(&self.all_text())
    }
}

/// One delivery attempt of a Socket Mode envelope ([`FakeSlack::redeliver`] adds another with the
/// same id).
#[derive(Debug, Clone)]
pub struct Envelope {
    pub envelope_id: String,
    /// `events_api`, `slash_commands` or `interactive`.
    pub kind: String,
    pub retry_attempt: u32,
    /// `""` on the first attempt, `"timeout"` on redeliveries.
    pub retry_reason: String,
    pub accepts_response_payload: bool,
    pub payload: Value,
    pub pushed: Instant,
    /// When it was written to a socket (`None`: waiting for a connection).
    pub delivered: Option<Instant>,
    /// The [`SocketConn::id`] it was written to.
    pub connection: Option<u64>,
    /// An echo of the bot's own post (not pushed by the test; sent only while a connection is open).
    pub echo: bool,
}

impl Envelope {
    /// The event type of an `events_api` envelope (`message`, `app_mention`), else the payload type.
    pub fn event_type(&self) -> Option<&str> {
        self.payload["event"]["type"].as_str().or(self.payload["type"].as_str())
    }
}

/// An acknowledgement the bot sent over a socket.
#[derive(Debug, Clone)]
pub struct Ack {
    pub envelope_id: String,
    /// The `payload` of the ack (a slash command's immediate answer), if any.
    pub payload: Option<Value>,
    pub connection: u64,
    pub at: Instant,
    /// Since the envelope's latest delivery before the ack (`None`: unknown envelope).
    pub latency: Option<Duration>,
}

/// One Socket Mode websocket connection.
#[derive(Debug, Clone)]
pub struct SocketConn {
    pub id: u64,
    /// `hello` was written on it.
    pub hello: bool,
    /// A closing `disconnect` was sent or [`FakeSlack::drop_connections`] dropped it: it gets no
    /// more envelopes.
    pub draining: bool,
    pub open: bool,
    pub closed: Option<Instant>,
}

/// A message as it stands now: the bot's (posted, updated) or a person's (pushed by the test).
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub ts: String,
    pub user: String,
    pub bot: bool,
    pub text: String,
    pub blocks: Vec<Value>,
    pub thread_ts: Option<String>,
    /// `chat.update`s and `replace_original` responses applied.
    pub edits: u32,
    /// Removed by a `delete_original` response.
    pub deleted: bool,
}

impl StoredMessage {
    pub fn all_text(&self) -> String {
        all_text(&self.text, &self.blocks)
    }
    /// The buttons under the message now.
    pub fn buttons(&self) -> Vec<SlackButton> {
        buttons_in(&self.blocks)
    }
    pub fn button(&self, action_id: &str) -> Option<SlackButton> {
        self.buttons().into_iter().find(|b| b.action_id == action_id)
    }
    pub fn broadcasts(&self) -> Vec<String> {
        broadcast_mentions(&self.all_text())
    }
}

fn all_text(text: &str, blocks: &[Value]) -> String {
    let mut out = vec![text.to_string()];
    out.extend(texts_in(blocks));
    out.join("\n")
}

/// A canned answer for the next call of a method ([`FakeSlack::fail_next`],
/// [`FakeSlack::rate_limit_next`]).
#[derive(Debug, Clone)]
pub(super) enum Injected {
    Error(String),
    RateLimit(u64),
}

/// Where a `response_url` leads.
#[derive(Debug, Clone)]
pub(super) struct ResponseTarget {
    pub(super) envelope_id: String,
    pub(super) channel: String,
    pub(super) message_ts: Option<String>,
    pub(super) uses: u32,
}

/// Everything the fake saw.
#[derive(Debug, Default)]
pub struct State {
    pub posts: Vec<Post>,
    pub updates: Vec<Update>,
    pub ephemerals: Vec<Ephemeral>,
    pub uploads: Vec<Upload>,
    pub responses: Vec<Response>,
    pub acks: Vec<Ack>,
    /// Every delivery attempt, in the order pushed.
    pub envelopes: Vec<Envelope>,
    /// `apps.connections.open` calls that were answered with a URL.
    pub connections_opened: u32,
    /// Every websocket connection, in the order opened.
    pub sockets: Vec<SocketConn>,
    /// Requests no route matched, with a wrong token, or that Slack would reject as malformed:
    /// `"METHOD /path (why)"`.
    pub unexpected: Vec<String>,
    /// 429 answers sent.
    pub rate_limited: u32,
    /// Each 429: `"method channel"`.
    pub limited: Vec<String>,
    /// Every Web API call, in order.
    pub calls: Vec<ApiCall>,
    /// Messages by (channel, ts).
    pub messages: BTreeMap<(String, String), StoredMessage>,
    /// User groups: id → members.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Channels that exist: id → name.
    pub channels: BTreeMap<String, String>,
    pub(super) read_posts: usize,
    pub(super) ts_counter: u64,
    pub(super) ids: u64,
    pub(super) tickets: BTreeSet<u64>,
    pub(super) next_ticket: u64,
    pub(super) post_log: HashMap<String, VecDeque<Instant>>,
    pub(super) update_log: VecDeque<Instant>,
    pub(super) injected: HashMap<String, VecDeque<Injected>>,
    pub(super) targets: Vec<ResponseTarget>,
}

impl State {
    pub(super) fn new() -> State {
        let mut s = State::default();
        s.channels.insert(CHANNEL.to_string(), "deploys".to_string());
        s.channels.insert(OTHER_CHANNEL.to_string(), "other".to_string());
        s.groups
            .insert(DEPLOYERS_GROUP.to_string(), vec![SlackUser::deployer().id]);
        s
    }

    /// A unique, increasing message timestamp like `1700000000.000100`.
    pub(super) fn new_ts(&mut self) -> String {
        self.ts_counter += 1;
        let micros = self.ts_counter * 100;
        format!("{}.{:06}", 1_700_000_000 + micros / 1_000_000, micros % 1_000_000)
    }

    pub(super) fn new_id(&mut self) -> u64 {
        self.ids += 1;
        self.ids
    }

    /// Posts the test has not read yet ([`FakeSlack::next_post`]), oldest first.
    pub fn unread_posts(&self) -> &[Post] {
        &self.posts[self.read_posts..]
    }

    /// Connections that got `hello` and still take envelopes.
    pub fn open_sockets(&self) -> usize {
        self.sockets.iter().filter(|c| c.open && c.hello && !c.draining).count()
    }

    /// The first ack of `envelope_id`.
    pub fn ack_of(&self, envelope_id: &str) -> Option<&Ack> {
        self.acks.iter().find(|a| a.envelope_id == envelope_id)
    }

    /// Every delivery attempt of `envelope_id`.
    pub fn attempts(&self, envelope_id: &str) -> Vec<&Envelope> {
        self.envelopes.iter().filter(|e| e.envelope_id == envelope_id).collect()
    }

    pub fn message(&self, channel: &str, ts: &str) -> Option<&StoredMessage> {
        self.messages.get(&(channel.to_string(), ts.to_string()))
    }

    /// Posts in `channel`, in order.
    pub fn posts_in(&self, channel: &str) -> Vec<&Post> {
        self.posts.iter().filter(|p| p.channel == channel).collect()
    }

    /// The envelopes that break Slack's 3 s rule: never acknowledged though delivered (or
    /// pushed) more than [`ACK_DEADLINE`] ago, or acknowledged later than that. Redelivering
    /// restarts the clock, as the redelivery is what the bot answers.
    pub fn late_acks(&self, now: Instant) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut late = Vec::new();
        for e in &self.envelopes {
            if !seen.insert(e.envelope_id.clone()) {
                continue;
            }
            let acks: Vec<&Ack> = self.acks.iter().filter(|a| a.envelope_id == e.envelope_id).collect();
            if acks.iter().any(|a| a.latency.is_some_and(|l| l <= ACK_DEADLINE)) {
                continue;
            }
            let last = self
                .attempts(&e.envelope_id)
                .into_iter()
                .map(|a| a.delivered.unwrap_or(a.pushed))
                .max()
                .unwrap_or(e.pushed);
            let what = format!("{} ({})", e.envelope_id, e.event_type().unwrap_or(&e.kind));
            match acks.first() {
                Some(a) => late.push(format!("{what}: acknowledged after {:?}", a.latency)),
                None if now.duration_since(last) > ACK_DEADLINE => late.push(format!(
                    "{what}: not acknowledged {:?} after it was {}",
                    now.duration_since(last),
                    if e.delivered.is_some() {
                        "delivered"
                    } else {
                        "pushed (never delivered)"
                    }
                )),
                None => {}
            }
        }
        late
    }
}
