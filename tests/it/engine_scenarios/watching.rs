//! Cancel during an update, the watcher's timeout, plan, and status.
use super::*;

#[tokio::test]
async fn cancel_during_an_update_cancels_it_on_aws() {
    let fake = fake().await;
    let project = project(&fake, None);
    let engine = project.engine().await;
    add_app_stack(&fake, &engine);
    fake.set_change_set(
        STACK,
        vec![Change::modify(
            "ApiInstance",
            "AWS::EC2::Instance",
            "True",
            &["Properties"],
        )],
    );
    // An update that would take a scenario week.
    fake.script_next_for(
        STACK,
        Op::ExecuteChangeSet,
        StackScript::update_with_cleanup(STACK, &[("ApiInstance", "AWS::EC2::Instance")], &[], &[1.0e8]),
    );
    fake.clear_calls();
    let (progress, mut rx) = ProgressTx::channel();
    let cancel = CancellationToken::new();
    let ctx = Ctx {
        engine: engine.clone(),
        target: engine.target("staging").unwrap(),
        progress,
        cancel: cancel.clone(),
        log: None,
    };
    let job = tokio::spawn(async move { engine::update(&ctx, &BTreeMap::new(), &Default::default()).await });
    // Cancel once the resource update is seen under way.
    while let Some(p) = rx.recv().await {
        if matches!(&p, Progress::StackEvent(e) if e.logical_id == "ApiInstance" && e.status == "UPDATE_IN_PROGRESS") {
            break;
        }
    }
    cancel.cancel();

    let err = job.await.unwrap().expect_err("cancelled");

    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert_calls(
        &fake,
        &[
            "DescribeStacks",
            "DescribeImages",
            "CreateChangeSet",
            "DescribeChangeSet*",
            "DescribeStackEvents",
            "ExecuteChangeSet",
            "DescribeStackEvents*",
            "CancelUpdateStack",
        ],
    );
    let cancel_call = the_call(&fake, "CancelUpdateStack");
    assert!(cancel_call.params["StackName"].contains(":stack/argos-staging/"));
    let status = fake.stack_status(STACK).unwrap();
    assert!(
        status.starts_with("UPDATE_ROLLBACK"),
        "CloudFormation rolls the update back: {status}"
    );
}

#[tokio::test]
async fn watcher_times_out_naming_stack_and_status() {
    let fake = fake().await;
    let project = project(&fake, None);
    let engine = project.engine().await;
    let aws = &engine.aws;
    fake.script_next_for(
        "argos-slow",
        Op::Create,
        StackScript::create_success("argos-slow", RESOURCES, &[1.0e8]),
    );
    let mut watcher = StackWatcher::before_operation(aws, "argos-slow", "argos-slow")
        .await
        .unwrap();
    let out = aws
        .cfn()
        .await
        .create_stack()
        .stack_name("argos-slow")
        .template_body(TINY_TEMPLATE)
        .send()
        .await
        .unwrap();
    watcher.set_stack_id(out.stack_id().unwrap());
    let pace = Pace {
        poll: Duration::from_millis(10),
        max_poll: Duration::from_millis(20),
        timeout: Duration::from_millis(150),
    };
    let started = std::time::Instant::now();

    let err = watcher
        .wait(
            aws,
            Operation::Create,
            pace,
            &ProgressTx::discard(),
            &CancellationToken::new(),
        )
        .await
        .expect_err("times out");

    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    let Error::Timeout(msg) = &err else { panic!("{err:?}") };
    assert!(
        msg.starts_with("stack argos-slow still CREATE_IN_PROGRESS after"),
        "{msg}"
    );
    assert!(err.to_string().starts_with("timed out: stack argos-slow"));
    assert_calls(&fake, &["DescribeStackEvents", "CreateStack", "DescribeStackEvents*"]);
    assert!(
        fake.count("DescribeStackEvents") >= 4,
        "it kept polling until the deadline"
    );
}

#[tokio::test]
async fn plan_shows_changes_then_deletes_the_change_set() {
    let fake = fake().await;
    let project = project(&fake, None);
    let engine = project.engine().await;
    let mut rec = Recorder::new(&engine, "staging", None);
    add_app_stack(&fake, &engine);
    fake.set_change_set(
        STACK,
        vec![
            Change::add("BrokerInstance", "AWS::EC2::Instance"),
            Change::modify("Database", "AWS::RDS::DBInstance", "Conditional", &["Properties"]),
        ],
    );
    fake.clear_calls();

    let summary = engine::plan(&rec.ctx, &BTreeMap::new()).await.expect("plan");

    assert_eq!(summary.headline, "2 change(s) would be made to argos-staging");
    assert_eq!(
        summary.details,
        [
            "Modify Database AWS::RDS::DBInstance (may replace)",
            "Add BrokerInstance AWS::EC2::Instance"
        ]
    );
    assert_calls(
        &fake,
        &[
            "DescribeStacks",
            "DescribeImages",
            "CreateChangeSet",
            "DescribeChangeSet*",
            "DeleteChangeSet",
        ],
    );
    assert_eq!(
        rec.events().iter().filter(|p| matches!(p, Progress::Change(_))).count(),
        2
    );
    assert_eq!(
        fake.stack_status(STACK).as_deref(),
        Some("CREATE_COMPLETE"),
        "nothing executed"
    );
}

#[tokio::test]
async fn status_reports_stack_hosts_image_and_recent_events() {
    let fake = fake().await;
    add_hosts(&fake, &["api", "front"]);
    let project = project(&fake, None);
    let engine = project.engine().await;
    let rec = Recorder::new(&engine, "staging", None);
    add_app_stack(&fake, &engine);
    fake.clear_calls();

    let report = engine::status(&rec.ctx).await.expect("status");

    let stack = report.stack.as_ref().expect("stack found");
    assert_eq!((stack.name.as_str(), stack.status.as_str()), (STACK, "CREATE_COMPLETE"));
    assert_eq!(
        stack.outputs.get("KnowledgeHost").map(String::as_str),
        Some("172.31.9.9")
    );
    let groups: Vec<&str> = report.instances.iter().map(|i| i.group()).collect();
    assert_eq!(groups, ["api", "front"]);
    assert_eq!(report.image.as_ref().map(|i| i.id.as_str()), Some(IMAGE_ID));
    assert_eq!(report.events.len(), 8, "the configured number of recent events");
    assert_eq!(report.events.last().map(|e| e.status.as_str()), Some("CREATE_COMPLETE"));
    let text = report.to_string();
    assert!(text.starts_with("stack argos-staging: CREATE_COMPLETE\n"), "{text}");
    assert_eq!(
        fake.actions(),
        [
            "cloudformation:DescribeStacks",
            "ec2:DescribeInstances",
            "ec2:DescribeImages",
            "cloudformation:DescribeStackEvents"
        ]
    );
}
