//! `duplicates`: 3 replicas see every event; each of 1,000 commands must be answered once.
//!
//! 1,000 users (one command each, so the per-user budget of 6 a minute, burst 3, plays no part)
//! type `!argos whoami` in 200 channels (5 commands per channel, so Discord's 5 messages per
//! 5 s per channel do not set the pace), in 10 waves of 100, one wave every 2.5 s: 40 commands
//! a second, the bot token's global budget. Then the benchmark waits until every command has an
//! answer (or 4 minutes) and until the fake has seen nothing for 6 s, and counts the answers to
//! each command (`You are user<n> (discord id ...)`), the 429s, and who answered.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use crate::support::fake_aws::FakeAws;
use crate::support::fake_discord::*;
use crate::support::postgres::PgServer;
use crate::support::replicas::pg_rows;

use super::*;

const COMMANDS: usize = 1000;
const CHANNELS: usize = 200;
const WAVES: usize = 10;
const WAVE_EVERY: Duration = Duration::from_millis(2500);
const QUIET: Duration = Duration::from_secs(6);

/// The user index an answer to `whoami` is for.
fn answered_user(content: &str) -> Option<usize> {
    let rest = content.strip_prefix("You are user")?;
    rest[..rest.find(" (")?].parse().ok()
}

pub async fn run() {
    let pg = PgServer::start();
    let aws = FakeAws::start().await;
    let alice = TestUser::admin();
    let started = Instant::now();
    let c = Cluster::start(
        &aws.endpoint_url(),
        pg.new_database(),
        3,
        std::slice::from_ref(&alice),
        &[],
    )
    .await;
    result(
        "duplicates: 3 replicas connected and running after",
        secs(started.elapsed()),
    );
    // Warm-up, not counted: one command through every layer.
    c.discord.push_message(CHANNEL, &alice, "!argos whoami");
    c.discord
        .wait_for_within("the warm-up answer", LONG, |s| {
            s.sent.iter().any(|m| m.channel == CHANNEL.to_string()).then_some(())
        })
        .await;

    let users: Vec<TestUser> = (0..COMMANDS as u32).map(TestUser::numbered).collect();
    let per_wave = COMMANDS / WAVES;
    let mut pushed: Vec<(String, Instant)> = Vec::with_capacity(COMMANDS);
    let mut ids = HashSet::new();
    let first = Instant::now();
    for w in 0..WAVES {
        tokio::time::sleep_until((first + WAVE_EVERY * w as u32).into()).await;
        for k in 0..per_wave {
            let i = w * per_wave + k;
            let channel = CHANNEL_BASE + (i % CHANNELS) as u64;
            pushed.push((channel.to_string(), Instant::now()));
            ids.insert(c.discord.push_message(channel, &users[i], "!argos whoami"));
        }
    }
    let sent_in = first.elapsed();

    let deadline = first + Duration::from_secs(240);
    let answered = |s: &State| {
        let mut seen = vec![false; COMMANDS];
        for m in &s.sent {
            if let Some(i) = answered_user(&m.content).filter(|i| *i < COMMANDS) {
                seen[i] = true;
            }
        }
        seen.iter().filter(|x| **x).count()
    };
    while c.discord.with_state(answered) < COMMANDS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = first.elapsed();
    // Late answers (a duplicate still waiting for its channel) would come now.
    let quiet_deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < quiet_deadline {
        let last = c.discord.with_state(|s| s.sent.last().map(|m| m.at));
        if last.is_none_or(|t| t.elapsed() >= QUIET) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let sent = c.discord.with_state(|s| s.sent.clone());
    let mut answers: Vec<Vec<&Sent>> = vec![Vec::new(); COMMANDS];
    let mut other = Vec::new();
    for m in sent.iter().filter(|m| m.channel != CHANNEL.to_string()) {
        match answered_user(&m.content).filter(|i| *i < COMMANDS) {
            Some(i) if m.kind == SentKind::Create => answers[i].push(m),
            _ => other.push(m),
        }
    }
    let missing = answers.iter().filter(|a| a.is_empty()).count();
    let twice = answers.iter().filter(|a| a.len() > 1).count();
    let extra: usize = answers.iter().map(|a| a.len().saturating_sub(1)).sum();
    let wrong_channel = answers
        .iter()
        .enumerate()
        .filter(|(i, a)| a.iter().any(|m| m.channel != pushed[*i].0))
        .count();
    let mut latency: Vec<Duration> = answers
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.first().map(|m| m.at.duration_since(pushed[i].1)))
        .collect();
    let last_answer = answers.iter().flatten().map(|m| m.at).max();
    // Per replica: answers, and when its last one came (after the first command).
    let mut split: BTreeMap<String, (usize, Duration)> = BTreeMap::new();
    for m in answers.iter().flatten() {
        let e = split
            .entry(m.session.clone().unwrap_or_else(|| "?".into()))
            .or_default();
        e.0 += 1;
        e.1 = e.1.max(m.at.duration_since(first));
    }
    let claims = pg_rows(
        &c.db_url,
        "SELECT event_id FROM event_claims WHERE platform = 'discord'",
    )
    .into_iter()
    .filter(|r| r[0].as_deref().is_some_and(|id| ids.contains(id)))
    .count();
    let audit = c.store.audit_log(5 * COMMANDS).unwrap_or_default();
    let ours: HashSet<String> = users.iter().map(TestUser::id_str).collect();
    let audited = audit
        .iter()
        .filter(|r| r.command == "whoami" && ours.contains(&r.user_id))
        .count();
    let limited = c.discord.with_state(|s| s.limited.clone());

    result(
        "duplicates: commands sent (users, channels, waves)",
        format!(
            "{COMMANDS} ({COMMANDS} users, {CHANNELS} channels, {WAVES} waves of {per_wave} every {:.1} s; sent in {})",
            WAVE_EVERY.as_secs_f64(),
            secs(sent_in)
        ),
    );
    result("duplicates: commands answered", COMMANDS - missing);
    result(
        "duplicates: duplicate answers",
        format!("{extra} ({twice} commands answered more than once)"),
    );
    result("duplicates: missing answers", missing);
    result("duplicates: answers in the wrong channel", wrong_channel);
    result("duplicates: other messages sent", other.len());
    result("duplicates: 429s", limited.len());
    result(
        "duplicates: answers per replica (its last answer after)",
        split
            .iter()
            .map(|(k, (n, last))| format!("{k} {n} ({:.1} s)", last.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
    );
    result("duplicates: claims recorded for the commands", claims);
    result("duplicates: commands in the audit log", audited);
    result(
        "duplicates: \"cannot claim a chat event\" warnings",
        c.log_lines("cannot claim a chat event"),
    );
    result(
        "duplicates: command -> answer latency",
        spread(&mut latency, 0.99, secs),
    );
    result(
        "duplicates: first command -> last answer",
        match last_answer {
            Some(t) => format!(
                "{} ({:.1} answers/s)",
                secs(t.duration_since(first)),
                (COMMANDS - missing) as f64 / t.duration_since(first).as_secs_f64()
            ),
            None => format!("no answer within {}", secs(waited)),
        },
    );
    if !limited.is_empty() || !other.is_empty() {
        let show: Vec<String> = limited.iter().take(5).map(|l| format!("{l:?}")).collect();
        let texts: Vec<String> = other
            .iter()
            .take(5)
            .map(|m| format!("{:?} {:?}", m.session, m.content.lines().next().unwrap_or("")))
            .collect();
        result("duplicates:   first 429s", show.join("; "));
        result("duplicates:   first other messages", texts.join("; "));
    }
}
