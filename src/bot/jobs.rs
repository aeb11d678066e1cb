//! Jobs: one operation per environment at a time (the environment's lock is a row in the
//! store, and the running job holds its lease and fencing token), persisted from acceptance to
//! result, cancellable from any process, and taken over when their owner dies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bot::announcements::{self, JobFacts};
use crate::bot::port::{Attachment, OutgoingMessage};
use crate::bot::replica::JobLease;
use crate::bot::reporter::Reporter;
use crate::bot::status::{Ending, StatusModel};
use crate::bot::Inner;
use crate::command::Action;
use crate::engine::{self, Ctx, Summary};
use crate::error::Error;
use crate::progress::ProgressTx;
use crate::store::{JobRecord, JobState, LockOutcome};

/// The jobs this process runs now, with their cancel tokens. Who holds an environment is
/// the store's business ([`crate::store::Store::start_job`]); this table only lets a cancel
/// reach the task that runs the job here.
#[derive(Default)]
pub struct JobTable {
    running: Mutex<HashMap<u64, (String, CancellationToken)>>,
    /// Woken when a job here ends, so a queued job of this process tries the lock at once.
    pub freed: tokio::sync::Notify,
}

impl JobTable {
    /// Records the job as the one running on `env`, as soon as it holds the lock, so a
    /// competitor is always told which job is in the way. Returns its cancel token.
    pub(crate) fn register(&self, id: u64, env: &str) -> CancellationToken {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .entry(id)
            .or_insert_with(|| (env.to_string(), CancellationToken::new()))
            .1
            .clone()
    }

    pub(crate) fn unregister(&self, id: u64) {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.freed.notify_waiters();
    }

    /// Cancels a running job; false if it is not running here.
    pub fn cancel(&self, id: u64) -> bool {
        match self.running.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// The running job on an environment, if any.
    pub fn running_on(&self, env: &str) -> Option<u64> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(_, (e, _))| e == env)
            .map(|(id, _)| *id)
    }

    pub fn running_ids(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        v.sort();
        v
    }
}

/// Runs a job's action. `status` and `events` answer at once and never become jobs.
async fn run_action(ctx: &Ctx, action: &Action) -> Result<Summary, Error> {
    match engine::run(ctx, action).await? {
        engine::Outcome::Done(summary) => Ok(summary),
        engine::Outcome::Drift(report) => Ok(crate::bot::messages::drift_summary(&report)),
        engine::Outcome::Report(_) | engine::Outcome::History(_) => {
            Err(Error::Invalid(format!("{} is not a job", action.verb())))
        }
    }
}

/// Waits until the queued job `id` gets its environment's lock (queue mode, or an approved
/// request behind a running job). Any process may hold the environment meanwhile. A hold or
/// a freeze that came meanwhile ends the job unstarted, saying so where it was asked.
pub(crate) async fn wait_for_lock(inner: &Inner, id: u64) -> Option<Arc<JobLease>> {
    let env = inner.store.job(id).ok().flatten().map(|j| j.env).unwrap_or_default();
    loop {
        let freed = inner.jobs.freed.notified();
        let obtained = Instant::now();
        // A warning hold was shown when the job was asked for; it does not stop it now.
        let checks = crate::holds::checks(&inner.engine.config, &env, true);
        match inner
            .store
            .lock_for_job_with(id, &inner.replica.id, inner.replica.lease, &checks)
        {
            Ok(LockOutcome::Locked(token)) => {
                let job = inner.store.job(id).ok().flatten()?;
                return Some(inner.replica.hold(id, &job.env, token, obtained));
            }
            Ok(LockOutcome::Refused(r)) => {
                let text = crate::bot::messages::refused_before_start(id, &env, &r);
                if let Ok(true) = inner.store.end_unstarted_job(id, JobState::Cancelled, &text) {
                    if let Some(job) = inner.store.job(id).ok().flatten() {
                        if let Some(port) = inner.port_of(job.platform) {
                            let _ = port.send(&job.channel, OutgoingMessage::text(text)).await;
                        }
                    }
                }
                return None;
            }
            Ok(LockOutcome::NotNow) => {
                // Ended meanwhile (cancelled, denied)?
                let job = inner.store.job(id).ok().flatten()?;
                if job.state.is_finished() {
                    return None;
                }
            }
            Err(e) => tracing::warn!(job = id, error = %e, "cannot take the environment's lock"),
        }
        // Another process's job may end at any time: look again soon.
        tokio::select! {
            _ = freed => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
        }
    }
}

