//! What the Slack scenarios share: the config that maps the fake's people to roles, a bot with
//! its Slack connection, the scripted AWS scenarios, and the checks every test ends with.

use std::time::Duration;

use argos::config::Config;
use argos::engine::Engine;
use argos::platform::slack::SlackLimits;

use crate::support::fake_aws::{FakeAws, Op, StackScript};
use crate::support::fake_slack::{FakeSlack, FakeSlackLimits, SlackUser, State, Update, DEPLOYERS_GROUP};
use crate::support::world;
pub use crate::support::world::{script_update, two_instances, STACK, TINY_TEMPLATE};
use crate::support::TestProject;

/// The bot's side of [`FakeSlackLimits::TEST`]: the same post window and update budget, so any
/// 429 the fake answers is one the adapter's own pacing let through.
pub const LIMITS: SlackLimits = SlackLimits {
    posts_per_channel: 1,
    post_window: Duration::from_secs(1),
    updates: 10,
    update_period: Duration::from_secs(2),
};

/// A user group whose members are admins.
pub const ADMINS_GROUP: &str = "S0ADMINS";

/// A second admin, by member id (the requester may not approve their own request).
pub fn carol() -> SlackUser {
    SlackUser::new("U0CAROL", "carol")
}

/// An admin only through [`ADMINS_GROUP`].
pub fn dave() -> SlackUser {
    SlackUser::new("U0DAVE", "dave")
}

/// What the tests set in `chat:` (quick pacing, the Discord tests' command budget).
pub const CHAT: &str = "chat:
  commands_per_minute: 6
  command_burst: 3
  edit_interval_ms: 200
  edit_burst: 5
  edit_refill_secs: 1
";

/// Admins by member id and by user group, deployers by the fake's `@deployers` group.
pub fn permissions() -> String {
    format!(
        "permissions:
  roles:
    admins: {{ slack_users: [U0ADMIN, U0CAROL], slack_groups: [{ADMINS_GROUP}] }}
    deployers: {{ slack_groups: [{DEPLOYERS_GROUP}] }}
  rules:
    - role: admins
      environments: [\"*\"]
      actions: [\"*\"]
    - role: deployers
      environments: [staging]
      actions: [deploy, status]
"
    )
}

/// A Slack scenario's world (see [`crate::support::world`]).
pub type World = world::World<FakeSlack>;

/// A bot with its Slack adapter connected.
pub type Running = world::SlackBot;

/// The fakes and a project whose config points at them: `chat` for the `chat:` section,
/// `approvals` false for the default policy (decommission needs an approver).
pub async fn world_with(limits: FakeSlackLimits, chat: &str, approvals: bool) -> World {
    let mut builder = world::World::builder().config(chat).config(&permissions());
    if !approvals {
        builder = builder.every_job_starts();
    }
    let w = builder.slack(limits).await;
    // Deploys run one role's sandbox playbook (the config refuses an empty list): enough to
    // show a playbook in the status message without four of them.
    patch(&w.project, "ansible:\n", "ansible:\n  roles: [api]\n");
    w
}

/// The usual world: the fake's test limits, quick pacing, no approvals.
pub async fn world() -> World {
    world_with(FakeSlackLimits::TEST, CHAT, false).await
}

/// Rewrites one line of the generated test config.
pub fn patch(project: &TestProject, from: &str, to: &str) {
    let yaml = std::fs::read_to_string(&project.config_path).expect("config");
    assert!(yaml.contains(from), "{from:?} not in the test config");
    std::fs::write(&project.config_path, yaml.replacen(from, to, 1)).expect("write config");
}

/// A bot on the config's store, connected to the fake Slack the config names, as `argos bot`
/// connects it (tokens from the environment, events claimed in the store).
pub async fn start_bot(config: Config) -> Running {
    world::start_slack_bot(config, LIMITS).await
}

/// The app stack (CREATE_COMPLETE), its image, the default VPC, the api host and the stack
/// outputs: what status, update and deploy need.
pub fn add_app(fake: &FakeAws, engine: &Engine) {
    world::add_app(fake, engine, &["api"]);
}

/// The next update fails on FrontInstance and rolls back.
pub const FRONT_FAILURE: &str = "Resource handler returned message: \"The requested configuration is currently not supported. Please check the documentation for supported configurations.\" (RequestToken: 0c1d2e3f, HandlerErrorCode: InvalidRequest)";

pub fn script_failed_update(fake: &FakeAws, seconds: f64) {
    fake.set_change_set(STACK, two_instances());
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
            FRONT_FAILURE,
            &[seconds, seconds],
        ),
    );
}

