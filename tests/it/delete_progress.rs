//! The progress of a delete on the scripted fake AWS: it counts the resources the delete
//! removes and ends at n/n when the stack is gone, however many resource events came (moto
//! reports a delete with stack events only; a retried delete touches only what is left).
use crate::support;

use argos::engine;
use argos::progress::Progress;
use support::fake_aws::*;
use support::{Recorder, TestProject};

const TEMPLATE: &str =
    r#"{"Resources":{"WebSecurityGroup":{"Type":"AWS::EC2::SecurityGroup","Properties":{"GroupDescription":"web"}}}}"#;

const RESOURCES: &[(&str, &str)] = &[
    ("WebSecurityGroup", "AWS::EC2::SecurityGroup"),
    ("DatabaseSecurityGroup", "AWS::EC2::SecurityGroup"),
    ("Database", "AWS::RDS::DBInstance"),
    ("ApiInstance", "AWS::EC2::Instance"),
    ("FrontInstance", "AWS::EC2::Instance"),
];

const SG_DEPENDENCY_VIOLATION: &str = "resource sg-0a1b2c3d4e5f67890 has a dependent object";

/// (done, total) of every progress event of the stack.
fn progress(events: &[Progress], of: &str) -> Vec<(usize, usize)> {
    events
        .iter()
        .filter_map(|p| match p {
            Progress::StackProgress { stack, done, total } if stack == of => Some((*done, *total)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_last_progress_of_a_delete_is_n_of_n() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(200.0);
    let project = TestProject::new(&fake.endpoint_url(), "");
    let engine = project.engine().await;

    // Every resource reports its delete.
    fake.add_stack("argos-staging", TEMPLATE, &[], RESOURCES);
    fake.script_next_for(
        "argos-staging",
        Op::Delete,
        StackScript::delete_success("argos-staging", RESOURCES, &[1.0]),
    );
    let mut rec = Recorder::new(&engine, "staging", None);
    engine::decommission(&rec.ctx).await.expect("deleted");
    let seen = progress(&rec.events(), "argos-staging");
    assert_eq!(seen.last(), Some(&(5, 5)), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "never goes back: {seen:?}");

    // Only the stack reports (as moto does): gone is gone, all 5 resources with it.
    fake.add_stack("argos-sandbox", TEMPLATE, &[], RESOURCES);
    fake.script_next_for(
        "argos-sandbox",
        Op::Delete,
        StackScript::new("argos-sandbox")
            .stack_event(0.0, "DELETE_IN_PROGRESS", Some("User Initiated"))
            .stack_event(2.0, "DELETE_COMPLETE", None),
    );
    let mut rec = Recorder::new(&engine, "sandbox", None);
    engine::decommission(&rec.ctx).await.expect("deleted");
    assert_eq!(progress(&rec.events(), "argos-sandbox").last(), Some(&(5, 5)));
}

#[tokio::test]
async fn a_retried_delete_counts_what_is_left() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(200.0);
    let project = TestProject::new(&fake.endpoint_url(), "");
    let engine = project.engine().await;
    fake.add_stack("argos-staging", TEMPLATE, &[], RESOURCES);
    // The first delete removes four resources, then the security group fails.
    fake.script_next_for(
        "argos-staging",
        Op::Delete,
        StackScript::delete_failed(
            "argos-staging",
            RESOURCES,
            "WebSecurityGroup",
            SG_DEPENDENCY_VIOLATION,
            &[1.0],
        ),
    );
    let mut rec = Recorder::new(&engine, "staging", None);
    engine::decommission(&rec.ctx).await.expect_err("DELETE_FAILED");
    let first = progress(&rec.events(), "argos-staging");
    assert_eq!(
        first.last(),
        Some(&(5, 5)),
        "every resource settled, one failed: {first:?}"
    );

    // The retry deletes the one resource left (the fake's own delete of what is live).
    let mut rec = Recorder::new(&engine, "staging", None);
    engine::decommission(&rec.ctx).await.expect("deleted");
    let retry = progress(&rec.events(), "argos-staging");
    assert_eq!(retry.last(), Some(&(1, 1)), "{retry:?}");
    assert_eq!(fake.stack_status("argos-staging"), None);
}
