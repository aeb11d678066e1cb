//! One approval request's life, for the bot and the CLI alike: filing it, the votes, the
//! decision, expiry and voiding. Each transition is one compare-and-set in the store
//! ([`ApprovalState::reached_from`] is the table), ends the waiting job the same way and
//! writes the same audit outcome, whichever surface or replica drives it.

use std::time::Duration;

use crate::engine::Ctx;
use crate::store::{ApprovalRecord, ApprovalState, Choice, JobState, NewJob, Store, StoreResult};

use super::{plan, Requirement};

/// How long working out a plan may take before a request (or its recheck) gives up.
pub const PLAN_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a transition's audit record goes: the bot writes what a person did under their
/// identity and what it did itself as the bot; the CLI under the OS user.
pub trait Witness {
    fn record(&self, outcome: &str, job: u64);
}

/// A filed request: its job waits, queued, for the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filed {
    pub job: u64,
    pub approval: u64,
    pub expires: chrono::DateTime<chrono::Utc>,
}

/// Files a request bound to `plan`: the job waits queued, owned by `owner` (who starts it
/// once it is approved), and the request expires after the requirement's time to live.
pub fn file(
    store: &Store,
    new: &NewJob,
    owner: &str,
    plan: &plan::Plan,
    req: &Requirement,
    by: &dyn Witness,
) -> StoreResult<Filed> {
    let job = store.insert_job_for(new, JobState::Queued, Some(owner))?;
    let expires = crate::clock::now() + req.ttl;
    let approval = store.insert_approval(job, &plan.digest, &plan.text, req.approvers, expires)?;
    by.record(
        &format!("approval requested: job #{job} {} {}", new.env, new.action),
        job,
    );
    Ok(Filed { job, approval, expires })
}

/// Whether a pending request's time is up.
pub fn is_due(a: &ApprovalRecord) -> bool {
    a.state == ApprovalState::Pending && a.expires_at.is_some_and(|t| t <= crate::clock::now())
}

/// Expires a pending request and cancels its job; false if it was no longer pending (a
/// decision, or another replica's timer, got there first).
pub fn expire(store: &Store, a: &ApprovalRecord, by: &dyn Witness) -> bool {
    if !matches!(store.decide_approval(a.id, ApprovalState::Expired), Ok(true)) {
        return false;
    }
    let _ = store.end_unstarted_job(a.job_id, JobState::Cancelled, "approval request expired");
    by.record("expired", a.job_id);
    true
}

/// What an approving vote did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Recorded; the request needs more.
    Short { have: usize, needed: u32 },
    /// Recorded, and it was the last one needed: the request is approved.
    Approved,
    /// This person has voted on it already.
    AlreadyVoted,
    /// Enough votes, but another decision landed first.
    AlreadyDecided,
}

/// Records an approving vote by `voter` (a person's vote id, so one person has one vote from
/// any surface) and approves the request once it has enough. Only one decision wins, however
/// many votes arrive at once.
pub fn approve(
    store: &Store,
    a: &ApprovalRecord,
    voter: &str,
    voter_name: &str,
    by: &dyn Witness,
) -> StoreResult<Counted> {
    if !store.add_vote(a.id, voter, voter_name, Choice::Approve, None)? {
        return Ok(Counted::AlreadyVoted);
    }
    let now = store.approval_for_job(a.job_id)?.unwrap_or_else(|| a.clone());
    let have = now.approvals();
    by.record(&format!("approved job #{} ({have}/{})", a.job_id, now.needed), a.job_id);
    if (have as u32) < now.needed {
        return Ok(Counted::Short {
            have,
            needed: now.needed,
        });
    }
    if !store.decide_approval(a.id, ApprovalState::Approved)? {
        return Ok(Counted::AlreadyDecided);
    }
    Ok(Counted::Approved)
}

