//! A CLI command as a job among the others: its row, its environment lock and lease (renewed
//! by a heartbeat thread while it runs), its audit records, and the reaping of a dead CLI's
//! job that still holds an environment.

use std::sync::Arc;

use crate::address::Surface;
use crate::bot::announcements::{self, JobFacts};
use crate::bot::replica::{JobLease, Replica};
use crate::command::Action;
use crate::config::Config;
use crate::engine::Engine;
use crate::error::Error;
use crate::permissions::Identity;
use crate::store::{AuditEntry, Checks, EnvLockRecord, JobRecord, JobState, NewJob, StartOutcome, Store};

use super::{Outcome, EXIT_FAILED, EXIT_USAGE};

/// The job a CLI command runs as: its row, its lock and lease, its audit records.
/// This CLI process in the store: the store, its replica record, who runs it.
pub(crate) struct Session {
    pub(crate) store: Store,
    pub(crate) replica: Arc<Replica>,
    pub(crate) user: String,
    /// Who the user is across surfaces (`people:`), for holds.
    pub(crate) person: String,
    pub(crate) channel: String,
}

impl Session {
    /// Opens the configured store, sweeps what a dead argos on this host left running, and
    /// registers this process as a `cli` replica with a heartbeat.
    pub(crate) async fn open(config: &Config) -> Result<Session, (i32, String)> {
        let store = open_store(config).await?;
        let runs = crate::ansible::runs_dir(&config.state_dir());
        if let Ok(report) = tokio::task::spawn_blocking(move || crate::ansible::sweep_orphans(Some(&runs))).await {
            if !report.is_empty() {
                tracing::warn!(%report, "swept what a dead argos process left running");
            }
        }
        let replica = Replica::register(
            store.clone(),
            "cli",
            &["cli"],
            crate::store::LeaseSettings::from_config(&config.settings.store),
        )
        .map_err(|e| (EXIT_FAILED, e))?;
        let replica = Arc::new(replica);
        replica.spawn_heartbeat();
        let user = std::env::var("USER").unwrap_or_else(|_| "cli".into());
        let people = crate::people::People::new(&config.settings.people);
        Ok(Session {
            store,
            replica,
            person: crate::holds::person_of(&people, &Identity::named(Surface::Cli, &user)),
            user,
            channel: format!("cli:{}", crate::names::hostname()),
        })
    }

    pub(crate) fn new_job(&self, env: &str, action: &Action, break_glass: Option<&str>) -> NewJob {
        NewJob {
            requester_id: self.user.clone(),
            requester_name: self.user.clone(),
            platform: Surface::Cli,
            channel: self.channel.clone(),
            env: env.to_string(),
            action: action.verb().to_string(),
            args: action.stored_args(),
            person: self.person.clone(),
            break_glass: break_glass.map(str::to_string),
        }
    }

    pub(crate) fn audit(&self, command: &str, outcome: &str, job: Option<u64>) {
        if let Err(e) = self.store.audit(AuditEntry::by(
            &Identity::named(Surface::Cli, &self.user),
            &self.channel,
            command,
            outcome,
            job,
        )) {
            eprintln!("warning: cannot write the audit log: {e}");
        }
    }
}

/// The shared store the config names (SQLite in the state folder by default).
pub(crate) async fn open_store(config: &Config) -> Result<Store, (i32, String)> {
    let url = config.database_url();
    let path = config.database_path();
    tokio::task::spawn_blocking(move || Store::open_configured(url.as_deref(), &path))
        .await
        .map_err(|e| (EXIT_FAILED, e.to_string()))?
        .map_err(|e| (EXIT_FAILED, e.to_string()))
}

/// Records a command the CLI refused before it became a job (an unknown environment or
/// role, a destroy not confirmed), so the audit log has every command, whatever it named.
pub(crate) async fn audit_refusal(config: &Config, command: &str, outcome: &str) {
    let url = config.database_url();
    let path = config.database_path();
    let user = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    let channel = format!("cli:{}", crate::names::hostname());
    let command = crate::names::shorten(&config.redactor().redact(command), 500);
    let outcome = outcome.to_string();
    let written = tokio::task::spawn_blocking(move || {
        let entry = AuditEntry::by(
            &Identity::named(Surface::Cli, &user),
            &channel,
            &command,
            &outcome,
            None,
        );
        Store::open_configured(url.as_deref(), &path)?.audit(entry)
    })
    .await;
    if let Ok(Err(e)) = written {
        eprintln!("warning: cannot write the audit log: {e}");
    }
}

