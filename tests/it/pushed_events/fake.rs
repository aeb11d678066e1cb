//! On the scripted fake AWS.
use super::*;
use support::fake_aws::*;

const STACK: &str = "argos-staging";
const QUEUE: &str = "argos-stack-events";
const RESOURCES: &[(&str, &str)] = &[
    ("WebSecurityGroup", "AWS::EC2::SecurityGroup"),
    ("DatabaseSecurityGroup", "AWS::EC2::SecurityGroup"),
    ("Database", "AWS::RDS::DBInstance"),
    ("ApiInstance", "AWS::EC2::Instance"),
];
/// The create script's events: the stack's two and three per resource.
const EVENTS: usize = 2 + 3 * 4;
const TEMPLATE: &str =
    r#"{"Resources":{"WebSecurityGroup":{"Type":"AWS::EC2::SecurityGroup","Properties":{"GroupDescription":"web"}}}}"#;

/// A fake whose create of `STACK` takes about a second and a half, with the events queue.
async fn fake_with_queue() -> FakeAws {
    let fake = FakeAws::start().await;
    fake.set_time_scale(4.0);
    fake.create_events_queue(QUEUE);
    fake.script_next_for(
        STACK,
        Op::Create,
        StackScript::create_success(STACK, RESOURCES, &[0.8, 0.8, 2.0, 1.0]),
    );
    fake
}

