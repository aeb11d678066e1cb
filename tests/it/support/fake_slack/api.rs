//! The test-facing API: start the fake, push what people do (messages, mentions, slash commands,
//! clicks), wait for and read what the bot sent, and the checks every scenario ends with.

use super::*;

impl FakeSlack {
    /// A fake with [`FakeSlackLimits::TEST`].
    pub async fn start() -> FakeSlack {
        FakeSlack::start_with(FakeSlackLimits::TEST).await
    }

    pub async fn start_with(limits: FakeSlackLimits) -> FakeSlack {
        // The socket listener is bound first: the Web API hands out its address.
        let ws_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind Socket Mode");
        let ws_base = format!("ws://{}", ws_listener.local_addr().expect("socket addr"));
        // The HTTP server binds its own port, so its URL is only known once it runs: the
        // handlers find `Inner` (which holds that URL) through a cell filled right after.
        let cell: Arc<Mutex<Option<Arc<Inner>>>> = Arc::new(Mutex::new(None));
        let router = web::router(cell.clone());
        let http = router.serve().await.expect("start fake Slack Web API");
        let inner = Arc::new(Inner {
            state: Mutex::new(State::new()),
            notify: Notify::new(),
            limits: Mutex::new(limits),
            echo: AtomicBool::new(true),
            http_base: http.url(),
            ws_base,
            links: Mutex::new(socket::Links::default()),
            hello_gate: tokio::sync::watch::channel(true).0,
        });
        *cell.lock().unwrap_or_else(|e| e.into_inner()) = Some(inner.clone());
        let socket = tokio::spawn(socket::serve(ws_listener, inner.clone()));
        FakeSlack { inner, http, socket }
    }

    /// The base URL for `SlackClientHyperConnector::with_slack_api_url`: `http://127.0.0.1:PORT/api`,
    /// WITHOUT a trailing slash, as slack-morphism joins it as `format!("{base}/{method}")` (a
    /// trailing slash makes `/api//auth.test`, which the fake rejects as Slack would).
    pub fn api_url(&self) -> String {
        format!("{}/api", self.http.url())
    }

    /// `http://127.0.0.1:PORT` of the Web API server (upload and response URLs live under it).
    pub fn url(&self) -> String {
        self.http.url()
    }

    /// `ws://127.0.0.1:PORT` of the Socket Mode listener.
    pub fn socket_url(&self) -> String {
        self.inner.ws_base.clone()
    }

    /// The YAML the bot's config needs for Slack through this fake (tokens from the
    /// environment: call [`FakeSlack::set_token_env`]).
    pub fn bot_config(&self) -> String {
        format!(
            "slack:\n  enabled: true\n  app_token_env: {APP_TOKEN_ENV}\n  bot_token_env: {BOT_TOKEN_ENV}\n  api_url: {}\n",
            self.api_url()
        )
    }

    /// Sets the two token variables [`FakeSlack::bot_config`] names.
    pub fn set_token_env(&self) {
        std::env::set_var(APP_TOKEN_ENV, APP_TOKEN);
        std::env::set_var(BOT_TOKEN_ENV, BOT_TOKEN);
    }

    /// From now on, Socket Mode connections are accepted but get no `hello` (a slow Slack)
    /// until [`FakeSlack::release_hello`].
    pub fn hold_hello(&self) {
        self.inner.hello_gate.send_replace(false);
    }

    /// Says `hello` on every connection waiting for it, and on new ones at once.
    pub fn release_hello(&self) {
        self.inner.hello_gate.send_replace(true);
    }

    /// Whether the bot's own posts come back as `message` events (default: yes, as Slack does).
    pub fn set_echo_own_messages(&self, on: bool) {
        self.inner.echo.store(on, Ordering::Relaxed);
    }

    /// The next call of Web API `method` answers `{"ok":false,"error":error}` (and is not applied).
    pub fn fail_next(&self, method: &str, error: &str) {
        let mut s = self.inner.state();
        let q = s.injected.entry(method.to_string()).or_default();
        q.push_back(Injected::Error(error.to_string()));
    }

    /// The next call of Web API `method` answers 429 with `Retry-After: retry_after_secs`.
    pub fn rate_limit_next(&self, method: &str, retry_after_secs: u64) {
        let mut s = self.inner.state();
        let q = s.injected.entry(method.to_string()).or_default();
        q.push_back(Injected::RateLimit(retry_after_secs));
    }

