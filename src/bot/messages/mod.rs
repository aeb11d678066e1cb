//! Every user-visible string the bot sends, as named constructors, so wording lives in one
//! place and tests can match on it. Internal errors are shown as a generic line plus a log entry.

mod drift;
mod holds;
mod web;

use std::collections::{BTreeMap, BTreeSet};

use crate::approvals::Requirement;
use crate::command::CommandHelp;
use crate::engine::StatusReport;
use crate::permissions::Identity;
use crate::progress::{plain_line, Progress};
use crate::store::{ApprovalRecord, JobRecord, JobState};

pub use drift::*;
pub use holds::*;
pub use web::*;

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
    if let Some(sha) = &j.sha {
        let asked = j.git_ref.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        out.push(format!("commit {sha}{asked}"));
    }
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

/// `<env> status`: the report, redacted, in a code block.
pub fn status(report: &StatusReport, redact: impl Fn(&str) -> String) -> String {
    format!("```\n{}\n```", redact(report.to_string().trim_end()))
}

/// `<env> events`: the latest stack events, one line each, in a code block.
pub fn events(report: &StatusReport, redact: impl Fn(&str) -> String) -> String {
    let lines: Vec<String> = report
        .events
        .iter()
        .filter_map(|e| plain_line(&Progress::StackEvent(e.clone())))
        .collect();
    let text = if lines.is_empty() {
        format!("no events for {}", report.stack_name)
    } else {
        lines.join("\n")
    };
    format!("```\n{}\n```", redact(text.trim_end()))
}

/// A read that failed; `error` is already redacted.
pub fn failed(error: &str) -> String {
    format!("❌ {error}")
}

pub fn aws_timeout() -> String {
    "❌ AWS did not answer in time; try again".to_string()
}

/// The environment is held by a process whose job is not known here.
pub fn busy_elsewhere(env: &str) -> String {
    format!("⏸ {env} is busy; try again in a moment.")
}

/// Queued on an environment whose lock holder has no job row to name.
pub fn queued_behind_nobody(env: &str, id: u64) -> String {
    format!("🕒 Job #{id} is queued on {env}.")
}

pub fn denied_cancel(missing: &str) -> String {
    denied(&format!("{missing} (needed to cancel someone else's job)"))
}

pub fn cancelled_before_start(id: u64) -> String {
    format!("🛑 Job #{id} is cancelled; it had not started.")
}

pub fn no_jobs() -> String {
    "No jobs yet.".into()
}

/// `envs`: where one can deploy: each environment as free, running a job, held (by whom,
/// until when) or frozen (until when), with what was last deployed there and its last drift
/// check (`drifts`: the recorded ones, any order).
pub fn envs(envs: &[crate::holds::EnvState], drifts: &[crate::store::DriftRecord]) -> String {
    let mut lines = vec![format!("{} environment(s):", envs.len())];
    for e in envs {
        let state = env_state(e.running, e.hold.as_ref(), e.freeze.as_ref());
        let last = e
            .last
            .as_ref()
            .map(|j| format!(" · {}", last_deploy(j)))
            .unwrap_or_default();
        let drift = drifts
            .iter()
            .find(|d| d.env == e.name)
            .map(|d| format!(" · {}", drift_line(d, chrono::Utc::now())))
            .unwrap_or_default();
        lines.push(format!("• {}: {state}{last}{drift}", e.name));
    }
    lines.join("\n")
}

/// `v1.2.0 @ 1a2b3c4d by alice, 2026-12-07 10:04 UTC, ✅`: an environment's last deploy.
fn last_deploy(j: &JobRecord) -> String {
    let version = crate::command::Version {
        git_ref: j.git_ref.clone(),
        commit: j.sha.clone(),
    };
    let when = j
        .finished_at
        .or(j.started_at)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let mark = match j.state {
        JobState::Succeeded => "✅",
        JobState::Failed | JobState::Interrupted => "❌",
        JobState::Cancelled => "🚫",
        JobState::Queued | JobState::Running => "⏳",
    };
    format!(
        "{} by {}, {when}, {mark}",
        version.describe().unwrap_or_default(),
        j.requester_name
    )
}

/// The lines `status` adds about the code: what runs there and how far behind its default
/// ref that is.
pub fn deployed(j: &JobRecord, behind: Option<u32>, default_ref: &str) -> String {
    let behind = match behind {
        Some(0) => format!(", up to date with {default_ref}"),
        Some(n) => format!(", {n} commit(s) behind {default_ref}"),
        None => String::new(),
    };
    format!("\nDeployed: {} (job #{}){behind}", last_deploy(j), j.id)
}

/// `<env> history`: the last deploys, newest first.
pub fn history(h: &crate::engine::versions::History) -> String {
    format!("```\n{}\n```", h.to_string().trim_end())
}

