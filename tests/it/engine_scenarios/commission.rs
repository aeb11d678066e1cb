//! Creating stacks: every event once across pages, throttled calls, failures with their root cause, recommissioning.
use super::*;

#[tokio::test]
async fn create_reports_every_event_once_across_pages() {
    let fake = fake().await;
    fake.set_event_page_size(4);
    add_hosts(&fake, &["api"]);
    let project = project(&fake, Some(&["api"]));
    let engine = project.engine().await;
    let mut rec = Recorder::new(&engine, "staging", None);

    let summary = engine::commission(&rec.ctx, &Default::default())
        .await
        .expect("commission");

    assert_eq!(summary.headline, "commissioned argos-staging");
    assert!(
        summary.details.iter().any(|d| d == "stack argos-staging created"),
        "{summary:?}"
    );
    assert_eq!(
        summary.outputs.get("DatabaseHost").map(String::as_str),
        Some("db.internal")
    );
    assert_eq!(fake.stack_status(STACK).as_deref(), Some("CREATE_COMPLETE"));
    assert_calls(&fake, &expected(&[CREATE_PREFIX, DEPLOY_CALLS]));
    // Events did span pages: some poll followed a NextToken.
    assert!(fake
        .calls()
        .iter()
        .any(|c| c.action == "DescribeStackEvents" && c.params.contains_key("NextToken")));

    let events = rec.events();
    let got: Vec<String> = stack_events(&events).into_iter().map(|e| e.event_id).collect();
    let all: Vec<String> = fake.event_visible_at().into_iter().map(|(id, _)| id).collect();
    assert!(all.len() > 20, "a realistic create: {} events", all.len());
    assert_eq!(got, all, "every event exactly once, oldest first");
    let times: Vec<_> = stack_events(&events).iter().map(|e| e.timestamp.unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "chronological");
    let last = stack_events(&events).pop().unwrap();
    assert_eq!(
        (last.logical_id.as_str(), last.status.as_str()),
        (STACK, "CREATE_COMPLETE")
    );

    let progress: Vec<(usize, usize)> = events
        .iter()
        .filter_map(|p| match p {
            Progress::StackProgress { done, total, .. } => Some((*done, *total)),
            _ => None,
        })
        .collect();
    let (done, total) = *progress.last().expect("progress reported");
    assert!(total >= 8, "{progress:?}");
    assert_eq!(done, total, "{progress:?}");
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "never goes back: {progress:?}"
    );
}

#[tokio::test]
async fn throttled_calls_are_retried() {
    let fake = fake().await;
    add_hosts(&fake, &["api"]);
    let project = project(&fake, Some(&["api"]));
    let engine = project.engine().await;
    let rec = Recorder::new(&engine, "staging", None);
    fake.throttle("DescribeStackEvents", 2);
    fake.throttle("CreateStack", 1);

    engine::commission(&rec.ctx, &Default::default())
        .await
        .expect("commission despite throttling");

    assert_eq!(fake.stack_status(STACK).as_deref(), Some("CREATE_COMPLETE"));
    let calls = fake.calls();
    let throttled: Vec<&str> = calls
        .iter()
        .filter(|c| c.throttled)
        .map(|c| c.action.as_str())
        .collect();
    assert_eq!(throttled, ["CreateStack", "DescribeStackEvents", "DescribeStackEvents"]);
    assert!(calls.iter().filter(|c| c.throttled).all(|c| c.status == 400));
    // Each throttled attempt is followed by a retry of the same action, which succeeds.
    for (i, c) in calls.iter().enumerate().filter(|(_, c)| c.throttled) {
        assert_eq!(
            calls[i + 1].action,
            c.action,
            "retried right after: {:?}",
            fake.actions()
        );
    }
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.action == "CreateStack" && !c.throttled)
            .count(),
        1
    );
    let mut want = expected(&[CREATE_PREFIX, DEPLOY_CALLS]);
    want[4] = "CreateStack*".into();
    assert_calls(&fake, &want);
}

