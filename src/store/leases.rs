//! Who may act: replicas with heartbeats, and environment locks with leases and fencing
//! tokens. Every time comparison uses the database's own clock (`NOW_MS()`), so replicas'
//! clocks need not agree.
//!
//! A lock row is free when its `job_id` is NULL. Taking it is one conditional upsert that
//! reads only the lock row itself (so PostgreSQL's re-check after a row-lock wait sees the
//! winner's write), and bumps the token. The owner renews the lease with its heartbeat; a
//! lease that ran out is taken over by a live replica with another conditional update, which
//! bumps the token again, so the old owner's writes are refused from then on.

use std::time::Duration;

use super::holds::{admit, lock_env_row, Checks, Refusal};
use super::jobs::{check_fence, JobRecord, JobState, NewJob};
use super::sql::{params, Sql};
use super::{now, Context, Store, StoreResult};
use crate::command::Action;

/// How long a lease lives and how often it is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    pub lease: Duration,
    pub heartbeat: Duration,
}

impl LeaseSettings {
    /// The lease and heartbeat the config asks for (`store.lease_ms`, `store.heartbeat_ms`).
    pub fn from_config(settings: &crate::config::StoreSettings) -> LeaseSettings {
        LeaseSettings {
            lease: Duration::from_millis(settings.lease_ms),
            heartbeat: Duration::from_millis(settings.heartbeat_ms),
        }
    }

    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            lease: Duration::from_secs(10),
            heartbeat: Duration::from_secs(2),
        }
    }
}

/// A registered process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    pub id: String,
    /// `bot`, `console` or `cli`.
    pub kind: String,
    pub host: String,
    pub pid: u32,
    /// The platforms whose jobs it may run and take over, comma-separated.
    pub platforms: String,
    pub started_at: String,
    /// Milliseconds since its last heartbeat, by the database's clock.
    pub silent_ms: i64,
    pub alive: bool,
}

/// An environment lock as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvLockRecord {
    pub env: String,
    pub job_id: Option<u64>,
    pub owner: Option<String>,
    pub token: i64,
    /// Whether the lease is still running (by the database's clock).
    pub live: bool,
}

/// A job whose owner's lease ran out.
#[derive(Debug, Clone)]
pub struct Takeover {
    pub lock: EnvLockRecord,
    pub job: Option<JobRecord>,
}

/// What [`Store::start_job`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum StartOutcome {
    /// Recorded as running with the environment's lock.
    Started { id: u64, token: i64 },
    /// The environment is held by this job (its record, if it has one).
    Busy(Box<Option<JobRecord>>, EnvLockRecord),
    /// A hold or a freeze says no; nothing was written.
    Refused(Box<Refusal>),
}

/// What [`Store::lock_for_job_with`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum LockOutcome {
    /// The job runs now, under this fencing token.
    Locked(i64),
    /// Another job holds the environment, or the job is no longer waiting.
    NotNow,
    /// A hold or a freeze says no (the job still waits; the caller ends it).
    Refused(Box<Refusal>),
}

/// Whether a job (verb and stored arguments) changes anything: only those are held or frozen.
/// A stored action this version cannot read counts as one that does.
fn mutates(verb: &str, args: &str) -> bool {
    Action::from_stored(verb, args).map(|a| a.mutates()).unwrap_or(true)
}

fn lock_from(r: &super::sql::Row) -> EnvLockRecord {
    EnvLockRecord {
        env: r.text(0),
        job_id: r.opt_int(1).map(|j| j as u64),
        owner: r.opt_text(2),
        token: r.int(3),
        live: r.int(4) != 0,
    }
}

const LOCK_COLUMNS: &str = "env, job_id, owner, token, CASE WHEN expires_ms >= NOW_MS() THEN 1 ELSE 0 END";

