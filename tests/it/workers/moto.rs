//! On moto: a commission with workers creates their Auto Scaling group, moto drops the
//! template's lifecycle hooks, and the engine puts them; `status` shows the group.
use argos::engine;

use super::support::moto::Moto;
use super::support::{Recorder, TestProject};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commission_with_workers_leaves_their_group_with_both_lifecycle_hooks() {
    let moto = Moto::start().await;
    let project = TestProject::new(&moto.url, "");
    super::support::enable_workers(&project);
    let engine = project.engine().await;

    let mut rec = Recorder::new(&engine, "staging", None);
    let summary = engine::commission(&rec.ctx, &Default::default())
        .await
        .expect("commission succeeds");
    let group = summary
        .outputs
        .get("WorkerGroupName")
        .expect("the stack names its worker group")
        .clone();
    assert!(
        summary.details.contains(&format!(
            "lifecycle hook(s) argos-launch, argos-terminate put on {group}"
        )),
        "moto ignores LifecycleHookSpecificationList, so the engine put both: {summary:?}"
    );
    let hooks = engine
        .aws
        .autoscaling()
        .await
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(&group)
        .send()
        .await
        .unwrap();
    let mut found: Vec<(String, String, String, i32)> = hooks
        .lifecycle_hooks()
        .iter()
        .map(|h| {
            (
                h.lifecycle_hook_name().unwrap_or_default().to_string(),
                h.lifecycle_transition().unwrap_or_default().to_string(),
                h.default_result().unwrap_or_default().to_string(),
                h.heartbeat_timeout().unwrap_or_default(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (
                "argos-launch".to_string(),
                "autoscaling:EC2_INSTANCE_LAUNCHING".to_string(),
                "ABANDON".to_string(),
                900
            ),
            (
                "argos-terminate".to_string(),
                "autoscaling:EC2_INSTANCE_TERMINATING".to_string(),
                "CONTINUE".to_string(),
                900
            ),
        ]
    );

    // The lookout finds the group by its tags on moto too (one call per environment).
    let found = argos::cloud::workers::find(&engine.aws, "argos", "staging")
        .await
        .expect("DescribeAutoScalingGroups with tag filters")
        .expect("the group, by its tags");
    assert_eq!(found.name, group);
    assert!(argos::cloud::workers::find(&engine.aws, "argos", "sandbox")
        .await
        .unwrap()
        .is_none());

    // status reads the group; an update finds both hooks and puts none.
    let report = engine::status(&rec.ctx).await.expect("status");
    let workers = report.workers.as_ref().expect("the group in status");
    assert_eq!(workers.name, group);
    assert_eq!(workers.desired, 1);
    assert!(report.to_string().contains("workers: 1 desired, "), "{report}");
    let updated = engine::update(&rec.ctx, &Default::default(), &Default::default())
        .await
        .expect("update");
    assert!(
        !updated.details.iter().any(|d| d.starts_with("lifecycle hook(s)")),
        "{updated:?}"
    );
    drop(rec.events());
    drop(moto);
}
