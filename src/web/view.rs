//! What the templates show, prepared: times and durations as people read them, jobs as rows,
//! and the small pages every route shares.

use askama::Template;

use crate::store::{JobRecord, JobState};

/// A short page: a refusal, a sign-in request, not found.
#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage {
    pub title: String,
    pub text: String,
}

/// `GET /login/<token>`: the button that signs in.
#[derive(Template)]
#[template(path = "signin.html")]
pub(crate) struct SignInPage {
    pub token: String,
}

/// A time as the page shows it (UTC, to the second).
pub(crate) fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

/// A duration as people say it: `45 s`, `3 min 12 s`, `2 h 5 min`.
pub(crate) fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// How long a job ran (so far, if it runs).
pub(crate) fn took_secs(job: &JobRecord) -> Option<i64> {
    let start = job.started_at?;
    let end = job.finished_at.unwrap_or_else(chrono::Utc::now);
    Some((end - start).num_seconds())
}

/// The first 12 characters of a commit.
pub(crate) fn short_sha(sha: &str) -> String {
    sha.chars().take(12).collect()
}

/// A job as a row of a table.
pub(crate) struct JobRow {
    pub id: u64,
    pub env: String,
    pub action: String,
    pub state: String,
    pub who: String,
    pub version: String,
    pub created: String,
    pub took: String,
    pub result: String,
}

impl JobRow {
    pub fn of(job: &JobRecord) -> JobRow {
        JobRow {
            id: job.id,
            env: job.env.clone(),
            action: job.action.clone(),
            state: job.state.as_str().to_string(),
            who: job.requester_name.clone(),
            version: version(job),
            created: time(job.created_at),
            took: took_secs(job).map(duration).unwrap_or_default(),
            result: job.result.clone().unwrap_or_default(),
        }
    }
}

/// The ref and commit a job deployed (`main @ 1a2b3c4d5e6f`), or nothing.
pub(crate) fn version(job: &JobRecord) -> String {
    match (&job.git_ref, &job.sha) {
        (Some(r), Some(s)) => format!("{r} @ {}", short_sha(s)),
        (None, Some(s)) => short_sha(s),
        _ => String::new(),
    }
}

/// The CSS class of a job's state.
pub(crate) fn state_class(state: JobState) -> &'static str {
    match state {
        JobState::Succeeded => "ok",
        JobState::Failed | JobState::Interrupted => "bad",
        JobState::Running | JobState::Queued => "live",
        JobState::Cancelled => "off",
    }
}

/// Text made safe inside HTML or SVG markup built by hand (the SVG timeline).
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(5), "5 s");
        assert_eq!(duration(192), "3 min 12 s");
        assert_eq!(duration(7500), "2 h 5 min");
        assert_eq!(duration(-3), "0 s");
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
