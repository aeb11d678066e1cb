//! Change sets with and without changes, executed and deleted.
use super::*;

#[tokio::test]
async fn change_sets_with_and_without_changes() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(1000.0);
    fake.add_stack(
        "cs",
        TEMPLATE,
        &[("Size", "t3.micro")],
        &[
            ("WebSecurityGroup", "AWS::EC2::SecurityGroup"),
            ("WebServerInstance", "AWS::EC2::Instance"),
        ],
    );
    let cfn = cfn_client(&fake).await;
    // Explicit changes.
    fake.set_change_set(
        "cs",
        vec![
            Change::modify("WebServerInstance", "AWS::EC2::Instance", "True", &["Properties"]),
            Change::add("DataVolume", "AWS::EC2::Volume"),
            Change::remove("WebSecurityGroup", "AWS::EC2::SecurityGroup"),
        ],
    );
    let created = cfn
        .create_change_set()
        .stack_name("cs")
        .change_set_name("argos-1")
        .change_set_type(ChangeSetType::Update)
        .use_previous_template(true)
        .parameters(
            Parameter::builder()
                .parameter_key("Size")
                .use_previous_value(true)
                .build(),
        )
        .capabilities(Capability::CapabilityIam)
        .send()
        .await
        .expect("create cs");
    let cs_id = created.id().expect("id").to_string();
    assert!(cs_id.starts_with("arn:aws:cloudformation:us-east-1:123456789012:changeSet/argos-1/"));
    assert!(created.stack_id().is_some_and(|s| s.contains(":stack/cs/")));
    let first = cfn
        .describe_change_set()
        .change_set_name(&cs_id)
        .send()
        .await
        .expect("describe");
    // Still being created, or (on a slow, loaded machine) already ready.
    assert!(
        matches!(
            first.execution_status(),
            Some(ExecutionStatus::Unavailable) | Some(ExecutionStatus::Available)
        ),
        "{:?}",
        first.execution_status()
    );
    let d = loop {
        let d = cfn
            .describe_change_set()
            .change_set_name("argos-1")
            .stack_name("cs")
            .send()
            .await
            .expect("describe");
        if d.status() == Some(&ChangeSetStatus::CreateComplete) {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    assert_eq!(d.execution_status(), Some(&ExecutionStatus::Available));
    assert_eq!(d.change_set_name(), Some("argos-1"));
    assert_eq!(d.change_set_id(), Some(cs_id.as_str()));
    assert_eq!(d.stack_name(), Some("cs"));
    assert_eq!(d.capabilities(), &[Capability::CapabilityIam]);
    let changes: Vec<_> = d
        .changes()
        .iter()
        .map(|c| {
            assert_eq!(c.r#type().map(|t| t.as_str()), Some("Resource"));
            let rc = c.resource_change().expect("resource change");
            (
                rc.action().map(|a| a.as_str().to_string()),
                rc.logical_resource_id().map(str::to_string),
                rc.resource_type().map(str::to_string),
                rc.replacement().map(|r| r.as_str().to_string()),
                rc.scope().iter().map(|s| s.as_str().to_string()).collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        changes[0],
        (
            Some("Modify".into()),
            Some("WebServerInstance".into()),
            Some("AWS::EC2::Instance".into()),
            Some("True".into()),
            vec!["Properties".to_string()]
        )
    );
    assert_eq!(changes[1].0.as_deref(), Some("Add"));
    assert_eq!(changes[2].0.as_deref(), Some("Remove"));
    cfn.execute_change_set()
        .change_set_name(&cs_id)
        .client_request_token("tok-exec")
        .send()
        .await
        .expect("execute");
    let s = wait_for(&cfn, "cs", StackStatus::UpdateComplete).await;
    assert!(s.last_updated_time().is_some());
    let d = cfn
        .describe_change_set()
        .change_set_name(&cs_id)
        .send()
        .await
        .expect("describe");
    assert_eq!(d.execution_status(), Some(&ExecutionStatus::ExecuteComplete));
    let events = cfn
        .describe_stack_events()
        .stack_name("cs")
        .send()
        .await
        .expect("events");
    let statuses: Vec<_> = events
        .stack_events()
        .iter()
        .filter(|e| e.client_request_token() == Some("tok-exec"))
        .map(|e| {
            format!(
                "{}:{}",
                e.logical_resource_id().unwrap_or(""),
                e.resource_status().map(|s| s.as_str()).unwrap_or("")
            )
        })
        .collect();
    assert_eq!(statuses.first().map(String::as_str), Some("cs:UPDATE_COMPLETE"));
    assert!(statuses.contains(&"cs:UPDATE_COMPLETE_CLEANUP_IN_PROGRESS".to_string()));
    assert!(statuses.contains(&"WebSecurityGroup:DELETE_COMPLETE".to_string()));
    assert!(statuses.contains(&"DataVolume:CREATE_COMPLETE".to_string()));
    assert!(statuses.contains(&"WebServerInstance:UPDATE_COMPLETE".to_string()));

    // Scripted no-change case.
    fake.no_changes("cs");
    cfn.create_change_set()
        .stack_name("cs")
        .change_set_name("argos-2")
        .use_previous_template(true)
        .parameters(prev_size())
        .send()
        .await
        .expect("create");
    let d = loop {
        let d = cfn
            .describe_change_set()
            .change_set_name("argos-2")
            .stack_name("cs")
            .send()
            .await
            .expect("describe");
        if d.status() == Some(&ChangeSetStatus::Failed) {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    assert_eq!(d.status_reason(), Some(NO_CHANGES_REASON));
    assert_eq!(d.execution_status(), Some(&ExecutionStatus::Unavailable));
    assert!(d.changes().is_empty());
    let e = cfn
        .execute_change_set()
        .change_set_name("argos-2")
        .stack_name("cs")
        .send()
        .await
        .expect_err("not executable");
    assert_eq!(e.code(), Some("InvalidChangeSetStatus"));
    cfn.delete_change_set()
        .change_set_name("argos-2")
        .stack_name("cs")
        .send()
        .await
        .expect("delete cs");
    let e = cfn
        .describe_change_set()
        .change_set_name("argos-2")
        .stack_name("cs")
        .send()
        .await
        .expect_err("gone");
    assert!(
        e.as_service_error()
            .is_some_and(|s| s.is_change_set_not_found_exception()),
        "{e:?}"
    );

    // Computed no-change case: same template and parameters.
    cfn.create_change_set()
        .stack_name("cs")
        .change_set_name("argos-3")
        .use_previous_template(true)
        .parameters(
            Parameter::builder()
                .parameter_key("Size")
                .use_previous_value(true)
                .build(),
        )
        .send()
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let d = cfn
        .describe_change_set()
        .change_set_name("argos-3")
        .stack_name("cs")
        .send()
        .await
        .expect("describe");
    assert_eq!(d.status(), Some(&ChangeSetStatus::Failed));
    // Computed change from a new template.
    let new_template = TEMPLATE.replace("\"Default\":\"dev\"", "\"Default\":\"prod\"");
    cfn.create_change_set()
        .stack_name("cs")
        .change_set_name("argos-4")
        .template_body(new_template)
        .parameters(
            Parameter::builder()
                .parameter_key("Size")
                .use_previous_value(true)
                .build(),
        )
        .send()
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let d = cfn
        .describe_change_set()
        .change_set_name("argos-4")
        .stack_name("cs")
        .send()
        .await
        .expect("describe");
    assert_eq!(d.status(), Some(&ChangeSetStatus::CreateComplete));
    let rc = d.changes()[0].resource_change().expect("rc");
    assert_eq!(rc.logical_resource_id(), Some("WebSecurityGroup"));
    assert_eq!(rc.replacement().map(|r| r.as_str()), Some("Conditional"));
    // A CREATE change set makes a REVIEW_IN_PROGRESS stack.
    cfn.create_change_set()
        .stack_name("fresh")
        .change_set_name("c1")
        .change_set_type(ChangeSetType::Create)
        .template_body(TEMPLATE)
        .parameters(
            Parameter::builder()
                .parameter_key("Size")
                .parameter_value("t3.nano")
                .build(),
        )
        .send()
        .await
        .expect("create");
    let s = cfn
        .describe_stacks()
        .stack_name("fresh")
        .send()
        .await
        .expect("describe");
    assert_eq!(s.stacks()[0].stack_status(), Some(&StackStatus::ReviewInProgress));
    tokio::time::sleep(Duration::from_millis(10)).await;
    cfn.execute_change_set()
        .change_set_name("c1")
        .stack_name("fresh")
        .send()
        .await
        .expect("execute");
    wait_for(&cfn, "fresh", StackStatus::CreateComplete).await;
}
