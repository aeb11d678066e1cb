//! The Discord adapter (serenity): turns gateway events into [`ChatEvent`]s, answers slash
//! commands and button clicks, and implements [`ChatPort`] for posting and editing channel
//! messages (with their buttons).
//!
//! A button's `custom_id` is [`BUTTON_PREFIX`] followed by the command it runs, so a click needs
//! no state kept by the bot and buttons keep working after a restart. A click is acknowledged
//! at once with a deferred *ephemeral* response ("Argos is thinking…", seen only by the
//! clicker), runs the command as the clicking user, and the deferred response then becomes the
//! reply.
//!
//! Every REST request goes through one path of ours, [`rest`], with or without
//! `discord.api_proxy`, so the tests (which reach the fake Discord through the proxy setting)
//! run the limiter production runs. [`limiter`] paces to Discord's announced buckets, a
//! per-channel prior and a global quota, and waits out every 429 (a global one shared with the
//! other replicas through the store). Why serenity's own limiter is not used: see [`rest`].
//!
//! The bot token is never logged nor put into an error: errors pass through [`TokenScrubber::scrub`].
//! What arrives from the gateway is handled in [`handler`].

use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;

use hyper::Method;
use serenity::all::{
    ClientBuilder, CommandOptionType, CreateCommand, CreateCommandOption, GatewayIntents, GuildId, Http, HttpBuilder,
};
use tokio::sync::oneshot;

use crate::bot::port::{
    addressed_text, ChatEvent, ChatPort, CommandHandler, EventClaim, OutgoingMessage, PortError, PortResult,
    RefSuggester, Render,
};
use crate::config::DiscordSettings;
use crate::redact::TokenScrubber;

mod handler;
mod limiter;
mod message;
mod private;
mod rest;
mod shared_hold;

use handler::{signal, Handler, ReadySender};
pub use limiter::{GlobalHold, RateLimits};
use limiter::{Limiter, RouteKey};
pub use message::{
    button_command, button_custom_id, button_style, BUTTON_PREFIX, FOLLOWING_IN_CHANNEL, MAX_BUTTONS,
    MAX_CONTENT_CHARS, MAX_CUSTOM_ID_CHARS, ON_IT,
};
use message::{message_body, read_attachment, snowflake};
pub use private::EPHEMERAL;
use rest::{Body, Call, Rest};

/// The slash command's name: `/argos`.
pub const SLASH_COMMAND: &str = "argos";

/// The choices of the slash command's `command` option: every command of the grammar (one
/// table, `command::COMMANDS`, so the slash command never drifts from what the parser knows).
pub fn slash_choices() -> Vec<&'static str> {
    crate::command::COMMANDS.iter().map(|c| c.name).collect()
}

/// Autocomplete offers at most this many choices.
const MAX_CHOICES: usize = 25;

/// How long [`start`] waits for the gateway's READY.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Posts and edits channel messages for the bot.
pub struct DiscordPort {
    rest: Rest,
    secret: TokenScrubber,
    /// The gateway session is up (READY seen, and the shard's stage is Connected).
    connected: std::sync::atomic::AtomicBool,
    /// Where the `ref` option's autocomplete comes from (the bot's repository).
    refs: std::sync::OnceLock<RefSuggester>,
}

impl std::fmt::Debug for DiscordPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordPort")
            .field("limits", &self.rest.limiter.limits)
            .finish_non_exhaustive()
    }
}

/// serenity's client for the gateway's own lookups when it connects; every request of ours
/// goes through [`rest`]. Its limiter is off with or without a proxy (it would be skipped
/// with one anyway), so no request is paced by two limiters that do not know each other.
fn build_http(settings: &DiscordSettings, token: &str) -> Http {
    let builder = HttpBuilder::new(token).ratelimiter_disabled(true);
    match &settings.api_proxy {
        Some(url) => builder.proxy(url.trim_end_matches('/')).build(),
        None => builder.build(),
    }
}

/// A message create or edit in `channel`.
fn message_route(route: &'static str, channel: &str) -> RouteKey {
    RouteKey {
        route,
        major: channel.to_string(),
        interaction: false,
        channel: Some(channel.to_string()),
    }
}

