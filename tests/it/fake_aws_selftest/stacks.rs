//! Stacks on the fake: creation and paged events, statuses on the time scale, throttling.
use super::*;

#[tokio::test]
async fn create_stack_and_page_events() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(1000.0);
    fake.set_event_page_size(4);
    fake.script_next(Op::Create, StackScript::create_success("any", RESOURCES, &[1.0, 2.0]));
    fake.set_outputs("argos-test", &[("WebIp", "54.1.2.3")]);
    let cfn = cfn_client(&fake).await;
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
    let cfn = cfn_client(&fake).await;
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
    let cfn = cfn_client(&fake).await;
    let ec2 = ec2_client(&fake).await;
    let out = cfn
        .describe_stacks()
        .stack_name("steady")
        .send()
        .await
        .expect("retried");
    assert_eq!(out.stacks()[0].stack_status(), Some(&StackStatus::CreateComplete));
    let own = argos::cloud::ec2::Params::new().list("Owner", &["self"]);
    let imgs = ec2.ec2().await.call("DescribeImages", &own).await.expect("retried");
    assert_eq!(imgs.items("imagesSet").count(), 1);
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
    let regions = argos::cloud::ec2::Params::new();
    let e = ec2
        .ec2()
        .await
        .call("DescribeRegions", &regions)
        .await
        .expect_err("unknown");
    let e = ec2.error("DescribeRegions", e);
    assert_eq!(e.code.as_deref(), Some("InvalidAction"));
}
