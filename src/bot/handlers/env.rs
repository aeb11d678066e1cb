//! `<env> <verb>`: an operation on one environment. Reads (`status`, `events`) answer at once;
//! everything else becomes a job, after an approval where the environment's policy asks for
//! one, started under the environment's lock or queued behind the job that holds it.

use std::sync::Arc;
use std::time::Duration;

use super::{audit, audit_read, internal};
use crate::bot::approval_flow;
use crate::bot::jobs;
use crate::bot::messages;
use crate::bot::port::ChatEvent;
use crate::bot::Inner;
use crate::command::{Action, EnvOptions};
use crate::engine::{self, Ctx};
use crate::names::EnvName;
use crate::permissions::Decision;
use crate::progress::ProgressTx;
use crate::store::{JobState, NewJob, StartOutcome};

/// How long `status` and `events` may take before the reply gives up.
const QUICK_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) async fn command_env(
    inner: &Arc<Inner>,
    ev: &ChatEvent,
    env: EnvName,
    action: Action,
    options: EnvOptions,
) -> Option<String> {
    if let Decision::Denied { missing } = inner.perms.check(&ev.identity, env.as_str(), action.verb()) {
        audit_read(inner, ev, &format!("denied: missing {missing}"), None);
        return Some(messages::denied(&missing));
    }
    if options.break_glass.is_some() {
        if let Decision::Denied { missing } = inner.perms.check(&ev.identity, env.as_str(), "break-glass") {
            audit_read(inner, ev, &format!("denied: missing {missing}"), None);
            return Some(messages::denied(&missing));
        }
    }
    let target = match inner.engine.target(env.as_str()) {
        Ok(t) => t,
        Err(e) => {
            audit_read(inner, ev, &format!("refused: {e}"), None);
            return Some(messages::unknown_env(&e.to_string()));
        }
    };
    if let Action::Deploy { roles, .. } = &action {
        // Before any job exists: a typo in a role is not a failed job.
        if let Err(e) = engine::check_roles(&inner.engine.config, roles) {
            audit_read(inner, ev, &format!("refused: {e}"), None);
            return Some(messages::usage_error(&e.to_string()));
        }
    }
    if let Action::Update { revert_drift: true, .. } = &action {
        // Before any job or approval exists: without recorded drift there is nothing to revert.
        if let Err(e) = engine::check_revertable(&inner.engine, env.as_str()) {
            audit(inner, ev, &format!("refused: {e}"), None);
            return Some(messages::refused(&e.to_string()));
        }
    }
    if !action.is_job() {
        let ctx = Ctx {
            engine: inner.engine.clone(),
            target,
            progress: ProgressTx::discard(),
            cancel: Default::default(),
            log: None,
        };
        let redact = |text: &str| inner.engine.redactor.redact(text);
        let reply = match tokio::time::timeout(QUICK_TIMEOUT, engine::run(&ctx, &action)).await {
            Ok(Ok(engine::Outcome::Report(report))) if matches!(action, Action::Events) => {
                messages::events(&report, redact)
            }
            Ok(Ok(engine::Outcome::Report(report))) => {
                let running = deployed(inner, &ctx).await;
                let drift = inner.store.last_drift(env.as_str()).ok().flatten();
                messages::status(&report, redact)
                    + &running
                    + &messages::status_drift(drift.as_ref(), chrono::Utc::now())
            }
            Ok(Ok(engine::Outcome::History(h))) => messages::history(&h),
            Ok(Ok(engine::Outcome::Done(s))) => {
                messages::failed(&format!("{} gave a job's summary: {}", action.verb(), s.headline))
            }
            Ok(Ok(engine::Outcome::Drift(r))) => {
                messages::failed(&format!("{} gave a job's summary: {}", action.verb(), r.stack_name))
            }
            Ok(Err(e)) => messages::failed(&redact(&e.to_string())),
            Err(_) => messages::aws_timeout(),
        };
        audit_read(inner, ev, &format!("ok: {}", action.verb()), None);
        return Some(reply);
    }
    // The commit, before any job exists: an unknown ref is refused now, and the job deploys
    // this commit wherever the branch moves meanwhile.
    let pinned = match engine::versions::pin(&inner.engine, env.as_str(), action).await {
        Ok(p) => p,
        Err(e) => {
            let e = inner.engine.redactor.redact(&e.to_string());
            audit_read(inner, ev, &format!("refused: {e}"), None);
            return Some(messages::refused(&e));
        }
    };
    let action = pinned.action;
    let person = crate::holds::person_of(inner.perms.people(), &ev.identity);
    if action.mutates() {
        // Before an approval is asked for: nobody should approve what a hold or a freeze
        // refuses. The start decides again, under the environment's lock.
        match crate::holds::precheck(&inner.store, &inner.engine.config, env.as_str(), &person, &options) {
            Ok(Some(r)) => return Some(refuse(inner, ev, env.as_str(), &r)),
            Ok(None) => {}
            Err(e) => return Some(internal(inner, ev, &e.to_string())),
        }
    }
    let new = NewJob {
        requester_id: ev.identity.user_id.clone(),
        requester_name: ev.identity.display_name.clone(),
        platform: ev.identity.platform,
        channel: ev.channel.clone(),
        env: env.to_string(),
        action: action.verb().to_string(),
        args: action.stored_args(),
        person,
        break_glass: options.break_glass.clone(),
    };
    if action.mutates() {
        let settings = &inner.engine.config.settings.approvals;
        let outside_rule = pinned.needs_approval.is_some();
        if let Some(req) = crate::approvals::requirement_for(settings, env.as_str(), action.verb(), outside_rule) {
            return approval_flow::request(inner, ev, new, target, action, req).await;
        }
    }
    start(inner, ev, new, action, options.confirm)
}

