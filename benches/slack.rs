//! Slack benchmark, end to end: the real slack-morphism client (Web API and Socket Mode)
//! against the fake Slack on loopback, the real engine against the scripted fake AWS. Each
//! phase runs in its own child process, and the figures are printed as a table (the runner is
//! shared with `bot.rs`, in `common/`):
//!
//! - `chat`: Slack requests for one 10-minute job. The stack update of `bot.rs` (20 resources
//!   one after another, 2 removed in cleanup: 47 stack events over 10 scenario minutes), then
//!   the deploy step (the real sandbox playbook for one role, not compressed). Everything that
//!   paces is divided by the same K = 30 as in `bot.rs`: the fake AWS plays the stack at x30,
//!   the bot's pacing (config defaults: an edit every 2 s at most, burst 5, then one per 30 s;
//!   4 edits/s overall) and the watcher's polls are divided by 30, and so are the adapter's
//!   production limits (`SlackLimits::SLACK`: 1 post per second per channel, 50 `chat.update`
//!   per minute) and the fake's (Slack's own, `SLACK_LIMITS`). Counted at the fake:
//!   `chat.postMessage`, `chat.update` (until the deploy step shows, and in all), the log's
//!   upload, and 429s. Target: 1 `chat.postMessage` and <= 30 `chat.update`, 0 × 429.
//! - `latency`: acknowledgement latency for 100 users at once. 100 distinct users each run
//!   `/argos whoami` at the same moment (two Socket Mode connections, as in production, with
//!   Slack's own limits and the adapter's `SlackLimits::SLACK`); latency = from the fake
//!   pushing the envelope to the fake receiving its acknowledgement over the socket, which the
//!   adapter sends once the event is claimed in the store and the work spawned. Also shown: the
//!   time from the envelope's delivery, in the bot's handler, and until the answer reaches the
//!   `response_url`. Two waves, after one warm-up command. Target p99 < 50 ms (release build).
//!
//! Run: `cargo bench --profile dev --bench slack` (or `-- --phase chat|latency`).
#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code, clippy::all)]
mod support;

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argos::bot::port::{ChatEvent, CommandHandler, EventClaim};
use argos::bot::Bot;
use argos::config::Config;
use argos::engine::Engine;
use argos::platform::slack::{self, SlackConnection, SlackLimits};
use argos::store::Store;
use common::{ms, percentile, result};
use support::fake_aws::FakeAws;
use support::fake_slack::{FakeSlack, FakeSlackLimits, SlackUser, CHANNEL};
use support::TestProject;

/// The time compression of the `chat` part (as in `bot.rs`).
/// Slack's own limits: one message per second per channel, and `chat.update` in tier 3 (about
/// 50 a minute).
const SLACK_LIMITS: FakeSlackLimits = FakeSlackLimits {
    post_per_channel: 1,
    post_window: Duration::from_secs(1),
    updates_per_window: 50,
    update_window: Duration::from_secs(60),
};
const K: u32 = 30;
const USERS: u32 = 100;
const WAVES: usize = 2;
/// How long a phase may wait for anything before it fails.
const WAIT: Duration = Duration::from_secs(120);

