//! Job records: every accepted command that does work, from request to result.

use crate::address::Surface;
use crate::command::Action;
use std::fmt;

use super::sql::{params, Row, Sql};
use super::{now, parse_time, Context, DbError, Store, StoreError, StoreResult};

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
    pub platform: Surface,
    pub channel: String,
    pub env: String,
    pub action: String,
    /// The command's arguments (roles, parameters) as JSON.
    pub args: String,
    /// Who asked, across surfaces (a [`crate::people::PersonKey`]): a hold lets its holder's
    /// jobs through, whichever surface they ask from.
    pub person: String,
    /// Why it may run through a freeze (`--break-glass "reason"`), if it may.
    pub break_glass: Option<String>,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: u64,
    pub requester_id: String,
    pub requester_name: String,
    pub platform: Surface,
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
    /// The replica that runs (or will run) the job.
    pub owner: Option<String>,
    /// The fencing token of the environment lock the job holds, once it holds one.
    pub token: Option<i64>,
    /// Someone asked to cancel it (the owner acts on it, wherever the request came from).
    pub cancel_requested: bool,
    /// The latest status line, for `job <id>` on any replica.
    pub progress: Option<String>,
    /// The ref a deploy was asked for, and the commit it resolved to (none for jobs that
    /// deploy no code, and for deploys without a configured repository).
    pub git_ref: Option<String>,
    pub sha: Option<String>,
    /// The hosts a finished deploy configured.
    pub hosts: Vec<String>,
    /// Who asked, across surfaces (empty for jobs recorded before holds existed).
    pub person: String,
    /// The reason it was let through a freeze, if it was.
    pub break_glass: Option<String>,
}

pub(crate) const COLUMNS: &str = "id, requester_id, requester_name, platform, channel, env, action, args, state, created_at, \
                       started_at, finished_at, status_message_id, result, log_path, owner, token, cancel_requested, progress, \
                       git_ref, sha, hosts, person, break_glass";

pub(crate) fn from_row(r: &Row) -> JobRecord {
    let time = |i: usize| r.opt_text(i).as_deref().and_then(parse_time);
    JobRecord {
        id: r.int(0) as u64,
        requester_id: r.text(1),
        requester_name: r.text(2),
        // A surface this version does not know (a newer one wrote it) posts nothing here.
        platform: Surface::parse(&r.text(3)).unwrap_or(Surface::Cli),
        channel: r.text(4),
        env: r.text(5),
        action: r.text(6),
        args: r.text(7),
        state: JobState::parse(&r.text(8)),
        created_at: time(9),
        started_at: time(10),
        finished_at: time(11),
        status_message_id: r.opt_text(12),
        result: r.opt_text(13),
        log_path: r.opt_text(14),
        owner: r.opt_text(15),
        token: r.opt_int(16),
        cancel_requested: r.int(17) != 0,
        progress: r.opt_text(18),
        git_ref: r.opt_text(19),
        sha: r.opt_text(20),
        hosts: r
            .opt_text(21)
            .map(|h| h.split(',').filter(|h| !h.is_empty()).map(str::to_string).collect())
            .unwrap_or_default(),
        person: r.opt_text(22).unwrap_or_default(),
        break_glass: r.opt_text(23),
    }
}

/// Checks, inside a transaction, that job `id` still holds its environment's lock with
/// `token`, and locks that lock row until the transaction ends. Every fenced write does this
/// first: a takeover (which updates the lock row) either happened before, and the write is
/// refused, or waits until the write is committed. Lock rows are always locked before job
/// rows (here, in takeovers and in starts), so these transactions never deadlock.
/// Inserts a job's row: running ones start now under the lock with `token`.
pub(crate) fn insert_row(
    db: &mut dyn Sql,
    job: &NewJob,
    state: JobState,
    owner: Option<&str>,
    token: Option<i64>,
) -> StoreResult<u64> {
    let now = now();
    let started = (state == JobState::Running).then(|| now.clone());
    // The version columns index what the stored action says, so `history` and rollbacks can
    // ask the database instead of reading every job's arguments.
    let version = Action::from_stored(&job.action, &job.args)
        .ok()
        .and_then(|a| a.version().cloned())
        .unwrap_or_default();
    let row = db.query_opt(
        "INSERT INTO jobs (requester_id, requester_name, platform, channel, env, action, args, state,
                           created_at, started_at, owner, token, git_ref, sha, person, break_glass)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) RETURNING id",
        params![
            &job.requester_id,
            &job.requester_name,
            job.platform.as_str(),
            &job.channel,
            &job.env,
            &job.action,
            &job.args,
            state.as_str(),
            now,
            started,
            owner,
            token,
            version.git_ref,
            version.commit,
            &job.person,
            job.break_glass.as_deref()
        ],
    )?;
    Ok(row.map(|r| r.int(0) as u64).unwrap_or(0))
}

/// How long a fenced progress write keeps retrying while the database is unreachable.
const FENCED_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) fn check_fence(db: &mut dyn Sql, what: &str, id: u64, token: i64) -> StoreResult<()> {
    let env = db
        .query_opt("SELECT env FROM jobs WHERE id = ?1", params![id])?
        .map(|r| r.text(0));
    let held = match env {
        Some(env) => db
            .query_opt(
                "SELECT token FROM env_locks WHERE env = ?1 AND job_id = ?2 AND token = ?3 FOR_UPDATE",
                params![env, id, token],
            )?
            .is_some(),
        None => false,
    };
    if held {
        Ok(())
    } else {
        Err(StoreError::new(what, DbError::Fenced(token)))
    }
}

