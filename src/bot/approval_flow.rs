//! The approval flow: a request shows exactly what will happen and offers Approve / Deny; the
//! requester never counts as an approver; an approver needs the policy's role; every decision
//! is audited; the plan is checked again just before the job starts, and a changed plan voids
//! the approval. Requests expire, also across restarts.

use std::sync::Arc;

use crate::address::{ChatPlatform, Surface};
use crate::approvals::life::{self, Counted, VoidReason, Witness, PLAN_TIMEOUT};
use crate::approvals::{self, Requirement};
use crate::bot::jobs;
use crate::bot::port::{Button, ChatEvent, OutgoingMessage};
use crate::bot::{messages, Inner};
use crate::command::Action;
use crate::engine::{Ctx, Target};
use crate::error::Error;
use crate::permissions::Decision;
use crate::progress::ProgressTx;
use crate::store::{ApprovalRecord, ApprovalState, AuditEntry, JobRecord, JobState, NewJob, Store};

/// A person's command moved the request: audited under their identity.
struct ByPerson<'a> {
    inner: &'a Inner,
    ev: &'a ChatEvent,
}

impl Witness for ByPerson<'_> {
    fn record(&self, outcome: &str, job: u64) {
        super::handlers::audit(self.inner, self.ev, outcome, Some(job));
    }
}

/// The bot moved it of its own accord (an expiry, a changed plan).
struct ByBot<'a> {
    store: &'a Store,
    channel: &'a str,
}

impl Witness for ByBot<'_> {
    fn record(&self, outcome: &str, job: u64) {
        let entry = AuditEntry::system(
            "bot",
            "argos",
            self.channel,
            &format!("approval of job #{job}"),
            outcome,
            Some(job),
        );
        if let Err(e) = self.store.audit(entry) {
            tracing::warn!(job, error = %e, "cannot write the audit log");
        }
    }
}

fn ctx(inner: &Inner, target: Target) -> Ctx {
    Ctx {
        engine: inner.engine.clone(),
        target,
        progress: ProgressTx::discard(),
        cancel: Default::default(),
        log: None,
    }
}

/// Buttons only while the request is open.
fn buttons(id: u64, open: bool) -> Vec<Button> {
    if !open {
        return vec![];
    }
    vec![
        Button {
            label: "Approve".into(),
            command: format!("approve {id}"),
        },
        Button {
            label: "Deny".into(),
            command: format!("deny {id}"),
        },
    ]
}

fn requirement_for(inner: &Inner, job: &JobRecord) -> Requirement {
    approvals::requirement(
        &inner.engine.config.settings.approvals,
        &job.env,
        crate::command::grant_of(&job.action),
    )
    .unwrap_or(Requirement {
        approvers: 1,
        roles: vec![],
        ttl: chrono::Duration::minutes(30),
    })
}

async fn refresh_request(inner: &Inner, job_id: u64, status: &str, open: bool) {
    let (Ok(Some(job)), Ok(Some(a))) = (inner.store.job(job_id), inner.store.approval_for_job(job_id)) else {
        return;
    };
    let Some(msg) = a.message_id.clone() else { return };
    // A request filed elsewhere (the CLI) was posted through the outbox where it was announced.
    let (port, channel, msg) = match msg.splitn(3, '|').collect::<Vec<_>>()[..] {
        [p, c, m] => (
            ChatPlatform::parse(p).ok().and_then(|p| inner.port(p)),
            c.to_string(),
            m.to_string(),
        ),
        _ => (inner.port_of(job.platform), job.channel.clone(), msg),
    };
    let Some(port) = port else { return };
    let req = requirement_for(inner, &job);
    let text = messages::approval_request(&job, &a, &req, status, &inner.engine.config.settings.chat.prefix);
    let out = OutgoingMessage {
        text: inner.engine.redactor.redact(&text),
        attachment: None,
        buttons: buttons(job_id, open),
    };
    let _ = port.edit(&channel, &msg, out).await;
}

