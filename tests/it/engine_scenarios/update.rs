//! Updates: a change set applied and deployed, no changes, a rollback with its cause.
use super::*;

#[tokio::test]
async fn update_applies_a_change_set_and_deploys() {
    let fake = fake().await;
    add_hosts(&fake, ROLES);
    let project = project(&fake, None);
    let engine = project.engine().await;
    let mut rec = Recorder::new(&engine, "staging", None);
    add_app_stack(&fake, &engine);
    fake.set_change_set(
        STACK,
        vec![
            Change::add("BrokerInstance", "AWS::EC2::Instance"),
            Change::modify("ApiInstance", "AWS::EC2::Instance", "False", &["Properties"]),
            Change::modify("FrontInstance", "AWS::EC2::Instance", "True", &["Properties"]),
            Change::remove("OldWorkerInstance", "AWS::EC2::Instance"),
        ],
    );
    fake.clear_calls();

    let summary = engine::update(&rec.ctx, &BTreeMap::new(), &Default::default())
        .await
        .expect("update");

    assert_eq!(summary.headline, "updated argos-staging");
    assert!(
        summary
            .details
            .iter()
            .any(|d| d == "4 change(s) applied (CREATE_COMPLETE -> UPDATE_COMPLETE)"),
        "{summary:?}"
    );
    assert_eq!(summary.hosts.len(), 4, "{summary:?}");
    assert_eq!(hosts_written(&project), 4, "one sandbox host per role");
    assert_eq!(fake.stack_status(STACK).as_deref(), Some("UPDATE_COMPLETE"));
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
            "DescribeStacks",
            "DescribeInstances",
        ],
    );

    let events = rec.events();
    let changes: Vec<(String, String, Option<String>)> = events
        .iter()
        .filter_map(|p| match p {
            Progress::Change(c) => Some((c.action.clone(), c.logical_id.clone(), c.replacement.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("Remove".into(), "OldWorkerInstance".into(), None),
            ("Modify".into(), "FrontInstance".into(), Some("True".into())),
            ("Modify".into(), "ApiInstance".into(), Some("False".into())),
            ("Add".into(), "BrokerInstance".into(), None),
        ]
    );
    let own: Vec<String> = stack_events(&events)
        .into_iter()
        .filter(StackEvent::is_stack_itself)
        .map(|e| e.status)
        .collect();
    assert_eq!(
        own,
        [
            "UPDATE_IN_PROGRESS",
            "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
            "UPDATE_COMPLETE"
        ],
        "only this update's events, through cleanup"
    );

    // Parameters not given keep their values; the secret is never re-sent.
    let params = call_parameters(&the_call(&fake, "CreateChangeSet"));
    assert_eq!(params["DatabasePassword"], (None, true));
    assert_eq!(params["ApiInstanceType"], (Some("t3.large".into()), false));
    assert_eq!(params["ImageId"], (Some(IMAGE_ID.into()), false));
    assert_eq!(params["EnvName"], (Some("staging".into()), false));
}

#[tokio::test]
async fn update_without_changes_executes_nothing() {
    let fake = fake().await;
    add_hosts(&fake, &["api"]);
    let project = project(&fake, Some(&["api"]));
    let engine = project.engine().await;
    let mut rec = Recorder::new(&engine, "staging", None);
    add_app_stack(&fake, &engine);
    fake.no_changes(STACK);
    fake.clear_calls();

    let summary = engine::update(&rec.ctx, &BTreeMap::new(), &Default::default())
        .await
        .expect("update");

    assert!(
        summary.details.iter().any(|d| d == "no infrastructure changes"),
        "{summary:?}"
    );
    assert!(steps(&rec.events())
        .iter()
        .any(|s| s == "no changes: argos-staging already matches the templates and parameters"));
    assert_eq!(fake.count("ExecuteChangeSet"), 0);
    assert_calls(
        &fake,
        &[
            "DescribeStacks",
            "DescribeImages",
            "CreateChangeSet",
            "DescribeChangeSet*",
            "DeleteChangeSet",
            "DescribeStacks",
            "DescribeInstances",
        ],
    );
    assert_eq!(fake.stack_status(STACK).as_deref(), Some("CREATE_COMPLETE"));
}

#[tokio::test]
async fn update_rollback_is_a_failure_with_its_cause() {
    let fake = fake().await;
    add_hosts(&fake, ROLES);
    let project = project(&fake, None);
    let engine = project.engine().await;
    let rec = Recorder::new(&engine, "staging", None);
    add_app_stack(&fake, &engine);
    fake.set_change_set(
        STACK,
        vec![
            Change::modify("ApiInstance", "AWS::EC2::Instance", "True", &["Properties"]),
            Change::modify("FrontInstance", "AWS::EC2::Instance", "True", &["Properties"]),
        ],
    );
    fake.script_next_for(
        STACK,
        Op::ExecuteChangeSet,
        StackScript::update_rollback(
            STACK,
            &[
                ("ApiInstance", "AWS::EC2::Instance"),
                ("FrontInstance", "AWS::EC2::Instance"),
            ],
            "FrontInstance",
            EC2_UNSUPPORTED_CONFIGURATION,
            &[1.0],
        ),
    );
    fake.clear_calls();

    let err = engine::update(&rec.ctx, &BTreeMap::new(), &Default::default())
        .await
        .expect_err("rolled back");

    let Error::StackFailed(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.starts_with("update rolled back: FrontInstance (AWS::EC2::Instance) UPDATE_FAILED: Resource handler returned message: \"The requested configuration is currently not supported."),
        "{msg}"
    );
    assert!(
        msg.ends_with("(stack argos-staging ended UPDATE_ROLLBACK_COMPLETE)"),
        "{msg}"
    );
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
        ],
    );
    assert_eq!(hosts_written(&project), 0, "no deploy after a rollback");
}
