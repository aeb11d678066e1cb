//! What arrives over Socket Mode: prefix and mention messages, `/argos`, and clicks on our
//! buttons. Each callback spawns the work and returns at once, because slack-morphism
//! acknowledges the envelope only when the callback returns, Slack wants that within 3 s, and
//! a connection reads its next envelope only then. The work claims the event in the store
//! before anything else: a claim awaited in the callback would hold every envelope behind it
//! on that connection (a store write each, a round trip on PostgreSQL; 100 slash commands at
//! once waited 0.5 s for their acknowledgement in a debug build). A redelivered envelope
//! carries the same message ts or trigger id, so its claim fails and it is not handled again.

use std::sync::Arc;

use slack_morphism::prelude::*;
use tokio::sync::watch;

use super::blocks::button_command;
use super::directory::Directory;
use super::text::decode;
use super::{Client, SlackPort, FOLLOWING_IN_CHANNEL, ON_IT};
use crate::bot::port::{addressed_text, ChatEvent, ChatPort, CommandHandler, EventClaim, OutgoingMessage, Reply};
use crate::permissions::Identity;
use crate::redact::TokenScrubber;

/// Socket Mode `hello`s so far: the connection is up once there is one.
pub struct Hellos {
    count: watch::Sender<u64>,
}

impl Default for Hellos {
    fn default() -> Self {
        Hellos {
            count: watch::channel(0).0,
        }
    }
}

impl Hellos {
    pub fn count(&self) -> u64 {
        *self.count.borrow()
    }

    /// Returns once the first `hello` has arrived.
    pub(super) async fn first(&self) {
        let mut rx = self.count.subscribe();
        let _ = rx.wait_for(|n| *n > 0).await;
    }
}

/// What the callbacks share (slack-morphism hands it to each one through its user state).
pub(super) struct Context {
    pub(super) port: Arc<SlackPort>,
    pub(super) prefix: String,
    pub(super) handler: CommandHandler,
    pub(super) claim: EventClaim,
    pub(super) bot_user: String,
    pub(super) directory: Directory,
    pub(super) hellos: Arc<Hellos>,
    /// One permit: whose turn it is to claim an event in the store.
    pub(super) claims: tokio::sync::Semaphore,
}

async fn context(states: &SlackClientEventsUserState) -> Option<Arc<Context>> {
    states.read().await.get_user_state::<Arc<Context>>().cloned()
}

impl Context {
    async fn identity(&self, user: &str, name: Option<String>) -> Identity {
        Identity {
            platform: crate::address::Surface::SLACK,
            user_id: user.to_string(),
            display_name: name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| user.to_string()),
            platform_roles: self.directory.groups_of(user).await,
        }
    }

    /// True when this replica is the one to handle the event with this id. Claims go one at a
    /// time, in turn: the store takes them one at a time anyway, and a burst of them waiting
    /// for its lock on the blocking pool would starve the threads that read the sockets and
    /// send the acknowledgements.
    async fn mine(&self, event_id: String) -> bool {
        let _turn = self.claims.acquire().await.ok();
        (self.claim)("slack", event_id).await
    }
}

/// A `hello` on a new connection. Generic because slack-morphism does not export the hello
/// event's type by any path.
pub(super) async fn on_hello<E>(_event: E, _client: Arc<Client>, states: SlackClientEventsUserState) {
    if let Some(ctx) = context(&states).await {
        ctx.hellos.count.send_modify(|n| *n += 1);
        tracing::info!("Slack Socket Mode connected");
    }
}

/// The command in a message, if it is addressed to the bot: `(user, channel, ts, text)`.
fn addressed(ctx: &Context, event: SlackEventCallbackBody) -> Option<(String, String, String, String)> {
    let (user, channel, ts, text) = match event {
        SlackEventCallbackBody::Message(m) => {
            // Edits, joins, bot posts and the like are not commands.
            if m.subtype.is_some() || m.sender.bot_id.is_some() {
                return None;
            }
            let user = m.sender.user?.to_string();
            (
                user,
                m.origin.channel?.to_string(),
                m.origin.ts.to_string(),
                m.content?.text?,
            )
        }
        SlackEventCallbackBody::AppMention(m) => (
            m.user.to_string(),
            m.channel.to_string(),
            m.origin.ts.to_string(),
            m.content.text?,
        ),
        _ => return None,
    };
    if user == ctx.bot_user {
        return None;
    }
    let command = addressed_text(&text, &ctx.prefix, Some(&ctx.bot_user))?;
    Some((user, channel, ts, decode(command)))
}

