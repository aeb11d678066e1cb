//! Holds: "hands off this environment". A hold has a holder (a person, whatever surface they
//! speak from), a reason, a start and an end, all by the database's clock, so every replica
//! agrees when it lapses even if their clocks do not. A hold is taken under the environment's
//! lock row, and a job starts under the same row after looking for a hold, so a hold and a
//! deploy started at the same moment on two replicas never both win. Ended holds stay as rows
//! (released or lapsed), which is how their ends are announced once.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::freezes::{active_freeze, last_ending, FreezeRecord};
use super::jobs::{from_row, JobRecord, COLUMNS};
use super::sql::{params, Row, Sql, Value};
use super::{Context, Store, StoreResult};
use crate::address::Surface;

/// A hold as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRecord {
    pub id: u64,
    pub env: String,
    /// The holder, across surfaces (a [`crate::people::PersonKey`]).
    pub person: String,
    pub holder_name: String,
    /// Where it was taken (the holder's reminder goes there).
    pub platform: Surface,
    pub channel: String,
    pub reason: String,
    /// Others are only warned (and go ahead with `--confirm`).
    pub warn: bool,
    pub started_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// How long it still lasts, by the database's clock (zero once over).
    pub left: Duration,
    /// When it was released or lapsed, and who released it (none: it lapsed).
    pub released_at: Option<DateTime<Utc>>,
    pub released_by: Option<String>,
}

/// A hold to take.
#[derive(Debug, Clone)]
pub struct NewHold {
    pub env: String,
    pub person: String,
    pub holder_name: String,
    pub platform: Surface,
    pub channel: String,
    pub reason: String,
    pub warn: bool,
    pub duration: Duration,
}

/// What [`Store::take_hold`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum HoldOutcome {
    /// A new hold.
    Taken(HoldRecord),
    /// The holder's own hold, with the new reason and end.
    Renewed(HoldRecord),
    /// Someone else holds the environment.
    HeldBy(HoldRecord),
    /// Someone else's job runs on it (a hold is taken once it ends).
    Busy(Box<JobRecord>),
}

/// What [`Store::release_hold`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ReleaseOutcome {
    Released(HoldRecord),
    /// Nobody holds the environment.
    NotHeld,
    /// Someone else holds it, and the release was not forced.
    NotYours(HoldRecord),
}

/// Why a job may not start now.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Someone else holds the environment.
    Held(HoldRecord),
    /// Someone else holds it with `--warn`: the job goes ahead with `--confirm`.
    Warned(HoldRecord),
    /// A freeze covers the environment (and the job has no break-glass reason).
    Frozen(FreezeRecord),
}

/// What a job's start checks besides the store's own rows: whether its requester confirmed
/// past a warning hold, and a configured freeze window covering the environment now (the
/// config's cron windows are computed by the caller; ad-hoc freezes are rows here).
#[derive(Debug, Clone, Default)]
pub struct Checks {
    pub confirmed: bool,
    pub scheduled_freeze: Option<FreezeRecord>,
}

pub(super) const HOLD_COLUMNS: &str =
    "id, env, person, holder_name, platform, channel, reason, warn, started_ms, ends_ms, \
     CASE WHEN ends_ms > NOW_MS() THEN ends_ms - NOW_MS() ELSE 0 END, released_ms, released_by";

pub(super) fn millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn hold_from(r: &Row) -> HoldRecord {
    HoldRecord {
        id: r.int(0) as u64,
        env: r.text(1),
        person: r.text(2),
        holder_name: r.text(3),
        platform: Surface::parse(&r.text(4)).unwrap_or(Surface::Cli),
        channel: r.text(5),
        reason: r.text(6),
        warn: r.int(7) != 0,
        started_at: millis(r.int(8)),
        ends_at: millis(r.int(9)),
        left: Duration::from_millis(r.int(10).max(0) as u64),
        released_at: r.opt_int(11).map(millis),
        released_by: r.opt_text(12),
    }
}