/// Takes `env`'s lock for `job_id` if it is free; returns the new fencing token.
fn acquire(db: &mut dyn Sql, env: &str, job_id: i64, owner: &str, lease_ms: i64) -> StoreResult<Option<i64>> {
    let row = db.query_opt(
        "INSERT INTO env_locks (env, job_id, owner, token, expires_ms) VALUES (?1, ?2, ?3, 1, NOW_MS() + ?4)
         ON CONFLICT (env) DO UPDATE SET job_id = excluded.job_id, owner = excluded.owner,
             token = env_locks.token + 1, expires_ms = excluded.expires_ms
         WHERE env_locks.job_id IS NULL
         RETURNING token",
        params![env, job_id, owner, lease_ms],
    )?;
    Ok(row.map(|r| r.int(0)))
}

fn lock_of(db: &mut dyn Sql, env: &str) -> StoreResult<Option<EnvLockRecord>> {
    Ok(db
        .query_opt(
            &format!("SELECT {LOCK_COLUMNS} FROM env_locks WHERE env = ?1"),
            params![env],
        )?
        .map(|r| lock_from(&r)))
}

impl Store {
    /// Registers (or re-registers) this process.
    pub fn register_replica(&self, id: &str, kind: &str, platforms: &[&str], lease: LeaseSettings) -> StoreResult<()> {
        let host = crate::names::hostname();
        self.with(|db| {
            db.execute(
                "INSERT INTO replicas (id, kind, host, pid, platforms, started_at, heartbeat_ms, expires_ms, stopped)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NOW_MS(), NOW_MS() + ?7, 0)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_ms = NOW_MS(), expires_ms = NOW_MS() + ?7, stopped = 0",
                params![
                    id,
                    kind,
                    host.as_str(),
                    std::process::id(),
                    platforms.join(","),
                    now(),
                    lease.lease_ms()
                ],
            )
        })
        .ctx("register replica")?;
        Ok(())
    }

    /// Renews this replica's lease and the leases of the locks it still holds (never one that
    /// already ran out: that job is another replica's to take over now). Returns the locks
    /// it holds: `(env, job id, token)`.
    pub fn heartbeat(&self, id: &str, lease: LeaseSettings) -> StoreResult<Vec<(String, u64, i64)>> {
        self.tx_within(lease.heartbeat, |db| {
            db.execute(
                "UPDATE replicas SET heartbeat_ms = NOW_MS(), expires_ms = NOW_MS() + ?2 WHERE id = ?1 AND stopped = 0",
                params![id, lease.lease_ms()],
            )?;
            db.execute(
                "UPDATE env_locks SET expires_ms = NOW_MS() + ?2
                 WHERE owner = ?1 AND job_id IS NOT NULL AND expires_ms >= NOW_MS()",
                params![id, lease.lease_ms()],
            )?;
            let rows = db.query(
                "SELECT env, job_id, token FROM env_locks WHERE owner = ?1 AND job_id IS NOT NULL AND expires_ms >= NOW_MS()",
                params![id],
            )?;
            Ok(rows.iter().map(|r| (r.text(0), r.int(1) as u64, r.int(2))).collect())
        })
        .ctx("heartbeat")
    }

    /// A clean stop: the replica's leases end now, so another replica takes over at once
    /// what it leaves running.
    pub fn retire_replica(&self, id: &str) -> StoreResult<()> {
        self.tx(|db| {
            db.execute(
                "UPDATE replicas SET stopped = 1, expires_ms = NOW_MS() - 1 WHERE id = ?1",
                params![id],
            )?;
            db.execute(
                "UPDATE env_locks SET expires_ms = NOW_MS() - 1 WHERE owner = ?1 AND job_id IS NOT NULL",
                params![id],
            )
        })
        .ctx("retire replica")?;
        Ok(())
    }

