//! `web`: a sign-in link for the read-only web page, valid once and for `web.link_minutes`.
//! The token is in the reply only: the store keeps its hash, the audit log the command.

use super::{audit_read, internal};
use crate::bot::messages;
use crate::bot::port::{ChatEvent, PrivateReply, Reply};
use crate::bot::Inner;

/// The link as a private reply (only the asker sees it); a refusal or an error in public.
pub(crate) fn command_web(inner: &Inner, ev: &ChatEvent) -> Reply {
    let web = &inner.engine.config.settings.web;
    let Some(base) = &web.public_url else {
        audit_read(inner, ev, "refused: web.public_url is not set", None);
        return Reply::Public(messages::web_not_configured());
    };
    let token = match crate::store::new_token() {
        Ok(t) => t,
        Err(e) => return Reply::Public(internal(inner, ev, &e)),
    };
    let valid_ms = web.link_minutes * 60_000;
    if let Err(e) = inner.store.create_sign_in_link(&token, &ev.identity, valid_ms) {
        return Reply::Public(internal(inner, ev, &e.to_string()));
    }
    audit_read(inner, ev, "ok: sign-in link sent", None);
    Reply::Private(PrivateReply {
        text: messages::web_link(&format!("{base}/login/{token}"), web.link_minutes),
        what: messages::SIGN_IN_LINK,
    })
}
