//! Every user-visible string the bot sends, as named constructors, so wording lives in one
//! place and tests can match on it. Internal errors are shown as a generic line plus a log entry.

use crate::store::JobRecord;

pub fn denied(missing: &str) -> String {
    format!("⛔ You don't have permission for {missing}. Ask an admin to grant it in config/argos.yaml.")
}

pub fn denied_unknown_user() -> String {
    "⛔ You have no role with Argos. Ask an admin to add you to config/argos.yaml. (`help` and `whoami` work for everyone.)".into()
}

pub fn rate_limited(retry_secs: u64) -> String {
    format!("🐢 Easy — you've sent a lot of commands. Try again in {retry_secs} s.")
}

pub fn usage_error(text: &str) -> String {
    format!("❓ {text}")
}

/// A console line that is not UTF-8 (it is not shown: it may hold anything).
pub fn not_utf8() -> String {
    usage_error(&format!(
        "that line is not valid UTF-8; type commands as plain text\nusage: {}",
        crate::command::usage(None)
    ))
}

pub fn unknown_env(err: &str) -> String {
    format!("❓ {err}")
}

pub fn busy(env: &str, running: &JobRecord) -> String {
    format!(
        "⏸ {env} is busy: job #{} ({} by {}) is {}. Try again when it finishes, or `cancel {}`.",
        running.id, running.action, running.requester_name, running.state, running.id
    )
}

/// Where a job runs, after a busy or cancel reply: the replica's id names its kind, host and
/// process (`console-ops1-4242-…`).
pub fn where_runs(owner: &str) -> String {
    format!(" It runs in {owner}.")
}

pub fn queued(env: &str, id: u64, ahead: &JobRecord) -> String {
    format!(
        "🕒 Job #{id} is queued behind job #{} ({} by {}) on {env}.",
        ahead.id, ahead.action, ahead.requester_name
    )
}

pub fn no_such_job(id: u64) -> String {
    format!("❓ There is no job #{id}.")
}

pub fn job_not_running(id: u64, state: &str) -> String {
    format!("Job #{id} is not running (it is {state}).")
}

pub fn cancel_requested(id: u64) -> String {
    format!("🛑 Cancelling job #{id}…")
}

pub fn internal_error() -> String {
    "💥 Something went wrong on my side; it is in the bot's log. Nothing was started.".into()
}

pub fn job_line(j: &JobRecord) -> String {
    let when = j
        .created_at
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default();
    format!(
        "#{} {} {} — {} by {} ({when})",
        j.id, j.env, j.action, j.state, j.requester_name
    )
}

pub fn job_detail(j: &JobRecord) -> String {
    let mut out = vec![job_line(j)];
    if let (Some(s), Some(f)) = (j.started_at, j.finished_at) {
        out.push(format!(
            "took {}",
            crate::bot::status::duration((f - s).to_std().unwrap_or_default())
        ));
    }
    if let Some(r) = &j.result {
        out.push(r.clone());
    }
    if let Some(l) = &j.log_path {
        out.push(format!("log: {l}"));
    }
    out.join("\n")
}

pub fn resumed(id: u64) -> String {
    format!("↻ Job #{id} was running when the bot stopped; picking it up again.")
}

pub fn interrupted(reason: &str) -> String {
    format!("The bot stopped while this job ran and could not pick it up again: {reason}")
}
