//! The boundary between the bot and a chat platform. An adapter (console, Discord) implements
//! [`ChatPort`] to send and edit messages, and turns what arrives into [`ChatEvent`]s. Adapters
//! decide nothing; the bot never sees a platform type.

use std::path::PathBuf;

use futures_util::future::BoxFuture;

use crate::address::ChatPlatform;
use crate::bot::pace::Pacing;
use crate::config::ChatSettings;
use crate::permissions::Identity;

/// A command addressed to the bot, with the prefix or mention already removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatEvent {
    pub identity: Identity,
    /// Where to answer and post status messages.
    pub channel: String,
    pub text: String,
}

/// A file that goes along with a message (the full job log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub path: PathBuf,
}

/// A button under a message. Clicking it runs `command` as the clicking user (through the
/// same permission and approval checks as typing it); the command is all the button carries,
/// so buttons keep working after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    pub label: String,
    pub command: String,
}

/// How a button looks, from the first word of its label: approving or going on is positive,
/// denying or stopping negative, anything else neutral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Positive,
    Negative,
    Neutral,
}

pub fn tone_of(label: &str) -> Tone {
    let word = label
        .trim()
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_lowercase();
    match word.as_str() {
        "approve" | "confirm" | "yes" | "ok" | "retry" | "resume" => Tone::Positive,
        "deny" | "reject" | "cancel" | "abort" | "no" | "stop" => Tone::Negative,
        _ => Tone::Neutral,
    }
}

/// A message the bot posts or edits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutgoingMessage {
    pub text: String,
    pub attachment: Option<Attachment>,
    /// Buttons (at most 5); platforms without buttons show the commands instead.
    pub buttons: Vec<Button>,
}

impl OutgoingMessage {
    pub fn text(text: impl Into<String>) -> Self {
        OutgoingMessage {
            text: text.into(),
            attachment: None,
            buttons: Vec::new(),
        }
    }
}

/// A message rendered when it is sent ([`ChatPort::edit_rendered`]); `None`: send nothing.
pub type Render = std::sync::Arc<dyn Fn() -> Option<OutgoingMessage> + Send + Sync>;

/// A failure to deliver; the bot logs it (redacted) and carries on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PortError(pub String);

pub type PortResult<T> = Result<T, PortError>;

/// What a platform adapter offers the bot.
pub trait ChatPort: Send + Sync {
    fn platform(&self) -> ChatPlatform;
    /// Posts a message; returns its id, which edits refer to (and which survives restarts).
    fn send<'a>(&'a self, channel: &'a str, msg: OutgoingMessage) -> BoxFuture<'a, PortResult<String>>;
    /// Replaces the content of a message the bot posted earlier.
    fn edit<'a>(&'a self, channel: &'a str, message_id: &'a str, msg: OutgoingMessage)
        -> BoxFuture<'a, PortResult<()>>;
    /// Replaces the content of a message with what `render()` returns at the moment the
    /// request goes out: after a wait for the platform's rate limit or a 429, or folded into a
    /// later edit of the same message, the message shows the job as it is then (its elapsed
    /// time included), not as it was when the edit was asked for. `None` sends nothing (a job
    /// whose lease ran out while it waited stays silent). A platform without waits renders
    /// at once.
    fn edit_rendered<'a>(
        &'a self,
        channel: &'a str,
        message_id: &'a str,
        render: Render,
    ) -> BoxFuture<'a, PortResult<()>> {
        Box::pin(async move {
            match render() {
                Some(msg) => self.edit(channel, message_id, msg).await,
                None => Ok(()),
            }
        })
    }
    /// How this platform's status messages are paced. A chat API's edit budget unless the
    /// adapter says otherwise (the console has none).
    fn pacing(&self, chat: &ChatSettings) -> Pacing {
        Pacing::chat_api(chat)
    }
    /// Whether this adapter can post in `channel`. A chat connection reaches every channel;
    /// a console reaches only its own terminal.
    fn serves(&self, channel: &str) -> bool {
        let _ = channel;
        true
    }
    /// The platform's limits belong to the token, shared by this many live replicas.
    fn share_budget(&self, replicas: usize) {
        let _ = replicas;
    }
    /// Whether the adapter's connection to the platform is up (readiness).
    fn connected(&self) -> bool {
        true
    }
    /// The one channel this adapter serves, when it serves only one (a console).
    fn own_channel(&self) -> Option<crate::address::ChannelAddress> {
        None
    }
}

