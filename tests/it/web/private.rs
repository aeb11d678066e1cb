//! `web`'s sign-in link reaches its asker privately on every chat: on Discord a prefix or
//! mention command gets it in a direct message (and the channel a line saying so), `/argos web`
//! as an ephemeral interaction response (flag 64 on the deferral); on Slack as an ephemeral
//! message (`chat.postEphemeral`) or through the slash command's `response_url` (ephemeral).
//! The link never appears in a public channel, and a direct message Discord refuses (403,
//! code 50007) or an ephemeral post Slack refuses gives a clear public error without the link.
use crate::support;

use argos::platform::discord::EPHEMERAL;
use support::fake_discord::{FakeDiscord, Sent, SentKind, TestUser, CHANNEL, FAST_FAKE_LIMITS};
use support::fake_slack::{SlackUser, CHANNEL as SLACK_CHANNEL};
use support::world::{start_discord_bot, start_slack_bot, World};

const WEB: &str = "web:\n  public_url: \"https://argos.example.com\"\n  link_minutes: 3\n";
const LINK: &str = "https://argos.example.com/login/";

/// The one sign-in link in `text`.
#[track_caller]
fn link_in(text: &str) -> String {
    let start = text.find(LINK).unwrap_or_else(|| panic!("no sign-in link in {text:?}"));
    let link: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '>')
        .collect();
    assert_eq!(link.len(), LINK.len() + 64, "{link}");
    link
}

