//! Discord's rate limits on the path production runs: the adapter against the fake Discord,
//! which answers 429s as Discord documents them (body `retry_after`, `Retry-After`,
//! `X-RateLimit-*`), refuses again whatever comes back before the wait is over, announces
//! buckets in its headers, and records when every request arrived. Each test asserts the
//! waits from those arrival times, and that no request drew a second 429.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use argos::bot::port::{ChatEvent, ChatPort, CommandHandler, OutgoingMessage};
use argos::platform::discord::{self, DiscordPort};
use argos::store::Store;
use support::fake_discord::*;

/// How long the scripted 429s ask the bot to wait (the capture said 2.0 s; shorter
/// keeps the suite quick, and the assertions are the same).
const RETRY: Duration = Duration::from_millis(1200);

fn text(t: &str) -> OutgoingMessage {
    OutgoingMessage::text(t.to_string())
}

/// `later` came at least `gap` after `earlier`.
fn assert_waited(what: &str, earlier: Instant, later: Instant, gap: Duration) {
    let waited = later.saturating_duration_since(earlier);
    assert!(waited >= gap, "{what}: came {waited:?} after, the wait was {gap:?}");
}

fn one_429(fake: &FakeDiscord) -> Limited {
    let (limited, early) = fake.with_state(|s| (s.limited_at.clone(), s.early_retries()));
    assert_eq!(
        limited.len(),
        1,
        "only the scripted 429, nothing came back early: {limited:#?}"
    );
    assert_eq!(early, [], "requests that came back before the 429's wait was over");
    limited[0].clone()
}

/// A port alone (no gateway): what the reporter and the outbox post through.
fn port_on(fake: &FakeDiscord) -> DiscordPort {
    DiscordPort::new(&fake.settings(false), TOKEN, FAST_LIMITS)
}

#[tokio::test]
async fn a_429_on_an_edit_is_waited_out_and_the_next_edit_keeps_its_place() {
    let fake = FakeDiscord::start_with(FAST_FAKE_LIMITS).await;
    let port = port_on(&fake);
    let channel = CHANNEL.to_string();
    let id = port.send(&channel, text("Deploying staging")).await.expect("posted");
    fake.next_message().await;
    let edit = format!("PATCH /api/v10/channels/{CHANNEL}/messages/{id}");
    fake.refuse(Refusal {
        request: edit.clone(),
        retry_after: RETRY,
        global: false,
    });

    port.edit(&channel, &id, text("Deploying staging: step 1"))
        .await
        .expect("the edit goes through once the 429 is waited out");
    port.edit(&channel, &id, text("Deploying staging: step 2"))
        .await
        .expect("the next edit");

    let limited = one_429(&fake);
    let patches = fake.with_state(|s| s.arrivals(&edit));
    assert_eq!(patches.len(), 3, "the refused edit, its retry, the next edit");
    assert_eq!(patches[0], limited.at);
    assert_waited("the retry", limited.at, patches[1], RETRY);
    assert_eq!(fake.next_message().await.content, "Deploying staging: step 1");
    assert_eq!(fake.next_message().await.content, "Deploying staging: step 2");
    assert_eq!(fake.message(&id).expect("stored").content, "Deploying staging: step 2");
    fake.assert_all_read();
    fake.assert_no_unexpected();
}

#[tokio::test]
async fn a_429_on_a_post_is_waited_out_before_the_retry() {
    let fake = FakeDiscord::start_with(FAST_FAKE_LIMITS).await;
    let port = port_on(&fake);
    let post = format!("POST /api/v10/channels/{CHANNEL}/messages");
    fake.refuse(Refusal {
        request: post.clone(),
        retry_after: RETRY,
        global: false,
    });

    let id = port
        .send(&CHANNEL.to_string(), text("Approval needed"))
        .await
        .expect("posted once the 429 is waited out");

    let limited = one_429(&fake);
    let posts = fake.with_state(|s| s.arrivals(&post));
    assert_eq!(posts.len(), 2, "the refused post and its retry");
    assert_waited("the retry", limited.at, posts[1], RETRY);
    let sent = fake.next_message().await;
    assert_eq!((sent.message_id, sent.content.as_str()), (id, "Approval needed"));
    fake.assert_all_read();
}