    /// Sets the members of a user group (created if new, with the group id as its handle).
    pub fn set_group_members(&self, group: &str, users: &[&SlackUser]) {
        let ids = users.iter().map(|u| u.id.clone()).collect();
        self.inner.state().groups.insert(group.to_string(), ids);
    }

    /// Adds a channel the bot can post in.
    pub fn add_channel(&self, id: &str, name: &str) {
        self.inner.state().channels.insert(id.to_string(), name.to_string());
    }

    /// Reads the state.
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.inner.state())
    }

    /// Waits (at most [`WAIT`], else the test fails) until `f` returns `Some`.
    pub async fn wait_for<T>(&self, what: &str, f: impl FnMut(&mut State) -> Option<T>) -> T {
        self.wait_for_within(what, WAIT, f).await
    }

    /// [`FakeSlack::wait_for`] with another time limit.
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
                    "timed out after {limit:?} waiting for {what}\nunread posts: {:#?}\nunexpected: {:?}\n\
                     sockets: {:?}\nenvelopes: {} (acks: {})\nlast calls: {:?}",
                    s.unread_posts(),
                    s.unexpected,
                    s.sockets,
                    s.envelopes.len(),
                    s.acks.len(),
                    s.calls
                        .iter()
                        .rev()
                        .take(10)
                        .map(|c| format!("{} -> {}", c.method, c.outcome))
                        .collect::<Vec<_>>(),
                )
            }
        }
    }

    /// A message as it stands now.
    pub fn message(&self, channel: &str, ts: &str) -> Option<StoredMessage> {
        self.inner.state().message(channel, ts).cloned()
    }

    /// The next post the test has not read yet.
    pub async fn next_post(&self) -> Post {
        self.wait_for("a post from the bot", |s| {
            let next = s.posts.get(s.read_posts).cloned()?;
            s.read_posts += 1;
            Some(next)
        })
        .await
    }

    /// Like [`FakeSlack::next_post`], checking it is in `channel` and that its text or blocks
    /// contain `text`.
    pub async fn expect_post(&self, channel: &str, text: &str) -> Post {
        let p = self.next_post().await;
        assert_eq!(p.channel, channel, "post in the wrong channel: {p:#?}");
        assert!(
            p.all_text().contains(text),
            "expected a post containing {text:?}, got {p:#?}"
        );
        p
    }

    /// Fails the test if the bot posted something the test did not read.
    pub fn assert_all_read(&self) {
        let s = self.inner.state();
        assert!(
            s.unread_posts().is_empty(),
            "the bot posted messages the test did not read: {:#?}",
            s.unread_posts()
        );
    }

    /// Fails the test on requests the fake does not serve, with a wrong token, or malformed.
    pub fn assert_no_unexpected(&self) {
        let s = self.inner.state();
        assert!(s.unexpected.is_empty(), "unexpected requests: {:#?}", s.unexpected);
    }

    /// 429 answers sent so far.
    pub fn rate_limited(&self) -> u32 {
        self.inner.state().rate_limited
    }

    /// `apps.connections.open` calls answered so far.
    pub fn connections_opened(&self) -> u32 {
        self.inner.state().connections_opened
    }

    /// Waits until at least `n` connections got `hello` and take envelopes.
    pub async fn wait_connections(&self, n: usize) {
        self.wait_for(&format!("{n} open Socket Mode connections"), |s| {
            (s.open_sockets() >= n).then_some(())
        })
        .await
    }

    /// Waits for the first ack of `envelope_id`.
    pub async fn wait_acked(&self, envelope_id: &str) -> Ack {
        self.wait_for(&format!("the ack of envelope {envelope_id}"), |s| {
            s.ack_of(envelope_id).cloned()
        })
        .await
    }

    /// Envelope ids with no ack yet, in the order pushed.
    pub fn unacked(&self) -> Vec<String> {
        let s = self.inner.state();
        let mut seen = BTreeSet::new();
        s.envelopes
            .iter()
            .filter(|e| s.ack_of(&e.envelope_id).is_none() && seen.insert(e.envelope_id.clone()))
            .map(|e| e.envelope_id.clone())
            .collect()
    }

    /// Fails the test, listing them, if an envelope was not acknowledged within [`ACK_DEADLINE`]
    /// of its (latest) delivery, or was acknowledged later. Waits for the deadline of envelopes
    /// still within it, so the verdict is final. Echoes of the bot's own posts count too: Slack
    /// redelivers those as well.
    pub async fn assert_acked_in_time(&self) {
        let deadline = {
            let s = self.inner.state();
            s.envelopes
                .iter()
                .filter(|e| s.ack_of(&e.envelope_id).is_none())
                .map(|e| e.delivered.unwrap_or(e.pushed) + ACK_DEADLINE + Duration::from_millis(50))
                .max()
        };
        if let Some(deadline) = deadline {
            let _ = tokio::time::timeout_at(deadline.into(), async {
                loop {
                    let notified = self.inner.notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    {
                        let s = self.inner.state();
                        let pending = s.envelopes.iter().any(|e| s.ack_of(&e.envelope_id).is_none());
                        if !pending {
                            return;
                        }
                    }
                    notified.await;
                }
            })
            .await;
        }
        let late = self.inner.state().late_acks(Instant::now());
        assert!(
            late.is_empty(),
            "envelopes not acknowledged within {ACK_DEADLINE:?} (Slack would redeliver them):\n{}",
            late.join("\n")
        );
    }

    /// A person posts `text` in `channel` (an `events_api` `message` event). Returns the
    /// envelope id; the message's ts is in its payload (`event.ts`).
    pub fn push_message(&self, channel: &str, user: &SlackUser, text: &str) -> String {
        self.push_user_message(channel, user, text, None, false).0
    }

    /// A person mentions the bot: the text gets `<@U0ARGOSBOT> ` in front unless it already has
    /// it, and, as Slack does, two envelopes are sent for the one message (a `message` event and
    /// an `app_mention` event, different event ids, same channel and ts). Returns
    /// (the `message` envelope id, the `app_mention` envelope id).
    pub fn push_mention(&self, channel: &str, user: &SlackUser, text: &str) -> (String, String) {
        let mention = format!("<@{BOT_USER_ID}>");
        let text = if text.contains(&mention) {
            text.to_string()
        } else {
            format!("{mention} {text}")
        };
        let (message, mention) = self.push_user_message(channel, user, &text, None, true);
        (message, mention.expect("app_mention envelope"))
    }

    /// The ts of the message an `events_api` envelope carries.
    pub fn ts_of(&self, envelope_id: &str) -> Option<String> {
        let s = self.inner.state();
        let e = s.envelopes.iter().find(|e| e.envelope_id == envelope_id)?;
        e.payload["event"]["ts"].as_str().map(str::to_string)
    }

    pub(super) fn push_user_message(
        &self,
        channel: &str,
        user: &SlackUser,
        text: &str,
        thread_ts: Option<&str>,
        mention: bool,
    ) -> (String, Option<String>) {
        let (ts, ev1, ev2) = {
            let mut s = self.inner.state();
            let ts = s.new_ts();
            s.messages.insert(
                (channel.to_string(), ts.clone()),
                StoredMessage {
                    ts: ts.clone(),
                    user: user.id.clone(),
                    bot: false,
                    text: text.to_string(),
                    blocks: events::rich_text_blocks(text),
                    thread_ts: thread_ts.map(str::to_string),
                    edits: 0,
                    deleted: false,
                },
            );
            (ts, s.new_id(), s.new_id())
        };
        let message = events::user_message_event(channel, user, text, &ts, thread_ts);
        let first = self.inner.envelope_id();
        self.inner.enqueue(
            first.clone(),
            "events_api",
            false,
            events::event_callback(message, ev1, &ts),
            false,
        );
        let second = mention.then(|| {
            let event = events::app_mention_event(channel, user, text, &ts, thread_ts);
            let id = self.inner.envelope_id();
            self.inner
                .enqueue(id, "events_api", false, events::event_callback(event, ev2, &ts), false)
        });
        (first, second)
    }

    /// A person runs `/argos <text>` in `channel` (a `slash_commands` envelope, which accepts a
    /// response payload). Returns the envelope id.
    pub fn push_slash(&self, channel: &str, user: &SlackUser, text: &str) -> String {
        let id = self.inner.envelope_id();
        let url = self.inner.response_url(&id, channel, None);
        let (trigger, name) = {
            let mut s = self.inner.state();
            let n = s.new_id();
            let name = s.channels.get(channel).cloned().unwrap_or_else(|| "unknown".into());
            (format!("{n}.1700000000.fa4e"), name)
        };
        let payload = events::slash_payload(channel, &name, user, text, &url, &trigger);
        self.inner.enqueue(id, "slash_commands", true, payload, false)
    }

    /// A person clicks the button `action_id` (whose value must be `value`) under the stored
    /// message `message_ts` in `channel` (an `interactive` envelope of a `block_actions`
    /// payload). The button must be on the message as it stands now, as only those can be
    /// clicked. Returns the envelope id.
    pub fn push_button(
        &self,
        channel: &str,
        user: &SlackUser,
        message_ts: &str,
        action_id: &str,
        value: &str,
    ) -> String {
        let button = {
            let s = self.inner.state();
            let m = s
                .message(channel, message_ts)
                .unwrap_or_else(|| panic!("no message {channel}/{message_ts} to click a button of"));
            assert!(!m.deleted, "message {channel}/{message_ts} was deleted");
            let b = m
                .button(action_id)
                .unwrap_or_else(|| panic!("message {message_ts} has no button {action_id:?}: {:?}", m.buttons()));
            assert_eq!(
                b.value.as_deref(),
                Some(value),
                "button {action_id:?} has another value (push_button_unchecked forges one)"
            );
            b
        };
        self.push_button_unchecked(channel, user, message_ts, &button)
    }

    /// Like [`FakeSlack::push_button`] with any button (e.g. a forged value, or a button the
    /// message no longer has). Returns the envelope id.
    pub fn push_button_unchecked(
        &self,
        channel: &str,
        user: &SlackUser,
        message_ts: &str,
        button: &SlackButton,
    ) -> String {
        let id = self.inner.envelope_id();
        let url = self.inner.response_url(&id, channel, Some(message_ts));
        let (message, name, n) = {
            let mut s = self.inner.state();
            let message = s.message(channel, message_ts).map(events::stored_message_json);
            let name = s.channels.get(channel).cloned().unwrap_or_else(|| "unknown".into());
            (message, name, s.new_id())
        };
        let trigger = format!("{n}.1700000000.fa4e");
        let action_ts = format!("1700001000.{:06}", n % 1_000_000);
        let payload = events::block_actions_payload(
            channel, &name, user, message_ts, message, button, &url, &trigger, &action_ts,
        );
        self.inner.enqueue(id, "interactive", false, payload, false)
    }

    /// Delivers envelope `envelope_id` again, as Slack does when it was not acknowledged in
    /// time: same id and payload, `retry_attempt` + 1, `retry_reason: "timeout"`, to the next
    /// connection.
    pub fn redeliver(&self, envelope_id: &str) {
        let last = {
            let s = self.inner.state();
            s.envelopes
                .iter()
                .rev()
                .find(|e| e.envelope_id == envelope_id)
                .cloned()
                .unwrap_or_else(|| panic!("no envelope {envelope_id} to redeliver"))
        };
        let again = Envelope {
            retry_attempt: last.retry_attempt + 1,
            retry_reason: "timeout".to_string(),
            pushed: Instant::now(),
            delivered: None,
            connection: None,
            ..last
        };
        self.inner.send_attempt(again);
    }

    /// Sends `{"type":"disconnect","reason":reason}` to every open connection. Except for
    /// `warning`, the connections take no more envelopes and the fake closes them
    /// [`CLOSE_AFTER_DISCONNECT`] later, as Slack does for `refresh_requested`.
    pub fn disconnect(&self, reason: &str) {
        socket::disconnect(&self.inner, reason);
    }

    /// Closes every socket abruptly (no close frame). Envelopes written but not acknowledged stay
    /// unacknowledged (the test may [`FakeSlack::redeliver`] them); those not yet written go to
    /// the next connection.
    pub fn drop_connections(&self) {
        socket::drop_all(&self.inner);
    }

    /// Waits for the first POST to the `response_url` of `envelope_id`.
    pub async fn wait_response(&self, envelope_id: &str) -> Response {
        self.wait_for(&format!("a POST to the response_url of {envelope_id}"), |s| {
            s.responses.iter().find(|r| r.envelope_id == envelope_id).cloned()
        })
        .await
    }

    /// The upload of `file_id`.
    pub fn upload(&self, file_id: &str) -> Option<Upload> {
        self.inner
            .state()
            .uploads
            .iter()
            .find(|u| u.file_id == file_id)
            .cloned()
    }

    /// The Web API calls of `method` so far.
    pub fn calls(&self, method: &str) -> Vec<ApiCall> {
        let s = self.inner.state();
        s.calls.iter().filter(|c| c.method == method).cloned().collect()
    }
}
