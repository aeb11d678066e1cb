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

mod commission;
mod teardown;
mod update;
mod watching;