/// A request refused before any job exists; `why` is already redacted.
pub fn refused(why: &str) -> String {
    format!("❌ {why}")
}

/// `whoami`: who the bot thinks you are, your roles and your (environment, action) grants.
pub fn whoami(who: &Identity, roles: &[String], grants: &BTreeSet<(String, String)>) -> String {
    let mut lines = vec![format!(
        "You are {} ({} id {}).",
        who.display_name, who.platform, who.user_id
    )];
    lines.push(if roles.is_empty() {
        "Roles: none.".to_string()
    } else {
        format!("Roles: {}.", roles.join(", "))
    });
    if grants.is_empty() {
        lines.push("You may not run any environment command.".into());
    } else {
        let mut by_env: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (env, action) in grants {
            by_env.entry(env).or_default().push(action);
        }
        for (env, actions) in by_env {
            lines.push(format!("• {env}: {}", actions.join(", ")));
        }
    }
    lines.join("\n")
}

pub fn help_not_allowed(c: &CommandHelp) -> String {
    format!("`{}`: {} — you may not run it.", c.grammar, c.summary)
}

/// `help <command>`, for someone who may run it (on `envs`, for a per-environment one).
pub fn help_one(c: &CommandHelp, envs: &[&str]) -> String {
    let on = if c.per_env {
        format!(" (you may on: {})", envs.join(", "))
    } else {
        String::new()
    };
    format!("`{}`: {}{on}", c.grammar, c.summary)
}

/// `help`: the commands someone may run.
pub fn help_all(prefix: &str, allowed: &[&CommandHelp], no_env_grants: bool) -> String {
    let mut lines = vec![format!("Commands you may run (prefix `{prefix}`, or mention me):")];
    for c in allowed {
        lines.push(format!("• `{}` — {}", c.grammar, c.summary));
    }
    if no_env_grants {
        lines.push("You have no environment permissions; ask an admin.".into());
    }
    lines.join("\n")
}

fn who_may(req: &Requirement, env: &str) -> String {
    if req.roles.is_empty() {
        format!("anyone allowed to approve on {env}")
    } else {
        format!("role {}", req.roles.join(" or "))
    }
}

/// An approval request as the channel shows it: who asked for what, the plan, who may
/// approve and how, the votes so far and where it stands.
pub fn approval_request(job: &JobRecord, a: &ApprovalRecord, req: &Requirement, status: &str, prefix: &str) -> String {
    let expires = a
        .expires_at
        .map(|t| t.format("%H:%M UTC").to_string())
        .unwrap_or_default();
    let mut lines = vec![
        format!(
            "🔐 **Approval needed** · job #{} · {} {} requested by {}",
            job.id,
            job.env,
            job_command(&job.action, &job.args),
            job.requester_name
        ),
        a.plan.clone(),
        format!(
            "Needs {} approval(s) from {}, not {}. Expires at {expires}. `{prefix} approve {}` / `{prefix} deny {} [reason]`",
            req.approvers,
            who_may(req, &job.env),
            job.requester_name,
            job.id,
            job.id
        ),
    ];
    for v in &a.votes {
        let reason = v.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
        lines.push(format!(
            "• {} by {}{reason}",
            if v.decision == crate::store::Choice::Approve {
                "approved"
            } else {
                "denied"
            },
            v.user_name
        ));
    }
    if !status.is_empty() {
        lines.push(status.to_string());
    }
    lines.join("\n")
}

pub fn approval_is(id: u64, state: crate::store::ApprovalState) -> String {
    use crate::store::ApprovalState::*;
    let word = match state {
        Pending => "pending",
        // Its job has been started: to the people asking, it is approved.
        Approved | Started => "approved",
        Denied => "denied",
        Expired => "expired",
        Void => "void",
    };
    format!("Job #{id}'s approval request is {word}.")
}

pub fn no_approval(id: u64) -> String {
    format!("Job #{id} has no approval request.")
}

pub fn approval_expired(id: u64) -> String {
    format!("⌛ Job #{id}'s approval request has expired.")
}

pub fn own_request(id: u64) -> String {
    format!("✋ You requested job #{id}; someone else has to approve it.")
}

pub fn already_voted(id: u64) -> String {
    format!("You have already voted on job #{id}.")
}

pub fn already_decided(id: u64) -> String {
    format!("Job #{id} has already been decided.")
}

pub fn approval_needs_role(id: u64, roles: &[String], held: &[String]) -> String {
    let held = if held.is_empty() {
        "none".to_string()
    } else {
        held.join(", ")
    };
    format!(
        "⛔ Approving job #{id} needs the role {}; you have {held}.",
        roles.join(" or ")
    )
}

pub fn approved_needs_more(id: u64, have: usize, needed: u32) -> String {
    format!("✔ Approved ({have}/{needed}): job #{id} needs more approval.")
}

