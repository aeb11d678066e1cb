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

on_both_backends! {
    jobs_are_recorded_listed_and_ended => jobs_are_recorded_listed_and_ended_sqlite, jobs_are_recorded_listed_and_ended_postgres;
    finish_job_is_fenced_and_keeps_the_first_result => finish_job_is_fenced_and_keeps_the_first_result_sqlite, finish_job_is_fenced_and_keeps_the_first_result_postgres;
    audit_records_keep_order_and_survive_a_missing_job => audit_records_keep_order_and_survive_a_missing_job_sqlite, audit_records_keep_order_and_survive_a_missing_job_postgres;
    approvals_votes_and_decisions => approvals_votes_and_decisions_sqlite, approvals_votes_and_decisions_postgres;
    approval_decision_race_has_one_winner => approval_decision_race_has_one_winner_sqlite, approval_decision_race_has_one_winner_postgres;
    schedule_runs_are_claimed_once => schedule_runs_are_claimed_once_sqlite, schedule_runs_are_claimed_once_postgres;
    replicas_register_heartbeat_and_retire => replicas_register_heartbeat_and_retire_sqlite, replicas_register_heartbeat_and_retire_postgres;
    start_job_locks_the_env_and_fences_writes => start_job_locks_the_env_and_fences_writes_sqlite, start_job_locks_the_env_and_fences_writes_postgres;
    expired_lease_is_taken_over_once => expired_lease_is_taken_over_once_sqlite, expired_lease_is_taken_over_once_postgres;
    heartbeat_renews_only_live_locks => heartbeat_renews_only_live_locks_sqlite, heartbeat_renews_only_live_locks_postgres;
    retired_replica_locks_expire_at_once => retired_replica_locks_expire_at_once_sqlite, retired_replica_locks_expire_at_once_postgres;
    lock_for_job_starts_a_queued_job => lock_for_job_starts_a_queued_job_sqlite, lock_for_job_starts_a_queued_job_postgres;
    orphaned_jobs_are_adopted_once => orphaned_jobs_are_adopted_once_sqlite, orphaned_jobs_are_adopted_once_postgres;
    approved_unstarted_lists_granted_queued_jobs => approved_unstarted_lists_granted_queued_jobs_sqlite, approved_unstarted_lists_granted_queued_jobs_postgres;
    unlocked_running_jobs_are_found_and_relocked => unlocked_running_jobs_are_found_and_relocked_sqlite, unlocked_running_jobs_are_found_and_relocked_postgres;
    release_stale_frees_only_expired_locks => release_stale_frees_only_expired_locks_sqlite, release_stale_frees_only_expired_locks_postgres;
    start_job_race_has_one_winner => start_job_race_has_one_winner_sqlite, start_job_race_has_one_winner_postgres;
    claim_event_race_has_one_winner => claim_event_race_has_one_winner_sqlite, claim_event_race_has_one_winner_postgres;
    adopt_job_race_has_one_winner => adopt_job_race_has_one_winner_sqlite, adopt_job_race_has_one_winner_postgres;
    outbox_messages_are_claimed_once => outbox_messages_are_claimed_once_sqlite, outbox_messages_are_claimed_once_postgres;
    prune_event_claims_forgets_old_claims => prune_event_claims_forgets_old_claims_sqlite, prune_event_claims_forgets_old_claims_postgres;
    concurrent_openers_migrate_once => concurrent_openers_migrate_once_sqlite, concurrent_openers_migrate_once_postgres;
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

// ---------------------------------------------------------------------------------------------
// 1. Jobs, audit, approvals, schedule runs

fn jobs_are_recorded_listed_and_ended(db: &TestDb) {
    let s = db.open();
    assert_eq!(s.kind(), db.kind());
    let a = s.insert_job(&new_job("staging", "deploy"), JobState::Queued).unwrap();
    let b = s
        .insert_job_for(&new_job("staging", "update"), JobState::Running, Some("bot-1"))
        .unwrap();
    let c = s
        .insert_job_for(&new_job("sandbox", "deploy"), JobState::Queued, Some("bot-2"))
        .unwrap();
    assert!(0 < a && a < b && b < c, "ids increase: {a} {b} {c}");

    let ja = job(&s, a);
    assert_eq!(ja.id, a);
    assert_eq!(
        (
            ja.requester_id.as_str(),
            ja.requester_name.as_str(),
            ja.platform.as_str(),
            ja.channel.as_str()
        ),
        ("u-alice", "alice", "discord", "#ops")
    );
    assert_eq!((ja.env.as_str(), ja.action.as_str()), ("staging", "deploy"));
    assert_eq!(ja.args, r#"{"roles":["api"]}"#);
    assert_eq!(ja.state, JobState::Queued);
    let created = ja.created_at.expect("created_at is set");
    assert!(
        (chrono::Utc::now() - created).num_seconds().abs() < 60,
        "created_at {created} is now"
    );
    assert_eq!((ja.started_at, ja.finished_at), (None, None));
    assert_eq!(
        (ja.result, ja.log_path, ja.status_message_id, ja.progress),
        (None, None, None, None)
    );
    assert_eq!((ja.owner, ja.token, ja.cancel_requested), (None, None, false));
    let jb = job(&s, b);
    assert_eq!((jb.state, jb.owner.as_deref()), (JobState::Running, Some("bot-1")));
    assert!(s.job(c + 1000).unwrap().is_none(), "no such job");

    assert_eq!(ids(&s.recent_jobs(10).unwrap()), vec![c, b, a], "newest first");
    assert_eq!(ids(&s.recent_jobs(2).unwrap()), vec![c, b]);
    assert_eq!(ids(&s.unfinished_jobs().unwrap()), vec![a, b, c]);

    assert_eq!(s.last_success("staging", &["deploy"]).unwrap(), None);
    assert!(s.end_unstarted_job(a, JobState::Succeeded, "done").unwrap());
    assert!(
        !s.end_unstarted_job(a, JobState::Failed, "again").unwrap(),
        "a job is ended only once"
    );
    let ja = job(&s, a);
    assert_eq!((ja.state, ja.result.as_deref()), (JobState::Succeeded, Some("done")));
    let finished = ja.finished_at.expect("finished_at is set");
    assert_eq!(
        s.last_success("staging", &["deploy", "update"]).unwrap(),
        Some(finished)
    );
    assert_eq!(s.last_success("staging", &["update"]).unwrap(), None, "other action");
    assert_eq!(s.last_success("sandbox", &["deploy"]).unwrap(), None, "other env");
    assert_eq!(ids(&s.unfinished_jobs().unwrap()), vec![b, c]);

    // Cancel requests reach the owner of a running job.
    assert!(s.cancel_requests("bot-1").unwrap().is_empty());
    assert!(s.request_cancel(b).unwrap());
    assert!(job(&s, b).cancel_requested);
    assert_eq!(s.cancel_requests("bot-1").unwrap(), vec![b]);
    assert!(s.cancel_requests("bot-2").unwrap().is_empty());
    assert!(!s.request_cancel(a).unwrap(), "a finished job cannot be cancelled");
    assert!(!job(&s, a).cancel_requested);

    s.set_job_owner(b, "bot-3").unwrap();
    assert_eq!(job(&s, b).owner.as_deref(), Some("bot-3"));
    assert!(s.cancel_requests("bot-1").unwrap().is_empty());
    assert_eq!(s.cancel_requests("bot-3").unwrap(), vec![b]);

    // Another handle sees the same records.
    assert_eq!(ids(&db.open().recent_jobs(10).unwrap()), vec![c, b, a]);
}

fn finish_job_is_fenced_and_keeps_the_first_result(db: &TestDb) {
    let s = db.open();
    let (id, token) = started(s.start_job(&new_job("staging", "deploy"), "bot-1", lease()).unwrap());
    assert_fenced(
        s.finish_job(id, token + 1, JobState::Failed, "wrong token"),
        "finish_job with a wrong token",
    );
    assert_eq!(job(&s, id).state, JobState::Running);
    s.finish_job(id, token, JobState::Succeeded, "first").unwrap();
    let first = job(&s, id);
    assert_eq!(
        (first.state, first.result.as_deref()),
        (JobState::Succeeded, Some("first"))
    );
    // Documented: "A job already finished keeps its first result."
    let _ = s.finish_job(id, token, JobState::Failed, "second");
    let after = job(&s, id);
    assert_eq!(
        (after.state, after.result.as_deref(), after.finished_at),
        (JobState::Succeeded, Some("first"), first.finished_at),
        "a second finish_job overwrote the first result"
    );
}

fn audit_records_keep_order_and_survive_a_missing_job(db: &TestDb) {
    let s = db.open();
    let id = s.insert_job(&new_job("staging", "deploy"), JobState::Queued).unwrap();
    s.audit(AuditEntry::by(
        &who("discord", "u-alice", "alice"),
        "#ops",
        "staging deploy",
        "accepted",
        Some(id),
    ))
    .unwrap();
    s.audit(AuditEntry::by(
        &who("discord", "u-bob", "bob"),
        "#ops",
        "job 999",
        "no such job",
        Some(999),
    ))
    .expect("an audit record naming a missing job is kept");
    s.audit(AuditEntry::by(
        &who("console", "u-alice", "alice"),
        "console",
        "help",
        "ok",
        None,
    ))
    .unwrap();

    let log = s.audit_log(10).unwrap();
    let summary: Vec<_> = log
        .iter()
        .map(|r| {
            (
                r.platform.as_str(),
                r.user_name.as_str(),
                r.command.as_str(),
                r.outcome.as_str(),
                r.job_id,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("console", "alice", "help", "ok", None),
            ("discord", "bob", "job 999", "no such job", None),
            ("discord", "alice", "staging deploy", "accepted", Some(id)),
        ],
        "newest first; the missing job is not referenced"
    );
    assert!(log.windows(2).all(|w| w[0].id > w[1].id), "ids descend");
    assert_eq!((log[1].user_id.as_str(), log[1].channel.as_str()), ("u-bob", "#ops"));
    for r in &log {
        assert!(chrono::DateTime::parse_from_rfc3339(&r.at).is_ok(), "time {:?}", r.at);
    }
    assert_eq!(s.audit_log(1).unwrap(), log[..1].to_vec());
}

fn approvals_votes_and_decisions(db: &TestDb) {
    let s = db.open();
    let j1 = s.insert_job(&new_job("staging", "deploy"), JobState::Queued).unwrap();
    let j2 = s.insert_job(&new_job("staging", "update"), JobState::Queued).unwrap();
    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!(s.approval_for_job(j1).unwrap().is_none());
    assert!(s.pending_approvals().unwrap().is_empty());

    let ap = s
        .insert_approval(j1, "sha256:abc", "update 2 instances", 2, expires)
        .unwrap();
    let rec = s.approval_for_job(j1).unwrap().expect("approval");
    assert_eq!((rec.id, rec.job_id), (ap, j1));
    assert_eq!(
        (rec.digest.as_str(), rec.plan.as_str(), rec.needed),
        ("sha256:abc", "update 2 instances", 2)
    );
    assert_eq!(rec.state, ApprovalState::Pending);
    assert_eq!(rec.expires_at, Some(expires));
    assert_eq!(rec.message_id, None);
    assert!(rec.votes.is_empty());
    assert!(s.approval_for_job(j2).unwrap().is_none());
    assert_eq!(s.pending_approvals().unwrap(), vec![j1]);

    // One vote per person: the first stands.
    assert!(s.add_vote(ap, "u-bob", "bob", Choice::Approve, None).unwrap());
    assert!(
        !s.add_vote(ap, "u-bob", "bob", Choice::Deny, Some("changed my mind"))
            .unwrap(),
        "a second vote by the same user is refused"
    );
    assert!(s.add_vote(ap, "u-carol", "carol", Choice::Deny, Some("risky")).unwrap());
    let rec = s.approval_for_job(j1).unwrap().unwrap();
    let votes: Vec<_> = rec
        .votes
        .iter()
        .map(|v| {
            (
                v.user_id.as_str(),
                v.user_name.as_str(),
                v.decision.as_str(),
                v.reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        votes,
        vec![
            ("u-bob", "bob", "approve", None),
            ("u-carol", "carol", "deny", Some("risky"))
        ]
    );
    assert_eq!(rec.approvals(), 1);

    s.set_approval_message(ap, "msg-42").unwrap();
    assert_eq!(
        s.approval_for_job(j1).unwrap().unwrap().message_id.as_deref(),
        Some("msg-42")
    );

    // Compare-and-set: only the first decision lands.
    assert!(s.decide_approval(ap, ApprovalState::Approved).unwrap());
    assert!(
        !s.decide_approval(ap, ApprovalState::Denied).unwrap(),
        "already decided"
    );
    assert!(
        !s.decide_approval(ap, ApprovalState::Expired).unwrap(),
        "already decided"
    );
    assert_eq!(s.approval_for_job(j1).unwrap().unwrap().state, ApprovalState::Approved);
    assert!(s.pending_approvals().unwrap().is_empty());

    assert!(s.decide_approval(ap, ApprovalState::Void).unwrap());
    assert_eq!(s.approval_for_job(j1).unwrap().unwrap().state, ApprovalState::Void);
    assert!(
        !s.decide_approval(ap, ApprovalState::Approved).unwrap(),
        "a void approval stays void"
    );

    let ap2 = s.insert_approval(j2, "sha256:def", "plan", 1, expires).unwrap();
    assert!(ap2 > ap);
    assert_eq!(s.pending_approvals().unwrap(), vec![j2]);
    // The newest approval of a job is the one that counts.
    let ap3 = s.insert_approval(j1, "sha256:new", "new plan", 1, expires).unwrap();
    assert_eq!(s.approval_for_job(j1).unwrap().unwrap().id, ap3);
    assert_eq!(s.pending_approvals().unwrap(), vec![j2, j1]);
    assert!(s.decide_approval(ap2, ApprovalState::Expired).unwrap());
    assert_eq!(s.pending_approvals().unwrap(), vec![j1]);
}

fn approval_decision_race_has_one_winner(db: &TestDb) {
    let s = db.open();
    let j = s.insert_job(&new_job("staging", "deploy"), JobState::Queued).unwrap();
    let ap = s
        .insert_approval(
            j,
            "sha256:abc",
            "plan",
            1,
            chrono::Utc::now() + chrono::Duration::hours(1),
        )
        .unwrap();
    // The decisions out of pending (a void may still follow an approval: its own test above).
    let decisions = [ApprovalState::Approved, ApprovalState::Denied, ApprovalState::Expired];
    let won = race(db, 9, move |i, store| {
        store.decide_approval(ap, decisions[i % 3]).unwrap()
    });
    let winners: Vec<usize> = (0..9).filter(|&i| won[i]).collect();
    assert_eq!(winners.len(), 1, "exactly one decision lands: {won:?}");
    assert_eq!(
        s.approval_for_job(j).unwrap().unwrap().state,
        decisions[winners[0] % 3],
        "the winner's decision is the one recorded"
    );
}

fn schedule_runs_are_claimed_once(db: &TestDb) {
    let s = db.open();
    let due = chrono::Utc.with_ymd_and_hms(2030, 1, 6, 9, 0, 0).unwrap();
    assert_eq!(s.last_schedule_run("nightly").unwrap(), None);
    assert_eq!(s.schedule_run_count("nightly").unwrap(), 0);

    assert!(s.claim_schedule_run("nightly", due, "announced").unwrap());
    assert!(!s.claim_schedule_run("nightly", due, "again").unwrap(), "claimed once");
    assert!(
        !db.open().claim_schedule_run("nightly", due, "other replica").unwrap(),
        "claimed once, by any handle"
    );
    assert_eq!(s.schedule_run_count("nightly").unwrap(), 1);
    assert_eq!(s.last_schedule_run("nightly").unwrap(), Some(due));

    let next = due + chrono::Duration::days(1);
    assert!(s.claim_schedule_run("nightly", next, "announced").unwrap());
    // A late claim of an older run does not move the last run back.
    assert!(s
        .claim_schedule_run("nightly", due - chrono::Duration::days(1), "catch-up")
        .unwrap());
    assert_eq!(s.last_schedule_run("nightly").unwrap(), Some(next));
    assert_eq!(s.schedule_run_count("nightly").unwrap(), 3);

    assert!(
        s.claim_schedule_run("weekly", due, "announced").unwrap(),
        "another schedule"
    );
    assert_eq!(s.schedule_run_count("weekly").unwrap(), 1);
    assert_eq!(s.schedule_run_count("nightly").unwrap(), 3);
    assert_eq!(s.last_schedule_run("weekly").unwrap(), Some(due));
}

// ---------------------------------------------------------------------------------------------
// 2. Replicas, leases, fencing

fn replicas_register_heartbeat_and_retire(db: &TestDb) {
    let s = db.open();
    s.register_replica("bot-1", "bot", &["discord", "slack"], lease())
        .unwrap();
    s.register_replica("console-1", "console", &["console"], lease())
        .unwrap();
    let reps = s.replicas().unwrap();
    let bot = reps.iter().find(|r| r.id == "bot-1").expect("bot-1 is listed");
    assert_eq!(bot.kind, "bot");
    assert_eq!(bot.host, argos::names::hostname());
    assert_eq!(bot.pid, std::process::id());
    assert_eq!(bot.platforms, "discord,slack");
    assert!(bot.alive, "{bot:?}");
    assert!((0..5_000).contains(&bot.silent_ms), "{bot:?}");
    assert!(chrono::DateTime::parse_from_rfc3339(&bot.started_at).is_ok(), "{bot:?}");
    assert_eq!(s.live_replicas("bot").unwrap(), 1);
    assert_eq!(s.live_replicas("console").unwrap(), 1);
    assert_eq!(s.live_replicas("cli").unwrap(), 0);

    // Registering again is a renewal, not a second replica.
    s.register_replica("bot-1", "bot", &["discord", "slack"], lease())
        .unwrap();
    assert_eq!(s.live_replicas("bot").unwrap(), 1);
    assert!(s.heartbeat("bot-1", lease()).unwrap().is_empty(), "holds no locks");

    // A replica whose lease ran out is listed, dead, after the live ones.
    s.register_replica("bot-2", "bot", &["discord"], zero_lease()).unwrap();
    let_zero_leases_run_out();
    assert_eq!(s.live_replicas("bot").unwrap(), 1);
    let reps = s.replicas().unwrap();
    assert_eq!(reps.len(), 3);
    assert!(!reps.iter().find(|r| r.id == "bot-2").unwrap().alive);
    let alive: Vec<bool> = reps.iter().map(|r| r.alive).collect();
    assert_eq!(alive, vec![true, true, false], "live ones first: {reps:?}");

    s.retire_replica("console-1").unwrap();
    assert_eq!(s.live_replicas("console").unwrap(), 0);
    assert!(
        !s.replicas()
            .unwrap()
            .iter()
            .find(|r| r.id == "console-1")
            .unwrap()
            .alive
    );
    s.register_replica("console-1", "console", &["console"], lease())
        .unwrap();
    assert_eq!(s.live_replicas("console").unwrap(), 1, "back after registering again");

    s.prune_replicas(Duration::from_secs(3600)).unwrap();
    assert_eq!(s.replicas().unwrap().len(), 3, "nothing silent for an hour");
    s.prune_replicas(Duration::ZERO).unwrap();
    let left: BTreeSet<String> = s.replicas().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(left, ["bot-1", "console-1"].map(String::from).into());
}

fn start_job_locks_the_env_and_fences_writes(db: &TestDb) {
    let s = db.open();
    s.register_replica("bot-1", "bot", &["discord"], lease()).unwrap();
    let (id, token) = started(s.start_job(&new_job("staging", "deploy"), "bot-1", lease()).unwrap());
    assert!(token >= 1);
    let j = job(&s, id);
    assert_eq!(
        (j.state, j.owner.as_deref(), j.token),
        (JobState::Running, Some("bot-1"), Some(token))
    );
    assert!(j.started_at.is_some());
    let lock = s.env_lock("staging").unwrap().expect("lock row");
    assert_eq!(
        (lock.job_id, lock.owner.as_deref(), lock.token, lock.live),
        (Some(id), Some("bot-1"), token, true)
    );
    assert_eq!(s.held_locks().unwrap(), vec![lock.clone()]);
    assert_eq!(s.env_lock("sandbox").unwrap(), None, "never taken");

    // The environment is busy: the holder and the lock's owner come back, nothing is written.
    match s.start_job(&new_job("staging", "update"), "bot-2", lease()).unwrap() {
        StartOutcome::Busy(holder, busy) => {
            let holder = (*holder).expect("the holder's record");
            assert_eq!((holder.id, holder.action.as_str()), (id, "deploy"));
            assert_eq!(busy, lock, "the lock as it is");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(
        ids(&s.recent_jobs(10).unwrap()),
        vec![id],
        "a refused start writes no job"
    );
    let (other, other_token) = started(s.start_job(&new_job("sandbox", "deploy"), "bot-1", lease()).unwrap());

    // Writes with the right token land.
    s.mark_running(id, token, "/var/log/argos/1.log").unwrap();
    s.set_status_message(id, token, "msg-1").unwrap();
    s.set_progress(id, token, "step 1/3").unwrap();
    let j = job(&s, id);
    assert_eq!(j.log_path.as_deref(), Some("/var/log/argos/1.log"));
    assert_eq!(j.status_message_id.as_deref(), Some("msg-1"));
    assert_eq!(j.progress.as_deref(), Some("step 1/3"));

    // Wrong tokens (and the other env's token) are refused and change nothing.
    let fenced_writes = |s: &Store, id: u64, bad: i64| {
        assert_fenced(s.mark_running(id, bad, "/bad"), "mark_running");
        assert_fenced(s.set_status_message(id, bad, "msg-bad"), "set_status_message");
        assert_fenced(s.set_progress(id, bad, "bad"), "set_progress");
        assert_fenced(s.finish_job(id, bad, JobState::Failed, "bad"), "finish_job");
        assert_fenced(
            s.finish_and_release(id, bad, JobState::Failed, "bad"),
            "finish_and_release",
        );
    };
    let before = (job(&s, id), s.env_lock("staging").unwrap());
    for bad in [token + 1, token - 1, 0, -1, other_token + 100] {
        if bad != token {
            fenced_writes(&s, id, bad);
        }
    }
    assert_eq!(
        (job(&s, id), s.env_lock("staging").unwrap()),
        before,
        "refused writes change nothing"
    );

    s.finish_and_release(id, token, JobState::Succeeded, "deployed")
        .unwrap();
    let j = job(&s, id);
    assert_eq!((j.state, j.result.as_deref()), (JobState::Succeeded, Some("deployed")));
    assert!(j.finished_at.is_some());
    let free = s.env_lock("staging").unwrap().unwrap();
    assert_eq!((free.job_id, free.owner), (None, None), "the env is free again");
    assert_eq!(ids_of_locks(&s), vec![("sandbox".to_string(), Some(other))]);

    // The old token is stale now, for the finished job and for whatever runs next.
    let before = job(&s, id);
    fenced_writes(&s, id, token);
    assert_eq!(job(&s, id), before);
    let (next, next_token) = started(s.start_job(&new_job("staging", "update"), "bot-2", lease()).unwrap());
    assert!(next > id);
    assert!(next_token > token, "tokens only grow: {next_token} after {token}");
    let before = (job(&s, next), s.env_lock("staging").unwrap());
    fenced_writes(&s, next, token);
    assert_fenced(
        s.finish_and_release(id, token, JobState::Failed, "late"),
        "a late release of the old job",
    );
    assert_eq!(
        (job(&s, next), s.env_lock("staging").unwrap()),
        before,
        "stale writes neither touch nor free the new holder"
    );
    s.set_progress(next, next_token, "step 1/1").unwrap();
    assert_eq!(job(&s, next).progress.as_deref(), Some("step 1/1"));
}

fn ids_of_locks(s: &Store) -> Vec<(String, Option<u64>)> {
    s.held_locks().unwrap().into_iter().map(|l| (l.env, l.job_id)).collect()
}

fn expired_lease_is_taken_over_once(db: &TestDb) {
    let s = db.open();
    s.register_replica("bot-1", "bot", &["discord"], lease()).unwrap();
    s.register_replica("bot-2", "bot", &["discord"], lease()).unwrap();
    let (id, token) = started(
        s.start_job(&new_job("staging", "deploy"), "bot-1", zero_lease())
            .unwrap(),
    );
    let_zero_leases_run_out();

    let expired = s.expired_locks().unwrap();
    assert_eq!(expired.len(), 1, "{expired:?}");
    let t = &expired[0];
    assert_eq!(
        (
            t.lock.env.as_str(),
            t.lock.job_id,
            t.lock.owner.as_deref(),
            t.lock.token,
            t.lock.live
        ),
        ("staging", Some(id), Some("bot-1"), token, false)
    );
    assert_eq!(t.job.as_ref().map(|j| j.id), Some(id));
    assert!(!s.env_lock("staging").unwrap().unwrap().live);

    let new = s
        .take_over("staging", token, "bot-2", lease())
        .unwrap()
        .expect("the expired lock is taken over");
    assert!(new > token, "a new token: {new} after {token}");
    assert_eq!(
        s.take_over("staging", token, "bot-3", lease()).unwrap(),
        None,
        "taken over only once"
    );
    assert_eq!(
        s.take_over("staging", new, "bot-3", lease()).unwrap(),
        None,
        "the new lease is live"
    );
    assert!(s.expired_locks().unwrap().is_empty());
    let j = job(&s, id);
    assert_eq!(
        (j.owner.as_deref(), j.token, j.state),
        (Some("bot-2"), Some(new), JobState::Running)
    );
    let lock = s.env_lock("staging").unwrap().unwrap();
    assert_eq!(
        (lock.job_id, lock.owner.as_deref(), lock.token, lock.live),
        (Some(id), Some("bot-2"), new, true)
    );
    assert!(
        s.heartbeat("bot-1", lease()).unwrap().is_empty(),
        "the old owner's heartbeat does not win it back"
    );

    // The old owner's writes are refused; the new owner's land.
    let before = job(&s, id);
    assert_fenced(
        s.set_progress(id, token, "old owner"),
        "set_progress with the old token",
    );
    assert_fenced(s.mark_running(id, token, "/old"), "mark_running with the old token");
    assert_fenced(
        s.set_status_message(id, token, "old"),
        "set_status_message with the old token",
    );
    assert_fenced(
        s.finish_and_release(id, token, JobState::Failed, "old owner"),
        "finish_and_release with the old token",
    );
    assert_eq!(job(&s, id), before);
    assert_eq!(s.env_lock("staging").unwrap().unwrap().job_id, Some(id), "still held");

    s.set_progress(id, new, "resumed by bot-2").unwrap();
    s.mark_running(id, new, "/new.log").unwrap();
    let j = job(&s, id);
    assert_eq!(
        (j.progress.as_deref(), j.log_path.as_deref()),
        (Some("resumed by bot-2"), Some("/new.log"))
    );
    s.finish_and_release(id, new, JobState::Succeeded, "done").unwrap();
    assert_eq!(job(&s, id).state, JobState::Succeeded);
    assert!(s.held_locks().unwrap().is_empty());
}

fn heartbeat_renews_only_live_locks(db: &TestDb) {
    let s = db.open();
    s.register_replica("bot-1", "bot", &["discord"], lease()).unwrap();
    s.register_replica("bot-2", "bot", &["discord"], lease()).unwrap();
    let short = LeaseSettings {
        lease: Duration::from_millis(800),
        heartbeat: Duration::from_millis(200),
    };
    let (a, ta) = started(s.start_job(&new_job("staging", "deploy"), "bot-1", short).unwrap());
    let (b, _) = started(
        s.start_job(&new_job("sandbox", "deploy"), "bot-1", zero_lease())
            .unwrap(),
    );
    let (c, _) = started(s.start_job(&new_job("prod", "deploy"), "bot-2", short).unwrap());
    let_zero_leases_run_out();

    let held = s.heartbeat("bot-1", lease()).unwrap();
    assert_eq!(
        held,
        vec![("staging".to_string(), a, ta)],
        "the live lock, not the expired one"
    );
    // Past the short lease: staging lives on only because the heartbeat renewed it; bot-2's
    // lock, never renewed, ran out.
    thread::sleep(Duration::from_millis(1000));
    assert!(s.env_lock("staging").unwrap().unwrap().live, "renewed");
    let expired: Vec<(String, Option<u64>)> = s
        .expired_locks()
        .unwrap()
        .into_iter()
        .map(|t| (t.lock.env, t.lock.job_id))
        .collect();
    assert_eq!(
        expired,
        vec![("prod".to_string(), Some(c)), ("sandbox".to_string(), Some(b))]
    );
    let held = s.heartbeat("bot-1", lease()).unwrap();
    assert_eq!(
        held,
        vec![("staging".to_string(), a, ta)],
        "the expired lock is not returned"
    );
    assert!(!s.env_lock("sandbox").unwrap().unwrap().live, "nor renewed");
}

fn retired_replica_locks_expire_at_once(db: &TestDb) {
    let s = db.open();
    s.register_replica("bot-1", "bot", &["discord"], lease()).unwrap();
    s.register_replica("bot-2", "bot", &["discord"], lease()).unwrap();
    let (id, token) = started(s.start_job(&new_job("staging", "deploy"), "bot-1", lease()).unwrap());
    let (other, _) = started(s.start_job(&new_job("sandbox", "deploy"), "bot-2", lease()).unwrap());
    assert!(s.expired_locks().unwrap().is_empty());

    s.retire_replica("bot-1").unwrap();
    let expired = s.expired_locks().unwrap();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(
        (
            expired[0].lock.env.as_str(),
            expired[0].lock.job_id,
            expired[0].lock.live
        ),
        ("staging", Some(id), false)
    );
    assert_eq!(expired[0].job.as_ref().map(|j| j.id), Some(id));
    assert!(
        s.env_lock("sandbox").unwrap().unwrap().live,
        "other replicas' locks stay"
    );
    assert_eq!(s.live_replicas("bot").unwrap(), 1);
    assert!(!s.replicas().unwrap().iter().find(|r| r.id == "bot-1").unwrap().alive);

    let new = s
        .take_over("staging", token, "bot-2", lease())
        .unwrap()
        .expect("taken over");
    assert!(new > token);
    let held: BTreeSet<(String, u64)> = s
        .heartbeat("bot-2", lease())
        .unwrap()
        .into_iter()
        .map(|(env, job, _)| (env, job))
        .collect();
    assert_eq!(
        held,
        [("sandbox".to_string(), other), ("staging".to_string(), id)].into()
    );
}

fn lock_for_job_starts_a_queued_job(db: &TestDb) {
    let s = db.open();
    let q1 = s
        .insert_job_for(&new_job("staging", "deploy"), JobState::Queued, Some("bot-1"))
        .unwrap();
    let q2 = s
        .insert_job_for(&new_job("staging", "update"), JobState::Queued, Some("bot-1"))
        .unwrap();
    let t1 = s.lock_for_job(q1, "bot-1", lease()).unwrap().expect("the env is free");
    let j = job(&s, q1);
    assert_eq!(
        (j.state, j.owner.as_deref(), j.token),
        (JobState::Running, Some("bot-1"), Some(t1))
    );
    assert!(j.started_at.is_some());
    let lock = s.env_lock("staging").unwrap().unwrap();
    assert_eq!(
        (lock.job_id, lock.owner.as_deref(), lock.token),
        (Some(q1), Some("bot-1"), t1)
    );

    assert_eq!(s.lock_for_job(q2, "bot-1", lease()).unwrap(), None, "the env is busy");
    assert_eq!((job(&s, q2).state, job(&s, q2).token), (JobState::Queued, None));
    assert_eq!(s.lock_for_job(q1, "bot-2", lease()).unwrap(), None, "already held");
    assert_eq!(s.env_lock("staging").unwrap().unwrap(), lock, "unchanged");
    assert_eq!(
        s.lock_for_job(q2 + 1000, "bot-1", lease()).unwrap(),
        None,
        "no such job"
    );

    s.mark_running(q1, t1, "/q1.log").unwrap();
    s.finish_and_release(q1, t1, JobState::Succeeded, "ok").unwrap();
    assert_eq!(s.lock_for_job(q1, "bot-1", lease()).unwrap(), None, "a finished job");
    let t2 = s.lock_for_job(q2, "bot-2", lease()).unwrap().expect("free again");
    assert!(t2 > t1);
    let j = job(&s, q2);
    assert_eq!(
        (j.state, j.owner.as_deref(), j.token),
        (JobState::Running, Some("bot-2"), Some(t2))
    );
    s.set_progress(q2, t2, "going").unwrap();
    assert_fenced(s.set_progress(q2, t1, "stale"), "set_progress with q1's token");
}

fn orphaned_jobs_are_adopted_once(db: &TestDb) {
    let s = db.open();
    s.register_replica("bot-1", "bot", &["discord"], lease()).unwrap();
    s.register_replica("dead", "bot", &["discord"], zero_lease()).unwrap();
    let_zero_leases_run_out();
    let mine = s
        .insert_job_for(&new_job("staging", "deploy"), JobState::Queued, Some("bot-1"))
        .unwrap();
    let dead = s
        .insert_job_for(&new_job("staging", "update"), JobState::Queued, Some("dead"))
        .unwrap();
    let nobody = s.insert_job(&new_job("sandbox", "deploy"), JobState::Queued).unwrap();
    let unknown = s
        .insert_job_for(
            &new_job("sandbox", "update"),
            JobState::Queued,
            Some("never-registered"),
        )
        .unwrap();
    let running = s
        .insert_job_for(&new_job("prod", "deploy"), JobState::Running, Some("dead"))
        .unwrap();
    assert_eq!(ids(&s.orphaned_jobs().unwrap()), vec![dead, nobody, unknown]);

    assert!(!s.adopt_job(dead, Some("bot-1"), "bot-2").unwrap(), "wrong old owner");
    assert!(s.adopt_job(dead, Some("dead"), "bot-1").unwrap());
    assert!(!s.adopt_job(dead, Some("dead"), "bot-3").unwrap(), "adopted once");
    assert_eq!(job(&s, dead).owner.as_deref(), Some("bot-1"));
    assert!(!s.adopt_job(nobody, Some("dead"), "bot-1").unwrap(), "it had no owner");
    assert!(s.adopt_job(nobody, None, "bot-1").unwrap());
    assert!(!s.adopt_job(nobody, None, "bot-3").unwrap(), "adopted once");
    assert!(
        !s.adopt_job(running, Some("dead"), "bot-1").unwrap(),
        "only queued jobs"
    );
    assert_eq!(job(&s, running).owner.as_deref(), Some("dead"));
    assert_eq!(ids(&s.orphaned_jobs().unwrap()), vec![unknown]);

    s.retire_replica("bot-1").unwrap();
    assert_eq!(ids(&s.orphaned_jobs().unwrap()), vec![mine, dead, nobody, unknown]);
}

fn approved_unstarted_lists_granted_queued_jobs(db: &TestDb) {
    let s = db.open();
    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    let queued = |env: &str, owner: &str| {
        s.insert_job_for(&new_job(env, "deploy"), JobState::Queued, Some(owner))
            .unwrap()
    };
    let a = queued("staging", "bot-1");
    let b = queued("sandbox", "bot-1");
    let c = queued("prod", "bot-2");
    let d = queued("qa", "bot-1");
    let approval = |job: u64, state: Option<ApprovalState>| {
        let ap = s.insert_approval(job, "sha256:x", "plan", 1, expires).unwrap();
        if let Some(state) = state {
            assert!(s.decide_approval(ap, state).unwrap());
        }
        ap
    };
    approval(a, Some(ApprovalState::Approved));
    let ap_b = approval(b, None);
    approval(c, Some(ApprovalState::Approved));
    approval(d, Some(ApprovalState::Denied));
    assert_eq!(s.approved_unstarted("bot-1").unwrap(), vec![a]);
    assert_eq!(s.approved_unstarted("bot-2").unwrap(), vec![c]);
    assert!(s.approved_unstarted("bot-3").unwrap().is_empty());

    assert!(s.decide_approval(ap_b, ApprovalState::Approved).unwrap());
    assert_eq!(s.approved_unstarted("bot-1").unwrap(), vec![a, b]);
    let t = s.lock_for_job(a, "bot-1", lease()).unwrap().expect("staging is free");
    assert!(t > 0);
    assert_eq!(s.approved_unstarted("bot-1").unwrap(), vec![b], "started jobs drop out");
    assert!(s.end_unstarted_job(b, JobState::Cancelled, "cancelled").unwrap());
    assert!(s.approved_unstarted("bot-1").unwrap().is_empty(), "ended jobs drop out");
}

fn unlocked_running_jobs_are_found_and_relocked(db: &TestDb) {
    let s = db.open();
    let legacy = s
        .insert_job_for(&new_job("staging", "deploy"), JobState::Running, Some("old-bot"))
        .unwrap();
    let _queued = s.insert_job(&new_job("staging", "update"), JobState::Queued).unwrap();
    let (locked, token) = started(s.start_job(&new_job("sandbox", "deploy"), "bot-1", lease()).unwrap());
    assert_eq!(ids(&s.unlocked_running_jobs().unwrap()), vec![legacy]);

    // It is resumed by taking its environment's lock.
    let t = s
        .lock_for_job(legacy, "bot-1", lease())
        .unwrap()
        .expect("staging is free");
    assert!(s.unlocked_running_jobs().unwrap().is_empty());
    let j = job(&s, legacy);
    assert_eq!(
        (j.owner.as_deref(), j.token, j.state),
        (Some("bot-1"), Some(t), JobState::Running)
    );

    // Finishing frees the lock, and a finished job is not running.
    s.finish_and_release(locked, token, JobState::Succeeded, "ok").unwrap();
    assert!(s.unlocked_running_jobs().unwrap().is_empty());
}

fn release_stale_frees_only_expired_locks(db: &TestDb) {
    let s = db.open();
    let (id, token) = started(
        s.start_job(&new_job("staging", "deploy"), "bot-1", zero_lease())
            .unwrap(),
    );
    let_zero_leases_run_out();
    // The owner ended the job but died before freeing the environment.
    assert!(s.end_unstarted_job(id, JobState::Failed, "owner died").unwrap());
    assert_eq!(ids_of_locks(&s), vec![("staging".to_string(), Some(id))]);

    assert!(!s.release_stale("staging", token + 1).unwrap(), "wrong token");
    assert!(!s.release_stale("sandbox", token).unwrap(), "wrong env");
    assert!(s.release_stale("staging", token).unwrap());
    assert!(s.held_locks().unwrap().is_empty());
    assert!(s.expired_locks().unwrap().is_empty());
    let lock = s.env_lock("staging").unwrap().unwrap();
    assert_eq!((lock.job_id, lock.owner), (None, None));

    let (next, t2) = started(s.start_job(&new_job("staging", "update"), "bot-2", lease()).unwrap());
    assert!(t2 > token);
    assert!(!s.release_stale("staging", t2).unwrap(), "a live lock is not stale");
    assert!(
        !s.release_stale("staging", token).unwrap(),
        "an old token frees nothing"
    );
    assert_eq!(ids_of_locks(&s), vec![("staging".to_string(), Some(next))]);
}

// ---------------------------------------------------------------------------------------------
// 3. Concurrency

fn start_job_race_has_one_winner(db: &TestDb) {
    let s = db.open();
    // Round 1 meets no lock row (an insert race); round 2 a free row (an update race).
    let mut winners = Vec::new();
    for round in 0..2 {
        let outcomes = race(db, 8, move |i, store| {
            let outcome = store
                .start_job(
                    &new_job("staging", &format!("deploy-{round}-{i}")),
                    &format!("bot-{i}"),
                    lease(),
                )
                .unwrap();
            (i, outcome)
        });
        let started: Vec<(usize, u64, i64)> = outcomes
            .iter()
            .filter_map(|(i, o)| match o {
                StartOutcome::Started { id, token } => Some((*i, *id, *token)),
                StartOutcome::Busy(..) => None,
            })
            .collect();
        assert_eq!(started.len(), 1, "round {round}: exactly one start: {outcomes:?}");
        let (winner, id, token) = started[0];
        for (_, o) in &outcomes {
            if let StartOutcome::Busy(holder, lock) = o {
                assert_eq!(lock.job_id, Some(id), "round {round}: {o:?}");
                assert_eq!(lock.token, token);
                assert_eq!(lock.owner, Some(format!("bot-{winner}")));
                assert_eq!(holder.as_ref().as_ref().map(|j| j.id), Some(id), "the holder's record");
            }
        }
        let j = job(&s, id);
        assert_eq!(j.action, format!("deploy-{round}-{winner}"));
        assert_eq!(j.token, Some(token));
        winners.push((id, token));
        s.finish_and_release(id, token, JobState::Succeeded, "ok").unwrap();
    }
    assert!(winners[1].1 > winners[0].1);
    let all = s.recent_jobs(100).unwrap();
    assert_eq!(
        ids(&all),
        vec![winners[1].0, winners[0].0],
        "exactly one job row per round"
    );
}

fn claim_event_race_has_one_winner(db: &TestDb) {
    let won = race(db, 8, |i, store| {
        store.claim_event("discord", "evt-1", &format!("bot-{i}")).unwrap()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "exactly one claim: {won:?}");
    let s = db.open();
    assert!(!s.claim_event("discord", "evt-1", "bot-9").unwrap(), "claimed already");
    assert!(
        s.claim_event("slack", "evt-1", "bot-9").unwrap(),
        "another platform's event"
    );
    assert!(s.claim_event("discord", "evt-2", "bot-9").unwrap(), "another event");
}

fn adopt_job_race_has_one_winner(db: &TestDb) {
    let s = db.open();
    let q = s
        .insert_job_for(&new_job("staging", "deploy"), JobState::Queued, Some("gone"))
        .unwrap();
    let won = race(db, 8, move |i, store| {
        store.adopt_job(q, Some("gone"), &format!("bot-{i}")).unwrap()
    });
    let winners: Vec<usize> = (0..8).filter(|&i| won[i]).collect();
    assert_eq!(winners.len(), 1, "exactly one adoption: {won:?}");
    assert_eq!(job(&s, q).owner, Some(format!("bot-{}", winners[0])));
}

fn outbox_messages_are_claimed_once(db: &TestDb) {
    let s = db.open();
    assert!(s.claim_outbox("bot-0", &[], &[]).unwrap().is_empty(), "serves nothing");
    for r in 0..3 {
        s.register_replica(&format!("bot-{r}"), "bot", &["discord"], lease())
            .unwrap();
    }
    let mut queued = Vec::new();
    for i in 0..30 {
        let id = s
            .enqueue_message("discord", &format!("#c{}", i % 3), &format!("message {i}"))
            .unwrap();
        queued.push((id, format!("#c{}", i % 3), format!("message {i}")));
    }
    let slack = s.enqueue_message("slack", "#ops", "for slack").unwrap();
    let console = s.enqueue_message("console", "term-1", "for the console").unwrap();

    let claimed = race(db, 3, |r, store| {
        let me = format!("bot-{r}");
        let mut mine = Vec::new();
        loop {
            let batch = store.claim_outbox(&me, &["discord"], &[]).unwrap();
            if batch.is_empty() {
                return mine;
            }
            assert!(batch.len() <= 20);
            mine.extend(batch);
        }
    });
    let mut all: Vec<(u64, String, String)> = claimed
        .iter()
        .flatten()
        .map(|m| {
            assert_eq!(m.platform, "discord");
            (m.id, m.channel.clone(), m.text.clone())
        })
        .collect();
    all.sort();
    assert_eq!(all, queued, "every message claimed exactly once");
    eprintln!(
        "outbox claims per replica: {:?}",
        claimed.iter().map(Vec::len).collect::<Vec<_>>()
    );

    // Other platforms' messages are left; a console claims by channel.
    let other = s.claim_outbox("cli-1", &["slack"], &[]).unwrap();
    assert_eq!(other.iter().map(|m| m.id).collect::<Vec<_>>(), vec![slack]);
    let term = s.claim_outbox("console-1", &[], &["term-1"]).unwrap();
    assert_eq!(term.len(), 1);
    assert_eq!(
        (term[0].id, term[0].platform.as_str(), term[0].text.as_str()),
        (console, "console", "for the console")
    );

    // Delivered messages are done; a dead replica's undelivered claims go to a live one.
    for m in claimed[1].iter().chain(&claimed[2]) {
        s.mark_delivered(m.id).unwrap();
    }
    s.retire_replica("bot-0").unwrap();
    let mut again = Vec::new();
    loop {
        let batch = s.claim_outbox("bot-1", &["discord"], &[]).unwrap();
        if batch.is_empty() {
            break;
        }
        again.extend(batch.into_iter().map(|m| m.id));
    }
    let dead: Vec<u64> = claimed[0].iter().map(|m| m.id).collect();
    assert_eq!(again, dead, "bot-0's undelivered messages, and only those");
}

fn prune_event_claims_forgets_old_claims(db: &TestDb) {
    let s = db.open();
    assert!(s.claim_event("discord", "e1", "bot-1").unwrap());
    assert!(s.claim_event("discord", "e2", "bot-1").unwrap());
    assert_eq!(
        s.prune_event_claims(Duration::from_secs(600)).unwrap(),
        0,
        "recent claims stay"
    );
    assert!(!s.claim_event("discord", "e1", "bot-2").unwrap());
    let_zero_leases_run_out();
    assert_eq!(s.prune_event_claims(Duration::from_millis(1)).unwrap(), 2);
    assert!(
        s.claim_event("discord", "e1", "bot-2").unwrap(),
        "forgotten, so claimable again"
    );
    assert_eq!(s.prune_event_claims(Duration::from_secs(600)).unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// 4. Opening a brand-new database at the same moment

/// Set (to the database path) for [`sqlite_open_child`] when it runs as a helper process.
const CHILD_DB: &str = "ARGOS_STORE_BACKENDS_CHILD_DB";
/// When the helper process opens the store: milliseconds since the epoch.
const CHILD_AT: &str = "ARGOS_STORE_BACKENDS_CHILD_AT";

fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn sleep_until_epoch_ms(at: u64) {
    let now = epoch_ms();
    if at > now {
        thread::sleep(Duration::from_millis(at - now));
    }
}

/// Opens the store named by `CHILD_DB` at the moment `CHILD_AT`, records a job, and prints its
/// schema version. Run only as a helper process of `concurrent_openers_migrate_once_sqlite`.
#[test]
#[ignore = "a helper process of concurrent_openers_migrate_once_sqlite"]
fn sqlite_open_child() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let at: u64 = std::env::var(CHILD_AT).expect(CHILD_AT).parse().expect("epoch ms");
    sleep_until_epoch_ms(at);
    let store = Store::open(std::path::Path::new(&path)).expect("the child opens the store");
    store
        .insert_job(&new_job("staging", "from-a-child"), JobState::Queued)
        .expect("the child writes");
    println!("schema_version={}", store.schema_version());
}

fn concurrent_openers_migrate_once(db: &TestDb) {
    let expected = Store::in_memory().unwrap().schema_version();
    assert!(expected >= 3, "migrations: {expected}");
    // Far enough ahead for the helper processes to be up and waiting.
    let at = epoch_ms() + 700;
    let children: Vec<_> = match db {
        TestDb::Sqlite { path, .. } => (0..2)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--exact",
                        "store_backends::sqlite_open_child",
                        "--ignored",
                        "--nocapture",
                        "--test-threads",
                        "1",
                    ])
                    .env(CHILD_DB, path)
                    .env(CHILD_AT, at.to_string())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("start a helper process")
            })
            .collect(),
        TestDb::Postgres { .. } => Vec::new(),
    };
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (path, url) = match db {
                TestDb::Sqlite { path, .. } => (Some(path.clone()), None),
                TestDb::Postgres { url } => (None, Some(url.clone())),
            };
            thread::spawn(move || {
                sleep_until_epoch_ms(at);
                let t = Instant::now();
                let store = match (&path, &url) {
                    (Some(p), _) => Store::open(p),
                    (_, Some(u)) => Store::connect(u),
                    _ => unreachable!(),
                }
                .unwrap_or_else(|e| panic!("opener {i}: {e}"));
                let took = t.elapsed();
                store
                    .insert_job(&new_job("staging", &format!("opener-{i}")), JobState::Queued)
                    .unwrap_or_else(|e| panic!("opener {i} writes: {e}"));
                (store.schema_version(), took)
            })
        })
        .collect();
    let mut versions = Vec::new();
    for h in threads {
        let (v, took) = h.join().expect("an opening thread panicked");
        eprintln!("{} opener: {took:?}", db.kind());
        versions.push(v);
    }
    for child in children {
        let out = child.wait_with_output().expect("helper process");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "helper process failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        assert!(stdout.contains("1 passed"), "the helper test ran:\n{stdout}");
        // libtest prints the line right after `test sqlite_open_child ... `.
        let v: String = stdout
            .split("schema_version=")
            .nth(1)
            .unwrap_or_else(|| panic!("no schema version in:\n{stdout}"))
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        versions.push(v.parse().expect("a number"));
    }
    let openers = versions.len();
    assert_eq!(openers, if db.kind() == "sqlite" { 6 } else { 4 });
    assert_eq!(versions, vec![expected; openers], "every opener sees the full schema");
    let s = db.open();
    assert_eq!(s.schema_version(), expected, "migrated once, still current");
    assert_eq!(s.recent_jobs(100).unwrap().len(), openers, "every opener could write");
}

// ---------------------------------------------------------------------------------------------
// 5. PostgreSQL only: the server restarts under a live store

#[test]
fn postgres_store_reconnects_after_a_restart() {
    let mut pg = PgServer::start();
    let url = pg.new_database();
    let s = Store::connect(&url).unwrap();
    let first = s.insert_job(&new_job("staging", "deploy"), JobState::Queued).unwrap();
    s.audit(AuditEntry::by(
        &who("discord", "u-alice", "alice"),
        "#ops",
        "staging deploy",
        "accepted",
        Some(first),
    ))
    .unwrap();

    pg.restart();
    let t = Instant::now();
    let j = s.job(first).expect("the first call after a restart succeeds");
    eprintln!("first call after a restart: {:?}", t.elapsed());
    assert_eq!(
        j.map(|j| j.action),
        Some("deploy".to_string()),
        "written before the restart"
    );
    assert_eq!(s.audit_log(10).unwrap().len(), 1);

    // A transaction right after a restart.
    pg.restart();
    let (id, token) = started(s.start_job(&new_job("sandbox", "deploy"), "bot-1", lease()).unwrap());
    s.set_progress(id, token, "after a restart").unwrap();

    // The server is down when the call is made and comes back while it waits.
    pg.stop();
    let back = thread::spawn(move || {
        thread::sleep(Duration::from_millis(700));
        pg.start_again();
        pg
    });
    let t = Instant::now();
    let third = s
        .insert_job(&new_job("staging", "update"), JobState::Queued)
        .expect("a call made while the server is down waits for it");
    eprintln!("call while the server was down: {:?}", t.elapsed());
    assert!(t.elapsed() >= Duration::from_millis(500), "it waited for the server");
    let _pg = back.join().unwrap();
    assert_eq!(ids(&s.recent_jobs(10).unwrap()), vec![third, id, first]);
    assert_eq!(job(&s, id).progress.as_deref(), Some("after a restart"));
    s.finish_and_release(id, token, JobState::Succeeded, "ok").unwrap();
    assert!(s.held_locks().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only: fencing against a takeover that is in flight. Row locks taken on a plain
// connection hold the store's statements at chosen points, so the interleavings are exact.

/// A plain connection, for holding row locks and watching who waits.
struct RawPg {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl RawPg {
    fn connect(url: &str) -> RawPg {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("raw connect");
            tokio::spawn(conn);
            client
        });
        RawPg { rt, client }
    }

    fn exec(&self, sql: &str) {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Waits until `n` sessions of this database wait for a lock.
    fn wait_for_lock_waiters(&self, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: i64 = self
                .rt
                .block_on(self.client.query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock'",
                    &[],
                ))
                .expect("pg_stat_activity")
                .get(0);
            if waiting >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{waiting} sessions wait for a lock, not {n}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A job of `bot-1` on staging whose lease ran out, ready to be taken over by `bot-2`.
fn expired_job(url: &str) -> (Store, u64, i64) {
    let s = Store::connect(url).unwrap();
    s.register_replica("bot-1", "bot", &["discord"], lease()).unwrap();
    s.register_replica("bot-2", "bot", &["discord"], lease()).unwrap();
    let (id, token) = started(
        s.start_job(&new_job("staging", "deploy"), "bot-1", zero_lease())
            .unwrap(),
    );
    let_zero_leases_run_out();
    (s, id, token)
}

/// The old owner writes while `bot-2`'s take_over is between its two statements (its update of
/// the job row waits): the write must be refused once the takeover commits.
fn stale_write_waiting_behind_a_takeover(write: fn(&Store, u64, i64) -> StoreResult<()>) {
    let url = postgres::shared().new_database();
    let (s, id, token) = expired_job(&url);
    let holder = RawPg::connect(&url);
    let monitor = RawPg::connect(&url);
    holder.exec(&format!("BEGIN; SELECT 1 FROM jobs WHERE id = {id} FOR UPDATE"));

    let b = Store::connect(&url).unwrap();
    let taker = thread::spawn(move || b.take_over("staging", token, "bot-2", lease()));
    monitor.wait_for_lock_waiters(1); // bot-2 holds the lock row, waits for the job row
    let a = Store::connect(&url).unwrap();
    let writer = thread::spawn(move || write(&a, id, token));
    monitor.wait_for_lock_waiters(2); // bot-1's write waits for the job row too
    holder.exec("COMMIT");

    let new = taker.join().unwrap().unwrap().expect("bot-2 takes over");
    let written = writer.join().unwrap();
    let j = job(&s, id);
    assert_eq!((j.owner.as_deref(), j.token), (Some("bot-2"), Some(new)));
    assert!(
        written.as_ref().is_err_and(|e| e.is_fenced()),
        "a write with token {token} after the takeover to token {new} must be fenced, got {written:?}; job now: {j:?}"
    );
    assert_eq!(j.state, JobState::Running, "the stale owner did not end the job");
    assert_eq!(j.progress, None, "the stale owner's progress did not land");
}

#[test]
fn postgres_stale_progress_behind_a_takeover_is_fenced() {
    stale_write_waiting_behind_a_takeover(|s, id, token| s.set_progress(id, token, "stale owner"));
}

#[test]
fn postgres_stale_finish_behind_a_takeover_is_fenced() {
    stale_write_waiting_behind_a_takeover(|s, id, token| {
        s.finish_and_release(id, token, JobState::Failed, "stale owner")
    });
}

/// finish_and_release (job row, then lock row) meets take_over (lock row, then job row): the
/// outcome must be one or the other, never an error.
#[test]
fn postgres_finish_racing_a_takeover_does_not_deadlock() {
    let url = postgres::shared().new_database();
    let (s, id, token) = expired_job(&url);
    let holder = RawPg::connect(&url);
    let monitor = RawPg::connect(&url);
    holder.exec("BEGIN; SELECT 1 FROM env_locks WHERE env = 'staging' FOR UPDATE");

    let b = Store::connect(&url).unwrap();
    let taker = thread::spawn(move || b.take_over("staging", token, "bot-2", lease()));
    monitor.wait_for_lock_waiters(1); // bot-2 waits for the lock row
    let a = Store::connect(&url).unwrap();
    let finisher = thread::spawn(move || a.finish_and_release(id, token, JobState::Succeeded, "done by bot-1"));
    monitor.wait_for_lock_waiters(2); // bot-1 updated the job row, waits for the lock row
    holder.exec("COMMIT");

    let took = taker.join().unwrap();
    let finished = finisher.join().unwrap();
    let j = job(&s, id);
    let lock = s.env_lock("staging").unwrap().unwrap();
    match (&took, &finished) {
        (Ok(Some(new)), Err(e)) if e.is_fenced() => {
            assert_eq!(
                (j.state, j.owner.as_deref(), j.token),
                (JobState::Running, Some("bot-2"), Some(*new))
            );
            assert_eq!(lock.job_id, Some(id));
        }
        (Ok(None), Ok(())) => {
            assert_eq!(j.state, JobState::Succeeded);
            assert_eq!(lock.job_id, None);
        }
        _ => panic!("take_over: {took:?}\nfinish_and_release: {finished:?}\njob: {j:?}\nlock: {lock:?}"),
    }
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
