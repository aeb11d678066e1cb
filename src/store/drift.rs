//! The last drift detection per environment: what `status` and `envs` show ("drifted: 2
//! resources, checked 3h ago") and what a scheduled check compares a new result with.

use super::sql::{params, Row};
use super::{now, parse_time, Context, Store, StoreResult};

/// How a detection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftState {
    InSync,
    Drifted,
    /// The detection failed or outlasted its timeout: the state of the stack is unknown.
    Failed,
}

impl DriftState {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftState::InSync => "in_sync",
            DriftState::Drifted => "drifted",
            DriftState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<DriftState> {
        [DriftState::InSync, DriftState::Drifted, DriftState::Failed]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// One environment's last detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftRecord {
    pub env: String,
    pub checked_at: chrono::DateTime<chrono::Utc>,
    pub state: DriftState,
    /// How many resources drifted (0 unless drifted).
    pub drifted: u32,
    /// What it found, as JSON (drifted and unchecked resources, or why it failed).
    pub summary: String,
}

impl Store {
    /// Records `env`'s latest detection, replacing the one before.
    pub fn record_drift(&self, env: &str, state: DriftState, drifted: u32, summary: &str) -> StoreResult<()> {
        self.with(|db| {
            db.execute(
                "INSERT INTO drift_results (env, checked_at, state, drifted, summary) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (env) DO UPDATE SET checked_at = excluded.checked_at, state = excluded.state,
                     drifted = excluded.drifted, summary = excluded.summary",
                params![env, now(), state.as_str(), drifted as i64, summary],
            )
        })
        .map(|_| ())
        .ctx("record a drift result")
    }

    /// `env`'s latest detection, if it ever had one.
    pub fn last_drift(&self, env: &str) -> StoreResult<Option<DriftRecord>> {
        self.with(|db| {
            db.query_opt(
                &format!("SELECT {COLUMNS} FROM drift_results WHERE env = ?1"),
                params![env],
            )
        })
        .map(|row| row.as_ref().and_then(from_row))
        .ctx("read a drift result")
    }

    /// Every environment's latest detection (for `envs`), by environment name.
    pub fn drift_results(&self) -> StoreResult<Vec<DriftRecord>> {
        self.with(|db| db.query(&format!("SELECT {COLUMNS} FROM drift_results ORDER BY env"), &[]))
            .map(|rows| rows.iter().filter_map(from_row).collect())
            .ctx("read the drift results")
    }
}

const COLUMNS: &str = "env, checked_at, state, drifted, summary";

fn from_row(r: &Row) -> Option<DriftRecord> {
    Some(DriftRecord {
        env: r.text(0),
        checked_at: parse_time(&r.text(1))?,
        state: DriftState::parse(&r.text(2))?,
        drifted: r.int(3).max(0) as u32,
        summary: r.text(4),
    })
}
