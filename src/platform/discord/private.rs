//! Private answers on Discord ([`Reply::Private`]): a prefix or mention command gets its answer
//! in a direct message (the DM channel opened with `POST /users/@me/channels`) and the channel
//! a short line saying so; a slash command's answer is an ephemeral interaction response
//! (flag [`EPHEMERAL`]), which `handler` sets when it defers. A direct message Discord refuses
//! (code 50007: the person takes no DMs from this server, or blocked the bot) is reported in
//! the channel with why, never with the answer.

use hyper::Method;

use super::limiter::RouteKey;
use super::rest::{Body, Call};
use super::DiscordPort;
use crate::bot::messages;
use crate::bot::port::{OutgoingMessage, PortError, PortResult, PrivateReply};

/// The message flag that makes an interaction response visible to its asker only.
pub const EPHEMERAL: u64 = 1 << 6;

/// Discord's error code for a direct message it will not deliver to that person.
const CANNOT_MESSAGE_USER: &str = "code 50007";

impl DiscordPort {
    /// Opens (or finds: Discord answers with the existing one) the DM channel with `user`.
    async fn dm_channel(&self, user: &str) -> PortResult<String> {
        let user_id = super::message::snowflake("user", user).map_err(PortError)?;
        let call = Call {
            what: "direct message channel",
            method: Method::POST,
            path: "/users/@me/channels".into(),
            key: RouteKey {
                route: "POST /users/@me/channels",
                major: "@me".into(),
                interaction: false,
                channel: None,
            },
            body: Body::Json(serde_json::json!({ "recipient_id": user_id.to_string() })),
        };
        let answer = self.send_call(call, None).await?.unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        json["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| PortError("Discord answered a DM channel without its id".into()))
    }

    /// Sends `reply` to `user` in a direct message and says so in `channel`; when the direct
    /// message fails, says why in `channel` instead (without the reply's text).
    pub(super) async fn reply_privately(&self, user: &str, channel: &str, reply: PrivateReply) {
        let delivered = match self.dm_channel(user).await {
            Ok(dm) => self.send_dm(&dm, reply.text).await,
            Err(e) => Err(e),
        };
        let notice = match delivered {
            Ok(()) => messages::sent_by_direct_message(reply.what),
            Err(e) => {
                // The error names the request and Discord's message, never the content.
                tracing::warn!(error = %e, "a private reply by direct message failed");
                let cause = if e.0.contains(CANNOT_MESSAGE_USER) {
                    messages::direct_messages_refused()
                } else {
                    e.0
                };
                messages::private_reply_failed(reply.what, &cause)
            }
        };
        if let Err(e) = self.post(channel, OutgoingMessage::text(notice)).await {
            tracing::warn!("{e}");
        }
    }

    async fn send_dm(&self, dm: &str, text: String) -> PortResult<()> {
        self.post(dm, OutgoingMessage::text(text)).await.map(|_| ())
    }
}
