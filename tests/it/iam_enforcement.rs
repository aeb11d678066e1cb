//! Least privilege, measured: the lifecycle runs on moto with IAM enforcement on, as an IAM
//! user that holds only `iam/argos-bot-policy.json`; for each statement, a user without it
//! sees the step that needs it fail with the denied action in the error's first line. moto
//! checks the caller's own EC2, CloudFormation, IAM and STS calls; what a stack creates is not
//! checked against anyone (see the notes on `iam/` in the README).
use crate::support;

use std::collections::BTreeMap;

use argos::engine::{self, Engine};
use serde_json::Value;
use support::moto_iam::{bot_policy, for_moto, without, IamUser, Setup};
use support::{Recorder, TestProject};

/// The statements whose removal is measured: the step that needs it, and the action its
/// error must name. The others (ListStacksForReports, ResolveBaseImageParameter,
/// PassStackServiceRole, TagImages, CleanStrayInstances) are covered by the static check
/// below, or are needed only by what moto does not check.
const REMOVALS: &[(&str, &str, &str)] = &[
    ("DiscoverNetwork", "commission", "ec2:DescribeVpcs"),
    ("FindImages", "commission", "ec2:DescribeImages"),
    ("BakeImage", "commission", "ec2:CreateImage"),
    ("StackStatusAndEvents", "status", "cloudformation:DescribeStackEvents"),
    ("DiscoverHosts", "deploy", "ec2:DescribeInstances"),
    ("StackChangeSets", "update", "cloudformation:CreateChangeSet"),
    ("StackLifecycle", "decommission", "cloudformation:DeleteStack"),
    ("CleanImages", "clean", "ec2:DeregisterImage"),
];

fn user_without(sid: &str) -> String {
    format!("argos-without-{}", sid.to_lowercase())
}

async fn engine_as(project: &TestProject, user: &IamUser) -> Engine {
    Engine::with_credentials(project.config(), &user.key_id, &user.secret).await
}

/// Runs `step` on staging; the error it must end with.
async fn run(engine: &Engine, step: &str) -> Result<(), String> {
    let rec = Recorder::new(engine, "staging", None);
    let r = match step {
        "commission" => engine::commission(&rec.ctx, &Default::default()).await.map(drop),
        "status" => engine::status(&rec.ctx).await.map(drop),
        "deploy" => engine::deploy(&rec.ctx, &["api".to_string()], &Default::default())
            .await
            .map(drop),
        "update" => {
            let o = BTreeMap::from([("AllowedSshCidr".to_string(), "203.0.113.0/24".to_string())]);
            engine::update(&rec.ctx, &o, &Default::default()).await.map(drop)
        }
        "decommission" => engine::decommission(&rec.ctx).await.map(drop),
        "clean" => engine::clean(&rec.ctx).await.map(drop),
        other => panic!("no step {other}"),
    };
    r.map_err(|e| e.redacted(&engine.redactor).to_string())
}

/// A user without `sid` fails `step`, and the first line of the error names `action`.
async fn denied(project: &TestProject, users: &[IamUser], sid: &str, step: &str, action: &str) {
    let user = users.iter().find(|u| u.name == user_without(sid)).unwrap();
    let engine = engine_as(project, user).await;
    let err = run(&engine, step)
        .await
        .expect_err(&format!("{step} fails without {sid}"));
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.contains(action) && first.contains("not authorized"),
        "without {sid}, {step} names {action} first: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_runs_on_the_policy_alone_and_each_step_needs_its_statement() {
    let policy = for_moto(&bot_policy());
    let mut setup = Setup::default().user("argos", &policy);
    for (sid, _, _) in REMOVALS {
        setup = setup.user(&user_without(sid), &without(&policy, sid));
    }
    let (moto, users) = setup.start().await;
    // One role: the playbooks make no AWS calls, so more roles would add ansible-playbook runs
    // to each commission and update without checking one more permission.
    let project = TestProject::with_roles(&moto.url, "", &["api"]);
    let steps = |step: &str| {
        REMOVALS
            .iter()
            .filter(move |r| r.1 == step)
            .copied()
            .collect::<Vec<_>>()
    };

    // Before anything exists: each commission stops at the first call its policy lacks.
    for (sid, step, action) in steps("commission") {
        denied(&project, &users, sid, step, action).await;
    }
    let full = engine_as(&project, &users[0]).await;
    run(&full, "commission")
        .await
        .expect("commission with the whole policy");
    for step in ["status", "deploy", "update", "decommission", "clean"] {
        for (sid, step, action) in steps(step) {
            denied(&project, &users, sid, step, action).await;
        }
        run(&full, step)
            .await
            .unwrap_or_else(|e| panic!("{step} with the whole policy: {e}"));
    }

    // Enforcement is real: what the policy does not grant is refused to the bot's user too.
    let aws = full.aws_for("staging");
    let run = argos::cloud::ec2::Params::new()
        .set("ImageId", "ami-12c6146b")
        .set("MinCount", "1")
        .set("MaxCount", "1");
    let err = aws
        .ec2_call("RunInstances", &run)
        .await
        .expect_err("the bot may not start instances itself");
    let text = format!("{:?}", err);
    assert!(text.contains("ec2:RunInstances"), "{text}");
    drop(moto);
}