/// The environment's hold in force, if any.
pub(super) fn active_hold(db: &mut dyn Sql, env: &str) -> StoreResult<Option<HoldRecord>> {
    Ok(db
        .query_opt(
            &format!(
                "SELECT {HOLD_COLUMNS} FROM holds WHERE env = ?1 AND released_ms IS NULL AND ends_ms > NOW_MS()
                 ORDER BY id DESC LIMIT 1"
            ),
            params![env],
        )?
        .map(|r| hold_from(&r)))
}

/// Locks the environment's lock row (creating a free one) until the transaction ends: holds
/// and job starts on one environment take it first, so they are decided one after another.
pub(super) fn lock_env_row(db: &mut dyn Sql, env: &str) -> StoreResult<()> {
    db.execute(
        "INSERT INTO env_locks (env, job_id, owner, token, expires_ms) VALUES (?1, NULL, NULL, 0, 0)
         ON CONFLICT (env) DO UPDATE SET env = excluded.env",
        params![env],
    )?;
    Ok(())
}

/// Whether a job of `person` on `env` may start now; called under the environment's lock row.
/// Only jobs that change something are held or frozen.
pub(super) fn admit(
    db: &mut dyn Sql,
    env: &str,
    person: &str,
    mutates: bool,
    break_glass: bool,
    checks: &Checks,
) -> StoreResult<Option<Refusal>> {
    if !mutates {
        return Ok(None);
    }
    if let Some(hold) = active_hold(db, env)? {
        if hold.person != person {
            if !hold.warn {
                return Ok(Some(Refusal::Held(hold)));
            }
            if !checks.confirmed {
                return Ok(Some(Refusal::Warned(hold)));
            }
        }
    }
    if break_glass {
        return Ok(None);
    }
    let freeze = last_ending(active_freeze(db, env)?, checks.scheduled_freeze.clone());
    Ok(freeze.map(Refusal::Frozen))
}

impl Store {
    /// Whether a change of `person` to `env` would be refused now, by the same rule a job's
    /// start applies ([`Store::start_job_with`]), read without taking the lock.
    pub fn refusal_now(
        &self,
        env: &str,
        person: &str,
        break_glass: bool,
        checks: &Checks,
    ) -> StoreResult<Option<Refusal>> {
        self.with(|db| admit(db, env, person, true, break_glass, checks))
            .ctx("check holds and freezes")
    }

