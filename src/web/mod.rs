//! The read-only web page of `argos bot` (and `argos console`): an overview of the
//! environments, jobs with their logs followed live, an environment's history drawn as SVG,
//! and approvals. Served with axum on the health listener (the `health` module), rendered on the
//! server from askama templates (`templates/`); no JavaScript but the live tail of a running
//! job's log, which polls `/jobs/<id>/log?offset=N` once a second (a byte-offset tail from the
//! store, so any replica answers it, also after the job's owner died).
//!
//! Nothing is shown without a session ([`session`]), and a person sees only the environments
//! they may `status`. The pages change nothing: actions stay in chat, the console and the CLI.

mod approvals;
mod history;
mod job;
mod jobs;
mod overview;
mod session;
mod stacks;
mod trusted;
mod view;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::bot::Bot;

/// What every page handler gets.
#[derive(Clone)]
pub(crate) struct Web {
    bot: Bot,
    /// The environments' stack statuses, read from AWS at most once per TTL.
    stacks: std::sync::Arc<stacks::StackStatuses>,
}

impl Web {
    /// Runs `f` (store reads, which block) off the async workers.
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Bot) -> T + Send + 'static) -> T {
        let bot = self.bot.clone();
        tokio::task::spawn_blocking(move || f(&bot))
            .await
            .expect("a page's store reads do not panic")
    }
}

/// The address a request came from, which the listener adds to each request (the web page
/// believes `web.trusted_header` only from `web.trusted_proxies`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The page routes, to merge beside the health endpoints.
pub fn router(bot: Bot) -> Router {
    let ttl = std::time::Duration::from_secs(bot.engine().config.settings.web.stack_status_secs);
    let stacks = std::sync::Arc::new(stacks::StackStatuses::new(ttl));
    Router::new()
        .route("/", get(overview::page))
        .route("/login/{token}", get(session::login_page).post(session::login))
        .route("/jobs", get(jobs::page))
        .route("/jobs/{id}", get(job::page))
        .route("/jobs/{id}/log", get(job::log_tail))
        .route("/envs/{env}", get(history::page))
        .route("/approvals", get(approvals::page))
        .route("/logout", post(session::logout))
        .with_state(Web { bot, stacks })
}

/// A rendered page, with the headers every page carries: never cached (it shows live state and
/// is per person), never framed, no referrer (a sign-in path must not leak to another site).
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(headers);
    response
}

fn secure_headers(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// A template rendered into a page (a template that fails to render is a bug: 500).
fn render(status: StatusCode, page: impl askama::Template) -> Response {
    match page.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "a web page failed to render");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<p>This page failed to render.</p>".into(),
            )
        }
    }
}

/// A short message page (refusals, not found).
fn message(status: StatusCode, title: &str, text: &str) -> Response {
    render(
        status,
        view::MessagePage {
            title: title.to_string(),
            text: text.to_string(),
        },
    )
}
