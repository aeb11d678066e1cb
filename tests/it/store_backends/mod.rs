//! The store's test suite, run against both backends. Each test body is written once as a
//! function of a [`TestDb`] and instantiated twice by [`on_both_backends!`]: `<name>_sqlite`
//! (a fresh file in a temporary folder) and `<name>_postgres` (a fresh database on the test
//! binary's shared PostgreSQL server). `TestDb::open` gives another handle on the same
//! database (its own connection), which is how the concurrency tests stand in for several
//! processes or replicas. PostgreSQL-only: the store survives a server restart, and fencing
//! holds against a takeover in flight.
//! Among them, regressions for three bugs this suite found: a second `finish_job` overwrote
//! the first result; on PostgreSQL a write with a stale token that waited behind a takeover
//! landed; and `finish_and_release` racing `take_over` deadlocked.
//!
//! Layout: `jobs.rs` (jobs, audit, approvals, schedule runs), `leases.rs` (replicas, leases,
//! fencing), `concurrency.rs` (races with one winner), `opening.rs` (several processes opening
//! a new database), `postgres_only.rs` (server restarts, fencing against a takeover in flight);
//! this file holds the backends, the macro and the helpers they share.
use crate::support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argos::permissions::Identity;
use argos::store::{
    ApprovalState, AuditEntry, Choice, JobRecord, JobState, LeaseSettings, NewJob, StartOutcome, Store, StoreResult,
};
use chrono::TimeZone;
use support::postgres::{self, PgServer};

/// Where a test's database lives. Nothing is opened until [`TestDb::open`], so the opening
/// tests meet a brand-new database.
enum TestDb {
    Sqlite { _dir: tempfile::TempDir, path: PathBuf },
    Postgres { url: String },
}

impl TestDb {
    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("argos.db");
        TestDb::Sqlite { _dir: dir, path }
    }

    fn postgres() -> TestDb {
        TestDb::Postgres {
            url: postgres::shared().new_database(),
        }
    }

    /// A new handle (its own connection) on this test's database.
    fn open(&self) -> Store {
        match self {
            TestDb::Sqlite { path, .. } => Store::open(path).expect("open the SQLite store"),
            TestDb::Postgres { url } => Store::connect(url).expect("connect the PostgreSQL store"),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            TestDb::Sqlite { .. } => "sqlite",
            TestDb::Postgres { .. } => "postgresql",
        }
    }
}

/// `body => name_sqlite, name_postgres;` defines both tests; attributes before `body` (an
/// `#[ignore = ...]`) apply to both.
macro_rules! on_both_backends {
    ($($(#[$attr:meta])* $body:ident => $sqlite:ident, $postgres:ident;)*) => {
        $(
            #[test]
            $(#[$attr])*
            fn $sqlite() {
                $body(&TestDb::sqlite());
            }

            #[test]
            $(#[$attr])*
            fn $postgres() {
                $body(&TestDb::postgres());
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn new_job(env: &str, action: &str) -> NewJob {
    NewJob {
        requester_id: "u-alice".into(),
        requester_name: "alice".into(),
        platform: argos::address::Surface::DISCORD,
        channel: "#ops".into(),
        env: env.into(),
        action: action.into(),
        args: r#"{"roles":["api"]}"#.into(),
        person: String::new(),
        break_glass: None,
    }
}

fn lease() -> LeaseSettings {
    LeaseSettings::default()
}

/// A lease that has run out a millisecond after it was taken.
fn zero_lease() -> LeaseSettings {
    LeaseSettings {
        lease: Duration::ZERO,
        heartbeat: Duration::ZERO,
    }
}

/// Long enough for a zero lease to be in the past by the database's millisecond clock.
fn let_zero_leases_run_out() {
    thread::sleep(Duration::from_millis(20));
}

#[track_caller]
fn started(outcome: StartOutcome) -> (u64, i64) {
    match outcome {
        StartOutcome::Started { id, token } => (id, token),
        other => panic!("expected Started, got {other:?}"),
    }
}

#[track_caller]
fn assert_fenced<T: std::fmt::Debug>(r: StoreResult<T>, what: &str) {
    match r {
        Err(e) if e.is_fenced() => {}
        other => panic!("{what}: expected a fenced error, got {other:?}"),
    }
}

fn job(s: &Store, id: u64) -> JobRecord {
    s.job(id).unwrap().unwrap_or_else(|| panic!("job {id} exists"))
}

fn ids(jobs: &[JobRecord]) -> Vec<u64> {
    jobs.iter().map(|j| j.id).collect()
}

/// Runs `f(i, store)` on `n` threads, each with its own handle on the database, all released
/// at the same moment; returns the results in thread order.
fn race<T: Send + 'static>(db: &TestDb, n: usize, f: impl Fn(usize, &Store) -> T + Send + Sync + 'static) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let store = db.open();
            let (f, barrier) = (f.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                f(i, &store)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("racing thread")).collect()
}

/// A person as an adapter sees them, for the audit records these tests write.
fn who(platform: &str, user_id: &str, name: &str) -> Identity {
    Identity {
        display_name: name.to_string(),
        ..Identity::named(
            argos::address::Surface::parse(platform).expect("a known surface"),
            user_id,
        )
    }
}

mod concurrency;
mod drift;
mod holds;
mod jobs;
mod leases;
mod opening;
mod postgres_only;
mod web;
