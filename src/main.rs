//! The `argos` binary: `argos check`, `argos template`, and `argos <env> <command>` (the same grammar as chat).

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// The subcommands clap knows; every other word goes to the grammar.
const OWN_SUBCOMMANDS: [&str; 5] = ["check", "template", "console", "bot", "setup-events"];

#[derive(Parser)]
#[command(
    name = "argos",
    version,
    about = "Commission, deploy and tear down the Argos stack on AWS",
    override_usage = "argos [OPTIONS] <env> <command> [args...]\n       argos [OPTIONS] <check|template|console|bot|setup-events|envs|help [command]>",
    // `help` is the grammar's (`argos help deploy`); `help check` is answered below.
    disable_help_subcommand = true
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
    /// Print the merged CloudFormation template as pretty JSON (for cfn-lint, a diff, a review).
    Template {
        /// Fill in this environment's values from the config as the parameters' defaults
        /// (never a secret).
        env: Option<String>,
        /// Print image.json, the template that bakes the image, instead.
        #[arg(long, conflicts_with = "env")]
        image: bool,
    },
    /// Talk to the bot on this terminal (the same commands as in chat).
    Console {
        /// Who you are (default: $USER, the name the CLI goes by too): a `console_users` name or a
        /// person's `console` name under `people` in the config.
        #[arg(long, env = "USER", default_value = "console")]
        user: String,
    },
    /// Run the bot on the chat platforms the config enables (Discord).
    Bot,
    /// Create or update the EventBridge rule and SQS queue that push CloudFormation's stack
    /// events to the bot (`watch.events_queue`), in every account the environments use.
    SetupEvents,
    /// `<env> <verb> [args]` (see `argos help`),
    /// `envs`, `help [command]`.
    #[command(external_subcommand)]
    Run(Vec<String>),
}

#[tokio::main]
async fn main() {
    let cli = cli();
    if let Err(e) = argos::logging::init(&cli.config) {
        eprintln!("error: {e}");
        std::process::exit(argos::cli::EXIT_USAGE);
    }
    let code = match cli.command {
        Sub::Check => check(cli.config).await,
        Sub::Template { env, image } => argos::cli::template::run(&cli.config, env.as_deref(), image),
        Sub::Console { user } => argos::serve::console(cli.config, user).await,
        Sub::Bot => argos::serve::bot(cli.config).await,
        Sub::SetupEvents => argos::cli::events::run(&cli.config).await,
        Sub::Run(words) => {
            if let Some(code) = help(&words) {
                std::process::exit(code);
            }
            let (words, yes, approval) = run_flags(words, cli.yes);
            argos::cli::run(cli.config, words, yes, approval).await
        }
    };
    std::process::exit(code);
}

/// The clap command, its help followed by the grammar of the environment commands.
fn command() -> clap::Command {
    Cli::command().after_help(argos::cli::help::overview())
}

fn cli() -> Cli {
    Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
}

/// Help that needs no config: `argos help`, `argos help check` (clap's), and `--help` anywhere
/// in a command's words (`argos staging --help`, `argos staging deploy --help`). `argos help
/// <command>` is the grammar's, answered by `cli::run` (which refuses a junk topic).
fn help(words: &[String]) -> Option<i32> {
    let asks = words.iter().any(|w| w == "--help" || w == "-h");
    let topic = words.get(1).map(|w| w.to_ascii_lowercase());
    if words.first().is_some_and(|w| w.eq_ignore_ascii_case("help")) && !asks {
        match topic.as_deref() {
            None => {
                let _ = command().print_help();
                return Some(0);
            }
            Some(own) if OWN_SUBCOMMANDS.contains(&own) => {
                // Prints the subcommand's help and exits.
                command().get_matches_from(["argos", own, "--help"]);
                return Some(0);
            }
            Some(_) => return None,
        }
    }
    if !asks {
        return None;
    }
    print!("{}", argos::cli::help::for_words(words));
    Some(0)
}

/// Takes the CLI's own flags out of the command's words: `--yes` and `--no-wait`
/// (`--break-glass "reason"` and `--confirm` belong to the grammar every surface speaks).
fn run_flags(words: Vec<String>, yes: bool) -> (Vec<String>, bool, argos::cli::ApprovalOptions) {
    let mut yes = yes;
    let mut approval = argos::cli::ApprovalOptions::default();
    let mut rest = Vec::new();
    for w in words {
        match w.as_str() {
            "--yes" | "-y" => yes = true,
            "--no-wait" => approval.no_wait = true,
            _ => rest.push(w),
        }
    }
    (rest, yes, approval)
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