/// A small staging stack whose next deletion succeeds, each resource taking `seconds`.
pub fn add_deletable_stack(fake: &FakeAws, stack: &str, seconds: f64) {
    let resources = [
        ("WebSecurityGroup", "AWS::EC2::SecurityGroup"),
        ("ApiInstance", "AWS::EC2::Instance"),
    ];
    fake.add_stack(stack, TINY_TEMPLATE, &[], &resources);
    fake.script_next_for(
        stack,
        Op::Delete,
        StackScript::delete_success(stack, &resources, &[seconds, seconds]),
    );
}

/// Waits until the message `channel`/`ts` satisfies `done`; returns its text as it then stands.
pub async fn wait_message(
    slack: &FakeSlack,
    channel: &str,
    ts: &str,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    slack
        .wait_for(what, |s| {
            let m = s.message(channel, ts)?;
            let text = m.all_text();
            done(&text).then_some(text)
        })
        .await
}

/// Waits until the message `channel`/`ts` reads as a finished job (✅, ❌ or 🛑 on one of its
/// first two lines: a failure leads with its cause).
pub async fn wait_finished(slack: &FakeSlack, channel: &str, ts: &str) -> String {
    wait_message(slack, channel, ts, "the job's final edit", |t| {
        t.lines()
            .take(4)
            .any(|l| l.contains("✅ *") || l.contains("· failed after") || l.contains("🛑 *"))
    })
    .await
}

/// Every `chat.update` of one message, in order.
pub fn updates_of(slack: &FakeSlack, channel: &str, ts: &str) -> Vec<Update> {
    slack.with_state(|s| {
        s.updates
            .iter()
            .filter(|u| u.channel == channel && u.ts == ts)
            .cloned()
            .collect()
    })
}

/// Nothing the bot wrote anywhere (posts, edits, responses) carries a broadcast mention, and
/// every post and edit went out with `link_names` off.
#[track_caller]
pub fn assert_pings_nobody(slack: &FakeSlack) {
    slack.with_state(|s: &State| {
        for p in &s.posts {
            assert!(p.broadcasts().is_empty(), "a post pings: {p:#?}");
            assert!(!p.link_names, "a post with link_names on: {p:#?}");
        }
        for u in &s.updates {
            assert!(u.broadcasts().is_empty(), "an edit pings: {u:#?}");
            assert_ne!(u.params["link_names"], serde_json::json!(true), "{u:#?}");
        }
        for r in &s.responses {
            assert!(r.broadcasts().is_empty(), "a response pings: {r:#?}");
        }
    });
}

/// What every scenario ends with: each envelope acknowledged within Slack's 3 s, no request
/// the fake does not serve, `limited` 429s (0 unless the test provokes some), no ping, and
/// every post read by the test.
pub async fn finish_with(slack: &FakeSlack, limited: u32) {
    slack.assert_acked_in_time().await;
    assert_eq!(
        slack.rate_limited(),
        limited,
        "429s: {:?}",
        slack.with_state(|s| s.limited.clone())
    );
    slack.assert_no_unexpected();
    assert_pings_nobody(slack);
    slack.assert_all_read();
}

pub async fn clean_finish(slack: &FakeSlack) {
    finish_with(slack, 0).await;
}

/// Slack redelivers what was not acknowledged (a socket that dropped with envelopes in flight):
/// so does the test, once the bot is connected again.
pub fn redeliver_unacked(slack: &FakeSlack) -> Vec<String> {
    let unacked = slack.unacked();
    for id in &unacked {
        slack.redeliver(id);
    }
    unacked
}