/// Nothing the bot posted in the public channel carries a sign-in link.
#[track_caller]
fn no_link_in_public(fake: &FakeDiscord) {
    fake.with_state(|s| {
        let public: Vec<&Sent> = s
            .sent
            .iter()
            .filter(|m| m.channel == CHANNEL.to_string() && m.interaction.is_none())
            .collect();
        assert!(public.iter().all(|m| !m.content.contains("/login/")), "{public:#?}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_discord_the_link_goes_by_direct_message_or_ephemeral_answer_never_to_the_channel() {
    let w = World::builder().config(WEB).discord(FAST_FAKE_LIMITS, true).await;
    let (bot, client, _) = start_discord_bot(w.project.config()).await;
    let fake = &w.chat;
    let alice = TestUser::admin();

    // `!argos web`: the link in a direct message, a line in the channel saying so.
    fake.push_message(CHANNEL, &alice, "!argos web");
    let dm = fake.next_message().await;
    let dm_channel = fake.dm_channel(&alice).expect("a DM channel opened with alice");
    assert_eq!((dm.kind, &dm.channel), (SentKind::Create, &dm_channel));
    assert_ne!(dm_channel, CHANNEL.to_string());
    let link = link_in(&dm.content);
    assert!(dm.pings_nobody());
    let notice = fake
        .expect_message(CHANNEL, "📬 I sent you a sign-in link in a direct message.")
        .await;
    assert_eq!(notice.content, "📬 I sent you a sign-in link in a direct message.");
    // The link works (once), for alice.
    let token = &link[LINK.len()..];
    let who = bot.store().redeem_sign_in_link(token, "feed", 60_000).unwrap().unwrap();
    assert_eq!(who.user_id, alice.id_str());

    // `/argos web`: deferred with the ephemeral flag, so the answer is alice's only.
    let id = fake.push_slash(CHANNEL, &alice, "web", "", "");
    let callback = fake.callback(&id).await;
    assert_eq!(callback.kind, 5, "deferred");
    assert_eq!(callback.data["flags"].as_u64(), Some(EPHEMERAL), "{callback:?}");
    let answer = fake.next_message().await;
    assert_eq!(
        (answer.kind, answer.interaction.as_deref()),
        (SentKind::InteractionEdit, Some(id.as_str()))
    );
    let second = link_in(&answer.content);
    assert_ne!(second, link, "every link is new");

    // Any other slash command is still deferred in public.
    let id = fake.push_slash(CHANNEL, &alice, "whoami", "", "");
    let callback = fake.callback(&id).await;
    assert_eq!(
        callback.data["flags"].as_u64().unwrap_or(0) & EPHEMERAL,
        0,
        "{callback:?}"
    );
    let whoami = fake.next_message().await;
    assert_eq!(whoami.kind, SentKind::InteractionEdit);

    no_link_in_public(fake);
    fake.assert_all_read();
    fake.assert_no_unexpected();
    client.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_discord_a_refused_direct_message_is_reported_in_the_channel_without_the_link() {
    let w = World::builder().config(WEB).discord(FAST_FAKE_LIMITS, true).await;
    let (bot, client, _) = start_discord_bot(w.project.config()).await;
    let fake = &w.chat;
    let alice = TestUser::admin();
    fake.refuse_direct_messages(&alice);

    fake.push_message(CHANNEL, &alice, "!argos web");
    let error = fake.next_message().await;
    assert_eq!(error.channel, CHANNEL.to_string(), "{error:#?}");
    assert_eq!(
        error.content,
        "❌ I could not send you a sign-in link privately: Discord refused the direct message (you do not \
         accept direct messages from this server's members); allow them in the server's privacy settings, or \
         use the slash command `/argos web`, whose answer only you can see. Nothing was posted here."
    );
    assert!(error.pings_nobody());
    // The refused request is the DM itself; nothing else carries the link.
    fake.with_state(|s| {
        assert!(s.sent.iter().all(|m| !m.content.contains("/login/")), "{:#?}", s.sent);
        assert!(s
            .requests
            .iter()
            .any(|(m, p, _)| m == "POST" && p == "/api/v10/users/@me/channels"));
    });
    no_link_in_public(fake);
    // The audit log has the command, never a token.
    let audit = bot.store().audit_log(20).unwrap();
    assert!(audit
        .iter()
        .all(|r| !r.outcome.contains("/login/") && !r.command.contains("/login/")));
    fake.assert_all_read();
    fake.assert_no_unexpected();
    client.abort();
}

/// The bot's side of the fake's test limits (as `slack::world::LIMITS`).
const SLACK_LIMITS: argos::platform::slack::SlackLimits = argos::platform::slack::SlackLimits {
    posts_per_channel: 1,
    post_window: std::time::Duration::from_secs(1),
    updates: 10,
    update_period: std::time::Duration::from_secs(2),
};

fn slack_people() -> String {
    "permissions:\n  roles:\n    admins: { slack_users: [U0ADMIN] }\n  rules:\n    - role: admins\n      environments: [\"*\"]\n      actions: [\"*\"]\n"
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_slack_the_link_is_ephemeral_and_a_refusal_is_reported_without_it() {
    let w = World::builder()
        .config(WEB)
        .config(&slack_people())
        .slack(support::fake_slack::FakeSlackLimits::TEST)
        .await;
    let mut r = start_slack_bot(w.project.config(), SLACK_LIMITS).await;
    let fake = &w.chat;
    let alice = SlackUser::admin();

    // `!argos web`: an ephemeral message to alice in the channel, no post.
    fake.push_message(SLACK_CHANNEL, &alice, "!argos web");
    let ephemeral = fake
        .wait_for("an ephemeral message", |s| s.ephemerals.first().cloned())
        .await;
    assert_eq!(
        (ephemeral.channel.as_str(), ephemeral.user.as_str()),
        (SLACK_CHANNEL, alice.id.as_str())
    );
    let link = link_in(&ephemeral.all_text());

    // `/argos web`: through the response_url, ephemeral (no `in_channel`).
    let envelope = fake.push_slash(SLACK_CHANNEL, &alice, "web");
    let response = fake.wait_response(&envelope).await;
    assert_eq!(response.response_type, None, "Slack's default: ephemeral");
    assert_ne!(link_in(&response.text), link);

    // Slack refuses the ephemeral post: the channel is told, without the link.
    fake.fail_next("chat.postEphemeral", "user_not_in_channel");
    fake.push_message(SLACK_CHANNEL, &alice, "!argos web");
    let error = fake
        .expect_post(SLACK_CHANNEL, "❌ I could not send you a sign-in link privately: ")
        .await;
    assert!(error.all_text().contains("user_not_in_channel"), "{error:#?}");
    r.handled(3).await;
    fake.with_state(|s| {
        assert!(
            s.posts.iter().all(|p| !p.all_text().contains("/login/")),
            "{:#?}",
            s.posts
        );
    });
    fake.assert_all_read();
    fake.assert_no_unexpected();
    r.stop().await;
}
