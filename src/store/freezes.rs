//! Ad-hoc freezes (`freeze staging for 2h "incident"`): rows with a start and an end by the
//! database's clock, for some environments or all of them, ended early by `unfreeze`. The
//! configured freeze windows are not stored: they are computed from the config where a job
//! starts, and arrive here as a [`FreezeRecord`] too.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::holds::millis;
use super::sql::{params, Row, Sql};
use super::{Context, Store, StoreResult};

/// A freeze in force (or ended), stored or configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeRecord {
    /// The row's id; none for a configured window.
    pub id: Option<u64>,
    /// `freeze #3`, or the configured freeze's name.
    pub name: String,
    /// The environments it covers; empty: all of them.
    pub envs: Vec<String>,
    pub reason: String,
    /// Who froze (none for a configured window).
    pub by_name: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// When `unfreeze` ended it early, and who did.
    pub ended_at: Option<DateTime<Utc>>,
    pub ended_by: Option<String>,
}

impl FreezeRecord {
    /// Whether it covers `env`.
    pub fn covers(&self, env: &str) -> bool {
        self.envs.is_empty() || self.envs.iter().any(|e| e == env)
    }
}

/// Of two freezes that may be in force, the one that ends last (what a refusal names).
pub fn last_ending(a: Option<FreezeRecord>, b: Option<FreezeRecord>) -> Option<FreezeRecord> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.ends_at > a.ends_at { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// A freeze to record.
#[derive(Debug, Clone)]
pub struct NewFreeze {
    /// Empty: every environment.
    pub envs: Vec<String>,
    pub reason: String,
    pub person: String,
    pub by_name: String,
    pub duration: Duration,
}

const FREEZE_COLUMNS: &str = "id, envs, reason, by_name, starts_ms, ends_ms, ended_ms, ended_by";

fn freeze_from(r: &Row) -> FreezeRecord {
    let envs = r.text(1);
    let id = r.int(0) as u64;
    FreezeRecord {
        id: Some(id),
        name: format!("freeze #{id}"),
        envs: if envs == "*" {
            Vec::new()
        } else {
            envs.split(',').filter(|e| !e.is_empty()).map(str::to_string).collect()
        },
        reason: r.text(2),
        by_name: Some(r.text(3)),
        starts_at: millis(r.int(4)),
        ends_at: millis(r.int(5)),
        ended_at: r.opt_int(6).map(millis),
        ended_by: r.opt_text(7),
    }
}

/// `staging,prod`, or `*` for every environment.
fn stored_envs(envs: &[String]) -> String {
    if envs.is_empty() {
        "*".into()
    } else {
        envs.join(",")
    }
}

const IN_FORCE: &str = "ended_ms IS NULL AND starts_ms <= NOW_MS() AND ends_ms > NOW_MS()";

/// The stored freeze in force on `env` that ends last, if any. (Freezes in force are few:
/// they are read and matched here rather than with a pattern an environment name could bend.)
pub(super) fn active_freeze(db: &mut dyn Sql, env: &str) -> StoreResult<Option<FreezeRecord>> {
    let rows = db.query(
        &format!("SELECT {FREEZE_COLUMNS} FROM freezes WHERE {IN_FORCE} ORDER BY ends_ms DESC, id"),
        &[],
    )?;
    Ok(rows.iter().map(freeze_from).find(|f| f.covers(env)))
}

impl Store {
    /// Records a freeze starting now.
    pub fn freeze(&self, freeze: &NewFreeze) -> StoreResult<FreezeRecord> {
        let duration_ms = freeze.duration.as_millis().min(i64::MAX as u128) as i64;
        self.tx(|db| {
            let id = db
                .query_opt(
                    "INSERT INTO freezes (envs, reason, person, by_name, starts_ms, ends_ms)
                     VALUES (?1, ?2, ?3, ?4, NOW_MS(), NOW_MS() + ?5) RETURNING id",
                    params![
                        stored_envs(&freeze.envs),
                        &freeze.reason,
                        &freeze.person,
                        &freeze.by_name,
                        duration_ms
                    ],
                )?
                .map(|r| r.int(0))
                .unwrap_or(0);
            Ok(db
                .query_opt(
                    &format!("SELECT {FREEZE_COLUMNS} FROM freezes WHERE id = ?1"),
                    params![id],
                )?
                .map(|r| freeze_from(&r))
                .expect("the freeze just inserted"))
        })
        .ctx("freeze")
    }

    /// Ends the stored freezes in force that cover any of `envs` (every one when `envs` is
    /// empty), recording who ended them; returns them.
    pub fn unfreeze(&self, envs: &[String], by_name: &str) -> StoreResult<Vec<FreezeRecord>> {
        self.tx(|db| {
            let rows = db.query(
                &format!("SELECT {FREEZE_COLUMNS} FROM freezes WHERE {IN_FORCE} ORDER BY id FOR_UPDATE"),
                &[],
            )?;
            let mut ended = Vec::new();
            for f in rows.iter().map(freeze_from) {
                if !envs.is_empty() && !envs.iter().any(|e| f.covers(e)) {
                    continue;
                }
                let id = f.id.unwrap_or(0);
                db.execute(
                    "UPDATE freezes SET ended_ms = NOW_MS(), ended_by = ?2 WHERE id = ?1",
                    params![id, by_name],
                )?;
                if let Some(r) = db.query_opt(
                    &format!("SELECT {FREEZE_COLUMNS} FROM freezes WHERE id = ?1"),
                    params![id],
                )? {
                    ended.push(freeze_from(&r));
                }
            }
            Ok(ended)
        })
        .ctx("unfreeze")
    }

    /// Every stored freeze in force.
    pub fn active_freezes(&self) -> StoreResult<Vec<FreezeRecord>> {
        self.with(|db| {
            let rows = db.query(
                &format!("SELECT {FREEZE_COLUMNS} FROM freezes WHERE {IN_FORCE} ORDER BY id"),
                &[],
            )?;
            Ok(rows.iter().map(freeze_from).collect())
        })
        .ctx("list freezes")
    }

    /// The stored freeze in force on `env` that ends last.
    pub fn freeze_on(&self, env: &str) -> StoreResult<Option<FreezeRecord>> {
        self.with(|db| active_freeze(db, env)).ctx("read freeze")
    }

    /// Stored freezes that ran to their end in the last `within` (not ended by `unfreeze`):
    /// their ends are announced, once, by whichever replica sees them first.
    pub fn freezes_ended_within(&self, within: Duration) -> StoreResult<Vec<FreezeRecord>> {
        self.with(|db| {
            let rows = db.query(
                &format!(
                    "SELECT {FREEZE_COLUMNS} FROM freezes WHERE ended_ms IS NULL
                     AND ends_ms <= NOW_MS() AND ends_ms > NOW_MS() - ?1 ORDER BY id"
                ),
                params![within.as_millis() as i64],
            )?;
            Ok(rows.iter().map(freeze_from).collect())
        })
        .ctx("list ended freezes")
    }
}
