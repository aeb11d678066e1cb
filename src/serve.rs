//! `argos console` and `argos bot`: load the config, open the database, connect the adapters,
//! resume unfinished jobs, and stop gracefully on ctrl-c or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

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
    crate::platform::console::run(bot, user).await;
    0
}

/// The chat bot on the enabled platforms, until ctrl-c or SIGTERM.
pub async fn bot(config: PathBuf) -> i32 {
    let bot = match open(config, "bot").await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let settings = bot.engine().config.settings.clone();
    if !settings.discord.enabled {
        eprintln!("error: no chat platform is enabled: set discord.enabled in the config (or use `argos console`)");
        return EXIT_USAGE;
    }
    let token = match std::env::var(&settings.discord.token_env) {
        Ok(t) if !t.trim().is_empty() => t,
        _ => {
            eprintln!(
                "error: {} is not set: put the Discord bot token in the environment or .env",
                settings.discord.token_env
            );
            return EXIT_USAGE;
        }
    };
    let envs: Vec<String> = settings.environments.keys().cloned().collect();
    let (port, client) = match crate::platform::discord::start_replica(
        &settings.discord,
        token,
        settings.chat.prefix.clone(),
        envs,
        bot.handler(),
        bot.event_claim(),
        crate::platform::discord::RateLimits::DISCORD,
    )
    .await
    {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "error: cannot start the Discord adapter: {}",
                bot.engine().redactor.redact(&e)
            );
            return EXIT_FAILED;
        }
    };
    bot.add_port(port);
    let resumed = bot.resume_unfinished().await;
    let schedules = tokio::spawn(crate::schedule::run_all(bot.clone()));
    tracing::info!(?resumed, "bot running");
    wait_for_stop().await;
    schedules.abort();
    client.abort();
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
