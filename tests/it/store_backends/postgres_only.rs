//! PostgreSQL only: the server restarts under a live store, and fencing holds against a takeover in flight.
use super::*;

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