/// The job a CLI command runs as.
pub(crate) struct CliJob {
    pub(crate) session: Session,
    pub(crate) lease: Arc<JobLease>,
    pub(crate) id: u64,
    pub(crate) env: String,
    pub(crate) command: String,
    /// What the job's log lines are written in (the bot's jobs use the same span).
    pub(crate) span: tracing::Span,
    /// When it took the environment's lock (its announced duration counts from here).
    began: std::time::Instant,
}

impl CliJob {
    fn new(session: Session, lease: Arc<JobLease>, id: u64, env: &str, command: String) -> CliJob {
        // `command` is `<env> <verb>`.
        let action = command.rsplit(' ').next().unwrap_or_default();
        let span = crate::bot::jobs::job_span(id, env, action);
        span.in_scope(|| tracing::info!(requester = %session.user, "job started"));
        CliJob {
            session,
            lease,
            id,
            env: env.to_string(),
            command,
            span,
            began: std::time::Instant::now(),
        }
    }

    /// The job as its announcements tell it.
    fn facts<'a>(&'a self, action: &'a Action) -> JobFacts<'a> {
        let s = &self.session;
        JobFacts {
            id: self.id,
            env: &self.env,
            action,
            who: &s.user,
            surface: Surface::Cli,
            channel: &s.channel,
        }
    }

    /// Announces the start of a mutating job in the environment's announce channel.
    pub(crate) fn announce_start(&self, config: &Config, action: &Action) {
        warn_unqueued(announcements::job_started(
            &self.session.store,
            config,
            &self.facts(action),
        ));
    }
}

/// The CLI says so when the store refused an announcement (no announce channel is no news).
fn warn_unqueued(announced: announcements::Announced) {
    if let announcements::Announced::Failed(e) = announced {
        eprintln!("warning: cannot queue the announcement: {e}");
    }
}

impl CliJob {
    /// Records a new job and takes its environment's lock, or says who holds it (another
    /// job, a hold, a freeze).
    pub(crate) fn start(
        session: Session,
        config: &Config,
        env: &str,
        action: &Action,
        break_glass: Option<&str>,
        checks: &Checks,
    ) -> Result<CliJob, (i32, String)> {
        let command = format!("{env} {}", action.verb());
        let new = session.new_job(env, action, break_glass);
        let (store, replica) = (&session.store, &session.replica);
        let lease = replica.lease;
        let audit = |outcome: &str, job: Option<u64>| session.audit(&command, outcome, job);
        // One retry: a lock left by a CLI that died is freed by the first look at it.
        for attempt in 0..2 {
            let obtained = std::time::Instant::now();
            match store.start_job_with(&new, &replica.id, lease, checks) {
                Ok(StartOutcome::Started { id, token }) => {
                    audit(&format!("ok: job #{id} started"), Some(id));
                    let held = replica.hold(id, env, token, obtained);
                    return Ok(CliJob::new(session, held, id, env, command));
                }
                Ok(StartOutcome::Refused(r)) => {
                    audit(&crate::bot::messages::refusal_audit(&r), None);
                    replica.retire();
                    return Err((EXIT_USAGE, crate::bot::messages::refusal(env, "argos", &command, &r)));
                }
                Ok(StartOutcome::Busy(holder, lock)) => {
                    if attempt == 0
                        && !lock.live
                        && reap_dead_cli_job(store, config, replica, &lock, holder.as_ref().as_ref())
                    {
                        continue;
                    }
                    let text = match holder.as_ref() {
                        Some(j) => format!(
                            "{env} is busy: job #{} ({} by {} via {}) is {}{}{}",
                            j.id,
                            j.action,
                            j.requester_name,
                            j.platform,
                            j.state,
                            lock.owner.as_deref().map(|o| format!(" in {o}")).unwrap_or_default(),
                            if lock.live {
                                ""
                            } else {
                                " (its process stopped; a bot takes it over)"
                            }
                        ),
                        None => format!("{env} is busy"),
                    };
                    audit(&format!("busy: {text}"), None);
                    replica.retire();
                    return Err((EXIT_USAGE, format!("{text}; nothing was started")));
                }
                Err(e) => {
                    replica.retire();
                    return Err((EXIT_FAILED, e.to_string()));
                }
            }
        }
        replica.retire();
        Err((EXIT_USAGE, format!("{env} is busy; nothing was started")))
    }

