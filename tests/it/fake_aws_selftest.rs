//! Self-tests of the scripted fake AWS endpoint, driven by the real aws-sdk clients, so the
//! scenario tests can trust what it serves.
use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_cloudformation::config::{Credentials, Region};
use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, ExecutionStatus, Parameter, ResourceStatus, StackStatus, Tag,
};
use aws_sdk_ec2::types::Filter;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use support::fake_aws::*;

async fn sdk_config(fake: &FakeAws) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(fake.endpoint_url())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDFAKE", "secret", None, None, "static"))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        )
        .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(5)))
        .load()
        .await
}

async fn clients(fake: &FakeAws) -> (aws_sdk_cloudformation::Client, aws_sdk_ec2::Client) {
    let cfg = sdk_config(fake).await;
    (
        aws_sdk_cloudformation::Client::new(&cfg),
        aws_sdk_ec2::Client::new(&cfg),
    )
}

const RESOURCES: &[(&str, &str)] = &[
    ("DatabaseSecurityGroup", "AWS::EC2::SecurityGroup"),
    ("WebSecurityGroup", "AWS::EC2::SecurityGroup"),
    ("DataVolume", "AWS::EC2::Volume"),
    ("WebServerInstance", "AWS::EC2::Instance"),
    ("WebServerEIP", "AWS::EC2::EIP"),
];

const TEMPLATE: &str = r#"{"Description":"argos test","Parameters":{"Env":{"Type":"String","Default":"dev","Description":"environment"},"Size":{"Type":"String"}},
"Resources":{"WebSecurityGroup":{"Type":"AWS::EC2::SecurityGroup","Properties":{"GroupDescription":{"Ref":"Env"}}},
"WebServerInstance":{"Type":"AWS::EC2::Instance","Properties":{"InstanceType":{"Ref":"Size"}}}}}"#;

fn prev_size() -> Parameter {
    Parameter::builder()
        .parameter_key("Size")
        .use_previous_value(true)
        .build()
}