#[tokio::test]
async fn failed_create_names_the_root_cause_and_deletes_the_stack() {
    let fake = fake().await;
    add_hosts(&fake, &["api"]);
    let project = project(&fake, Some(&["api"]));
    let engine = project.engine().await;
    let mut rec = Recorder::new(&engine, "staging", None);
    fake.script_next_for(
        STACK,
        Op::Create,
        StackScript::create_failed_with_cascade(STACK, RESOURCES, "Database", EC2_UNSUPPORTED_CONFIGURATION, &[1.0]),
    );

    let err = engine::commission(&rec.ctx, &Default::default())
        .await
        .expect_err("create fails");

    let msg = err.to_string();
    assert!(matches!(err, Error::StackFailed(_)), "{err:?}");
    assert!(
        msg.starts_with("Database (AWS::RDS::DBInstance) CREATE_FAILED: Resource handler returned message: \"The requested configuration is currently not supported."),
        "{msg}"
    );
    assert!(!msg.contains(CANCELLED_REASON), "{msg}");
    assert!(msg.contains("ROLLBACK_COMPLETE"), "{msg}");
    assert_calls(
        &fake,
        &[
            "DescribeStacks",
            "DescribeImages",
            "DescribeVpcs",
            "DescribeSubnets",
            "CreateStack",
            "DescribeStackEvents*",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStackResources",
            "DeleteStack",
            "DescribeStackEvents*",
        ],
    );
    let delete = the_call(&fake, "DeleteStack");
    let target = &delete.params["StackName"];
    assert!(
        target.contains(":stack/argos-staging/"),
        "deleted by its own id: {target}"
    );
    assert_eq!(fake.stack_status(STACK), None, "the failed stack is gone");
    assert!(steps(&rec.events())
        .iter()
        .any(|s| s.contains("deleting the failed stack argos-staging")));
    assert_eq!(hosts_written(&project), 0, "no playbook ran");

    // The next commission starts clean: no delete, one create, and it succeeds.
    fake.clear_calls();
    let summary = engine::commission(&rec.ctx, &Default::default())
        .await
        .expect("second commission");
    assert!(summary.details.iter().any(|d| d == "stack argos-staging created"));
    assert_calls(&fake, &expected(&[CREATE_PREFIX, DEPLOY_CALLS]));
}

#[tokio::test]
async fn commission_recreates_a_rolled_back_stack() {
    let fake = fake().await;
    add_hosts(&fake, &["api"]);
    let project = project(&fake, Some(&["api"]));
    let engine = project.engine().await;
    let mut rec = Recorder::new(&engine, "staging", None);
    // A first create that rolled back and was left behind (by an older tool).
    fake.script_next_for(
        STACK,
        Op::Create,
        StackScript::create_failed_with_cascade(STACK, RESOURCES, "ApiInstance", EC2_UNSUPPORTED_CONFIGURATION, &[1.0]),
    );
    let request = argos::cloud::stack::CreateRequest {
        name: STACK,
        body: TINY_TEMPLATE,
        parameters: BTreeMap::new(),
        tags: BTreeMap::new(),
        resources: 1,
    };
    let pace = Pace {
        poll: Duration::from_millis(20),
        max_poll: Duration::from_millis(40),
        timeout: Duration::from_secs(10),
    };
    let (_, outcome) = argos::cloud::stack::create(
        &engine.aws,
        request,
        pace,
        &ProgressTx::discard(),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.status, "ROLLBACK_COMPLETE");
    fake.clear_calls();

    let summary = engine::commission(&rec.ctx, &Default::default())
        .await
        .expect("commission");

    assert!(
        summary.details.iter().any(|d| d == "stack argos-staging recreated"),
        "{summary:?}"
    );
    assert!(steps(&rec.events()).iter().any(|s| {
        s
        == "stack: argos-staging is ROLLBACK_COMPLETE from an earlier failed create: deleting it, then creating it anew"
    }));
    assert_calls(
        &fake,
        &expected(&[
            &["DescribeStacks", "DescribeImages"],
            &[
                "DescribeStackEvents",
                "DescribeStackResources",
                "DeleteStack",
                "DescribeStackEvents*",
            ],
            &CREATE_PREFIX[2..],
            DEPLOY_CALLS,
        ]),
    );
    assert_eq!(fake.stack_status(STACK).as_deref(), Some("CREATE_COMPLETE"));
}