    /// Takes the environment's lock for an approved job recorded earlier.
    pub(crate) fn start_approved(
        session: Session,
        id: u64,
        env: &str,
        command: String,
    ) -> Result<CliJob, (i32, String)> {
        let obtained = std::time::Instant::now();
        match session
            .store
            .lock_for_job(id, &session.replica.id, session.replica.lease)
        {
            Ok(Some(token)) => {
                session.audit(&command, &format!("ok: approved job #{id} started"), Some(id));
                let lease = session.replica.hold(id, env, token, obtained);
                Ok(CliJob::new(session, lease, id, env, command))
            }
            Ok(None) => {
                session.replica.retire();
                Err((
                    EXIT_USAGE,
                    format!("{env} is busy; approved job #{id} waits: run the command again when it is free"),
                ))
            }
            Err(e) => {
                session.replica.retire();
                Err((EXIT_FAILED, e.to_string()))
            }
        }
    }

    /// Records the end (fenced by the lease's token), frees the environment and announces the
    /// end of a mutating job.
    pub(crate) async fn finish(self, action: &Action, result: &Result<Outcome, Error>, engine: &Engine) {
        let (config, redactor) = (&engine.config, &engine.redactor);
        let (state, text) = match result {
            Ok(Outcome::Summary(s)) => (JobState::Succeeded, s.headline.clone()),
            Ok(Outcome::Text(_)) => (JobState::Succeeded, "done".to_string()),
            Err(Error::Cancelled) => (JobState::Cancelled, "cancelled".to_string()),
            Err(e) => (JobState::Failed, redactor.redact(&e.to_string())),
        };
        let s = &self.session;
        if let Ok(Outcome::Summary(summary)) = result {
            if !summary.hosts.is_empty() {
                let _ = s.store.set_job_hosts(self.id, &summary.hosts);
            }
        }
        // `text` is redacted where it carries an error.
        self.span
            .in_scope(|| tracing::info!(state = %state, result = %text, "job finished"));
        if self.lease.valid() {
            let ended = s.store.finish_and_release(self.id, self.lease.token, state, &text);
            if let Err(e) = &ended {
                eprintln!("warning: cannot record the end of job #{}: {e}", self.id);
            }
            s.audit(&self.command, &format!("{state}: job #{}", self.id), Some(self.id));
            if ended.is_ok() {
                let took = self.began.elapsed();
                let facts = self.facts(action);
                warn_unqueued(announcements::job_ended(&s.store, config, &facts, state, &text, took));
            }
        }
        s.replica.release(self.id);
        s.replica.retire();
    }
}

/// A CLI job whose process died holds its environment until someone looks: the CLI cannot be
/// resumed elsewhere, so the job ends as interrupted and the lock is freed.
fn reap_dead_cli_job(
    store: &Store,
    config: &Config,
    replica: &Replica,
    lock: &EnvLockRecord,
    holder: Option<&JobRecord>,
) -> bool {
    let Some(job) = holder.filter(|j| j.platform == Surface::Cli) else {
        return false;
    };
    let Ok(Some(token)) = store.take_over(&lock.env, lock.token, &replica.id, replica.lease) else {
        return false;
    };
    let why = "the CLI process that ran it stopped";
    let ended = store
        .finish_and_release(
            job.id,
            token,
            JobState::Interrupted,
            &crate::bot::messages::interrupted(why),
        )
        .is_ok();
    if ended {
        announcements::job_ended_without_owner(store, config, job, JobState::Interrupted, why);
    }
    ended
}
