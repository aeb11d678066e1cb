//! Who is looking: the sign-in link from `web` in chat (shown as a page with a button, so a
//! chat's link preview, which only GETs, cannot use it up), the session cookie it sets
//! (HttpOnly, SameSite=Lax, Secure behind https, with an expiry), and the viewer every page
//! starts from. Tokens are never logged; the store keeps their hashes.

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::trusted::{self, Trusted};
use super::{html, message, Web};
use crate::permissions::{Decision, Identity};
use crate::store::LinkRefusal;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "argos_session";

/// Someone signed in, and the environments they may see (those they may `status`).
pub(crate) struct Viewer {
    pub who: Identity,
    pub envs: Vec<String>,
}

impl Viewer {
    pub fn sees(&self, env: &str) -> bool {
        self.envs.iter().any(|e| e == env)
    }
}

/// The session token a request carries, if any.
fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The page for someone without a session: 401, and how to get one.
pub(crate) fn sign_in_needed() -> Response {
    message(
        StatusCode::UNAUTHORIZED,
        "Sign in",
        "You are not signed in. Type `web` to Argos in chat (or in the console) for a sign-in link.",
    )
}

/// The environments `who` may see: those they may `status`.
fn visible_envs(bot: &crate::bot::Bot, who: &Identity) -> Vec<String> {
    let perms = bot.permissions();
    bot.engine()
        .config
        .settings
        .environments
        .keys()
        .filter(|env| perms.check(who, env, "status") == Decision::Allowed)
        .cloned()
        .collect()
}

/// The viewer of a request, or the page to answer instead: the person a trusted proxy names
/// (when `web.trusted_header` is set and the request comes from `web.trusted_proxies`), else
/// the session cookie's.
pub(crate) async fn viewer(web: &Web, request: &Parts) -> Result<Viewer, Response> {
    match trusted::person(web, request) {
        Trusted::Person(who) => {
            let envs = visible_envs(&web.bot, &who);
            return Ok(Viewer { who, envs });
        }
        Trusted::Refused(page) => return Err(page),
        Trusted::NotAsked => {}
    }
    let Some(token) = session_token(&request.headers) else {
        return Err(sign_in_needed());
    };
    let found = web
        .blocking(move |bot| {
            let who = bot.store().web_session(&token)?;
            Ok::<_, crate::store::StoreError>(who.map(|who| {
                let envs = visible_envs(bot, &who);
                Viewer { who, envs }
            }))
        })
        .await;
    match found {
        Ok(Some(viewer)) => Ok(viewer),
        Ok(None) => Err(sign_in_needed()),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a web session");
            Err(message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The store does not answer; try again shortly.",
            ))
        }
    }
}

/// `GET /login/<token>`: a page with a button that signs in (the token is used by the POST).
pub(crate) async fn login_page(Path(token): Path<String>) -> Response {
    if !token.bytes().all(|b| b.is_ascii_hexdigit()) || token.len() > 128 {
        return refused(LinkRefusal::Unknown);
    }
    super::render(StatusCode::OK, super::view::SignInPage { token })
}

fn refused(why: LinkRefusal) -> Response {
    let text = match why {
        LinkRefusal::Unknown => "This sign-in link is not one Argos gave out.",
        LinkRefusal::Used => "This sign-in link was used already: each link works once.",
        LinkRefusal::Expired => "This sign-in link has expired.",
    };
    message(
        StatusCode::UNAUTHORIZED,
        "Sign in",
        &format!("{text} Type `web` to Argos in chat for a new one."),
    )
}

/// `POST /login/<token>`: uses the link, sets the session cookie, and goes to the overview.
pub(crate) async fn login(State(web): State<Web>, Path(token): Path<String>) -> Response {
    if !token.bytes().all(|b| b.is_ascii_hexdigit()) || token.len() > 128 {
        return refused(LinkRefusal::Unknown);
    }
    let settings = web.bot.engine().config.settings.web.clone();
    let session = match crate::store::new_token() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot make a session token");
            return message(StatusCode::INTERNAL_SERVER_ERROR, "Error", "No session could be made.");
        }
    };
    let session_ms = settings.session_hours * 3_600_000;
    let cookie_value = session.clone();
    let used = web
        .blocking(move |bot| bot.store().redeem_sign_in_link(&token, &session, session_ms))
        .await;
    match used {
        Ok(Ok(who)) => {
            tracing::info!(user = %who.display_name, platform = %who.platform.as_str(), "signed in to the web page");
            let mut cookie = format!(
                "{COOKIE}={cookie_value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
                session_ms / 1000
            );
            if settings.secure_cookie() {
                cookie.push_str("; Secure");
            }
            let mut response = html(StatusCode::SEE_OTHER, String::new());
            let headers = response.headers_mut();
            headers.insert(header::LOCATION, HeaderValue::from_static("/"));
            headers.insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&cookie).expect("a cookie of hex and ASCII"),
            );
            response
        }
        Ok(Err(why)) => refused(why),
        Err(e) => {
            tracing::error!(error = %e, "cannot use a sign-in link");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The store does not answer; try again shortly.",
            )
        }
    }
}

/// `POST /logout`: ends the session in the store and forgets the cookie in this browser.
pub(crate) async fn logout(State(web): State<Web>, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers) {
        if let Err(e) = web.blocking(move |bot| bot.store().end_web_session(&token)).await {
            tracing::warn!(error = %e, "cannot end a web session");
        }
    }
    let mut response = html(StatusCode::SEE_OTHER, String::new());
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("/"));
    headers.insert(
        header::SET_COOKIE,
        HeaderValue::from_static("argos_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others_and_checked() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; argos_session=00ff; b=2"));
        assert_eq!(session_token(&h).as_deref(), Some("00ff"));
        let mut bad = HeaderMap::new();
        bad.append(header::COOKIE, HeaderValue::from_static("argos_session=<script>"));
        assert_eq!(session_token(&bad), None);
        assert_eq!(session_token(&HeaderMap::new()), None);
    }
}
