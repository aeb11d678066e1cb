//! The Slack adapter (slack-morphism, Socket Mode only: the bot dials out to Slack, so it
//! needs no public endpoint). It turns envelopes into [`ChatEvent`]s ([`events`]) and
//! implements [`ChatPort`] with `chat.postMessage` and `chat.update` (Block Kit, [`blocks`]),
//! paced by [`limiter`].
//!
//! Slack delivers at least once: each message, slash command and click is claimed in the
//! store before it is handled, so a redelivered envelope, or one that reached another replica,
//! is acknowledged and left alone. Envelopes are acknowledged before any slow work.
//!
//! An edit that meets a 429 waits for `Retry-After` and then sends the newest content of its
//! message, rendered as the request goes out (a status message's elapsed time is that of the
//! moment it is sent): edits queued behind it for the same message are coalesced into that one
//! request (and the log a folded-in final edit carries still goes into the thread).
//!
//! Neither token is logged or put into an error: errors pass through [`TokenScrubber::scrub`], and
//! slack-morphism's own logs carry no tokens (they go in headers).
//! Slack types stay in this module; the bot sees only the port.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use crate::bot::port::{ChatPort, CommandHandler, EventClaim, OutgoingMessage, PortError, PortResult, Render};
use crate::config::SlackSettings;
use crate::redact::TokenScrubber;

pub mod blocks;
mod directory;
mod events;
pub mod limiter;
mod private;
pub mod text;

pub use limiter::SlackLimits;
use limiter::{Limiter, Method};

type Connector = SlackClientHyperConnector<hyper_rustls::HttpsConnector<HttpConnector>>;
type Client = SlackClient<Connector>;

/// What the bot answers a slash command or a click with when it answers in the channel.
pub const FOLLOWING_IN_CHANNEL: &str = "On it: following this job in the channel.";
pub const ON_IT: &str = "On it.";

/// A Web API call that takes longer than this is abandoned (and frees its channel).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`start`] waits for the first Socket Mode `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times a request that met a 429 is tried again.
const MAX_RATE_LIMITED_TRIES: u32 = 5;

/// The newest content wanted for one message, and how far its edits got.
struct Wanted {
    generation: u64,
    /// Renders the newest content when the request goes out.
    render: Render,
    sent: u64,
}

/// Posts and edits channel messages for the bot.
pub struct SlackPort {
    client: Arc<Client>,
    token: SlackApiToken,
    limiter: Limiter,
    secrets: TokenScrubber,
    wanted: StdMutex<HashMap<String, Wanted>>,
    next_generation: std::sync::atomic::AtomicU64,
    /// Logs already uploaded, by message and file name: a retried final edit uploads none twice.
    uploaded: StdMutex<HashSet<String>>,
    /// Edits that were folded into a newer one (for the benchmark and the tests).
    pub coalesced: std::sync::atomic::AtomicU64,
    /// Socket Mode `hello`s so far (readiness: connected once there is one).
    hellos: Arc<events::Hellos>,
}

impl std::fmt::Debug for SlackPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackPort")
            .field("limits", &self.limiter.limits)
            .finish_non_exhaustive()
    }
}

/// The tokens and where the Web API is.
pub struct SlackTokens {
    pub app: String,
    pub bot: String,
}

impl SlackTokens {
    /// Reads both tokens from the environment variables the settings name, checking their
    /// kind (`xapp-` and `xoxb-`) without ever printing them.
    pub fn from_env(settings: &SlackSettings) -> Result<SlackTokens, String> {
        let read = |var: &str, kind: &str, what: &str| -> Result<String, String> {
            match std::env::var(var) {
                Ok(t) if t.trim().starts_with(kind) => Ok(t.trim().to_string()),
                Ok(t) if !t.trim().is_empty() => Err(format!(
                    "{var} does not hold a Slack {what} (it should start with {kind})"
                )),
                _ => Err(format!(
                    "{var} is not set: put the Slack {what} in the environment or .env"
                )),
            }
        };
        Ok(SlackTokens {
            app: read(&settings.app_token_env, "xapp-", "app-level token")?,
            bot: read(&settings.bot_token_env, "xoxb-", "bot token")?,
        })
    }
}

fn connector(settings: &SlackSettings) -> Connector {
    // The system's roots (a company proxy's CA included); the bundled ones if it has none.
    let https = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots(),
    }
    // Plain http is accepted only for a loopback api_url (checked with the config).
    .https_or_http()
    .enable_http1()
    .enable_http2()
    .build();
    let connector = SlackClientHyperConnector::with_connector(https);
    match &settings.api_url {
        Some(url) => connector.with_slack_api_url(url.trim_end_matches('/')),
        None => connector,
    }
}

