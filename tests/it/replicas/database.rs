//! PostgreSQL restarted, or down past the lease, in the middle of a job.
use std::time::{Duration, Instant};

use argos::store::JobState;

use super::cluster::*;
use super::support::fake_discord::*;
use super::support::moto::Moto;
use super::support::postgres::PgServer;
use super::support::replicas::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_restarted_in_the_middle_of_a_job_loses_nothing() {
    let moto = Moto::start().await;
    let mut pg = PgServer::start();
    let db = pg.new_database();
    let mut c = Cluster::start(&moto.url, db, &["a"], &[TestUser::admin()], "").await;
    let (status, before, _) = commission_at_gate(&c).await;
    let audit_before = c.store.audit_log(100).unwrap();
    assert!(
        audit_before
            .iter()
            .any(|r| r.command == "staging commission" && r.job_id == Some(1)),
        "{audit_before:#?}"
    );

    let restart = Instant::now();
    tokio::task::block_in_place(|| pg.restart());
    let downtime = restart.elapsed();
    // The bot noticed: its connection was closed by the server, or a statement failed and was
    // retried on a new connection.
    poll_until("the bot to notice the restart", LONG, || {
        let log = c.replicas[0].log();
        (log.contains("PostgreSQL connection closed") || log.contains("database unreachable; retrying")).then_some(())
    })
    .await;
    let (last, done) = finish_at_gate(&c).await;

    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    assert_eq!(done.result.as_deref(), Some("commissioned argos-staging"));
    assert_eq!(done.id, before.id);
    assert_eq!(done.created_at, before.created_at);
    assert_eq!(done.status_message_id.as_deref(), Some(status.message_id.as_str()));
    let audit_after = c.store.audit_log(100).unwrap();
    for r in &audit_before {
        assert!(
            audit_after.contains(r),
            "audit row {r:#?} survived the restart: {audit_after:#?}"
        );
    }
    assert_one_status_message(&c, &status);
    assert_eq!(last.message_id, status.message_id);
    assert!(c.store.held_locks().unwrap().is_empty(), "staging is free again");
    assert!(c.replicas[0].alive());
    let replicas = c.store.replicas().unwrap();
    assert!(
        replicas.iter().any(|r| c.replicas[0].owns(&r.id) && r.alive),
        "the replica's heartbeat goes on after the restart: {replicas:#?}"
    );
    assert_one_stack_one_image(&c.project).await;
    c.assert_discord_clean();
    let resumed_itself = c
        .sent_in(CHANNEL)
        .iter()
        .any(|m| m.content.contains("picking it up again"));
    println!(
        "TIMING PostgreSQL restart took {downtime:?}; job finished {:?} after the restart; the job was {} (lease 1000 ms)",
        restart.elapsed(),
        if resumed_itself { "taken over again by the same replica (lease ran out during the outage)" } else { "kept by its owner" }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_down_past_the_lease_the_bot_drops_the_job_and_takes_it_up_again() {
    let moto = Moto::start().await;
    let mut pg = PgServer::start();
    let db = pg.new_database();
    let mut c = Cluster::start(&moto.url, db, &["a"], &[TestUser::admin()], "").await;
    let (status, before, _) = commission_at_gate(&c).await;
    let audit_before = c.store.audit_log(100).unwrap();

    // Down until the bot has given the job up: its lease (1 s) ran out by its own clock, as
    // the heartbeats could not renew it.
    let down = Instant::now();
    tokio::task::block_in_place(|| pg.stop());
    c.replicas[0]
        .wait_log("stopped working on the job: its lease is gone", LONG)
        .await;
    poll_until("the dropped job's playbook to be gone", LONG, || {
        c.replicas[0].run_processes().is_empty().then_some(())
    })
    .await;
    let gave_up = down.elapsed();
    if gave_up > Duration::from_secs(5) {
        // Seen when a status edit was due as the database went away: the reporter's progress
        // write retries for 30 s and holds the job's task meanwhile (see the report).
        let log = c.replicas[0].log();
        let why: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("cannot record progress") || l.contains("stopped working"))
            .collect();
        println!("SLOW give-up after {gave_up:?}:\n{}", why.join("\n"));
    }
    tokio::task::block_in_place(|| pg.start_again());
    let up = Instant::now();
    // Back up, the lock has run out by the database's clock too: the bot takes its own job
    // over (a new fencing token) and runs it to the gate again.
    c.replicas[0]
        .wait_log("taking over a job whose owner's lease ran out", LONG)
        .await;
    poll_until("the resumed job's playbook at the gate", LONG, || {
        c.at_gate(0).then_some(())
    })
    .await;
    let running_again = up.elapsed();
    let (last, done) = finish_at_gate(&c).await;

    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    assert_eq!(done.result.as_deref(), Some("commissioned argos-staging"));
    assert_eq!(done.created_at, before.created_at);
    assert!(done.token > before.token, "{before:#?}\n{done:#?}");
    assert!(c.replicas[0].owns(done.owner.as_deref().unwrap()));
    let audit_after = c.store.audit_log(100).unwrap();
    for r in &audit_before {
        assert!(audit_after.contains(r), "audit row {r:#?} survived: {audit_after:#?}");
    }
    let all = assert_one_status_message(&c, &status);
    assert_eq!(last.message_id, status.message_id);
    assert!(
        all.iter().any(|m| m.content.contains("picking it up again")),
        "{all:#?}"
    );
    assert!(c.store.held_locks().unwrap().is_empty(), "staging is free again");
    assert_one_stack_one_image(&c.project).await;
    println!(
        "TIMING PostgreSQL down: the bot gave the job up {gave_up:?} after the stop; {running_again:?} after the start its playbook ran again"
    );
    c.assert_discord_clean();
}
