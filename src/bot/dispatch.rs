//! The dispatcher: every command goes through rate limit → parse → permission → its
//! `command_<verb>` handler, and every outcome, allowed or denied, is written to the audit log.
//! User errors are shown verbatim; internal errors as a generic line plus a log entry.

use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};

use crate::bot::approval_flow;
use crate::bot::audit_batch;
use crate::bot::jobs;
use crate::bot::messages;
use crate::bot::port::ChatEvent;
use crate::bot::Inner;
use crate::command::{self, Action, Command, COMMANDS};
use crate::engine::{self, Ctx};
use crate::names::{quote, shorten, EnvName};
use crate::permissions::Decision;
use crate::progress::ProgressTx;
use crate::store::{AuditEntry, Durability, JobState, NewJob, StartOutcome};

/// How long `status` and `events` may take before the reply gives up.
const QUICK_TIMEOUT: Duration = Duration::from_secs(60);

/// The most characters of a command the audit log keeps (escaped like a quote in a reply).
const AUDIT_MAX_CHARS: usize = 500;

pub(crate) async fn handle(inner: &Arc<Inner>, ev: ChatEvent) -> Option<String> {
    // Replies quote what was typed; a secret someone pasted is masked as in the audit log.
    let reply = answer(inner, ev).await?;
    Some(inner.engine.redactor.redact(&reply))
}

async fn answer(inner: &Arc<Inner>, ev: ChatEvent) -> Option<String> {
    let who = &ev.identity;
    let key = format!("{}:{}", who.platform, who.user_id);
    if let Err(not_until) = inner.limiter.check_key(&key) {
        let wait = not_until.wait_time_from(DefaultClock::default().now()).as_secs().max(1);
        audit_read(inner, &ev, "rate limited", None);
        return Some(messages::rate_limited(wait));
    }
    let cmd = match command::parse(&ev.text) {
        Ok(c) => c,
        Err(e) => {
            audit_read(inner, &ev, &format!("malformed: {}", e.message), None);
            return Some(messages::usage_error(&e.to_string()));
        }
    };
    match cmd {
        Command::Env { env, action } => command_env(inner, &ev, env, action).await,
        Command::Help { topic } => Some(command_help(inner, &ev, topic.as_deref())),
        Command::Whoami => Some(command_whoami(inner, &ev)),
        Command::Approve { id } => approval_flow::approve(inner, &ev, id).await,
        Command::Deny { id, reason } => approval_flow::deny(inner, &ev, id, reason).await,
        other => {
            if !inner.perms.is_known(who) {
                audit_read(inner, &ev, "denied: no role", None);
                return Some(messages::denied_unknown_user());
            }
            Some(match other {
                Command::Envs => command_envs(inner, &ev),
                Command::Jobs => command_jobs(inner, &ev),
                Command::Job { id } => command_job(inner, &ev, id),
                Command::Cancel { id } => command_cancel(inner, &ev, id),
                Command::Schedules => {
                    audit_read(inner, &ev, "ok", None);
                    crate::schedule::describe(&inner.engine.config)
                }
                Command::Env { .. }
                | Command::Help { .. }
                | Command::Whoami
                | Command::Approve { .. }
                | Command::Deny { .. } => unreachable!("handled above"),
            })
        }
    }
}

/// Records a command that starts, changes or refuses work, on the disk before the reply.
pub(crate) fn audit(inner: &Inner, ev: &ChatEvent, outcome: &str, job: Option<u64>) {
    audit_as(inner, ev, outcome, job, Durability::Synced);
}

/// Records a command that only read something (or was refused before anything was looked
/// up): safe from a crash of this process, on the disk with the next synced commit.
fn audit_read(inner: &Inner, ev: &ChatEvent, outcome: &str, job: Option<u64>) {
    audit_as(inner, ev, outcome, job, Durability::Written);
}

