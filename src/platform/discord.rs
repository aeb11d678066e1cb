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

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;

use serenity::all::{
    ButtonStyle, ChannelId, ClientBuilder, Command, CommandDataOptionValue, CommandInteraction, CommandOptionType,
    ComponentInteraction, ComponentInteractionDataKind, Context, CreateActionRow, CreateAllowedMentions,
    CreateAttachment, CreateAutocompleteResponse, CreateButton, CreateCommand, CreateCommandOption,
    CreateInteractionResponse, CreateInteractionResponseMessage, CreateMessage, EditInteractionResponse, EditMessage,
    EventHandler, GatewayIntents, GuildId, Http, HttpBuilder, Interaction, Message, MessageId, Ready, RoleId, User,
    UserId,
};
use tokio::sync::{oneshot, Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::time::Instant;

use crate::bot::port::{
    addressed_text, Button, ChatEvent, ChatPort, CommandHandler, EventClaim, OutgoingMessage, PortError, PortResult,
};
use crate::budget::SharedBudget;
use crate::config::DiscordSettings;
use crate::permissions::Identity;

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

/// The limits the adapter keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Message creates and edits per channel in any `window`.
    pub per_channel: u32,
    pub window: Duration,
    /// Every REST call together, per second.
    pub global_per_second: u32,
}

impl RateLimits {
    /// Discord's limits (5 message creates/edits per 5 s per channel, 50 requests/s globally),
    /// with the global one kept at 40 for headroom.
    pub const DISCORD: RateLimits = RateLimits {
        per_channel: 5,
        window: Duration::from_secs(5),
        global_per_second: 40,
    };
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::DISCORD
    }
}

struct Limiter {
    limits: RateLimits,
    /// The global limit belongs to the bot token: replicas share it.
    global: SharedBudget,
    channels: StdMutex<HashMap<String, Arc<AsyncMutex<VecDeque<Instant>>>>>,
}

/// Held while one message create/edit is in flight; records its completion when dropped.
struct ChannelPermit {
    log: OwnedMutexGuard<VecDeque<Instant>>,
    keep: usize,
}

impl Drop for ChannelPermit {
    fn drop(&mut self) {
        self.log.push_back(Instant::now());
        while self.log.len() > self.keep {
            self.log.pop_front();
        }
    }
}

impl Limiter {
    fn new(limits: RateLimits) -> Limiter {
        Limiter {
            limits,
            global: SharedBudget::new(limits.global_per_second, (limits.global_per_second / 8).max(1)),
            channels: StdMutex::new(HashMap::new()),
        }
    }

    /// Waits for the global budget.
    async fn global(&self) {
        self.global.until_ready().await;
    }

    /// Waits until one more create/edit fits in the channel's window, then the global budget.
    async fn channel(&self, channel: &str) -> ChannelPermit {
        let slot = {
            let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(channel.to_string()).or_default().clone()
        };
        let log = slot.lock_owned().await;
        // A channel's bucket belongs to the token too: each replica keeps to its share.
        let keep = (self.limits.per_channel / self.global.share()).max(1) as usize;
        if log.len() >= keep {
            // A little headroom for clock granularity on Discord's side.
            let window = self.limits.window + self.limits.window / 50;
            tokio::time::sleep_until(log[log.len() - keep] + window).await;
        }
        self.global().await;
        ChannelPermit { log, keep }
    }
}

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
    let word = label
        .trim()
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_lowercase();
    match word.as_str() {
        "approve" | "confirm" | "yes" | "ok" | "retry" | "resume" => ButtonStyle::Success,
        "deny" | "reject" | "cancel" | "abort" | "no" | "stop" => ButtonStyle::Danger,
        _ => ButtonStyle::Secondary,
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
        match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(what, e)),
            Err(_) => Err(PortError(format!("Discord {what} timed out"))),
        }
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

    async fn change(
        &self,
        channel: &str,
        message_id: &str,
        msg: OutgoingMessage,
        still: Option<&(dyn Fn() -> bool + Send + Sync)>,
    ) -> PortResult<()> {
        let channel_id = ChannelId::new(snowflake("channel", channel).map_err(PortError)?);
        let message_id = MessageId::new(snowflake("message", message_id).map_err(PortError)?);
        let file = read_attachment(&msg).await?;
        // Always sent: an edit without buttons removes the ones the message had.
        let mut builder = EditMessage::new()
            .content(fit(&msg.text))
            .components(action_rows(&msg.buttons))
            .allowed_mentions(no_pings());
        if let Some(file) = file {
            builder = builder.new_attachment(file);
        }
        let _permit = self.limiter.channel(channel).await;
        // The wait for the channel may have been long (or this process was paused in it).
        if still.is_some_and(|still| !still()) {
            return Ok(());
        }
        self.timed("edit", channel_id.edit_message(&self.http, message_id, builder))
            .await?;
        Ok(())
    }
}

