//! The whole bot end to end: the real serenity client against the fake Discord (REST + gateway
//! on loopback), the real engine against the scripted fake AWS, and for deploys the real
//! `ansible-playbook` with the sandbox playbooks. Every scenario ends with the fake Discord
//! never having answered 429 and every message the bot sent having been read.
use crate::support;

use argos::bot::Bot;
use argos::platform::discord::FOLLOWING_IN_CHANNEL;
use argos::store::{JobState, Store};
use support::fake_aws::{Op, StackScript};
use support::fake_discord::*;
use support::world::{add_app, script_update, start_discord_bot, World as AnyWorld, STACK, TINY_TEMPLATE};
use tokio::task::JoinHandle;

const ROLES: &[&str] = &["knowledge", "api", "front", "collector"];

type World = AnyWorld<FakeDiscord>;

/// A bot connected to the fake Discord, and the adapter's client task.
async fn start_bot(config: argos::config::Config) -> (Bot, JoinHandle<()>) {
    let (bot, client, _) = start_discord_bot(config).await;
    (bot, client)
}

/// The fakes and a project whose config points at them, the fake's users mapped to roles. The
/// approval flow has tests of its own; here every job starts when asked.
async fn world(content_intent: bool) -> World {
    AnyWorld::builder()
        .every_job_starts()
        .discord(FAST_FAKE_LIMITS, content_intent)
        .await
}

/// Reads the bot's output until `done` holds for what was read.
async fn read_until(fake: &FakeDiscord, done: impl Fn(&[Sent]) -> bool) -> Vec<Sent> {
    let mut read = Vec::new();
    while !done(&read) {
        read.push(fake.next_message().await);
    }
    read
}

/// The one status message among `read`: exactly one create, every other message of it an edit.
#[track_caller]
fn status_message<'a>(read: &'a [Sent], starts: &str) -> (&'a Sent, Vec<&'a Sent>) {
    let creates: Vec<&Sent> = read
        .iter()
        .filter(|m| m.kind == SentKind::Create && m.content.starts_with(starts))
        .collect();
    assert_eq!(creates.len(), 1, "one status message: {read:#?}");
    let created = creates[0];
    let edits: Vec<&Sent> = read
        .iter()
        .filter(|m| m.message_id == created.message_id)
        .skip(1)
        .collect();
    assert!(edits.iter().all(|m| m.kind == SentKind::Edit), "{edits:#?}");
    (created, edits)
}

fn is_final(m: &Sent, prefix: &str) -> bool {
    m.kind == SentKind::Edit && m.content.starts_with(prefix)
}

