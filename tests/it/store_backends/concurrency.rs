//! Races between handles on one database: one winner each time, on both backends.
use super::*;

on_both_backends! {
    start_job_race_has_one_winner => start_job_race_has_one_winner_sqlite, start_job_race_has_one_winner_postgres;
    claim_event_race_has_one_winner => claim_event_race_has_one_winner_sqlite, claim_event_race_has_one_winner_postgres;
    adopt_job_race_has_one_winner => adopt_job_race_has_one_winner_sqlite, adopt_job_race_has_one_winner_postgres;
    outbox_messages_are_claimed_once => outbox_messages_are_claimed_once_sqlite, outbox_messages_are_claimed_once_postgres;
    prune_event_claims_forgets_old_claims => prune_event_claims_forgets_old_claims_sqlite, prune_event_claims_forgets_old_claims_postgres;
    housekeeping_forgets_each_kind_after_its_own_time => housekeeping_forgets_each_kind_after_its_own_time_sqlite, housekeeping_forgets_each_kind_after_its_own_time_postgres;
}

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
                StartOutcome::Busy(..) | StartOutcome::Refused(_) => None,
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

/// The bot's hourly sweep: chat-event claims and pushed stack events are each forgotten after
/// their own time, and only then (the tables do not grow for as long as the bot runs).
fn housekeeping_forgets_each_kind_after_its_own_time(db: &TestDb) {
    use argos::bot::housekeeping::{sweep, Retention, Swept};
    use argos::progress::StackEvent;
    let s = db.open();
    assert!(s.claim_event("slack", "Ev1", "bot-1").unwrap());
    let event = |id: &str| StackEvent {
        event_id: id.into(),
        stack_name: "argos-staging".into(),
        stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/argos-staging/1".into(),
        timestamp: Some(chrono::Utc::now()),
        logical_id: "Database".into(),
        physical_id: String::new(),
        resource_type: "AWS::RDS::DBInstance".into(),
        status: "CREATE_IN_PROGRESS".into(),
        reason: None,
    };
    let token = "argos-job1-create-argos-staging".to_string();
    let events = [(event("e-1"), token.clone()), (event("e-2"), token)];
    assert_eq!(s.store_stack_events(&events).unwrap(), 2);
    let hour = Duration::from_secs(3600);
    let default = Retention::default();
    assert_eq!(sweep(&s, &default), Swept::default(), "nothing is a day old yet");
    let_zero_leases_run_out();
    let claims_only = Retention {
        event_claims: Duration::from_millis(1),
        stack_events: hour,
        replicas: hour,
    };
    assert_eq!(
        sweep(&s, &claims_only),
        Swept {
            event_claims: 1,
            stack_events: 0
        }
    );
    assert!(
        s.claim_event("slack", "Ev1", "bot-2").unwrap(),
        "forgotten, so claimable again"
    );
    let events_too = Retention {
        stack_events: Duration::from_millis(1),
        ..claims_only
    };
    assert_eq!(sweep(&s, &events_too).stack_events, 2);
    assert_eq!(s.store_stack_events(&events).unwrap(), 2, "forgotten, so stored again");
}