/// Polls DescribeStacks until the status is `want` (at most 2 s).
async fn wait_for(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    want: StackStatus,
) -> aws_sdk_cloudformation::types::Stack {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let out = cfn.describe_stacks().stack_name(stack).send().await.expect("describe");
        let s = out.stacks()[0].clone();
        if s.stack_status() == Some(&want) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stack stuck in {:?}",
            s.stack_status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn create_stack_and_page_events() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(1000.0);
    fake.set_event_page_size(4);
    fake.script_next(Op::Create, StackScript::create_success("any", RESOURCES, &[1.0, 2.0]));
    fake.set_outputs("argos-test", &[("WebIp", "54.1.2.3")]);
    let (cfn, _) = clients(&fake).await;
    let out = cfn
        .create_stack()
        .stack_name("argos-test")
        .template_body(TEMPLATE)
        .parameters(
            Parameter::builder()
                .parameter_key("Size")
                .parameter_value("t3.small")
                .build(),
        )
        .tags(Tag::builder().key("argos:env").value("test").build())
        .client_request_token("tok-create-1")
        .send()
        .await
        .expect("create");
    let stack_id = out.stack_id().expect("stack id").to_string();
    assert!(stack_id.starts_with("arn:aws:cloudformation:us-east-1:123456789012:stack/argos-test/"));
    assert_eq!(out.operation_id(), None);

    let stack = wait_for(&cfn, "argos-test", StackStatus::CreateComplete).await;
    assert_eq!(stack.stack_id(), Some(stack_id.as_str()));
    assert_eq!(stack.stack_name(), Some("argos-test"));
    assert_eq!(stack.description(), Some("argos test"));
    assert!(stack.creation_time().is_some());
    assert_eq!(stack.last_updated_time(), None);
    let params: Vec<(String, String)> = stack
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_key().unwrap_or("").into(),
                p.parameter_value().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        params,
        vec![("Env".into(), "dev".into()), ("Size".into(), "t3.small".into())]
    );
    assert_eq!(stack.outputs()[0].output_key(), Some("WebIp"));
    assert_eq!(stack.outputs()[0].output_value(), Some("54.1.2.3"));
    assert_eq!(stack.tags()[0].key(), Some("argos:env"));
    assert_eq!(stack.disable_rollback(), Some(false));

    // Paginator: 1 + 5 * 3 + 1 events, 4 per page.
    fake.clear_calls();
    let events: Vec<_> = cfn
        .describe_stack_events()
        .stack_name("argos-test")
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("events");
    assert_eq!(events.len(), 17);
    assert_eq!(fake.count("DescribeStackEvents"), 5);
    let ids: HashSet<_> = events.iter().map(|e| e.event_id().unwrap_or("").to_string()).collect();
    assert_eq!(ids.len(), 17, "event ids are unique");
    // Newest first.
    let newest = &events[0];
    assert_eq!(newest.logical_resource_id(), Some("argos-test"));
    assert_eq!(newest.resource_type(), Some("AWS::CloudFormation::Stack"));
    assert_eq!(newest.resource_status(), Some(&ResourceStatus::CreateComplete));
    assert_eq!(newest.physical_resource_id(), Some(stack_id.as_str()));
    let oldest = events.last().expect("oldest");
    assert_eq!(oldest.resource_status(), Some(&ResourceStatus::CreateInProgress));
    assert_eq!(oldest.resource_status_reason(), Some("User Initiated"));
    for w in events.windows(2) {
        assert!(w[0].timestamp().expect("ts") >= w[1].timestamp().expect("ts"));
    }
    for e in &events {
        assert_eq!(e.stack_id(), Some(stack_id.as_str()));
        assert_eq!(e.stack_name(), Some("argos-test"));
        assert_eq!(e.client_request_token(), Some("tok-create-1"));
    }
    let initiated = events
        .iter()
        .find(|e| e.resource_status_reason() == Some("Resource creation Initiated"))
        .expect("initiated");
    assert!(initiated
        .physical_resource_id()
        .is_some_and(|p| p.starts_with("sg-0") || p.starts_with("vol-0") || p.starts_with("i-0") || p.contains('.')));
    let instance = events
        .iter()
        .find(|e| {
            e.logical_resource_id() == Some("WebServerInstance")
                && e.resource_status() == Some(&ResourceStatus::CreateComplete)
        })
        .expect("instance complete");
    assert!(instance.physical_resource_id().is_some_and(|p| p.starts_with("i-0")));

    // Manual NextToken paging gives the same sequence.
    let mut manual = Vec::new();
    let mut token = None;
    loop {
        let page = cfn
            .describe_stack_events()
            .stack_name(&stack_id)
            .set_next_token(token)
            .send()
            .await
            .expect("page");
        assert!(page.stack_events().len() <= 4);
        manual.extend(
            page.stack_events()
                .iter()
                .map(|e| e.event_id().unwrap_or("").to_string()),
        );
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let via_paginator: Vec<String> = events.iter().map(|e| e.event_id().unwrap_or("").to_string()).collect();
    assert_eq!(manual, via_paginator);
    let bad = cfn
        .describe_stack_events()
        .stack_name("argos-test")
        .next_token("garbage")
        .send()
        .await
        .expect_err("bad token");
    assert_eq!(bad.code(), Some("ValidationError"));

    // Resources.
    let res = cfn
        .describe_stack_resources()
        .stack_name("argos-test")
        .send()
        .await
        .expect("resources");
    assert_eq!(res.stack_resources().len(), 5);
    let sg = &res.stack_resources()[0];
    assert_eq!(sg.logical_resource_id(), Some("DatabaseSecurityGroup"));
    assert_eq!(sg.resource_type(), Some("AWS::EC2::SecurityGroup"));
    assert_eq!(sg.resource_status(), Some(&ResourceStatus::CreateComplete));
    assert!(sg.physical_resource_id().is_some_and(|p| p.starts_with("sg-0")));
    assert!(sg.timestamp().is_some());
    assert_eq!(sg.stack_id(), Some(stack_id.as_str()));

    assert_eq!(fake.event_visible_at().len(), 17);
    let again = cfn
        .create_stack()
        .stack_name("argos-test")
        .template_body(TEMPLATE)
        .parameters(Parameter::builder().parameter_key("Size").parameter_value("x").build())
        .send()
        .await
        .expect_err("exists");
    assert_eq!(again.code(), Some("AlreadyExistsException"));
}

