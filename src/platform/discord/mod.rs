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
//! Rate limits are enforced here, not left to serenity or to Discord's 429s: serenity's own
//! limiter is bypassed when a proxy is set (the tests' fake Discord), and we want the same
//! behaviour in production. Two layers, both waiting instead of failing:
//! - per channel, at most `per_channel` message creates/edits in any `window`. This is a
//!   sliding log, not a GCRA bucket: a GCRA quota that allows a burst of 5 lets a 6th request
//!   through one period later, which a "5 per 5 s" bucket refuses. The window is measured from
//!   the moment each request *completed* (it has reached Discord by then), so request latency
//!   cannot squeeze two windows together. Requests to one channel are serialized, which also
//!   keeps edits of one message in order.
//! - globally, a governor quota of `global_per_second` (small burst), for every REST call but
//!   the interaction endpoints (responses, deferrals, follow-ups), which Discord does not count
//!   against the global limit; the quota is shared by the live bot replicas.
//!
//! The bot token is never logged nor put into an error: errors pass through [`Secret::scrub`].
//! What arrives from the gateway is handled in [`handler`]; the pacing lives in [`limiter`].

use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;

use serenity::all::{
    ButtonStyle, ChannelId, ClientBuilder, Command, CommandOptionType, CreateActionRow, CreateAllowedMentions,
    CreateAttachment, CreateButton, CreateCommand, CreateCommandOption, CreateMessage, EditMessage, GatewayIntents,
    GuildId, Http, HttpBuilder, MessageId, RoleId, User,
};
use tokio::sync::oneshot;

use crate::bot::port::{
    addressed_text, tone_of, Button, ChatEvent, ChatPort, CommandHandler, EventClaim, OutgoingMessage, PortError,
    PortResult, Render, Tone,
};
use crate::config::DiscordSettings;
use crate::permissions::Identity;

mod handler;
mod limiter;

use handler::{signal, Handler, ReadySender};
use limiter::Limiter;
pub use limiter::RateLimits;

/// The slash command's name: `/argos`.
pub const SLASH_COMMAND: &str = "argos";

/// The choices of the slash command's `command` option: every command of the grammar (one
/// table, `command::COMMANDS`, so the slash command never drifts from what the parser knows).
pub fn slash_choices() -> Vec<&'static str> {
    crate::command::COMMANDS.iter().map(|c| c.name).collect()
}

/// What the deferred slash-command response becomes when the bot answers in the channel.
pub const FOLLOWING_IN_CHANNEL: &str = "On it: following this job in the channel.";

/// What a button click is answered with when the bot answers in the channel instead.
pub const ON_IT: &str = "On it.";

/// The start of our buttons' `custom_id`s; the rest is the command the button runs.
pub const BUTTON_PREFIX: &str = "argos:cmd:";

/// Discord's limits on a `custom_id`, a button label, and buttons in one action row.
pub const MAX_CUSTOM_ID_CHARS: usize = 100;
const MAX_LABEL_CHARS: usize = 80;
pub const MAX_BUTTONS: usize = 5;

/// Discord refuses message content longer than this.
pub const MAX_CONTENT_CHARS: usize = 2000;

/// Autocomplete offers at most this many choices.
const MAX_CHOICES: usize = 25;

/// How long [`start`] waits for the gateway's READY.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A REST call that takes longer than this is abandoned (and frees its channel).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The token, kept only to scrub it out of error text.
struct Secret(String);

impl Secret {
    fn scrub(&self, text: String) -> String {
        let bare = self.0.trim().trim_start_matches("Bot ").trim();
        if bare.len() >= 8 && text.contains(bare) {
            text.replace(bare, "[token]")
        } else {
            text
        }
    }
}

/// Posts and edits channel messages for the bot.
pub struct DiscordPort {
    http: Http,
    limiter: Limiter,
    secret: Secret,
    /// The gateway session is up (READY seen, and the shard's stage is Connected).
    connected: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for DiscordPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordPort")
            .field("limits", &self.limiter.limits)
            .finish_non_exhaustive()
    }
}

fn build_http(settings: &DiscordSettings, token: &str) -> Http {
    let builder = HttpBuilder::new(token);
    match &settings.api_proxy {
        // serenity's rate-limited path ignores the proxy; our own limiter replaces it.
        Some(url) => builder
            .proxy(url.trim_end_matches('/'))
            .ratelimiter_disabled(true)
            .build(),
        None => builder.build(),
    }
}

fn snowflake(what: &str, text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n != 0)
        .ok_or_else(|| format!("{what} '{text}' is not a Discord id"))
}

/// Cuts text to what Discord accepts, on a character boundary.
/// Every message the bot sends pings nobody: replies quote what users typed, and an
/// `@everyone` or a role mention in a command must not reach the whole server.
fn no_pings() -> CreateAllowedMentions {
    CreateAllowedMentions::new()
}

