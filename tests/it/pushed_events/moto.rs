//! On moto: `argos setup-events` makes the rule and the queue, events put on the default bus
//! as CloudFormation would (moto's CloudFormation publishes none) reach the queue only for the
//! app's stacks, the consumer long-polls them into the store and the watcher reports them.
use super::*;
use support::moto::Moto;
use support::TestProject;

use aws_config::BehaviorVersion;
use aws_sdk_cloudformation::config::{Credentials, Region};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

const QUEUE: &str = "argos-stack-events";
const TEMPLATE: &str =
    r#"{"Resources":{"WebSecurityGroup":{"Type":"AWS::EC2::SecurityGroup","Properties":{"GroupDescription":"web"}}}}"#;

async fn eventbridge(moto: &Moto) -> aws_sdk_eventbridge::Client {
    let cfg = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&moto.url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "static"))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        )
        .load()
        .await;
    aws_sdk_eventbridge::Client::new(&cfg)
}

/// CloudFormation's events of one create, as it would publish them.
fn create_events(stack_id: &str, stack: &str) -> Vec<StackEvent> {
    let at = chrono::Utc::now();
    let e = |i: i64, logical: &str, kind: &str, status: &str, reason: Option<&str>| StackEvent {
        event_id: format!("{logical}-{status}-{i}"),
        stack_name: stack.to_string(),
        stack_id: stack_id.to_string(),
        timestamp: Some(at + chrono::Duration::seconds(i)),
        logical_id: logical.to_string(),
        physical_id: String::new(),
        resource_type: kind.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
    };
    let sg = "AWS::EC2::SecurityGroup";
    let own = "AWS::CloudFormation::Stack";
    vec![
        e(0, stack, own, "CREATE_IN_PROGRESS", Some("User Initiated")),
        e(1, "WebSecurityGroup", sg, "CREATE_IN_PROGRESS", None),
        e(
            2,
            "WebSecurityGroup",
            sg,
            "CREATE_IN_PROGRESS",
            Some("Resource creation Initiated"),
        ),
        e(3, "WebSecurityGroup", sg, "CREATE_COMPLETE", None),
        e(4, stack, own, "CREATE_COMPLETE", None),
    ]
}

async fn put(bus: &aws_sdk_eventbridge::Client, events: &[StackEvent], token: &str) {
    let entries: Vec<PutEventsRequestEntry> = events
        .iter()
        .map(|e| {
            let (kind, detail) = argos::cloud::events::detail_json(e, token);
            PutEventsRequestEntry::builder()
                .source("aws.cloudformation")
                .detail_type(kind)
                .detail(detail)
                .resources(&e.stack_id)
                .time(aws_sdk_eventbridge::primitives::DateTime::from_secs(
                    e.timestamp.unwrap().timestamp(),
                ))
                .build()
        })
        .collect();
    let out = bus
        .put_events()
        .set_entries(Some(entries))
        .send()
        .await
        .expect("put events");
    assert_eq!(out.failed_entry_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_setup_command_routes_the_apps_stack_events_to_the_queue_and_the_watcher_reports_them() {
    let moto = Moto::start().await;
    let project = TestProject::new(&moto.url, "");
    let yaml = std::fs::read_to_string(&project.config_path).unwrap();
    std::fs::write(
        &project.config_path,
        yaml.replacen(
            "watch:\n",
            &format!("watch:\n  events_queue: {QUEUE}\n  events_quiet_secs: 30\n"),
            1,
        ),
    )
    .unwrap();

    let (out, code) = support::run_cli(&project, "ops", &["setup-events"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("created argos-stack-events in default@us-east-1"), "{out}");
    let (out, code) = support::run_cli(&project, "ops", &["setup-events"]).await;
    assert_eq!(code, 0, "a second run updates or finds it up to date: {out}");
    let (out, _) = support::run_cli(&project, "ops", &["check"]).await;
    assert!(out.contains("pushed through SQS queue argos-stack-events"), "{out}");

    let engine = project.engine().await;
    let aws = engine.aws.clone();
    let url = aws
        .sqs()
        .await
        .get_queue_url()
        .queue_name(QUEUE)
        .send()
        .await
        .expect("the queue exists");
    assert!(url.queue_url().unwrap().ends_with("/argos-stack-events"));

    let token = "argos-job3-create-argos-staging";
    let created = aws
        .cfn()
        .await
        .create_stack()
        .stack_name("argos-staging")
        .template_body(TEMPLATE)
        .client_request_token(token)
        .send()
        .await
        .unwrap();
    let stack_id = created.stack_id().unwrap().to_string();
    let store = Store::in_memory().unwrap();
    let stop = CancellationToken::new();
    let mut c = consumer(&aws, &store, QUEUE, "replica-a");
    c.wait_secs = 5;
    tokio::spawn(c.clone().run(stop.clone()));

    let bus = eventbridge(&moto).await;
    // Another app's stack: the rule's prefix keeps its events out of the queue.
    let foreign_id = stack_id.replace("stack/argos-staging/", "stack/other-staging/");
    put(&bus, &create_events(&foreign_id, "other-staging"), "x").await;
    let events = create_events(&stack_id, "argos-staging");
    put(&bus, &events, token).await;

    let w = watch(
        &aws,
        "argos-staging",
        &stack_id,
        &follow(&store, token, Duration::from_secs(30)),
        Operation::Create,
        1,
    )
    .await;
    stop.cancel();

    assert_eq!(w.outcome.status, "CREATE_COMPLETE");
    assert_each_once(&w.events);
    let got: Vec<(&str, &str)> = w
        .events
        .iter()
        .map(|e| (e.logical_id.as_str(), e.status.as_str()))
        .collect();
    let want: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.logical_id.as_str(), e.status.as_str()))
        .collect();
    assert_eq!(got, want, "reported in order, from the queue");
    assert_eq!(w.outcome.calls, 1, "one DescribeStacks confirmed the end");
    assert!(store.stack_events_since(&foreign_id, "x", 0).unwrap().is_empty());
    let (receives, stored, _) = stats(&c);
    assert_eq!(stored, 5);
    assert!(receives >= 1);
}
