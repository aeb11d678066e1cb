//! Commands through two replicas answered exactly once; a schedule that fires once.
use std::time::{Duration, Instant};

use super::cluster::*;
use super::support::fake_aws::FakeAws;
use super::support::fake_discord::*;
use super::support::postgres::PgServer;
use super::support::replicas::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_users_at_once_through_two_replicas_are_each_answered_exactly_once() {
    let pg = PgServer::start();
    log_statements(&pg);
    let aws = FakeAws::start().await;
    let users: Vec<TestUser> = (0..20).map(TestUser::numbered).collect();
    let c = Cluster::start(&aws.endpoint_url(), pg.new_database(), &["a", "b"], &users, "").await;

    // All at once: even users type `!argos whoami` in one channel (its answers come from both
    // replicas, which together keep to Discord's 5 messages per 5 s there); odd users run
    // `/argos command:whoami` in another.
    let sent_at = Instant::now();
    let mut prefix = Vec::new();
    let mut slash = Vec::new();
    for (i, u) in users.iter().enumerate() {
        if i % 2 == 0 {
            prefix.push((i, c.discord.push_message(OTHER_CHANNEL, u, "!argos whoami")));
        } else {
            slash.push((i, c.discord.push_slash(CHANNEL, u, "whoami", "", "")));
        }
    }
    // The first line of the answer to `whoami`.
    let you_are = |i: usize| format!("You are user{i} (discord id {}).\n", users[i].id);
    c.discord
        .wait_for_within("an answer to each of the 20 commands", LONG, |s| {
            let prefix_done = prefix.iter().all(|(i, _)| {
                s.sent
                    .iter()
                    .any(|m| m.channel == OTHER_CHANNEL.to_string() && m.content.starts_with(&you_are(*i)))
            });
            let slash_done = slash.iter().all(|(_, id)| {
                s.sent
                    .iter()
                    .any(|m| m.kind == SentKind::InteractionEdit && m.interaction.as_deref() == Some(id))
            });
            (prefix_done && slash_done).then_some(())
        })
        .await;
    let all_answered = sent_at.elapsed();

    // Every event reached both sessions, and both replicas tried to claim each one (the
    // statement log of PostgreSQL shows each claim attempt with the replica's id). Once all 40
    // attempts are in, no replica can still answer: a replica answers only what it claimed.
    let events: Vec<&String> = prefix.iter().chain(&slash).map(|(_, id)| id).collect();
    for id in &events {
        let mut to = c.discord.deliveries_of(id);
        to.sort();
        assert_eq!(
            to,
            [Some("a".to_string()), Some("b".to_string())],
            "event {id} went to every session"
        );
    }
    c.discord.with_state(|s| {
        let early: Vec<_> = s
            .deliveries
            .iter()
            .filter(|d| events.contains(&&d.id) && d.at < sent_at)
            .collect();
        assert!(
            early.is_empty(),
            "events written before the test pushed them: {early:#?}"
        );
    });
    let attempts = poll_until("both replicas' claim attempts for all 20 events", LONG, || {
        let a = statement_params(&pg.log(), "INSERT INTO event_claims");
        (a.len() >= 2 * events.len()).then_some(a)
    })
    .await;
    assert_eq!(attempts.len(), 2 * events.len(), "{attempts:#?}");
    for id in &events {
        let tried: Vec<&String> = attempts.iter().filter(|a| a.contains(&format!("'{id}'"))).collect();
        assert_eq!(tried.len(), 2, "two claim attempts for {id}: {attempts:#?}");
        for r in &c.replicas {
            assert_eq!(
                tried.iter().filter(|a| a.contains(&format!("-{}-", r.pid))).count(),
                1,
                "replica {} tried to claim {id} once: {tried:#?}",
                r.name
            );
        }
    }
    let winners: std::collections::BTreeMap<String, String> = pg_rows(
        &c.db_url,
        "SELECT event_id, replica FROM event_claims WHERE platform = 'discord'",
    )
    .into_iter()
    .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
    .collect();
    assert_eq!(winners.len(), events.len(), "one claim per event: {winners:#?}");

    // Exactly one answer per command, from the replica whose claim won.
    let state_sent = c.discord.with_state(|s| s.sent.clone());
    let callbacks = c.discord.with_state(|s| s.callbacks.clone());
    let mut by_replica = std::collections::BTreeMap::<String, usize>::new();
    for (i, id) in &prefix {
        let answers: Vec<&Sent> = state_sent
            .iter()
            .filter(|m| m.channel == OTHER_CHANNEL.to_string() && m.content.starts_with(&you_are(*i)))
            .collect();
        assert_eq!(answers.len(), 1, "user{i}'s command answered once: {answers:#?}");
        let a = answers[0];
        assert_eq!(a.kind, SentKind::Create);
        assert!(a.content.starts_with(&you_are(*i)), "{a:#?}");
        assert!(
            c.by_session(&a.session).owns(&winners[id]),
            "answered by the claim's winner"
        );
        *by_replica.entry(a.session.clone().unwrap()).or_default() += 1;
    }
    for (i, id) in &slash {
        let acks: Vec<&Callback> = callbacks.iter().filter(|cb| &cb.interaction_id == id).collect();
        assert_eq!(acks.len(), 1, "user{i}'s slash command acknowledged once: {acks:#?}");
        assert_eq!(acks[0].kind, 5, "deferred");
        let answers: Vec<&Sent> = state_sent
            .iter()
            .filter(|m| m.interaction.as_deref() == Some(id.as_str()))
            .collect();
        assert_eq!(answers.len(), 1, "user{i}'s slash command answered once: {answers:#?}");
        let a = answers[0];
        assert_eq!(a.kind, SentKind::InteractionEdit);
        assert!(a.content.starts_with(&you_are(*i)), "{a:#?}");
        assert_eq!(a.session, acks[0].session, "acknowledged and answered by one replica");
        assert!(
            c.by_session(&a.session).owns(&winners[id.as_str()]),
            "answered by the claim's winner"
        );
        *by_replica.entry(a.session.clone().unwrap()).or_default() += 1;
    }
    assert_eq!(
        state_sent.len(),
        events.len(),
        "nothing but the 20 answers: {state_sent:#?}"
    );
    // Each command is in the audit log once.
    let audit = c.store.audit_log(100).unwrap();
    for u in &users {
        assert_eq!(
            audit
                .iter()
                .filter(|r| r.user_id == u.id_str() && r.command == "whoami")
                .count(),
            1,
            "{} audited once: {audit:#?}",
            u.name
        );
    }
    c.assert_discord_clean();
    for r in &c.replicas {
        assert!(
            !r.log().contains("cannot claim a chat event"),
            "replica {} could not claim: {}",
            r.name,
            r.log()
        );
    }
    let latency = |answers: Vec<Instant>| {
        let mut d: Vec<Duration> = answers.into_iter().map(|t| t.duration_since(sent_at)).collect();
        d.sort();
        (d[d.len() / 2], d[d.len() - 1])
    };
    let in_channel = latency(
        state_sent
            .iter()
            .filter(|m| m.kind == SentKind::Create)
            .map(|m| m.at)
            .collect(),
    );
    let slashed = latency(
        state_sent
            .iter()
            .filter(|m| m.kind == SentKind::InteractionEdit)
            .map(|m| m.at)
            .collect(),
    );
    println!(
        "TIMING 20 commands at once: all answered {all_answered:?} after they were sent (p50/max: 10 in one channel {in_channel:?}, 10 slash commands {slashed:?}); answers per replica: {by_replica:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_announcement_fires_once_across_two_replicas() {
    let pg = PgServer::start();
    log_statements(&pg);
    let aws = FakeAws::start().await;
    let schedule = format!(
        r#"schedules:
  - name: every-minute
    cron: "* * * * *"
    timezone: UTC
    platform: discord
    channel: "{CHANNEL}"
"#
    );
    let c = Cluster::start(
        &aws.endpoint_url(),
        pg.new_database(),
        &["a", "b"],
        &[TestUser::admin()],
        &schedule,
    )
    .await;
    // "* * * * *": due at the next full minute, at most 60 s away.
    let first = c
        .discord
        .wait_for_within("the announcement", Duration::from_secs(150), |s| {
            s.sent.iter().find(|m| m.content.starts_with("🧹")).cloned()
        })
        .await;
    let due = first
        .content
        .split("(every-minute, ")
        .nth(1)
        .and_then(|r| r.split(" UTC)").next())
        .expect("the announcement names its due time")
        .to_string();
    // "2026-12-01 09:48" → the claim's due time "2026-12-01T09:48:00Z".
    let due_param = format!("'{}:00Z'", due.replace(' ', "T"));
    let attempts = poll_until("both replicas' claims of that run", LONG, || {
        let a: Vec<String> = statement_params(&pg.log(), "INSERT INTO schedule_runs")
            .into_iter()
            .filter(|p| p.contains(&due_param))
            .collect();
        (a.len() >= 2).then_some(a)
    })
    .await;
    assert_eq!(attempts.len(), 2, "one claim attempt per replica: {attempts:#?}");
    let runs = pg_rows(
        &c.db_url,
        "SELECT schedule, due_at FROM schedule_runs WHERE schedule = 'every-minute'",
    );
    assert!(
        runs.iter()
            .filter(|r| r[1].as_deref() == Some(&due_param[1..due_param.len() - 1]))
            .count()
            == 1,
        "one recorded run for {due}: {runs:?}"
    );
    // Both tried; one posted, once.
    let announcements: Vec<Sent> = c
        .sent_in(CHANNEL)
        .into_iter()
        .filter(|m| {
            m.content
                .starts_with(&format!("🧹 **Cleanup report** (every-minute, {due} UTC)"))
        })
        .collect();
    assert_eq!(announcements.len(), 1, "{announcements:#?}");
    assert_eq!(announcements[0].kind, SentKind::Create);
    assert!(
        announcements[0].content.contains("Nothing to clean up"),
        "{}",
        announcements[0].content
    );
    // The winner writes the run to the audit log after posting it: once, not once per replica.
    let audited = poll_until("the run in the audit log", LONG, || {
        let audit = c.store.audit_log(100).ok()?;
        let n = audit.iter().filter(|r| r.command == "schedule every-minute").count();
        (n >= 1).then_some(n)
    })
    .await;
    assert!(
        audited <= runs.len(),
        "one audit row per run ({audited} rows, {} runs)",
        runs.len()
    );
    c.assert_discord_clean();
    println!(
        "TIMING the {due} announcement was posted by replica {:?} ({} claim attempts for it)",
        announcements[0].session,
        attempts.len()
    );
}
