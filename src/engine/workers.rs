//! Workers: the answers to the worker group's lifecycle hooks. A new worker waits in
//! `Pending:Wait` until the worker role has run on it alone at the environment's deployed
//! commit (CONTINUE), or failed to (ABANDON, with the reason: the group replaces it); a leaving
//! worker waits in `Terminating:Wait` until its drain playbook, if one is configured, has
//! stopped it taking tasks (CONTINUE either way). A heartbeat is recorded every
//! `workers.heartbeat_secs` while Argos works on them, so the hook does not time out.
//!
//! Whoever holds the environment's lock answers: the `lifecycle` job the bot's lookout starts,
//! or a `scale` job for the workers it asked for. Each answer starts from a fresh look at the
//! group under that lock, so a worker is configured once however many replicas saw it wait.
//! How Argos learns that a worker waits (polling the group now; a queued "EC2 Instance-launch
//! Lifecycle Action" event later) does not matter here: both end in [`lifecycle_round`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cloud::instances::{self, InstanceInfo};
use crate::cloud::stack;
use crate::cloud::workers::{self as group, Answer, GroupState, LAUNCH_HOOK, TERMINATE_HOOK};
use crate::command::Version;
use crate::engine::{deploy, versions, Ctx, Summary};
use crate::error::{Error, Result};
use crate::names::tags;

/// What became of one waiting worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Configured and let into service (CONTINUE); `at`: the version it runs, when known.
    Configured { instance: String, at: Option<String> },
    /// Its configuration failed (ABANDON): the group terminates and replaces it.
    Abandoned { instance: String, reason: String },
    /// Let go (CONTINUE), after its drain playbook when one is configured (`drained`).
    Released { instance: String, drained: bool },
    /// Its drain playbook failed; it was let go anyway (CONTINUE) with the reason.
    ReleasedUndrained { instance: String, reason: String },
}

impl Handled {
    pub fn instance(&self) -> &str {
        match self {
            Handled::Configured { instance, .. }
            | Handled::Abandoned { instance, .. }
            | Handled::Released { instance, .. }
            | Handled::ReleasedUndrained { instance, .. } => instance,
        }
    }

    /// One line for a summary or an announcement.
    pub fn line(&self) -> String {
        match self {
            Handled::Configured { instance, at } => {
                let at = at.as_deref().map(|v| format!(" at {v}")).unwrap_or_default();
                format!("worker {instance} configured{at} and in service")
            }
            Handled::Abandoned { instance, reason } => {
                format!("worker {instance} abandoned (the group replaces it): {reason}")
            }
            Handled::Released {
                instance,
                drained: true,
            } => format!("worker {instance} drained and let go"),
            Handled::Released {
                instance,
                drained: false,
            } => format!("worker {instance} let go"),
            Handled::ReleasedUndrained { instance, reason } => {
                format!("worker {instance} let go without draining: {reason}")
            }
        }
    }
}

/// The `lifecycle` job: one fresh look at the environment's worker group, and an answer for
/// every worker waiting in a hook.
pub async fn lifecycle(ctx: &Ctx) -> Result<Summary> {
    let handled = lifecycle_round(ctx).await?;
    let env = &ctx.target.env;
    let mut summary = Summary::new(match handled.len() {
        0 => format!("no worker of {env} waits for Argos"),
        n => format!("answered {n} worker hook(s) on {env}"),
    });
    summary.details = handled.iter().map(Handled::line).collect();
    Ok(summary)
}

/// Looks at the group (by its tags) and answers every waiting worker; the entry point for
/// whatever learned that one waits.
pub async fn lifecycle_round(ctx: &Ctx) -> Result<Vec<Handled>> {
    let names = &ctx.target.names;
    match group::find(ctx.aws(), &names.app, names.env.as_str()).await? {
        Some(g) if g.waiting() => answer_hooks(ctx, &g).await,
        _ => Ok(Vec::new()),
    }
}