impl ChatPort for DiscordPort {
    fn platform(&self) -> &'static str {
        "discord"
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
        Box::pin(self.change(channel, message_id, msg, None))
    }

    fn edit_if<'a>(
        &'a self,
        channel: &'a str,
        message_id: &'a str,
        msg: OutgoingMessage,
        still: &'a (dyn Fn() -> bool + Send + Sync),
    ) -> BoxFuture<'a, PortResult<()>> {
        Box::pin(self.change(channel, message_id, msg, Some(still)))
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

type ReadySender = Arc<StdMutex<Option<oneshot::Sender<Result<(), String>>>>>;

fn signal(ready: &ReadySender, outcome: Result<(), String>) {
    if let Some(tx) = ready.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = tx.send(outcome);
    }
}

struct Handler {
    port: Arc<DiscordPort>,
    prefix: String,
    env_names: Vec<String>,
    handler: CommandHandler,
    /// Several replicas may hold a gateway session and see the same event: the claim decides
    /// which one answers. `None`: this is the only one.
    claim: Option<EventClaim>,
    guild_id: Option<GuildId>,
    bot_id: OnceLock<UserId>,
    ready: ReadySender,
}

fn option_text(cmd: &CommandInteraction, name: &str) -> String {
    cmd.data
        .options
        .iter()
        .find(|o| o.name == name)
        .and_then(|o| match &o.value {
            CommandDataOptionValue::String(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

impl Handler {
    /// True when this replica is the one to handle the event with this id.
    async fn mine(&self, event_id: String) -> bool {
        match &self.claim {
            Some(claim) => claim("discord", event_id).await,
            None => true,
        }
    }

    async fn register(&self, ctx: &Context) -> Result<(), String> {
        self.port.limiter.global().await;
        let result = match self.guild_id {
            Some(guild) => guild.set_commands(&ctx.http, vec![slash_command()]).await.map(|_| ()),
            None => Command::set_global_commands(&ctx.http, vec![slash_command()])
                .await
                .map(|_| ()),
        };
        result.map_err(|e| {
            self.port
                .secret
                .scrub(format!("registering /{SLASH_COMMAND} failed: {e}"))
        })
    }

    async fn on_command(&self, ctx: &Context, cmd: CommandInteraction) {
        if !self.mine(cmd.id.to_string()).await {
            return;
        }
        // Acknowledge first: Discord drops interactions not answered within 3 s. Interaction
        // responses do not count against the bot's global limit (Discord's rate-limit docs),
        // so they never wait behind status edits.
        let defer = CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new());
        if let Err(e) = cmd.create_response(&ctx.http, defer).await {
            tracing::warn!(
                "{}",
                self.port
                    .secret
                    .scrub(format!("deferring /{SLASH_COMMAND} failed: {e}"))
            );
            return;
        }
        let text = slash_text(
            &option_text(&cmd, "command"),
            &option_text(&cmd, "env"),
            &option_text(&cmd, "args"),
        );
        let identity = identity_of(
            &cmd.user,
            cmd.member.as_ref().and_then(|m| m.nick.as_ref()),
            cmd.member.as_ref().map(|m| m.roles.as_slice()).unwrap_or_default(),
        );
        let event = ChatEvent {
            identity,
            channel: cmd.channel_id.to_string(),
            text,
        };
        let reply = (self.handler)(event)
            .await
            .unwrap_or_else(|| FOLLOWING_IN_CHANNEL.to_string());
        if let Err(e) = cmd
            .edit_response(
                &ctx.http,
                EditInteractionResponse::new()
                    .content(fit(&reply))
                    .allowed_mentions(no_pings()),
            )
            .await
        {
            tracing::warn!(
                "{}",
                self.port
                    .secret
                    .scrub(format!("answering /{SLASH_COMMAND} failed: {e}"))
            );
        }
    }

    /// A click on one of our buttons: acknowledged at once (ephemeral, only the clicker sees
    /// it), then the button's command runs as the clicking user and the reply replaces the
    /// acknowledgement.
    async fn on_button(&self, ctx: &Context, click: ComponentInteraction) {
        if !matches!(click.data.kind, ComponentInteractionDataKind::Button) {
            return;
        }
        let Some(command) = button_command(&click.data.custom_id).map(str::to_string) else {
            return;
        };
        if !self.mine(click.id.to_string()).await {
            return;
        }
        let defer = CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new().ephemeral(true));
        if let Err(e) = click.create_response(&ctx.http, defer).await {
            tracing::warn!(
                "{}",
                self.port
                    .secret
                    .scrub(format!("acknowledging a button click failed: {e}"))
            );
            return;
        }
        let identity = identity_of(
            &click.user,
            click.member.as_ref().and_then(|m| m.nick.as_ref()),
            click.member.as_ref().map(|m| m.roles.as_slice()).unwrap_or_default(),
        );
        let event = ChatEvent {
            identity,
            channel: click.channel_id.to_string(),
            text: command,
        };
        let reply = (self.handler)(event).await.unwrap_or_else(|| ON_IT.to_string());
        if let Err(e) = click
            .edit_response(
                &ctx.http,
                EditInteractionResponse::new()
                    .content(fit(&reply))
                    .allowed_mentions(no_pings()),
            )
            .await
        {
            tracing::warn!(
                "{}",
                self.port.secret.scrub(format!("answering a button click failed: {e}"))
            );
        }
    }
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        let _ = self.bot_id.set(ready.user.id);
        tracing::info!(user = %ready.user.name, id = %ready.user.id, "connected to Discord");
        if let Err(e) = self.register(&ctx).await {
            tracing::warn!("{e}");
        }
        signal(&self.ready, Ok(()));
    }

    async fn message(&self, _ctx: Context, msg: Message) {
        let bot_id = self.bot_id.get().copied();
        if msg.author.bot || Some(msg.author.id) == bot_id {
            return;
        }
        let bot_id = bot_id.map(|id| id.to_string());
        let Some(text) = addressed_text(&msg.content, &self.prefix, bot_id.as_deref()) else {
            return;
        };
        if !self.mine(msg.id.to_string()).await {
            return;
        }
        let identity = identity_of(
            &msg.author,
            msg.member.as_ref().and_then(|m| m.nick.as_ref()),
            msg.member.as_ref().map(|m| m.roles.as_slice()).unwrap_or_default(),
        );
        let channel = msg.channel_id.to_string();
        let event = ChatEvent {
            identity,
            channel: channel.clone(),
            text: text.to_string(),
        };
        if let Some(reply) = (self.handler)(event).await {
            if let Err(e) = self.port.send(&channel, OutgoingMessage::text(reply)).await {
                tracing::warn!("{e}");
            }
        }
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        match interaction {
            Interaction::Autocomplete(ac) if ac.data.name == SLASH_COMMAND => {
                let Some(focused) = ac.data.autocomplete() else { return };
                let choices = if focused.name == "env" {
                    env_choices(&self.env_names, focused.value)
                } else {
                    Vec::new()
                };
                let response = choices
                    .iter()
                    .fold(CreateAutocompleteResponse::new(), |r, e| r.add_string_choice(e, e));
                if let Err(e) = ac
                    .create_response(&ctx.http, CreateInteractionResponse::Autocomplete(response))
                    .await
                {
                    tracing::warn!("{}", self.port.secret.scrub(format!("autocomplete failed: {e}")));
                }
            }
            Interaction::Command(cmd) if cmd.data.name == SLASH_COMMAND => self.on_command(&ctx, cmd).await,
            Interaction::Component(click) => self.on_button(&ctx, click).await,
            _ => {}
        }
    }
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