/// Strips the prefix (`!argos ...`) or a leading mention of the bot (`<@123> ...`,
/// `<@!123> ...`) from a chat line. Returns the command text when the line is addressed to the
/// bot, `None` otherwise.
pub fn addressed_text<'a>(line: &'a str, prefix: &str, bot_user_id: Option<&str>) -> Option<&'a str> {
    let line = line.trim_start();
    if let Some(rest) = line.strip_prefix(prefix) {
        if rest.is_empty() || rest.starts_with(char::is_whitespace) {
            return Some(rest.trim());
        }
        return None;
    }
    let id = bot_user_id?;
    for form in [format!("<@{id}>"), format!("<@!{id}>")] {
        if let Some(rest) = line.strip_prefix(&form) {
            return Some(rest.trim());
        }
    }
    None
}

/// How the bot answers a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Posted where the command came from, for everyone there to read.
    Public(String),
    /// For the person who asked and nobody else (a sign-in link). Each adapter delivers it
    /// privately: Discord as an ephemeral interaction response or a direct message, Slack as
    /// an ephemeral message, the console and the CLI by printing it (a terminal is private).
    /// When it cannot be delivered privately, the channel is told why, never what it said.
    Private(PrivateReply),
}

/// A reply only its asker may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateReply {
    pub text: String,
    /// What it is, for the public line that says where it went: "a sign-in link".
    pub what: &'static str,
}

impl Reply {
    /// The text, for a surface where every answer is private (a terminal, a test).
    pub fn into_text(self) -> String {
        match self {
            Reply::Public(text) => text,
            Reply::Private(private) => private.text,
        }
    }

    /// The text, if everyone in the channel may read it.
    pub fn public(&self) -> Option<&str> {
        match self {
            Reply::Public(text) => Some(text),
            Reply::Private(_) => None,
        }
    }
}

impl From<String> for Reply {
    fn from(text: String) -> Reply {
        Reply::Public(text)
    }
}

/// What an adapter calls for every command addressed to the bot. It returns the reply to post
/// where the command came from (or privately, see [`Reply::Private`]), or `None` when the bot
/// has already answered in the channel (a job posts its own status message, which is the answer).
pub type CommandHandler = std::sync::Arc<dyn Fn(ChatEvent) -> BoxFuture<'static, Option<Reply>> + Send + Sync>;

/// What an adapter calls for the refs to offer while someone types one: with the environment
/// typed so far (if any) and the text typed, the branch and tag names to show (at most 25).
pub type RefSuggester = std::sync::Arc<dyn Fn(String, String) -> BoxFuture<'static, Vec<String>> + Send + Sync>;

/// What an adapter calls with a platform and an event id (a Discord message or interaction
/// id) before it acknowledges or answers the event: true for exactly one replica, which then
/// handles it; the others stay silent.
pub type EventClaim = std::sync::Arc<dyn Fn(&'static str, String) -> BoxFuture<'static, bool> + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_mentions() {
        assert_eq!(
            addressed_text("!argos staging deploy", "!argos", None),
            Some("staging deploy")
        );
        assert_eq!(addressed_text("  !argos   help", "!argos", None), Some("help"));
        assert_eq!(addressed_text("!argos", "!argos", None), Some(""));
        assert_eq!(addressed_text("!argosy staging", "!argos", None), None);
        assert_eq!(
            addressed_text("<@42> staging status", "!argos", Some("42")),
            Some("staging status")
        );
        assert_eq!(addressed_text("<@!42> jobs", "!argos", Some("42")), Some("jobs"));
        assert_eq!(addressed_text("<@43> jobs", "!argos", Some("42")), None);
        assert_eq!(addressed_text("hello there", "!argos", Some("42")), None);
    }
}
