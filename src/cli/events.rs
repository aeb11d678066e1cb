//! `argos setup-events`: creates or updates the pushed stack events' setup stack (an
//! EventBridge rule for the app's stacks and the SQS queue it feeds) in every account and
//! region the config's environments use.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::cloud::events::setup::{self, Setup};
use crate::config::Config;
use crate::engine::Engine;
use crate::progress::{plain_line, ProgressTx};

/// Runs the setup; returns the process exit code.
pub async fn run(config_path: &Path) -> i32 {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_USAGE;
        }
    };
    let Some(queue) = config.settings.watch.events_queue.clone() else {
        eprintln!(
            "error: watch.events_queue is not set: name the queue in the config (for example \
             events_queue = \"{}-stack-events\" under [watch]), then run setup-events again",
            config.vars.app_name
        );
        return super::EXIT_USAGE;
    };
    let app = config.vars.app_name.clone();
    let engine = Engine::new(config).await;
    let pace = engine.pace(engine.config.settings.timeouts.stack_create_secs);
    let mut accounts = engine.accounts.distinct();
    if accounts.is_empty() {
        accounts.push((engine.aws.clone(), Vec::new()));
    }
    let (progress, mut rx) = ProgressTx::channel();
    let printer = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            if let Some(line) = plain_line(&p) {
                println!("{line}");
            }
        }
    });
    let mut code = 0;
    for (aws, envs) in accounts {
        let at = aws.account_key();
        let label = if envs.is_empty() {
            at.clone()
        } else {
            format!("{at} ({})", envs.join(", "))
        };
        match setup::ensure(&aws, &app, &queue, pace, &progress, &CancellationToken::new()).await {
            Ok(Setup::Created { queue_url }) => {
                println!("created {} in {label}: queue {queue_url}", setup::stack_name(&app))
            }
            Ok(Setup::Updated { queue_url }) => {
                println!("updated {} in {label}: queue {queue_url}", setup::stack_name(&app))
            }
            Ok(Setup::Unchanged { queue_url }) => {
                println!(
                    "{} in {label} is up to date: queue {queue_url}",
                    setup::stack_name(&app)
                )
            }
            Err(e) => {
                eprintln!("error: {label}: {}", engine.redactor.redact(&e.to_string()));
                code = super::EXIT_FAILED;
            }
        }
    }
    drop(progress);
    let _ = printer.await;
    code
}
