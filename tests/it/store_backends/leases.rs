//! Replicas, leases and fencing, on both backends.
use super::*;

on_both_backends! {
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
}

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