#[tokio::test]
async fn statuses_follow_time_scale() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(5.0); // 3 scenario seconds = 600 ms: room for a loaded machine
    fake.script_next_for(
        "slow",
        Op::Create,
        StackScript::new("slow")
            .stack_event(0.0, "CREATE_IN_PROGRESS", Some("User Initiated"))
            .resource_event(1.0, ("Queue", "AWS::SQS::Queue"), "CREATE_IN_PROGRESS", None, None)
            .resource_event(2.0, ("Queue", "AWS::SQS::Queue"), "CREATE_COMPLETE", None, Some("q-1"))
            .stack_event(3.0, "CREATE_COMPLETE", None),
    );
    let (cfn, _) = clients(&fake).await;
    let started = std::time::Instant::now();
    cfn.create_stack()
        .stack_name("slow")
        .template_body("Resources: {}")
        .send()
        .await
        .expect("create");
    let s = cfn.describe_stacks().stack_name("slow").send().await.expect("describe");
    assert_eq!(s.stacks()[0].stack_status(), Some(&StackStatus::CreateInProgress));
    assert_eq!(s.stacks()[0].stack_status_reason(), Some("User Initiated"));
    let ev = cfn
        .describe_stack_events()
        .stack_name("slow")
        .send()
        .await
        .expect("events");
    assert_eq!(ev.stack_events().len(), 1);
    wait_for(&cfn, "slow", StackStatus::CreateComplete).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(590), "{elapsed:?}");
    let visible = fake.event_visible_at();
    assert_eq!(visible.len(), 4);
    let gap = visible[3].1 - visible[0].1;
    assert!(
        (Duration::from_millis(595)..Duration::from_millis(605)).contains(&gap),
        "{gap:?}"
    );
}

#[tokio::test]
async fn throttling_is_retried_and_recorded() {
    let fake = FakeAws::start().await;
    fake.add_stack("steady", TEMPLATE, &[("Size", "t3.micro")], RESOURCES);
    fake.add_image(Ec2Image::owned("ami-0123", "argos-base-1", &[]));
    fake.throttle("DescribeStacks", 2);
    fake.throttle("ec2:DescribeImages", 1);
    let (cfn, ec2) = clients(&fake).await;
    let out = cfn
        .describe_stacks()
        .stack_name("steady")
        .send()
        .await
        .expect("retried");
    assert_eq!(out.stacks()[0].stack_status(), Some(&StackStatus::CreateComplete));
    let imgs = ec2.describe_images().owners("self").send().await.expect("retried");
    assert_eq!(imgs.images().len(), 1);
    let calls = fake.calls();
    let throttled: Vec<_> = calls
        .iter()
        .filter(|c| c.throttled)
        .map(|c| c.action.as_str())
        .collect();
    assert_eq!(throttled, vec!["DescribeStacks", "DescribeStacks", "DescribeImages"]);
    assert_eq!(
        fake.actions(),
        vec![
            "cloudformation:DescribeStacks",
            "cloudformation:DescribeStacks",
            "cloudformation:DescribeStacks",
            "ec2:DescribeImages",
            "ec2:DescribeImages"
        ]
    );
    assert_eq!(calls[0].status, 400);
    assert_eq!(calls[2].status, 200);
    assert_eq!(calls[0].params.get("StackName").map(String::as_str), Some("steady"));
    // More throttles than the SDK's 3 attempts: the error surfaces.
    fake.throttle("DescribeStacks", 3);
    let e = cfn
        .describe_stacks()
        .stack_name("steady")
        .send()
        .await
        .expect_err("gives up");
    assert_eq!(e.code(), Some("Throttling"));
    assert_eq!(e.message(), Some("Rate exceeded"));
    // Injected errors and unknown actions.
    fake.fail_next("DescribeStacks", 403, "AccessDenied", "User is not authorized");
    let e = cfn.describe_stacks().send().await.expect_err("denied");
    assert_eq!(e.code(), Some("AccessDenied"));
    let e = cfn.list_stacks().send().await.expect_err("unknown");
    assert_eq!(e.code(), Some("InvalidAction"));
    assert_eq!(
        fake.actions().last().map(String::as_str),
        Some("cloudformation:ListStacks")
    );
    let e = ec2.describe_regions().send().await.expect_err("unknown");
    assert_eq!(e.code(), Some("InvalidAction"));
}

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
    let (cfn, _) = clients(&fake).await;
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
    let (cfn, _) = clients(&fake).await;
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
    let (cfn, _) = clients(&fake).await;
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

