//! Message buttons on Discord: the adapter renders `OutgoingMessage::buttons` as an action row
//! whose `custom_id`s carry the commands, and a click runs that command as the clicking user.
//! End to end with the whole bot: the approval request's Approve button, clicked by someone
//! without the right, by a second admin, and after a restart. Every scenario ends with the fake
//! Discord never having answered 429 and every message the bot sent having been read.
use crate::support;

use std::sync::{Arc, Mutex};

use argos::bot::port::{Button, ChatEvent, ChatPort, CommandHandler, OutgoingMessage};
use argos::bot::Bot;
use argos::platform::discord::{self, DiscordPort, RateLimits, BUTTON_PREFIX, ON_IT};
use argos::store::JobState;
use serde_json::json;
use support::fake_aws::{Op, StackScript};
use support::fake_discord::*;
use support::world::{start_discord_bot, World as AnyWorld, STACK, TINY_TEMPLATE};

const RESOURCES: &[(&str, &str)] = &[
    ("WebSecurityGroup", "AWS::EC2::SecurityGroup"),
    ("ApiInstance", "AWS::EC2::Instance"),
];

const FAKE_LIMITS: FakeLimits = FAST_FAKE_LIMITS;
const LIMITS: RateLimits = FAST_LIMITS;

const STYLE_SECONDARY: u64 = 2;
const STYLE_SUCCESS: u64 = 3;
const STYLE_DANGER: u64 = 4;
const EPHEMERAL: u64 = 1 << 6;

/// A second admin: the requester may not approve their own request.
fn carol() -> TestUser {
    TestUser {
        id: 1_400_000_000_000_000_005,
        name: "carol",
        roles: vec![ADMIN_ROLE, MEMBER_ROLE],
        bot: false,
    }
}

fn button(label: &str, command: &str) -> Button {
    Button {
        label: label.into(),
        command: command.into(),
    }
}

fn with_buttons(text: &str, buttons: Vec<Button>) -> OutgoingMessage {
    OutgoingMessage {
        buttons,
        ..OutgoingMessage::text(text)
    }
}

fn fb(label: &str, style: u64, command: &str) -> FakeButton {
    FakeButton {
        label: label.into(),
        style,
        custom_id: format!("{BUTTON_PREFIX}{command}"),
    }
}

#[track_caller]
fn clean_finish(fake: &FakeDiscord) {
    assert_eq!(fake.rate_limited(), 0, "the fake Discord had to answer 429");
    fake.assert_all_read();
    fake.assert_no_unexpected();
}

