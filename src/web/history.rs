//! `GET /envs/<env>`: an environment's deploys, newest first, under a timeline drawn on the
//! server as SVG: one bar per deploy, oldest on the left, its height the time it took, its
//! colour how it ended, rollbacks marked.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;

use super::session::viewer;
use super::view::{self, escape, JobRow};
use super::{message, render, Web};
use crate::store::{JobRecord, JobState};

/// How many deploys the page shows.
const SHOWN: usize = 40;

const WIDTH: u32 = 800;
const HEIGHT: u32 = 160;

#[derive(Template)]
#[template(path = "history.html")]
pub(crate) struct HistoryPage {
    pub env: String,
    pub timeline: String,
    pub deploys: Vec<JobRow>,
}

fn colour(state: JobState) -> &'static str {
    match state {
        JobState::Succeeded => "#2e7d32",
        JobState::Failed | JobState::Interrupted => "#c62828",
        JobState::Running | JobState::Queued => "#1565c0",
        JobState::Cancelled => "#757575",
    }
}

/// The timeline of `deploys` (newest first, as the store lists them) as an SVG element.
pub(crate) fn timeline(deploys: &[JobRecord]) -> String {
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"deploys, oldest on the left\">"
    );
    svg.push_str(&format!(
        "<line x1=\"0\" y1=\"{y}\" x2=\"{WIDTH}\" y2=\"{y}\" stroke=\"#999\"/>",
        y = HEIGHT - 20
    ));
    if deploys.is_empty() {
        svg.push_str("<text x=\"10\" y=\"70\">no deploys yet</text></svg>");
        return svg;
    }
    let longest = deploys.iter().filter_map(view::took_secs).max().unwrap_or(1).max(1) as f64;
    let slot = WIDTH as f64 / deploys.len().max(10) as f64;
    let room = (HEIGHT - 40) as f64;
    for (i, job) in deploys.iter().rev().enumerate() {
        let took = view::took_secs(job).unwrap_or(0);
        // At least a sliver, so that a quick deploy is still seen.
        let h = (took as f64 / longest * room).max(4.0);
        let x = i as f64 * slot + slot * 0.15;
        let y = (HEIGHT - 20) as f64 - h;
        let rollback = job.action == "rollback";
        let title = format!(
            "#{} {} {} {} ({}){}",
            job.id,
            job.action,
            view::version(job),
            job.state,
            view::duration(took),
            view::time(job.started_at).replace("—", "")
        );
        svg.push_str(&format!(
            "<a href=\"/jobs/{id}\"><rect class=\"deploy {state}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{fill}\"{stroke}><title>{title}</title></rect></a>",
            id = job.id,
            state = job.state.as_str(),
            w = slot * 0.7,
            fill = colour(job.state),
            stroke = if rollback { " stroke=\"#000\" stroke-dasharray=\"3 2\" stroke-width=\"2\"" } else { "" },
            title = escape(&title),
        ));
        if rollback {
            svg.push_str(&format!(
                "<text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"12\">↶</text>",
                tx = x,
                ty = HEIGHT - 5
            ));
        }
    }
    svg.push_str("</svg>");
    svg
}

pub(crate) async fn page(State(web): State<Web>, request: Parts, Path(env): Path<String>) -> Response {
    let viewer = match viewer(&web, &request).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    if !viewer.sees(&env) {
        return message(
            StatusCode::FORBIDDEN,
            "Not yours to see",
            "There is no environment by that name that you may see (you need the status permission there).",
        );
    }
    let name = env.clone();
    let deploys = web.blocking(move |bot| bot.store().deploys(&name, SHOWN)).await;
    let deploys = deploys.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot list deploys for the web page");
        Vec::new()
    });
    let page = HistoryPage {
        env,
        timeline: timeline(&deploys),
        deploys: deploys.iter().map(JobRow::of).collect(),
    };
    render(StatusCode::OK, page)
}