const ADMINS: &str = "permissions:
  roles:
    admins: { slack_users: [U0ADMIN] }
  rules:
    - role: admins
      environments: [\"*\"]
      actions: [\"*\"]
";

/// When the bot's handler was entered and when it returned, per user.
type Timings = Arc<Mutex<HashMap<String, (Instant, Instant)>>>;

/// The bot's handler, timed per user.
fn timed(handler: CommandHandler, timings: Timings) -> CommandHandler {
    Arc::new(move |ev: ChatEvent| {
        let (handler, timings) = (handler.clone(), timings.clone());
        Box::pin(async move {
            let entered = Instant::now();
            let user = ev.identity.user_id.clone();
            let reply = handler(ev).await;
            timings.lock().unwrap().insert(user, (entered, Instant::now()));
            reply
        })
    })
}

/// How long each claim of an event in the store took.
type Claims = Arc<Mutex<Vec<Duration>>>;

/// The bot's event claim, timed.
fn timed_claim(claim: EventClaim, claims: Claims) -> EventClaim {
    Arc::new(move |platform: &'static str, id: String| {
        let (claim, claims) = (claim.clone(), claims.clone());
        Box::pin(async move {
            let started = Instant::now();
            let mine = claim(platform, id).await;
            claims.lock().unwrap().push(started.elapsed());
            mine
        })
    })
}

/// A bot connected to the fake Slack the config names, as `argos bot` connects it.
async fn start_bot(config: Config, limits: SlackLimits, timings: Option<(Timings, Claims)>) -> (Bot, SlackConnection) {
    let settings = config.settings.slack.clone();
    let prefix = config.settings.chat.prefix.clone();
    let store = Store::open(&config.database_path()).expect("store");
    let bot = Bot::new(Engine::new(config).await, store);
    let (handler, claim) = match timings {
        Some((t, c)) => (timed(bot.handler(), t), timed_claim(bot.event_claim(), c)),
        None => (bot.handler(), bot.event_claim()),
    };
    let tokens = slack::SlackTokens::from_env(&settings).expect("the fake's tokens");
    let (port, connection) = slack::start(&settings, tokens, prefix, handler, claim, limits)
        .await
        .expect("the adapter connects");
    bot.add_port(port);
    (bot, connection)
}

// ---------------------------------------------------------------------------------------------
// chat requests per job

async fn chat() {
    let aws = FakeAws::start().await;
    aws.set_time_scale(K as f64);
    let s = SLACK_LIMITS;
    let fake = FakeSlack::start_with(FakeSlackLimits {
        post_per_channel: s.post_per_channel,
        post_window: s.post_window / K,
        updates_per_window: s.updates_per_window,
        update_window: s.update_window / K,
    })
    .await;
    fake.set_token_env();
    let project = common::compressed_project(&aws.endpoint_url(), &format!("{}{ADMINS}", fake.bot_config()), K);
    let (scenario_secs, events) = common::stage_ten_minute_update(&aws);
    let p = SlackLimits::SLACK;
    let limits = SlackLimits {
        posts_per_channel: p.posts_per_channel,
        post_window: p.post_window / K,
        updates: p.updates,
        update_period: p.update_period / K,
    };
    let (bot, connection) = start_bot(project.config(), limits, None).await;

    fake.push_message(CHANNEL, &SlackUser::admin(), "!argos staging update");
    let status = fake.next_post().await;
    let last = fake
        .wait_for_within("the job's final edit", WAIT * 2, |s| {
            let m = s.message(CHANNEL, &status.ts)?;
            let first = m.text.lines().next().unwrap_or("");
            (first.starts_with('✅') || first.starts_with('❌')).then(|| first.to_string())
        })
        .await;
    bot.idle().await;

    let updates: Vec<_> = fake.with_state(|s| s.updates.iter().filter(|u| u.ts == status.ts).cloned().collect());
    let deploy_from = updates
        .iter()
        .position(|u| u.all_text().contains("▸ deploy"))
        .unwrap_or(updates.len());
    let took = updates
        .last()
        .map_or(Duration::ZERO, |u| u.at.duration_since(status.at));
    let update_took = updates
        .get(deploy_from)
        .map_or(took, |u| u.at.duration_since(status.at));
    let count = |method: &str| fake.calls(method).len();
    let all_calls = fake.with_state(|s| s.calls.len());
    result(
        "chat: stack update (scenario)",
        format!("{scenario_secs:.0} s, {events} stack events"),
    );
    result(
        "chat: job, status message posted to final edit (scenario)",
        format!("{:.0} s", took.as_secs_f64() * K as f64),
    );
    result(
        "chat: status message posted to deploy step shown (scenario)",
        format!("{:.0} s", update_took.as_secs_f64() * K as f64),
    );
    result("chat: final line", &last);
    result("chat: chat.postMessage calls", count("chat.postMessage"));
    result("chat: chat.update calls until the deploy step shows", deploy_from);
    result("chat: chat.update calls in all (incl. final)", count("chat.update"));
    result("chat: chat.update of the status message (accepted)", updates.len());
    result(
        "chat: log upload (getUploadURLExternal / completeUploadExternal)",
        format!(
            "{} / {}, in the message's thread: {}",
            count("files.getUploadURLExternal"),
            count("files.completeUploadExternal"),
            fake.with_state(|s| s
                .uploads
                .iter()
                .all(|u| u.thread_ts.as_deref() == Some(status.ts.as_str())))
        ),
    );
    result(
        "chat: Web API calls in all (auth.test, connections, groups, chat, files)",
        all_calls,
    );
    result("chat: 429s", fake.rate_limited());
    connection.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// acknowledgement latency

async fn latency() {
    let aws = FakeAws::start().await;
    let fake = FakeSlack::start_with(SLACK_LIMITS).await;
    fake.set_token_env();
    let project = TestProject::new(&aws.endpoint_url(), &(fake.bot_config() + ADMINS));
    let timings = Timings::default();
    let claims = Claims::default();
    let (_bot, connection) = start_bot(
        project.config(),
        SlackLimits::SLACK,
        Some((timings.clone(), claims.clone())),
    )
    .await;
    fake.wait_connections(2).await;
    // Warm up: one command through every layer (the user groups are read once, here).
    let warm = fake.push_slash(CHANNEL, &SlackUser::admin(), "whoami");
    fake.wait_response(&warm).await;

    for wave in 1..=WAVES {
        claims.lock().unwrap().clear();
        let users: Vec<SlackUser> = (0..USERS)
            .map(|i| SlackUser::numbered(wave as u32 * 1000 + i))
            .collect();
        let ids: Vec<(String, String)> = users
            .iter()
            .map(|u| (u.id.clone(), fake.push_slash(CHANNEL, u, "whoami")))
            .collect();
        for (_, id) in &ids {
            let answer = fake.wait_response(id).await;
            assert!(answer.text.starts_with("You are U0USER"), "{answer:?}");
            // The answer (HTTP) can reach the fake before it has read the ack sent ahead of it
            // on the socket: wait for both.
            fake.wait_acked(id).await;
        }
        let timings = timings.lock().unwrap().clone();
        let (mut ack, mut from_delivery, mut entered, mut handler, mut answered) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        fake.with_state(|s| {
            for (user, id) in &ids {
                let envelope = &s.attempts(id)[0];
                let a = s.ack_of(id).expect("acknowledged");
                let response = s.responses.iter().find(|r| &r.envelope_id == id).expect("answered");
                let (t_in, t_out) = timings[user];
                ack.push(a.at.duration_since(envelope.pushed));
                from_delivery.push(a.latency.expect("delivered"));
                entered.push(t_in.duration_since(envelope.pushed));
                handler.push(t_out.duration_since(t_in));
                answered.push(response.at.duration_since(envelope.pushed));
            }
        });
        let mut claimed = claims.lock().unwrap().clone();
        for v in [
            &mut ack,
            &mut from_delivery,
            &mut entered,
            &mut handler,
            &mut answered,
            &mut claimed,
        ] {
            v.sort();
        }
        let label = format!("ack latency, {USERS} users at once (run {wave})");
        result(&format!("{label} p50"), ms(percentile(&ack, 0.50)));
        result(&format!("{label} p99"), ms(percentile(&ack, 0.99)));
        result(&format!("{label} max"), ms(*ack.last().unwrap()));
        for (part, v) in [
            ("delivered to the socket -> ack", &from_delivery),
            ("claim in the store (after the ack, one at a time)", &claimed),
            ("push -> handler entered", &entered),
            ("handler (bot)", &handler),
            ("push -> answer at the response_url", &answered),
        ] {
            result(
                &format!("{label}   {part} p50/p99"),
                format!("{} / {}", ms(percentile(v, 0.50)), ms(percentile(v, 0.99))),
            );
        }
    }
    result(
        "latency: late acks (> 3 s)",
        fake.with_state(|s| s.late_acks(Instant::now()).len()),
    );
    result("latency: 429s", fake.rate_limited());
    connection.shutdown().await;
}

// ---------------------------------------------------------------------------------------------

fn run_phase(phase: &str) {
    common::block_on(async {
        match phase {
            "chat" => chat().await,
            "latency" => latency().await,
            other => panic!("unknown phase {other}"),
        }
    });
}

fn main() {
    common::main(
        "slack benchmark",
        &["chat", "latency"],
        "targets: 1 chat.postMessage + <= 30 chat.update per 10-minute job, 0 × 429; ack p99 < 50 ms (release build)",
        run_phase,
    );
}