#[test]
fn the_button_click_fixture_deserializes_into_serenity_types() {
    use serenity::all::{ActionRowComponent, ComponentInteractionDataKind, CreateActionRow, CreateButton, Interaction};
    // The components as serenity sends them, echoed back in the message.
    let row = CreateActionRow::Buttons(vec![
        CreateButton::new("argos:cmd:approve 1").label("Approve"),
        CreateButton::new("argos:cmd:deny 1").label("Deny"),
    ]);
    let mut message = message_json("7", &CHANNEL.to_string(), &TestUser::argos(), "req", &[], false, true);
    message["components"] = json!([serde_json::to_value(&row).unwrap()]);
    let v = component_interaction_json(
        "9",
        "tok",
        &CHANNEL.to_string(),
        &TestUser::deployer(),
        message,
        "argos:cmd:approve 1",
    );
    let Interaction::Component(click) = serde_json::from_value::<Interaction>(v).expect("interaction") else {
        panic!("not a component interaction");
    };
    assert_eq!(click.data.custom_id, "argos:cmd:approve 1");
    assert!(matches!(click.data.kind, ComponentInteractionDataKind::Button));
    assert_eq!(click.user.id.get(), TestUser::deployer().id);
    assert_eq!(click.channel_id.get(), CHANNEL);
    let roles: Vec<u64> = click.member.expect("member").roles.iter().map(|r| r.get()).collect();
    assert_eq!(roles, TestUser::deployer().roles);
    assert_eq!(click.message.id.get(), 7);
    let ids: Vec<String> = click.message.components[0]
        .components
        .iter()
        .map(|c| match c {
            ActionRowComponent::Button(b) => format!("{:?}", b.data),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0].contains("argos:cmd:approve 1"), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_renders_buttons_and_an_edit_without_buttons_clears_them() {
    let fake = FakeDiscord::start_with(FAKE_LIMITS).await;
    let port = DiscordPort::new(&fake.settings(false), TOKEN, LIMITS);

    let msg = with_buttons(
        "🔐 Approval needed",
        vec![
            button("Approve", "approve 12"),
            button("Deny", "deny 12"),
            button("Show plan", "job 12"),
        ],
    );
    let id = port.send(&CHANNEL.to_string(), msg).await.expect("sent");
    let sent = fake.next_message().await;
    assert_eq!((sent.kind, sent.message_id.as_str()), (SentKind::Create, id.as_str()));
    let expected = vec![
        fb("Approve", STYLE_SUCCESS, "approve 12"),
        fb("Deny", STYLE_DANGER, "deny 12"),
        fb("Show plan", STYLE_SECONDARY, "job 12"),
    ];
    assert_eq!(sent.buttons(), expected);
    let rows = sent.components.as_ref().expect("components sent");
    assert_eq!(rows.len(), 1, "one action row");
    assert_eq!(rows[0]["type"], 1);
    assert_eq!(fake.message(&id).unwrap().buttons(), expected);
    assert_eq!(
        fake.message(&id).unwrap().buttons()[0].custom_id,
        "argos:cmd:approve 12"
    );

    // An edit with buttons replaces them.
    let msg = with_buttons("1/2 approvals", vec![button("Approve", "approve 12")]);
    port.edit(&CHANNEL.to_string(), &id, msg).await.expect("edited");
    let edit = fake.next_message().await;
    assert_eq!(edit.kind, SentKind::Edit);
    assert_eq!(edit.buttons(), [fb("Approve", STYLE_SUCCESS, "approve 12")]);
    assert_eq!(fake.message(&id).unwrap().buttons().len(), 1);

    // An edit without buttons removes them: an empty components list is sent.
    port.edit(&CHANNEL.to_string(), &id, OutgoingMessage::text("✅ Approved"))
        .await
        .expect("edited");
    let edit = fake.next_message().await;
    assert_eq!(edit.kind, SentKind::Edit);
    assert_eq!(edit.components, Some(vec![]), "components cleared explicitly");
    let stored = fake.message(&id).unwrap();
    assert!(stored.components.is_empty(), "{stored:#?}");
    assert_eq!(stored.content, "✅ Approved");

    // At most five; a command too long for a custom_id is left out; no row without buttons.
    let many: Vec<Button> = (0..7).map(|i| button(&format!("B{i}"), &format!("job {i}"))).collect();
    let mut with_long = vec![button("Long", &"x".repeat(100))];
    with_long.extend(many);
    port.send(&OTHER_CHANNEL.to_string(), with_buttons("many", with_long))
        .await
        .expect("sent");
    let sent = fake.next_message().await;
    let ids: Vec<String> = sent.buttons().into_iter().map(|b| b.custom_id).collect();
    assert_eq!(ids, (0..5).map(|i| format!("argos:cmd:job {i}")).collect::<Vec<_>>());
    port.send(&OTHER_CHANNEL.to_string(), OutgoingMessage::text("plain"))
        .await
        .expect("sent");
    assert_eq!(fake.next_message().await.components, Some(vec![]), "no action row");
    clean_finish(&fake);
}

/// The adapter alone with a handler that records what it got: echoes, except `None` for
/// commands containing `deploy` (as when a job answers in the channel).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_click_runs_the_command_as_the_clicker_and_answers_only_them() {
    let fake = FakeDiscord::start_with(FAKE_LIMITS).await;
    let events: Arc<Mutex<Vec<ChatEvent>>> = Arc::default();
    let seen = events.clone();
    let handler: CommandHandler = Arc::new(move |ev: ChatEvent| {
        let seen = seen.clone();
        Box::pin(async move {
            seen.lock().unwrap().push(ev.clone());
            (!ev.text.contains("deploy")).then(|| format!("echo: {}", ev.text).into())
        })
    });
    let (port, client) = discord::start_with_limits(
        &fake.settings(false),
        TOKEN.to_string(),
        "!argos".into(),
        vec!["staging".into()],
        handler,
        LIMITS,
    )
    .await
    .expect("adapter starts");
    let msg = with_buttons(
        "Pick one",
        vec![button("Approve", "approve 7"), button("Deploy", "staging deploy")],
    );
    let mid = port.send(&CHANNEL.to_string(), msg).await.expect("sent");
    fake.next_message().await;

    let deployer = TestUser::deployer();
    let click = fake.push_button(CHANNEL, &deployer, &mid, "argos:cmd:approve 7");
    let answer = fake.next_message().await;
    assert_eq!(
        (answer.kind, answer.content.as_str(), answer.interaction.as_deref()),
        (SentKind::InteractionEdit, "echo: approve 7", Some(click.as_str()))
    );
    let cb = fake.callback(&click).await;
    assert_eq!(cb.kind, 5, "deferred");
    assert_eq!(cb.data["flags"], json!(EPHEMERAL), "only the clicker sees the answer");
    assert!(cb.at <= answer.at);
    let ev = events.lock().unwrap()[0].clone();
    assert_eq!(ev.text, "approve 7");
    assert_eq!(ev.channel, CHANNEL.to_string());
    assert_eq!(ev.identity.platform, argos::address::Surface::DISCORD);
    assert_eq!(ev.identity.user_id, deployer.id_str());
    assert_eq!(ev.identity.display_name, "bob");
    assert_eq!(ev.identity.platform_roles, deployer.role_strs());

    // Another app's button is not ours: not acknowledged, never reaches the bot.
    let mut foreign = message_json(
        "77",
        &CHANNEL.to_string(),
        &TestUser::other_bot(),
        "x",
        &[],
        false,
        true,
    );
    foreign["components"] = json!([{"type": 1, "components": [
        {"type": 2, "style": 1, "label": "Go", "custom_id": "other:go"}]}]);
    let ignored = fake.push_button_unchecked(CHANNEL, &TestUser::admin(), foreign, "other:go");

    // When the bot answers in the channel, the clicker is told it is on.
    let click = fake.push_button(CHANNEL, &TestUser::admin(), &mid, "argos:cmd:staging deploy");
    let answer = fake.next_message().await;
    assert_eq!(
        (answer.kind, answer.content.as_str()),
        (SentKind::InteractionEdit, ON_IT)
    );
    assert_eq!(fake.callback(&click).await.kind, 5);
    let texts: Vec<String> = events.lock().unwrap().iter().map(|e| e.text.clone()).collect();
    assert_eq!(texts, ["approve 7", "staging deploy"]);
    assert!(
        fake.with_state(|s| s.callbacks.iter().all(|c| c.interaction_id != ignored)),
        "a foreign button was acknowledged"
    );
    clean_finish(&fake);
    client.abort();
}

type World = AnyWorld<FakeDiscord>;

/// The whole bot with the default approval policy (decommission needs one approver with the
/// `approve` permission), the deployer allowed to deploy only; staging's stack, whose next
/// deletion succeeds.
async fn world() -> World {
    let w = AnyWorld::builder()
        .time_scale(20.0)
        .discord(FAST_FAKE_LIMITS, true)
        .await;
    w.aws.add_stack(STACK, TINY_TEMPLATE, &[], RESOURCES);
    w.aws.script_next_for(
        STACK,
        Op::Delete,
        StackScript::delete_success(STACK, RESOURCES, &[2.0, 2.0]),
    );
    w
}

const REQUEST: &str = "🔐 **Approval needed** · job #1 · staging decommission requested by alice";
const APPROVE: &str = "argos:cmd:approve 1";
const DONE: &str = "✅ **staging · decommission** · job #1 · alice";

/// Asks for the decommission; returns the request message, after checking its buttons.
async fn request(w: &World) -> Sent {
    w.chat
        .push_message(CHANNEL, &TestUser::admin(), "!argos staging decommission");
    let req = w.chat.expect_message(CHANNEL, REQUEST).await;
    assert_eq!(req.kind, SentKind::Create);
    assert_eq!(
        req.buttons(),
        [
            fb("Approve", STYLE_SUCCESS, "approve 1"),
            fb("Deny", STYLE_DANGER, "deny 1"),
        ]
    );
    req
}

/// `who` clicks Approve under `req`: the job starts, the request loses its buttons, the stack
/// is deleted.
async fn approve_and_finish(w: &World, bot: &Bot, req: &Sent, who: &TestUser) {
    let click = w.chat.push_button(CHANNEL, who, &req.message_id, APPROVE);
    let mut read = Vec::new();
    while !(read
        .iter()
        .any(|m: &Sent| m.kind == SentKind::Edit && m.content.starts_with(DONE))
        && read.iter().any(|m: &Sent| m.kind == SentKind::InteractionEdit))
    {
        read.push(w.chat.next_message().await);
    }
    bot.idle().await;

    let answers: Vec<&Sent> = read.iter().filter(|m| m.kind == SentKind::InteractionEdit).collect();
    assert_eq!(answers.len(), 1, "{read:#?}");
    assert_eq!(answers[0].content, "✅ Approved: job #1 starts now.");
    assert_eq!(answers[0].interaction.as_deref(), Some(click.as_str()));
    let cb = w.chat.callback(&click).await;
    assert_eq!((cb.kind, cb.data["flags"].as_u64()), (5, Some(EPHEMERAL)));

    let req_edits: Vec<&Sent> = read.iter().filter(|m| m.message_id == req.message_id).collect();
    assert_eq!(req_edits.len(), 1, "{read:#?}");
    assert_eq!(req_edits[0].kind, SentKind::Edit);
    assert!(
        req_edits[0].content.contains("✅ Approved: starting."),
        "{req_edits:#?}"
    );
    assert_eq!(req_edits[0].components, Some(vec![]), "the buttons are removed");
    let stored = w.chat.message(&req.message_id).unwrap();
    assert!(stored.buttons().is_empty(), "{stored:#?}");

    let status: Vec<&Sent> = read
        .iter()
        .filter(|m| m.kind == SentKind::Create && m.content.starts_with("⏳ **staging · decommission** · job #1"))
        .collect();
    assert_eq!(status.len(), 1, "one status message: {read:#?}");
    assert!(status[0].buttons().is_empty());
    let last = read.iter().rfind(|m| m.message_id == status[0].message_id).unwrap();
    assert!(last.content.starts_with(DONE), "{}", last.content);
    assert_eq!(
        read.len(),
        answers.len() + req_edits.len() + read.iter().filter(|m| m.message_id == status[0].message_id).count(),
        "nothing else: {read:#?}"
    );
    assert_eq!(bot.store().job(1).unwrap().unwrap().state, JobState::Succeeded);
    assert_eq!(
        bot.store().approval_for_job(1).unwrap().unwrap().state,
        argos::store::ApprovalState::Started
    );
    assert_eq!(w.aws.stack_status(STACK), None, "the stack is gone");
    assert_eq!(w.aws.count("DeleteStack"), 1, "{:?}", w.aws.actions());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_approve_button_needs_the_right_and_a_second_admin_starts_the_job() {
    let w = world().await;
    let (bot, client, mut done) = start_discord_bot(w.project.config()).await;
    let req = request(&w).await;

    // The deployer may not approve: told so, privately; nothing happens.
    let click = w
        .chat
        .push_button(CHANNEL, &TestUser::deployer(), &req.message_id, APPROVE);
    let answer = w.chat.next_message().await;
    assert_eq!(answer.kind, SentKind::InteractionEdit);
    assert_eq!(answer.interaction.as_deref(), Some(click.as_str()));
    assert!(
        answer
            .content
            .starts_with("⛔ You don't have permission for approve on staging"),
        "{}",
        answer.content
    );
    assert_eq!(w.chat.callback(&click).await.data["flags"].as_u64(), Some(EPHEMERAL));
    // Neither may the requester.
    let click = w
        .chat
        .push_button(CHANNEL, &TestUser::admin(), &req.message_id, APPROVE);
    let answer = w.chat.next_message().await;
    assert_eq!(
        (answer.kind, answer.content.as_str(), answer.interaction.as_deref()),
        (
            SentKind::InteractionEdit,
            "✋ You requested job #1; someone else has to approve it.",
            Some(click.as_str())
        )
    );
    done.until(3).await;
    assert_eq!(bot.store().job(1).unwrap().unwrap().state, JobState::Queued);
    assert_eq!(
        bot.store().approval_for_job(1).unwrap().unwrap().state,
        argos::store::ApprovalState::Pending
    );
    let stored = w.chat.message(&req.message_id).unwrap();
    assert_eq!((stored.edits, stored.buttons().len()), (0, 2), "{stored:#?}");
    assert_eq!(w.aws.count("DeleteStack"), 0);

    approve_and_finish(&w, &bot, &req, &carol()).await;
    clean_finish(&w.chat);
    client.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_original_button_works_after_a_restart() {
    let w = world().await;

    // Bot A on its own runtime, stopped as a crash would stop it.
    let rt_a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime A");
    let (bot_a, client_a, mut done_a) = rt_a
        .spawn(start_discord_bot(w.project.config()))
        .await
        .expect("bot A starts");
    let req = request(&w).await;
    // The request is recorded with its message before A stops.
    done_a.until(1).await;
    client_a.abort();
    drop(bot_a);
    rt_a.shutdown_background();

    // Bot B: same database, a new Discord client. The button is read from the message itself.
    let (bot_b, client_b, _) = start_discord_bot(w.project.config()).await;
    assert_eq!(bot_b.resume_unfinished().await, Vec::<u64>::new(), "nothing to resume");
    let original = w.chat.message(&req.message_id).expect("the request message");
    let approve = original
        .buttons()
        .into_iter()
        .find(|b| b.label == "Approve")
        .expect("an Approve button");
    assert_eq!(approve.custom_id, APPROVE);
    approve_and_finish(&w, &bot_b, &req, &carol()).await;
    assert_eq!(w.chat.with_state(|s| s.ready_sent), 2);
    clean_finish(&w.chat);
    client_b.abort();
}
