//! `GET /jobs/<id>`: a job's status, timings, the commit it deployed and its log from the
//! store; while the job runs, a small script polls `GET /jobs/<id>/log?offset=N` once a second
//! and appends what is new (Shipit's way: a byte-offset tail works behind any load balancer and
//! from any replica, where a websocket would not).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::session::viewer;
use super::view::{self};
use super::{message, render, Web};
use crate::store::{JobRecord, LogTail};

/// The most one poll of the tail returns.
const TAIL_MAX_BYTES: usize = 256 * 1024;

#[derive(Template)]
#[template(path = "job.html")]
pub(crate) struct JobPage {
    pub id: u64,
    pub env: String,
    pub action: String,
    pub state: String,
    pub state_class: &'static str,
    pub who: String,
    pub created: String,
    pub started: String,
    pub finished: String,
    pub took: String,
    pub git_ref: String,
    pub sha: String,
    pub hosts: String,
    pub result: String,
    pub progress: String,
    pub args: String,
    pub log: String,
    pub next_offset: u64,
    pub finished_log: bool,
}

/// The job, if the viewer may see its environment; the page to answer otherwise.
async fn visible_job(web: &Web, request: &Parts, id: u64) -> Result<JobRecord, Response> {
    let viewer = viewer(web, request).await?;
    let job = web.blocking(move |bot| bot.store().job(id)).await;
    match job {
        Ok(Some(job)) if viewer.sees(&job.env) => Ok(job),
        Ok(Some(job)) => Err(message(
            StatusCode::FORBIDDEN,
            "Not yours to see",
            &format!(
                "Job #{id} ran on {}, which you may not see (you need the status permission there).",
                job.env
            ),
        )),
        Ok(None) => Err(message(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("There is no job #{id}."),
        )),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a job for the web page");
            Err(message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The store does not answer; try again shortly.",
            ))
        }
    }
}

pub(crate) async fn page(State(web): State<Web>, request: Parts, Path(id): Path<u64>) -> Response {
    let job = match visible_job(&web, &request, id).await {
        Ok(j) => j,
        Err(page) => return page,
    };
    // The whole stored log: it is bounded by web.log_limit_bytes (plus the line saying what
    // was dropped).
    let whole = web.bot.engine().config.settings.web.log_limit_bytes as usize + 64 * 1024;
    let tail = web.blocking(move |bot| bot.store().log_since(id, 0, whole)).await;
    let tail = tail.unwrap_or_else(|e| {
        tracing::warn!(job = id, error = %e, "cannot read a job's log");
        LogTail {
            text: String::new(),
            next_offset: 0,
            finished: false,
        }
    });
    let page = JobPage {
        id,
        env: job.env.clone(),
        action: job.action.clone(),
        state: job.state.as_str().to_string(),
        state_class: view::state_class(job.state),
        who: job.requester_name.clone(),
        created: view::time(job.created_at),
        started: view::time(job.started_at),
        finished: view::time(job.finished_at),
        took: view::took_secs(&job).map(view::duration).unwrap_or_default(),
        git_ref: job.git_ref.clone().unwrap_or_default(),
        sha: job.sha.clone().unwrap_or_default(),
        hosts: job.hosts.join(", "),
        result: job.result.clone().unwrap_or_default(),
        progress: job.progress.clone().unwrap_or_default(),
        args: if job.args == "{}" {
            String::new()
        } else {
            job.args.clone()
        },
        log: tail.text,
        next_offset: tail.next_offset,
        finished_log: tail.finished,
    };
    render(StatusCode::OK, page)
}

#[derive(Deserialize)]
pub(crate) struct TailQuery {
    #[serde(default)]
    offset: u64,
}

/// `GET /jobs/<id>/log?offset=N`: `{"text": ..., "next_offset": ..., "finished": ...}`.
pub(crate) async fn log_tail(
    State(web): State<Web>,
    request: Parts,
    Path(id): Path<u64>,
    Query(q): Query<TailQuery>,
) -> Response {
    if let Err(page) = visible_job(&web, &request, id).await {
        return page;
    }
    let tail = web
        .blocking(move |bot| bot.store().log_since(id, q.offset, TAIL_MAX_BYTES))
        .await;
    match tail {
        Ok(t) => {
            let body = serde_json::json!({
                "text": t.text,
                "next_offset": t.next_offset,
                "finished": t.finished,
            })
            .to_string();
            let mut response = (StatusCode::OK, body).into_response();
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            super::secure_headers(h);
            response
        }
        Err(e) => {
            tracing::warn!(job = id, error = %e, "cannot read a job's log");
            (StatusCode::SERVICE_UNAVAILABLE, "the store does not answer").into_response()
        }
    }
}
