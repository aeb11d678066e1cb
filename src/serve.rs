//! `argos console` and `argos bot`: load the config, open the database, connect the adapters,
//! resume unfinished jobs, and stop gracefully on ctrl-c or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use crate::address::ChatPlatform;
use crate::bot::Bot;
use crate::cli::{EXIT_FAILED, EXIT_USAGE};
use crate::config::Config;

async fn open(config: PathBuf, kind: &'static str) -> Result<Bot, i32> {
    let config = Config::load(&config).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })?;
    Bot::start(config, kind).await.map_err(|e| {
        eprintln!("error: {e}");
        EXIT_FAILED
    })
}

/// The console bot, until end of input.
pub async fn console(config: PathBuf, user: String) -> i32 {
    let bot = match open(config, "console").await {
        Ok(b) => b,
        Err(code) => return code,
    };
    // The console serves the web page too when it is configured (`web` in the console signs
    // in), so it can be tried without a chat account; the health endpoints come with it.
    let settings = &bot.engine().config.settings;
    let web = match (&settings.web.public_url, &settings.health.listen) {
        (Some(_), Some(addr)) => match crate::health::serve(addr, bot.clone()).await {
            Ok((bound, task)) => {
                tracing::info!(%bound, "serving the web page");
                Some(task)
            }
            Err(e) => {
                tracing::warn!(error = %e, address = %addr, "cannot serve the web page");
                None
            }
        },
        _ => None,
    };
    crate::platform::console::run(bot, user).await;
    if let Some(task) = web {
        task.abort();
    }
    0
}

/// A connected platform, to disconnect at shutdown.
enum Connection {
    Discord(tokio::task::JoinHandle<()>),
    Slack(crate::platform::slack::SlackConnection),
}

impl Connection {
    async fn close(self) {
        match self {
            Connection::Discord(client) => client.abort(),
            Connection::Slack(listener) => listener.shutdown().await,
        }
    }
}

async fn connect_discord(bot: &Bot) -> Result<Connection, (i32, String)> {
    let settings = &bot.engine().config.settings;
    let token = match std::env::var(&settings.discord.token_env) {
        Ok(t) if !t.trim().is_empty() => t,
        _ => {
            return Err((
                EXIT_USAGE,
                format!(
                    "{} is not set: put the Discord bot token in the environment or .env",
                    settings.discord.token_env
                ),
            ))
        }
    };
    let envs: Vec<String> = settings.environments.keys().cloned().collect();
    let (port, client) = crate::platform::discord::start_replica(
        &settings.discord,
        token,
        settings.chat.prefix.clone(),
        envs,
        bot.handler(),
        bot.event_claim(),
        std::sync::Arc::new(bot.store().clone()),
        crate::platform::discord::RateLimits::DISCORD,
    )
    .await
    .map_err(|e| (EXIT_FAILED, format!("cannot start the Discord adapter: {e}")))?;
    port.suggest_refs_with(bot.ref_suggester());
    bot.add_port(port);
    Ok(Connection::Discord(client))
}

async fn connect_slack(bot: &Bot) -> Result<Connection, (i32, String)> {
    use crate::platform::slack;
    let settings = &bot.engine().config.settings;
    let tokens = slack::SlackTokens::from_env(&settings.slack).map_err(|e| (EXIT_USAGE, e))?;
    let (port, listener) = slack::start(
        &settings.slack,
        tokens,
        settings.chat.prefix.clone(),
        bot.handler(),
        bot.event_claim(),
        slack::SlackLimits::with_updates_per_minute(settings.slack.updates_per_minute),
    )
    .await
    .map_err(|e| (EXIT_FAILED, format!("cannot start the Slack adapter: {e}")))?;
    bot.add_port(port);
    Ok(Connection::Slack(listener))
}

/// The chat bot on the enabled platforms (Discord, Slack or both), until ctrl-c or SIGTERM.
pub async fn bot(config: PathBuf) -> i32 {
    let bot = match open(config, "bot").await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let settings = bot.engine().config.settings.clone();
    if !settings.discord.enabled && !settings.slack.enabled {
        eprintln!(
            "error: no chat platform is enabled: set discord.enabled or slack.enabled in the config (or use `argos console`)"
        );
        return EXIT_USAGE;
    }
    let platforms: Vec<ChatPlatform> = [
        (settings.discord.enabled, ChatPlatform::Discord),
        (settings.slack.enabled, ChatPlatform::Slack),
    ]
    .into_iter()
    .filter_map(|(enabled, platform)| enabled.then_some(platform))
    .collect();
    for platform in &platforms {
        bot.connecting(*platform);
    }
    // The probes answer from the first second: connecting to Slack may take up to a minute
    // (its first `hello`), and a liveness probe must not kill a bot that is only connecting.
    let health = match &settings.health.listen {
        Some(addr) => match crate::health::serve(addr, bot.clone()).await {
            Ok((bound, task)) => {
                tracing::info!(%bound, "serving /healthz, /readyz and /metrics");
                Some(task)
            }
            // Not fatal: the bot's work matters more than its probes (a second replica on
            // the same host with the same port, say).
            Err(e) => {
                tracing::warn!(error = %e, address = %addr, "cannot serve the health endpoints");
                None
            }
        },
        None => None,
    };
    let mut connections = Vec::new();
    for platform in platforms {
        let connected = match platform {
            ChatPlatform::Discord => connect_discord(&bot).await,
            ChatPlatform::Slack => connect_slack(&bot).await,
            // The console is `argos console`, never one of the bot's connections.
            ChatPlatform::Console => unreachable!("the bot connects only the platforms listed above"),
        };
        match connected {
            Ok(c) => connections.push(c),
            Err((code, e)) => {
                eprintln!("error: {}", bot.engine().redactor.redact(&e));
                bot.gave_up(platform);
                if let Some(task) = &health {
                    task.abort();
                }
                for c in connections {
                    c.close().await;
                }
                bot.retire();
                return code;
            }
        }
    }
    let resumed = bot.resume_unfinished().await;
    let schedules = tokio::spawn(crate::bot::announce::run_all(bot.clone()));
    tracing::info!(?resumed, "bot running");
    wait_for_stop().await;
    schedules.abort();
    if let Some(task) = health {
        task.abort();
    }
    for c in connections {
        c.close().await;
    }
    let left = bot
        .shutdown(Duration::from_secs(settings.chat.shutdown_grace_secs))
        .await;
    if !left.is_empty() {
        eprintln!("stopped with job(s) {left:?} still running; they resume at the next start");
    }
    0
}

async fn wait_for_stop() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}