/// Every AWS call in the source (each `aws_call!`) is allowed by a statement of the shipped
/// policy, so a new call cannot ship without its permission.
#[test]
fn every_call_argos_makes_is_in_the_policy() {
    let policy = bot_policy();
    let allowed = |action: &str| {
        policy["Statement"].as_array().unwrap().iter().any(|s| {
            s["Effect"] == "Allow"
                && match &s["Action"] {
                    Value::String(a) => matches(a, action),
                    Value::Array(list) => list.iter().any(|a| matches(a.as_str().unwrap(), action)),
                    _ => false,
                }
        })
    };
    let calls = calls_in_source();
    assert!(calls.len() >= 15, "the scan finds the calls: {calls:?}");
    for call in &calls {
        assert!(allowed(call), "{call} is called but not in iam/argos-bot-policy.json");
    }
    let sids: Vec<&str> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Sid"].as_str().expect("every statement has a Sid"))
        .collect();
    for (sid, _, _) in REMOVALS {
        assert!(sids.contains(sid), "{sid} is a statement of the policy");
    }
}

/// What CloudFormation reads, with the caller's rights, to check each resource type of the
/// templates for drift (the read handler of each type). A type added to `formations/` fails
/// the test below until it is listed here and its reads are in the policy.
const DRIFT_READS: &[(&str, &[&str])] = &[
    (
        "AWS::AutoScaling::AutoScalingGroup",
        &[
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeLifecycleHooks",
            "autoscaling:DescribeNotificationConfigurations",
            "ec2:DescribeLaunchTemplateVersions",
        ],
    ),
    (
        "AWS::EC2::Instance",
        &["ec2:DescribeInstances", "ec2:DescribeInstanceAttribute"],
    ),
    (
        "AWS::EC2::LaunchTemplate",
        &["ec2:DescribeLaunchTemplates", "ec2:DescribeLaunchTemplateVersions"],
    ),
    (
        "AWS::EC2::SecurityGroup",
        &["ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules"],
    ),
    (
        "AWS::EC2::SecurityGroupIngress",
        &["ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules"],
    ),
    ("AWS::RDS::DBInstance", &["rds:DescribeDBInstances"]),
    ("AWS::RDS::DBSubnetGroup", &["rds:DescribeDBSubnetGroups"]),
    (
        "AWS::IAM::Role",
        &[
            "iam:GetRole",
            "iam:ListAttachedRolePolicies",
            "iam:ListRolePolicies",
            "iam:GetRolePolicy",
        ],
    ),
    (
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        &[
            "elasticloadbalancing:DescribeLoadBalancers",
            "elasticloadbalancing:DescribeLoadBalancerAttributes",
            "elasticloadbalancing:DescribeTags",
        ],
    ),
    (
        "AWS::ElasticLoadBalancingV2::Listener",
        &[
            "elasticloadbalancing:DescribeListeners",
            "elasticloadbalancing:DescribeListenerAttributes",
        ],
    ),
    (
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        &[
            "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTargetGroupAttributes",
            "elasticloadbalancing:DescribeTags",
        ],
    ),
];

/// A drift detection can read every resource type the templates create, and the statement
/// that grants those reads grants nothing else.
#[test]
fn the_policy_grants_what_a_drift_detection_reads_and_no_more() {
    let policy = bot_policy();
    let statements = policy["Statement"].as_array().unwrap();
    let allowed = |action: &str| {
        statements.iter().any(|s| {
            s["Effect"] == "Allow"
                && match &s["Action"] {
                    Value::String(a) => matches(a, action),
                    Value::Array(list) => list.iter().any(|a| matches(a.as_str().unwrap(), action)),
                    _ => false,
                }
        })
    };
    for action in [
        "cloudformation:DetectStackDrift",
        "cloudformation:DetectStackResourceDrift",
        "cloudformation:DescribeStackDriftDetectionStatus",
        "cloudformation:DescribeStackResourceDrifts",
    ] {
        assert!(allowed(action), "{action} is not in the policy");
    }
    let mut types = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(support::repo().join("formations")).unwrap().flatten() {
        let template: Value = serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
        if let Some(resources) = template["Resources"].as_object() {
            types.extend(
                resources
                    .values()
                    .filter_map(|r| r["Type"].as_str().map(str::to_string)),
            );
        }
    }
    assert!(
        types.contains("AWS::RDS::DBInstance"),
        "the scan finds the types: {types:?}"
    );
    for t in &types {
        let (_, reads) = DRIFT_READS
            .iter()
            .find(|(name, _)| name == t)
            .unwrap_or_else(|| panic!("{t} is in formations/ but not in DRIFT_READS"));
        for action in *reads {
            assert!(allowed(action), "{action} (drift on {t}) is not in the policy");
        }
    }
    let drift_statement = statements
        .iter()
        .find(|s| s["Sid"] == "ReadResourcesForDrift")
        .expect("the ReadResourcesForDrift statement");
    for action in drift_statement["Action"].as_array().unwrap() {
        let action = action.as_str().unwrap();
        assert!(
            DRIFT_READS.iter().any(|(_, reads)| reads.contains(&action)),
            "{action} is granted for drift but no resource type needs it"
        );
        assert!(!action.contains('*'), "{action}: only named read actions");
    }
}

