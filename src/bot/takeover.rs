//! The periodic work of a live replica, run after each heartbeat: act on cancel requests made
//! elsewhere, take over the jobs of replicas whose lease ran out, adopt queued jobs of a gone
//! owner, start approved jobs it owns, forget the store's old records, and deliver the outbox.

use std::sync::Arc;
use std::time::Instant;

use crate::address::Surface;
use crate::bot::port::{Button, OutgoingMessage};
use crate::bot::{announcements, approval_flow, jobs, messages, Inner};
use crate::command::Action;
use crate::store::{JobRecord, JobState};

/// One round; returns the ids of the jobs it resumed.
pub(crate) async fn tick(inner: &Arc<Inner>) -> Vec<u64> {
    let me = inner.replica.id.clone();
    if let Ok(ids) = inner.store.cancel_requests(&me) {
        for id in ids {
            inner.jobs.cancel(id);
        }
    }
    let mut resumed = take_over_expired(inner).await;
    resumed.extend(resume_unlocked(inner));
    adopt_orphans(inner).await;
    if let Ok(ids) = inner.store.approved_unstarted(&me) {
        for id in ids {
            approval_flow::start_owned(inner, id).await;
        }
    }
    crate::bot::notices::watch(inner);
    crate::bot::housekeeping::tick(inner);
    deliver_outbox(inner).await;
    share_budgets(inner);
    resumed
}

/// The longest window of a chat platform's rate limits (Discord: 5 s per channel), plus margin.
const CHAT_WINDOW_MS: i64 = 6_000;

/// Budgets that belong to an account or a token are split by the live replicas: the AWS
/// account's among every process that calls AWS, a chat token's among the bots.
fn share_budgets(inner: &Inner) {
    let Ok(replicas) = inner.store.replicas() else { return };
    let alive: Vec<_> = replicas.iter().filter(|r| r.alive).collect();
    inner.engine.aws.set_share(alive.len());
    crate::metrics::get().set_replica(alive.len(), inner.replica.held().len(), inner.replica.heartbeat_ok());
    // A bot that stopped a moment ago still counts for one rate-limit window: its last
    // requests are still in the platform's window when its lease is shorter than that.
    let bots = replicas
        .iter()
        .filter(|r| r.kind == "bot" && (r.alive || r.silent_ms < CHAT_WINDOW_MS))
        .count();
    for port in inner.ports.read().unwrap_or_else(|p| p.into_inner()).values() {
        port.share_budget(bots);
    }
}

/// Whether this process can post to `channel` on `platform` (and so run the job there).
/// The stored action of a job taken over, or `None` after ending the job as interrupted when
/// this version cannot read it (fenced by `token` when this replica holds its lock).
fn stored_action(inner: &Inner, job: &JobRecord, token: Option<i64>) -> Option<Action> {
    let why = match Action::from_stored(&job.action, &job.args) {
        Ok(action) => return Some(action),
        Err(why) => messages::interrupted(&why),
    };
    let _ = match token {
        Some(token) => inner
            .store
            .finish_and_release(job.id, token, JobState::Interrupted, &why),
        None => inner
            .store
            .end_unstarted_job(job.id, JobState::Interrupted, &why)
            .map(|_| ()),
    };
    None
}

fn serves(inner: &Inner, surface: Surface, channel: &str) -> bool {
    inner.port_of(surface).is_some_and(|p| p.serves(channel))
}

async fn take_over_expired(inner: &Arc<Inner>) -> Vec<u64> {
    let mut resumed = Vec::new();
    let Ok(expired) = inner.store.expired_locks() else {
        return resumed;
    };
    for t in expired {
        let job = match t.job {
            Some(j) if !j.state.is_finished() => j,
            // The owner died between recording the end and freeing the environment.
            _ => {
                let _ = inner.store.release_stale(&t.lock.env, t.lock.token);
                continue;
            }
        };
        // A CLI run cannot be resumed elsewhere: its operator is gone with it.
        let cli = job.platform == Surface::Cli;
        if !cli && !serves(inner, job.platform, &job.channel) {
            continue;
        }
        let obtained = Instant::now();
        let Ok(Some(token)) = inner
            .store
            .take_over(&t.lock.env, t.lock.token, &inner.replica.id, inner.replica.lease)
        else {
            continue;
        };
        if cli {
            // A lifecycle job has no chat either: its workers still wait, and the next round
            // of the lookout answers them.
            let why = if job.action == Action::Lifecycle.verb() {
                messages::LIFECYCLE_INTERRUPTED
            } else {
                "the CLI process that ran it stopped"
            };
            let ended =
                inner
                    .store
                    .finish_and_release(job.id, token, JobState::Interrupted, &messages::interrupted(why));
            if ended.is_ok() {
                let config = &inner.engine.config;
                announcements::job_ended_without_owner(&inner.store, config, &job, JobState::Interrupted, why);
            }
            continue;
        }
        tracing::warn!(job = job.id, from = ?t.lock.owner, "taking over a job whose owner's lease ran out");
        sweep_children(inner).await;
        let Some(action) = stored_action(inner, &job, Some(token)) else {
            continue;
        };
        let lease = inner.replica.hold(job.id, &job.env, token, obtained);
        let job = inner.store.job(job.id).ok().flatten().unwrap_or(job);
        resumed.push(job.id);
        inner
            .tasks
            .spawn(jobs::execute(inner.clone(), job, action, lease, true));
    }
    resumed
}