fn audit_as(inner: &Inner, ev: &ChatEvent, outcome: &str, job: Option<u64>, durability: Durability) {
    let who = &ev.identity;
    let command = shorten(&inner.engine.redactor.redact(&ev.text), AUDIT_MAX_CHARS);
    let fields = [
        who.platform.as_str(),
        &who.user_id,
        &who.display_name,
        &ev.channel,
        &command,
        outcome,
    ];
    audit_batch::record(&inner.store, durability, AuditEntry::now(fields, job));
}

async fn command_env(inner: &Arc<Inner>, ev: &ChatEvent, env: EnvName, action: Action) -> Option<String> {
    if let Decision::Denied { missing } = inner.perms.check(&ev.identity, env.as_str(), action.verb()) {
        audit_read(inner, ev, &format!("denied: missing {missing}"), None);
        return Some(messages::denied(&missing));
    }
    let target = match inner.engine.target(env.as_str()) {
        Ok(t) => t,
        Err(e) => {
            audit_read(inner, ev, &format!("refused: {e}"), None);
            return Some(messages::unknown_env(&e.to_string()));
        }
    };
    if let Action::Deploy { roles } = &action {
        // Before any job exists: a typo in a role is not a failed job.
        if let Err(e) = engine::check_roles(&inner.engine.config, roles) {
            audit_read(inner, ev, &format!("refused: {e}"), None);
            return Some(messages::usage_error(&e.to_string()));
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
        let reply = match tokio::time::timeout(QUICK_TIMEOUT, engine::status(&ctx)).await {
            Ok(Ok(report)) => {
                let text = if matches!(action, Action::Status) {
                    report.to_string()
                } else {
                    let lines: Vec<String> = report
                        .events
                        .iter()
                        .filter_map(|e| crate::progress::plain_line(&crate::progress::Progress::StackEvent(e.clone())))
                        .collect();
                    if lines.is_empty() {
                        format!("no events for {}", report.stack_name)
                    } else {
                        lines.join("\n")
                    }
                };
                format!("```\n{}\n```", inner.engine.redactor.redact(text.trim_end()))
            }
            Ok(Err(e)) => format!("❌ {}", inner.engine.redactor.redact(&e.to_string())),
            Err(_) => "❌ AWS did not answer in time; try again".to_string(),
        };
        audit_read(inner, ev, &format!("ok: {}", action.verb()), None);
        return Some(reply);
    }
    let new = NewJob {
        requester_id: ev.identity.user_id.clone(),
        requester_name: ev.identity.display_name.clone(),
        platform: ev.identity.platform.clone(),
        channel: ev.channel.clone(),
        env: env.to_string(),
        action: action.verb().to_string(),
        args: action.stored_args(),
    };
    if action.mutates() {
        if let Some(req) =
            crate::approvals::requirement(&inner.engine.config.settings.approvals, env.as_str(), action.verb())
        {
            return approval_flow::request(inner, ev, new, target, action, req).await;
        }
    }
    start(inner, ev, new, action)
}

/// Records the job and takes its environment's lock in the store, atomically; refuses or
/// queues when any process (another replica, a console, the CLI) holds the environment.
fn start(inner: &Arc<Inner>, ev: &ChatEvent, new: NewJob, action: Action) -> Option<String> {
    let obtained = std::time::Instant::now();
    let env = new.env.clone();
    let outcome = match inner.store.start_job(&new, &inner.replica.id, inner.replica.lease) {
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
            // Registered before the task runs, so a cancel finds it at once.
            inner.jobs.register(id, &env);
            inner
                .tasks
                .spawn(jobs::execute(inner.clone(), job, action, lease, false));
            // The job's status message is the answer.
            return None;
        }
        StartOutcome::Busy(holder, lock) => (*holder, lock),
    };
    let where_runs = lock.owner.as_deref().map(messages::where_runs).unwrap_or_default();
    if !inner.engine.config.settings.chat.queue_when_busy {
        let Some(running) = holder else {
            audit(inner, ev, "busy", None);
            return Some(format!("⏸ {env} is busy; try again in a moment."));
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
        None => format!("🕒 Job #{id} is queued on {env}."),
    })
}