#[tokio::test]
async fn ec2_describe_filter_and_clean() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(1000.0);
    fake.add_image(Ec2Image::owned(
        "ami-0aaa",
        "argos-web-2024-01-01",
        &[("argos:stack", "web"), ("argos:keep", "no")],
    ));
    fake.add_image(Ec2Image::owned(
        "ami-0bbb",
        "argos-web-2024-02-01",
        &[("argos:stack", "web")],
    ));
    fake.add_image(Ec2Image::owned("ami-0ccc", "other-image", &[]));
    fake.add_image(Ec2Image::amazon(
        "ami-0ddd",
        "al2023-ami-2023.4.20240401.1-kernel-6.1-x86_64",
    ));
    fake.add_instance(Ec2Instance::running(
        "i-0aaa",
        &[("argos:stack", "web"), ("Name", "web-1")],
    ));
    fake.add_instance(Ec2Instance::running("i-0bbb", &[("argos:stack", "web")]).with_state("stopped"));
    fake.add_instance(Ec2Instance::running("i-0ccc", &[("argos:stack", "db")]));
    fake.set_default_vpc(
        "vpc-0def",
        "172.31.0.0/16",
        &[("subnet-0a", "us-east-1a"), ("subnet-0b", "us-east-1b")],
    );
    let (_, ec2) = clients(&fake).await;

    let tag = |k: &str, v: &str| Filter::builder().name(format!("tag:{k}")).values(v).build();
    let imgs = ec2
        .describe_images()
        .owners("self")
        .filters(Filter::builder().name("name").values("argos-web-*").build())
        .send()
        .await
        .expect("images");
    let mut ids: Vec<_> = imgs.images().iter().map(|i| i.image_id().unwrap_or("")).collect();
    ids.sort();
    assert_eq!(ids, vec!["ami-0aaa", "ami-0bbb"]);
    let img = imgs
        .images()
        .iter()
        .find(|i| i.image_id() == Some("ami-0aaa"))
        .expect("img");
    assert_eq!(img.name(), Some("argos-web-2024-01-01"));
    assert_eq!(img.owner_id(), Some("123456789012"));
    assert_eq!(img.state().map(|s| s.as_str()), Some("available"));
    assert_eq!(img.public(), Some(false));
    assert!(img.creation_date().is_some());
    assert_eq!(img.tags().len(), 2);
    assert_eq!(img.tags()[0].key(), Some("argos:stack"));
    let snap = img.block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.snapshot_id())
        .expect("snapshot")
        .to_string();
    let imgs = ec2
        .describe_images()
        .owners("self")
        .filters(tag("argos:keep", "no"))
        .send()
        .await
        .expect("images");
    assert_eq!(imgs.images().len(), 1);
    let imgs = ec2
        .describe_images()
        .owners("amazon")
        .filters(
            Filter::builder()
                .name("name")
                .values("al2023-ami-2023.*-x86_64")
                .build(),
        )
        .send()
        .await
        .expect("images");
    assert_eq!(imgs.images()[0].image_owner_alias(), Some("amazon"));
    let e = ec2
        .describe_images()
        .filters(Filter::builder().name("bogus").values("x").build())
        .send()
        .await
        .expect_err("bad filter");
    assert_eq!(e.code(), Some("InvalidParameterValue"));

    let inst = ec2
        .describe_instances()
        .filters(tag("argos:stack", "web"))
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .values("pending")
                .build(),
        )
        .send()
        .await
        .expect("instances");
    let all: Vec<_> = inst.reservations().iter().flat_map(|r| r.instances()).collect();
    assert_eq!(all.len(), 1);
    let i = all[0];
    assert_eq!(i.instance_id(), Some("i-0aaa"));
    assert_eq!(i.state().and_then(|s| s.name()).map(|n| n.as_str()), Some("running"));
    assert_eq!(i.state().and_then(|s| s.code()), Some(16));
    assert!(i.public_ip_address().is_some() && i.private_ip_address().is_some());
    assert_eq!(i.instance_type().map(|t| t.as_str()), Some("t3.micro"));
    assert_eq!(i.placement().and_then(|p| p.availability_zone()), Some("us-east-1a"));
    assert!(i.launch_time().is_some());
    assert!(i
        .tags()
        .iter()
        .any(|t| t.key() == Some("Name") && t.value() == Some("web-1")));
    let paged = ec2.describe_instances().max_results(5).send().await.expect("page");
    assert_eq!(paged.reservations().len(), 3);
    assert_eq!(paged.next_token(), None);

    let vpcs = ec2
        .describe_vpcs()
        .filters(Filter::builder().name("is-default").values("true").build())
        .send()
        .await
        .expect("vpcs");
    assert_eq!(vpcs.vpcs()[0].vpc_id(), Some("vpc-0def"));
    assert_eq!(vpcs.vpcs()[0].is_default(), Some(true));
    assert_eq!(vpcs.vpcs()[0].cidr_block(), Some("172.31.0.0/16"));
    let subnets = ec2
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values("vpc-0def").build())
        .send()
        .await
        .expect("subnets");
    assert_eq!(subnets.subnets().len(), 2);
    assert_eq!(subnets.subnets()[1].availability_zone(), Some("us-east-1b"));
    assert_eq!(subnets.subnets()[1].default_for_az(), Some(true));

    ec2.create_tags()
        .resources("i-0ccc")
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("argos:state")
                .value("doomed")
                .build(),
        )
        .send()
        .await
        .expect("tags");
    let t = ec2
        .terminate_instances()
        .instance_ids("i-0ccc")
        .send()
        .await
        .expect("terminate");
    let change = &t.terminating_instances()[0];
    assert_eq!(change.instance_id(), Some("i-0ccc"));
    assert_eq!(
        change.current_state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("shutting-down")
    );
    assert_eq!(
        change.previous_state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("running")
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    let inst = ec2
        .describe_instances()
        .filters(tag("argos:state", "doomed"))
        .send()
        .await
        .expect("instances");
    assert_eq!(
        inst.reservations()[0].instances()[0]
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str()),
        Some("terminated")
    );
    let e = ec2
        .terminate_instances()
        .instance_ids("i-0nope")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(e.code(), Some("InvalidInstanceID.NotFound"));

    let e = ec2
        .delete_snapshot()
        .snapshot_id(&snap)
        .send()
        .await
        .expect_err("in use");
    assert_eq!(e.code(), Some("InvalidSnapshot.InUse"));
    ec2.deregister_image()
        .image_id("ami-0aaa")
        .send()
        .await
        .expect("deregister");
    ec2.delete_snapshot()
        .snapshot_id(&snap)
        .send()
        .await
        .expect("delete snapshot");
    let e = ec2
        .deregister_image()
        .image_id("ami-0aaa")
        .send()
        .await
        .expect_err("gone");
    assert_eq!(e.code(), Some("InvalidAMIID.NotFound"));
    assert!(!fake.image_ids().contains(&"ami-0aaa".to_string()));
    assert!(!fake.snapshot_ids().contains(&snap));
    let params = fake
        .calls()
        .into_iter()
        .find(|c| c.action == "DescribeInstances")
        .expect("call")
        .params;
    assert_eq!(params.get("Filter.1.Name").map(String::as_str), Some("tag:argos:stack"));
    assert_eq!(params.get("Filter.2.Value.2").map(String::as_str), Some("pending"));
}

/// Under `tokio::time::pause()` the scenario follows the paused clock: a 10-minute stack
/// completes after 10 virtual minutes of polling, in no real time.
#[tokio::test(start_paused = true)]
async fn paused_clock_drives_the_scenario() {
    let fake = FakeAws::start().await;
    fake.script_next(Op::Create, StackScript::create_success("any", RESOURCES, &[120.0]));
    let (cfn, _) = clients(&fake).await;
    let real = std::time::Instant::now();
    cfn.create_stack()
        .stack_name("paused")
        .template_body("{}")
        .send()
        .await
        .expect("create");
    let mut polls = 0;
    loop {
        let out = cfn
            .describe_stacks()
            .stack_name("paused")
            .send()
            .await
            .expect("describe");
        polls += 1;
        if out.stacks()[0].stack_status() == Some(&StackStatus::CreateComplete) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert!((120..=130).contains(&polls), "{polls}");
    assert!(real.elapsed() < Duration::from_secs(2));
}
