//! `jobs`, `job <id>` and `cancel <id>`: the job history, one job, and cancelling a running or
//! queued job wherever it runs.

use std::sync::Arc;

use super::{audit, audit_read, internal};
use crate::bot::messages;
use crate::bot::port::ChatEvent;
use crate::bot::Inner;
use crate::permissions::Decision;
use crate::store::JobState;

pub(crate) fn command_cancel(inner: &Arc<Inner>, ev: &ChatEvent, id: u64) -> String {
    let job = match inner.store.job(id) {
        Ok(Some(j)) => j,
        Ok(None) => {
            audit_read(inner, ev, &format!("not found: no job #{id}"), None);
            return messages::no_such_job(id);
        }
        Err(e) => return internal(inner, ev, &e.to_string()),
    };
    let own = job.requester_id == ev.identity.user_id && job.platform == ev.identity.platform;
    if !own {
        if let Decision::Denied { missing } =
            inner
                .perms
                .check(&ev.identity, &job.env, crate::command::grant_of(&job.action))
        {
            audit(inner, ev, &format!("denied: cancel needs {missing}"), Some(id));
            return messages::denied_cancel(&missing);
        }
    }
    if job.state.is_finished() {
        audit(inner, ev, "cancel: not running", Some(id));
        return messages::job_not_running(id, job.state.as_str());
    }
    if inner.jobs.cancel(id) {
        audit(inner, ev, "ok: cancel requested", Some(id));
        return messages::cancel_requested(id);
    }
    if job.state == JobState::Queued {
        // Nothing runs yet (it waits for the environment or for approval): it simply ends.
        let why = format!("cancelled by {} before it started", ev.identity.display_name);
        return match inner.store.end_unstarted_job(id, JobState::Cancelled, &why) {
            Ok(true) => {
                audit(inner, ev, "ok: cancelled before it started", Some(id));
                messages::cancelled_before_start(id)
            }
            Ok(false) => messages::job_not_running(id, "finished"),
            Err(e) => internal(inner, ev, &e.to_string()),
        };
    }
    // It runs in another process: its owner acts on the request at its next heartbeat.
    match inner.store.request_cancel(id) {
        Ok(true) => {
            audit(inner, ev, "ok: cancel requested from its owner", Some(id));
            format!(
                "{}{}",
                messages::cancel_requested(id),
                job.owner.as_deref().map(messages::where_runs).unwrap_or_default()
            )
        }
        Ok(false) => {
            audit(inner, ev, "cancel: not running", Some(id));
            messages::job_not_running(id, job.state.as_str())
        }
        Err(e) => internal(inner, ev, &e.to_string()),
    }
}

pub(crate) fn command_jobs(inner: &Inner, ev: &ChatEvent) -> String {
    audit_read(inner, ev, "ok", None);
    match inner.store.recent_jobs(10) {
        Ok(jobs) if jobs.is_empty() => messages::no_jobs(),
        Ok(jobs) => jobs.iter().map(messages::job_line).collect::<Vec<_>>().join("\n"),
        Err(e) => internal(inner, ev, &e.to_string()),
    }
}

pub(crate) fn command_job(inner: &Inner, ev: &ChatEvent, id: u64) -> String {
    match inner.store.job(id) {
        Ok(Some(j)) => {
            audit_read(inner, ev, "ok", Some(id));
            messages::job_detail(&j)
        }
        Ok(None) => {
            // No job to refer to: the record stands on its own.
            audit_read(inner, ev, &format!("not found: no job #{id}"), None);
            messages::no_such_job(id)
        }
        Err(e) => internal(inner, ev, &e.to_string()),
    }
}