/// CreateStack with the token, as the engine calls it; returns the stack id.
async fn create(aws: &Aws, token: &str) -> String {
    let out = aws
        .cfn()
        .await
        .create_stack()
        .stack_name(STACK)
        .template_body(TEMPLATE)
        .client_request_token(token)
        .send()
        .await
        .expect("create stack");
    out.stack_id().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicated_and_reordered_events_are_reported_once_and_cloudformation_is_asked_once() {
    let fake = fake_with_queue().await;
    fake.duplicate_pushed();
    fake.reorder_pushed();
    let aws = aws_on(&fake.endpoint_url()).await;
    let store = Store::in_memory().unwrap();
    let stop = CancellationToken::new();
    let c = consumer(&aws, &store, QUEUE, "replica-a");
    tokio::spawn(c.clone().run(stop.clone()));
    let token = "argos-job7-create-argos-staging";
    let id = create(&aws, token).await;
    fake.clear_calls();

    let w = watch(
        &aws,
        STACK,
        &id,
        &follow(&store, token, Duration::from_secs(30)),
        Operation::Create,
        4,
    )
    .await;
    stop.cancel();

    assert_eq!(w.outcome.status, "CREATE_COMPLETE");
    assert!(w.outcome.succeeded);
    assert_each_once(&w.events);
    assert_eq!(w.events.len(), EVENTS, "every event once: {:#?}", w.events);
    assert!(
        w.events.iter().all(|e| e.event_id.starts_with("eb-")),
        "all came pushed"
    );
    // The end confirmed with one DescribeStacks; no event was polled.
    assert_eq!(fake.count("cloudformation:DescribeStacks"), 1);
    assert_eq!(fake.count("cloudformation:DescribeStackEvents"), 0);
    assert_eq!(w.outcome.calls, 1);
    let (_, stored, _) = stats(&c);
    assert_eq!(stored as usize, EVENTS, "the redelivered copies dropped in the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_event_is_found_by_one_poll_after_the_quiet_period_and_nothing_is_reported_twice() {
    let fake = fake_with_queue().await;
    // The stack's own CREATE_COMPLETE never reaches the queue.
    fake.lose_pushed(STACK, "CREATE_COMPLETE");
    let aws = aws_on(&fake.endpoint_url()).await;
    let store = Store::in_memory().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(consumer(&aws, &store, QUEUE, "replica-a").run(stop.clone()));
    let token = "argos-job8-create-argos-staging";
    let id = create(&aws, token).await;
    fake.clear_calls();

    let w = watch(
        &aws,
        STACK,
        &id,
        &follow(&store, token, Duration::from_millis(600)),
        Operation::Create,
        4,
    )
    .await;
    stop.cancel();

    assert_eq!(w.outcome.status, "CREATE_COMPLETE");
    assert_each_once(&w.events);
    assert_eq!(w.events.len(), EVENTS);
    // The poll brought exactly the lost one; the others it found were already reported.
    let polled: Vec<_> = w.events.iter().filter(|e| !e.event_id.starts_with("eb-")).collect();
    assert_eq!(polled.len(), 1, "{polled:#?}");
    assert_eq!(
        (polled[0].logical_id.as_str(), polled[0].status.as_str()),
        (STACK, "CREATE_COMPLETE")
    );
    assert!(fake.count("cloudformation:DescribeStackEvents") >= 1);
    assert_eq!(fake.count("cloudformation:DescribeStacks"), 1, "the end confirmed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_queue_the_watcher_falls_back_to_polling_and_says_so() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(4.0);
    fake.script_next_for(
        STACK,
        Op::Create,
        StackScript::create_success(STACK, RESOURCES, &[0.8, 0.8, 2.0, 1.0]),
    );
    let aws = aws_on(&fake.endpoint_url()).await;
    let store = Store::in_memory().unwrap();
    let stop = CancellationToken::new();
    // No queue (not set up, or no rights): every receive fails, nothing is stored.
    let c = consumer(&aws, &store, QUEUE, "replica-a");
    tokio::spawn(c.clone().run(stop.clone()));
    let token = "argos-job9-create-argos-staging";
    let id = create(&aws, token).await;

    let w = watch(
        &aws,
        STACK,
        &id,
        &follow(&store, token, Duration::from_millis(300)),
        Operation::Create,
        4,
    )
    .await;
    stop.cancel();

    assert_eq!(w.outcome.status, "CREATE_COMPLETE");
    assert_each_once(&w.events);
    assert_eq!(w.events.len(), EVENTS);
    assert!(
        w.infos
            .iter()
            .any(|i| i == "no stack event pushed for 300ms: polling argos-staging"),
        "{:?}",
        w.infos
    );
    let (_, stored, errors) = stats(&c);
    assert_eq!(stored, 0);
    assert!(errors >= 1, "the missing queue is an error the consumer backs off from");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttled_receives_are_retried_and_the_events_still_arrive_pushed() {
    let fake = fake_with_queue().await;
    fake.throttle("sqs:ReceiveMessage", 3);
    let aws = aws_on(&fake.endpoint_url()).await;
    let store = Store::in_memory().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(consumer(&aws, &store, QUEUE, "replica-a").run(stop.clone()));
    let token = "argos-job10-create-argos-staging";
    let id = create(&aws, token).await;

    let w = watch(
        &aws,
        STACK,
        &id,
        &follow(&store, token, Duration::from_secs(30)),
        Operation::Create,
        4,
    )
    .await;
    stop.cancel();

    assert_eq!(w.outcome.status, "CREATE_COMPLETE");
    assert_each_once(&w.events);
    assert_eq!(w.events.len(), EVENTS);
    assert!(w.events.iter().all(|e| e.event_id.starts_with("eb-")));
    let throttled = fake
        .calls()
        .iter()
        .filter(|c| c.service == "sqs" && c.throttled)
        .count();
    assert_eq!(throttled, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_dying_between_receive_and_delete_loses_nothing_and_its_poll_is_taken_over() {
    let fake = FakeAws::start().await;
    fake.create_events_queue(QUEUE);
    fake.set_visibility_timeout(Duration::from_millis(300));
    let aws = aws_on(&fake.endpoint_url()).await;
    // A stack whose events are all visible at once.
    let id = fake.add_stack(STACK, TEMPLATE, &[], RESOURCES);
    let store = Store::in_memory().unwrap();

    // Replica A receives and stores, then dies before deleting: its lease stays until it runs out.
    let mut a = consumer(&aws, &store, QUEUE, "replica-a");
    a.die_before_delete = true;
    a.clone().run(CancellationToken::new()).await;
    let (_, stored_by_a, _) = stats(&a);
    assert!(stored_by_a > 0);
    assert_eq!(fake.queued_messages(), EVENTS, "nothing deleted yet");

    // Replica B waits for A's lease, receives the redelivered messages, stores none twice.
    let b = consumer(&aws, &store, QUEUE, "replica-b");
    let stop = CancellationToken::new();
    let started = std::time::Instant::now();
    tokio::spawn(b.clone().run(stop.clone()));
    while fake.queued_messages() > 0 {
        assert!(started.elapsed() < Duration::from_secs(20), "B empties the queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "B waited for A's lease to run out"
    );
    let (_, stored_by_b, _) = stats(&b);
    assert_eq!(
        stored_by_a + stored_by_b,
        EVENTS as u64,
        "A stored {stored_by_a}, B {stored_by_b}"
    );
    let all = store.stack_events_since(&id, "", 0).unwrap();
    assert_eq!(all.len(), EVENTS, "each event stored once");
    let times: Vec<_> = all.iter().map(|e| e.event.timestamp).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "read back by event time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_poll_one_account_at_once() {
    let fake = FakeAws::start().await;
    fake.create_events_queue(QUEUE);
    let aws = aws_on(&fake.endpoint_url()).await;
    let store = Store::in_memory().unwrap();
    let stop = CancellationToken::new();
    let a = consumer(&aws, &store, QUEUE, "replica-a");
    let b = consumer(&aws, &store, QUEUE, "replica-b");
    tokio::spawn(a.clone().run(stop.clone()));
    tokio::spawn(b.clone().run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.cancel();
    let (ra, _, _) = stats(&a);
    let (rb, _, _) = stats(&b);
    assert!((ra == 0) != (rb == 0), "exactly one polls: a {ra}, b {rb}");
    // 1 s long polls on an empty queue: about one receive a second, not a spin.
    assert!(ra + rb <= 4, "a {ra}, b {rb}");
}

/// The engine sets the job's token on DeleteStack and the job's watcher follows the delete
/// through the events the consumer stored: CloudFormation is asked once for the boundary
/// before the delete and once to confirm its end, never polled. The same job's token again
/// (a takeover repeats the call) is the same request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jobs_delete_carries_its_token_and_is_watched_through_the_store() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(4.0);
    fake.create_events_queue(QUEUE);
    let project = support::TestProject::new(&fake.endpoint_url(), "");
    let store = Store::in_memory().unwrap();
    let engine = project
        .engine()
        .await
        .with_pushed_events(Pushed::new(store.clone(), Duration::from_secs(30)));
    support::add_staging_stack(&fake, &engine, "ami-0a1b2c3d4e5f60718", &[], RESOURCES);
    fake.script_next_for(
        STACK,
        Op::Delete,
        StackScript::delete_success(STACK, RESOURCES, &[0.5, 0.5, 1.0, 0.5]),
    );
    let stop = CancellationToken::new();
    tokio::spawn(consumer(&engine.aws, &store, QUEUE, "replica-a").run(stop.clone()));
    // Let the consumer take the stack's create events off the queue first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.clear_calls();

    let mut rec = support::Recorder::new(&engine, "staging", None);
    rec.ctx.target = rec.ctx.target.clone().for_job("alice", Some(42));
    let summary = argos::engine::decommission(&rec.ctx).await.expect("decommissioned");
    stop.cancel();

    assert_eq!(summary.headline, "decommissioned argos-staging");
    let delete = fake
        .calls()
        .into_iter()
        .find(|c| c.action == "DeleteStack")
        .expect("DeleteStack");
    assert_eq!(delete.params["ClientRequestToken"], "argos-job42-delete-argos-staging");
    let events: Vec<StackEvent> = rec
        .events()
        .into_iter()
        .filter_map(|p| match p {
            Progress::StackEvent(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_each_once(&events);
    assert!(
        !events.is_empty() && events.iter().all(|e| e.event_id.starts_with("eb-")),
        "{events:#?}"
    );
    assert_eq!(events.last().map(|e| e.status.as_str()), Some("DELETE_COMPLETE"));
    assert!(
        events.iter().all(|e| e.status.starts_with("DELETE")),
        "only this operation's events (matched by its token): {events:#?}"
    );
    // Describe before, the boundary, the delete, one confirmation.
    assert_eq!(
        fake.count("cloudformation:DescribeStackEvents"),
        1,
        "{:?}",
        fake.actions()
    );
    assert_eq!(
        argos::cloud::events::request_token(Some(42), "delete", STACK),
        "argos-job42-delete-argos-staging",
        "the same job asks the same"
    );
}

/// A bot whose config names the queue follows its jobs through pushed events and consumes the
/// queue once it starts its periodic work; retiring stops the consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bot_consumes_the_queue_when_the_config_names_it_and_stops_when_retired() {
    let fake = FakeAws::start().await;
    fake.create_events_queue(QUEUE);
    let project = support::TestProject::new(&fake.endpoint_url(), "");
    let yaml = std::fs::read_to_string(&project.config_path).unwrap();
    std::fs::write(
        &project.config_path,
        yaml.replacen("watch:\n", &format!("watch:\n  events_queue: {QUEUE}\n"), 1),
    )
    .unwrap();
    let store = Store::open(&project.config().database_path()).unwrap();
    let bot = argos::bot::Bot::new(project.engine().await, store);
    assert!(bot.engine().pushed.is_some(), "its watchers read the store");
    assert_eq!(
        fake.count("sqs:ReceiveMessage"),
        0,
        "nothing before the bot starts its work"
    );

    bot.resume_unfinished().await;
    let started = std::time::Instant::now();
    while fake.count("sqs:ReceiveMessage") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the consumer polls: {:?}",
            fake.actions()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bot.retire();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = fake.count("sqs:ReceiveMessage");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.count("sqs:ReceiveMessage"), after, "retired: no more receives");
}