#[track_caller]
fn clean_finish(w: &World) {
    assert_eq!(w.chat.rate_limited(), 0, "the fake Discord had to answer 429");
    w.chat.assert_all_read();
    w.chat.assert_no_unexpected();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prefix_update_edits_one_status_message_to_the_end() {
    let w = world(true).await;
    w.aws.set_time_scale(20.0);
    let (bot, client) = start_bot(w.project.config()).await;
    add_app(&w.aws, bot.engine(), ROLES);
    script_update(&w.aws, 10.0);

    w.chat
        .push_message(CHANNEL, &TestUser::admin(), "!argos staging update");
    let done = "✅ **staging · update** · job #1 · alice";
    let read = read_until(&w.chat, |r| r.last().is_some_and(|m| is_final(m, done))).await;
    bot.idle().await;

    let (created, edits) = status_message(&read, "⏳ **staging · update** · job #1 · alice");
    assert_eq!(created.channel, CHANNEL.to_string());
    assert_eq!(read.len(), 1 + edits.len(), "nothing but the status message: {read:#?}");
    assert!(edits.len() >= 3, "progress shows as edits: {read:#?}");
    assert!(
        edits
            .iter()
            .any(|m| m.content.contains("UPDATE_IN_PROGRESS ApiInstance")),
        "{edits:#?}"
    );
    let last = edits.last().expect("a final edit");
    assert!(last.content.contains("updated argos-staging"), "{}", last.content);
    assert_eq!(last.attachments, ["argos-job-1.log"], "the final edit carries the log");
    assert!(edits[..edits.len() - 1].iter().all(|m| m.attachments.is_empty()));
    let stored = w.chat.message(&created.message_id).expect("stored");
    assert_eq!(stored.edits as usize, edits.len());
    assert_eq!(bot.store().job(1).unwrap().unwrap().state, JobState::Succeeded);
    assert_eq!(w.aws.count("ExecuteChangeSet"), 1);
    clean_finish(&w);
    client.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mentions_and_slash_commands_work_without_the_content_intent() {
    let w = world(false).await;
    w.aws.set_time_scale(20.0);
    let (bot, client) = start_bot(w.project.config()).await;
    add_app(&w.aws, bot.engine(), ROLES);
    let intents = w.chat.with_state(|s| s.intents()).expect("identified");
    assert_eq!(intents & (1 << 15), 0, "MESSAGE_CONTENT not requested");

    // A prefix command arrives blank without the intent and is ignored; a mention works.
    let deployer = TestUser::deployer();
    w.chat.push_message(CHANNEL, &deployer, "!argos staging status");
    w.chat
        .push_message(CHANNEL, &deployer, &format!("<@{BOT_ID}> staging status"));
    let reply = w
        .chat
        .expect_message(CHANNEL, "stack argos-staging: CREATE_COMPLETE")
        .await;
    assert_eq!(reply.kind, SentKind::Create);
    assert!(reply.content.starts_with("```\n"), "{}", reply.content);
    assert!(reply.content.contains("i-0"), "instances listed: {}", reply.content);

    // /argos command:status env:staging: deferred, then the original response is the answer.
    let id = w.chat.push_slash(CHANNEL, &deployer, "status", "staging", "");
    let answer = w.chat.next_message().await;
    assert_eq!(answer.kind, SentKind::InteractionEdit);
    assert_eq!(answer.interaction.as_deref(), Some(id.as_str()));
    assert!(
        answer.content.starts_with("```\nstack argos-staging: CREATE_COMPLETE"),
        "{}",
        answer.content
    );
    let cb = w.chat.callback(&id).await;
    assert_eq!(cb.kind, 5, "deferred");
    assert!(cb.at <= answer.at);

    // /argos command:deploy: "following in the channel", and the job's status message there.
    let id = w
        .chat
        .push_slash(CHANNEL, &deployer, "deploy", "staging", "--roles api");
    let done = "✅ **staging · deploy** · job #1 · bob";
    let read = read_until(&w.chat, |r| {
        r.iter().any(|m| is_final(m, done)) && r.iter().any(|m| m.kind == SentKind::InteractionEdit)
    })
    .await;
    bot.idle().await;
    assert_eq!(w.chat.callback(&id).await.kind, 5);
    let answers: Vec<&Sent> = read.iter().filter(|m| m.kind == SentKind::InteractionEdit).collect();
    assert_eq!(answers.len(), 1, "{read:#?}");
    assert_eq!(answers[0].content, FOLLOWING_IN_CHANNEL);
    assert_eq!(answers[0].interaction.as_deref(), Some(id.as_str()));
    let (created, edits) = status_message(&read, "⏳ **staging · deploy** · job #1 · bob");
    assert_eq!(created.channel, CHANNEL.to_string());
    assert_eq!(read.len(), 2 + edits.len(), "{read:#?}");
    let last = edits.last().expect("final edit");
    assert!(last.content.starts_with(done), "{}", last.content);
    assert_eq!(last.attachments, ["argos-job-1.log"]);
    assert_eq!(bot.store().job(1).unwrap().unwrap().state, JobState::Succeeded);
    clean_finish(&w);
    client.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn denials_and_rate_limits_are_polite_and_start_nothing() {
    let w = world(true).await;
    let (bot, client) = start_bot(w.project.config()).await;

    w.chat
        .push_message(CHANNEL, &TestUser::stranger(), "!argos staging deploy");
    let denied = w.chat.next_message().await;
    assert_eq!(
        (denied.kind, denied.channel.as_str(), denied.content.as_str()),
        (
            SentKind::Create,
            CHANNEL.to_string().as_str(),
            "⛔ You don't have permission for deploy on staging. Ask an admin to grant it in config/argos.yaml."
        )
    );
    // The deployer may not update staging either.
    w.chat
        .push_message(CHANNEL, &TestUser::deployer(), "!argos staging update");
    w.chat
        .expect_message(CHANNEL, "⛔ You don't have permission for update on staging.")
        .await;

    // A burst of 3: the deployer has used one; two more pass, the next is refused politely.
    for _ in 0..2 {
        w.chat
            .push_message(OTHER_CHANNEL, &TestUser::deployer(), "!argos whoami");
        w.chat.expect_message(OTHER_CHANNEL, "You are bob").await;
    }
    w.chat
        .push_message(OTHER_CHANNEL, &TestUser::deployer(), "!argos whoami");
    let slow = w
        .chat
        .expect_message(OTHER_CHANNEL, "🐢 Easy — you've sent a lot of commands. Try again in ")
        .await;
    assert!(slow.content.ends_with(" s."), "{}", slow.content);
    // Per user: the admin is not held up.
    w.chat.push_message(OTHER_CHANNEL, &TestUser::admin(), "!argos whoami");
    w.chat.expect_message(OTHER_CHANNEL, "You are alice").await;

    bot.idle().await;
    assert!(w.aws.calls().is_empty(), "nothing reached AWS: {:?}", w.aws.actions());
    assert!(bot.store().recent_jobs(10).unwrap().is_empty(), "no job");
    clean_finish(&w);
    client.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mass_mentions_in_a_command_ping_nobody() {
    let w = world(true).await;
    let (bot, client) = start_bot(w.project.config()).await;
    // Replies quote what was typed, before any permission check: the stranger gets them too.
    for (text, quoted) in [
        ("!argos @everyone deploy", "'@everyone'"),
        ("!argos @here deploy", "'@here'"),
        ("!argos <@&4242> deploy", "'<@&4242>'"),
    ] {
        w.chat.push_message(CHANNEL, &TestUser::stranger(), text);
        let reply = w.chat.next_message().await;
        assert!(reply.content.contains(quoted), "{}", reply.content);
        assert!(reply.pings_nobody(), "sent with {:?}", reply.allowed_mentions);
    }
    bot.idle().await;
    clean_finish(&w);
    client.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_users_race_for_staging_and_the_admin_cancels() {
    let w = world(true).await;
    w.aws.set_time_scale(1.0);
    let (bot, client) = start_bot(w.project.config()).await;
    add_app(&w.aws, bot.engine(), ROLES);
    // An update that would take a scenario week.
    script_update(&w.aws, 1.0e6);

    w.chat
        .push_message(CHANNEL, &TestUser::admin(), "!argos staging update");
    let first = w.chat.next_message().await;
    // Right after the admin's job has started, the deployer wants the same environment.
    w.chat
        .push_message(CHANNEL, &TestUser::deployer(), "!argos staging deploy");
    let busy = "⏸ staging is busy: job #1 (update by alice) is running. Try again when it finishes, or `cancel 1`.";
    let mut read = vec![first];
    read.extend(
        read_until(&w.chat, |r| {
            r.iter()
                .any(|m| m.content.starts_with(busy) && m.content.contains("It runs in bot-"))
                && r.iter().any(|m| m.content.contains("UPDATE_IN_PROGRESS ApiInstance"))
        })
        .await,
    );

    w.chat.push_message(CHANNEL, &TestUser::admin(), "!argos cancel 1");
    let done = "🛑 **staging · update** · job #1 · alice · cancelled after";
    read.extend(
        read_until(&w.chat, |r| {
            r.iter().any(|m| m.content == "🛑 Cancelling job #1…") && r.iter().any(|m| is_final(m, done))
        })
        .await,
    );
    bot.idle().await;

    let (_, edits) = status_message(&read, "⏳ **staging · update** · job #1 · alice");
    assert_eq!(
        read.len(),
        1 + edits.len() + 2,
        "the status message, the busy answer and the cancel answer: {read:#?}"
    );
    assert!(is_final(edits.last().unwrap(), done), "{read:#?}");
    assert_eq!(w.aws.count("CancelUpdateStack"), 1, "{:?}", w.aws.actions());
    let jobs = bot.store().recent_jobs(10).unwrap();
    assert_eq!(jobs.len(), 1, "the deployer's deploy never started");
    assert_eq!(jobs[0].state, JobState::Cancelled);
    clean_finish(&w);
    client.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_in_the_middle_of_a_job_keeps_editing_the_same_message() {
    let w = world(true).await;
    w.aws.set_time_scale(1.0);
    let resources = [
        ("WebSecurityGroup", "AWS::EC2::SecurityGroup"),
        ("ApiInstance", "AWS::EC2::Instance"),
    ];
    w.aws.add_stack(STACK, TINY_TEMPLATE, &[], &resources);
    w.aws.script_next_for(
        STACK,
        Op::Delete,
        StackScript::delete_success(STACK, &resources, &[3.0, 3.0]),
    );

    // Bot A runs on its own runtime, so that stopping it stops its job mid-way.
    let rt_a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime A");
    let (bot_a, client_a) = rt_a.spawn(start_bot(w.project.config())).await.expect("bot A starts");
    w.chat
        .push_message(CHANNEL, &TestUser::admin(), "!argos staging decommission");
    let mut read = read_until(&w.chat, |r| {
        r.iter()
            .any(|m| m.kind == SentKind::Edit && m.content.contains("DELETE_IN_PROGRESS ApiInstance"))
    })
    .await;
    client_a.abort();
    drop(bot_a);
    rt_a.shutdown_background();

    let store = Store::open(&w.project.config().database_path()).unwrap();
    assert_eq!(store.job(1).unwrap().unwrap().state, JobState::Running, "left running");
    drop(store);

    // Bot B: same database, a new Discord client.
    let (bot_b, client_b) = start_bot(w.project.config()).await;
    // A's lease runs out (1 s in the tests' config) and B takes the job over.
    bot_b.resume_unfinished().await;
    let done = "✅ **staging · decommission** · job #1 · alice";
    read.extend(read_until(&w.chat, |r| r.iter().any(|m| is_final(m, done))).await);
    bot_b.idle().await;

    let (created, edits) = status_message(&read, "⏳ **staging · decommission** · job #1 · alice");
    assert_eq!(read.len(), 1 + edits.len(), "no new status message: {read:#?}");
    assert!(
        edits.iter().any(|m| m.content.contains("picking it up again")),
        "{edits:#?}"
    );
    let last = edits.last().unwrap();
    assert!(last.content.starts_with(done), "{}", last.content);
    assert_eq!(w.chat.message(&created.message_id).unwrap().content, last.content);
    let job = bot_b.store().job(1).unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.owner.as_deref(), Some(bot_b.replica_id()), "B took it over");
    assert_eq!(w.aws.stack_status(STACK), None, "the stack is gone");
    assert_eq!(
        w.aws.count("DeleteStack"),
        1,
        "B followed A's deletion: {:?}",
        w.aws.actions()
    );
    assert_eq!(w.chat.with_state(|s| s.ready_sent), 2);
    clean_finish(&w);
    client_b.abort();
}