/// Denies a request (withdraws it, when the requester does) and cancels its job; false if it
/// was decided already.
pub fn deny(
    store: &Store,
    a: &ApprovalRecord,
    voter: &str,
    voter_name: &str,
    reason: Option<&str>,
    withdrawn: bool,
    by: &dyn Witness,
) -> bool {
    let _ = store.add_vote(a.id, voter, voter_name, Choice::Deny, reason);
    if !matches!(store.decide_approval(a.id, ApprovalState::Denied), Ok(true)) {
        return false;
    }
    let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
    let verb = if withdrawn { "withdrawn" } else { "denied" };
    let _ = store.end_unstarted_job(a.job_id, JobState::Cancelled, &format!("{verb} by {voter_name}{why}"));
    by.record(&format!("{verb} job #{}{why}", a.job_id), a.job_id);
    true
}

/// Claims an approved request's job for starting: true for exactly one caller, whichever
/// replica, click or heartbeat asks; the winner rechecks the plan and starts the job (or voids
/// the request).
pub fn claim_start(store: &Store, a: &ApprovalRecord) -> bool {
    matches!(store.decide_approval(a.id, ApprovalState::Started), Ok(true))
}

/// Why an approved request no longer lets its job run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoidReason {
    /// What would happen now differs from the plan the approvers saw.
    PlanChanged,
    /// An approving vote was the requester's own (one recorded before the two-person rule
    /// compared people rather than surfaces).
    ApprovedByRequester,
}

impl VoidReason {
    fn why(self) -> &'static str {
        match self {
            VoidReason::PlanChanged => "the plan changed before the job started",
            VoidReason::ApprovedByRequester => "approved by its requester",
        }
    }
}

/// Voids a request and cancels its job; false if it was already ended another way.
pub fn void(store: &Store, a: &ApprovalRecord, reason: VoidReason, by: &dyn Witness) -> bool {
    if !matches!(store.decide_approval(a.id, ApprovalState::Void), Ok(true)) {
        return false;
    }
    let _ = store.end_unstarted_job(
        a.job_id,
        JobState::Cancelled,
        &format!("approval void: {}", reason.why()),
    );
    let short = match reason {
        VoidReason::PlanChanged => "plan changed",
        VoidReason::ApprovedByRequester => "approved by its requester",
    };
    by.record(&format!("void: {short}"), a.job_id);
    true
}

/// Whether what `action` would do now is still what the approvers saw (the plan's digest):
/// checked just before an approved job starts. A plan that cannot be worked out now does not
/// hold.
pub async fn plan_holds(ctx: &Ctx, action: &crate::command::Action, a: &ApprovalRecord) -> bool {
    match tokio::time::timeout(PLAN_TIMEOUT, plan::plan(ctx, action)).await {
        Ok(Ok(p)) => p.digest == a.digest,
        _ => false,
    }
}

/// Whether any approving vote was cast under one of `own` (the requester's vote ids).
pub fn approved_by_any_of(a: &ApprovalRecord, own: &[String]) -> bool {
    a.votes
        .iter()
        .any(|v| v.decision == Choice::Approve && own.contains(&v.user_id))
}

