//! What arrives from the gateway: prefix and mention messages, slash commands, button clicks
//! and autocompletion, each claimed (when replicas share the token) before it is answered.

use std::sync::{Arc, Mutex as StdMutex, OnceLock};

use serenity::all::{
    CommandDataOptionValue, CommandInteraction, ComponentInteraction, ComponentInteractionDataKind, Context,
    CreateAutocompleteResponse, CreateInteractionResponse, CreateInteractionResponseMessage, EditInteractionResponse,
    EventHandler, GuildId, Interaction, Message, Ready, UserId,
};
use tokio::sync::oneshot;

use super::message::{fit, identity_of, no_pings};
use super::*;
use crate::bot::messages;
use crate::bot::port::Reply;

pub(super) type ReadySender = Arc<StdMutex<Option<oneshot::Sender<Result<(), String>>>>>;

pub(super) fn signal(ready: &ReadySender, outcome: Result<(), String>) {
    if let Some(tx) = ready.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = tx.send(outcome);
    }
}

pub(super) struct Handler {
    pub(super) port: Arc<DiscordPort>,
    pub(super) prefix: String,
    pub(super) env_names: Vec<String>,
    pub(super) handler: CommandHandler,
    /// Several replicas may hold a gateway session and see the same event: the claim decides
    /// which one answers. `None`: this is the only one.
    pub(super) claim: Option<EventClaim>,
    pub(super) guild_id: Option<GuildId>,
    pub(super) bot_id: OnceLock<UserId>,
    pub(super) ready: ReadySender,
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

    async fn register(&self, application: &str) -> Result<(), String> {
        self.port
            .register_commands(application, self.guild_id, &[slash_command()])
            .await
            .map_err(|e| format!("registering /{SLASH_COMMAND} failed: {e}"))
    }

    async fn on_command(&self, cmd: CommandInteraction) {
        if !self.mine(cmd.id.to_string()).await {
            return;
        }
        let text = slash_text(
            &option_text(&cmd, "command"),
            &option_text(&cmd, "env"),
            &option_text(&cmd, "args"),
            &option_text(&cmd, "ref"),
        );
        // Acknowledge first: Discord drops interactions not answered within 3 s. Interaction
        // responses do not count against the bot's global limit (Discord's rate-limit docs),
        // so they never wait behind status edits. A command whose answer is private (a
        // sign-in link) is deferred ephemerally: the answer that replaces the deferral is
        // then seen by its asker only (the flag can only be set here, not on that edit).
        let private = crate::command::answers_privately(&text);
        let defer = CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new().ephemeral(private));
        if let Err(e) = self
            .port
            .interaction_callback(&cmd.id.to_string(), &cmd.token, &defer)
            .await
        {
            tracing::warn!("deferring /{SLASH_COMMAND} failed: {e}");
            return;
        }
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
        let reply = match (self.handler)(event).await {
            None => FOLLOWING_IN_CHANNEL.to_string(),
            Some(Reply::Public(text)) => text,
            Some(Reply::Private(p)) if private => p.text,
            // Not deferred ephemerally, so the answer would be public: say so instead.
            Some(Reply::Private(p)) => {
                messages::private_reply_failed(p.what, "the answer was not expected to be private")
            }
        };
        let answer = EditInteractionResponse::new()
            .content(fit(&reply))
            .allowed_mentions(no_pings());
        if let Err(e) = self
            .port
            .edit_original(&cmd.application_id.to_string(), &cmd.token, &answer)
            .await
        {
            tracing::warn!("answering /{SLASH_COMMAND} failed: {e}");
        }
    }

    /// A click on one of our buttons: acknowledged at once (ephemeral, only the clicker sees
    /// it), then the button's command runs as the clicking user and the reply replaces the
    /// acknowledgement.
    async fn on_button(&self, click: ComponentInteraction) {
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
        if let Err(e) = self
            .port
            .interaction_callback(&click.id.to_string(), &click.token, &defer)
            .await
        {
            tracing::warn!("acknowledging a button click failed: {e}");
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
        // The deferral is ephemeral: a private answer may replace it as it is.
        let reply = (self.handler)(event)
            .await
            .map_or_else(|| ON_IT.to_string(), Reply::into_text);
        let answer = EditInteractionResponse::new()
            .content(fit(&reply))
            .allowed_mentions(no_pings());
        if let Err(e) = self
            .port
            .edit_original(&click.application_id.to_string(), &click.token, &answer)
            .await
        {
            tracing::warn!("answering a button click failed: {e}");
        }
    }
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        let _ = self.bot_id.set(ready.user.id);
        self.port.set_connected(true);
        tracing::info!(user = %ready.user.name, id = %ready.user.id, "connected to Discord");
        if let Err(e) = self.register(&ready.application.id.to_string()).await {
            tracing::warn!("{e}");
        }
        signal(&self.ready, Ok(()));
    }

    async fn shard_stage_update(&self, _ctx: Context, event: serenity::all::ShardStageUpdateEvent) {
        self.port
            .set_connected(event.new == serenity::all::ConnectionStage::Connected);
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
        match (self.handler)(event).await {
            None => {}
            Some(Reply::Public(reply)) => {
                if let Err(e) = self.port.send(&channel, OutgoingMessage::text(reply)).await {
                    tracing::warn!("{e}");
                }
            }
            Some(Reply::Private(reply)) => {
                self.port
                    .reply_privately(&msg.author.id.to_string(), &channel, reply)
                    .await
            }
        }
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        match interaction {
            Interaction::Autocomplete(ac) if ac.data.name == SLASH_COMMAND => {
                let Some(focused) = ac.data.autocomplete() else { return };
                let choices = match focused.name {
                    "env" => env_choices(&self.env_names, focused.value),
                    "ref" => {
                        let env = ac
                            .data
                            .options
                            .iter()
                            .find(|o| o.name == "env")
                            .and_then(|o| o.value.as_str())
                            .unwrap_or_default()
                            .to_string();
                        self.port.suggest_refs(&env, focused.value).await
                    }
                    _ => Vec::new(),
                };
                let response = choices
                    .iter()
                    .fold(CreateAutocompleteResponse::new(), |r, e| r.add_string_choice(e, e));
                let response = CreateInteractionResponse::Autocomplete(response);
                if let Err(e) = self
                    .port
                    .interaction_callback(&ac.id.to_string(), &ac.token, &response)
                    .await
                {
                    tracing::warn!("autocomplete failed: {e}");
                }
            }
            Interaction::Command(cmd) if cmd.data.name == SLASH_COMMAND => self.on_command(cmd).await,
            Interaction::Component(click) => self.on_button(click).await,
            _ => {}
        }
    }
}
