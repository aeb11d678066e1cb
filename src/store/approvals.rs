//! Approval requests and their votes. An approval belongs to one job (its id is the job's id in
//! every reply), records the digest of the plan it approves, and ends approved, denied,
//! expired or void (the plan changed).

use rusqlite::{params, OptionalExtension};

use super::{now, parse_time, Context, Store, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub user_id: String,
    pub user_name: String,
    pub decision: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRecord {
    pub id: u64,
    pub job_id: u64,
    pub digest: String,
    pub plan: String,
    pub needed: u32,
    /// pending, approved, denied, expired, void
    pub state: String,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub message_id: Option<String>,
    pub votes: Vec<Vote>,
}

impl ApprovalRecord {
    pub fn approvals(&self) -> usize {
        self.votes.iter().filter(|v| v.decision == "approve").count()
    }
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
        let conn = self.conn();
        conn.execute(
            "INSERT INTO approvals (job_id, digest, plan, needed, state, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6)",
            params![job_id as i64, digest, plan, needed, now(), expires_at.to_rfc3339()],
        )
        .ctx("insert approval")?;
        Ok(conn.last_insert_rowid() as u64)
    }

    fn votes(&self, approval_id: u64) -> StoreResult<Vec<Vote>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT user_id, user_name, decision, reason FROM approval_votes WHERE approval_id = ?1 ORDER BY at",
            )
            .ctx("read votes")?;
        let rows = stmt
            .query_map([approval_id as i64], |r| {
                Ok(Vote {
                    user_id: r.get(0)?,
                    user_name: r.get(1)?,
                    decision: r.get(2)?,
                    reason: r.get(3)?,
                })
            })
            .ctx("read votes")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("read votes")
    }

    /// The approval of a job, with its votes.
    pub fn approval_for_job(&self, job_id: u64) -> StoreResult<Option<ApprovalRecord>> {
        let row = self
            .conn()
            .query_row(
                "SELECT id, job_id, digest, plan, needed, state, expires_at, message_id FROM approvals WHERE job_id = ?1 ORDER BY id DESC LIMIT 1",
                [job_id as i64],
                |r| {
                    Ok(ApprovalRecord {
                        id: r.get::<_, i64>(0)? as u64,
                        job_id: r.get::<_, i64>(1)? as u64,
                        digest: r.get(2)?,
                        plan: r.get(3)?,
                        needed: r.get(4)?,
                        state: r.get(5)?,
                        expires_at: r.get::<_, String>(6).ok().as_deref().and_then(parse_time),
                        message_id: r.get(7)?,
                        votes: Vec::new(),
                    })
                },
            )
            .optional()
            .ctx("read approval")?;
        match row {
            Some(mut a) => {
                a.votes = self.votes(a.id)?;
                Ok(Some(a))
            }
            None => Ok(None),
        }
    }

    /// Job ids with a pending approval.
    pub fn pending_approvals(&self) -> StoreResult<Vec<u64>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT job_id FROM approvals WHERE state = 'pending' ORDER BY id")
            .ctx("list approvals")?;
        let rows = stmt
            .query_map([], |r| Ok(r.get::<_, i64>(0)? as u64))
            .ctx("list approvals")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("list approvals")
    }

    /// Records a vote; false if this person already voted on it.
    pub fn add_vote(
        &self,
        approval_id: u64,
        user_id: &str,
        user_name: &str,
        decision: &str,
        reason: Option<&str>,
    ) -> StoreResult<bool> {
        let n = self
            .conn()
            .execute(
                "INSERT OR IGNORE INTO approval_votes (approval_id, user_id, user_name, decision, reason, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![approval_id as i64, user_id, user_name, decision, reason, now()],
            )
            .ctx("record vote")?;
        Ok(n == 1)
    }

    /// Moves a pending approval to its end state; false if it was no longer pending (another
    /// decision or the expiry got there first).
    pub fn decide_approval(&self, approval_id: u64, state: &str) -> StoreResult<bool> {
        let n = self
            .conn()
            .execute(
                "UPDATE approvals SET state = ?2, decided_at = ?3 WHERE id = ?1 AND state = 'pending'",
                params![approval_id as i64, state, now()],
            )
            .ctx("decide approval")?;
        Ok(n == 1)
    }

    /// Voids an approval whose plan changed (after it was approved, before the job started).
    pub fn void_approval(&self, approval_id: u64) -> StoreResult<()> {
        self.conn()
            .execute(
                "UPDATE approvals SET state = 'void', decided_at = ?2 WHERE id = ?1",
                params![approval_id as i64, now()],
            )
            .ctx("void approval")?;
        Ok(())
    }

    pub fn set_approval_message(&self, approval_id: u64, message_id: &str) -> StoreResult<()> {
        self.conn()
            .execute(
                "UPDATE approvals SET message_id = ?2 WHERE id = ?1",
                params![approval_id as i64, message_id],
            )
            .ctx("record approval message")?;
        Ok(())
    }

    /// When a schedule last ran (its due time), if ever.
    pub fn last_schedule_run(&self, schedule: &str) -> StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
        let s: Option<String> = self
            .conn()
            .query_row(
                "SELECT MAX(due_at) FROM schedule_runs WHERE schedule = ?1",
                [schedule],
                |r| r.get(0),
            )
            .ctx("read schedule runs")?;
        Ok(s.as_deref().and_then(parse_time))
    }

    /// Claims a schedule's run for `due`: false if it was already claimed (no announcement twice,
    /// even across a restart).
    pub fn claim_schedule_run(
        &self,
        schedule: &str,
        due: chrono::DateTime<chrono::Utc>,
        outcome: &str,
    ) -> StoreResult<bool> {
        let n = self
            .conn()
            .execute(
                "INSERT OR IGNORE INTO schedule_runs (schedule, due_at, ran_at, outcome) VALUES (?1, ?2, ?3, ?4)",
                params![
                    schedule,
                    due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    now(),
                    outcome
                ],
            )
            .ctx("record schedule run")?;
        Ok(n == 1)
    }

    pub fn schedule_run_count(&self, schedule: &str) -> StoreResult<u64> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM schedule_runs WHERE schedule = ?1",
                [schedule],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .ctx("count schedule runs")
    }
}