/// Runs one job to its end: status message, engine operation, reporter, result. The job holds
/// `lease` throughout; every store write for it carries the lease's token, and the moment the
/// lease is lost (taken over after a pause, not renewed) the work stops without a word, since
/// the new owner carries on with the same status message. `resumed` jobs first follow any
/// stack operation still in flight, then re-run their (idempotent) operation.
pub(crate) async fn execute(inner: Arc<Inner>, job: JobRecord, action: Action, lease: Arc<JobLease>, resumed: bool) {
    let span = job_span(job.id, &job.env, &job.action);
    run(inner, job, action, lease, resumed).instrument(span).await
}

/// The span every log line of a job is written in: its id, environment and action travel
/// with each line (as fields of a JSON line). At ERROR level, the most severe, so that any
/// filter that lets a job's warnings through records the span too.
pub(crate) fn job_span(id: u64, env: &str, action: &str) -> tracing::Span {
    tracing::error_span!("job", job = id, env = %env, action = %action)
}

async fn run(inner: Arc<Inner>, job: JobRecord, action: Action, lease: Arc<JobLease>, resumed: bool) {
    let id = job.id;
    let token = lease.token;
    let cancel = inner.jobs.register(id, &job.env);
    // From the first start (a resumed job counts its whole life), else from now.
    let began = job.started_at.unwrap_or_else(chrono::Utc::now);
    let config = &inner.engine.config;
    let facts = JobFacts::of(&job, &action);
    let finish = |state: JobState, text: &str| {
        let r = inner.store.finish_and_release(id, token, state, text);
        inner.replica.release(id);
        inner.jobs.unregister(id);
        if r.is_ok() {
            let took = (chrono::Utc::now() - began).to_std().unwrap_or_default();
            crate::metrics::get().job_finished(&job.action, state.as_str(), took.as_secs_f64());
            // Only the job's recorded end is announced: a replica that lost the job says nothing.
            announcements::job_ended(&inner.store, config, &facts, state, text, took);
        }
        if let Err(e) = r {
            if e.is_fenced() {
                tracing::warn!(
                    job = id,
                    "another replica took this job over; its result is theirs to record"
                );
            } else {
                tracing::error!(job = id, error = %e, "cannot record the job's end");
            }
        }
    };
    let Some(port) = inner.port_of(job.platform) else {
        let why = format!("the {} adapter is not running", job.platform);
        finish(JobState::Interrupted, &crate::bot::messages::interrupted(&why));
        return;
    };
    let started = job.started_at.unwrap_or_else(chrono::Utc::now);
    let command = crate::bot::messages::job_command(&job.action, &job.args);
    let mut model = StatusModel::new(id, &job.env, &command, &job.requester_name, started);
    if resumed {
        model.note(crate::bot::messages::resumed(id));
    }
    if let Some(url) = &config.settings.web.public_url {
        model.note(crate::bot::messages::job_page_link(url, id));
    }
    let first = OutgoingMessage::text(model.render(chrono::Utc::now()));
    let message_id = match &job.status_message_id {
        Some(m) => {
            let _ = port.edit(&job.channel, m, first).await;
            m.clone()
        }
        None => match port.send(&job.channel, first).await {
            Ok(m) => {
                if let Err(e) = inner.store.set_status_message(id, token, &m) {
                    tracing::warn!(job = id, error = %e, "cannot record the status message");
                }
                m
            }
            Err(e) => {
                tracing::warn!(job = id, error = %inner.engine.redactor.redact(&e.0), "cannot post the status message");
                String::new()
            }
        },
    };
    let logs = inner.engine.config.state_dir().join("logs");
    let _ = std::fs::create_dir_all(&logs);
    let log = logs.join(format!("job-{id}.log"));
    if let Err(e) = inner.store.mark_running(id, token, &log.to_string_lossy()) {
        if e.is_fenced() {
            inner.replica.release(id);
            inner.jobs.unregister(id);
            return;
        }
        tracing::warn!(job = id, error = %e, "cannot record the job as running");
    }

    let log_copy = crate::bot::log_copy::start(
        inner.store.clone(),
        id,
        log.clone(),
        config.settings.web.log_limit_bytes,
    );
    tracing::info!(resumed, requester = %crate::names::shorten(&job.requester_name, 60), "job started");
    // Keyed by the job: a resumed job's start is not announced again.
    announcements::job_started(&inner.store, config, &facts);
    let (progress, rx) = ProgressTx::channel();
    let mut reporter = Reporter {
        port: port.clone(),
        channel: job.channel.clone(),
        message_id,
        pacing: port.pacing(&inner.engine.config.settings.chat),
        global: inner.global_edits.clone(),
        redactor: inner.engine.redactor.clone(),
        edits: 0,
        lease: Some((inner.store.clone(), lease.clone())),
    };
    let result = match inner.engine.target(&job.env) {
        Err(e) => {
            drop(progress);
            Err(e)
        }
        Ok(target) => {
            let ctx = Ctx {
                engine: inner.engine.clone(),
                // An assumed role's session is named after who asked and the job (CloudTrail).
                target: target.for_job(&job.requester_name, Some(id)),
                progress,
                cancel: cancel.clone(),
                log: Some(log.clone()),
            };
            // Both on the heap: an operation's future is large, and a debug build's worker
            // thread overflowed its stack polling the two side by side inline.
            let follow = Box::pin(reporter.follow(model, rx));
            let work = Box::pin(async {
                let r = async {
                    if resumed {
                        engine::wait_until_settled(&ctx).await?;
                    }
                    run_action(&ctx, &action).await
                }
                .await;
                drop(ctx);
                r
            });
            // Losing the lease drops the work: a running playbook is killed with its whole
            // tree, and nothing is cancelled on AWS (the new owner follows that operation).
            tokio::select! {
                (m, r) = async { tokio::join!(follow, work) } => {
                    model = m;
                    r
                }
                _ = lease.lost() => {
                    tracing::warn!(job = id, "stopped working on the job: its lease is gone");
                    inner.replica.release(id);
                    inner.jobs.unregister(id);
                    return;
                }
            }
        }
    };
    // In the store before the job's end is recorded: a page that sees the job finished has
    // its whole log.
    log_copy.finish().await;
    let redactor = &inner.engine.redactor;
    let (state, ending, text) = match result {
        Ok(summary) => {
            if !summary.hosts.is_empty() {
                let _ = inner.store.set_job_hosts(id, &summary.hosts);
            }
            let text = summary.headline.clone();
            (JobState::Succeeded, Ending::Succeeded(summary), text)
        }
        Err(Error::Cancelled) => (JobState::Cancelled, Ending::Cancelled, "cancelled".to_string()),
        Err(e) => {
            let text = redactor.redact(&e.to_string());
            (JobState::Failed, Ending::Failed(text.clone()), text)
        }
    };
    if !lease.valid() {
        inner.replica.release(id);
        inner.jobs.unregister(id);
        return;
    }
    let attachment = log.exists().then(|| Attachment {
        filename: format!("argos-job-{id}.log"),
        path: log.clone(),
    });
    if let (Action::Rollback { .. }, JobState::Succeeded) = (&action, state) {
        // Held before the environment's lock is let go, so nobody redeploys the bad commit
        // in between.
        let from = crate::holds::previous_commit(&inner.store, &job);
        let config = &inner.engine.config;
        if let Some(h) = crate::holds::after_rollback(&inner.store, config, inner.perms.people(), &job, from.as_deref())
        {
            model.note(crate::bot::messages::hold_taken(&h));
            let text = crate::bot::messages::announced::hold_taken(&h);
            crate::bot::notices::post(&inner, &h.env, &text, &format!("hold-{}-start", h.id));
        }
    }
    reporter.finish(&mut model, ending, attachment).await;
    // `text` is the job's recorded result, already redacted where it carries an error.
    tracing::info!(state = %state, result = %text, "job finished");
    finish(state, &text);
}
