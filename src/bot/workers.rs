//! The workers' lookout: every `workers.poll_secs`, one look at each environment's worker
//! group (one DescribeAutoScalingGroups call). When a worker waits in a lifecycle hook, a
//! `lifecycle` job is started under the environment's lock, which answers every waiting
//! worker (`engine::workers`) and posts one line per worker to the announce channel.
//!
//! Once across replicas and restarts: the job takes the environment's lock in the store, so
//! of two replicas that saw the same worker wait, one starts the job and the other finds the
//! environment busy; the job looks at the group again under the lock, so a worker answered
//! meanwhile is not configured twice. A job whose replica dies is ended as interrupted on
//! takeover (it has no chat to resume in), its workers still wait in their hooks, and the
//! next round, on any replica, answers them. While another job holds the environment, the
//! waiting workers get a heartbeat each round and wait: a `scale` job answers the workers it
//! starts itself; a deploy's own inventory already includes them (they are running).
//!
//! Polling is the way in for now; a queued "EC2 Instance-launch Lifecycle Action" event (the
//! pushed-events queue) can call [`answer_env`] for its environment the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::address::Surface;
use crate::bot::{announcements, messages, Inner};
use crate::cloud::workers as group;
use crate::command::Action;
use crate::engine::workers::{keep_waiting, lifecycle_round, Handled};
use crate::engine::Ctx;
use crate::error::Error;
use crate::progress::ProgressTx;
use crate::store::{AuditEntry, Checks, JobState, NewJob, StartOutcome};

/// Who lifecycle jobs are recorded as: no person asked for them.
pub const REQUESTER: &str = "argos";

/// Starts the lookout, unless `workers.poll_secs` is 0. It holds the bot weakly: a bot that
/// is dropped (a test playing a crash) stops looking.
pub(crate) fn spawn_lookout(inner: &Arc<Inner>) {
    let every = inner.engine.config.settings.workers.poll_secs;
    if every == 0 {
        return;
    }
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(every)).await;
            let Some(inner) = weak.upgrade() else { break };
            if inner.replica.retired() {
                break;
            }
            round(&inner).await;
        }
    });
}

/// One look at every environment; returns the ids of the lifecycle jobs it started.
pub(crate) async fn round(inner: &Arc<Inner>) -> Vec<u64> {
    let mut started = Vec::new();
    let envs: Vec<String> = inner.engine.config.settings.environments.keys().cloned().collect();
    for env in envs {
        if let Some(id) = look_at(inner, &env).await {
            started.push(id);
        }
    }
    started
}

/// Looks at `env`'s group; starts a lifecycle job when a worker waits and the environment is
/// free, else keeps the waiting workers' hooks alive.
async fn look_at(inner: &Arc<Inner>, env: &str) -> Option<u64> {
    let target = inner.engine.target(env).ok()?;
    let names = &target.names;
    let found = group::find(&target.aws, &names.app, names.env.as_str()).await;
    let g = match found {
        Ok(Some(g)) if g.waiting() => g,
        Ok(_) => return None,
        Err(e) => {
            tracing::warn!(env = %env, error = %inner.engine.redactor.redact(&e.to_string()), "cannot read the worker group");
            return None;
        }
    };
    answer_env(inner, env).await.or_else(|| {
        // Busy: keep the hooks alive until the environment is free.
        let inner = inner.clone();
        let (env, g) = (env.to_string(), g.clone());
        inner.clone().tasks.spawn(async move {
            if let Ok(target) = inner.engine.target(&env) {
                keep_waiting(&quiet_ctx(&inner, target, None), &g).await;
            }
        });
        None
    })
}

/// Starts a lifecycle job on `env` if the environment is free; returns its id. The job runs
/// in the background and answers every worker waiting then.
pub(crate) async fn answer_env(inner: &Arc<Inner>, env: &str) -> Option<u64> {
    let action = Action::Lifecycle;
    let new = NewJob {
        requester_id: REQUESTER.into(),
        requester_name: REQUESTER.into(),
        // No person and no chat: the job speaks through the announce channel only, and is
        // never resumed elsewhere (the next round starts a new one).
        platform: Surface::Cli,
        channel: format!("cli:{}", crate::names::hostname()),
        env: env.to_string(),
        action: action.verb().to_string(),
        args: action.stored_args(),
        person: format!("argos:{}", inner.replica.id),
        break_glass: None,
    };
    let obtained = Instant::now();
    let outcome = inner
        .store
        .start_job_with(&new, &inner.replica.id, inner.replica.lease, &Checks::default());
    let (id, token) = match outcome {
        Ok(StartOutcome::Started { id, token }) => (id, token),
        Ok(StartOutcome::Busy(..)) | Ok(StartOutcome::Refused(_)) => return None,
        Err(e) => {
            tracing::warn!(env = %env, error = %e, "cannot start a lifecycle job");
            return None;
        }
    };
    let lease = inner.replica.hold(id, env, token, obtained);
    let task = inner.clone();
    let env = env.to_string();
    let span = crate::bot::jobs::job_span(id, &env, action.verb());
    inner.tasks.spawn(tracing::Instrument::instrument(
        async move { run(task, id, env, lease).await },
        span,
    ));
    Some(id)
}

