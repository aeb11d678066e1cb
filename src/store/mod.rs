//! The embedded database: one SQLite file with versioned migrations, holding jobs, the audit
//! log, approvals and schedule runs. Writes are synchronous and durable (WAL with
//! `synchronous=FULL`), so a crash loses no job, approval or audit record.

mod approvals;
mod audit;
mod jobs;
mod migrations;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

pub use approvals::{ApprovalRecord, Vote};
pub use audit::AuditRecord;
pub use jobs::{JobRecord, JobState, NewJob};

/// A database error, with what we were doing.
#[derive(Debug, thiserror::Error)]
#[error("database: {context}: {source}")]
pub struct StoreError {
    pub context: String,
    #[source]
    pub source: rusqlite::Error,
}

pub type StoreResult<T> = Result<T, StoreError>;

pub(crate) trait Context<T> {
    fn ctx(self, what: &str) -> StoreResult<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, what: &str) -> StoreResult<T> {
        self.map_err(|source| StoreError {
            context: what.to_string(),
            source,
        })
    }
}

/// The handle everything shares. Calls are short (one statement or one transaction), so a
/// plain mutex around one connection is enough for a bot's write rate and keeps ordering simple.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<Store> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).ctx(&format!("open {}", path.display()))?;
        Self::init(conn)
    }

    /// An in-memory database, for tests and benchmarks.
    pub fn in_memory() -> StoreResult<Store> {
        Self::init(Connection::open_in_memory().ctx("open in-memory database")?)
    }

    fn init(mut conn: Connection) -> StoreResult<Store> {
        conn.pragma_update(None, "journal_mode", "WAL").ctx("enable WAL")?;
        conn.pragma_update(None, "synchronous", "FULL").ctx("set synchronous")?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .ctx("enable foreign keys")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .ctx("set busy timeout")?;
        migrations::apply(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (statements are
        // atomic), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The schema version (the number of migrations applied).
    pub fn schema_version(&self) -> i64 {
        self.conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap_or(0)
    }
}

/// Timestamps are stored as RFC 3339 text in UTC.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}
