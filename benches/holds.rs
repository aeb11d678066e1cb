//! Holds benchmark: what the hold and freeze checks cost a job's start. Each trial starts a
//! deploy (`Store::start_job_with`: the lock row, the hold, the freezes, the lock, the job row,
//! in one transaction) and ends it (`finish_and_release`), on SQLite (a file, synchronous=FULL)
//! and on PostgreSQL (a throwaway server on loopback), first with nothing held or frozen, then
//! with 50 other environments held and 50 ad-hoc freezes in force on others. Prints p50, p99
//! and max of the start alone.
//!
//! Run: `cargo bench --profile dev --bench holds` (`ARGOS_BENCH_TRIALS=N`, default 500).
#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code, clippy::all)]
mod support;

use std::time::{Duration, Instant};

use argos::store::{Checks, LeaseSettings, NewFreeze, NewHold, NewJob, StartOutcome, Store};

fn deploy(env: &str) -> NewJob {
    NewJob {
        requester_id: "bob".into(),
        requester_name: "bob".into(),
        platform: argos::address::Surface::CONSOLE,
        channel: "console:ops".into(),
        env: env.into(),
        action: "deploy".into(),
        args: "{}".into(),
        person: "console:bob".into(),
        break_glass: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// Starts and ends `trials` deploys on `env`; the start times, sorted.
fn starts(store: &Store, trials: usize) -> Vec<Duration> {
    let lease = LeaseSettings::default();
    let checks = Checks::default();
    let mut took = Vec::with_capacity(trials);
    for _ in 0..trials {
        let t = Instant::now();
        let outcome = store
            .start_job_with(&deploy("staging"), "bench", lease, &checks)
            .expect("start");
        took.push(t.elapsed());
        let StartOutcome::Started { id, token } = outcome else {
            panic!("the bench's deploy was refused: {outcome:?}");
        };
        store
            .finish_and_release(id, token, argos::store::JobState::Succeeded, "done")
            .expect("finish");
    }
    took.sort();
    took
}

/// Holds on 50 other environments and 50 freezes covering others.
fn crowd(store: &Store) {
    for i in 0..50 {
        store
            .take_hold(
                &NewHold {
                    env: format!("env-{i}"),
                    person: "console:alice".into(),
                    holder_name: "alice".into(),
                    platform: argos::address::Surface::CONSOLE,
                    channel: "console:ops".into(),
                    reason: "bench".into(),
                    warn: false,
                    duration: Duration::from_secs(3600),
                },
                &|_| false,
            )
            .expect("hold");
        store
            .freeze(&NewFreeze {
                envs: vec![format!("other-{i}")],
                reason: "bench".into(),
                person: "console:carol".into(),
                by_name: "carol".into(),
                duration: Duration::from_secs(3600),
            })
            .expect("freeze");
    }
}

fn report(backend: &str, case: &str, took: &[Duration]) {
    let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
    println!(
        "{backend:<10} {case:<34} p50 {:>8}  p99 {:>8}  max {:>8}  (n={})",
        us(percentile(took, 0.5)),
        us(percentile(took, 0.99)),
        us(*took.last().unwrap()),
        took.len()
    );
}

fn main() {
    let trials: usize = std::env::var("ARGOS_BENCH_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = Store::open(&dir.path().join("argos.db")).expect("sqlite");
    let postgres = Store::connect(&support::postgres::shared().new_database()).expect("postgres");
    for (name, store) in [("sqlite", &sqlite), ("postgresql", &postgres)] {
        // Warm up (the first statements prepare and page in).
        starts(store, 20);
        report(name, "nothing held or frozen", &starts(store, trials));
        crowd(store);
        report(name, "50 holds and 50 freezes elsewhere", &starts(store, trials));
    }
}
