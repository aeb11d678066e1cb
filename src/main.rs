//! The `argos` binary: `argos check`, and `argos <env> <command>` (the same grammar as chat).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "argos",
    version,
    about = "Commission, deploy and tear down the Argos stack on AWS"
)]
struct Cli {
    /// The config file.
    #[arg(long, global = true, default_value = argos::config::DEFAULT_CONFIG, env = "ARGOS_CONFIG")]
    config: PathBuf,
    /// Do not ask before destroying resources (decommission, clean).
    #[arg(long, short = 'y', global = true)]
    yes: bool,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand)]
enum Sub {
    /// Check the config, templates, playbooks and key without calling AWS.
    Check,
    /// Talk to the bot on this terminal (the same commands as in chat).
    Console {
        /// Who you are to the bot's permissions (a console user name in the config).
        #[arg(long, env = "USER", default_value = "console")]
        user: String,
    },
    /// Run the bot on the chat platforms the config enables (Discord).
    Bot,
    /// `<env> <commission|deploy|update|plan|decommission|clean|status|events> [args]`,
    /// `envs`, `help [command]`.
    #[command(external_subcommand)]
    Run(Vec<String>),
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("ARGOS_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match cli.command {
        Sub::Check => check(cli.config).await,
        Sub::Console { user } => argos::serve::console(cli.config, user).await,
        Sub::Bot => argos::serve::bot(cli.config).await,
        Sub::Run(words) => {
            let mut yes = cli.yes;
            let words: Vec<String> = words
                .into_iter()
                .filter(|w| {
                    let flag = w == "--yes" || w == "-y";
                    yes |= flag;
                    !flag
                })
                .collect();
            argos::cli::run(cli.config, words, yes).await
        }
    };
    std::process::exit(code);
}

async fn check(config: PathBuf) -> i32 {
    let config = match argos::config::Config::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return argos::cli::EXIT_USAGE;
        }
    };
    let findings = argos::check::run(&config).await;
    let failed = findings.iter().filter(|f| !f.ok).count();
    for f in &findings {
        let mark = match (f.ok, f.message.starts_with("warning:")) {
            (false, _) => "FAIL",
            (true, true) => "warn",
            (true, false) => "ok  ",
        };
        println!("{mark} {:<16} {}", f.check, f.message);
    }
    println!("{} check(s), {failed} failed", findings.len());
    if failed > 0 {
        argos::cli::EXIT_FAILED
    } else {
        0
    }
}