/// Who denied a request and why, as the requester reads it (` by carol: not today`).
pub fn denial(a: &ApprovalRecord) -> String {
    a.votes
        .iter()
        .find(|v| v.decision == Choice::Deny)
        .map(|v| {
            format!(
                " by {}{}",
                v.user_name,
                v.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    struct Log(RefCell<Vec<String>>);

    impl Witness for Log {
        fn record(&self, outcome: &str, job: u64) {
            self.0.borrow_mut().push(format!("#{job} {outcome}"));
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("argos.db")).unwrap();
        (dir, store)
    }

    fn filed(store: &Store, approvers: u32) -> ApprovalRecord {
        let new = NewJob {
            requester_id: "alice".into(),
            requester_name: "alice".into(),
            platform: crate::address::Surface::CONSOLE,
            channel: "console".into(),
            env: "staging".into(),
            action: "decommission".into(),
            args: String::new(),
            person: String::new(),
            break_glass: None,
        };
        let req = Requirement {
            approvers,
            roles: vec![],
            ttl: chrono::Duration::minutes(30),
        };
        let plan = plan::Plan {
            text: "Decommission".into(),
            digest: "d1".into(),
        };
        let log = Log(RefCell::new(vec![]));
        let f = file(store, &new, "replica-1", &plan, &req, &log).unwrap();
        assert_eq!(
            log.0.borrow().as_slice(),
            [format!(
                "#{} approval requested: job #{} staging decommission",
                f.job, f.job
            )]
        );
        store.approval_for_job(f.job).unwrap().unwrap()
    }

    #[test]
    fn a_request_is_approved_by_enough_votes_once() {
        let (_dir, store) = store();
        let a = filed(&store, 2);
        let log = Log(RefCell::new(vec![]));
        assert_eq!(
            approve(&store, &a, "person:bob", "bob", &log).unwrap(),
            Counted::Short { have: 1, needed: 2 }
        );
        assert_eq!(
            approve(&store, &a, "person:bob", "bob", &log).unwrap(),
            Counted::AlreadyVoted
        );
        assert_eq!(
            approve(&store, &a, "person:carol", "carol", &log).unwrap(),
            Counted::Approved
        );
        let now = store.approval_for_job(a.job_id).unwrap().unwrap();
        assert_eq!(now.state, ApprovalState::Approved);
        assert!(!expire(&store, &now, &log), "an approved request does not expire");
        assert!(
            !deny(&store, &now, "person:dave", "dave", None, false, &log),
            "nor is it denied"
        );
        assert!(claim_start(&store, &now), "one claim to start it wins");
        assert!(!claim_start(&store, &now), "and only one");
        assert!(
            void(&store, &now, VoidReason::PlanChanged, &log),
            "the winner may still void it"
        );
        let job = store.job(a.job_id).unwrap().unwrap();
        assert_eq!(job.state, JobState::Cancelled);
        assert_eq!(
            job.result.as_deref(),
            Some("approval void: the plan changed before the job started")
        );
        assert_eq!(
            log.0.borrow().last().map(String::as_str),
            Some(format!("#{} void: plan changed", a.job_id).as_str())
        );
    }

    #[test]
    fn a_denied_request_ends_its_job_and_says_who() {
        let (_dir, store) = store();
        let a = filed(&store, 1);
        let log = Log(RefCell::new(vec![]));
        assert!(deny(&store, &a, "person:bob", "bob", Some("not today"), false, &log));
        let now = store.approval_for_job(a.job_id).unwrap().unwrap();
        assert_eq!(now.state, ApprovalState::Denied);
        assert_eq!(denial(&now), " by bob: not today");
        assert_eq!(
            store.job(a.job_id).unwrap().unwrap().result.as_deref(),
            Some("denied by bob: not today")
        );
        assert!(
            !void(&store, &now, VoidReason::PlanChanged, &log),
            "a denied request stays denied"
        );
        assert!(!expire(&store, &now, &log));
    }

    #[test]
    fn an_expired_request_cancels_its_job_once() {
        let (_dir, store) = store();
        let a = filed(&store, 1);
        let log = Log(RefCell::new(vec![]));
        assert!(expire(&store, &a, &log));
        assert!(!expire(&store, &a, &log), "only one expiry lands");
        assert_eq!(log.0.borrow().as_slice(), [format!("#{} expired", a.job_id)]);
        assert_eq!(
            store.job(a.job_id).unwrap().unwrap().result.as_deref(),
            Some("approval request expired")
        );
    }

    #[test]
    fn the_transition_table_ends_every_request_once() {
        use ApprovalState::*;
        for to in [Approved, Denied, Expired] {
            assert_eq!(to.reached_from(), [Pending]);
        }
        assert_eq!(Started.reached_from(), [Approved]);
        assert_eq!(Void.reached_from(), [Pending, Approved, Started]);
        assert!(Pending.reached_from().is_empty(), "nothing reopens");
        for s in [Pending, Approved, Denied, Expired, Started, Void] {
            assert_eq!(ApprovalState::parse(s.as_str()), Some(s));
        }
    }
}
