//! The real serenity client (our Discord adapter) against the fake Discord on loopback.

use crate::support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argos::bot::port::{Attachment, ChatEvent, ChatPort, CommandHandler, OutgoingMessage};
use argos::platform::discord::{self, DiscordPort, RateLimits, FOLLOWING_IN_CHANNEL};
use serde_json::json;
use support::fake_discord::*;

/// The test's command handler: echoes, records what it got (and when), and for `deploy`
/// answers through the port instead (a status message, then an edit), returning `None`.
#[derive(Default)]
struct Bot {
    events: Mutex<Vec<(ChatEvent, Instant)>>,
    port: OnceLock<Arc<DiscordPort>>,
}

impl Bot {
    fn handler(self: &Arc<Self>) -> CommandHandler {
        let bot = self.clone();
        Arc::new(move |ev: ChatEvent| {
            let bot = bot.clone();
            Box::pin(async move {
                bot.events.lock().unwrap().push((ev.clone(), Instant::now()));
                if !ev.text.contains("deploy") {
                    return Some(format!("echo: {}", ev.text).into());
                }
                let port = bot.port.get().expect("port set").clone();
                let id = port
                    .send(&ev.channel, OutgoingMessage::text(format!("Deploying: {}", ev.text)))
                    .await
                    .expect("status message");
                port.edit(&ev.channel, &id, OutgoingMessage::text("Deployed."))
                    .await
                    .expect("status edit");
                None
            })
        })
    }

    fn texts(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(e, _)| e.text.clone())
            .collect()
    }
}