#[tokio::test]
async fn commission_refuses_a_stack_with_an_operation_under_way() {
    let fake = fake().await;
    let project = project(&fake, None);
    let engine = project.engine().await;
    let rec = Recorder::new(&engine, "staging", None);
    let id = fake.add_stack(
        STACK,
        TINY_TEMPLATE,
        &[],
        &[("WebSecurityGroup", "AWS::EC2::SecurityGroup")],
    );
    // Someone else's slow update is running.
    fake.script_next_for(
        STACK,
        Op::Update,
        StackScript::update_with_cleanup(STACK, &[("WebSecurityGroup", "AWS::EC2::SecurityGroup")], &[], &[1.0e6]),
    );
    engine
        .aws
        .cfn()
        .await
        .update_stack()
        .stack_name(&id)
        .template_body(TINY_TEMPLATE.replace("\"web\"", "\"web servers\""))
        .send()
        .await
        .expect("update starts");
    assert_eq!(fake.stack_status(STACK).as_deref(), Some("UPDATE_IN_PROGRESS"));
    fake.clear_calls();

    let err = engine::commission(&rec.ctx, &Default::default())
        .await
        .expect_err("refused");

    let Error::Refused(msg) = &err else { panic!("{err:?}") };
    assert_eq!(
        msg,
        "stack argos-staging is UPDATE_IN_PROGRESS: another operation is running on it; wait for it to finish (`staging status`) and try again"
    );
    assert_eq!(fake.actions(), ["cloudformation:DescribeStacks"]);
}

/// CloudFormation may hold a new worker group's first workers in their launch hook until they
/// are in service, while configuring them needs the outputs of the stack being created: the
/// commission lets them in and its deploy configures them, instead of both waiting on each
/// other until the hook times out and abandons them.
#[tokio::test]
async fn a_commission_with_workers_lets_in_those_waiting_to_launch_and_its_deploy_configures_them() {
    const GROUP: &str = "argos-staging-WorkerAutoScalingGroup-0C0MM15510N";
    const WORKER: &str = "i-0c0000000000000w1";
    let fake = fake().await;
    add_hosts(&fake, &["api"]);
    let project = project(&fake, Some(&["api", "worker"]));
    support::enable_workers(&project);
    fake.add_worker_group(STACK, "staging", GROUP, true);
    fake.launch_worker(GROUP, WORKER);
    let engine = project.engine().await;
    let mut rec = Recorder::new(&engine, "staging", None);

    let summary = engine::commission(&rec.ctx, &Default::default())
        .await
        .expect("commission");

    assert_eq!(
        fake.lifecycle_answers(),
        [support::fake_aws::autoscaling::LifecycleAnswer {
            instance: WORKER.into(),
            hook: "argos-launch".into(),
            result: "CONTINUE".into(),
        }],
        "let in once, during the create"
    );
    assert!(
        summary.hosts.iter().any(|h| h.contains(WORKER)),
        "the deploy configured the worker: {summary:?}"
    );
    assert!(summary.details.iter().any(|d| d.starts_with("worker: ")), "{summary:?}");
    let said: Vec<String> = rec
        .events()
        .into_iter()
        .filter_map(|p| match p {
            Progress::Info { message } => Some(message),
            _ => None,
        })
        .collect();
    assert!(
        said.iter()
            .any(|t| t.starts_with(&format!("worker {WORKER} let in while the stack is created"))),
        "{said:?}"
    );
}
