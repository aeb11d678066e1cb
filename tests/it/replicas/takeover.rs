//! A replica killed or paused in the middle of a commission: the other one takes the job over.
use std::time::Instant;

use argos::store::JobState;

use super::cluster::*;
use super::support::fake_discord::*;
use super::support::moto::Moto;
use super::support::replicas::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_commission_is_replaced_and_the_job_finishes_once() {
    let moto = Moto::start().await;
    let db = super::support::postgres::shared().new_database();
    let mut c = Cluster::start(&moto.url, db, &["a", "b"], &[TestUser::admin()], "").await;
    let (status, before, o) = commission_at_gate(&c).await;
    let n = 1 - o;

    let killed = Instant::now();
    c.replicas[o].kill9();
    // The playbook went with it (its supervisor's death signal).
    poll_until("the killed replica's playbook processes to be gone", LONG, || {
        c.replicas[o].run_processes().is_empty().then_some(())
    })
    .await;
    let children_gone = killed.elapsed();
    let after = poll_until("the job's new owner", LONG, || {
        let j = c.store.job(1).ok().flatten()?;
        j.owner.as_deref().is_some_and(|w| c.replicas[n].owns(w)).then_some(j)
    })
    .await;
    let taken_over = killed.elapsed();
    let taken_over_at = Instant::now();
    poll_until("the new owner's playbook at the gate", LONG, || {
        c.at_gate(n).then_some(())
    })
    .await;
    let running_again = killed.elapsed();
    c.gate.open();
    let last = final_edit(&c).await;
    let done = poll_until("the job's end in the store", LONG, || {
        Some(c.job(1)).filter(|j| j.state.is_finished())
    })
    .await;

    // The same status message, edited to its end by the new owner; nothing else posted.
    let all = assert_one_status_message(&c, &status);
    assert_eq!(last.kind, SentKind::Edit);
    assert_eq!(last.message_id, status.message_id);
    assert_eq!(last.session.as_deref(), Some(c.replicas[n].name.as_str()));
    assert!(
        all.iter()
            .any(|m| m.session.as_deref() == Some(c.replicas[n].name.as_str())
                && m.content.contains("picking it up again")),
        "the new owner said it picked the job up: {all:#?}"
    );
    assert!(
        all.iter()
            .filter(|m| m.session.as_deref() == Some(c.replicas[o].name.as_str()))
            .all(|m| m.at < taken_over_at),
        "nothing from the killed replica after its death (a request already on its way may land just after the kill)"
    );
    assert_eq!(
        c.discord.message(&status.message_id).unwrap().content,
        last.content,
        "the message stands at ✅"
    );
    // The store: the job's owner changed (with a newer fencing token) and it succeeded there.
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    assert_eq!(done.result.as_deref(), Some("commissioned argos-staging"));
    assert_eq!(done.owner, after.owner);
    assert!(c.replicas[n].owns(done.owner.as_deref().unwrap()), "{done:#?}");
    assert!(done.token > before.token, "{before:#?}\n{done:#?}");
    assert_eq!(done.status_message_id.as_deref(), Some(status.message_id.as_str()));
    assert!(c.store.held_locks().unwrap().is_empty(), "staging is free again");
    assert_one_stack_one_image(&c.project).await;
    let first_edit_by_n = all
        .iter()
        .find(|m| m.session.as_deref() == Some(c.replicas[n].name.as_str()))
        .map(|m| m.at.duration_since(killed));
    println!(
        "TIMING kill -9: playbook gone {children_gone:?}, job taken over {taken_over:?}, first edit by the new owner {first_edit_by_n:?}, its playbook running again {running_again:?} after the kill (lease 1000 ms, heartbeat 200 ms)"
    );
    c.assert_discord_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_paused_past_its_lease_loses_the_job_and_stays_silent_after_it_resumes() {
    let moto = Moto::start().await;
    let db = super::support::postgres::shared().new_database();
    let mut c = Cluster::start(&moto.url, db, &["a", "b"], &[TestUser::admin()], "").await;
    let (status, before, o) = commission_at_gate(&c).await;
    let n = 1 - o;
    let (o_name, n_name) = (c.replicas[o].name.clone(), c.replicas[n].name.clone());
    let o_token = before.token.expect("the running job has a token");

    let paused = Instant::now();
    c.replicas[o].pause();
    let after = poll_until("the job's new owner", LONG, || {
        let j = c.store.job(1).ok().flatten()?;
        j.owner.as_deref().is_some_and(|w| c.replicas[n].owns(w)).then_some(j)
    })
    .await;
    let taken_over = paused.elapsed();
    poll_until("the new owner's playbook at the gate", LONG, || {
        c.at_gate(n).then_some(())
    })
    .await;
    let running_again = paused.elapsed();
    // Paused, the old owner's playbook still runs (nothing may kill a live owner's run).
    assert!(
        c.at_gate(o),
        "the paused replica's playbook is still at the gate: {:?}",
        c.replicas[o].run_processes()
    );
    // What it sent before the pause (a request already on its way when SIGSTOP came has
    // landed by now, a lease later).
    let edits_by_o = c.discord.sent_by(&o_name).len();

    let resumed = Instant::now();
    c.replicas[o].resume();
    // It finds its lease gone and drops the job: its playbook is killed, while the new
    // owner's, behind the same closed gate, runs on.
    poll_until("the resumed replica's playbook processes to be gone", LONG, || {
        c.replicas[o].run_processes().is_empty().then_some(())
    })
    .await;
    let dropped = resumed.elapsed();
    c.replicas[o]
        .wait_log("stopped working on the job: its lease is gone", LONG)
        .await;
    assert!(c.at_gate(n), "the new owner's playbook runs on");
    // Its writes are refused by the store: its token is stale.
    let late = c
        .store
        .finish_and_release(1, o_token, JobState::Failed, "late result from the paused replica")
        .expect_err("a write with the old owner's token is refused");
    assert!(late.is_fenced(), "{late}");
    let late = c
        .store
        .set_progress(1, o_token, "late progress from the paused replica")
        .expect_err("a write with the old owner's token is refused");
    assert!(late.is_fenced(), "{late}");

    c.gate.open();
    let last = final_edit(&c).await;
    let done = poll_until("the job's end in the store", LONG, || {
        Some(c.job(1)).filter(|j| j.state.is_finished())
    })
    .await;

    // The store's result is the new owner's.
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}");
    assert_eq!(done.result.as_deref(), Some("commissioned argos-staging"));
    assert_eq!(done.owner, after.owner);
    assert!(done.token.unwrap() > o_token, "{done:#?}");
    assert!(done.progress.as_deref() != Some("late progress from the paused replica"));
    assert!(
        c.replicas[o].alive(),
        "the resumed replica lives on:\n{}",
        c.replicas[o].log()
    );
    assert_one_stack_one_image(&c.project).await;
    let all = assert_one_status_message(&c, &status);
    assert_eq!(last.message_id, status.message_id);
    assert_eq!(last.session.as_deref(), Some(n_name.as_str()));
    assert!(
        all.iter()
            .any(|m| m.session.as_deref() == Some(n_name.as_str()) && m.content.contains("picking it up again")),
        "{all:#?}"
    );
    let first_edit_by_n = all
        .iter()
        .find(|m| m.session.as_deref() == Some(n_name.as_str()))
        .map(|m| m.at.duration_since(paused));
    println!(
        "TIMING SIGSTOP: job taken over {taken_over:?}, first edit by the new owner {first_edit_by_n:?}, its playbook running again {running_again:?} after the pause; after SIGCONT the old playbook was gone in {dropped:?}"
    );
    // Not one request from the paused replica after SIGCONT.
    let from_o = c.discord.sent_by(&o_name);
    let late: Vec<String> = from_o
        .iter()
        .filter(|m| m.at >= resumed)
        .map(|m| {
            format!(
                "{:?} {:?} {} ms after SIGCONT: {:?}",
                m.kind,
                m.message_id,
                m.at.duration_since(resumed).as_millis(),
                m.content
            )
        })
        .collect();
    // What the new owner had shown just before the first late edit, if any.
    let overwritten = from_o.iter().find(|m| m.at >= resumed).and_then(|first| {
        all.iter()
            .rev()
            .find(|m| m.at < first.at && m.session.as_deref() == Some(n_name.as_str()))
            .map(|m| m.content.clone())
    });
    assert!(
        late.is_empty() && from_o.len() == edits_by_o,
        "the resumed replica edited the status message after SIGCONT ({} requests before, {} in all): {late:#?}\n\
         it overwrote the new owner's {overwritten:?}",
        edits_by_o,
        from_o.len()
    );
    c.assert_discord_clean();
}
