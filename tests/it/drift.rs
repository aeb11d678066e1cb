//! `drift` on the scripted fake AWS (moto has no drift APIs): in sync with a resource type
//! CloudFormation cannot check named, drifted properties with secrets masked, results over
//! several pages, a failed, a throttled and a too-long detection; and through the bot, as a
//! job under the environment's lock; remembered for status and envs; and on a schedule, posting
//! once per change across two replicas.
use crate::support;

use std::time::Duration;

use argos::bot::announce;
use argos::bot::port::ChatEvent;
use argos::bot::Bot;
use argos::engine::{self, DriftReport};
use argos::error::Error;
use argos::permissions::Identity;
use argos::store::{DriftState, Store};
use support::chat::{Posted, RecordingPort};
use support::fake_aws::{DriftScript, FakeAws, ResourceDrift};
use support::{Recorder, TestProject, DB_PASSWORD};

const CONFIG: &str = r#"
chat:
  commands_per_minute: 60
  command_burst: 10
permissions:
  roles:
    admins: { console_users: [alice] }
    readers: { console_users: [bob] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
    - role: readers
      environments: [staging]
      actions: [status]
"#;

const TEMPLATE: &str = r#"{"Resources": {
  "ApiEc2Instance": {"Type": "AWS::EC2::Instance", "Properties": {}},
  "Database": {"Type": "AWS::RDS::DBInstance", "Properties": {}},
  "Mailer": {"Type": "Custom::Mailer", "Properties": {}}
}}"#;

const RESOURCES: &[(&str, &str)] = &[
    ("ApiEc2Instance", "AWS::EC2::Instance"),
    ("Database", "AWS::RDS::DBInstance"),
    ("Mailer", "Custom::Mailer"),
];

fn staging_stack(fake: &FakeAws) {
    fake.add_stack("argos-staging", TEMPLATE, &[], RESOURCES);
}

async fn engine(fake: &FakeAws, drift_timeout_secs: u64) -> (TestProject, engine::Engine) {
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    let mut config = project.config();
    config.settings.timeouts.drift_detection_secs = drift_timeout_secs;
    let engine = engine::Engine::new(config).await;
    (project, engine)
}

async fn detect(engine: &engine::Engine) -> Result<DriftReport, Error> {
    let rec = Recorder::new(engine, "staging", None);
    engine::drift(&rec.ctx).await
}

#[tokio::test]
async fn in_sync_still_names_the_resources_cloudformation_could_not_check() {
    let fake = FakeAws::start().await;
    staging_stack(&fake);
    // Custom::Mailer is a type drift detection does not support: it is left out of the results.
    fake.script_drift(
        "argos-staging",
        DriftScript::complete(
            0.2,
            vec![
                ResourceDrift::in_sync("ApiEc2Instance", "AWS::EC2::Instance"),
                ResourceDrift::in_sync("Database", "AWS::RDS::DBInstance"),
            ],
        ),
    );
    let (_project, engine) = engine(&fake, 30).await;
    let report = detect(&engine).await.unwrap();
    assert!(!report.is_drifted());
    assert_eq!(report.in_sync, 2);
    assert_eq!(
        report.not_checked,
        vec![("Mailer".to_string(), "Custom::Mailer".to_string())]
    );
    assert!(report.took >= Duration::from_millis(200), "{:?}", report.took);
    let summary = argos::bot::messages::drift_summary(&report);
    assert_eq!(
        summary.headline,
        "argos-staging: in sync, but 1 resource(s) not checked"
    );
    assert!(summary.details.iter().any(
        |d| d == "not checked (CloudFormation cannot check these types or gave no result): Mailer (Custom::Mailer)"
    ));
    assert!(summary.details.iter().any(|d| d.starts_with("detection took ")));
    // The status was polled until the detection was complete.
    assert!(fake.count("DescribeStackDriftDetectionStatus") >= 2);
}

