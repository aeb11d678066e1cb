//! Approval requests and their votes. An approval belongs to one job (its id is the job's id in
//! every reply), records the digest of the plan it approves, and ends approved, denied,
//! expired or void (the plan changed).

use super::sql::{params, Sql};
use super::{now, parse_time, Context, Store, StoreResult};

/// Where an approval request is in its life. A request is filed `Pending` and is decided once:
/// approved, denied or expired. An approved one is `Started` by exactly one process (the
/// claim that keeps two replicas, or a click and a heartbeat, from both starting its job), and
/// is voided instead if its plan changed or it was approved by its own requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Expired,
    Started,
    Void,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Started => "started",
            ApprovalState::Void => "void",
        }
    }

    /// The stored word; `None` for one this version does not know.
    pub fn parse(text: &str) -> Option<ApprovalState> {
        [
            ApprovalState::Pending,
            ApprovalState::Approved,
            ApprovalState::Denied,
            ApprovalState::Expired,
            ApprovalState::Started,
            ApprovalState::Void,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// The states a request may move to this one from: the whole transition table.
    pub fn reached_from(self) -> &'static [ApprovalState] {
        match self {
            ApprovalState::Pending => &[],
            ApprovalState::Approved | ApprovalState::Denied | ApprovalState::Expired => &[ApprovalState::Pending],
            ApprovalState::Started => &[ApprovalState::Approved],
            ApprovalState::Void => &[ApprovalState::Pending, ApprovalState::Approved, ApprovalState::Started],
        }
    }
}

impl std::fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one vote said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Approve,
    Deny,
}

