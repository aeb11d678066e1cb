//! `GET /approvals`: the requests waiting for approval with their plan, and the decided ones
//! with their votes, on the environments the viewer may see.

use askama::Template;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;

use super::session::viewer;
use super::view::{self, JobRow};
use super::{render, Web};
use crate::store::{ApprovalRecord, JobFilter, JobRecord};

/// How many recent jobs are looked through for decided requests.
const RECENT: usize = 100;

pub(crate) struct ApprovalView {
    pub job: JobRow,
    pub state: String,
    pub needed: u32,
    pub plan: String,
    pub expires: String,
    pub votes: Vec<String>,
}

#[derive(Template)]
#[template(path = "approvals.html")]
pub(crate) struct ApprovalsPage {
    pub pending: Vec<ApprovalView>,
    pub decided: Vec<ApprovalView>,
}

fn shown(job: &JobRecord, a: &ApprovalRecord) -> ApprovalView {
    ApprovalView {
        job: JobRow::of(job),
        state: a.state.as_str().to_string(),
        needed: a.needed,
        plan: a.plan.clone(),
        expires: view::time(a.expires_at),
        votes: a
            .votes
            .iter()
            .map(|v| match &v.reason {
                Some(r) => format!("{}: {} ({r})", v.user_name, v.decision.as_str()),
                None => format!("{}: {}", v.user_name, v.decision.as_str()),
            })
            .collect(),
    }
}

pub(crate) async fn page(State(web): State<Web>, request: Parts) -> Response {
    let viewer = match viewer(&web, &request).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let (pending, decided) = web
        .blocking(move |bot| {
            let store = bot.store();
            let filter = JobFilter {
                envs: viewer.envs.clone(),
                ..JobFilter::default()
            };
            let mut pending = Vec::new();
            let mut decided = Vec::new();
            for job in store.find_jobs(&filter, RECENT).unwrap_or_default() {
                if let Ok(Some(a)) = store.approval_for_job(job.id) {
                    let open = a.state == crate::store::ApprovalState::Pending;
                    if open {
                        pending.push(shown(&job, &a));
                    } else {
                        decided.push(shown(&job, &a));
                    }
                }
            }
            (pending, decided)
        })
        .await;
    render(StatusCode::OK, ApprovalsPage { pending, decided })
}
