//! The shared state: jobs, the audit log, approvals, schedule runs, and what decides who may
//! act (replicas and their leases, environment locks with fencing tokens, chat-event claims,
//! the outbox). One embedded SQLite file by default, safe for several processes on one host;
//! PostgreSQL for several replicas (`store.url` or `ARGOS_DATABASE_URL`). Both run the same
//! queries and migrations. Writes are durable before a call returns, so a crash loses no job,
//! approval or audit record.

mod approvals;
mod audit;
mod claims;
mod deploys;
mod drift;
mod freezes;
mod holds;
mod job_logs;
mod job_search;
mod jobs;
mod leases;
mod migrations;
mod postgres;
mod rate_limits;
pub(crate) mod sql;
mod sqlite;
mod stack_events;
mod web_sessions;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::Connection;

pub use approvals::{ApprovalRecord, ApprovalState, Choice, Vote};
pub use audit::{AuditEntry, AuditRecord, Durability};
pub use claims::OutboxMessage;
pub use drift::{DriftRecord, DriftState};
pub use freezes::{last_ending, FreezeRecord, NewFreeze};
pub use holds::{Checks, HoldOutcome, HoldRecord, NewHold, Refusal, ReleaseOutcome};
pub use job_logs::{dropped_line, LogTail};
pub use job_search::JobFilter;
pub use jobs::{JobRecord, JobState, NewJob};
pub use leases::{EnvLockRecord, LeaseSettings, LockOutcome, ReplicaRecord, StartOutcome, Takeover};
use sql::{Dialect, Row, Sql, Value};
pub use stack_events::StoredStackEvent;
pub use web_sessions::{new_token, token_hash, LinkRefusal};

/// What went wrong underneath.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Postgres(String),
    /// The server is unreachable or the connection dropped; retried for a while.
    #[error("connection lost: {0}")]
    Connection(String),
    /// A write for a job whose lease this process no longer holds.
    #[error("the job's lease was taken over (fencing token {0} is stale)")]
    Fenced(i64),
    #[error("{0}")]
    Config(String),
}

/// A database error, with what we were doing.
#[derive(Debug, thiserror::Error)]
#[error("database: {context}: {source}")]
pub struct StoreError {
    pub context: String,
    #[source]
    pub source: DbError,
}

impl StoreError {
    pub(crate) fn new(context: &str, source: DbError) -> StoreError {
        StoreError {
            context: context.to_string(),
            source,
        }
    }

    pub fn is_connection(&self) -> bool {
        matches!(self.source, DbError::Connection(_))
    }

    /// True when the write was refused because another owner holds the job now.
    pub fn is_fenced(&self) -> bool {
        matches!(self.source, DbError::Fenced(_))
    }

    fn context(mut self, what: &str) -> StoreError {
        if self.context.is_empty() || matches!(self.context.as_str(), "prepare" | "execute" | "query" | "statement") {
            self.context = what.to_string();
        }
        self
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

pub(crate) trait Context<T> {
    fn ctx(self, what: &str) -> StoreResult<T>;
}

impl<T> Context<T> for StoreResult<T> {
    fn ctx(self, what: &str) -> StoreResult<T> {
        self.map_err(|e| e.context(what))
    }
}

enum Backend {
    Sqlite(Connection),
    Postgres(postgres::PgLink),
}

impl Backend {
    fn dialect(&self) -> Dialect {
        match self {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }
}

/// A connection seen through the dialect: queries are rendered before they run.
pub(crate) struct Db<'a> {
    backend: &'a mut Backend,
}

impl Sql for Db<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> StoreResult<u64> {
        let d = self.backend.dialect();
        let sql = d.render(sql);
        match self.backend {
            Backend::Sqlite(c) => c.execute(&sql, params),
            Backend::Postgres(p) => p.execute(&sql, params),
        }
    }
    fn query(&mut self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>> {
        let d = self.backend.dialect();
        let sql = d.render(sql);
        match self.backend {
            Backend::Sqlite(c) => c.query(&sql, params),
            Backend::Postgres(p) => p.query(&sql, params),
        }
    }
}

/// How long the store keeps retrying while PostgreSQL is unreachable, before a call fails.
const RECONNECT_FOR: Duration = Duration::from_secs(30);

/// The handle everything shares. Calls are short (one statement or one transaction), so a
/// plain mutex around one connection is enough for a bot's write rate and keeps ordering
/// simple; the database orders what several processes do.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Mutex<Backend>>,
    kind: &'static str,
    /// Counts this process's writes of pushed stack events, so its watchers wake at once
    /// (another replica's writes they find at their next look).
    stack_events_written: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Store {
    /// Opens (creating if needed) the SQLite file and brings its schema up to date. Several
    /// processes may do this at the same moment.
    pub fn open(path: &Path) -> StoreResult<Store> {
        Self::init(Backend::Sqlite(sqlite::open(path)?), "sqlite")
    }

    /// An in-memory SQLite database, for tests and benchmarks.
    pub fn in_memory() -> StoreResult<Store> {
        Self::init(Backend::Sqlite(sqlite::open_in_memory()?), "sqlite")
    }

    /// Connects to PostgreSQL and brings its schema up to date (under an advisory lock, so
    /// replicas starting together migrate once).
    pub fn connect(url: &str) -> StoreResult<Store> {
        let deadline = Instant::now() + RECONNECT_FOR;
        let link = loop {
            match postgres::PgLink::connect(url) {
                Ok(l) => break l,
                Err(e) if e.is_connection() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(250))
                }
                Err(e) => return Err(e),
            }
        };
        Self::init(Backend::Postgres(link), "postgresql")
    }

