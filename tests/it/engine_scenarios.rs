//! Engine operations against the scripted fake AWS endpoint, through the real SDK clients:
//! paged event streams, throttling, failures with cascades, rollbacks, DELETE_FAILED, cancel
//! and timeouts. Each scenario asserts its result and the exact AWS calls it made.
use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use argos::cloud::watcher::{Operation, Pace, StackWatcher};
use argos::engine::{self, Ctx, Engine};
use argos::error::Error;
use argos::progress::{Progress, ProgressTx, StackEvent};
use support::fake_aws::*;
use support::{Recorder, TestProject};
use tokio_util::sync::CancellationToken;

const STACK: &str = "argos-staging";
const IMAGE_ID: &str = "ami-0a1b2c3d4e5f60718";
const ROLES: &[&str] = &["knowledge", "api", "front", "collector"];
/// Scenario seconds per real second: the default create script (~25 resources x 2.3 s) takes
/// about a quarter of a real second.
const SCALE: f64 = 200.0;
/// A template with no parameters, for stacks the engine only looks at or deletes.
const TINY_TEMPLATE: &str =
    r#"{"Resources":{"WebSecurityGroup":{"Type":"AWS::EC2::SecurityGroup","Properties":{"GroupDescription":"web"}}}}"#;

const RESOURCES: &[(&str, &str)] = &[
    ("WebSecurityGroup", "AWS::EC2::SecurityGroup"),
    ("DatabaseSecurityGroup", "AWS::EC2::SecurityGroup"),
    ("Database", "AWS::RDS::DBInstance"),
    ("ApiInstance", "AWS::EC2::Instance"),
    ("FrontInstance", "AWS::EC2::Instance"),
];

/// A fake with a default VPC and the app's baked image, so commission skips baking.
async fn fake() -> FakeAws {
    let fake = FakeAws::start().await;
    fake.set_time_scale(SCALE);
    fake.set_default_vpc(
        "vpc-0default000000001",
        "172.31.0.0/16",
        &[
            ("subnet-0aaa1111bbbb2222c", "us-east-1a"),
            ("subnet-0bbb2222cccc3333d", "us-east-1b"),
        ],
    );
    fake.add_image(Ec2Image::owned(IMAGE_ID, "argos-image", &[("App", "argos")]));
    fake
}

/// A project; with `roles` the deploy step runs only those (fewer real playbook runs).
fn project(fake: &FakeAws, roles: Option<&[&str]>) -> TestProject {
    let p = TestProject::new(&fake.endpoint_url(), "");
    if let Some(roles) = roles {
        let yaml = std::fs::read_to_string(&p.config_path).unwrap();
        let yaml = yaml.replacen("ansible:\n", &format!("ansible:\n  roles: [{}]\n", roles.join(", ")), 1);
        std::fs::write(&p.config_path, yaml).unwrap();
    }
    p
}

/// Running instances for the roles, tagged the way the stack tags them, and stack outputs.
fn add_hosts(fake: &FakeAws, roles: &[&str]) {
    support::add_staging_hosts(fake, roles);
}

/// The app stack, already CREATE_COMPLETE with the merged template and real-looking parameters.
fn add_app_stack(fake: &FakeAws, engine: &Engine) -> String {
    support::add_staging_stack(fake, engine, IMAGE_ID, &[("ApiInstanceType", "t3.large")], RESOURCES)
}

/// `service:Action` with consecutive repeats of one action collapsed to `Action*`, so a
/// sequence can be asserted without depending on how many polls the watcher made.
fn squashed(actions: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in actions {
        let short = a.split_once(':').map_or(a.as_str(), |(_, x)| x).to_string();
        let starred = format!("{short}*");
        match out.last_mut() {
            Some(last) if *last == short || *last == starred => *last = starred,
            _ => out.push(short),
        }
    }
    out
}

