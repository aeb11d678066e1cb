//! Discord and Slack in one bot, as `argos bot` runs them when both are enabled: a Slack job on
//! one environment and a Discord job on another run at the same time, each reporting on its
//! own platform only.

use std::time::Instant;

use argos::bot::Bot;
use argos::engine::Engine;
use argos::platform::{discord, slack};
use argos::store::{JobState, Store};

use super::world::*;
use crate::support::fake_aws::FakeAws;
use crate::support::fake_discord::{
    FakeDiscord, Sent, SentKind, TestUser, ADMIN_ROLE, CHANNEL as DISCORD_CHANNEL, FAST_FAKE_LIMITS, FAST_LIMITS,
    GUILD_ID, TOKEN as DISCORD_TOKEN,
};
use crate::support::fake_slack::{FakeSlack, FakeSlackLimits, SlackUser, CHANNEL};
use crate::support::world::NO_APPROVALS;
use crate::support::TestProject;

fn config(slack: &FakeSlack, discord: &FakeDiscord) -> String {
    format!(
        "{slack_yaml}discord:
  enabled: true
  api_proxy: {discord_url}
  guild_id: \"{GUILD_ID}\"
  message_content_intent: true
{CHAT}permissions:
  roles:
    admins: {{ slack_users: [U0ADMIN], discord_roles: [\"{ADMIN_ROLE}\"] }}
  rules:
    - role: admins
      environments: [\"*\"]
      actions: [\"*\"]
{NO_APPROVALS}",
        slack_yaml = slack.bot_config(),
        discord_url = discord.url(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slack_job_and_a_discord_job_run_at_once_in_one_bot() {
    let aws = FakeAws::start().await;
    aws.set_time_scale(1.0);
    add_deletable_stack(&aws, "argos-staging", 1.5);
    add_deletable_stack(&aws, "argos-sandbox", 1.5);
    let slack_fake = FakeSlack::start_with(FakeSlackLimits::TEST).await;
    slack_fake.set_token_env();
    let discord_fake = FakeDiscord::start_with(FAST_FAKE_LIMITS).await;
    let project = TestProject::new(&aws.endpoint_url(), &config(&slack_fake, &discord_fake));

    // One bot, both adapters, as `argos bot` connects them.
    let config = project.config();
    let settings = config.settings.clone();
    let envs: Vec<String> = settings.environments.keys().cloned().collect();
    let store = Store::open(&config.database_path()).expect("store opens");
    let bot = Bot::new(Engine::new(config).await, store);
    let (discord_port, discord_client) = discord::start_replica(
        &settings.discord,
        DISCORD_TOKEN.to_string(),
        settings.chat.prefix.clone(),
        envs,
        bot.handler(),
        bot.event_claim(),
        std::sync::Arc::new(bot.store().clone()),
        FAST_LIMITS,
    )
    .await
    .expect("the Discord adapter connects");
    bot.add_port(discord_port);
    let tokens = slack::SlackTokens::from_env(&settings.slack).expect("tokens");
    let (slack_port, slack_connection) = slack::start(
        &settings.slack,
        tokens,
        settings.chat.prefix.clone(),
        bot.handler(),
        bot.event_claim(),
        LIMITS,
    )
    .await
    .expect("the Slack adapter connects");
    bot.add_port(slack_port);

    slack_fake.push_message(CHANNEL, &SlackUser::admin(), "!argos staging decommission");
    discord_fake.push_message(DISCORD_CHANNEL, &TestUser::admin(), "!argos sandbox decommission");

    // Slack: one status message for staging, edited to the end.
    let status = slack_fake.next_post().await;
    assert!(
        status.text.starts_with("⏳ *staging · decommission* · job #"),
        "{status:#?}"
    );
    let last = wait_finished(&slack_fake, CHANNEL, &status.ts).await;
    assert!(last.contains("decommissioned argos-staging"), "{last}");
    let slack_done: Instant = updates_of(&slack_fake, CHANNEL, &status.ts).last().unwrap().at;
    // Discord: one status message for sandbox, edited to the end.
    let mut read: Vec<Sent> = Vec::new();
    while !read
        .iter()
        .any(|m| m.kind == SentKind::Edit && m.content.starts_with("✅ **sandbox · decommission** · job #"))
    {
        read.push(discord_fake.next_message().await);
    }
    bot.idle().await;
    let created: Vec<&Sent> = read.iter().filter(|m| m.kind == SentKind::Create).collect();
    assert_eq!(created.len(), 1, "{read:#?}");
    assert!(created[0].content.starts_with("⏳ **sandbox · decommission** · job #"));
    assert!(read.iter().all(|m| m.message_id == created[0].message_id), "{read:#?}");
    assert!(read.iter().all(|m| m.pings_nobody()));
    let discord_done = read.last().unwrap().at;

    // At the same time: each started before the other finished.
    assert!(
        status.at < discord_done && created[0].at < slack_done,
        "the jobs ran one after the other"
    );
    let jobs = bot.store().recent_jobs(10).unwrap();
    assert_eq!(jobs.len(), 2);
    for j in &jobs {
        assert_eq!(j.state, JobState::Succeeded, "{j:#?}");
        match j.env.as_str() {
            "staging" => assert_eq!(
                (j.platform.as_str(), j.channel.as_str(), j.requester_id.as_str()),
                ("slack", CHANNEL, "U0ADMIN")
            ),
            _ => assert_eq!(
                (j.platform.as_str(), j.channel.clone()),
                ("discord", DISCORD_CHANNEL.to_string())
            ),
        }
    }
    // Nothing crossed over: Slack heard only of staging, Discord only of sandbox.
    slack_fake.with_state(|s| {
        assert!(s.updates.iter().all(|u| !u.all_text().contains("sandbox")));
        assert_eq!(s.posts.len(), 1);
    });
    assert!(read.iter().all(|m| !m.content.contains("staging")));
    assert_eq!(aws.stack_status("argos-staging"), None);
    assert_eq!(aws.stack_status("argos-sandbox"), None);

    clean_finish(&slack_fake).await;
    assert_eq!(discord_fake.rate_limited(), 0, "the fake Discord had to answer 429");
    discord_fake.assert_all_read();
    discord_fake.assert_no_unexpected();
    slack_connection.shutdown().await;
    discord_client.abort();
}
