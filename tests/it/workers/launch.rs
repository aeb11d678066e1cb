//! A new worker waiting in `Pending:Wait` is configured by a `lifecycle` job and let into
//! service once: failures abandon it with the reason, slow playbooks keep the hook alive with
//! heartbeats, a busy environment makes it wait, and neither two replicas nor a takeover
//! configure it twice.
use std::time::{Duration, Instant};

use argos::bot::replica::Replica;
use argos::command::Action;
use argos::store::{JobState, StartOutcome, Store};

use super::support::fake_aws::autoscaling::LifecycleAnswer;
use super::support::replicas::poll_until;
use super::*;

fn answer(instance: &str, hook: &str, result: &str) -> LifecycleAnswer {
    LifecycleAnswer {
        instance: instance.into(),
        hook: hook.into(),
        result: result.into(),
    }
}

fn states(fake: &FakeAws) -> Vec<(String, String)> {
    fake.worker_states(GROUP)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_is_configured_at_the_deployed_commit_continued_and_announced_once() {
    let (fake, project) = world(&[], "").await;
    let (bot, port) = bot(&project).await;
    record_deploy(bot.store());
    bot.resume_unfinished().await;
    fake.launch_worker(GROUP, "i-0aaa000000000001");
    assert_eq!(
        states(&fake),
        [("i-0aaa000000000001".to_string(), "Pending:Wait".to_string())]
    );

    let started = bot.workers_round().await;
    assert_eq!(started.len(), 1, "one lifecycle job");
    let job = ended(bot.store(), started[0]).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(job.action, "lifecycle");
    assert_eq!(job.requester_name, "argos");
    assert_eq!(
        job.result.as_deref(),
        Some("worker i-0aaa000000000001 configured at main @ 4f2a9c1e and in service")
    );
    // The worker role ran on the new worker alone, at the deployed commit.
    assert_eq!(
        configured(&project, "i-0aaa000000000001").as_deref(),
        Some(format!("{DEPLOYED}\n").as_str())
    );
    assert_eq!(
        fake.lifecycle_answers(),
        [answer("i-0aaa000000000001", "argos-launch", "CONTINUE")]
    );
    assert_eq!(
        states(&fake),
        [("i-0aaa000000000001".to_string(), "InService".to_string())]
    );
    // Not a deploy: history still shows the deploy only.
    assert_eq!(bot.store().deploys("staging", 10).unwrap().len(), 1);

    // One line in the announce channel.
    let line = "🧩 **staging** worker i-0aaa000000000001 configured at main @ 4f2a9c1e and in service · job #2";
    poll_until("the announcement", LONG, || {
        sent(&port).iter().any(|t| t == line).then_some(())
    })
    .await;

    // What it cost on AWS, heartbeats aside: the lookout's look at each environment (sandbox,
    // staging), the job's own look under the lock, the worker's address, the stack's outputs,
    // the answer.
    let calls: Vec<String> = fake
        .actions()
        .into_iter()
        .filter(|a| !a.ends_with("RecordLifecycleActionHeartbeat"))
        .collect();
    assert_eq!(
        calls,
        [
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeAutoScalingGroups",
            "ec2:DescribeInstances",
            "cloudformation:DescribeStacks",
            "autoscaling:CompleteLifecycleAction",
        ]
    );

    // Nothing waits any more: the next round starts nothing and answers nothing, for one call
    // per environment.
    fake.clear_calls();
    assert!(bot.workers_round().await.is_empty());
    assert_eq!(
        fake.actions(),
        [
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeAutoScalingGroups"
        ]
    );
    assert!(fake.lifecycle_answers().is_empty(), "no second answer");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sent(&port).iter().filter(|t| t.contains("i-0aaa000000000001")).count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_playbook_abandons_the_worker_with_the_reason() {
    let (fake, project) = world(&[("worker_fail", "yes")], "").await;
    let (bot, port) = bot(&project).await;
    bot.resume_unfinished().await;
    fake.launch_worker(GROUP, "i-0bbb000000000001");

    let started = bot.workers_round().await;
    let job = ended(bot.store(), started[0]).await;
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let result = job.result.unwrap_or_default();
    assert!(
        result.starts_with("worker i-0bbb000000000001 abandoned (the group replaces it): ")
            && result.contains("the worker settings are incomplete"),
        "{result}"
    );
    assert_eq!(
        fake.lifecycle_answers(),
        [answer("i-0bbb000000000001", "argos-launch", "ABANDON")]
    );
    // The group let it go; the playbook never got to record anything.
    assert!(states(&fake).is_empty(), "{:?}", states(&fake));
    assert_eq!(configured(&project, "i-0bbb000000000001"), None);
    poll_until("the announcement with the reason", LONG, || {
        sent(&port)
            .into_iter()
            .find(|t| t.starts_with("⚠️ **staging** worker i-0bbb000000000001 abandoned"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_the_hook_alive_while_a_slow_playbook_runs() {
    let (fake, project) = world(&[("worker_sleep", "4")], "").await;
    let (bot, _port) = bot(&project).await;
    fake.launch_worker(GROUP, "i-0ccc000000000001");

    let began = Instant::now();
    let started = bot.workers_round().await;
    let job = ended(bot.store(), started[0]).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let beats = fake.heartbeats("i-0ccc000000000001");
    // One a second (workers.heartbeat_secs: 1) through a playbook of at least 4 s.
    assert!(
        beats.len() >= 3,
        "{} heartbeat(s) in {:?}",
        beats.len(),
        began.elapsed()
    );
    let completed = fake
        .calls()
        .into_iter()
        .find(|c| c.action == "CompleteLifecycleAction")
        .expect("completed");
    assert!(
        beats.iter().all(|b| *b < completed.at),
        "every heartbeat came before the answer"
    );
    assert_eq!(
        fake.lifecycle_answers(),
        [answer("i-0ccc000000000001", "argos-launch", "CONTINUE")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_while_another_job_holds_the_environment_waits_then_is_configured_once() {
    let (fake, project) = world(&[], "").await;
    let (bot, _port) = bot(&project).await;
    let store = Store::open(&project.config().database_path()).unwrap();
    // Another replica runs a deploy on staging (its heartbeat keeps the lease).
    let other = std::sync::Arc::new(Replica::register(store.clone(), "bot", &[], lease()).unwrap());
    other.spawn_heartbeat();
    let deploy = new_job(
        "deploy",
        &Action::Deploy {
            roles: vec![],
            version: Default::default(),
        }
        .stored_args(),
        "bob",
    );
    let StartOutcome::Started { id, token } = store.start_job(&deploy, &other.id, lease()).unwrap() else {
        panic!("staging is free");
    };
    let _held = other.hold(id, "staging", token, Instant::now());
    fake.launch_worker(GROUP, "i-0ddd000000000001");

    assert!(
        bot.workers_round().await.is_empty(),
        "staging is busy: no lifecycle job"
    );
    // The waiting worker's hook is kept alive meanwhile, and nothing answers it.
    poll_until("a heartbeat for the waiting worker", LONG, || {
        (!fake.heartbeats("i-0ddd000000000001").is_empty()).then_some(())
    })
    .await;
    assert!(fake.lifecycle_answers().is_empty());
    assert_eq!(configured(&project, "i-0ddd000000000001"), None);

    store
        .finish_and_release(id, token, JobState::Succeeded, "deployed")
        .unwrap();
    other.release(id);
    let started = bot.workers_round().await;
    assert_eq!(started.len(), 1);
    ended(bot.store(), started[0]).await;
    assert_eq!(
        fake.lifecycle_answers(),
        [answer("i-0ddd000000000001", "argos-launch", "CONTINUE")]
    );
    assert!(configured(&project, "i-0ddd000000000001").is_some());
    other.retire();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_launches_seen_by_two_replicas_are_each_configured_once() {
    let (fake, project) = world(&[("worker_sleep", "1")], "").await;
    let (a, _) = bot(&project).await;
    let (b, _) = bot(&project).await;
    fake.launch_worker(GROUP, "i-0eee000000000001");
    fake.launch_worker(GROUP, "i-0eee000000000002");

    let (from_a, from_b) = tokio::join!(a.workers_round(), b.workers_round());
    let jobs: Vec<u64> = from_a.iter().chain(&from_b).copied().collect();
    assert_eq!(jobs.len(), 1, "one replica got staging's lock: {from_a:?} {from_b:?}");
    let job = ended(a.store(), jobs[0]).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    // Both looked again: nothing waits, nothing is started.
    let (again_a, again_b) = tokio::join!(a.workers_round(), b.workers_round());
    assert!(again_a.is_empty() && again_b.is_empty());
    let mut answers = fake.lifecycle_answers();
    answers.sort_by(|x, y| x.instance.cmp(&y.instance));
    assert_eq!(
        answers,
        [
            answer("i-0eee000000000001", "argos-launch", "CONTINUE"),
            answer("i-0eee000000000002", "argos-launch", "CONTINUE"),
        ]
    );
    for i in ["i-0eee000000000001", "i-0eee000000000002"] {
        assert_eq!(
            configured(&project, i).as_deref(),
            Some("none\n"),
            "{i}: once, no deploy on record"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_died_between_the_launch_and_its_answer_is_taken_over_and_the_worker_configured_once() {
    let (fake, project) = world(&[], "").await;
    let store = Store::open(&project.config().database_path()).unwrap();
    fake.launch_worker(GROUP, "i-0fff000000000001");
    // A replica took the launch (its lifecycle job holds staging) and died before answering:
    // no heartbeat renews its lease.
    let dead = Replica::register(store.clone(), "bot", &[], lease()).unwrap();
    let mut job = new_job("lifecycle", &Action::Lifecycle.stored_args(), "argos");
    job.platform = argos::address::Surface::Cli;
    job.channel = "cli:elsewhere".into();
    let StartOutcome::Started { id: dead_job, .. } = store.start_job(&job, &dead.id, lease()).unwrap() else {
        panic!("staging is free");
    };

    let (bot, port) = bot(&project).await;
    bot.resume_unfinished().await;
    // Its lease runs out; a round of this replica ends that job, and the next lookout round
    // answers the worker, which still waited.
    let ended_job = ended(bot.store(), dead_job).await;
    assert_eq!(ended_job.state, JobState::Interrupted);
    assert!(
        ended_job
            .result
            .as_deref()
            .unwrap_or_default()
            .contains("the next round answers them"),
        "{ended_job:?}"
    );
    let deadline = Instant::now() + LONG;
    let started = loop {
        let ids = bot.workers_round().await;
        if !ids.is_empty() {
            break ids;
        }
        assert!(Instant::now() < deadline, "no lifecycle job started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let job = ended(bot.store(), started[0]).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(
        fake.lifecycle_answers(),
        [answer("i-0fff000000000001", "argos-launch", "CONTINUE")]
    );
    assert!(configured(&project, "i-0fff000000000001").is_some());
    // The interrupted job announces nothing; the configured worker one line.
    poll_until("the announcement", LONG, || {
        sent(&port)
            .iter()
            .any(|t| t.contains("worker i-0fff000000000001 configured"))
            .then_some(())
    })
    .await;
    assert!(
        !sent(&port).iter().any(|t| t.contains(&format!("job #{dead_job}"))),
        "{:?}",
        sent(&port)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_worker_is_drained_let_go_and_no_longer_listed() {
    let (fake, project) = world(&[], "").await;
    let (bot, _port) = bot(&project).await;
    fake.launch_worker(GROUP, "i-0abc000000000001");
    fake.launch_worker(GROUP, "i-0abc000000000002");
    let first = bot.workers_round().await;
    ended(bot.store(), first[0]).await;

    fake.terminate_worker(GROUP, "i-0abc000000000002");
    let status = bot.handle(said("alice", "staging status")).await.unwrap();
    assert!(status.contains("workers: 1 desired, 1 in service"), "{status}");
    assert!(
        !status.contains("i-0abc000000000002"),
        "a leaving worker is not listed: {status}"
    );
    assert!(status.contains("i-0abc000000000001"), "{status}");

    let second = bot.workers_round().await;
    let job = ended(bot.store(), second[0]).await;
    assert_eq!(
        job.result.as_deref(),
        Some("worker i-0abc000000000002 drained and let go")
    );
    assert!(host_file(&project, "i-0abc000000000002", "drained").exists());
    assert_eq!(
        fake.lifecycle_answers().last(),
        Some(&answer("i-0abc000000000002", "argos-terminate", "CONTINUE"))
    );
    assert_eq!(
        states(&fake),
        [("i-0abc000000000001".to_string(), "InService".to_string())]
    );
}