impl DiscordPort {
    /// A port with its own HTTP client (through `settings.api_proxy` when set) that keeps to
    /// `limits`. [`start`] uses [`RateLimits::DISCORD`].
    pub fn new(settings: &DiscordSettings, token: &str, limits: RateLimits) -> DiscordPort {
        let proxy = settings.api_proxy.as_deref();
        DiscordPort {
            rest: Rest::new(token, proxy, Limiter::new(limits)),
            secret: TokenScrubber::new([token]),
            connected: Default::default(),
            refs: Default::default(),
        }
    }

    /// Offers refs from `suggester` in the `ref` option's autocomplete (set once).
    pub fn suggest_refs_with(&self, suggester: RefSuggester) {
        let _ = self.refs.set(suggester);
    }

    /// The refs to offer for `typed` on `env`; none until a suggester is set.
    pub async fn suggest_refs(&self, env: &str, typed: &str) -> Vec<String> {
        match self.refs.get() {
            Some(f) => f(env.to_string(), typed.to_string()).await,
            None => Vec::new(),
        }
    }

    /// The limits this port keeps to.
    /// Discord's limits belong to the bot token: `replicas` live bots share them.
    pub fn set_share(&self, replicas: usize) {
        self.rest.limiter.global.set_share(replicas);
    }

    /// Shares global 429s with the other replicas that use this token (through the store):
    /// one replica told to wait makes them all wait.
    pub fn share_holds(&self, holds: Arc<dyn GlobalHold>) {
        self.rest.limiter.share_holds(holds);
    }

    pub fn limits(&self) -> RateLimits {
        self.rest.limiter.limits
    }

    /// How much longer a global 429 that this port was told of holds its requests.
    pub fn global_hold(&self) -> Option<Duration> {
        self.rest.limiter.global_hold()
    }

    /// Sends one request through the limiter; errors have the token scrubbed out.
    async fn send_call(
        &self,
        call: Call,
        render: Option<&(dyn Fn() -> Option<Body> + Send + Sync)>,
    ) -> PortResult<Option<bytes::Bytes>> {
        self.rest
            .call(call, render)
            .await
            .map_err(|e| PortError(self.secret.scrub(e)))
    }

    /// Answers an interaction (a deferral, an autocompletion).
    pub(super) async fn interaction_callback(
        &self,
        id: &str,
        token: &str,
        response: &serenity::all::CreateInteractionResponse,
    ) -> PortResult<()> {
        let call = Call {
            what: "interaction response",
            method: Method::POST,
            path: format!("/interactions/{id}/{token}/callback"),
            key: RouteKey {
                route: "POST /interactions/{i}/{t}/callback",
                major: id.to_string(),
                interaction: true,
                channel: None,
            },
            body: Body::Json(serde_json::to_value(response).unwrap_or_default()),
        };
        self.send_call(call, None).await.map(|_| ())
    }

    /// Replaces a deferred interaction response with the reply (the follow-up).
    pub(super) async fn edit_original(
        &self,
        application: &str,
        token: &str,
        edit: &serenity::all::EditInteractionResponse,
    ) -> PortResult<()> {
        let call = Call {
            what: "interaction follow-up",
            method: Method::PATCH,
            path: format!("/webhooks/{application}/{token}/messages/@original"),
            key: RouteKey {
                route: "PATCH /webhooks/{a}/{t}/messages/@original",
                // Webhook routes are limited per webhook (the interaction's token).
                major: token.to_string(),
                interaction: true,
                channel: None,
            },
            body: Body::Json(serde_json::to_value(edit).unwrap_or_default()),
        };
        self.send_call(call, None).await.map(|_| ())
    }

    /// Registers the slash commands, in the guild or globally.
    pub(super) async fn register_commands(
        &self,
        application: &str,
        guild: Option<GuildId>,
        commands: &[CreateCommand],
    ) -> PortResult<()> {
        let (path, route, major) = match guild {
            Some(g) => (
                format!("/applications/{application}/guilds/{g}/commands"),
                "PUT /applications/{a}/guilds/{g}/commands",
                g.to_string(),
            ),
            None => (
                format!("/applications/{application}/commands"),
                "PUT /applications/{a}/commands",
                application.to_string(),
            ),
        };
        let call = Call {
            what: "command registration",
            method: Method::PUT,
            path,
            key: RouteKey {
                route,
                major,
                interaction: false,
                channel: None,
            },
            body: Body::Json(serde_json::to_value(commands).unwrap_or_default()),
        };
        self.send_call(call, None).await.map(|_| ())
    }