struct Setup {
    fake: FakeDiscord,
    bot: Arc<Bot>,
    port: Arc<DiscordPort>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn setup(content_intent: bool, fake_limits: FakeLimits, limits: RateLimits) -> Setup {
    let fake = FakeDiscord::start_with(fake_limits).await;
    let bot = Arc::new(Bot::default());
    let envs = ["staging", "sandbox", "production", "qa-1"].map(String::from).to_vec();
    let (port, task) = discord::start_with_limits(
        &fake.settings(content_intent),
        TOKEN.to_string(),
        "!argos".to_string(),
        envs,
        bot.handler(),
        limits,
    )
    .await
    .expect("adapter starts");
    bot.port.set(port.clone()).expect("once");
    Setup { fake, bot, port, task }
}

async fn setup_default(content_intent: bool) -> Setup {
    setup(content_intent, FakeLimits::DISCORD, RateLimits::DISCORD).await
}

fn finish(s: &Setup) {
    s.fake.assert_all_read();
    s.fake.assert_no_unexpected();
    assert_eq!(s.fake.rate_limited(), 0, "the fake had to answer 429");
}

#[test]
fn fixtures_deserialize_into_serenity_types() {
    use serenity::all::{Command, CurrentUser, Interaction, Message, Ready};
    let ready: Ready = serde_json::from_value(ready_json("ws://127.0.0.1:1")).expect("READY");
    assert_eq!(ready.user.id.get(), BOT_ID);
    assert_eq!(ready.application.id.get(), APP_ID);
    let _: CurrentUser = serde_json::from_value(bot_user_json()).expect("current user");

    let content = format!("<@{BOT_ID}> hi");
    let att = [attachment_json("2", "log.txt", 3)];
    let v = message_json(
        "1",
        &CHANNEL.to_string(),
        &TestUser::deployer(),
        &content,
        &att,
        true,
        true,
    );
    let m: Message = serde_json::from_value(v).expect("message");
    let roles: Vec<u64> = m
        .member
        .as_ref()
        .expect("member")
        .roles
        .iter()
        .map(|r| r.get())
        .collect();
    assert_eq!(roles, TestUser::deployer().roles);
    assert_eq!(m.mentions.len(), 1);
    assert_eq!(m.attachments[0].filename, "log.txt");
    let own: Message =
        serde_json::from_value(message_json("1", "5", &TestUser::argos(), "x", &[], false, false)).expect("own");
    assert!(own.author.bot);

    let options = vec![option("command", "deploy", false), option("env", "sta", true)];
    for kind in [2u8, 4] {
        let v = interaction_json("9", "tok", kind, "5", &TestUser::admin(), options.clone());
        match (kind, serde_json::from_value::<Interaction>(v).expect("interaction")) {
            (2, Interaction::Command(c)) | (4, Interaction::Autocomplete(c)) => {
                assert_eq!(c.user.id.get(), TestUser::admin().id);
                assert_eq!(c.member.expect("member").roles.len(), 2);
                assert_eq!(c.attachment_size_limit, 26_214_400);
            }
            (k, other) => panic!("type {k} parsed as {other:?}"),
        }
    }
    let request = json!({"name": "argos", "description": "d", "options": [
        {"type": 3, "name": "command", "description": "c", "required": true,
         "choices": [{"name": "deploy", "value": "deploy"}]},
        {"type": 3, "name": "env", "description": "e", "autocomplete": true}
    ]});
    let _: Command = serde_json::from_value(command_json(&request, Some("3"))).expect("command");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connects_registers_and_answers_a_prefix_command() {
    let s = setup_default(true).await;
    let intents = s.fake.with_state(|st| st.intents()).expect("identified");
    assert_ne!(intents & (1 << 15), 0, "MESSAGE_CONTENT requested");
    assert_eq!(
        intents & ((1 << 0) | (1 << 9) | (1 << 12)),
        (1 << 0) | (1 << 9) | (1 << 12)
    );
    let commands = s.fake.with_state(|st| st.commands.clone());
    assert_eq!(commands.len(), 1, "{commands:?}");
    let (guild, cmd) = &commands[0];
    assert_eq!(guild.as_deref(), Some(GUILD_ID.to_string().as_str()));
    assert_eq!(cmd["name"], "argos");
    let choices: Vec<&str> = cmd["options"][0]["choices"]
        .as_array()
        .expect("choices")
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert_eq!(choices, discord::slash_choices());
    assert_eq!(cmd["options"][1]["name"], "env");
    assert_eq!(cmd["options"][1]["autocomplete"], true);
    assert_eq!(cmd["options"][2]["name"], "args");
    assert_eq!(cmd["options"][3]["name"], "ref");
    assert_eq!(cmd["options"][3]["autocomplete"], true);

    s.fake
        .push_message(CHANNEL, &TestUser::deployer(), "!argos staging status");
    let reply = s.fake.expect_message(CHANNEL, "echo: staging status").await;
    assert_eq!(reply.content, "echo: staging status");
    let (ev, _) = s.bot.events.lock().unwrap()[0].clone();
    assert_eq!(ev.identity.platform, argos::address::Surface::DISCORD);
    assert_eq!(ev.identity.user_id, TestUser::deployer().id_str());
    assert_eq!(ev.identity.platform_roles, TestUser::deployer().role_strs());
    assert_eq!(ev.identity.display_name, "bob");
    assert_eq!(ev.channel, CHANNEL.to_string());

    // Its own messages (the fake also echoes every reply back) and other bots are ignored;
    // so is chatter not addressed to it.
    s.fake
        .push_message(CHANNEL, &TestUser::argos(), "!argos staging deploy");
    s.fake.push_message(CHANNEL, &TestUser::other_bot(), "!argos jobs");
    s.fake.push_message(CHANNEL, &TestUser::admin(), "hello !argos");
    s.fake
        .push_message(OTHER_CHANNEL, &TestUser::stranger(), "!argos whoami");
    s.fake.expect_message(OTHER_CHANNEL, "echo: whoami").await;
    assert_eq!(s.bot.texts(), ["staging status", "whoami"]);
    let stranger = s.bot.events.lock().unwrap()[1].0.identity.clone();
    assert!(stranger.platform_roles.is_empty());
    finish(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_content_intent_mentions_work_and_prefixes_do_not() {
    let s = setup_default(false).await;
    let intents = s.fake.with_state(|st| st.intents()).expect("identified");
    assert_eq!(intents & (1 << 15), 0, "MESSAGE_CONTENT not requested");
    s.fake
        .push_message(CHANNEL, &TestUser::admin(), "!argos staging status");
    s.fake
        .push_message(CHANNEL, &TestUser::admin(), &format!("<@{BOT_ID}> jobs"));
    s.fake.expect_message(CHANNEL, "echo: jobs").await;
    s.fake
        .push_message(CHANNEL, &TestUser::admin(), &format!("<@!{BOT_ID}>   envs"));
    s.fake.expect_message(CHANNEL, "echo: envs").await;
    assert_eq!(s.bot.texts(), ["jobs", "envs"]);
    finish(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slash_commands_are_deferred_then_answered() {
    let s = setup_default(false).await;

    let id = s.fake.push_slash(CHANNEL, &TestUser::admin(), "status", "staging", "");
    let m = s.fake.next_message().await;
    assert_eq!(m.kind, SentKind::InteractionEdit);
    assert_eq!(m.interaction.as_deref(), Some(id.as_str()));
    assert_eq!(m.content, "echo: staging status");
    let cb = s.fake.callback(&id).await;
    assert_eq!(cb.kind, 5, "deferred");
    let (ev, handled_at) = s.bot.events.lock().unwrap()[0].clone();
    assert!(cb.at <= handled_at, "the defer must come before the handler runs");
    assert!(m.at >= handled_at);
    assert_eq!(ev.identity.user_id, TestUser::admin().id_str());
    assert_eq!(ev.identity.platform_roles, TestUser::admin().role_strs());

    // A global command leaves the environment out.
    let id = s
        .fake
        .push_slash(CHANNEL, &TestUser::deployer(), "job", "staging", "#12");
    let m = s.fake.next_message().await;
    assert_eq!(
        (m.kind, m.content.as_str()),
        (SentKind::InteractionEdit, "echo: job #12")
    );
    assert_eq!(s.fake.callback(&id).await.kind, 5);

    // A job answers in the channel; the deferred response says so.
    let id = s
        .fake
        .push_slash(CHANNEL, &TestUser::deployer(), "deploy", "staging", "--roles api");
    let status = s
        .fake
        .expect_message(CHANNEL, "Deploying: staging deploy --roles api")
        .await;
    assert_eq!(status.kind, SentKind::Create);
    let edit = s.fake.next_message().await;
    assert_eq!(
        (edit.kind, edit.message_id.as_str()),
        (SentKind::Edit, status.message_id.as_str())
    );
    let answer = s.fake.next_message().await;
    assert_eq!(answer.kind, SentKind::InteractionEdit);
    assert_eq!(answer.content, FOLLOWING_IN_CHANNEL);
    assert_eq!(s.fake.callback(&id).await.kind, 5);
    assert_eq!(
        s.bot.texts(),
        ["staging status", "job #12", "staging deploy --roles api"]
    );
    finish(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn autocomplete_offers_matching_environments() {
    let s = setup_default(false).await;
    for (typed, expected) in [
        ("s", vec!["staging", "sandbox"]),
        ("", vec!["staging", "sandbox", "production", "qa-1"]),
        ("QA", vec!["qa-1"]),
        ("x", vec![]),
    ] {
        let id = s
            .fake
            .push_autocomplete(CHANNEL, &TestUser::deployer(), "deploy", typed);
        let cb = s.fake.callback(&id).await;
        assert_eq!(cb.kind, 8, "autocomplete result");
        let got: Vec<&str> = cb.data["choices"]
            .as_array()
            .expect("choices")
            .iter()
            .map(|c| c["value"].as_str().unwrap())
            .collect();
        assert_eq!(got, expected, "typed {typed:?}");
    }
    assert!(s.bot.texts().is_empty(), "autocomplete never reaches the bot");
    finish(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_port_sends_edits_and_attaches_files() {
    let s = setup_default(false).await;
    assert_eq!(s.port.platform(), argos::address::ChatPlatform::Discord);
    let channel = CHANNEL.to_string();
    let id = s
        .port
        .send(&channel, OutgoingMessage::text("Job #1: starting"))
        .await
        .expect("send");
    let m = s.fake.next_message().await;
    assert_eq!(
        (m.kind, m.message_id.as_str(), m.content.as_str()),
        (SentKind::Create, id.as_str(), "Job #1: starting")
    );

    s.port
        .edit(&channel, &id, OutgoingMessage::text("Job #1: 50%"))
        .await
        .expect("edit");
    let m = s.fake.next_message().await;
    assert_eq!((m.kind, m.content.as_str()), (SentKind::Edit, "Job #1: 50%"));
    assert!(m.attachments.is_empty());

    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("job-1.log");
    std::fs::write(&path, "line 1\nline 2\n").expect("write log");
    let done = OutgoingMessage {
        text: "Job #1: done".into(),
        attachment: Some(Attachment {
            filename: "job-1.log".into(),
            path: path.clone(),
        }),
        buttons: Vec::new(),
    };
    s.port
        .edit(&channel, &id, done.clone())
        .await
        .expect("edit with a file");
    let m = s.fake.next_message().await;
    assert_eq!((m.kind, m.content.as_str()), (SentKind::Edit, "Job #1: done"));
    assert_eq!(m.attachments, ["job-1.log"]);
    let stored = s.fake.message(&id).expect("stored");
    assert_eq!((stored.edits, stored.content.as_str()), (2, "Job #1: done"));
    assert_eq!(stored.attachments, ["job-1.log"]);

    // A new message with a file (multipart create).
    let id2 = s.port.send(&channel, done).await.expect("send with a file");
    let m = s.fake.next_message().await;
    assert_eq!((m.kind, m.message_id.as_str()), (SentKind::Create, id2.as_str()));
    assert_eq!(m.attachments, ["job-1.log"]);

    // Bad ids are errors, not panics; a missing file too.
    assert!(s.port.send("general", OutgoingMessage::text("x")).await.is_err());
    let missing = OutgoingMessage {
        text: "x".into(),
        attachment: Some(Attachment {
            filename: "a".into(),
            path: dir.path().join("nope"),
        }),
        buttons: Vec::new(),
    };
    assert!(s.port.edit(&channel, &id, missing).await.is_err());
    let err = s
        .port
        .edit(&channel, "1", OutgoingMessage::text("x"))
        .await
        .expect_err("unknown message");
    assert!(!err.0.contains(TOKEN), "{err}");
    finish(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bursts_of_edits_are_paced_below_the_limit() {
    let window = Duration::from_millis(500);
    let s = setup(
        false,
        FakeLimits {
            per_channel: 5,
            window,
            global_per_second: 50,
        },
        RateLimits {
            per_channel: 5,
            window,
            global_per_second: 40,
        },
    )
    .await;
    let channel = CHANNEL.to_string();
    let started = Instant::now();
    let id = s
        .port
        .send(&channel, OutgoingMessage::text("edit 0"))
        .await
        .expect("send");
    let edits = (1..=20).map(|i| {
        let (port, channel, id) = (s.port.clone(), channel.clone(), id.clone());
        tokio::spawn(async move {
            port.edit(&channel, &id, OutgoingMessage::text(format!("edit {i}")))
                .await
        })
    });
    // Meanwhile another channel is not held up by the busy one.
    let other_channel = OTHER_CHANNEL.to_string();
    let other = s.port.send(&other_channel, OutgoingMessage::text("elsewhere"));
    let (results, other) = tokio::join!(futures_util::future::join_all(edits), other);
    other.expect("other channel");
    for r in results {
        r.expect("task").expect("edit");
    }
    let elapsed = started.elapsed();
    // 21 requests at 5 per 500 ms need at least four full windows.
    assert!(elapsed >= 4 * window, "not paced: {elapsed:?}");
    let mut seen = 0;
    while seen < 22 {
        s.fake.next_message().await;
        seen += 1;
    }
    assert_eq!(s.fake.message(&id).expect("stored").edits, 20);
    finish(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ref_option_offers_the_bots_refs_and_becomes_ref_equals() {
    let s = setup_default(false).await;
    // Before the bot gives the port a suggester (versions off): nothing to offer.
    let id = s
        .fake
        .push_ref_autocomplete(CHANNEL, &TestUser::deployer(), "staging", "v");
    let cb = s.fake.callback(&id).await;
    assert_eq!((cb.kind, cb.data["choices"].as_array().map(Vec::len)), (8, Some(0)));
    // What the adapter asks the bot: the environment chosen and what was typed.
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    s.port.suggest_refs_with(Arc::new(move |env: String, typed: String| {
        seen.lock().unwrap().push((env, typed.clone()));
        Box::pin(async move {
            ["v1.2.0", "v1.1.0", "master"]
                .iter()
                .filter(|r| r.starts_with(&typed))
                .map(|r| r.to_string())
                .collect()
        })
    }));
    let id = s
        .fake
        .push_ref_autocomplete(CHANNEL, &TestUser::deployer(), "staging", "v1");
    let cb = s.fake.callback(&id).await;
    let got: Vec<&str> = cb.data["choices"]
        .as_array()
        .expect("choices")
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["v1.2.0", "v1.1.0"]);
    assert_eq!(*asked.lock().unwrap(), [("staging".to_string(), "v1".to_string())]);
    assert!(s.bot.texts().is_empty(), "autocomplete never reaches the bot");

    let id = s
        .fake
        .push_slash_with_ref(CHANNEL, &TestUser::deployer(), "commission", "staging", "v1.2.0");
    let m = s.fake.next_message().await;
    assert_eq!(
        (m.kind, m.content.as_str()),
        (SentKind::InteractionEdit, "echo: staging commission ref=v1.2.0")
    );
    assert_eq!(s.fake.callback(&id).await.kind, 5);
    assert_eq!(s.bot.texts(), ["staging commission ref=v1.2.0"]);
    finish(&s);
}