pub(crate) fn internal(inner: &Inner, ev: &ChatEvent, detail: &str) -> String {
    tracing::error!(error = %inner.engine.redactor.redact(detail), "internal error handling a command");
    audit(inner, ev, "error: internal", None);
    messages::internal_error()
}

fn command_cancel(inner: &Arc<Inner>, ev: &ChatEvent, id: u64) -> String {
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
        if let Decision::Denied { missing } = inner.perms.check(&ev.identity, &job.env, &job.action) {
            audit(inner, ev, &format!("denied: cancel needs {missing}"), Some(id));
            return messages::denied(&format!("{missing} (needed to cancel someone else's job)"));
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
                format!("🛑 Job #{id} is cancelled; it had not started.")
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

fn command_jobs(inner: &Inner, ev: &ChatEvent) -> String {
    audit_read(inner, ev, "ok", None);
    match inner.store.recent_jobs(10) {
        Ok(jobs) if jobs.is_empty() => "No jobs yet.".into(),
        Ok(jobs) => jobs.iter().map(messages::job_line).collect::<Vec<_>>().join("\n"),
        Err(e) => internal(inner, ev, &e.to_string()),
    }
}

fn command_job(inner: &Inner, ev: &ChatEvent, id: u64) -> String {
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

fn command_envs(inner: &Inner, ev: &ChatEvent) -> String {
    audit_read(inner, ev, "ok", None);
    let envs = &inner.engine.config.settings.environments;
    let held = inner.store.held_locks().unwrap_or_default();
    let mut lines = vec![format!("{} environment(s):", envs.len())];
    for name in envs.keys() {
        let running = held
            .iter()
            .find(|l| &l.env == name)
            .and_then(|l| l.job_id)
            .map(|id| format!(" (job #{id} running)"))
            .unwrap_or_default();
        lines.push(format!("• {name}{running}"));
    }
    lines.join("\n")
}

fn env_names(inner: &Inner) -> Vec<String> {
    inner.engine.config.settings.environments.keys().cloned().collect()
}

fn command_whoami(inner: &Inner, ev: &ChatEvent) -> String {
    audit_read(inner, ev, "ok", None);
    let who = &ev.identity;
    let roles = inner.perms.roles_of(who);
    let grants = inner.perms.grants(who, &env_names(inner));
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
        let mut by_env: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (env, action) in &grants {
            by_env.entry(env).or_default().push(action);
        }
        for (env, actions) in by_env {
            lines.push(format!("• {env}: {}", actions.join(", ")));
        }
    }
    lines.join("\n")
}

/// Help lists only what the asking user may run.
fn command_help(inner: &Inner, ev: &ChatEvent, topic: Option<&str>) -> String {
    audit_read(inner, ev, "ok", None);
    let who = &ev.identity;
    let grants = inner.perms.grants(who, &env_names(inner));
    let known = inner.perms.is_known(who);
    let may = |name: &str| -> bool {
        if command::actions().contains(&name) {
            grants.iter().any(|(_, a)| a == name)
        } else {
            matches!(name, "help" | "whoami") || known
        }
    };
    if let Some(t) = topic {
        let Some(c) = COMMANDS.iter().find(|c| c.name == t) else {
            return messages::usage_error(&format!("no help for {}", quote(t)));
        };
        if !may(c.name) {
            return format!("`{}`: {} — you may not run it.", c.grammar, c.summary);
        }
        let envs: Vec<&str> = grants
            .iter()
            .filter(|(_, a)| a == c.name)
            .map(|(e, _)| e.as_str())
            .collect();
        let on = if c.per_env {
            format!(" (you may on: {})", envs.join(", "))
        } else {
            String::new()
        };
        return format!("`{}`: {}{on}", c.grammar, c.summary);
    }
    let prefix = &inner.engine.config.settings.chat.prefix;
    let mut lines = vec![format!("Commands you may run (prefix `{prefix}`, or mention me):")];
    for c in COMMANDS.iter().filter(|c| may(c.name)) {
        lines.push(format!("• `{}` — {}", c.grammar, c.summary));
    }
    if grants.is_empty() {
        lines.push("You have no environment permissions; ask an admin.".into());
    }
    lines.join("\n")
}