/// The workers' statements grant exactly the Auto Scaling calls Argos makes, the writes only
/// on the app's groups (`argos-*`, as CloudFormation names them after the stack).
#[test]
fn the_policy_grants_the_auto_scaling_calls_argos_makes_and_no_more() {
    let policy = bot_policy();
    let statements = policy["Statement"].as_array().unwrap();
    let actions_of = |sid: &str| -> Vec<String> {
        let s = statements
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("the {sid} statement"));
        s["Action"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let mut granted = actions_of("WorkerGroups");
    granted.extend(actions_of("WorkerLifecycle"));
    granted.sort();
    let called: Vec<String> = calls_in_source()
        .into_iter()
        .filter(|c| c.starts_with("autoscaling:"))
        .collect();
    assert_eq!(
        granted, called,
        "the workers' statements grant what src/ calls through aws_call!, no more"
    );
    let writes = statements.iter().find(|s| s["Sid"] == "WorkerLifecycle").unwrap();
    assert_eq!(
        writes["Resource"],
        "arn:aws:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/argos-*"
    );
    for action in actions_of("WorkerLifecycle") {
        assert!(
            !action.contains("Describe"),
            "{action}: reads are in WorkerGroups (they take no resource)"
        );
    }
}

/// The events queue's consumer may receive and delete on that one queue and nothing else of
/// SQS; the setup's rights are scoped to the same queue and the setup stack's rule.
#[test]
fn the_policy_grants_exactly_the_sqs_actions_of_the_stack_events_queue() {
    let policy = bot_policy();
    let statements = policy["Statement"].as_array().unwrap();
    let sid = |name: &str| {
        statements
            .iter()
            .find(|s| s["Sid"] == name)
            .unwrap_or_else(|| panic!("the {name} statement"))
    };
    let consume = sid("ConsumeStackEvents");
    assert_eq!(
        consume["Action"],
        serde_json::json!(["sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage"])
    );
    assert_eq!(consume["Resource"], "arn:aws:sqs:*:*:argos-stack-events");
    let source_calls: Vec<String> = calls_in_source()
        .into_iter()
        .filter(|c| c.starts_with("sqs:"))
        .collect();
    assert_eq!(
        source_calls,
        ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"]
    );
    for s in statements {
        let actions: Vec<&str> = match &s["Action"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if actions.iter().any(|a| a.starts_with("sqs:")) {
            assert_eq!(s["Resource"], "arn:aws:sqs:*:*:argos-stack-events", "{}", s["Sid"]);
            assert!(
                actions.iter().all(|a| a.starts_with("sqs:") && !a.contains('*')),
                "{}",
                s["Sid"]
            );
        }
        if actions.iter().any(|a| a.starts_with("events:")) {
            assert_eq!(
                s["Resource"], "arn:aws:events:*:*:rule/argos-stack-events-*",
                "{}",
                s["Sid"]
            );
        }
    }
}

fn matches(pattern: &str, action: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => pattern == action,
    }
}

/// `cloudformation:X` / `ec2:X` for every `aws_call!(aws, "X", aws.cfn()... )` under src/.
fn calls_in_source() -> Vec<String> {
    let mut out = Vec::new();
    let mut files = vec![support::repo().join("src")];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for (i, _) in text.match_indices("aws_call!(") {
            let call = &text[i..];
            let end = call.find(".send()").unwrap_or(call.len());
            let call = &call[..end];
            let Some(action) = call.split('"').nth(1) else { continue };
            if action.contains('$') || action.contains(' ') {
                continue; // the macro's own definition
            }
            let service = if call.contains(".cfn()") {
                "cloudformation"
            } else if call.contains(".ec2()") {
                "ec2"
            } else if call.contains(".autoscaling()") {
                "autoscaling"
            } else if call.contains(".sqs()") {
                "sqs"
            } else {
                panic!("{}: cannot tell the service of {action}", p.display())
            };
            // IAM has no batch actions: a batch needs the single action's permission.
            let action = action.strip_suffix("Batch").unwrap_or(action);
            out.push(format!("{service}:{action}"));
        }
        // EC2's calls name their action once: `aws.ec2_call("DescribeImages", …)`.
        for (i, _) in text.match_indices(".ec2_call(\"") {
            let action = text[i..].split('"').nth(1).unwrap_or_default();
            out.push(format!("ec2:{action}"));
        }
    }
    out.sort();
    out.dedup();
    out
}