/// The bot on the gateway, answering every slash command with "echo: <text>".
struct Connected {
    fake: FakeDiscord,
    port: Arc<DiscordPort>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connected() -> Connected {
    let fake = FakeDiscord::start_with(FAST_FAKE_LIMITS).await;
    let handler: CommandHandler =
        Arc::new(|ev: ChatEvent| Box::pin(async move { Some(format!("echo: {}", ev.text).into()) }));
    let (port, task) = discord::start_with_limits(
        &fake.settings(false),
        TOKEN.to_string(),
        "!argos".to_string(),
        vec!["staging".to_string()],
        handler,
        FAST_LIMITS,
    )
    .await
    .expect("adapter starts");
    Connected { fake, port, task }
}

#[tokio::test]
async fn a_429_on_a_follow_up_is_waited_out_before_the_retry() {
    let c = connected().await;
    let follow_up = "PATCH /api/v10/webhooks/";
    c.fake.refuse(Refusal {
        request: follow_up.to_string(),
        retry_after: RETRY,
        global: false,
    });

    let interaction = c.fake.push_slash(CHANNEL, &TestUser::admin(), "status", "staging", "");
    let answer = c.fake.next_message().await;
    assert_eq!(answer.kind, SentKind::InteractionEdit);
    assert_eq!(answer.interaction.as_deref(), Some(interaction.as_str()));
    assert_eq!(answer.content, "echo: staging status");

    let limited = one_429(&c.fake);
    let edits = c.fake.with_state(|s| s.arrivals(follow_up));
    assert_eq!(edits.len(), 2, "the refused follow-up and its retry");
    assert_waited("the retry", limited.at, edits[1], RETRY);
    c.fake.assert_all_read();
    c.fake.assert_no_unexpected();
}

#[tokio::test]
async fn a_global_429_holds_every_request_but_the_interaction_endpoints() {
    let c = connected().await;
    c.fake.refuse(Refusal {
        request: "POST /api/v10/channels/".to_string(),
        retry_after: RETRY,
        global: true,
    });

    let first = {
        let port = c.port.clone();
        tokio::spawn(async move { port.send(&CHANNEL.to_string(), text("first")).await })
    };
    let held_at = c
        .fake
        .wait_for("the global 429", |s| s.limited_at.first().map(|l| l.at))
        .await;
    // A request sent while the 429 is still on its way back would draw one too (on Discord as
    // well): wait until the bot has read it.
    let deadline = Instant::now() + RETRY;
    while c.port.global_hold().is_none() {
        assert!(Instant::now() < deadline, "the bot never took in the global 429");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // During the hold: a post to another channel waits; a slash command is still answered
    // at once (Discord does not count interaction endpoints against the global limit).
    let other = {
        let port = c.port.clone();
        tokio::spawn(async move { port.send(&OTHER_CHANNEL.to_string(), text("other")).await })
    };
    let interaction = c.fake.push_slash(CHANNEL, &TestUser::admin(), "status", "staging", "");
    let deferred = c.fake.callback(&interaction).await;
    first.await.expect("task").expect("first posted");
    other.await.expect("task").expect("other posted");

    let limited = one_429(&c.fake);
    assert!(limited.global);
    assert!(
        deferred.at < held_at + RETRY,
        "the interaction was answered during the hold, {:?} after the 429",
        deferred.at - held_at
    );
    let posts = c.fake.with_state(|s| s.arrivals("POST /api/v10/channels/"));
    assert_eq!(posts.len(), 3, "the refused post, its retry, the other channel's post");
    for at in &posts[1..] {
        assert_waited("a post after the global 429", held_at, *at, RETRY);
    }
    let mut texts: Vec<String> = Vec::new();
    for _ in 0..3 {
        texts.push(c.fake.next_message().await.content);
    }
    texts.sort();
    assert_eq!(texts, ["echo: staging status", "first", "other"]);
    c.fake.assert_all_read();
}

#[tokio::test]
async fn a_bucket_that_runs_out_by_its_headers_is_waited_for_without_a_429() {
    let fake = FakeDiscord::start_with(FAST_FAKE_LIMITS).await;
    // Stricter than the adapter's own prior (5 per 250 ms): only the headers can tell it.
    let reset = Duration::from_millis(1200);
    let post = format!("POST /api/v10/channels/{CHANNEL}/messages");
    fake.announce(Announced {
        request: post.clone(),
        bucket: "fake-messages".to_string(),
        limit: 2,
        reset_after: reset,
    });
    let port = port_on(&fake);
    for n in 0..3 {
        port.send(&CHANNEL.to_string(), text(&format!("message {n}")))
            .await
            .expect("posted");
    }
    assert_eq!(fake.rate_limited(), 0, "the bucket was waited for, not overrun");
    let posts = fake.with_state(|s| s.arrivals(&post));
    assert_eq!(posts.len(), 3);
    assert!(posts[1] - posts[0] < reset, "two fit in the bucket");
    assert_waited("the third post", posts[0], posts[2], reset);
    for n in 0..3 {
        assert_eq!(fake.next_message().await.content, format!("message {n}"));
    }
    fake.assert_all_read();
}

#[tokio::test]
async fn three_replicas_share_a_global_429_through_the_store() {
    let fake = FakeDiscord::start_with(FAST_FAKE_LIMITS).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("argos.db");
    let mut replicas = Vec::new();
    for name in ["a", "b", "c"] {
        let mut settings = fake.settings(false);
        settings.api_proxy = Some(fake.add_session(name).await);
        let port = Arc::new(DiscordPort::new(&settings, TOKEN, FAST_LIMITS));
        // Each replica is its own process with its own connection to the database.
        port.share_holds(Arc::new(Store::open(&db).expect("store")));
        replicas.push(port);
    }
    fake.refuse(Refusal {
        request: "POST /api/v10/channels/".to_string(),
        retry_after: RETRY,
        global: true,
    });

    let post = |port: &Arc<DiscordPort>, channel: u64, t: &'static str| {
        let port = port.clone();
        tokio::spawn(async move { port.send(&channel.to_string(), text(t)).await })
    };
    let a = post(&replicas[0], CHANNEL, "from a");
    let held_at = fake
        .wait_for("the global 429", |s| s.limited_at.first().map(|l| l.at))
        .await;
    let store = Store::open(&db).expect("store");
    let deadline = Instant::now() + RETRY;
    while store.platform_hold("discord").expect("read").is_none() {
        assert!(Instant::now() < deadline, "replica a never shared the hold");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b = post(&replicas[1], OTHER_CHANNEL, "from b");
    let c = post(&replicas[2], CHANNEL + 7, "from c");
    for t in [a, b, c] {
        t.await.expect("task").expect("posted after the hold");
    }

    let limited = one_429(&fake);
    assert_eq!((limited.session.as_deref(), limited.global), (Some("a"), true));
    for name in ["a", "b", "c"] {
        let sent = fake.sent_by(name);
        assert_eq!(sent.len(), 1, "{name} posted once");
        // The database's clock counts in milliseconds: allow it one.
        assert_waited(
            &format!("replica {name}'s post"),
            held_at,
            sent[0].at + Duration::from_millis(1),
            RETRY,
        );
    }
    for _ in 0..3 {
        fake.next_message().await;
    }
    fake.assert_all_read();
}
