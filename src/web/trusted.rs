//! Sign-in by an authenticating proxy (oauth2-proxy, Pomerium): with `web.trusted_header` set,
//! a request that comes from one of `web.trusted_proxies` and carries the header is the person
//! the header names, a name under `people:`, with the roles the config gives that person (as
//! the CLI and the console would have them). From any other address the header is ignored, as
//! if it were not there: anyone can send a header, only the proxy's address vouches for it. An
//! unknown name is refused (403), not sent to the sign-in link page.

use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;

use super::{message, PeerAddr, Web};
use crate::permissions::Identity;

/// What a request's trusted header says.
pub(crate) enum Trusted {
    /// No header configured, not from a trusted proxy, or no header sent: use the cookie.
    NotAsked,
    /// A person listed under `people:`.
    Person(Identity),
    /// The header names nobody Argos knows (or is unreadable): the page to answer.
    Refused(Response),
}

pub(crate) fn person(web: &Web, request: &Parts) -> Trusted {
    let settings = &web.bot.engine().config.settings.web;
    let Some(header) = &settings.trusted_header else {
        return Trusted::NotAsked;
    };
    let Some(peer) = request.extensions.get::<PeerAddr>() else {
        return Trusted::NotAsked;
    };
    let values: Vec<_> = request.headers.get_all(header.as_str()).iter().collect();
    if values.is_empty() {
        return Trusted::NotAsked;
    }
    if !settings.trusted_nets().iter().any(|net| net.contains(peer.0.ip())) {
        // Anyone may send the header; only a trusted proxy's address vouches for it.
        tracing::debug!(peer = %peer.0, "ignored a trusted header from an untrusted address");
        return Trusted::NotAsked;
    }
    let name = match values.as_slice() {
        [one] => one.to_str().map(str::trim).unwrap_or(""),
        _ => "",
    };
    if name.is_empty() {
        return Trusted::Refused(refused(&format!(
            "The proxy sent {header} more than once, empty or unreadable; it must name one person."
        )));
    }
    let people = web.bot.permissions().people();
    match people.console_name(name) {
        Some(console_name) => {
            let mut who = Identity::named(crate::address::Surface::CONSOLE, console_name);
            who.display_name = name.to_string();
            Trusted::Person(who)
        }
        None => {
            tracing::info!(peer = %peer.0, "refused a trusted header naming nobody under people:");
            Trusted::Refused(refused(&format!(
                "Argos does not know the person your proxy signed in (the {header} header must be a name listed under people: in the config). Ask an admin to add you."
            )))
        }
    }
}

fn refused(text: &str) -> Response {
    message(StatusCode::FORBIDDEN, "Not signed in", text)
}
