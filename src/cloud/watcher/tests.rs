use super::*;

fn ev(logical: &str, status: &str, reason: Option<&str>) -> StackEvent {
    StackEvent {
        event_id: format!("{logical}-{status}"),
        stack_name: "argos-staging".into(),
        stack_id: "arn:stack/argos-staging/1".into(),
        timestamp: None,
        logical_id: logical.into(),
        physical_id: String::new(),
        resource_type: if logical == "argos-staging" {
            "AWS::CloudFormation::Stack"
        } else {
            "AWS::EC2::Instance"
        }
        .into(),
        status: status.into(),
        reason: reason.map(str::to_string),
    }
}

#[test]
fn root_cause_skips_cancellations_and_wrappers() {
    let mut w = StackWatcher::for_new_stack("argos-staging", "arn:stack/argos-staging/1");
    for e in [
        ev("argos-staging", "CREATE_IN_PROGRESS", Some("User Initiated")),
        ev("Db", "CREATE_FAILED", Some("Resource creation cancelled")),
        ev(
            "ApiEc2Instance",
            "CREATE_FAILED",
            Some("The requested configuration is currently not supported."),
        ),
        ev(
            "argos-staging",
            "ROLLBACK_IN_PROGRESS",
            Some("The following resource(s) failed to create: [ApiEc2Instance, Db]. Rollback requested by user."),
        ),
        ev("argos-staging", "ROLLBACK_COMPLETE", None),
    ] {
        w.absorb(&e);
    }
    let o = w.outcome(Operation::Create, "ROLLBACK_COMPLETE");
    assert!(!o.succeeded);
    let cause = o.root_cause.unwrap();
    assert!(
        cause.starts_with("ApiEc2Instance (AWS::EC2::Instance) CREATE_FAILED: The requested configuration"),
        "{cause}"
    );
    assert_eq!(o.failed.len(), 2);
}

const BASE: Duration = Duration::from_millis(2500);
const CAP: Duration = Duration::from_secs(30);

fn creating(resource_type: &str, age_secs: u64) -> InProgress<'_> {
    InProgress {
        resource_type,
        creating: true,
        initiated: true,
        age: Duration::from_secs(age_secs),
    }
}

#[test]
fn slow_creates_inside_their_minimum_wait_until_the_earliest_completion() {
    let rds = creating("AWS::RDS::DBInstance", 230);
    assert_eq!(paced_wait(BASE, CAP, true, &[rds]), Duration::from_secs(10));
    // The earliest of several: the instance may complete in 15 s.
    let (rds, ec2) = (creating("AWS::RDS::DBInstance", 200), creating("AWS::EC2::Instance", 5));
    assert_eq!(paced_wait(BASE, CAP, true, &[rds, ec2]), Duration::from_secs(15));
}

#[test]
fn slow_wait_is_capped_and_never_shorter_than_the_base() {
    let young = creating("AWS::RDS::DBInstance", 10);
    assert_eq!(paced_wait(BASE, CAP, true, &[young]), CAP);
    let almost = InProgress {
        age: Duration::from_millis(239_000),
        ..young
    };
    assert_eq!(paced_wait(BASE, CAP, true, &[almost]), BASE);
}