/// Tells the requester's channel, directly when this process can post there, else through the
/// outbox (another console, a replica with the chat connection).
async fn tell_channel(inner: &Inner, job: &JobRecord, text: String) {
    if job.platform == Surface::Cli {
        // The CLI that asked is watching the request itself.
        return;
    }
    match inner.port_of(job.platform) {
        Some(port) if port.serves(&job.channel) => {
            let _ = port.send(&job.channel, OutgoingMessage::text(text)).await;
        }
        _ => {
            let queued = crate::address::ChannelAddress::from_key(job.platform.as_str(), &job.channel)
                .and_then(|to| inner.store.enqueue_to(&to, &text, &[], None).map_err(|e| e.to_string()));
            if let Err(e) = queued {
                tracing::warn!(job = job.id, error = %e, "cannot queue a message for the requester");
            }
        }
    }
}

/// Records the request, posts it, and arms its expiry. The request message is the answer.
pub(crate) async fn request(
    inner: &Arc<Inner>,
    ev: &ChatEvent,
    new: NewJob,
    target: Target,
    action: Action,
    req: Requirement,
) -> Option<String> {
    let plan = match tokio::time::timeout(PLAN_TIMEOUT, approvals::plan(&ctx(inner, target), &action)).await {
        Ok(Ok(p)) => p,
        Ok(Err(Error::Invalid(m))) => return Some(m),
        Ok(Err(e)) => return Some(messages::failed(&inner.engine.redactor.redact(&e.to_string()))),
        Err(_) => return Some(messages::plan_timeout()),
    };
    let by = ByPerson { inner, ev };
    let (id, approval) = match life::file(&inner.store, &new, &inner.replica.id, &plan, &req, &by) {
        Ok(filed) => (filed.job, filed.approval),
        Err(e) => return Some(super::handlers::internal(inner, ev, &e.to_string())),
    };
    let (Ok(Some(job)), Ok(Some(a))) = (inner.store.job(id), inner.store.approval_for_job(id)) else {
        return Some(super::handlers::internal(inner, ev, "approval vanished after insert"));
    };
    let text = messages::approval_request(&job, &a, &req, "", &inner.engine.config.settings.chat.prefix);
    let reply = match inner.port_of(ev.identity.platform) {
        Some(port) => {
            let msg = OutgoingMessage {
                text: inner.engine.redactor.redact(&text),
                attachment: None,
                buttons: buttons(id, true),
            };
            match port.send(&ev.channel, msg).await {
                Ok(m) => {
                    let _ = inner.store.set_approval_message(approval, &m);
                    None
                }
                Err(_) => Some(text),
            }
        }
        None => Some(text),
    };
    arm_expiry(inner.clone(), id);
    reply
}

/// Expires the request at its time (immediately if that has passed, as after a restart).
pub(crate) fn arm_expiry(inner: Arc<Inner>, job_id: u64) {
    let stop = tokio_util::sync::CancellationToken::new();
    inner
        .approval_timers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(job_id, stop.clone());
    let task = inner.clone();
    // A timer, not a job: it is not tracked with the jobs (waiting for jobs must not wait out
    // a 30-minute timer), and its state is in the database, so nothing is lost if it is dropped.
    tokio::spawn(async move {
        let Ok(Some(a)) = task.store.approval_for_job(job_id) else {
            return;
        };
        if let Some(at) = a.expires_at {
            tokio::select! {
                _ = crate::clock::sleep_until(at) => {}
                // Decided before it expired: nothing left to do.
                _ = stop.cancelled() => return,
            }
        }
        expire(&task, job_id).await;
    });
}

/// Stops a request's expiry timer once it is decided.
fn disarm(inner: &Inner, job_id: u64) {
    if let Some(t) = inner
        .approval_timers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&job_id)
    {
        t.cancel();
    }
}

async fn expire(inner: &Inner, job_id: u64) {
    let Ok(Some(a)) = inner.store.approval_for_job(job_id) else {
        return;
    };
    let by = ByBot {
        store: &inner.store,
        channel: "-",
    };
    if !life::expire(&inner.store, &a, &by) {
        return;
    }
    disarm(inner, job_id);
    refresh_request(inner, job_id, messages::REQUEST_EXPIRED, false).await;
}

enum Lookup {
    Found(Box<(JobRecord, ApprovalRecord)>),
    Reply(String),
}