fn fit(text: &str) -> String {
    if text.chars().count() <= MAX_CONTENT_CHARS {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MAX_CONTENT_CHARS - 1).collect();
    out.push('…');
    out
}

/// The `custom_id` of a button that runs `command`, or `None` if it would be too long for Discord.
pub fn button_custom_id(command: &str) -> Option<String> {
    let id = format!("{BUTTON_PREFIX}{}", command.trim());
    (id.chars().count() <= MAX_CUSTOM_ID_CHARS).then_some(id)
}

/// The command a button's `custom_id` runs; `None` for `custom_id`s that are not ours.
pub fn button_command(custom_id: &str) -> Option<&str> {
    custom_id
        .strip_prefix(BUTTON_PREFIX)
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

/// Green for approving, red for denying or cancelling, grey for anything else.
pub fn button_style(label: &str) -> ButtonStyle {
    match tone_of(label) {
        Tone::Positive => ButtonStyle::Success,
        Tone::Negative => ButtonStyle::Danger,
        Tone::Neutral => ButtonStyle::Secondary,
    }
}

/// One action row with the message's buttons (at most [`MAX_BUTTONS`]); no rows without buttons.
/// A button whose command does not fit in a `custom_id` is left out (and logged).
fn action_rows(buttons: &[Button]) -> Vec<CreateActionRow> {
    let row: Vec<CreateButton> = buttons
        .iter()
        .filter_map(|b| {
            let Some(id) = button_custom_id(&b.command) else {
                tracing::warn!(label = %b.label, "button left out: its command is too long for Discord");
                return None;
            };
            let label: String = b.label.chars().take(MAX_LABEL_CHARS).collect();
            Some(CreateButton::new(id).label(label).style(button_style(&b.label)))
        })
        .take(MAX_BUTTONS)
        .collect();
    if row.is_empty() {
        vec![]
    } else {
        vec![CreateActionRow::Buttons(row)]
    }
}

/// Who someone is, from their user and (in a guild) their nickname and role ids.
fn identity_of(user: &User, nick: Option<&String>, roles: &[RoleId]) -> Identity {
    Identity {
        platform: "discord".into(),
        user_id: user.id.to_string(),
        display_name: nick
            .cloned()
            .or_else(|| user.global_name.clone())
            .unwrap_or_else(|| user.name.clone()),
        platform_roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

async fn read_attachment(msg: &OutgoingMessage) -> PortResult<Option<CreateAttachment>> {
    let Some(a) = &msg.attachment else { return Ok(None) };
    let data = tokio::fs::read(&a.path)
        .await
        .map_err(|e| PortError(format!("cannot read attachment {}: {e}", a.path.display())))?;
    Ok(Some(CreateAttachment::bytes(data, a.filename.clone())))
}

impl DiscordPort {
    /// A port with its own HTTP client (through `settings.api_proxy` when set) that keeps to
    /// `limits`. [`start`] uses [`RateLimits::DISCORD`].
    pub fn new(settings: &DiscordSettings, token: &str, limits: RateLimits) -> DiscordPort {
        DiscordPort {
            http: build_http(settings, token),
            limiter: Limiter::new(limits),
            secret: Secret(token.to_string()),
            connected: Default::default(),
        }
    }

    /// The limits this port keeps to.
    /// Discord's limits belong to the bot token: `replicas` live bots share them.
    pub fn set_share(&self, replicas: usize) {
        self.limiter.global.set_share(replicas);
    }

    pub fn limits(&self) -> RateLimits {
        self.limiter.limits
    }

    fn error(&self, what: &str, err: serenity::Error) -> PortError {
        PortError(self.secret.scrub(format!("Discord {what} failed: {err}")))
    }

    async fn timed<T>(&self, what: &str, fut: impl std::future::Future<Output = serenity::Result<T>>) -> PortResult<T> {
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, fut).await;
        crate::metrics::get().chat_request("discord", what, request_status(&outcome));
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(what, e)),
            Err(_) => Err(PortError(format!("Discord {what} timed out"))),
        }
    }

    pub(super) fn set_connected(&self, up: bool) {
        self.connected.store(up, std::sync::atomic::Ordering::Relaxed);
    }

    async fn post(&self, channel: &str, msg: OutgoingMessage) -> PortResult<String> {
        let channel_id = ChannelId::new(snowflake("channel", channel).map_err(PortError)?);
        let file = read_attachment(&msg).await?;
        let mut builder = CreateMessage::new()
            .content(fit(&msg.text))
            .allowed_mentions(no_pings());
        let rows = action_rows(&msg.buttons);
        if !rows.is_empty() {
            builder = builder.components(rows);
        }
        if let Some(file) = file {
            builder = builder.add_file(file);
        }
        let _permit = self.limiter.channel(channel).await;
        let sent = self.timed("send", channel_id.send_message(&self.http, builder)).await?;
        Ok(sent.id.to_string())
    }

    async fn change(&self, channel: &str, message_id: &str, render: Render) -> PortResult<()> {
        let channel_id = ChannelId::new(snowflake("channel", channel).map_err(PortError)?);
        let message_id = MessageId::new(snowflake("message", message_id).map_err(PortError)?);
        let _permit = self.limiter.channel(channel).await;
        // Rendered after the wait for the channel (which may have been long, or this process
        // was paused in it): the message shows the job as it is now. `None`: the job's lease
        // ran out meanwhile.
        let Some(msg) = render() else {
            return Ok(());
        };
        let file = read_attachment(&msg).await?;
        // Always sent: an edit without buttons removes the ones the message had.
        let mut builder = EditMessage::new()
            .content(fit(&msg.text))
            .components(action_rows(&msg.buttons))
            .allowed_mentions(no_pings());
        if let Some(file) = file {
            builder = builder.new_attachment(file);
        }
        self.timed("edit", channel_id.edit_message(&self.http, message_id, builder))
            .await?;
        Ok(())
    }
}