/// A context for work outside a job's chat: progress goes nowhere but the log.
fn quiet_ctx(inner: &Inner, target: crate::engine::Target, job: Option<(u64, std::path::PathBuf)>) -> Ctx {
    let cancel = match &job {
        Some((id, _)) => inner.jobs.register(*id, target.env.as_str()),
        None => tokio_util::sync::CancellationToken::new(),
    };
    Ctx {
        engine: inner.engine.clone(),
        target: target.for_job(REQUESTER, job.as_ref().map(|(id, _)| *id)),
        progress: ProgressTx::discard(),
        cancel,
        log: job.map(|(_, log)| log),
    }
}

async fn run(inner: Arc<Inner>, id: u64, env: String, lease: Arc<crate::bot::replica::JobLease>) {
    let token = lease.token;
    let logs = inner.engine.config.state_dir().join("logs");
    let _ = std::fs::create_dir_all(&logs);
    let log = logs.join(format!("job-{id}.log"));
    let _ = inner.store.mark_running(id, token, &log.to_string_lossy());
    // The playbook's output reaches the web page's log view as a chat job's does.
    let log_copy = crate::bot::log_copy::start(
        inner.store.clone(),
        id,
        log.clone(),
        inner.engine.config.settings.web.log_limit_bytes,
    );
    let began = Instant::now();
    let result = match inner.engine.target(&env) {
        Err(e) => Err(e),
        Ok(target) => {
            let ctx = quiet_ctx(&inner, target, Some((id, log.clone())));
            tokio::select! {
                r = lifecycle_round(&ctx) => r,
                _ = lease.lost() => {
                    // Taken over: the new owner ends this job; the workers still wait.
                    tracing::warn!(job = id, "stopped answering the workers' hooks: the lease is gone");
                    log_copy.finish().await;
                    inner.replica.release(id);
                    inner.jobs.unregister(id);
                    return;
                }
            }
        }
    };
    log_copy.finish().await;
    let (state, text) = match &result {
        Ok(handled) if handled.is_empty() => (JobState::Succeeded, "no worker waited".to_string()),
        // A worker whose configuration failed fails the job, so `jobs` and the page show it.
        Ok(handled) => (
            if handled.iter().any(|h| matches!(h, Handled::Abandoned { .. })) {
                JobState::Failed
            } else {
                JobState::Succeeded
            },
            handled.iter().map(Handled::line).collect::<Vec<_>>().join("; "),
        ),
        Err(Error::Cancelled) => (JobState::Cancelled, "cancelled".to_string()),
        Err(e) => (JobState::Failed, inner.engine.redactor.redact(&e.to_string())),
    };
    let ended = lease.valid() && inner.store.finish_and_release(id, token, state, &text).is_ok();
    inner.replica.release(id);
    if ended {
        let config = &inner.engine.config;
        for h in result.iter().flatten() {
            let key = format!("worker-{}-{}", h.instance(), kind(h));
            let text = messages::worker_announcement(&env, id, h);
            announcements::announce(&inner.store, config, &env, &text, &key, None);
        }
        let _ = inner.store.audit(AuditEntry::system(
            "bot",
            REQUESTER,
            "-",
            &format!("{env} lifecycle"),
            &format!("{state}: job #{id}: {}", crate::names::shorten(&text, 300)),
            Some(id),
        ));
        crate::metrics::get().job_finished("lifecycle", state.as_str(), began.elapsed().as_secs_f64());
    }
    // After the end is recorded: a queued job of this process tries the lock at once.
    inner.jobs.unregister(id);
}

/// The hook an answer closed: one announcement per worker and hook.
fn kind(h: &Handled) -> &'static str {
    match h {
        Handled::Configured { .. } | Handled::Abandoned { .. } => "launch",
        Handled::Released { .. } | Handled::ReleasedUndrained { .. } => "terminate",
    }
}
