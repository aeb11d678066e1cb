//! The test-facing API: start the fake, push what people do, wait for and read what the bot sent.
use super::*;

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

    pub(super) async fn start_mode(limits: FakeLimits, sharded: bool) -> FakeDiscord {
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

    pub(super) fn new_interaction(&self, channel: u64) -> (String, String) {
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

    /// A person runs `/argos` with a `ref` too (`ref:<git_ref>`). Returns the interaction id.
    pub fn push_slash_with_ref(
        &self,
        channel: u64,
        user: &TestUser,
        command: &str,
        env: &str,
        git_ref: &str,
    ) -> String {
        let (id, token) = self.new_interaction(channel);
        let options = vec![
            option("command", command, false),
            option("env", env, false),
            option("ref", git_ref, false),
        ];
        let d = interaction_json(&id, &token, 2, &channel.to_string(), user, options);
        self.inner.dispatch("INTERACTION_CREATE", d);
        id
    }

    /// A person who chose `env` is typing `typed` into the `ref` option. Returns the
    /// interaction id.
    pub fn push_ref_autocomplete(&self, channel: u64, user: &TestUser, env: &str, typed: &str) -> String {
        let (id, token) = self.new_interaction(channel);
        let options = vec![
            option("command", "deploy", false),
            option("env", env, false),
            option("ref", typed, true),
        ];
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