    pub(super) fn set_connected(&self, up: bool) {
        self.connected.store(up, std::sync::atomic::Ordering::Relaxed);
    }

    async fn post(&self, channel: &str, msg: OutgoingMessage) -> PortResult<String> {
        let channel_id = snowflake("channel", channel).map_err(PortError)?;
        let file = read_attachment(&msg).await?;
        let call = Call {
            what: "send",
            method: Method::POST,
            path: format!("/channels/{channel_id}/messages"),
            key: message_route("POST /channels/{c}/messages", channel),
            body: message_body(&msg, false, file),
        };
        let answer = self.send_call(call, None).await?.unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        json["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| PortError("Discord send answered without a message id".into()))
    }

    /// Edits a message, rendering it when the request goes out: after the channel's turn and
    /// every wait the limiter asks for, so an edit retried after a 429 shows the job as it then
    /// is. A render of `None` (the job's lease ran out meanwhile) sends nothing.
    async fn change(&self, channel: &str, message_id: &str, render: Render) -> PortResult<()> {
        let channel_id = snowflake("channel", channel).map_err(PortError)?;
        let message_id = snowflake("message", message_id).map_err(PortError)?;
        let Some(first) = render() else {
            return Ok(());
        };
        // The attachment (a job's log, on its final message) is read once, up front.
        let file = read_attachment(&first).await?;
        let call = Call {
            what: "edit",
            method: Method::PATCH,
            path: format!("/channels/{channel_id}/messages/{message_id}"),
            key: message_route("PATCH /channels/{c}/messages/{m}", channel),
            body: message_body(&first, true, file.clone()),
        };
        let now = move || render().map(|msg| message_body(&msg, true, file.clone()));
        self.send_call(call, Some(&now)).await.map(|_| ())
    }
}

impl ChatPort for DiscordPort {
    fn platform(&self) -> crate::address::ChatPlatform {
        crate::address::ChatPlatform::Discord
    }

    fn pacing(&self, chat: &crate::config::ChatSettings) -> crate::bot::pace::Pacing {
        crate::platform::pacing::of(crate::address::ChatPlatform::Discord, chat)
    }

