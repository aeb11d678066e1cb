//! Jobs, the audit log, approvals and schedule runs, on both backends.
use super::*;

on_both_backends! {
    jobs_are_recorded_listed_and_ended => jobs_are_recorded_listed_and_ended_sqlite, jobs_are_recorded_listed_and_ended_postgres;
    finish_job_is_fenced_and_keeps_the_first_result => finish_job_is_fenced_and_keeps_the_first_result_sqlite, finish_job_is_fenced_and_keeps_the_first_result_postgres;
    audit_records_keep_order_and_survive_a_missing_job => audit_records_keep_order_and_survive_a_missing_job_sqlite, audit_records_keep_order_and_survive_a_missing_job_postgres;
    approvals_votes_and_decisions => approvals_votes_and_decisions_sqlite, approvals_votes_and_decisions_postgres;
    approval_decision_race_has_one_winner => approval_decision_race_has_one_winner_sqlite, approval_decision_race_has_one_winner_postgres;
    schedule_runs_are_claimed_once => schedule_runs_are_claimed_once_sqlite, schedule_runs_are_claimed_once_postgres;
}

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