    /// Every registered replica, live ones first.
    pub fn replicas(&self) -> StoreResult<Vec<ReplicaRecord>> {
        self.with(|db| {
            let rows = db.query(
                "SELECT id, kind, host, pid, platforms, started_at, NOW_MS() - heartbeat_ms,
                        CASE WHEN expires_ms >= NOW_MS() THEN 1 ELSE 0 END
                 FROM replicas ORDER BY expires_ms DESC, id",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| ReplicaRecord {
                    id: r.text(0),
                    kind: r.text(1),
                    host: r.text(2),
                    pid: r.int(3) as u32,
                    platforms: r.text(4),
                    started_at: r.text(5),
                    silent_ms: r.int(6),
                    alive: r.int(7) != 0,
                })
                .collect())
        })
        .ctx("list replicas")
    }

    /// Jobs of `owner` that someone asked to cancel.
    pub fn cancel_requests(&self, owner: &str) -> StoreResult<Vec<u64>> {
        self.with(|db| {
            let rows = db.query(
                "SELECT id FROM jobs WHERE owner = ?1 AND cancel_requested = 1 AND state = 'running'",
                params![owner],
            )?;
            Ok(rows.iter().map(|r| r.int(0) as u64).collect())
        })
        .ctx("read cancel requests")
    }

    /// Queued jobs of `owner` whose approval was granted: the owner starts them.
    pub fn approved_unstarted(&self, owner: &str) -> StoreResult<Vec<u64>> {
        self.with(|db| {
            let rows = db.query(
                "SELECT j.id FROM jobs j JOIN approvals a ON a.job_id = j.id
                 WHERE j.owner = ?1 AND j.state = 'queued' AND a.state = 'approved' ORDER BY j.id",
                params![owner],
            )?;
            Ok(rows.iter().map(|r| r.int(0) as u64).collect())
        })
        .ctx("read approved jobs")
    }

    /// How many replicas of `kind` are alive (budgets shared per account or token are split
    /// by this count).
    pub fn live_replicas(&self, kind: &str) -> StoreResult<usize> {
        self.with(|db| {
            let row = db.query_opt(
                "SELECT COUNT(*) FROM replicas WHERE kind = ?1 AND expires_ms >= NOW_MS()",
                params![kind],
            )?;
            Ok(row.map(|r| r.int(0) as usize).unwrap_or(0))
        })
        .ctx("count replicas")
    }

    /// Forgets replicas silent for longer than `older` (their jobs were taken over long ago).
    pub fn prune_replicas(&self, older: Duration) -> StoreResult<()> {
        self.with(|db| {
            db.execute(
                "DELETE FROM replicas WHERE expires_ms < NOW_MS() - ?1",
                params![older.as_millis() as i64],
            )
        })
        .ctx("prune replicas")?;
        Ok(())
    }

    /// [`Store::start_job_with`] with no confirmation and no configured freeze.
    pub fn start_job(&self, job: &NewJob, owner: &str, lease: LeaseSettings) -> StoreResult<StartOutcome> {
        self.start_job_with(job, owner, lease, &Checks::default())
    }

    /// Records a job and takes its environment's lock in one transaction: either the job is
    /// running under a new fencing token, or nothing is written and the holder (another job,
    /// a hold, a freeze) is returned. A hold is decided under the same lock row, so a hold
    /// and a job started at the same moment never both win.
    pub fn start_job_with(
        &self,
        job: &NewJob,
        owner: &str,
        lease: LeaseSettings,
        checks: &Checks,
    ) -> StoreResult<StartOutcome> {
        let changes = mutates(&job.action, &job.args);
        self.tx(|db| {
            lock_env_row(db, &job.env)?;
            if let Some(refusal) = admit(db, &job.env, &job.person, changes, job.break_glass.is_some(), checks)? {
                return Ok(StartOutcome::Refused(Box::new(refusal)));
            }
            // A placeholder job id (0 names no job) until the job's row exists; nobody sees
            // it, the transaction is atomic.
            let Some(token) = acquire(db, &job.env, 0, owner, lease.lease_ms())? else {
                let lock = lock_of(db, &job.env)?.expect("a lock that is held exists");
                let holder = match lock.job_id {
                    Some(j) => db
                        .query_opt(
                            &format!("SELECT {} FROM jobs WHERE id = ?1", super::jobs::COLUMNS),
                            params![j],
                        )?
                        .map(|r| super::jobs::from_row(&r)),
                    None => None,
                };
                return Ok(StartOutcome::Busy(Box::new(holder), lock));
            };
            let id = super::jobs::insert_row(db, job, JobState::Running, Some(owner), Some(token))?;
            db.execute(
                "UPDATE env_locks SET job_id = ?2 WHERE env = ?1 AND token = ?3",
                params![&job.env, id, token],
            )?;
            Ok(StartOutcome::Started { id, token })
        })
        .ctx("start job")
    }

    /// [`Store::lock_for_job_with`], past warning holds and with no configured freeze: the
    /// token, or `None` when the job cannot start now (for whatever reason).
    pub fn lock_for_job(&self, job_id: u64, owner: &str, lease: LeaseSettings) -> StoreResult<Option<i64>> {
        let checks = Checks {
            confirmed: true,
            scheduled_freeze: None,
        };
        Ok(match self.lock_for_job_with(job_id, owner, lease, &checks)? {
            LockOutcome::Locked(token) => Some(token),
            LockOutcome::NotNow | LockOutcome::Refused(_) => None,
        })
    }

    /// Takes the environment's lock for a job already recorded (queued, or approved), after
    /// the same hold and freeze checks as a new job's; on success the job is running under
    /// the returned token.
    pub fn lock_for_job_with(
        &self,
        job_id: u64,
        owner: &str,
        lease: LeaseSettings,
        checks: &Checks,
    ) -> StoreResult<LockOutcome> {
        self.tx(|db| {
            let Some(row) = db.query_opt(
                "SELECT env, person, break_glass, action, args FROM jobs WHERE id = ?1 AND state IN ('queued', 'running')",
                params![job_id],
            )?
            else {
                return Ok(LockOutcome::NotNow);
            };
            let env = row.text(0);
            let person = row.opt_text(1).unwrap_or_default();
            let break_glass = row.opt_text(2).is_some();
            lock_env_row(db, &env)?;
            let changes = mutates(&row.text(3), &row.text(4));
            if let Some(refusal) = admit(db, &env, &person, changes, break_glass, checks)? {
                return Ok(LockOutcome::Refused(Box::new(refusal)));
            }
            let Some(token) = acquire(db, &env, job_id as i64, owner, lease.lease_ms())? else {
                return Ok(LockOutcome::NotNow);
            };
            db.execute(
                "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?2), owner = ?3, token = ?4 WHERE id = ?1",
                params![job_id, now(), owner, token],
            )?;
            Ok(LockOutcome::Locked(token))
        })
        .ctx("lock environment")
    }

    /// The lock of an environment, if it was ever taken.
    pub fn env_lock(&self, env: &str) -> StoreResult<Option<EnvLockRecord>> {
        self.with(|db| lock_of(db, env)).ctx("read environment lock")
    }

    /// Environments whose lock is held, with their job ids.
    pub fn held_locks(&self) -> StoreResult<Vec<EnvLockRecord>> {
        self.with(|db| {
            let rows = db.query(
                &format!("SELECT {LOCK_COLUMNS} FROM env_locks WHERE job_id IS NOT NULL ORDER BY env"),
                &[],
            )?;
            Ok(rows.iter().map(lock_from).collect())
        })
        .ctx("list environment locks")
    }

    /// Records a job's end and frees its environment in one fenced transaction. Refused (and
    /// nothing written) when `token` is stale.
    pub fn finish_and_release(&self, id: u64, token: i64, state: JobState, result: &str) -> StoreResult<()> {
        self.tx(|db| {
            check_fence(db, "finish job", id, token)?;
            db.execute(
                "UPDATE jobs SET state = ?2, result = ?3, finished_at = ?4 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![id, state.as_str(), result, now()],
            )?;
            db.execute(
                "UPDATE env_locks SET job_id = NULL, owner = NULL, expires_ms = 0 WHERE job_id = ?1 AND token = ?2",
                params![id, token],
            )?;
            Ok(())
        })
        .ctx("finish job")
    }

    /// Locks whose lease ran out, with their jobs.
    pub fn expired_locks(&self) -> StoreResult<Vec<Takeover>> {
        self.with(|db| {
            let rows = db.query(
                &format!("SELECT {LOCK_COLUMNS} FROM env_locks WHERE job_id IS NOT NULL AND expires_ms < NOW_MS() ORDER BY env"),
                &[],
            )?;
            let mut out = Vec::new();
            for r in rows {
                let lock = lock_from(&r);
                let job = match lock.job_id {
                    Some(j) => db
                        .query_opt(&format!("SELECT {} FROM jobs WHERE id = ?1", super::jobs::COLUMNS), params![j])?
                        .map(|r| super::jobs::from_row(&r)),
                    None => None,
                };
                out.push(Takeover { lock, job });
            }
            Ok(out)
        })
        .ctx("list expired locks")
    }

    /// Takes over an expired lock (compare-and-set on its token): the new token, or `None`
    /// when another replica was first or the owner came back in time.
    pub fn take_over(&self, env: &str, token: i64, owner: &str, lease: LeaseSettings) -> StoreResult<Option<i64>> {
        self.tx(|db| {
            let row = db.query_opt(
                "UPDATE env_locks SET owner = ?3, token = token + 1, expires_ms = NOW_MS() + ?4
                 WHERE env = ?1 AND token = ?2 AND job_id IS NOT NULL AND expires_ms < NOW_MS()
                 RETURNING token, job_id",
                params![env, token, owner, lease.lease_ms()],
            )?;
            let Some(r) = row else { return Ok(None) };
            let (new, job) = (r.int(0), r.int(1));
            db.execute(
                "UPDATE jobs SET owner = ?2, token = ?3 WHERE id = ?1",
                params![job, owner, new],
            )?;
            Ok(Some(new))
        })
        .ctx("take over job")
    }

    /// Frees an expired lock whose job is over or gone (its owner died between the two).
    pub fn release_stale(&self, env: &str, token: i64) -> StoreResult<bool> {
        self.with(|db| {
            db.execute(
                "UPDATE env_locks SET job_id = NULL, owner = NULL, expires_ms = 0
                 WHERE env = ?1 AND token = ?2 AND expires_ms < NOW_MS()",
                params![env, token],
            )
        })
        .map(|n| n == 1)
        .ctx("release stale lock")
    }

    /// Queued jobs (waiting for the environment or for approval) whose owner is gone.
    pub fn orphaned_jobs(&self) -> StoreResult<Vec<JobRecord>> {
        self.with(|db| {
            let rows = db.query(
                &format!(
                    "SELECT {} FROM jobs WHERE state = 'queued'
                     AND (owner IS NULL OR owner NOT IN (SELECT id FROM replicas WHERE expires_ms >= NOW_MS()))
                     ORDER BY id",
                    super::jobs::COLUMNS
                ),
                &[],
            )?;
            Ok(rows.iter().map(super::jobs::from_row).collect())
        })
        .ctx("list orphaned jobs")
    }

    /// Adopts a queued job from a gone owner (compare-and-set on the old owner).
    pub fn adopt_job(&self, id: u64, old_owner: Option<&str>, owner: &str) -> StoreResult<bool> {
        self.with(|db| {
            db.execute(
                "UPDATE jobs SET owner = ?3 WHERE id = ?1 AND state = 'queued' AND COALESCE(owner, '') = ?2",
                params![id, old_owner.unwrap_or(""), owner],
            )
        })
        .map(|n| n == 1)
        .ctx("adopt job")
    }

    /// Running jobs that hold no lock: recorded before locks lived in the store (an older
    /// version's database). They are resumed by taking their environment's lock.
    pub fn unlocked_running_jobs(&self) -> StoreResult<Vec<JobRecord>> {
        self.with(|db| {
            let rows = db.query(
                &format!(
                    "SELECT {} FROM jobs WHERE state = 'running'
                     AND NOT EXISTS (SELECT 1 FROM env_locks l WHERE l.job_id = jobs.id)
                     ORDER BY id",
                    super::jobs::COLUMNS
                ),
                &[],
            )?;
            Ok(rows.iter().map(super::jobs::from_row).collect())
        })
        .ctx("list unlocked jobs")
    }
}