    fn connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn share_budget(&self, replicas: usize) {
        self.set_share(replicas);
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

/// The `/argos` slash command.
pub fn slash_command() -> CreateCommand {
    let command = slash_choices().iter().fold(
        CreateCommandOption::new(CommandOptionType::String, "command", "What to do").required(true),
        |opt, c| opt.add_string_choice(*c, *c),
    );
    CreateCommand::new(SLASH_COMMAND)
        .description("Commission, deploy, update and tear down environments")
        .add_option(command)
        .add_option(
            CreateCommandOption::new(CommandOptionType::String, "env", "The environment")
                .required(false)
                .set_autocomplete(true),
        )
        .add_option(
            CreateCommandOption::new(CommandOptionType::String, "args", "More arguments, e.g. --roles api")
                .required(false),
        )
        .add_option(
            CreateCommandOption::new(CommandOptionType::String, "ref", "The branch, tag or commit to deploy")
                .required(false)
                .set_autocomplete(true),
        )
}

/// The command text a slash command stands for: `<env> <command> <args> ref=<ref>`, or
/// `<command> <args>` for the commands that take no environment.
pub fn slash_text(command: &str, env: &str, args: &str, git_ref: &str) -> String {
    let git_ref = match git_ref.trim() {
        "" => String::new(),
        r => format!("ref={r}"),
    };
    let parts: Vec<&str> = if crate::command::global_verbs().contains(&command) {
        vec![command, args]
    } else {
        vec![env, command, args, &git_ref]
    };
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The environments offered while typing `typed` (prefix match, case-insensitive, at most 25).
pub fn env_choices(env_names: &[String], typed: &str) -> Vec<String> {
    let typed = typed.trim().to_ascii_lowercase();
    env_names
        .iter()
        .filter(|e| e.to_ascii_lowercase().starts_with(&typed))
        .take(MAX_CHOICES)
        .cloned()
        .collect()
}

/// Connects to Discord and returns once the gateway is ready (and `/argos` registered), with
/// the port to post through and the client's task (abort it to disconnect).
pub async fn start(
    settings: &DiscordSettings,
    token: String,
    prefix: String,
    env_names: Vec<String>,
    handler: CommandHandler,
) -> Result<(Arc<DiscordPort>, tokio::task::JoinHandle<()>), String> {
    start_with_limits(settings, token, prefix, env_names, handler, RateLimits::DISCORD).await
}

/// [`start`] for one replica among several: each event is answered only by the replica whose
/// `claim` wins, and a global 429 told to any of them holds them all (`holds`: the store).
#[allow(clippy::too_many_arguments)]
pub async fn start_replica(
    settings: &DiscordSettings,
    token: String,
    prefix: String,
    env_names: Vec<String>,
    handler: CommandHandler,
    claim: EventClaim,
    holds: Arc<dyn GlobalHold>,
    limits: RateLimits,
) -> Result<(Arc<DiscordPort>, tokio::task::JoinHandle<()>), String> {
    let shared = Shared {
        claim: Some(claim),
        holds: Some(holds),
    };
    connect(settings, token, prefix, env_names, handler, shared, limits).await
}

/// What the replicas sharing a token share: who answers an event, and global holds.
#[derive(Default)]
struct Shared {
    claim: Option<EventClaim>,
    holds: Option<Arc<dyn GlobalHold>>,
}

/// [`start`] with other rate limits (tests use a short window).
pub async fn start_with_limits(
    settings: &DiscordSettings,
    token: String,
    prefix: String,
    env_names: Vec<String>,
    handler: CommandHandler,
    limits: RateLimits,
) -> Result<(Arc<DiscordPort>, tokio::task::JoinHandle<()>), String> {
    connect(settings, token, prefix, env_names, handler, Shared::default(), limits).await
}

async fn connect(
    settings: &DiscordSettings,
    token: String,
    prefix: String,
    env_names: Vec<String>,
    handler: CommandHandler,
    shared: Shared,
    limits: RateLimits,
) -> Result<(Arc<DiscordPort>, tokio::task::JoinHandle<()>), String> {
    let guild_id = match &settings.guild_id {
        Some(g) => Some(GuildId::new(snowflake("guild_id", g)?)),
        None => None,
    };
    rest::authorization(&token)?;
    let port = Arc::new(DiscordPort::new(settings, &token, limits));
    if let Some(holds) = shared.holds {
        port.share_holds(holds);
    }
    // serenity's own lookups when it connects do not pass through our limiter: at least they
    // do not start while Discord holds the token.
    port.rest.limiter.global().await;
    let mut intents = GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGES | GatewayIntents::DIRECT_MESSAGES;
    if settings.message_content_intent {
        intents |= GatewayIntents::MESSAGE_CONTENT;
    }
    let (tx, rx) = oneshot::channel();
    let ready: ReadySender = Arc::new(StdMutex::new(Some(tx)));
    let event_handler = Handler {
        port: port.clone(),
        prefix,
        env_names,
        handler,
        claim: shared.claim,
        guild_id,
        bot_id: OnceLock::new(),
        ready: ready.clone(),
    };
    let secret = TokenScrubber::new([&token]);
    let builder = ClientBuilder::new_with_http(build_http(settings, &token), intents);
    drop(token);
    let mut client = builder
        .event_handler(event_handler)
        .await
        .map_err(|e| secret.scrub(format!("cannot build the Discord client: {e}")))?;
    let task = tokio::spawn(async move {
        let outcome = client.start().await;
        let message = match outcome {
            Ok(()) => "the Discord client stopped".to_string(),
            Err(e) => secret.scrub(format!("the Discord client stopped: {e}")),
        };
        tracing::warn!("{message}");
        signal(&ready, Err(message));
    });
    match tokio::time::timeout(READY_TIMEOUT, rx).await {
        Ok(Ok(Ok(()))) => Ok((port, task)),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(_)) => Err("the Discord client stopped before it was ready".into()),
        Err(_) => {
            task.abort();
            Err(format!(
                "Discord did not get ready within {} s",
                READY_TIMEOUT.as_secs()
            ))
        }
    }
}