    /// Takes a hold on `env` for `hold.person`, or renews their own; refused while someone
    /// else holds it or runs a job on it. Decided under the environment's lock row, like a
    /// job's start. `same_person` tells whether a running job's requester is the holder.
    pub fn take_hold(&self, hold: &NewHold, same_person: &dyn Fn(&JobRecord) -> bool) -> StoreResult<HoldOutcome> {
        let duration_ms = hold.duration.as_millis().min(i64::MAX as u128) as i64;
        self.tx(|db| {
            lock_env_row(db, &hold.env)?;
            if let Some(current) = active_hold(db, &hold.env)? {
                if current.person != hold.person {
                    return Ok(HoldOutcome::HeldBy(current));
                }
                db.execute(
                    "UPDATE holds SET reason = ?2, warn = ?3, ends_ms = NOW_MS() + ?4, reminded = 0,
                         holder_name = ?5, platform = ?6, channel = ?7 WHERE id = ?1",
                    params![
                        current.id,
                        &hold.reason,
                        hold.warn as i64,
                        duration_ms,
                        &hold.holder_name,
                        hold.platform.as_str(),
                        &hold.channel
                    ],
                )?;
                let renewed = active_hold(db, &hold.env)?.unwrap_or(current);
                return Ok(HoldOutcome::Renewed(renewed));
            }
            let running = db.query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM jobs WHERE id = (SELECT job_id FROM env_locks WHERE env = ?1)
                     AND state IN ('queued', 'running')"
                ),
                params![&hold.env],
            )?;
            if let Some(job) = running.map(|r| from_row(&r)) {
                if !same_person(&job) {
                    return Ok(HoldOutcome::Busy(Box::new(job)));
                }
            }
            let id = db
                .query_opt(
                    "INSERT INTO holds (env, person, holder_name, platform, channel, reason, warn, started_ms, ends_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NOW_MS(), NOW_MS() + ?8) RETURNING id",
                    params![
                        &hold.env,
                        &hold.person,
                        &hold.holder_name,
                        hold.platform.as_str(),
                        &hold.channel,
                        &hold.reason,
                        hold.warn as i64,
                        duration_ms
                    ],
                )?
                .map(|r| r.int(0))
                .unwrap_or(0);
            let taken = db
                .query_opt(&format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ?1"), params![id])?
                .map(|r| hold_from(&r))
                .expect("the hold just inserted");
            Ok(HoldOutcome::Taken(taken))
        })
        .ctx("take hold")
    }

    /// Ends `person`'s hold on `env` (anyone's with `force`), recording who released it.
    pub fn release_hold(&self, env: &str, person: &str, by_name: &str, force: bool) -> StoreResult<ReleaseOutcome> {
        self.tx(|db| {
            lock_env_row(db, env)?;
            let Some(hold) = active_hold(db, env)? else {
                return Ok(ReleaseOutcome::NotHeld);
            };
            if hold.person != person && !force {
                return Ok(ReleaseOutcome::NotYours(hold));
            }
            db.execute(
                "UPDATE holds SET released_ms = NOW_MS(), released_by = ?2 WHERE id = ?1",
                params![hold.id, by_name],
            )?;
            let released = db
                .query_opt(
                    &format!("SELECT {HOLD_COLUMNS} FROM holds WHERE id = ?1"),
                    params![hold.id],
                )?
                .map(|r| hold_from(&r))
                .unwrap_or(hold);
            Ok(ReleaseOutcome::Released(released))
        })
        .ctx("release hold")
    }

    /// The hold in force on `env`, if any.
    pub fn hold_on(&self, env: &str) -> StoreResult<Option<HoldRecord>> {
        self.with(|db| active_hold(db, env)).ctx("read hold")
    }

    /// The unreleased holds that also meet `condition` (SQL over the holds table).
    fn holds_where(&self, condition: &str, values: &[Value], what: &str) -> StoreResult<Vec<HoldRecord>> {
        self.with(|db| {
            let rows = db.query(
                &format!("SELECT {HOLD_COLUMNS} FROM holds WHERE released_ms IS NULL AND {condition}"),
                values,
            )?;
            Ok(rows.iter().map(hold_from).collect())
        })
        .ctx(what)
    }

    /// Every hold in force, by environment.
    pub fn active_holds(&self) -> StoreResult<Vec<HoldRecord>> {
        self.holds_where("ends_ms > NOW_MS() ORDER BY env, id", &[], "list holds")
    }

    /// Holds in force that end within `before` and whose holder was not reminded yet.
    pub fn holds_to_remind(&self, before: Duration) -> StoreResult<Vec<HoldRecord>> {
        self.holds_where(
            "reminded = 0 AND ends_ms > NOW_MS() AND ends_ms <= NOW_MS() + ?1 ORDER BY id",
            params![before.as_millis() as i64],
            "list holds to remind",
        )
    }

    /// Marks a hold's reminder as sent: true for exactly one caller (the one that sends it).
    pub fn claim_reminder(&self, id: u64) -> StoreResult<bool> {
        self.with(|db| {
            db.execute(
                "UPDATE holds SET reminded = 1 WHERE id = ?1 AND reminded = 0 AND released_ms IS NULL",
                params![id],
            )
        })
        .map(|n| n == 1)
        .ctx("claim hold reminder")
    }

    /// Holds whose end passed without a release (their holder's replica may be down).
    pub fn lapsed_holds(&self) -> StoreResult<Vec<HoldRecord>> {
        self.holds_where("ends_ms <= NOW_MS() ORDER BY id", &[], "list lapsed holds")
    }

    /// Records a lapsed hold as ended: true for exactly one caller (the one that announces it).
    pub fn end_lapsed_hold(&self, id: u64) -> StoreResult<bool> {
        self.with(|db| {
            db.execute(
                "UPDATE holds SET released_ms = ends_ms WHERE id = ?1 AND released_ms IS NULL AND ends_ms <= NOW_MS()",
                params![id],
            )
        })
        .map(|n| n == 1)
        .ctx("end lapsed hold")
    }
}
