//! `<env> scale workers=N` from chat: checked as `update`, a change set of `WorkerCount`, the
//! new workers configured by the scale job itself (it holds the lock the lookout would need),
//! a leaving worker drained, and the job's end once the group is whole.
use argos::store::JobState;

use super::support::fake_aws::Change;
use super::*;

fn group_change(fake: &FakeAws) {
    fake.set_change_set(
        STACK,
        vec![Change::modify(
            "WorkerAutoScalingGroup",
            "AWS::AutoScaling::AutoScalingGroup",
            "False",
            &["Properties"],
        )],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_from_chat_configures_the_new_workers_then_drains_the_one_let_go() {
    let (fake, project) = world(&[], "").await;
    let (bot, port) = bot(&project).await;
    record_deploy(bot.store());

    // Granted as update: a deployer may not, an updater may.
    let denied = bot.handle(said("bob", "staging scale workers=2")).await.unwrap();
    assert!(denied.contains("permission for update on staging"), "{denied}");
    assert!(
        fake.actions().iter().all(|a| !a.contains("ChangeSet")),
        "nothing was asked of AWS"
    );

    group_change(&fake);
    bot.handle(said("uma", "staging scale workers=2")).await;
    bot.idle().await;
    let job = bot.store().job(2).unwrap().unwrap();
    assert_eq!(job.action, "scale");
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(job.result.as_deref(), Some("scaled argos-staging to 2 worker(s)"));
    let states = fake.worker_states(GROUP);
    assert_eq!(states.len(), 2, "{states:?}");
    assert_eq!(fake.worker_desired(GROUP), 2);
    assert!(states.iter().all(|(_, s)| s == "InService"), "{states:?}");
    let answers = fake.lifecycle_answers();
    assert_eq!(answers.len(), 2, "{answers:?}");
    for (instance, _) in &states {
        assert!(
            answers
                .iter()
                .any(|a| &a.instance == instance && a.hook == "argos-launch" && a.result == "CONTINUE"),
            "{instance}: {answers:?}"
        );
        assert_eq!(
            configured(&project, instance).as_deref(),
            Some(format!("{DEPLOYED}\n").as_str())
        );
    }
    // The change set set WorkerCount, and only that.
    let created = fake
        .calls()
        .into_iter()
        .find(|c| c.action == "CreateChangeSet")
        .expect("a change set");
    assert!(
        created
            .params
            .iter()
            .any(|(k, v)| k.ends_with(".ParameterKey") && v == "WorkerCount"),
        "{created:?}"
    );
    let status = port
        .posted()
        .into_iter()
        .rev()
        .find_map(|p| match p {
            Posted::Edited { text, .. } if text.contains("scaled argos-staging") => Some(text),
            _ => None,
        })
        .expect("the job's final status");
    for (instance, _) in &states {
        assert!(
            status.contains(&format!(
                "worker {instance} configured at main @ 4f2a9c1e and in service"
            )),
            "{status}"
        );
    }

    // Down to one: the newest leaves through its termination hook, drained first.
    group_change(&fake);
    bot.handle(said("alice", "staging scale workers=1")).await;
    bot.idle().await;
    let job = bot.store().job(3).unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let left = &states[1].0;
    assert_eq!(fake.worker_states(GROUP), [states[0].clone()]);
    assert!(host_file(&project, left, "drained").exists());
    assert_eq!(
        fake.lifecycle_answers()
            .last()
            .map(|a| (a.instance.as_str(), a.hook.as_str(), a.result.as_str())),
        Some((left.as_str(), "argos-terminate", "CONTINUE"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_refuses_a_bad_count_before_anything_runs() {
    let (fake, project) = world(&[], "").await;
    let (bot, _port) = bot(&project).await;
    for (text, says) in [
        (
            "staging scale workers=21",
            "'21' is not a number of workers from 0 to 20",
        ),
        ("staging scale", "`scale` needs the number of workers: `workers=N`"),
        ("staging scale api=2", "`scale` changes workers only"),
        ("staging scale workers=2 workers=3", "`scale` takes only workers=N"),
    ] {
        let reply = bot.handle(said("alice", text)).await.unwrap();
        assert!(reply.contains(says), "{text}: {reply}");
        assert!(reply.contains("usage: <env> scale workers=<n>"), "{text}: {reply}");
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.actions());
    assert!(bot.store().job(1).unwrap().is_none());
}

/// An update of a stack with workers answers the workers that wait while its change set runs:
/// it holds the lock the lookout would need, and CloudFormation may wait for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_answers_the_workers_waiting_while_its_change_set_runs() {
    let (fake, project) = world(&[], "").await;
    let config = std::fs::read_to_string(&project.config_path).unwrap();
    std::fs::write(
        &project.config_path,
        config.replacen("ansible:\n", "ansible:\n  roles: [worker]\n", 1),
    )
    .unwrap();
    let engine = project.engine().await;
    fake.launch_worker(GROUP, "i-0ddd0000000000aa");
    group_change(&fake);

    let rec = support::Recorder::new(&engine, "staging", None);
    let summary = argos::engine::update(&rec.ctx, &Default::default(), &Default::default())
        .await
        .expect("update");
    assert!(
        summary
            .details
            .contains(&"worker i-0ddd0000000000aa configured and in service".to_string()),
        "{summary:?}"
    );
    let answers = fake.lifecycle_answers();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(
        (answers[0].instance.as_str(), answers[0].result.as_str()),
        ("i-0ddd0000000000aa", "CONTINUE")
    );
    let executed = fake
        .calls()
        .iter()
        .position(|c| c.action == "ExecuteChangeSet")
        .unwrap();
    let completed = fake
        .calls()
        .iter()
        .position(|c| c.action == "CompleteLifecycleAction")
        .unwrap();
    assert!(completed > executed, "answered while the change set ran");
    // Then the deploy configured the worker role on it too: it is one of the running workers.
    assert_eq!(summary.hosts.len(), 1, "{summary:?}");
}
