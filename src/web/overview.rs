//! `GET /`: each environment the viewer may see, with its stack's status (from the cache in
//! [`super::stacks`]), its deployed version, its running job, its hold or freeze, its pending
//! approvals and its last few deploys.

use askama::Template;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;

use super::session::viewer;
use super::view::{self, JobRow};
use super::{render, Web};

/// How many deploys each environment lists.
const LAST_DEPLOYS: usize = 5;

pub(crate) struct EnvCard {
    pub name: String,
    /// Its stack's status ("CREATE_COMPLETE", "no stack", "unknown: <cause>") and CSS class.
    pub stack: String,
    pub stack_class: &'static str,
    pub deployed: String,
    pub deployed_at: String,
    pub running: Option<JobRow>,
    pub hold: Option<String>,
    pub freeze: Option<String>,
    pub pending: Vec<JobRow>,
    pub deploys: Vec<JobRow>,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub(crate) struct OverviewPage {
    pub who: String,
    pub envs: Vec<EnvCard>,
    /// How old the stack statuses are ("read 12 s ago").
    pub stacks_read: String,
}

pub(crate) async fn page(State(web): State<Web>, request: Parts) -> Response {
    let viewer = match viewer(&web, &request).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let who = viewer.who.display_name.clone();
    // From the cache (AWS is read at most once per web.stack_status_secs), before the store.
    let stacks = web.stacks.get(web.bot.engine()).await;
    let stacks_read = stacks.age();
    let envs = web
        .blocking(move |bot| {
            let store = bot.store();
            let config = &bot.engine().config;
            let locks = store.held_locks().unwrap_or_default();
            let holds = store.active_holds().unwrap_or_default();
            let freezes = store.active_freezes().unwrap_or_default();
            let pending: Vec<_> = store
                .pending_approvals()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|id| store.job(id).ok().flatten())
                .collect();
            viewer
                .envs
                .iter()
                .map(|name| {
                    let good = store.good_deploys(name, 1).ok().and_then(|d| d.into_iter().next());
                    let running = locks
                        .iter()
                        .find(|l| &l.env == name && l.live)
                        .and_then(|l| l.job_id)
                        .and_then(|id| store.job(id).ok().flatten());
                    let stored = freezes
                        .iter()
                        .filter(|f| f.covers(name))
                        .max_by_key(|f| f.ends_at)
                        .cloned();
                    let freeze = crate::holds::freeze_in_force(stored, config, name);
                    let stack = stacks.of(name);
                    EnvCard {
                        name: name.clone(),
                        stack: stack.to_string(),
                        stack_class: stack.class(),
                        deployed: good.as_ref().map(view::version).unwrap_or_default(),
                        deployed_at: good.as_ref().map(|j| view::time(j.finished_at)).unwrap_or_default(),
                        running: running.as_ref().map(JobRow::of),
                        hold: holds.iter().find(|h| &h.env == name).map(|h| {
                            format!(
                                "held by {} until {}: {}",
                                h.holder_name,
                                view::time(Some(h.ends_at)),
                                h.reason
                            )
                        }),
                        freeze: freeze.map(|f| {
                            format!(
                                "frozen ({}) until {}: {}",
                                f.name,
                                view::time(Some(f.ends_at)),
                                f.reason
                            )
                        }),
                        pending: pending.iter().filter(|j| &j.env == name).map(JobRow::of).collect(),
                        deploys: store
                            .deploys(name, LAST_DEPLOYS)
                            .unwrap_or_default()
                            .iter()
                            .map(JobRow::of)
                            .collect(),
                    }
                })
                .collect()
        })
        .await;
    render(StatusCode::OK, OverviewPage { who, envs, stacks_read })
}