fn token(value: &str) -> SlackApiToken {
    SlackApiToken::new(SlackApiTokenValue::new(value.to_string()))
}

/// How long Slack asked us to wait, if this error is a 429.
fn retry_after(err: &SlackClientError) -> Option<Duration> {
    match err {
        SlackClientError::RateLimitError(e) => Some(e.retry_after.unwrap_or(Duration::from_secs(1))),
        _ => None,
    }
}

impl SlackPort {
    fn new(settings: &SlackSettings, tokens: &SlackTokens, limits: SlackLimits) -> SlackPort {
        SlackPort {
            client: Arc::new(SlackClient::new(connector(settings))),
            token: token(&tokens.bot),
            limiter: Limiter::new(limits),
            secrets: TokenScrubber::new([&tokens.app, &tokens.bot]),
            wanted: StdMutex::new(HashMap::new()),
            next_generation: Default::default(),
            uploaded: StdMutex::new(HashSet::new()),
            coalesced: Default::default(),
            hellos: Arc::new(events::Hellos::default()),
        }
    }

    /// The limits this port keeps to.
    pub fn limits(&self) -> SlackLimits {
        self.limiter.limits
    }

    fn error(&self, what: &str, err: impl std::fmt::Display) -> PortError {
        PortError(self.secrets.scrub(format!("Slack {what} failed: {err}")))
    }

