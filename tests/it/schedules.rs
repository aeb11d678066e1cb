//! Scheduled cleanup announcements: the facts from a real moto account (stale environment,
//! leftover build instance, unused image) and failed stacks from the scripted fake, and with
//! tokio's clock paused: a schedule firing, no announcement twice after a restart, one catch-up
//! run after downtime.
use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use argos::bot::announce;
use argos::bot::port::ChatEvent;
use argos::bot::Bot;
use argos::cloud::ec2::Params;
use argos::permissions::Identity;
use argos::schedule;
use argos::store::Store;
use support::chat::{Posted, RecordingPort};
use support::fake_aws::{FakeAws, Op, StackScript};
use support::moto::Moto;
use support::TestProject;

const CONFIG: &str = r#"
permissions:
  roles:
    admins: { console_users: [alice] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
schedules:
  - name: daily-cleanup
    cron: "0 9 * * *"
    timezone: UTC
    platform: console
    channel: ops
    stale_after_days: 0
    unused_image_days: 0
"#;

async fn bot_on(project: &TestProject) -> (Bot, std::sync::Arc<RecordingPort>) {
    let store = Store::open(&project.config().database_path()).unwrap();
    let bot = Bot::new(project.engine().await, store);
    let port = RecordingPort::new();
    bot.add_port(port.clone());
    (bot, port)
}

fn announcements(port: &RecordingPort) -> Vec<String> {
    port.posted()
        .into_iter()
        .filter_map(|p| match p {
            Posted::Sent { text, .. } if text.starts_with("🧹") => Some(text),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_announcement_lists_what_costs_money_on_moto() {
    let moto = Moto::start().await;
    let project = TestProject::new(&moto.url, CONFIG);
    let (bot, _) = bot_on(&project).await;
    let aws = &bot.engine().aws;
    // An environment stack with one instance (stack tags propagate to it).
    let template = r#"{"Resources": {"Web": {"Type": "AWS::EC2::Instance", "Properties": {"ImageId": "ami-12c6146b", "InstanceType": "t3.small"}}}}"#;
    aws.cfn()
        .await
        .create_stack()
        .stack_name("argos-staging")
        .template_body(template)
        .tags(
            aws_sdk_cloudformation::types::Tag::builder()
                .key("App")
                .value("argos")
                .build(),
        )
        .tags(
            aws_sdk_cloudformation::types::Tag::builder()
                .key("Env")
                .value("staging")
                .build(),
        )
        .send()
        .await
        .unwrap();
    // A leftover image build instance, and an image made from it that no stack uses.
    let pairs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let run = Params::new()
        .set("ImageId", "ami-12c6146b")
        .set("InstanceType", "t3.small")
        .set("MinCount", "1")
        .set("MaxCount", "1")
        .set("TagSpecification.1.ResourceType", "instance")
        .tags(
            "TagSpecification.1.Tag",
            &pairs(&[("App", "argos"), ("Group", "image"), ("Name", "argos-image")]),
        );
    let run = support::ec2::call(aws, "RunInstances", run).await;
    let builder = run.items("instancesSet").next().and_then(|i| i.text(&["instanceId"]));
    let builder = builder.expect("the build instance").to_string();
    let image = Params::new().set("InstanceId", &builder).set("Name", "argos-image");
    let image = support::ec2::call(aws, "CreateImage", image).await;
    let image_id = image.text(&["imageId"]).expect("an image id").to_string();
    let tag = Params::new()
        .list("ResourceId", &[&image_id])
        .tags("Tag", &pairs(&[("App", "argos")]));
    support::ec2::call(aws, "CreateTags", tag).await;

    let s = &bot.engine().config.settings.schedules[0];
    let items = schedule::gather(bot.engine(), bot.store(), s, argos::clock::now())
        .await
        .unwrap();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    assert!(
        items
            .iter()
            .any(|i| i.text.starts_with("environment staging (argos-staging)")
                && i.text.ends_with("1× t3.small")
                && i.command.as_deref() == Some("staging decommission")),
        "{texts:?}"
    );
    assert!(
        items.iter().any(|i| i
            .text
            .starts_with(&format!("leftover image build instance(s) {builder}"))
            && i.command.is_some()),
        "{texts:?}"
    );
    assert!(
        items.iter().any(|i| i
            .text
            .starts_with(&format!("image {image_id} (argos-image) is used by no stack"))),
        "{texts:?}"
    );
    let msg = announce::announcement(s, argos::clock::now(), &items, "!argos");
    assert!(msg.text.contains("→ `!argos staging decommission`"), "{}", msg.text);
    assert!(msg.buttons.iter().any(|b| b.command == "staging decommission"));
    drop(moto);
}

#[tokio::test]
async fn failed_stacks_are_reported_with_a_decommission() {
    let fake = FakeAws::start().await;
    fake.set_time_scale(100.0);
    fake.script_next_for(
        "argos-staging",
        Op::Create,
        StackScript::create_failed_with_cascade(
            "argos-staging",
            &[("Api", "AWS::EC2::Instance"), ("Db", "AWS::RDS::DBInstance")],
            "Api",
            "The requested configuration is currently not supported.",
            &[1.0],
        ),
    );
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    let (bot, _) = bot_on(&project).await;
    let tags = |k: &str, v: &str| aws_sdk_cloudformation::types::Tag::builder().key(k).value(v).build();
    bot.engine()
        .aws
        .cfn()
        .await
        .create_stack()
        .stack_name("argos-staging")
        .template_body(
            r#"{"Resources": {"Api": {"Type": "AWS::EC2::Instance"}, "Db": {"Type": "AWS::RDS::DBInstance"}}}"#,
        )
        .tags(tags("App", "argos"))
        .tags(tags("Env", "staging"))
        .send()
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while fake.stack_status("argos-staging").as_deref() != Some("ROLLBACK_COMPLETE") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let s = &bot.engine().config.settings.schedules[0];
    let items = schedule::gather(bot.engine(), bot.store(), s, argos::clock::now())
        .await
        .unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].text, "stack argos-staging is ROLLBACK_COMPLETE");
    assert_eq!(items[0].command.as_deref(), Some("staging decommission"));
}

#[tokio::test]
async fn a_schedule_fires_once_and_not_again_after_a_restart() {
    argos::clock::reset();
    let fake = FakeAws::start().await;
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    let (bot, port) = bot_on(&project).await;
    let s = bot.engine().config.settings.schedules[0].clone();
    let due = schedule::next_due(&s, argos::clock::now()).unwrap();

    tokio::time::pause();
    let runner = tokio::spawn(announce::run_all(bot.clone()));
    // Let the runner start and go to sleep until `due` before the clock moves.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(announcements(&port).is_empty(), "nothing before its time");
    let wait = (due - argos::clock::now()).to_std().unwrap() + Duration::from_secs(1);
    tokio::time::advance(wait).await;
    for _ in 0..1000 {
        if !announcements(&port).is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    runner.abort();
    let sent = announcements(&port);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].contains(&due.format("%Y-%m-%d %H:%M UTC").to_string()),
        "{}",
        sent[0]
    );
    assert!(sent[0].contains("Nothing to clean up"), "{}", sent[0]);

    // A restart right after: the run for `due` is claimed already; nothing is announced again.
    let (bot2, port2) = bot_on(&project).await;
    let runner2 = tokio::spawn(announce::run_all(bot2.clone()));
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    runner2.abort();
    assert!(announcements(&port2).is_empty());
    assert!(!bot2.store().claim_schedule_run(&s.name, due, "again").unwrap());
    assert_eq!(bot2.store().schedule_run_count(&s.name).unwrap(), 1);
}

#[tokio::test]
async fn one_catch_up_run_after_downtime() {
    argos::clock::reset();
    let fake = FakeAws::start().await;
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    let (bot, port) = bot_on(&project).await;
    let s = bot.engine().config.settings.schedules[0].clone();
    let now = argos::clock::now();
    // The bot last ran three days' due times ago, then was down: two or three runs were missed.
    let latest = schedule::missed_since(&s, now - chrono::Duration::days(2), now).unwrap();
    let earlier = latest - chrono::Duration::days(3);
    assert!(bot.store().claim_schedule_run(&s.name, earlier, "announced").unwrap());

    let runner = tokio::spawn(announce::run_all(bot.clone()));
    for _ in 0..2000 {
        if !announcements(&port).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Give a second (wrong) catch-up every chance to show up before checking.
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    runner.abort();
    let sent = announcements(&port);
    assert_eq!(sent.len(), 1, "exactly one catch-up: {sent:?}");
    assert!(
        sent[0].contains(&latest.format("%Y-%m-%d %H:%M UTC").to_string()),
        "it covers the latest missed run: {}",
        sent[0]
    );
    assert_eq!(bot.store().schedule_run_count(&s.name).unwrap(), 2);
}

#[tokio::test]
async fn schedules_lists_the_next_runs() {
    let fake = FakeAws::start().await;
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    let (bot, _) = bot_on(&project).await;
    let alice = Identity {
        platform: argos::address::Surface::CONSOLE,
        user_id: "alice".into(),
        display_name: "alice".into(),
        platform_roles: vec![],
    };
    let reply = bot
        .handle(ChatEvent {
            identity: alice,
            channel: "ops".into(),
            text: "schedules".into(),
        })
        .await
        .unwrap();
    assert!(
        reply.starts_with("• daily-cleanup `0 9 * * *` (UTC) → console ops: next "),
        "{reply}"
    );
    assert!(reply.contains(" 09:00 UTC"), "{reply}");
}

#[tokio::test]
async fn schedules_lists_the_configured_freezes_with_their_next_windows() {
    let fake = FakeAws::start().await;
    let freezes = r#"
freezes:
  - name: weekend
    environments: [staging]
    cron: "0 18 * * FRI"
    duration: 62h
    timezone: Europe/Berlin
    reason: nobody is around
  - name: holidays
    environments: ["*"]
    from: 2099-12-24 00:00
    until: 2100-01-02
    timezone: Europe/Berlin
    reason: everyone is away
"#;
    let project = TestProject::new(&fake.endpoint_url(), &format!("{CONFIG}{freezes}"));
    let (bot, _) = bot_on(&project).await;
    let reply = bot
        .handle(ChatEvent {
            identity: Identity::named(argos::address::Surface::CONSOLE, "alice"),
            channel: "ops".into(),
            text: "schedules".into(),
        })
        .await
        .unwrap();
    let lines: Vec<&str> = reply.lines().collect();
    assert!(lines[0].starts_with("• daily-cleanup `0 9 * * *`"), "{reply}");
    assert_eq!(lines[1], "Freezes:", "{reply}");
    // Whenever the test runs, a Friday 18:00 in Berlin is among the next two windows.
    assert!(
        lines[2].starts_with("• weekend on staging (`0 18 * * FRI` for 2d 14h, Europe/Berlin): nobody is around: "),
        "{reply}"
    );
    assert!(lines[2].contains(" 18:00 CE"), "{reply}");
    assert_eq!(
        lines[3],
        "• holidays on * (fixed window, Europe/Berlin): everyone is away: next 2099-12-24 00:00 CET → 2100-01-02 00:00 CET"
    );
}