/// Asserts the calls made, in order: `Action` is exactly one call, `Action*` one or more in a
/// row (how many polls a watch takes depends on timing).
#[track_caller]
fn assert_calls<S: AsRef<str>>(fake: &FakeAws, pattern: &[S]) {
    let actions = fake.actions();
    let runs = squashed(&actions);
    let ok = runs.len() == pattern.len()
        && runs.iter().zip(pattern).all(|(run, want)| {
            let want = want.as_ref();
            match want.strip_suffix('*') {
                Some(action) => run.trim_end_matches('*') == action,
                None => run == want,
            }
        });
    let pattern: Vec<&str> = pattern.iter().map(AsRef::as_ref).collect();
    assert!(
        ok,
        "calls {runs:?}\n do not match {pattern:?}\n (all calls: {actions:?})"
    );
}

fn stack_events(events: &[Progress]) -> Vec<StackEvent> {
    events
        .iter()
        .filter_map(|p| match p {
            Progress::StackEvent(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn steps(events: &[Progress]) -> Vec<String> {
    events
        .iter()
        .filter_map(|p| match p {
            Progress::Step { name, detail } => Some(format!("{name}: {detail}")),
            Progress::Info { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// `ParameterKey -> (ParameterValue, UsePreviousValue)` of a recorded call.
fn call_parameters(call: &Call) -> BTreeMap<String, (Option<String>, bool)> {
    let mut out = BTreeMap::new();
    for (k, key) in &call.params {
        if let Some(n) = k
            .strip_prefix("Parameters.member.")
            .and_then(|r| r.strip_suffix(".ParameterKey"))
        {
            let value = call
                .params
                .get(&format!("Parameters.member.{n}.ParameterValue"))
                .cloned();
            let previous = call
                .params
                .get(&format!("Parameters.member.{n}.UsePreviousValue"))
                .is_some_and(|v| v == "true");
            out.insert(key.clone(), (value, previous));
        }
    }
    out
}

fn the_call(fake: &FakeAws, action: &str) -> Call {
    let calls: Vec<Call> = fake.calls().into_iter().filter(|c| c.action == action).collect();
    assert_eq!(calls.len(), 1, "exactly one {action}: {calls:?}");
    calls.into_iter().next().unwrap()
}

fn hosts_written(project: &TestProject) -> usize {
    std::fs::read_dir(project.hosts_dir()).map_or(0, |d| d.count())
}

/// The create path a commission takes before it watches the stack.
const CREATE_PREFIX: &[&str] = &[
    "DescribeStacks",
    "DescribeImages",
    "DescribeVpcs",
    "DescribeSubnets",
    "CreateStack",
    "DescribeStackEvents*",
];
/// What deploy calls before it runs playbooks.
const DEPLOY_CALLS: &[&str] = &["DescribeStacks", "DescribeInstances"];

fn expected(parts: &[&[&str]]) -> Vec<String> {
    parts.iter().flat_map(|p| p.iter().map(|s| s.to_string())).collect()
}

#[tokio::test]
async fn create_reports_every_event_once_across_pages() {
    let fake = fake().await;
    fake.set_event_page_size(4);
    add_hosts(&fake, &["api"]);
    let project = project(&fake, Some(&["api"]));
    let engine = project.engine().await;
    let mut rec = Recorder::new(&engine, "staging", None);

    let summary = engine::commission(&rec.ctx).await.expect("commission");

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

    engine::commission(&rec.ctx)
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

    let err = engine::commission(&rec.ctx).await.expect_err("create fails");

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
    let summary = engine::commission(&rec.ctx).await.expect("second commission");
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

    let summary = engine::commission(&rec.ctx).await.expect("commission");

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

    let err = engine::commission(&rec.ctx).await.expect_err("refused");

    let Error::Refused(msg) = &err else { panic!("{err:?}") };
    assert_eq!(
        msg,
        "stack argos-staging is UPDATE_IN_PROGRESS: another operation is running on it; wait for it to finish (`staging status`) and try again"
    );
    assert_eq!(fake.actions(), ["cloudformation:DescribeStacks"]);
}

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

    let summary = engine::update(&rec.ctx, &BTreeMap::new()).await.expect("update");

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

    let summary = engine::update(&rec.ctx, &BTreeMap::new()).await.expect("update");

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

    let err = engine::update(&rec.ctx, &BTreeMap::new())
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

    let err = engine::deploy(&rec.ctx, &[]).await.expect_err("collector has no host");

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
    let job = tokio::spawn(async move { engine::update(&ctx, &BTreeMap::new()).await });
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