    /// SQLite at `path`, or PostgreSQL when a URL is given.
    pub fn open_configured(url: Option<&str>, path: &Path) -> StoreResult<Store> {
        match url {
            Some(u) => Self::connect(u),
            None => Self::open(path),
        }
    }

    fn init(backend: Backend, kind: &'static str) -> StoreResult<Store> {
        let store = Store {
            backend: Arc::new(Mutex::new(backend)),
            kind,
            stack_events_written: Arc::new(tokio::sync::watch::Sender::new(0)),
        };
        store.migrate()?;
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Backend> {
        // A panic while holding the lock cannot leave the database inconsistent (statements
        // and transactions are atomic there), so a poisoned lock is safe to keep using.
        self.backend.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `sqlite` or `postgresql`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Runs `f` on the connection; retried while PostgreSQL is unreachable.
    pub(crate) fn with<T>(&self, mut f: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T> {
        self.retrying(|backend| f(&mut Db { backend }))
    }

    /// Runs `f` in one transaction: all of it or nothing. On SQLite it holds the write lock
    /// from the start; on PostgreSQL rows are locked with `FOR UPDATE` where `f` needs it.
    pub(crate) fn tx<T>(&self, f: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T> {
        self.tx_within(RECONNECT_FOR, f)
    }

    /// [`Store::tx`], giving up after `limit` while the database is unreachable (the
    /// heartbeat must not wait out its own lease).
    pub(crate) fn tx_within<T>(
        &self,
        limit: Duration,
        mut f: impl FnMut(&mut dyn Sql) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.retrying_for(limit, |backend| in_transaction(&mut Db { backend }, &mut f))
    }

    /// [`Store::tx`] for writes that must survive a crash of this process but need not wait
    /// for the disk: on SQLite the commit runs with `synchronous=NORMAL`, so the WAL frames are
    /// handed to the kernel and reach the disk with the next `FULL` commit or checkpoint (a
    /// power cut may lose the last of them, never corrupt the file). Every other write stays
    /// `FULL`. PostgreSQL commits as its server is configured.
    pub(crate) fn tx_unsynced<T>(&self, mut f: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T> {
        self.retrying(|backend| {
            let sqlite = matches!(backend, Backend::Sqlite(_));
            let mut db = Db { backend };
            if sqlite {
                db.execute("PRAGMA synchronous = NORMAL", &[])
                    .ctx("relax synchronous")?;
            }
            let r = in_transaction(&mut db, &mut f);
            if sqlite {
                // Back to FULL whatever happened: the next caller may be recording a job.
                db.execute("PRAGMA synchronous = FULL", &[])
                    .ctx("restore synchronous")?;
            }
            r
        })
    }

    fn retrying<T>(&self, f: impl FnMut(&mut Backend) -> StoreResult<T>) -> StoreResult<T> {
        self.retrying_for(RECONNECT_FOR, f)
    }

    fn retrying_for<T>(&self, limit: Duration, mut f: impl FnMut(&mut Backend) -> StoreResult<T>) -> StoreResult<T> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let r = f(&mut self.lock());
            match r {
                Err(e) if e.is_connection() && start.elapsed() < limit => {
                    tracing::warn!(error = %e, "database unreachable; retrying");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                r => return r,
            }
        }
    }

    /// The schema version (the number of migrations applied).
    pub fn schema_version(&self) -> i64 {
        let mut b = self.lock();
        match &mut *b {
            Backend::Sqlite(c) => sqlite::user_version(c).unwrap_or(0),
            Backend::Postgres(_) => Db { backend: &mut b }
                .query_opt("SELECT MAX(version) FROM argos_schema", &[])
                .ok()
                .flatten()
                .map(|r| r.int(0))
                .unwrap_or(0),
        }
    }

    fn migrate(&self) -> StoreResult<()> {
        let mut b = self.lock();
        match &mut *b {
            Backend::Sqlite(c) => migrations::apply_sqlite(c),
            Backend::Postgres(_) => migrations::apply_postgres(&mut Db { backend: &mut b }),
        }
    }
}

/// Timestamps are stored as RFC 3339 text in UTC.
/// Runs `f` between BEGIN and COMMIT, rolling back when it fails.
fn in_transaction<T>(db: &mut Db<'_>, f: &mut impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T> {
    let begin = match db.backend.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    db.execute(begin, &[]).ctx("begin transaction")?;
    match f(db) {
        Ok(v) => {
            db.execute("COMMIT", &[]).ctx("commit")?;
            Ok(v)
        }
        Err(e) => {
            let _ = db.execute("ROLLBACK", &[]);
            Err(e)
        }
    }
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}
