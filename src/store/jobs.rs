//! Job records: every accepted command that does work, from request to result.

use std::fmt;

use rusqlite::{params, OptionalExtension, Row};

use super::{now, parse_time, Context, Store, StoreResult};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Accepted, waiting for the environment (queue mode) or for approval.
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// The bot stopped while it ran and could not pick it up again.
    Interrupted,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> JobState {
        match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => JobState::Interrupted,
        }
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is recorded when a job is accepted.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub requester_id: String,
    pub requester_name: String,
    pub platform: String,
    pub channel: String,
    pub env: String,
    pub action: String,
    /// The command's arguments (roles, parameters) as JSON.
    pub args: String,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: u64,
    pub requester_id: String,
    pub requester_name: String,
    pub platform: String,
    pub channel: String,
    pub env: String,
    pub action: String,
    pub args: String,
    pub state: JobState,
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub status_message_id: Option<String>,
    pub result: Option<String>,
    pub log_path: Option<String>,
}

const COLUMNS: &str = "id, requester_id, requester_name, platform, channel, env, action, args, state, created_at, \
                       started_at, finished_at, status_message_id, result, log_path";

fn from_row(r: &Row<'_>) -> rusqlite::Result<JobRecord> {
    let time = |i: usize| -> rusqlite::Result<_> { Ok(r.get::<_, Option<String>>(i)?.as_deref().and_then(parse_time)) };
    Ok(JobRecord {
        id: r.get::<_, i64>(0)? as u64,
        requester_id: r.get(1)?,
        requester_name: r.get(2)?,
        platform: r.get(3)?,
        channel: r.get(4)?,
        env: r.get(5)?,
        action: r.get(6)?,
        args: r.get(7)?,
        state: JobState::parse(&r.get::<_, String>(8)?),
        created_at: time(9)?,
        started_at: time(10)?,
        finished_at: time(11)?,
        status_message_id: r.get(12)?,
        result: r.get(13)?,
        log_path: r.get(14)?,
    })
}

impl Store {
    /// Records a new job in `state` and returns its id.
    pub fn insert_job(&self, job: &NewJob, state: JobState) -> StoreResult<u64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO jobs (requester_id, requester_name, platform, channel, env, action, args, state, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                job.requester_id,
                job.requester_name,
                job.platform,
                job.channel,
                job.env,
                job.action,
                job.args,
                state.as_str(),
                now()
            ],
        )
        .ctx("insert job")?;
        Ok(conn.last_insert_rowid() as u64)
    }

    pub fn job(&self, id: u64) -> StoreResult<Option<JobRecord>> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                [id as i64],
                from_row,
            )
            .optional()
            .ctx("read job")
    }

    /// The newest jobs first.
    pub fn recent_jobs(&self, limit: usize) -> StoreResult<Vec<JobRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?1"))
            .ctx("list jobs")?;
        let rows = stmt.query_map([limit as i64], from_row).ctx("list jobs")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("list jobs")
    }

    /// Jobs that were queued or running: after a restart these are picked up again.
    pub fn unfinished_jobs(&self) -> StoreResult<Vec<JobRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE state IN ('queued', 'running') ORDER BY id"
            ))
            .ctx("list unfinished jobs")?;
        let rows = stmt.query_map([], from_row).ctx("list unfinished jobs")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("list unfinished jobs")
    }

    /// When a job with one of `actions` last succeeded on `env`.
    pub fn last_success(&self, env: &str, actions: &[&str]) -> StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
        let conn = self.conn();
        let list = actions
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', "")))
            .collect::<Vec<_>>()
            .join(",");
        let s: Option<String> = conn
            .query_row(
                &format!(
                    "SELECT MAX(finished_at) FROM jobs WHERE env = ?1 AND state = 'succeeded' AND action IN ({list})"
                ),
                [env],
                |r| r.get(0),
            )
            .ctx("read last success")?;
        Ok(s.as_deref().and_then(parse_time))
    }

    pub fn mark_running(&self, id: u64, log_path: &str) -> StoreResult<()> {
        self.conn()
            .execute(
                "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?2), log_path = ?3 WHERE id = ?1",
                params![id as i64, now(), log_path],
            )
            .ctx("mark job running")?;
        Ok(())
    }

    pub fn set_status_message(&self, id: u64, message_id: &str) -> StoreResult<()> {
        self.conn()
            .execute(
                "UPDATE jobs SET status_message_id = ?2 WHERE id = ?1",
                params![id as i64, message_id],
            )
            .ctx("record status message")?;
        Ok(())
    }

    /// Records the end of a job. A job already finished keeps its first result.
    pub fn finish_job(&self, id: u64, state: JobState, result: &str) -> StoreResult<()> {
        self.conn()
            .execute(
                "UPDATE jobs SET state = ?2, result = ?3, finished_at = ?4 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![id as i64, state.as_str(), result, now()],
            )
            .ctx("finish job")?;
        Ok(())
    }
}