impl Choice {
    pub fn as_str(self) -> &'static str {
        match self {
            Choice::Approve => "approve",
            Choice::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub user_id: String,
    pub user_name: String,
    pub decision: Choice,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRecord {
    pub id: u64,
    pub job_id: u64,
    pub digest: String,
    pub plan: String,
    pub needed: u32,
    pub state: ApprovalState,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub message_id: Option<String>,
    pub votes: Vec<Vote>,
}

impl ApprovalRecord {
    pub fn approvals(&self) -> usize {
        self.votes.iter().filter(|v| v.decision == Choice::Approve).count()
    }
}

fn votes(db: &mut dyn Sql, approval_id: u64) -> StoreResult<Vec<Vote>> {
    let rows = db.query(
        "SELECT user_id, user_name, decision, reason FROM approval_votes WHERE approval_id = ?1 ORDER BY at, user_id",
        params![approval_id],
    )?;
    Ok(rows
        .iter()
        .map(|r| Vote {
            user_id: r.text(0),
            user_name: r.text(1),
            // Anything but an approval counts as a denial: a vote never approves by accident.
            decision: if r.text(2) == Choice::Approve.as_str() {
                Choice::Approve
            } else {
                Choice::Deny
            },
            reason: r.opt_text(3),
        })
        .collect())
}

impl Store {
    pub fn insert_approval(
        &self,
        job_id: u64,
        digest: &str,
        plan: &str,
        needed: u32,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<u64> {
        self.with(|db| {
            let row = db.query_opt(
                "INSERT INTO approvals (job_id, digest, plan, needed, state, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6) RETURNING id",
                params![job_id, digest, plan, needed, now(), expires_at.to_rfc3339()],
            )?;
            Ok(row.map(|r| r.int(0) as u64).unwrap_or(0))
        })
        .ctx("insert approval")
    }

    /// The approval of a job, with its votes.
    pub fn approval_for_job(&self, job_id: u64) -> StoreResult<Option<ApprovalRecord>> {
        self.with(|db| {
            let Some(r) = db.query_opt(
                "SELECT id, job_id, digest, plan, needed, state, expires_at, message_id FROM approvals
                 WHERE job_id = ?1 ORDER BY id DESC LIMIT 1",
                params![job_id],
            )?
            else {
                return Ok(None);
            };
            let id = r.int(0) as u64;
            Ok(Some(ApprovalRecord {
                id,
                job_id: r.int(1) as u64,
                digest: r.text(2),
                plan: r.text(3),
                needed: r.int(4) as u32,
                // A state this version does not know (written by a newer one) is no open request.
                state: ApprovalState::parse(&r.text(5)).unwrap_or(ApprovalState::Void),
                expires_at: r.opt_text(6).as_deref().and_then(parse_time),
                message_id: r.opt_text(7),
                votes: votes(db, id)?,
            }))
        })
        .ctx("read approval")
    }

    /// Job ids with a pending approval.
    pub fn pending_approvals(&self) -> StoreResult<Vec<u64>> {
        self.with(|db| {
            let rows = db.query("SELECT job_id FROM approvals WHERE state = 'pending' ORDER BY id", &[])?;
            Ok(rows.iter().map(|r| r.int(0) as u64).collect())
        })
        .ctx("list approvals")
    }

    /// Records a vote; false if this person already voted on it.
    pub fn add_vote(
        &self,
        approval_id: u64,
        user_id: &str,
        user_name: &str,
        decision: Choice,
        reason: Option<&str>,
    ) -> StoreResult<bool> {
        self.with(|db| {
            db.execute(
                "INSERT INTO approval_votes (approval_id, user_id, user_name, decision, reason, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                params![approval_id, user_id, user_name, decision.as_str(), reason, now()],
            )
        })
        .map(|n| n == 1)
        .ctx("record vote")
    }

    /// Moves an approval to `to` if the transition table allows it from where it is; false if
    /// it does not (another decision or the expiry got there first, on this replica or another:
    /// the update is one compare-and-set).
    pub fn decide_approval(&self, approval_id: u64, to: ApprovalState) -> StoreResult<bool> {
        let from: Vec<String> = to.reached_from().iter().map(|s| format!("'{}'", s.as_str())).collect();
        if from.is_empty() {
            return Ok(false);
        }
        let sql = format!(
            "UPDATE approvals SET state = ?2, decided_at = ?3 WHERE id = ?1 AND state IN ({})",
            from.join(", ")
        );
        self.with(|db| db.execute(&sql, params![approval_id, to.as_str(), now()]))
            .map(|n| n == 1)
            .ctx("decide approval")
    }

    pub fn set_approval_message(&self, approval_id: u64, message_id: &str) -> StoreResult<()> {
        self.with(|db| {
            db.execute(
                "UPDATE approvals SET message_id = ?2 WHERE id = ?1",
                params![approval_id, message_id],
            )
        })
        .ctx("record approval message")?;
        Ok(())
    }

    /// When a schedule last ran (its due time), if ever.
    pub fn last_schedule_run(&self, schedule: &str) -> StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
        self.with(|db| {
            let row = db.query_opt(
                "SELECT MAX(due_at) FROM schedule_runs WHERE schedule = ?1",
                params![schedule],
            )?;
            Ok(row.and_then(|r| r.opt_text(0)).as_deref().and_then(parse_time))
        })
        .ctx("read schedule runs")
    }

    /// Claims a schedule's run for `due`: false if it was already claimed, by this replica or
    /// another (no announcement twice, even across a restart).
    pub fn claim_schedule_run(
        &self,
        schedule: &str,
        due: chrono::DateTime<chrono::Utc>,
        outcome: &str,
    ) -> StoreResult<bool> {
        self.with(|db| {
            db.execute(
                "INSERT INTO schedule_runs (schedule, due_at, ran_at, outcome) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                params![
                    schedule,
                    due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    now(),
                    outcome
                ],
            )
        })
        .map(|n| n == 1)
        .ctx("record schedule run")
    }

    pub fn schedule_run_count(&self, schedule: &str) -> StoreResult<u64> {
        self.with(|db| {
            let row = db.query_opt(
                "SELECT COUNT(*) FROM schedule_runs WHERE schedule = ?1",
                params![schedule],
            )?;
            Ok(row.map(|r| r.int(0) as u64).unwrap_or(0))
        })
        .ctx("count schedule runs")
    }
}