/// Answers a change that a hold or a freeze refuses (audited).
fn refuse(inner: &Inner, ev: &ChatEvent, env: &str, r: &crate::store::Refusal) -> String {
    audit(inner, ev, &messages::refusal_audit(r), None);
    let prefix = &inner.engine.config.settings.chat.prefix;
    messages::refusal(env, prefix, ev.text.trim(), r)
}

/// Records the job and takes its environment's lock in the store, atomically; refuses or
/// queues when any process (another replica, a console, the CLI) holds the environment.
fn start(inner: &Arc<Inner>, ev: &ChatEvent, new: NewJob, action: Action, confirmed: bool) -> Option<String> {
    let obtained = std::time::Instant::now();
    let env = new.env.clone();
    let checks = crate::holds::checks(&inner.engine.config, &env, confirmed);
    let outcome = match inner
        .store
        .start_job_with(&new, &inner.replica.id, inner.replica.lease, &checks)
    {
        Ok(o) => o,
        Err(e) => return Some(internal(inner, ev, &e.to_string())),
    };
    let (holder, lock) = match outcome {
        StartOutcome::Started { id, token } => {
            let lease = inner.replica.hold(id, &env, token, obtained);
            let job = match inner.store.job(id) {
                Ok(Some(j)) => j,
                Ok(None) => return Some(internal(inner, ev, "job vanished after insert")),
                Err(e) => return Some(internal(inner, ev, &e.to_string())),
            };
            audit(inner, ev, &format!("ok: job #{id} started"), Some(id));
            if let Some(why) = &new.break_glass {
                audit(inner, ev, &format!("break-glass: {why}"), Some(id));
                let command = format!("{env} {}", action.verb());
                let surface = ev.identity.platform.as_str();
                let text = messages::announced::break_glass(&ev.identity.display_name, &command, surface, why);
                crate::bot::notices::post(inner, &env, &text, &format!("job-{id}-break-glass"));
            }
            // Registered before the task runs, so a cancel finds it at once.
            inner.jobs.register(id, &env);
            inner
                .tasks
                .spawn(jobs::execute(inner.clone(), job, action, lease, false));
            // The job's status message is the answer.
            return None;
        }
        StartOutcome::Busy(holder, lock) => (*holder, lock),
        StartOutcome::Refused(r) => return Some(refuse(inner, ev, &env, &r)),
    };
    let where_runs = lock.owner.as_deref().map(messages::where_runs).unwrap_or_default();
    if !inner.engine.config.settings.chat.queue_when_busy {
        let Some(running) = holder else {
            audit(inner, ev, "busy", None);
            return Some(messages::busy_elsewhere(&env));
        };
        audit(inner, ev, &format!("busy: job #{} running", running.id), None);
        return Some(format!("{}{where_runs}", messages::busy(&env, &running)));
    }
    // Queue behind the running job: recorded now, started when the lock is free, by this
    // process (or, if it dies meanwhile, by a live replica that adopts the job).
    let id = match inner
        .store
        .insert_job_for(&new, JobState::Queued, Some(&inner.replica.id))
    {
        Ok(id) => id,
        Err(e) => return Some(internal(inner, ev, &e.to_string())),
    };
    audit(inner, ev, &format!("queued as job #{id}"), Some(id));
    let task_inner = inner.clone();
    inner.tasks.spawn(async move {
        if let Some(lease) = jobs::wait_for_lock(&task_inner, id).await {
            if let Ok(Some(job)) = task_inner.store.job(id) {
                jobs::execute(task_inner.clone(), job, action, lease, false).await;
            }
        }
    });
    Some(match holder {
        Some(r) => messages::queued(&env, id, &r),
        None => messages::queued_behind_nobody(&env, id),
    })
}

/// What runs on the environment now, for `status`: its last good deploy and how far behind
/// its default ref that is (empty when versions are off or nothing was deployed).
async fn deployed(inner: &Inner, ctx: &Ctx) -> String {
    let settings = &ctx.target.settings;
    match engine::versions::deployed(&inner.engine, ctx.target.env.as_str(), settings).await {
        Some((job, behind)) => messages::deployed(&job, behind, engine::versions::default_ref(settings)),
        None => String::new(),
    }
}
