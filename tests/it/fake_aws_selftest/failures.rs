//! Failures, rollbacks and deletes; template validation.
use super::*;

#[tokio::test]
async fn failures_rollbacks_and_deletes() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(1000.0);
    fake.script_next(
        Op::Create,
        StackScript::create_failed_with_cascade(
            "x",
            RESOURCES,
            "WebServerInstance",
            EC2_UNSUPPORTED_CONFIGURATION,
            &[1.0],
        ),
    );
    let cfn = cfn_client(&fake).await;
    cfn.create_stack()
        .stack_name("broken")
        .template_body("{}")
        .send()
        .await
        .expect("create");
    let s = wait_for(&cfn, "broken", StackStatus::RollbackComplete).await;
    assert_eq!(s.stack_status_reason(), None);
    let events: Vec<_> = cfn
        .describe_stack_events()
        .stack_name("broken")
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("events");
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.resource_status() == Some(&ResourceStatus::CreateFailed))
        .collect();
    assert_eq!(failed.len(), 2);
    let first_real = failed
        .iter()
        .rev()
        .find(|e| e.resource_status_reason() != Some(CANCELLED_REASON))
        .expect("real failure");
    assert_eq!(first_real.logical_resource_id(), Some("WebServerInstance"));
    assert!(first_real
        .resource_status_reason()
        .is_some_and(|r| r.contains("(Service: Ec2, Status Code: 400")));
    let rollback = events
        .iter()
        .find(|e| e.resource_status() == Some(&ResourceStatus::RollbackInProgress))
        .expect("rollback");
    assert_eq!(
        rollback.resource_status_reason(),
        Some("The following resource(s) failed to create: [WebServerEIP, WebServerInstance]. Rollback requested by user.")
    );
    let res = cfn
        .describe_stack_resources()
        .stack_name("broken")
        .send()
        .await
        .expect("resources");
    assert!(res
        .stack_resources()
        .iter()
        .all(|r| r.resource_status() == Some(&ResourceStatus::DeleteComplete)));
    let e = cfn
        .update_stack()
        .stack_name("broken")
        .use_previous_template(true)
        .send()
        .await
        .expect_err("not updatable");
    assert!(e
        .message()
        .is_some_and(|m| m.contains("is in ROLLBACK_COMPLETE state and can not be updated.")));

    // Update rollback, then the "no updates" answer, then a failing delete.
    let id = fake.add_stack("app", TEMPLATE, &[("Size", "t3.micro")], RESOURCES);
    let e = cfn
        .update_stack()
        .stack_name("app")
        .use_previous_template(true)
        .parameters(prev_size())
        .send()
        .await
        .expect_err("no updates");
    assert_eq!(e.message(), Some("No updates are to be performed."));
    fake.script_next(
        Op::Update,
        StackScript::update_rollback(
            "app",
            RESOURCES,
            "WebServerInstance",
            "Instance failed to stabilize",
            &[1.0],
        ),
    );
    cfn.update_stack()
        .stack_name("app")
        .use_previous_template(true)
        .parameters(prev_size())
        .send()
        .await
        .expect("update");
    let s = wait_for(&cfn, "app", StackStatus::UpdateRollbackComplete).await;
    assert!(s.last_updated_time().is_some());
    let events = cfn
        .describe_stack_events()
        .stack_name("app")
        .send()
        .await
        .expect("events");
    let own: Vec<_> = events
        .stack_events()
        .iter()
        .filter(|e| e.logical_resource_id() == Some("app"))
        .map(|e| e.resource_status().map(|s| s.as_str().to_string()).unwrap_or_default())
        .collect();
    assert_eq!(
        &own[..5],
        [
            "UPDATE_ROLLBACK_COMPLETE",
            "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
            "UPDATE_ROLLBACK_IN_PROGRESS",
            "UPDATE_IN_PROGRESS",
            "CREATE_COMPLETE"
        ]
    );
    fake.script_next(
        Op::Delete,
        StackScript::delete_failed(
            "app",
            RESOURCES,
            "DatabaseSecurityGroup",
            SG_DEPENDENCY_VIOLATION,
            &[0.5],
        ),
    );
    cfn.delete_stack().stack_name("app").send().await.expect("delete");
    let s = wait_for(&cfn, "app", StackStatus::DeleteFailed).await;
    assert_eq!(
        s.stack_status_reason(),
        Some("The following resource(s) failed to delete: [DatabaseSecurityGroup]. ")
    );
    assert!(s.deletion_time().is_some());

    // A successful delete (default script) by name; then by name it is gone, by id DELETE_COMPLETE.
    cfn.delete_stack().stack_name("app").send().await.expect("delete again");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let e = loop {
        match cfn.describe_stacks().stack_name("app").send().await {
            Err(e) => break e,
            Ok(_) => {
                assert!(tokio::time::Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    assert_eq!(e.code(), Some("ValidationError"));
    assert_eq!(e.message(), Some("Stack with id app does not exist"));
    let by_id = cfn.describe_stacks().stack_name(&id).send().await.expect("by id");
    assert_eq!(by_id.stacks()[0].stack_status(), Some(&StackStatus::DeleteComplete));
    let ev = cfn
        .describe_stack_events()
        .stack_name(&id)
        .send()
        .await
        .expect("events by id");
    assert_eq!(
        ev.stack_events()[0].resource_status(),
        Some(&ResourceStatus::DeleteComplete)
    );
    let e = cfn
        .describe_stack_events()
        .stack_name("app")
        .send()
        .await
        .expect_err("by name");
    assert_eq!(e.message(), Some("Stack [app] does not exist"));
    cfn.delete_stack()
        .stack_name("app")
        .send()
        .await
        .expect("deleting a missing stack succeeds");
    assert!(cfn
        .describe_stacks()
        .send()
        .await
        .expect("list")
        .stacks()
        .iter()
        .all(|s| s.stack_name() != Some("app")));

    // Cancel an update.
    fake.set_time_scale(10.0);
    fake.add_stack("slowupd", TEMPLATE, &[("Size", "t3.micro")], RESOURCES);
    fake.script_next(
        Op::Update,
        StackScript::update_with_cleanup("slowupd", RESOURCES, &[], &[100.0]),
    );
    cfn.update_stack()
        .stack_name("slowupd")
        .use_previous_template(true)
        .parameters(prev_size())
        .send()
        .await
        .expect("update");
    cfn.cancel_update_stack()
        .stack_name("slowupd")
        .send()
        .await
        .expect("cancel");
    fake.set_time_scale(1000.0);
    wait_for(&cfn, "slowupd", StackStatus::UpdateRollbackComplete).await;
    let e = cfn
        .cancel_update_stack()
        .stack_name("slowupd")
        .send()
        .await
        .expect_err("not updating");
    assert_eq!(e.code(), Some("ValidationError"));
}

#[tokio::test]
async fn template_validation() {
    let fake = FakeAws::start().await;
    let cfn = cfn_client(&fake).await;
    let v = cfn
        .validate_template()
        .template_body(TEMPLATE)
        .send()
        .await
        .expect("validate");
    let keys: Vec<_> = v
        .parameters()
        .iter()
        .map(|p| (p.parameter_key().unwrap_or(""), p.default_value()))
        .collect();
    assert_eq!(keys, vec![("Env", Some("dev")), ("Size", None)]);
    assert_eq!(v.parameters()[0].description(), Some("environment"));
    assert_eq!(v.parameters()[0].no_echo(), Some(false));
    assert_eq!(v.description(), Some("argos test"));
    let e = cfn
        .validate_template()
        .template_body("{ nope")
        .send()
        .await
        .expect_err("bad json");
    assert!(e
        .message()
        .is_some_and(|m| m.starts_with("Template format error: JSON not well-formed.")));
    let iam = r#"{"Resources":{"Role":{"Type":"AWS::IAM::Role","Properties":{"RoleName":"x"}}}}"#;
    let v = cfn
        .validate_template()
        .template_body(iam)
        .send()
        .await
        .expect("validate");
    assert_eq!(v.capabilities(), &[Capability::CapabilityNamedIam]);
    assert_eq!(
        v.capabilities_reason(),
        Some("The following resource(s) require capabilities: [AWS::IAM::Role]")
    );
    let e = cfn
        .create_stack()
        .stack_name("iam")
        .template_body(iam)
        .send()
        .await
        .expect_err("caps");
    assert!(e
        .as_service_error()
        .is_some_and(|s| s.is_insufficient_capabilities_exception()));
    let e = cfn
        .create_stack()
        .stack_name("p")
        .template_body(TEMPLATE)
        .send()
        .await
        .expect_err("missing param");
    assert_eq!(e.message(), Some("Parameters: [Size] must have values"));
    let e = cfn
        .create_stack()
        .stack_name("1bad")
        .template_body(TEMPLATE)
        .send()
        .await
        .expect_err("bad name");
    assert_eq!(e.code(), Some("ValidationError"));
}