pub fn approved_runs_from_cli(id: u64, requester: &str) -> String {
    format!(
        "✅ Approved: job #{id} runs from {requester}'s CLI (at once if it is waiting, else when they run it again)."
    )
}

pub fn approved_starts_now(id: u64) -> String {
    format!("✅ Approved: job #{id} starts now.")
}

pub fn plan_timeout() -> String {
    "❌ AWS did not answer in time; nothing was requested".into()
}

/// Where an approval request stands, shown on the request's message.
pub const REQUEST_EXPIRED: &str = "⌛ Expired: nobody approved in time. Nothing was done.";
pub const REQUEST_APPROVED_FOR_CLI: &str = "✅ Approved: it runs from the CLI.";
pub const REQUEST_APPROVED_STARTING: &str = "✅ Approved: starting.";
pub const REQUEST_VOID: &str = "⚠️ Void: what this would do has changed since it was requested. Nothing was done.";

pub fn approved_starts_where_asked(id: u64, requester: &str) -> String {
    format!("✅ Approved: job #{id} starts where {requester} asked for it.")
}

pub fn cannot_start(id: u64, why: &str) -> String {
    format!("❌ job #{id} cannot start: {why}")
}

/// Told in the requester's channel when the plan changed before an approved job started.
pub fn void_for_requester(job: &JobRecord) -> String {
    format!(
        "⚠️ {}: the plan for job #{} ({} {}) changed after it was requested, so the approval is void and nothing was done. Request it again to see the new plan.",
        job.requester_name, job.id, job.env, job.action
    )
}

pub fn void_told(id: u64, requester: &str) -> String {
    format!(
        "⚠️ The plan for job #{id} changed since it was requested; the approval is void and {requester} has been told."
    )
}

/// The request's message when it was denied, or withdrawn by its requester (`own`); `why` is
/// empty or `: reason`.
pub fn request_ended(own: bool, by: &str, why: &str) -> String {
    let ended = if own { "Withdrawn" } else { "Denied" };
    format!("❌ {ended} by {by}{why}. Nothing was done.")
}

/// Told in the requester's channel when someone denied their request.
pub fn denied_for_requester(job: &JobRecord, by: &str, why: &str) -> String {
    format!(
        "❌ {}: job #{} ({} {}) was denied by {by}{why}.",
        job.requester_name, job.id, job.env, job.action
    )
}

/// The reply to a deny (`verb` is `denied`, or `withdrawn` for one's own request).
pub fn job_ended_by_vote(id: u64, verb: &str) -> String {
    format!("❌ Job #{id} {verb}.")
}

/// Where someone asked from, as an announcement says it.
fn from_surface(surface: crate::address::Surface) -> &'static str {
    use crate::address::{ChatPlatform, Surface};
    match surface {
        Surface::Cli => "the CLI",
        Surface::Chat(ChatPlatform::Console) => "the console",
        Surface::Chat(ChatPlatform::Discord) => "Discord",
        Surface::Chat(ChatPlatform::Slack) => "Slack",
    }
}

/// A mutating job's start, in the environment's announce channel.
pub fn job_started_announcement(
    id: u64,
    env: &str,
    verb: &str,
    version: Option<&str>,
    who: &str,
    surface: crate::address::Surface,
) -> String {
    let version = version.map(|v| format!(" ({v})")).unwrap_or_default();
    format!(
        "▶️ **{env} {verb}**{version} · job #{id} · started by {} from {}",
        crate::names::shorten(who, 60),
        from_surface(surface)
    )
}

/// A mutating job's end, in the environment's announce channel: `detail` is the first line of
/// its (redacted) result, shown for a failure or an interruption.
pub fn job_ended_announcement(
    id: u64,
    env: &str,
    verb: &str,
    state: JobState,
    detail: &str,
    took: std::time::Duration,
) -> String {
    let head = format!("**{env} {verb}** · job #{id}");
    let took = crate::bot::status::duration(took);
    let detail = crate::names::shorten(detail, 200);
    match state {
        JobState::Succeeded => format!("✅ {head} · succeeded in {took}"),
        JobState::Cancelled => format!("🛑 {head} · cancelled after {took}"),
        JobState::Failed => format!("❌ {head} · failed after {took}: {detail}"),
        other => format!("⚠️ {head} · {other} after {took}: {detail}"),
    }
}

/// A run without approval, in the environment's announce channel (`host`: where a CLI runs).
pub fn break_glass_announcement(
    who: &str,
    command: &str,
    surface: crate::address::Surface,
    host: Option<&str>,
    reason: &str,
) -> String {
    let host = host.map(|h| format!(" on {h}")).unwrap_or_default();
    format!(
        "🚨 **Break-glass** · {who} runs `{command}` from {}{host}, past approvals and freezes: {reason}",
        from_surface(surface)
    )
}
