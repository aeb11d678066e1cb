//! `GET /jobs?env=&action=&result=&person=`: the newest jobs on the environments the viewer
//! may see, filtered (a plain GET form: no JavaScript).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::session::viewer;
use super::view::JobRow;
use super::{render, Web};
use crate::store::{JobFilter, JobState};

/// How many jobs one page lists.
const LISTED: usize = 100;

const STATES: [JobState; 6] = [
    JobState::Queued,
    JobState::Running,
    JobState::Succeeded,
    JobState::Failed,
    JobState::Cancelled,
    JobState::Interrupted,
];

#[derive(Deserialize, Default)]
pub(crate) struct Filters {
    env: Option<String>,
    action: Option<String>,
    result: Option<String>,
    person: Option<String>,
}

/// An option of a `<select>`.
pub(crate) struct Choice {
    pub value: String,
    pub selected: bool,
}

fn choices<'a>(values: impl IntoIterator<Item = &'a str>, current: &Option<String>) -> Vec<Choice> {
    values
        .into_iter()
        .map(|v| Choice {
            value: v.to_string(),
            selected: current.as_deref() == Some(v),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "jobs.html")]
pub(crate) struct JobsPage {
    pub envs: Vec<Choice>,
    pub actions: Vec<Choice>,
    pub results: Vec<Choice>,
    pub person: String,
    pub jobs: Vec<JobRow>,
}

/// An empty field of the form means "any".
fn given(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

pub(crate) async fn page(State(web): State<Web>, request: Parts, Query(f): Query<Filters>) -> Response {
    let viewer = match viewer(&web, &request).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let filter = JobFilter {
        envs: viewer.envs.clone(),
        env: given(f.env),
        action: given(f.action),
        state: given(f.result),
        person: given(f.person),
    };
    let query = filter.clone();
    let jobs = web.blocking(move |bot| bot.store().find_jobs(&query, LISTED)).await;
    let jobs = jobs.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot list jobs for the web page");
        Vec::new()
    });
    let page = JobsPage {
        envs: choices(viewer.envs.iter().map(String::as_str), &filter.env),
        actions: choices(crate::command::actions(), &filter.action),
        results: choices(STATES.iter().map(|s| s.as_str()), &filter.state),
        person: filter.person.clone().unwrap_or_default(),
        jobs: jobs.iter().map(JobRow::of).collect(),
    };
    render(StatusCode::OK, page)
}