    /// Runs one Web API call with a timeout; a 429 pauses `method` for its `Retry-After` and
    /// comes back as `Err(Some(wait))` for the caller to try again.
    async fn call<T>(
        &self,
        what: &str,
        method: Method,
        fut: impl std::future::Future<Output = ClientResult<T>>,
    ) -> Result<T, Option<PortError>> {
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, fut).await;
        let status = match &outcome {
            Ok(Ok(_)) => "ok",
            Ok(Err(e)) if retry_after(e).is_some() => "429",
            Ok(Err(_)) => "error",
            Err(_) => "timeout",
        };
        crate::metrics::get().chat_request("slack", what, status);
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => match retry_after(&e) {
                Some(wait) => {
                    tracing::warn!(
                        method = what,
                        retry_after_ms = wait.as_millis() as u64,
                        "Slack answered 429"
                    );
                    self.limiter.pause(method, wait);
                    Err(None)
                }
                None => Err(Some(self.error(what, e))),
            },
            Err(_) => Err(Some(PortError(format!("Slack {what} timed out")))),
        }
    }

    async fn post(&self, channel: &str, msg: OutgoingMessage) -> PortResult<String> {
        let content = blocks::content(&msg);
        let request = SlackApiChatPostMessageRequest::new(SlackChannelId::new(channel.to_string()), content)
            .with_link_names(false)
            .with_unfurl_links(false)
            .with_unfurl_media(false);
        let session = self.client.open_session(&self.token);
        for _ in 0..MAX_RATE_LIMITED_TRIES {
            let _permit = self.limiter.channel(channel, Method::Post).await;
            match self
                .call("chat.postMessage", Method::Post, session.chat_post_message(&request))
                .await
            {
                Ok(sent) => {
                    let ts = sent.ts.to_string();
                    drop(_permit);
                    self.upload_log(channel, &ts, &msg).await;
                    return Ok(ts);
                }
                Err(Some(e)) => return Err(e),
                Err(None) => continue,
            }
        }
        Err(PortError("Slack chat.postMessage stayed rate limited".into()))
    }

    async fn change(&self, channel: &str, ts: &str, render: Render) -> PortResult<()> {
        let key = format!("{channel}/{ts}");
        let generation = self.next_generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        {
            let mut wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
            let sent = wanted.get(&key).map(|w| w.sent).unwrap_or(0);
            wanted.insert(
                key.clone(),
                Wanted {
                    generation,
                    render: render.clone(),
                    sent,
                },
            );
        }
        let session = self.client.open_session(&self.token);
        let mut outcome = Err(PortError("Slack chat.update stayed rate limited".into()));
        for _ in 0..MAX_RATE_LIMITED_TRIES {
            let permit = self.limiter.channel(channel, Method::Update).await.uncounted();
            let next = {
                let wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
                match wanted.get(&key) {
                    // A newer edit of this message went out while this one waited.
                    Some(w) if w.sent >= generation => None,
                    Some(w) => Some((w.render.clone(), w.generation)),
                    None => Some((render.clone(), generation)),
                }
            };
            let Some((newest_render, newest)) = next else {
                self.coalesced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                crate::metrics::get().edit("coalesced", 1);
                permit.unused();
                // The request that carried this edit's content was another's, which uploads
                // only its own attachment: this edit's log (a final edit's) still goes into
                // the thread.
                if let Some(msg) = render() {
                    self.upload_log(channel, ts, &msg).await;
                }
                return Ok(());
            };
            // Rendered now, after the wait (for the budget, or a 429's Retry-After): the
            // message shows the job as it is at the moment the request goes out. `None`: the
            // job's lease ran out while it waited.
            let Some(msg) = newest_render() else {
                permit.unused();
                return Ok(());
            };
            if newest > generation {
                self.coalesced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                crate::metrics::get().edit("coalesced", 1);
            }
            let request = SlackApiChatUpdateRequest::new(
                SlackChannelId::new(channel.to_string()),
                blocks::content(&msg),
                SlackTs::new(ts.to_string()),
            )
            .with_link_names(false);
            match self
                .call("chat.update", Method::Update, session.chat_update(&request))
                .await
            {
                Ok(_) => {
                    let mut wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(w) = wanted.get_mut(&key) {
                        w.sent = w.sent.max(newest);
                    }
                    outcome = Ok(());
                    break;
                }
                Err(Some(e)) => {
                    outcome = Err(e);
                    break;
                }
                Err(None) => continue,
            }
        }
        outcome?;
        // This edit's own log, whether or not its own rendering was the one sent.
        if let Some(msg) = render() {
            self.upload_log(channel, ts, &msg).await;
        }
        Ok(())
    }

    /// The full log goes into the message's thread as a file, once per message and file.
    async fn upload_log(&self, channel: &str, ts: &str, msg: &OutgoingMessage) {
        let Some(a) = &msg.attachment else { return };
        let key = format!("{channel}/{ts}/{}", a.filename);
        if !self
            .uploaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone())
        {
            return;
        }
        if let Err(e) = self.upload(channel, ts, &a.filename, &a.path).await {
            tracing::warn!("{e}");
            // Try again with the next edit that carries it.
            self.uploaded.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        }
    }

    async fn upload(&self, channel: &str, ts: &str, filename: &str, path: &std::path::Path) -> PortResult<()> {
        let data = tokio::fs::read(path)
            .await
            .map_err(|e| PortError(format!("cannot read attachment {}: {e}", path.display())))?;
        let session = self.client.open_session(&self.token);
        let upload_url = self
            .call(
                "files.getUploadURLExternal",
                Method::Other,
                session.get_upload_url_external(&SlackApiFilesGetUploadUrlExternalRequest::new(
                    filename.to_string(),
                    data.len(),
                )),
            )
            .await
            .map_err(|e| e.unwrap_or_else(|| PortError("Slack file upload rate limited".into())))?;
        self.call(
            "file upload",
            Method::Other,
            session.files_upload_via_url(&SlackApiFilesUploadViaUrlRequest::new(
                upload_url.upload_url,
                data,
                "text/plain".into(),
            )),
        )
        .await
        .map_err(|e| e.unwrap_or_else(|| PortError("Slack file upload rate limited".into())))?;
        let complete =
            SlackApiFilesCompleteUploadExternalRequest::new(vec![
                SlackApiFilesComplete::new(upload_url.file_id).with_title(filename.to_string())
            ])
            .with_channel_id(SlackChannelId::new(channel.to_string()))
            .with_thread_ts(SlackTs::new(ts.to_string()))
            .with_initial_comment("The full log".to_string());
        self.call(
            "files.completeUploadExternal",
            Method::Other,
            session.files_complete_upload_external(&complete),
        )
        .await
        .map_err(|e| e.unwrap_or_else(|| PortError("Slack file upload rate limited".into())))?;
        Ok(())
    }

    /// Answers through a slash command's or a click's `response_url` (seen by that user only).
    async fn respond(&self, response_url: &SlackResponseUrl, text: &str) {
        let request = SlackApiPostWebhookMessageRequest::new(blocks::content(&OutgoingMessage::text(text)))
            .with_replace_original(false);
        if let Err(Some(e)) = self
            .call(
                "response",
                Method::Other,
                self.client.respond_to_event(response_url, &request),
            )
            .await
        {
            tracing::warn!("{e}");
        }
    }
}

impl ChatPort for SlackPort {
    fn platform(&self) -> crate::address::ChatPlatform {
        crate::address::ChatPlatform::Slack
    }

    fn pacing(&self, chat: &crate::config::ChatSettings) -> crate::bot::pace::Pacing {
        crate::platform::pacing::of(crate::address::ChatPlatform::Slack, chat)
    }

    fn connected(&self) -> bool {
        self.hellos.count() > 0
    }

    fn share_budget(&self, replicas: usize) {
        self.limiter.set_share(replicas);
    }

    fn send<'a>(&'a self, channel: &'a str, msg: OutgoingMessage) -> BoxFuture<'a, PortResult<String>> {
        Box::pin(self.post(channel, msg))
    }