/// Answers the hooks of `g`'s waiting workers, one after the other (each waiting one gets its
/// heartbeats meanwhile). A cancelled job leaves the rest waiting for the next round.
pub async fn answer_hooks(ctx: &Ctx, g: &GroupState) -> Result<Vec<Handled>> {
    let mut queue: Vec<(&'static str, String)> = Vec::new();
    queue.extend(g.launching().iter().map(|i| (LAUNCH_HOOK, i.id.clone())));
    queue.extend(g.terminating().iter().map(|i| (TERMINATE_HOOK, i.id.clone())));
    if queue.is_empty() {
        return Ok(Vec::new());
    }
    let names = &ctx.target.names;
    let hosts = instances::find(
        ctx.aws(),
        &[
            (tags::APP, &names.app),
            (tags::ENV, names.env.as_str()),
            (tags::GROUP, "worker"),
        ],
        &["pending", "running"],
    )
    .await?;
    let mut done = Vec::new();
    for i in 0..queue.len() {
        let (hook, instance) = &queue[i];
        let rest = &queue[i..];
        let host = hosts.iter().find(|h| &h.id == instance && h.state == "running");
        let Some(host) = host else {
            // Not running yet (or already gone): keep its hook alive and look again next round.
            ctx.progress.info(format!(
                "worker {instance} is not running yet: it waits for the next round"
            ));
            beat(ctx, &g.name, &rest[..1]).await;
            continue;
        };
        let answer = if *hook == LAUNCH_HOOK {
            with_heartbeats(ctx, &g.name, rest, configure(ctx, host)).await
        } else {
            with_heartbeats(ctx, &g.name, rest, drain(ctx, host)).await
        };
        let handled = match (answer, *hook == LAUNCH_HOOK) {
            // Nothing is answered: the worker still waits, and the next round tries again.
            (Err(Error::Cancelled), _) => return Err(Error::Cancelled),
            (Ok(at), true) => {
                group::complete(ctx.aws(), &g.name, hook, instance, Answer::Continue).await?;
                Handled::Configured {
                    instance: instance.clone(),
                    at,
                }
            }
            (Err(e), true) => {
                group::complete(ctx.aws(), &g.name, hook, instance, Answer::Abandon).await?;
                Handled::Abandoned {
                    instance: instance.clone(),
                    reason: ctx.engine.redactor.redact(&e.to_string()),
                }
            }
            (Ok(drained), false) => {
                group::complete(ctx.aws(), &g.name, hook, instance, Answer::Continue).await?;
                Handled::Released {
                    instance: instance.clone(),
                    drained: drained.is_some(),
                }
            }
            (Err(e), false) => {
                group::complete(ctx.aws(), &g.name, hook, instance, Answer::Continue).await?;
                Handled::ReleasedUndrained {
                    instance: instance.clone(),
                    reason: ctx.engine.redactor.redact(&e.to_string()),
                }
            }
        };
        ctx.progress.info(handled.line());
        done.push(handled);
    }
    Ok(done)
}

/// Runs `work` while recording a heartbeat for every worker in `waiting` each
/// `workers.heartbeat_secs`: the one being worked on and those after it in line.
async fn with_heartbeats<T>(
    ctx: &Ctx,
    group_name: &str,
    waiting: &[(&'static str, String)],
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let every = Duration::from_secs(ctx.config().settings.workers.heartbeat_secs.max(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tokio::pin!(work);
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = ticker.tick() => beat(ctx, group_name, waiting).await,
        }
    }
}

/// One heartbeat for each of `waiting`; a failed one is logged (the next may pass, and the
/// hook's timeout is long).
async fn beat(ctx: &Ctx, group_name: &str, waiting: &[(&'static str, String)]) {
    for (hook, instance) in waiting {
        if let Err(e) = group::heartbeat(ctx.aws(), group_name, hook, instance).await {
            tracing::warn!(instance = %instance, error = %e, "cannot record a lifecycle heartbeat");
        }
    }
}

/// Keeps the hooks of `g`'s waiting workers alive without answering them (the environment is
/// busy with another job): the next round answers them.
pub async fn keep_waiting(ctx: &Ctx, g: &GroupState) {
    let mut waiting: Vec<(&'static str, String)> = Vec::new();
    waiting.extend(g.launching().iter().map(|i| (LAUNCH_HOOK, i.id.clone())));
    waiting.extend(g.terminating().iter().map(|i| (TERMINATE_HOOK, i.id.clone())));
    beat(ctx, &g.name, &waiting).await;
}

/// The environment's deployed version: its last good deploy's ref and commit (none recorded:
/// the playbook's own default).
fn deployed_version(ctx: &Ctx) -> Version {
    match versions::current(&ctx.engine, ctx.target.env.as_str()) {
        Ok(Some(job)) => Version {
            git_ref: job.git_ref,
            commit: job.sha,
        },
        _ => Version::default(),
    }
}

/// Runs the worker role on `host` alone at the deployed version; returns that version.
async fn configure(ctx: &Ctx, host: &InstanceInfo) -> Result<Option<String>> {
    let cfg = ctx.config();
    let role = &cfg.settings.workers.role;
    let version = deployed_version(ctx);
    let at = version.describe();
    ctx.progress.step(
        "configure worker",
        format!(
            "{role} on {}{}",
            host.id,
            at.as_deref().map(|v| format!(" at {v}")).unwrap_or_default()
        ),
    );
    wait_for_ssh(ctx, host).await?;
    let mut extra = stack_vars(ctx).await?;
    versions::playbook_vars(&ctx.engine, &version, &mut extra);
    let run = deploy::playbook_run(ctx, role, std::slice::from_ref(host), extra)?;
    deploy::run_with_log(ctx, run).await?;
    Ok(at)
}

/// Runs the drain playbook on `host`, if one is configured; returns its name.
async fn drain(ctx: &Ctx, host: &InstanceInfo) -> Result<Option<String>> {
    let Some(playbook) = ctx.config().settings.workers.drain_playbook.clone() else {
        return Ok(None);
    };
    ctx.progress.step("drain worker", format!("{playbook} on {}", host.id));
    let extra = stack_vars(ctx).await?;
    let run = deploy::playbook_run(ctx, &playbook, std::slice::from_ref(host), extra)?;
    deploy::run_with_log(ctx, run).await?;
    Ok(Some(playbook))
}

/// The stack's outputs as playbook variables (the database and knowledge hosts).
async fn stack_vars(ctx: &Ctx) -> Result<BTreeMap<String, String>> {
    let stack_name = ctx.target.names.stack();
    let outputs = stack::describe(ctx.aws(), &stack_name)
        .await?
        .map(|s| s.outputs)
        .unwrap_or_default();
    Ok(deploy::stack_vars(&outputs))
}

/// A new worker's SSH may not answer yet: wait for it (heartbeats go on meanwhile).
async fn wait_for_ssh(ctx: &Ctx, host: &InstanceInfo) -> Result<()> {
    use crate::config::{AddressKind, Connection};
    let a = &ctx.config().settings.ansible;
    if a.connection != Connection::Ssh {
        return Ok(());
    }
    let address = match a.address {
        AddressKind::Public => host
            .public_ip
            .clone()
            .or(host.public_dns.clone())
            .or(host.private_ip.clone()),
        AddressKind::Private => host.private_ip.clone(),
    }
    .ok_or_else(|| Error::Invalid(format!("worker {} has no address to reach", host.id)))?;
    let timeout = Duration::from_secs(ctx.config().settings.timeouts.ssh_ready_secs);
    crate::ansible::ssh::wait_for_ssh(&address, a.ssh_port, timeout, &ctx.cancel).await?;
    Ok(())
}

/// Which group [`answering_while`] watches.
#[derive(Debug, Clone, Copy)]
pub enum Watch<'a> {
    /// The environment's, by its tags (it may not exist yet: a scale from 0).
    Tags,
    /// The one the stack names (`WorkerGroupName`).
    Named(&'a str),
}

/// Runs `work` (a stack operation under the job's lock) while answering the workers that wait
/// in a hook meanwhile. CloudFormation may wait for a changed group's new workers to be in
/// service while the job that changes it holds the lock the lookout would need: this job
/// answers them itself, or the two would wait on each other until the hook timed out.
/// Returns `work`'s result and what was answered (or the first error answering).
pub async fn answering_while<T>(
    ctx: &Ctx,
    watch: Watch<'_>,
    work: impl std::future::Future<Output = Result<T>>,
) -> (Result<T>, Result<Vec<Handled>>) {
    let done = tokio_util::sync::CancellationToken::new();
    let working = async {
        let r = work.await;
        done.cancel();
        r
    };
    let every = ctx.engine.pace(0).max_poll.max(Duration::from_millis(100));
    let answering = async {
        let mut handled = Vec::new();
        loop {
            let g = match watch {
                Watch::Tags => {
                    let names = &ctx.target.names;
                    group::find(ctx.aws(), &names.app, names.env.as_str()).await?
                }
                Watch::Named(name) => group::describe(ctx.aws(), name).await?,
            };
            if let Some(g) = g.filter(GroupState::waiting) {
                handled.extend(answer_hooks(ctx, &g).await?);
            }
            tokio::select! {
                _ = done.cancelled() => return Ok(handled),
                _ = tokio::time::sleep(every) => {}
            }
        }
    };
    tokio::join!(Box::pin(working), Box::pin(answering))
}

/// Runs a commission's stack create (`work`) while letting in, unconfigured, the workers
/// that wait to launch meanwhile (CONTINUE). CloudFormation may wait for a new group's workers
/// to be in service before it completes the stack, and configuring them needs the stack's
/// outputs (the database's host), which exist only once it has: answering as
/// [`answering_while`] does would wait on itself until the hooks timed out. The commission's
/// deploy, which follows at once under the same lock, runs the worker role on every worker.
/// Returns `work`'s result and the workers let in (or the first error letting them in).
pub async fn admitting_while<T>(
    ctx: &Ctx,
    work: impl std::future::Future<Output = Result<T>>,
) -> (Result<T>, Result<Vec<String>>) {
    let done = tokio_util::sync::CancellationToken::new();
    let working = async {
        let r = work.await;
        done.cancel();
        r
    };
    let every = ctx.engine.pace(0).max_poll.max(Duration::from_millis(100));
    let admitting = async {
        let names = &ctx.target.names;
        let mut admitted: Vec<String> = Vec::new();
        loop {
            if let Some(g) = group::find(ctx.aws(), &names.app, names.env.as_str()).await? {
                for i in g.launching() {
                    if admitted.contains(&i.id) {
                        continue;
                    }
                    group::complete(ctx.aws(), &g.name, LAUNCH_HOOK, &i.id, Answer::Continue).await?;
                    ctx.progress.info(format!(
                        "worker {} let in while the stack is created: the deploy that follows configures it",
                        i.id
                    ));
                    admitted.push(i.id.clone());
                }
            }
            tokio::select! {
                _ = done.cancelled() => return Ok(admitted),
                _ = tokio::time::sleep(every) => {}
            }
        }
    };
    tokio::join!(Box::pin(working), Box::pin(admitting))
}

/// After a commission or an update: the group named by the stack's `WorkerGroupName` output
/// has both hooks (see [`group::ensure_hooks`]); returns a detail line when some were put.
pub async fn ensure_hooks(ctx: &Ctx, outputs: &BTreeMap<String, String>) -> Result<Option<String>> {
    let Some(name) = outputs.get("WorkerGroupName") else {
        return Ok(None);
    };
    let put = group::ensure_hooks(ctx.aws(), name).await?;
    Ok((!put.is_empty()).then(|| format!("lifecycle hook(s) {} put on {name}", put.join(", "))))
}
