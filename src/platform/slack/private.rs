//! Private answers on Slack ([`Reply::Private`](crate::bot::port::Reply)): a prefix or mention
//! command gets its answer as an ephemeral message (`chat.postEphemeral`: shown in the channel
//! to its asker only, not kept); a slash command's or a click's answer goes to its
//! `response_url`, which Slack shows to the asker only (`response_type` left out means
//! `ephemeral`). An ephemeral post that fails is reported in the channel, without the answer.

use slack_morphism::prelude::*;

use super::limiter::Method;
use super::SlackPort;
use crate::bot::messages;
use crate::bot::port::{OutgoingMessage, PortError, PortResult, PrivateReply};

impl SlackPort {
    /// Shows `reply` to `user` only, in `channel`; when Slack refuses, says why in `channel`.
    pub(super) async fn reply_privately(&self, user: &str, channel: &str, reply: PrivateReply) {
        if let Err(e) = self.post_ephemeral(user, channel, &reply.text).await {
            tracing::warn!(error = %e, "a private reply (chat.postEphemeral) failed");
            let notice = messages::private_reply_failed(reply.what, &e.0);
            if let Err(e) = self.post(channel, OutgoingMessage::text(notice)).await {
                tracing::warn!("{e}");
            }
        }
    }

    async fn post_ephemeral(&self, user: &str, channel: &str, text: &str) -> PortResult<()> {
        let content = super::blocks::content(&OutgoingMessage::text(text));
        let request = SlackApiChatPostEphemeralRequest::new(
            SlackChannelId::new(channel.to_string()),
            SlackUserId::new(user.to_string()),
            content,
        )
        .with_link_names(false);
        let session = self.client.open_session(&self.token);
        for _ in 0..super::MAX_RATE_LIMITED_TRIES {
            let _permit = self.limiter.channel(channel, Method::Other).await;
            match self
                .call(
                    "chat.postEphemeral",
                    Method::Other,
                    session.chat_post_ephemeral(&request),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(Some(e)) => return Err(e),
                Err(None) => continue,
            }
        }
        Err(PortError("Slack chat.postEphemeral stayed rate limited".into()))
    }
}