fn lookup(inner: &Inner, id: u64) -> Lookup {
    let job = match inner.store.job(id) {
        Ok(Some(j)) => j,
        Ok(None) => return Lookup::Reply(crate::bot::messages::no_such_job(id)),
        Err(e) => return Lookup::Reply(format!("❌ {e}")),
    };
    match inner.store.approval_for_job(id) {
        Ok(Some(a)) if a.state == ApprovalState::Pending => Lookup::Found(Box::new((job, a))),
        Ok(Some(a)) => Lookup::Reply(messages::approval_is(id, a.state)),
        Ok(None) => Lookup::Reply(messages::no_approval(id)),
        Err(e) => Lookup::Reply(format!("❌ {e}")),
    }
}

/// Whether `ev`'s author is the person who requested `job`, on whatever surface either spoke
/// (the CLI and the console are one; `people:` ties Discord and Slack ids to them).
fn is_requester(inner: &Inner, ev: &ChatEvent, job: &JobRecord) -> bool {
    inner.perms.people().same_person(
        (job.platform, &job.requester_id),
        (ev.identity.platform, &ev.identity.user_id),
    )
}

/// Who a vote is recorded under: the person, so that one person has one vote, from any surface.
fn voter(inner: &Inner, ev: &ChatEvent) -> String {
    inner.perms.people().vote_id(ev.identity.platform, &ev.identity.user_id)
}

/// Whether `ev`'s author may decide on this request; the reason if not.
fn may_decide(inner: &Inner, ev: &ChatEvent, job: &JobRecord) -> Result<(), String> {
    let req = requirement_for(inner, job);
    if req.roles.is_empty() {
        if let Decision::Denied { missing } = inner.perms.check(&ev.identity, &job.env, "approve") {
            return Err(crate::bot::messages::denied(&missing));
        }
        return Ok(());
    }
    let held = inner.perms.roles_of(&ev.identity);
    if req.roles.iter().any(|r| held.contains(r)) {
        Ok(())
    } else {
        Err(messages::approval_needs_role(job.id, &req.roles, &held))
    }
}

pub(crate) async fn approve(inner: &Arc<Inner>, ev: &ChatEvent, id: u64) -> Option<String> {
    let (job, a) = match lookup(inner, id) {
        Lookup::Found(found) => *found,
        Lookup::Reply(r) => {
            super::handlers::audit(inner, ev, &format!("approve refused: {r}"), Some(id));
            return Some(r);
        }
    };
    if life::is_due(&a) {
        expire(inner, id).await;
        return Some(messages::approval_expired(id));
    }
    if is_requester(inner, ev, &job) {
        super::handlers::audit(inner, ev, &format!("approve refused: own request #{id}"), Some(id));
        return Some(messages::own_request(id));
    }
    if let Err(why) = may_decide(inner, ev, &job) {
        super::handlers::audit(inner, ev, &format!("approve refused: {why}"), Some(id));
        return Some(why);
    }
    let by = ByPerson { inner, ev };
    match life::approve(&inner.store, &a, &voter(inner, ev), &ev.identity.display_name, &by) {
        Ok(Counted::Approved) => {}
        Ok(Counted::Short { have, needed }) => {
            refresh_request(inner, id, &format!("{have}/{needed} approvals"), true).await;
            return Some(messages::approved_needs_more(id, have, needed));
        }
        Ok(Counted::AlreadyVoted) => return Some(messages::already_voted(id)),
        Ok(Counted::AlreadyDecided) => return Some(messages::already_decided(id)),
        Err(e) => return Some(super::handlers::internal(inner, ev, &e.to_string())),
    }
    disarm(inner, id);
    if job.platform == Surface::Cli {
        // The operator's CLI runs it: at once if it is waiting, or when they run it again.
        refresh_request(inner, id, messages::REQUEST_APPROVED_FOR_CLI, false).await;
        return Some(messages::approved_runs_from_cli(id, &job.requester_name));
    }
    let here = inner.port_of(job.platform).is_some_and(|p| p.serves(&job.channel));
    let owner_alive = job.owner.as_deref().is_some_and(|o| {
        inner
            .store
            .replicas()
            .map(|rs| rs.iter().any(|r| r.id == o && r.alive))
            .unwrap_or(false)
    });
    if !here && owner_alive {
        // The requester follows the job where they asked for it: its owner starts it at its
        // next heartbeat and tells them.
        refresh_request(inner, id, messages::REQUEST_APPROVED_STARTING, false).await;
        return Some(messages::approved_starts_where_asked(id, &job.requester_name));
    }
    let a = inner.store.approval_for_job(id).ok().flatten().unwrap_or(a);
    start_approved(inner, job, a).await
}