pub(super) async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let Some(ctx) = context(&states).await else {
        return Ok(());
    };
    let Some((user, channel, ts, text)) = addressed(&ctx, event.event) else {
        return Ok(());
    };
    tokio::spawn(async move {
        // Slack sends a mention twice (`message` and `app_mention`, different event ids) and
        // may redeliver either: the message's channel and ts name it once.
        if !ctx.mine(format!("msg:{channel}:{ts}")).await {
            return;
        }
        let identity = ctx.identity(&user, None).await;
        let event = ChatEvent {
            identity,
            channel: channel.clone(),
            text,
        };
        match (ctx.handler)(event).await {
            None => {}
            Some(Reply::Public(reply)) => {
                if let Err(e) = ctx.port.send(&channel, OutgoingMessage::text(reply)).await {
                    tracing::warn!("{e}");
                }
            }
            Some(Reply::Private(reply)) => ctx.port.reply_privately(&user, &channel, reply).await,
        }
    });
    Ok(())
}

pub(super) async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    // An empty acknowledgement: Slack shows nothing until the answer comes.
    let ack = SlackCommandEventResponse::new(SlackMessageContent::new());
    let Some(ctx) = context(&states).await else {
        return Ok(ack);
    };
    tokio::spawn(async move {
        if !ctx.mine(format!("cmd:{}", event.trigger_id)).await {
            return;
        }
        let identity = ctx.identity(event.user_id.as_ref(), None).await;
        let event_text = decode(event.text.as_deref().unwrap_or("").trim());
        let chat = ChatEvent {
            identity,
            channel: event.channel_id.to_string(),
            text: event_text,
        };
        // A `response_url` answer is ephemeral (Slack's default): private answers included.
        let reply = (ctx.handler)(chat)
            .await
            .map_or_else(|| FOLLOWING_IN_CHANNEL.to_string(), Reply::into_text);
        ctx.port.respond(&event.response_url, &reply).await;
    });
    Ok(ack)
}

pub(super) async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let SlackInteractionEvent::BlockActions(click) = event else {
        return Ok(());
    };
    let Some(ctx) = context(&states).await else {
        return Ok(());
    };
    let Some(command) = click
        .actions
        .iter()
        .flatten()
        .find_map(|a| button_command(a.action_id.as_ref(), a.value.as_deref()))
    else {
        return Ok(());
    };
    let Some(user) = click.user.clone() else { return Ok(()) };
    let channel = click
        .channel
        .as_ref()
        .map(|c| c.id.to_string())
        .or(match &click.container {
            SlackInteractionActionContainer::Message(m) => m.channel_id.as_ref().map(|c| c.to_string()),
            _ => None,
        });
    let Some(channel) = channel else { return Ok(()) };
    tokio::spawn(async move {
        if !ctx.mine(format!("act:{}", click.trigger_id)).await {
            return;
        }
        let name = user.username.clone().or(user.name.clone());
        let identity = ctx.identity(user.id.as_ref(), name).await;
        let chat = ChatEvent {
            identity,
            channel: channel.clone(),
            text: command,
        };
        let reply = (ctx.handler)(chat)
            .await
            .unwrap_or_else(|| Reply::Public(ON_IT.to_string()));
        match (&click.response_url, reply) {
            // Ephemeral (Slack's default for a `response_url`): private answers included.
            (Some(url), reply) => ctx.port.respond(url, &reply.into_text()).await,
            (None, Reply::Public(reply)) => {
                if let Err(e) = ctx.port.send(&channel, OutgoingMessage::text(reply)).await {
                    tracing::warn!("{e}");
                }
            }
            (None, Reply::Private(reply)) => ctx.port.reply_privately(user.id.as_ref(), &channel, reply).await,
        }
    });
    Ok(())
}

/// Errors of the listener (a socket that failed, an envelope that did not parse). Answering
/// OK acknowledges the envelope: a payload that failed once fails again.
pub(super) fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<Client>,
    _states: SlackClientEventsUserState,
) -> HttpStatusCode {
    let text = err.to_string();
    let text = match super::SECRETS.get() {
        Some(s) => s.scrub(text),
        None => TokenScrubber::default().scrub(text),
    };
    tracing::warn!(error = %text, "Slack listener error");
    HttpStatusCode::OK
}