#[tokio::test]
async fn drifted_properties_are_listed_over_several_pages_with_secrets_masked() {
    let fake = FakeAws::start().await;
    staging_stack(&fake);
    fake.set_event_page_size(1);
    fake.script_drift(
        "argos-staging",
        DriftScript::complete(
            0.0,
            vec![
                ResourceDrift::modified(
                    "ApiEc2Instance",
                    "AWS::EC2::Instance",
                    &[("/InstanceType", "t3.small", "t3.large")],
                ),
                ResourceDrift::modified(
                    "Database",
                    "AWS::RDS::DBInstance",
                    &[
                        ("/MasterUserPassword", "typed-by-hand-1", "typed-by-hand-2"),
                        ("/DBParameterGroupName", DB_PASSWORD, "default.postgres16"),
                    ],
                ),
                ResourceDrift::in_sync("Mailer", "Custom::Mailer"),
            ],
        ),
    );
    let (_project, engine) = engine(&fake, 30).await;
    let report = detect(&engine).await.unwrap();
    // One result per page: three pages, all read.
    assert_eq!(fake.count("DescribeStackResourceDrifts"), 3);
    assert_eq!(report.drifted.len(), 2);
    assert_eq!(report.in_sync, 1);
    assert!(report.not_checked.is_empty());
    let summary = argos::bot::messages::drift_summary(&report);
    assert_eq!(summary.headline, "argos-staging: drifted: 2 resource(s)");
    let text = summary.details.join("\n");
    assert!(text.contains("ApiEc2Instance (AWS::EC2::Instance): MODIFIED"), "{text}");
    assert!(
        text.contains("  /InstanceType [NOT_EQUAL]: expected t3.small, actual t3.large"),
        "{text}"
    );
    assert!(
        text.contains("  /MasterUserPassword [NOT_EQUAL]: expected [redacted], actual [redacted]"),
        "{text}"
    );
    assert!(
        text.contains("  /DBParameterGroupName [NOT_EQUAL]: expected [redacted], actual default.postgres16"),
        "{text}"
    );
    for secret in ["typed-by-hand-1", "typed-by-hand-2", DB_PASSWORD] {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    }
}

#[tokio::test]
async fn a_failed_detection_says_why() {
    let fake = FakeAws::start().await;
    staging_stack(&fake);
    fake.script_drift(
        "argos-staging",
        DriftScript::failed(0.1, "Failed to detect drift on resource [Database]: Access Denied"),
    );
    let (_project, engine) = engine(&fake, 30).await;
    let e = detect(&engine).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "drift detection failed: Failed to detect drift on resource [Database]: Access Denied"
    );
    assert_eq!(fake.count("DescribeStackResourceDrifts"), 0);
}

#[tokio::test]
async fn throttled_calls_are_retried_and_throttling_that_persists_is_named() {
    let fake = FakeAws::start().await;
    staging_stack(&fake);
    let (_project, engine) = engine(&fake, 30).await;
    // A few throttled answers: the SDK retries the start, the poll just polls again.
    fake.throttle("DetectStackDrift", 2);
    fake.throttle("DescribeStackDriftDetectionStatus", 5);
    fake.throttle("DescribeStackResourceDrifts", 1);
    let report = detect(&engine).await.unwrap();
    assert_eq!(report.in_sync, 3, "{report:?}");
    let throttled = fake.calls().iter().filter(|c| c.throttled).count();
    assert_eq!(throttled, 8);

    // More throttling than the SDK's attempts (max_attempts 4): the error says so.
    fake.throttle("DetectStackDrift", 10);
    let e = detect(&engine).await.unwrap_err().to_string();
    assert!(e.contains("Throttling") || e.contains("Rate exceeded"), "{e}");
    assert!(e.contains("DetectStackDrift"), "{e}");
}

#[tokio::test]
async fn a_detection_that_outlasts_its_timeout_says_so() {
    let fake = FakeAws::start().await;
    staging_stack(&fake);
    fake.script_drift("argos-staging", DriftScript::complete(f64::INFINITY, vec![]));
    let (_project, engine) = engine(&fake, 1).await;
    let started = std::time::Instant::now();
    let e = detect(&engine).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "timed out: drift detection still running after 1s (timeouts.drift_detection_secs); its result was not read"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(fake.count("DescribeStackResourceDrifts"), 0);
}

#[tokio::test]
async fn a_missing_stack_is_refused_before_any_detection() {
    let fake = FakeAws::start().await;
    let (_project, engine) = engine(&fake, 30).await;
    let e = detect(&engine).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "stack argos-staging does not exist: there is nothing to check for drift"
    );
    assert_eq!(fake.count("DetectStackDrift"), 0);
}

