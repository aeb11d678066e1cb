//! Decommission, clean, and a deploy refused for a role without hosts.
use super::*;

#[tokio::test]
async fn decommission_reports_delete_failed_resources() {
    let fake = fake().await;
    let project = project(&fake, None);
    let engine = project.engine().await;
    let rec = Recorder::new(&engine, "staging", None);
    fake.add_stack(STACK, TINY_TEMPLATE, &[], RESOURCES);
    fake.script_next_for(
        STACK,
        Op::Delete,
        StackScript::delete_failed(STACK, RESOURCES, "WebSecurityGroup", SG_DEPENDENCY_VIOLATION, &[1.0]),
    );
    fake.clear_calls();

    let err = engine::decommission(&rec.ctx).await.expect_err("delete fails");

    let Error::StackFailed(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.starts_with("stack argos-staging is DELETE_FAILED; resources left: WebSecurityGroup: Resource handler returned message: \"resource sg-0a1b2c3d4e5f67890 has a dependent object"),
        "{msg}"
    );
    assert!(msg.ends_with("then run decommission again"), "{msg}");
    assert_calls(
        &fake,
        &[
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStackResources",
            "DeleteStack",
            "DescribeStackEvents*",
        ],
    );
    assert_eq!(fake.stack_status(STACK).as_deref(), Some("DELETE_FAILED"));
}

#[tokio::test]
async fn decommission_of_a_missing_stack_is_a_no_op() {
    let fake = fake().await;
    let project = project(&fake, None);
    let engine = project.engine().await;
    let rec = Recorder::new(&engine, "staging", None);

    let summary = engine::decommission(&rec.ctx).await.expect("nothing to do");

    assert_eq!(
        summary.headline,
        "nothing to decommission: there is no stack argos-staging"
    );
    assert_eq!(fake.actions(), ["cloudformation:DescribeStacks"]);
}

#[tokio::test]
async fn clean_twice_removes_the_image_then_does_nothing() {
    let fake = fake().await;
    let project = project(&fake, None);
    let engine = project.engine().await;
    let rec = Recorder::new(&engine, "staging", None);
    let snapshot = Ec2Image::owned(IMAGE_ID, "argos-image", &[]).snapshot_ids[0].clone();
    fake.add_snapshot("snap-0unrelated0000001");

    let first = engine::clean(&rec.ctx).await.expect("clean");

    assert_eq!(first.headline, "cleaned 1 item(s)");
    assert_eq!(first.details, [format!("image {IMAGE_ID} with 1 snapshot(s)")]);
    assert_eq!(
        fake.actions(),
        [
            "cloudformation:DescribeStacks",
            "ec2:DescribeInstances",
            "ec2:DescribeImages",
            "ec2:DeregisterImage",
            "ec2:DeleteSnapshot",
        ]
    );
    assert_eq!(the_call(&fake, "DeregisterImage").params["ImageId"], IMAGE_ID);
    assert_eq!(the_call(&fake, "DeleteSnapshot").params["SnapshotId"], snapshot);
    assert!(fake.image_ids().is_empty());
    assert_eq!(fake.snapshot_ids(), ["snap-0unrelated0000001"]);

    fake.clear_calls();
    let second = engine::clean(&rec.ctx).await.expect("clean again");
    assert_eq!(
        second.headline,
        "nothing to clean: no image, build stack or build instance"
    );
    assert_eq!(
        fake.actions(),
        [
            "cloudformation:DescribeStacks",
            "ec2:DescribeInstances",
            "ec2:DescribeImages"
        ]
    );
}

#[tokio::test]
async fn deploy_refuses_a_role_without_running_hosts() {
    let fake = fake().await;
    add_hosts(&fake, &ROLES[..3]);
    fake.add_instance(
        Ec2Instance::running(
            "i-0stopped0collector1",
            &[("App", "argos"), ("Env", "staging"), ("Group", "collector")],
        )
        .with_state("stopped"),
    );
    let project = project(&fake, None);
    let engine = project.engine().await;
    let rec = Recorder::new(&engine, "staging", None);
    add_app_stack(&fake, &engine);
    fake.clear_calls();

    let err = engine::deploy(&rec.ctx, &[], &Default::default())
        .await
        .expect_err("collector has no host");

    let Error::Invalid(msg) = &err else { panic!("{err:?}") };
    assert_eq!(
        msg,
        "role 'collector' matched no running instance (tags App=argos, Env=staging, Group=collector, Name=argos-staging-collector): nothing would be configured"
    );
    assert_eq!(
        fake.actions(),
        ["cloudformation:DescribeStacks", "ec2:DescribeInstances"]
    );
    assert_eq!(
        hosts_written(&project),
        0,
        "no playbook ran, not even for the roles with hosts"
    );
    assert!(
        !project.dir.path().join("state/runs").exists(),
        "no playbook work directory was made"
    );
}