/// Running jobs recorded before locks lived in the store: resumed under a lock now.
fn resume_unlocked(inner: &Arc<Inner>) -> Vec<u64> {
    let mut resumed = Vec::new();
    for job in inner.store.unlocked_running_jobs().unwrap_or_default() {
        if !serves(inner, job.platform, &job.channel) {
            continue;
        }
        let Some(action) = stored_action(inner, &job, None) else {
            continue;
        };
        let obtained = Instant::now();
        match inner.store.lock_for_job(job.id, &inner.replica.id, inner.replica.lease) {
            Ok(Some(token)) => {
                let lease = inner.replica.hold(job.id, &job.env, token, obtained);
                resumed.push(job.id);
                inner
                    .tasks
                    .spawn(jobs::execute(inner.clone(), job, action, lease, true));
            }
            _ => {
                let _ = inner.store.end_unstarted_job(
                    job.id,
                    JobState::Interrupted,
                    &messages::interrupted("another job holds the environment"),
                );
            }
        }
    }
    resumed
}

/// Queued jobs whose owner is gone: waiting for the environment (queue mode) or for approval.
async fn adopt_orphans(inner: &Arc<Inner>) {
    for job in inner.store.orphaned_jobs().unwrap_or_default() {
        if !serves(inner, job.platform, &job.channel) {
            continue;
        }
        if !matches!(
            inner.store.adopt_job(job.id, job.owner.as_deref(), &inner.replica.id),
            Ok(true)
        ) {
            continue;
        }
        match inner.store.approval_for_job(job.id).ok().flatten() {
            Some(a) if a.state == crate::store::ApprovalState::Pending => {
                approval_flow::arm_expiry(inner.clone(), job.id)
            }
            // Approved ones are started by the owner's next round; others ended.
            Some(_) => {}
            None => {
                let Some(action) = stored_action(inner, &job, None) else {
                    continue;
                };
                let task = inner.clone();
                inner.tasks.spawn(async move {
                    if let Some(lease) = jobs::wait_for_lock(&task, job.id).await {
                        if let Ok(Some(job)) = task.store.job(job.id) {
                            jobs::execute(task.clone(), job, action, lease, false).await;
                        }
                    }
                });
            }
        }
    }
}

/// Posts what other processes left in the outbox for the platforms and channels served here.
async fn deliver_outbox(inner: &Arc<Inner>) {
    let ports = inner.ports.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut platforms = Vec::new();
    let mut channels = Vec::new();
    for (name, port) in &ports {
        match port.own_channel() {
            // The key, as the outbox writer stored it (`Store::enqueue_to`).
            Some(address) => channels.push(address.key()),
            None => platforms.push(name.as_str()),
        }
    }
    let p = platforms;
    let c: Vec<&str> = channels.iter().map(String::as_str).collect();
    let Ok(messages) = inner.store.claim_outbox(&inner.replica.id, &p, &c) else {
        return;
    };
    for m in messages {
        let to = match m.address() {
            Ok(to) => to,
            Err(e) => {
                // Nothing can deliver it: say so once rather than hold it forever.
                tracing::warn!(message = m.id, error = %e, "dropping an outbox message with a bad address");
                let _ = inner.store.mark_delivered(m.id);
                continue;
            }
        };
        if let Some(port) = ports.get(&to.platform()) {
            let msg = OutgoingMessage {
                text: inner.engine.redactor.redact(&m.text),
                attachment: None,
                buttons: m
                    .buttons
                    .iter()
                    .map(|(label, command)| Button {
                        label: label.clone(),
                        command: command.clone(),
                    })
                    .collect(),
            };
            match port.send(&to.key(), msg).await {
                Ok(message_id) => {
                    // The request's message is edited with each decision, like one posted here;
                    // it lives on the announcing platform, not the job's (`platform|channel|id`).
                    if let Some(job) = m.approval_job {
                        if let Ok(Some(a)) = inner.store.approval_for_job(job) {
                            let at = format!("{}|{}|{message_id}", m.platform, m.channel);
                            let _ = inner.store.set_approval_message(a.id, &at);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %inner.engine.redactor.redact(&e.0), "cannot deliver an outbox message");
                    continue;
                }
            }
        }
        let _ = inner.store.mark_delivered(m.id);
    }
}

/// Kills what a dead owner on this host left running (its playbooks, their workers and what
/// those started) and removes its run folders, before the job's playbooks run again here.
pub(crate) async fn sweep_children(inner: &Inner) {
    let runs = crate::ansible::runs_dir(&inner.engine.config.state_dir());
    match tokio::task::spawn_blocking(move || crate::ansible::sweep_orphans(Some(&runs))).await {
        Ok(report) if !report.is_empty() => tracing::warn!(%report, "swept what a dead owner left running"),
        _ => {}
    }
}