/// Checks the plan again, then starts the job, or voids the approval if the plan changed.
async fn start_approved(inner: &Arc<Inner>, job: JobRecord, a: ApprovalRecord) -> Option<String> {
    let id = job.id;
    if !life::claim_start(&inner.store, &a) {
        // A click here and the owner's heartbeat, or two replicas: the other one starts it.
        return Some(messages::approved_starts_now(id));
    }
    let action = match Action::from_stored(&job.action, &job.args) {
        Ok(action) => action,
        Err(why) => {
            let _ = inner.store.end_unstarted_job(id, JobState::Interrupted, &why);
            return Some(messages::cannot_start(id, &why));
        }
    };
    let target = match inner.engine.target(&job.env) {
        Ok(t) => t,
        Err(e) => return Some(format!("❌ {e}")),
    };
    if !life::plan_holds(&ctx(inner, target), &action, &a).await {
        let by = ByBot {
            store: &inner.store,
            channel: &job.channel,
        };
        life::void(&inner.store, &a, VoidReason::PlanChanged, &by);
        refresh_request(inner, id, messages::REQUEST_VOID, false).await;
        tell_channel(inner, &job, messages::void_for_requester(&job)).await;
        return Some(messages::void_told(id, &job.requester_name));
    }
    refresh_request(inner, id, messages::REQUEST_APPROVED_STARTING, false).await;
    let _ = inner.store.set_job_owner(id, &inner.replica.id);
    let task = inner.clone();
    inner.tasks.spawn(async move {
        if let Some(lease) = jobs::wait_for_lock(&task, id).await {
            if let Ok(Some(job)) = task.store.job(id) {
                jobs::execute(task.clone(), job, action, lease, false).await;
            }
        }
    });
    Some(messages::approved_starts_now(id))
}

/// The owner of an approved job starts it (the approval was decided in another process,
/// which cannot post where the requester follows the job).
pub(crate) async fn start_owned(inner: &Arc<Inner>, id: u64) {
    let (Ok(Some(job)), Ok(Some(a))) = (inner.store.job(id), inner.store.approval_for_job(id)) else {
        return;
    };
    if job.state != JobState::Queued || a.state != ApprovalState::Approved {
        return;
    }
    if let Some(reply) = start_approved(inner, job.clone(), a).await {
        tell_channel(inner, &job, reply).await;
    }
}

pub(crate) async fn deny(inner: &Arc<Inner>, ev: &ChatEvent, id: u64, reason: Option<String>) -> Option<String> {
    let (job, a) = match lookup(inner, id) {
        Lookup::Found(found) => *found,
        Lookup::Reply(r) => {
            super::handlers::audit(inner, ev, &format!("deny refused: {r}"), Some(id));
            return Some(r);
        }
    };
    let own = is_requester(inner, ev, &job);
    if !own {
        if let Err(why) = may_decide(inner, ev, &job) {
            super::handlers::audit(inner, ev, &format!("deny refused: {why}"), Some(id));
            return Some(why);
        }
    }
    let why = reason.clone().map(|r| format!(": {r}")).unwrap_or_default();
    let by = ByPerson { inner, ev };
    let voter = voter(inner, ev);
    if !life::deny(
        &inner.store,
        &a,
        &voter,
        &ev.identity.display_name,
        reason.as_deref(),
        own,
        &by,
    ) {
        return Some(messages::already_decided(id));
    }
    disarm(inner, id);
    let verb = if own { "withdrawn" } else { "denied" };
    refresh_request(
        inner,
        id,
        &messages::request_ended(own, &ev.identity.display_name, &why),
        false,
    )
    .await;
    if !own {
        tell_channel(
            inner,
            &job,
            messages::denied_for_requester(&job, &ev.identity.display_name, &why),
        )
        .await;
    }
    Some(messages::job_ended_by_vote(id, verb))
}