impl Store {
    /// Records a new job in `state`, owned by `owner`, and returns its id.
    pub fn insert_job(&self, job: &NewJob, state: JobState) -> StoreResult<u64> {
        self.insert_job_for(job, state, None)
    }

    pub fn insert_job_for(&self, job: &NewJob, state: JobState, owner: Option<&str>) -> StoreResult<u64> {
        self.with(|db| insert_row(db, job, state, owner, None))
            .ctx("insert job")
    }

    pub fn job(&self, id: u64) -> StoreResult<Option<JobRecord>> {
        self.with(|db| {
            Ok(db
                .query_opt(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"), params![id])?
                .map(|r| from_row(&r)))
        })
        .ctx("read job")
    }

    /// The newest jobs first.
    pub fn recent_jobs(&self, limit: usize) -> StoreResult<Vec<JobRecord>> {
        self.with(|db| {
            let rows = db.query(
                &format!("SELECT {COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?1"),
                params![limit as i64],
            )?;
            Ok(rows.iter().map(from_row).collect())
        })
        .ctx("list jobs")
    }

    /// Jobs that were queued or running.
    pub fn unfinished_jobs(&self) -> StoreResult<Vec<JobRecord>> {
        self.with(|db| {
            let rows = db.query(
                &format!("SELECT {COLUMNS} FROM jobs WHERE state IN ('queued', 'running') ORDER BY id"),
                &[],
            )?;
            Ok(rows.iter().map(from_row).collect())
        })
        .ctx("list unfinished jobs")
    }

    /// When a job with one of `actions` last succeeded on `env`.
    pub fn last_success(&self, env: &str, actions: &[&str]) -> StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
        let list = actions
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', "")))
            .collect::<Vec<_>>()
            .join(",");
        self.with(|db| {
            let row = db.query_opt(
                &format!(
                    "SELECT MAX(finished_at) FROM jobs WHERE env = ?1 AND state = 'succeeded' AND action IN ({list})"
                ),
                params![env],
            )?;
            Ok(row.and_then(|r| r.opt_text(0)).as_deref().and_then(parse_time))
        })
        .ctx("read last success")
    }

    /// A fenced write: `set` (`?1` is the job id, `?2`... the `extra` values, `{token}` the
    /// token) lands only while the job holds its lock with `token`; otherwise nothing is
    /// written and the call fails with [`DbError::Fenced`].
    fn fenced(&self, what: &str, id: u64, token: i64, set: &str, extra: &[super::sql::Value]) -> StoreResult<()> {
        let mut values = vec![super::sql::Value::Int(id as i64)];
        values.extend_from_slice(extra);
        let set = if set.contains("{token}") {
            values.push(super::sql::Value::Int(token));
            set.replace("{token}", &format!("?{}", values.len()))
        } else {
            set.to_string()
        };
        let sql = format!("UPDATE jobs SET {set} WHERE id = ?1 AND state IN ('queued', 'running')");
        // Short: a job that cannot reach the store keeps going (these writes are progress and
        // ids), and one whose lease runs out meanwhile must be free to notice and stop.
        self.tx_within(FENCED_RETRY, |db| {
            check_fence(db, what, id, token)?;
            if db.execute(&sql, &values)? == 0 {
                // Over already: the first result stays.
                return Err(StoreError::new(what, DbError::Fenced(token)));
            }
            Ok(())
        })
        .ctx(what)
    }

    /// Marks a job as running under the lock with `token`.
    pub fn mark_running(&self, id: u64, token: i64, log_path: &str) -> StoreResult<()> {
        self.fenced(
            "mark job running",
            id,
            token,
            "state = 'running', started_at = COALESCE(started_at, ?2), log_path = ?3, token = {token}",
            params![now(), log_path],
        )
    }

    pub fn set_status_message(&self, id: u64, token: i64, message_id: &str) -> StoreResult<()> {
        self.fenced(
            "record status message",
            id,
            token,
            "status_message_id = ?2",
            params![message_id],
        )
    }

    /// The latest status line of a running job.
    pub fn set_progress(&self, id: u64, token: i64, line: &str) -> StoreResult<()> {
        self.fenced("record progress", id, token, "progress = ?2", params![line])
    }

    /// Records the end of a job that holds its lock with `token`. A job already finished
    /// keeps its first result.
    pub fn finish_job(&self, id: u64, token: i64, state: JobState, result: &str) -> StoreResult<()> {
        self.fenced(
            "finish job",
            id,
            token,
            "state = ?2, result = ?3, finished_at = ?4",
            params![state.as_str(), result, now()],
        )
    }

    /// Ends a job that holds no lock (queued, waiting for approval, or abandoned): only while
    /// it is still unfinished. True if this call ended it.
    pub fn end_unstarted_job(&self, id: u64, state: JobState, result: &str) -> StoreResult<bool> {
        self.with(|db| {
            db.execute(
                "UPDATE jobs SET state = ?2, result = ?3, finished_at = ?4 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![id, state.as_str(), result, now()],
            )
        })
        .map(|n| n == 1)
        .ctx("finish job")
    }

    /// Asks the job's owner, wherever it runs, to cancel it. False if it is not unfinished.
    pub fn request_cancel(&self, id: u64) -> StoreResult<bool> {
        self.with(|db| {
            db.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![id],
            )
        })
        .map(|n| n == 1)
        .ctx("request cancel")
    }

    /// Hands an unfinished job to another owner (a queued job or an approved request whose
    /// replica is gone).
    pub fn set_job_owner(&self, id: u64, owner: &str) -> StoreResult<()> {
        self.with(|db| db.execute("UPDATE jobs SET owner = ?2 WHERE id = ?1", params![id, owner]))
            .ctx("set job owner")?;
        Ok(())
    }
}