/// How a REST call ended, for the metrics.
fn request_status<T>(outcome: &Result<serenity::Result<T>, tokio::time::error::Elapsed>) -> &'static str {
    match outcome {
        Ok(Ok(_)) => "ok",
        Ok(Err(serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r))))
            if r.status_code.as_u16() == 429 =>
        {
            "429"
        }
        Ok(Err(_)) => "error",
        Err(_) => "timeout",
    }
}

impl ChatPort for DiscordPort {
    fn platform(&self) -> &'static str {
        crate::platform::Platform::Discord.name()
    }

    fn pacing(&self, chat: &crate::config::ChatSettings) -> crate::bot::pace::Pacing {
        crate::platform::pacing::of(crate::platform::Platform::Discord, chat)
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
}

/// The command text a slash command stands for: `<env> <command> <args>`, or
/// `<command> <args>` for the commands that take no environment.
pub fn slash_text(command: &str, env: &str, args: &str) -> String {
    let parts: Vec<&str> = if crate::command::global_verbs().contains(&command) {
        vec![command, args]
    } else {
        vec![env, command, args]
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
/// `claim` wins.
pub async fn start_replica(
    settings: &DiscordSettings,
    token: String,
    prefix: String,
    env_names: Vec<String>,
    handler: CommandHandler,
    claim: EventClaim,
    limits: RateLimits,
) -> Result<(Arc<DiscordPort>, tokio::task::JoinHandle<()>), String> {
    connect(settings, token, prefix, env_names, handler, Some(claim), limits).await
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
    connect(settings, token, prefix, env_names, handler, None, limits).await
}

async fn connect(
    settings: &DiscordSettings,
    token: String,
    prefix: String,
    env_names: Vec<String>,
    handler: CommandHandler,
    claim: Option<EventClaim>,
    limits: RateLimits,
) -> Result<(Arc<DiscordPort>, tokio::task::JoinHandle<()>), String> {
    let guild_id = match &settings.guild_id {
        Some(g) => Some(GuildId::new(snowflake("guild_id", g)?)),
        None => None,
    };
    let port = Arc::new(DiscordPort::new(settings, &token, limits));
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
        claim,
        guild_id,
        bot_id: OnceLock::new(),
        ready: ready.clone(),
    };
    let secret = Secret(token.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_ids_carry_the_command() {
        assert_eq!(button_custom_id("approve 12").as_deref(), Some("argos:cmd:approve 12"));
        assert_eq!(button_command("argos:cmd:approve 12"), Some("approve 12"));
        assert_eq!(button_command("someone-else:approve 12"), None);
        assert_eq!(button_command("argos:cmd: "), None);
        let long = "x".repeat(MAX_CUSTOM_ID_CHARS);
        assert_eq!(button_custom_id(&long), None, "too long for Discord");
        let fits = "x".repeat(MAX_CUSTOM_ID_CHARS - BUTTON_PREFIX.len());
        assert_eq!(button_custom_id(&fits).map(|i| i.len()), Some(MAX_CUSTOM_ID_CHARS));
    }

    #[test]
    fn button_styles_follow_the_label() {
        assert_eq!(button_style("Approve"), ButtonStyle::Success);
        assert_eq!(button_style("✅ Approve"), ButtonStyle::Success);
        assert_eq!(button_style("Deny"), ButtonStyle::Danger);
        assert_eq!(button_style("Cancel job"), ButtonStyle::Danger);
        assert_eq!(button_style("Show log"), ButtonStyle::Secondary);
    }

    #[test]
    fn at_most_five_buttons_in_one_row_and_none_without_buttons() {
        let b = |i: usize| Button {
            label: format!("B{i}"),
            command: format!("job {i}"),
        };
        assert!(action_rows(&[]).is_empty());
        let rows = action_rows(&(0..7).map(b).collect::<Vec<_>>());
        let v = serde_json::to_value(&rows).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(v[0]["components"].as_array().unwrap().len(), MAX_BUTTONS);
        assert_eq!(v[0]["components"][0]["custom_id"], "argos:cmd:job 0");
    }
}