    fn edit<'a>(
        &'a self,
        channel: &'a str,
        message_id: &'a str,
        msg: OutgoingMessage,
    ) -> BoxFuture<'a, PortResult<()>> {
        Box::pin(self.change(channel, message_id, Arc::new(move || Some(msg.clone()))))
    }

    fn edit_rendered<'a>(
        &'a self,
        channel: &'a str,
        message_id: &'a str,
        render: Render,
    ) -> BoxFuture<'a, PortResult<()>> {
        Box::pin(self.change(channel, message_id, render))
    }
}

/// The Socket Mode connections; [`SlackConnection::shutdown`] closes them.
pub struct SlackConnection {
    listener: SlackClientSocketModeListener<Connector>,
    /// When the last `hello` arrived (readiness).
    pub hellos: Arc<events::Hellos>,
}

impl SlackConnection {
    pub async fn shutdown(&self) {
        self.listener.shutdown().await;
    }
}

/// Connects to Slack: checks the bot token (`auth.test`), opens `settings.connections`
/// Socket Mode connections and returns once the first says hello, with the port to post
/// through. Each event is handled only by the replica whose `claim` wins.
pub async fn start(
    settings: &SlackSettings,
    tokens: SlackTokens,
    prefix: String,
    handler: CommandHandler,
    claim: EventClaim,
    limits: SlackLimits,
) -> Result<(Arc<SlackPort>, SlackConnection), String> {
    let port = Arc::new(SlackPort::new(settings, &tokens, limits));
    let auth = port
        .call(
            "auth.test",
            Method::Other,
            port.client.open_session(&port.token).auth_test(),
        )
        .await
        .map_err(|e| {
            e.map(|e| e.0)
                .unwrap_or_else(|| "Slack auth.test was rate limited".into())
        })?;
    tracing::info!(team = %auth.team, user = %auth.user.clone().unwrap_or_default(), "connected to Slack");
    let hellos = port.hellos.clone();
    let context = Arc::new(events::Context {
        port: port.clone(),
        prefix,
        handler,
        claim,
        bot_user: auth.user_id.to_string(),
        directory: directory::Directory::new(port.client.clone(), port.token.clone()),
        hellos: hellos.clone(),
        claims: tokio::sync::Semaphore::new(1),
    });
    let _ = SECRETS.set(port.secrets.clone());
    let environment = Arc::new(
        SlackClientEventsListenerEnvironment::new(port.client.clone())
            .with_error_handler(events::on_error)
            .with_user_state(context),
    );
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_hello_events(events::on_hello)
        .with_push_events(events::on_push)
        .with_command_events(events::on_command)
        .with_interaction_events(events::on_interaction);
    let config = SlackClientSocketModeConfig::new()
        .with_max_connections_count(settings.connections)
        // Reconnect at once after a disconnect: the second connection covers the gap.
        .with_initial_backoff_in_seconds(1);
    let listener = SlackClientSocketModeListener::new(&config, environment, callbacks);
    listener
        .listen_for(&token(&tokens.app))
        .await
        .map_err(|e| port.secrets.scrub(format!("cannot open Slack's Socket Mode: {e}")))?;
    drop(tokens);
    listener.start().await;
    let connection = SlackConnection { listener, hellos };
    if tokio::time::timeout(HELLO_TIMEOUT, connection.hellos.first())
        .await
        .is_err()
    {
        connection.shutdown().await;
        return Err(format!(
            "Slack's Socket Mode did not say hello within {} s (is Socket Mode on for the app, and the app token's scope connections:write?)",
            HELLO_TIMEOUT.as_secs()
        ));
    }
    Ok((port, connection))
}

/// For the listener's error handler, which is a plain function.
static SECRETS: OnceLock<TokenScrubber> = OnceLock::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_of_the_wrong_kind_are_refused_without_being_shown() {
        let settings = SlackSettings {
            app_token_env: "ARGOS_UNIT_SLACK_APP".into(),
            bot_token_env: "ARGOS_UNIT_SLACK_BOT".into(),
            ..SlackSettings::default()
        };
        std::env::set_var("ARGOS_UNIT_SLACK_APP", "xoxb-wrong-kind-of-token");
        std::env::set_var("ARGOS_UNIT_SLACK_BOT", "xoxb-right");
        let err = SlackTokens::from_env(&settings).err().unwrap();
        assert!(
            err.contains("ARGOS_UNIT_SLACK_APP does not hold a Slack app-level token"),
            "{err}"
        );
        assert!(!err.contains("wrong-kind"), "{err}");
        std::env::remove_var("ARGOS_UNIT_SLACK_APP");
        let err = SlackTokens::from_env(&settings).err().unwrap();
        assert!(err.contains("is not set"), "{err}");
    }
}
