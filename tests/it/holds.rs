//! Holds and freezes through the bot, against the scripted fake AWS and a recording chat port:
//! a hold refuses others and lets its holder through, a warning hold asks for a confirmation,
//! a forced release needs its permission, a freeze refuses every change but a break-glass one,
//! `envs` says where one can deploy, and each hold, freeze and break-glass is announced once.
//! Across replicas, on SQLite and PostgreSQL: a freeze that starts while a job is queued ends
//! it unstarted, and a hold whose holder's replica is down still lapses, announced once by the
//! replicas that are up.
use crate::support;

use std::sync::Arc;
use std::time::Duration;

use argos::bot::port::ChatEvent;
use argos::bot::Bot;
use argos::permissions::Identity;
use argos::store::{JobState, Store};
use support::chat::{Posted, RecordingPort};
use support::fake_aws::{Ec2Image, FakeAws};
use support::TestProject;

const CONFIG: &str = r#"
chat:
  commands_per_minute: 120
  command_burst: 30
  edit_interval_ms: 50
defaults:
  announce: "console:news"
holds:
  remind_before: 1m
permissions:
  roles:
    admins: { console_users: [carol] }
    devs: { console_users: [alice, bob] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
    - role: devs
      environments: ["*"]
      actions: [deploy, update, clean, status, hold]
"#;

fn said(name: &str, text: &str) -> ChatEvent {
    ChatEvent {
        identity: Identity::named(argos::address::Surface::CONSOLE, name),
        channel: "console:ops".into(),
        text: text.into(),
    }
}

/// A bot on the project's store (or `store`), with a recording port, ticking.
async fn bot_on(project: &TestProject, store: Store) -> (Bot, Arc<RecordingPort>) {
    let bot = Bot::new(project.engine().await, store);
    let port = RecordingPort::new();
    bot.add_port(port.clone());
    bot.resume_unfinished().await;
    (bot, port)
}

fn image(fake: &FakeAws) {
    fake.add_image(Ec2Image::owned("ami-0123", "argos-image", &[("App", "argos")]));
}

/// Messages sent to `channel` that contain `needle`.
fn sent_to(port: &RecordingPort, channel: &str, needle: &str) -> Vec<String> {
    port.posted()
        .into_iter()
        .filter_map(|p| match p {
            Posted::Sent { channel: c, text, .. } if c == channel && text.contains(needle) => Some(text),
            _ => None,
        })
        .collect()
}

/// Waits (bounded) until `channel` got a message containing `needle`; returns it.
async fn until_sent(port: &RecordingPort, channel: &str, needle: &str) -> String {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(t) = sent_to(port, channel, needle).into_iter().next() {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("nothing with {needle:?} reached {channel}: {:#?}", port.posted()))
}

fn audit(store: &Store) -> Vec<String> {
    store.audit_log(200).unwrap().into_iter().map(|a| a.outcome).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_refuses_others_lets_its_holder_through_and_is_announced_once() {
    let fake = FakeAws::start().await;
    image(&fake);
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    let (bot, port) = bot_on(&project, Store::open(&project.config().database_path()).unwrap()).await;

    let taken = bot
        .handle(said("alice", "staging hold testing the migration for 2h"))
        .await
        .unwrap();
    assert!(taken.starts_with("🔒 staging is yours until "), "{taken}");
    assert!(taken.contains("(2h left): testing the migration"), "{taken}");

    let refused = bot.handle(said("bob", "staging clean")).await.unwrap();
    assert!(
        refused.starts_with("🔒 staging is held by alice: testing the migration, until "),
        "{refused}"
    );
    assert!(refused.contains("left)") && refused.contains("release"), "{refused}");
    assert!(bot.store().recent_jobs(10).unwrap().is_empty(), "nothing started");
    // Someone else's hold cannot be taken over, nor released without --force.
    let taken_again = bot.handle(said("bob", "staging hold mine now")).await.unwrap();
    assert!(
        taken_again.starts_with("❌ staging is already held by alice"),
        "{taken_again}"
    );
    let not_yours = bot.handle(said("bob", "staging release")).await.unwrap();
    assert!(
        not_yours.contains("is held by alice") && not_yours.contains("not you"),
        "{not_yours}"
    );
    let forced = bot.handle(said("bob", "staging release --force")).await.unwrap();
    assert!(forced.contains("force-release on staging"), "{forced}");

    // The holder deploys (here: cleans) past her own hold.
    assert_eq!(bot.handle(said("alice", "staging clean")).await, None);
    bot.idle().await;
    assert_eq!(bot.store().job(1).unwrap().unwrap().state, JobState::Succeeded);

    let envs = bot.handle(said("bob", "envs")).await.unwrap();
    assert!(envs.contains("• staging: held by alice until "), "{envs}");
    assert!(envs.contains("• sandbox: free"), "{envs}");

    // An admin ends it; then bob may.
    let ended = bot.handle(said("carol", "staging release --force")).await.unwrap();
    assert_eq!(ended, "🔓 alice's hold on staging is ended by carol.");
    let envs = bot.handle(said("bob", "envs")).await.unwrap();
    assert!(envs.contains("• staging: free"), "{envs}");

    let start = until_sent(&port, "console:news", "🔒 alice holds staging until").await;
    assert!(start.contains("testing the migration"), "{start}");
    let end = until_sent(&port, "console:news", "🔓 carol ended alice's hold on staging").await;
    assert!(end.contains("release --force"), "{end}");
    // Once each, however many rounds the replica ran meanwhile.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sent_to(&port, "console:news", "holds staging").len(), 1);
    assert_eq!(sent_to(&port, "console:news", "ended alice's hold").len(), 1);
    let outcomes = audit(bot.store());
    assert!(
        outcomes.iter().any(|o| o.starts_with("refused: held by alice until")),
        "{outcomes:?}"
    );
    assert!(outcomes.iter().any(|o| o.ends_with("forced release")), "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_hold_asks_for_a_confirmation() {
    let fake = FakeAws::start().await;
    image(&fake);
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    let (bot, _port) = bot_on(&project, Store::open(&project.config().database_path()).unwrap()).await;

    let taken = bot
        .handle(said("alice", "staging hold --warn demo at 3"))
        .await
        .unwrap();
    assert!(taken.contains("Others are warned"), "{taken}");
    let warned = bot.handle(said("bob", "staging clean")).await.unwrap();
    assert!(warned.starts_with("⚠️ staging is held by alice: demo at 3"), "{warned}");
    assert!(
        warned.contains("`!argos staging clean --confirm` goes ahead anyway"),
        "{warned}"
    );
    assert_eq!(bot.handle(said("bob", "staging clean --confirm")).await, None);
    bot.idle().await;
    let job = bot.store().job(1).unwrap().unwrap();
    assert_eq!((job.requester_name.as_str(), job.state), ("bob", JobState::Succeeded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_refuses_every_change_but_a_break_glass_one() {
    let fake = FakeAws::start().await;
    image(&fake);
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    let (bot, port) = bot_on(&project, Store::open(&project.config().database_path()).unwrap()).await;

    let denied = bot
        .handle(said("bob", "freeze staging for 1h incident 42"))
        .await
        .unwrap();
    assert!(denied.contains("freeze on staging"), "{denied}");
    let frozen = bot
        .handle(said("carol", "freeze staging,sandbox for 1h \"incident 42\""))
        .await
        .unwrap();
    assert!(
        frozen.starts_with("❄️ staging, sandbox frozen (freeze #1): incident 42, until "),
        "{frozen}"
    );

    let listed = bot.handle(said("bob", "schedules")).await.unwrap();
    assert!(
        listed.contains(
            "Frozen now (`unfreeze` ends them):\n• staging, sandbox: freeze #1 by carol: incident 42, until "
        ),
        "{listed}"
    );
    let help = bot.handle(said("bob", "help")).await.unwrap();
    assert!(
        help.contains("hold") && help.contains("release") && !help.contains("unfreeze"),
        "{help}"
    );
    let refused = bot.handle(said("bob", "staging clean")).await.unwrap();
    assert!(
        refused.starts_with("❄️ staging is frozen: freeze #1 by carol: incident 42, until "),
        "{refused}"
    );
    assert!(refused.contains("--break-glass"), "{refused}");
    let no_glass = bot
        .handle(said("bob", "staging clean --break-glass the site is down"))
        .await
        .unwrap();
    assert!(no_glass.contains("break-glass on staging"), "{no_glass}");
    assert!(bot.store().recent_jobs(10).unwrap().is_empty(), "nothing started");

    assert_eq!(
        bot.handle(said("carol", "staging clean --break-glass \"the site is down\""))
            .await,
        None
    );
    bot.idle().await;
    let job = bot.store().job(1).unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.break_glass.as_deref(), Some("the site is down"));
    let glass = until_sent(&port, "console:news", "Break-glass").await;
    assert!(
        glass.contains("carol runs `staging clean` through the freeze") && glass.contains("the site is down"),
        "{glass}"
    );
    let envs = bot.handle(said("bob", "envs")).await.unwrap();
    assert!(envs.contains("• staging: frozen (freeze #1) until "), "{envs}");

    let thawed = bot.handle(said("carol", "unfreeze all")).await.unwrap();
    assert_eq!(thawed, "☀️ Unfrozen: freeze #1 (incident 42).");
    let announced = until_sent(&port, "console:news", "☀️ freeze #1 ended by carol").await;
    assert!(announced.contains("incident 42"), "{announced}");
    assert_eq!(
        sent_to(&port, "console:news", "frozen (freeze #1)").len(),
        1,
        "one channel, one message"
    );
    let outcomes = audit(bot.store());
    assert!(
        outcomes.iter().any(|o| o == "break-glass: the site is down"),
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().any(|o| o.starts_with("refused: frozen by freeze #1")),
        "{outcomes:?}"
    );
}

/// The store a replica test runs on: a SQLite file of the project, or a fresh PostgreSQL
/// database; `open` gives each replica its own handle.
enum Backend {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Backend {
    fn of(project: &TestProject, postgres: bool) -> Backend {
        if postgres {
            Backend::Postgres(support::postgres::shared().new_database())
        } else {
            Backend::Sqlite(project.config().database_path())
        }
    }

    fn open(&self) -> Store {
        match self {
            Backend::Sqlite(p) => Store::open(p).unwrap(),
            Backend::Postgres(u) => Store::connect(u).unwrap(),
        }
    }
}

async fn a_freeze_that_starts_while_a_job_is_queued_ends_it_unstarted(postgres: bool) {
    let fake = FakeAws::start().await;
    fake.set_time_scale(1.0);
    image(&fake);
    support::slow_staging_update(&fake);
    let project = TestProject::new(
        &fake.endpoint_url(),
        &CONFIG.replace(
            "  edit_interval_ms: 50",
            "  edit_interval_ms: 50\n  queue_when_busy: true",
        ),
    );
    let backend = Backend::of(&project, postgres);
    let (bot, port) = bot_on(&project, backend.open()).await;
    // A second replica on the same store: it must not start the queued job either.
    let (_other, _) = bot_on(&project, backend.open()).await;

    assert_eq!(bot.handle(said("alice", "staging update")).await, None);
    let queued = bot.handle(said("bob", "staging clean")).await.unwrap();
    assert!(queued.starts_with("🕒 Job #2 is queued behind job #1"), "{queued}");
    let frozen = bot
        .handle(said("carol", "freeze staging for 1h release night"))
        .await
        .unwrap();
    assert!(frozen.contains("freeze #1"), "{frozen}");
    bot.handle(said("alice", "cancel 1")).await;
    bot.idle().await;

    let second = bot.store().job(2).unwrap().unwrap();
    assert_eq!(second.state, JobState::Cancelled);
    let result = second.result.unwrap_or_default();
    assert!(
        result.starts_with("🛑 Job #2 did not start: staging is frozen: freeze #1 by carol: release night"),
        "{result}"
    );
    let told = until_sent(&port, "console:ops", "Job #2 did not start").await;
    assert_eq!(told, result);
    assert!(
        !fake.actions().iter().any(|a| a.ends_with("DeregisterImage")),
        "the queued clean never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_that_starts_while_a_job_is_queued_ends_it_unstarted_sqlite() {
    a_freeze_that_starts_while_a_job_is_queued_ends_it_unstarted(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_that_starts_while_a_job_is_queued_ends_it_unstarted_postgres() {
    a_freeze_that_starts_while_a_job_is_queued_ends_it_unstarted(true).await;
}

async fn a_hold_lapses_while_its_holders_replica_is_down(postgres: bool) {
    let fake = FakeAws::start().await;
    image(&fake);
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    let backend = Backend::of(&project, postgres);
    // The holder's replica takes the hold and goes down before any round of its own.
    let holders = Bot::new(project.engine().await, backend.open());
    let taken = holders.handle(said("alice", "staging hold for 3s")).await.unwrap();
    assert!(taken.contains("staging is yours"), "{taken}");
    holders.shutdown(Duration::from_millis(100)).await;
    drop(holders);

    // Two replicas that are up, each with its own connection to the chat.
    let (b, port_b) = bot_on(&project, backend.open()).await;
    let (_c, port_c) = bot_on(&project, backend.open()).await;
    let refused = b.handle(said("bob", "staging clean")).await.unwrap();
    assert!(refused.starts_with("🔒 staging is held by alice"), "{refused}");
    // The reminder (the hold ends within holds.remind_before) and the lapse reach the
    // announce channel (also the holder's channel) once, from either replica.
    let both = |needle: &'static str| {
        let (b, c) = (port_b.clone(), port_c.clone());
        async move {
            tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    let n = sent_to(&b, "console:ops", needle).len() + sent_to(&c, "console:ops", needle).len();
                    if n > 0 {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{needle:?} never reached console:ops"));
        }
    };
    both("your hold on staging lapses").await;
    both("alice's hold on staging lapsed").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    for needle in ["your hold on staging lapses", "alice's hold on staging lapsed"] {
        let n = sent_to(&port_b, "console:ops", needle).len() + sent_to(&port_c, "console:ops", needle).len();
        assert_eq!(n, 1, "{needle:?} posted {n} times");
    }
    // Whoever asks now is not refused.
    assert_eq!(b.handle(said("bob", "staging clean")).await, None);
    b.idle().await;
    assert_eq!(b.store().job(1).unwrap().unwrap().state, JobState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_lapses_while_its_holders_replica_is_down_sqlite() {
    a_hold_lapses_while_its_holders_replica_is_down(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_lapses_while_its_holders_replica_is_down_postgres() {
    a_hold_lapses_while_its_holders_replica_is_down(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_the_same_holds_freezes_and_break_glass() {
    let fake = FakeAws::start().await;
    image(&fake);
    let project = TestProject::new(&fake.endpoint_url(), CONFIG);
    let (bot, port) = bot_on(&project, Store::open(&project.config().database_path()).unwrap()).await;
    let store = bot.store().clone();
    assert!(bot
        .handle(said("alice", "staging hold demo for the board"))
        .await
        .unwrap()
        .contains("staging is yours"));

    // alice on the console and alice at a shell are one person: her hold lets her through.
    let (out, code) = support::run_cli(&project, "bob", &["staging", "clean", "--yes"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("staging is held by alice: demo for the board"), "{out}");
    let (out, code) = support::run_cli(&project, "bob", &["staging", "hold", "for", "1h"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("already held by alice"), "{out}");
    let (out, code) = support::run_cli(&project, "carol", &["staging", "release", "--force"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("alice's hold on staging is ended by carol"), "{out}");

    let (out, code) = support::run_cli(&project, "carol", &["freeze", "all", "for", "1h", "maintenance window"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("every environment frozen (freeze #1): maintenance window"),
        "{out}"
    );
    let (out, code) = support::run_cli(&project, "bob", &["envs"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("• staging: frozen (freeze #1) until "), "{out}");
    let (out, code) = support::run_cli(&project, "bob", &["staging", "clean", "--yes"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("staging is frozen: freeze #1 by carol: maintenance window"),
        "{out}"
    );
    assert!(store.recent_jobs(10).unwrap().is_empty(), "nothing started");
    let (out, code) = support::run_cli(
        &project,
        "bob",
        &["staging", "clean", "--yes", "--break-glass", "urgent fix"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let job = store.job(1).unwrap().unwrap();
    assert_eq!(
        (job.state, job.break_glass.as_deref()),
        (JobState::Succeeded, Some("urgent fix"))
    );
    let (out, code) = support::run_cli(&project, "carol", &["unfreeze", "all"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Unfrozen: freeze #1 (maintenance window)"), "{out}");

    for needle in [
        "carol ended alice's hold on staging",
        "every environment frozen (freeze #1)",
        "bob runs `staging clean` from the CLI",
        "freeze #1 ended by carol",
    ] {
        until_sent(&port, "console:news", needle).await;
    }
    let outcomes = audit(&store);
    for want in [
        "ok: hold #1 forced release",
        "break-glass: urgent fix",
        "ok: unfroze [freeze #1]",
    ] {
        assert!(outcomes.iter().any(|o| o == want), "{want}: {outcomes:?}");
    }
}