#[test]
fn ordinary_pace_unless_every_running_resource_is_a_young_slow_create() {
    let rds = creating("AWS::RDS::DBInstance", 60);
    let sg = creating("AWS::EC2::SecurityGroup", 1);
    let cases: [(&str, bool, Vec<InProgress<'_>>); 7] = [
        ("nothing running", true, vec![]),
        ("a fast type alongside", true, vec![rds, sg]),
        ("past its minimum", true, vec![creating("AWS::RDS::DBInstance", 240)]),
        ("stack rolling back or cleaning up", false, vec![rds]),
        (
            "not initiated yet",
            true,
            vec![InProgress {
                initiated: false,
                ..rds
            }],
        ),
        (
            "an update, not a create",
            true,
            vec![InProgress { creating: false, ..rds }],
        ),
        (
            "an auto scaling group",
            true,
            vec![creating("AWS::AutoScaling::AutoScalingGroup", 1)],
        ),
    ];
    for (case, steady, running) in cases {
        assert_eq!(paced_wait(BASE, CAP, steady, &running), BASE, "{case}");
    }
}

#[test]
fn every_slow_type_has_a_plausible_minimum() {
    for (t, secs) in SLOW_CREATES {
        assert!(t.starts_with("AWS::") && t.matches("::").count() == 2, "{t}");
        assert!((10..=600).contains(secs), "{t}: {secs}");
    }
    assert_eq!(min_create_duration("AWS::EC2::SecurityGroup"), None);
}

fn event_at(logical: &str, rtype: &str, status: &str, reason: Option<&str>, secs: i64) -> StackEvent {
    StackEvent {
        event_id: format!("{logical}-{status}-{secs}"),
        stack_name: "argos-staging".into(),
        stack_id: "arn:stack/argos-staging/1".into(),
        timestamp: chrono::DateTime::from_timestamp(1_700_000_000 + secs, 0),
        logical_id: logical.into(),
        physical_id: String::new(),
        resource_type: rtype.into(),
        status: status.into(),
        reason: reason.map(str::to_string),
    }
}

#[test]
fn watcher_tracks_running_resources_from_event_timestamps() {
    let mut w = StackWatcher::for_new_stack("argos-staging", "arn:stack/argos-staging/1");
    let pace = Pace {
        poll: BASE,
        max_poll: Duration::from_secs(6),
        timeout: Duration::from_secs(3600),
    };
    let now = Instant::now() + Duration::from_secs(1000);
    // One batch, as poll() sees it: the newest event (t = 100 s) happened "now".
    let db = "AWS::RDS::DBInstance";
    let batch = [
        event_at(
            "argos-staging",
            "AWS::CloudFormation::Stack",
            "CREATE_IN_PROGRESS",
            Some("User Initiated"),
            0,
        ),
        event_at("Db", db, "CREATE_IN_PROGRESS", None, 10),
        event_at("Db", db, "CREATE_IN_PROGRESS", Some("Resource creation Initiated"), 11),
        event_at("Sg", "AWS::EC2::SecurityGroup", "CREATE_IN_PROGRESS", None, 20),
        event_at("Sg", "AWS::EC2::SecurityGroup", "CREATE_COMPLETE", None, 100),
    ];
    for e in &batch {
        let before = (batch[4].timestamp.unwrap() - e.timestamp.unwrap()).to_std().unwrap();
        w.track(e, now - before);
        w.absorb(e);
    }
    // Only the database runs, 90 s into a create of at least 240 s: the wait is capped at
    // five back-off ceilings of 6 s.
    assert_eq!(w.next_interval(BASE, true, &pace, now), Duration::from_secs(30));
    // Right after new events (the security group just completed), dependents may be about
    // to start: one more poll at the ordinary pace first.
    assert_eq!(w.next_interval(BASE, false, &pace, now), BASE);
    assert_eq!(
        w.next_interval(BASE, true, &pace, now + Duration::from_secs(140)),
        Duration::from_secs(10)
    );
    // Under a compressed clock the ages are scaled up (10 clock s = 200 operation s).
    w.set_time_scale(20.0);
    let fast = Duration::from_millis(125);
    assert_eq!(
        w.next_interval(fast, true, &pace, now - Duration::from_secs(80)),
        Duration::from_millis(1500)
    );
    w.set_time_scale(1.0);
    // A failure means a rollback is coming: ordinary pace.
    let mut failing = StackWatcher::for_new_stack("argos-staging", "arn:stack/argos-staging/1");
    for e in &batch[..3] {
        failing.track(e, now);
        failing.absorb(e);
    }
    assert_eq!(failing.next_interval(BASE, true, &pace, now), Duration::from_secs(30));
    let failed = event_at("Other", "AWS::EC2::Instance", "CREATE_FAILED", Some("boom"), 12);
    failing.track(&failed, now);
    failing.absorb(&failed);
    assert_eq!(failing.next_interval(BASE, true, &pace, now), BASE);
    // Once the database completes, nothing slow runs any more.
    let done = event_at("Db", db, "CREATE_COMPLETE", None, 400);
    w.track(&done, now);
    w.absorb(&done);
    assert!(w.running.is_empty());
    assert_eq!(w.next_interval(BASE, true, &pace, now), BASE);
}

#[test]
fn cleanup_in_progress_is_not_terminal() {
    assert!("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS".ends_with("_IN_PROGRESS"));
    assert_eq!(Operation::Update.success_status(), "UPDATE_COMPLETE");
}

#[test]
fn the_success_status_settles_every_resource_of_the_operation() {
    let mut delete = StackWatcher::for_new_stack("argos-staging", "arn:stack/argos-staging/1");
    delete.expect_resources(3);
    delete.op = Some(Operation::Delete);
    delete.absorb(&ev("argos-staging", "DELETE_IN_PROGRESS", Some("User Initiated")));
    delete.absorb(&ev("Db", "DELETE_IN_PROGRESS", None));
    delete.absorb(&ev("Db", "DELETE_COMPLETE", None));
    delete.absorb(&ev("Sg", "DELETE_SKIPPED", None));
    assert_eq!(delete.done(), 2);
    // The third resource's events never came; the stack is gone all the same.
    delete.absorb(&ev("argos-staging", "DELETE_COMPLETE", None));
    assert_eq!(delete.done(), 3);

    // A rollback is no success: only what settled counts.
    let mut create = StackWatcher::for_new_stack("argos-staging", "arn:stack/argos-staging/1");
    create.expect_resources(3);
    create.op = Some(Operation::Create);
    for (logical, status) in [
        ("argos-staging", "CREATE_IN_PROGRESS"),
        ("Db", "CREATE_FAILED"),
        ("argos-staging", "ROLLBACK_COMPLETE"),
    ] {
        create.absorb(&ev(logical, status, None));
    }
    assert_eq!(create.done(), 1);
}