fn said(name: &str, text: &str) -> ChatEvent {
    ChatEvent {
        identity: Identity {
            platform: argos::address::Surface::CONSOLE,
            user_id: name.into(),
            display_name: name.into(),
            platform_roles: vec![],
        },
        channel: "ops".into(),
        text: text.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_through_the_bot_is_a_job_whose_summary_is_the_report() {
    let fake = FakeAws::start().await;
    staging_stack(&fake);
    fake.script_drift(
        "argos-staging",
        DriftScript::complete(
            0.5,
            vec![
                ResourceDrift::modified(
                    "ApiEc2Instance",
                    "AWS::EC2::Instance",
                    &[("/InstanceType", "t3.small", "t3.large")],
                ),
                ResourceDrift::in_sync("Database", "AWS::RDS::DBInstance"),
            ],
        ),
    );
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    let store = Store::open(&project.config().database_path()).unwrap();
    let bot = Bot::new(project.engine().await, store);
    let port = RecordingPort::new();
    bot.add_port(port.clone());

    // Someone without the grant is refused, and nothing is asked of AWS.
    let denied = bot.handle(said("bob", "staging drift")).await.unwrap();
    assert!(
        denied.contains("You don't have permission for drift on staging"),
        "{denied}"
    );
    assert_eq!(fake.count("DetectStackDrift"), 0);

    assert_eq!(
        bot.handle(said("alice", "staging drift")).await,
        None,
        "the status message is the answer"
    );
    // It holds the environment's lock while it runs: an update waits or is refused.
    let busy = bot.handle(said("alice", "staging update")).await.unwrap();
    assert!(busy.contains("staging is busy: job #1 (drift by alice)"), "{busy}");
    bot.idle().await;

    let job = bot.store().job(1).unwrap().unwrap();
    assert_eq!(job.action, "drift");
    assert_eq!(job.state, argos::store::JobState::Succeeded, "{job:?}");
    let Some(Posted::Sent { id, .. }) = port.posted().into_iter().next() else {
        panic!("no status message")
    };
    let last = port.text_of(&id).unwrap();
    assert!(last.contains("argos-staging: drifted: 1 resource(s)"), "{last}");
    assert!(
        last.contains("/InstanceType [NOT_EQUAL]: expected t3.small, actual t3.large"),
        "{last}"
    );
    assert!(
        last.contains("Mailer (Custom::Mailer)"),
        "the unchecked resource is named: {last}"
    );

    // Remembered: status and envs say so.
    let recorded = bot.store().last_drift("staging").unwrap().expect("recorded");
    assert_eq!((recorded.state, recorded.drifted), (DriftState::Drifted, 1));
    let status = bot.handle(said("alice", "staging status")).await.unwrap();
    assert!(
        status.ends_with("\nDrift: drifted: 1 resource, checked just now"),
        "{status}"
    );
    let envs = bot.handle(said("alice", "envs")).await.unwrap();
    assert!(
        envs.lines()
            .any(|l| l.starts_with("• staging: ") && l.ends_with(" · drifted: 1 resource, checked just now")),
        "{envs}"
    );
    assert!(
        envs.lines()
            .any(|l| l.starts_with("• sandbox: ") && !l.contains("drift")),
        "never checked: nothing said: {envs}"
    );
}

#[tokio::test]
async fn a_failed_detection_is_remembered_as_failed() {
    let fake = FakeAws::start().await;
    staging_stack(&fake);
    fake.script_drift("argos-staging", DriftScript::failed(0.0, "Internal Failure"));
    let (project, engine) = engine(&fake, 30).await;
    let store = Store::open(&project.config().database_path()).unwrap();
    let engine = engine.with_store(store.clone());
    let rec = Recorder::new(&engine, "staging", None);
    let e = engine::drift_and_record(&rec.ctx).await.unwrap_err();
    assert_eq!(e.to_string(), "drift detection failed: Internal Failure");
    let recorded = store.last_drift("staging").unwrap().expect("recorded");
    assert_eq!(recorded.state, DriftState::Failed);
    assert_eq!(
        recorded.summary,
        r#"{"error":"drift detection failed: Internal Failure"}"#
    );
}

const SCHEDULED: &str = r#"
permissions:
  roles:
    admins: { console_users: [alice] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
schedules:
  - name: hourly-drift
    kind: drift
    environments: [staging]
    cron: "0 * * * *"
    platform: console
    channel: ops
"#;

fn posts(port: &RecordingPort) -> Vec<String> {
    port.posted()
        .into_iter()
        .filter_map(|p| match p {
            Posted::Sent { text, .. } => Some(text),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_schedule_posts_once_per_change_across_two_replicas() {
    let fake = FakeAws::start().await;
    staging_stack(&fake);
    let project = TestProject::new(&fake.endpoint_url(), SCHEDULED);
    let path = project.config().database_path();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let bot = Bot::new(project.engine().await, Store::open(&path).unwrap());
        let port = RecordingPort::new();
        bot.add_port(port.clone());
        replicas.push((bot, port));
    }
    let s = replicas[0].0.engine().config.settings.schedules[0].clone();
    let all_posts = || -> Vec<String> { replicas.iter().flat_map(|(_, p)| posts(p)).collect() };
    let hour = |h: i64| chrono::Utc::now() + chrono::TimeDelta::hours(h);
    let modified =
        |id: &str| ResourceDrift::modified(id, "AWS::EC2::Instance", &[("/InstanceType", "t3.small", "t3.large")]);

    // First run: in sync, and nothing was known before: nothing to say.
    let due = hour(1);
    let (a, b) = tokio::join!(
        announce::run_once(&replicas[0].0, &s, due),
        announce::run_once(&replicas[1].0, &s, due)
    );
    assert!(a ^ b, "one replica claims the run");
    assert_eq!(fake.count("DetectStackDrift"), 1);
    assert!(all_posts().is_empty(), "{:?}", all_posts());

    // Newly drifted: both replicas try the run; one detection, one post.
    fake.script_drift(
        "argos-staging",
        DriftScript::complete(
            0.0,
            vec![
                modified("ApiEc2Instance"),
                ResourceDrift::in_sync("Database", "AWS::RDS::DBInstance"),
            ],
        ),
    );
    let due = hour(2);
    let (a, b) = tokio::join!(
        announce::run_once(&replicas[0].0, &s, due),
        announce::run_once(&replicas[1].0, &s, due)
    );
    assert!(a ^ b, "one replica claims the run");
    assert_eq!(fake.count("DetectStackDrift"), 2);
    assert_eq!(
        all_posts(),
        vec!["🔎 **Drift check** (hourly-drift)\n⚠️ staging: drifted: 1 resource(s) (ApiEc2Instance)\nDetails: `!argos <env> drift`."]
    );

    // The same drift again: nothing new is posted, from either replica.
    fake.script_drift(
        "argos-staging",
        DriftScript::complete(0.0, vec![modified("ApiEc2Instance")]),
    );
    announce::run_once(&replicas[1].0, &s, hour(3)).await;
    assert_eq!(all_posts().len(), 1, "{:?}", all_posts());

    // The drift changed: another resource drifted too.
    fake.script_drift(
        "argos-staging",
        DriftScript::complete(0.0, vec![modified("ApiEc2Instance"), modified("Database")]),
    );
    announce::run_once(&replicas[0].0, &s, hour(4)).await;
    let sent = all_posts();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        sent[1].contains("⚠️ staging: drift changed: 2 resource(s) now (ApiEc2Instance, Database)"),
        "{}",
        sent[1]
    );

    // Back in sync (the default script: every resource in sync).
    announce::run_once(&replicas[1].0, &s, hour(5)).await;
    let sent = all_posts();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(sent[2].contains("✅ staging: back in sync"), "{}", sent[2]);
    // Each run was claimed once, whichever replica ran it.
    assert_eq!(replicas[0].0.store().schedule_run_count(&s.name).unwrap(), 5);
}

#[tokio::test]
async fn a_drift_schedule_naming_an_unknown_environment_is_refused_naming_the_key() {
    let project = TestProject::new(
        "http://127.0.0.1:9",
        &SCHEDULED.replace("environments: [staging]", "environments: [staging, qa]"),
    );
    let e = argos::config::Config::load(&project.config_path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("schedules[0].environments[1]"), "{e}");
    assert!(e.contains("unknown environment 'qa'"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_check_holds_the_lock_so_a_deploy_asked_meanwhile_is_refused() {
    let fake = FakeAws::start().await;
    staging_stack(&fake);
    // A detection that takes a while: the deploy is asked for in the middle of it.
    fake.script_drift(
        "argos-staging",
        DriftScript::complete(
            1.5,
            vec![ResourceDrift::in_sync("ApiEc2Instance", "AWS::EC2::Instance")],
        ),
    );
    let project = TestProject::new(&fake.endpoint_url(), SCHEDULED);
    let bot = Bot::new(
        project.engine().await,
        Store::open(&project.config().database_path()).unwrap(),
    );
    let port = RecordingPort::new();
    bot.add_port(port.clone());
    let s = bot.engine().config.settings.schedules[0].clone();
    let due = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let run = tokio::spawn({
        let bot = bot.clone();
        async move { announce::run_once(&bot, &s, due).await }
    });
    // The check's job takes the lock before it asks AWS for a detection.
    tokio::time::timeout(Duration::from_secs(10), async {
        while fake.count("DetectStackDrift") == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the scheduled detection started");
    let lock = bot.store().env_lock("staging").unwrap().expect("a lock row");
    assert_eq!(lock.job_id, Some(1), "{lock:?}");

    let busy = bot.handle(said("alice", "staging deploy")).await.unwrap();
    assert!(
        busy.contains("staging is busy: job #1 (drift by schedule hourly-drift)"),
        "{busy}"
    );
    assert!(run.await.unwrap(), "the run was claimed");
    // The check's job ended with the detection and freed the environment.
    let job = bot.store().job(1).unwrap().unwrap();
    assert_eq!(
        (job.action.as_str(), job.state),
        ("drift", argos::store::JobState::Succeeded)
    );
    assert_eq!(job.requester_name, "schedule hourly-drift");
    assert_eq!(
        job.result.as_deref(),
        Some("argos-staging: in sync, but 2 resource(s) not checked")
    );
    assert_eq!(bot.store().env_lock("staging").unwrap().unwrap().job_id, None);
    assert!(
        posts(&port).is_empty(),
        "a first check in sync posts nothing: {:?}",
        posts(&port)
    );
    assert_eq!(bot.store().job(2).unwrap(), None, "the deploy was refused, not queued");
}
