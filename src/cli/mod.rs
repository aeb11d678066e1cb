//! The terminal front end: `argos <env> <command>` runs an engine operation in the foreground
//! with live progress (a progress bar on a terminal, plain lines when piped), asks before
//! destroying anything, cancels cleanly on ctrl-c, and exits non-zero with the root cause as
//! its last line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::command::{self, Action, Command, EnvOptions};
use crate::config::Config;
use crate::engine::versions::Pinned;
use crate::engine::{self, Ctx, Engine, Summary};
use crate::error::Error;
use crate::progress::{plain_line, Progress, ProgressTx};

mod approval;
pub mod events;
pub mod help;
mod holds;
mod job;
pub mod template;
mod web;

pub use approval::ApprovalOptions;
use job::{CliJob, Session};

/// Exit codes: 0 done, 1 the operation failed, 2 bad input or config, 130 cancelled.
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_CANCELLED: i32 = 130;

/// Runs one command given as words; returns the process exit code.
pub async fn run(config_path: PathBuf, words: Vec<String>, assume_yes: bool, approval: ApprovalOptions) -> i32 {
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let cmd = match command::parse_words(&refs) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            // Audited where a config says where the store is (a typo is a command too).
            if let Ok(config) = Config::load(&config_path) {
                job::audit_refusal(&config, &words.join(" "), &format!("malformed: {}", e.message)).await;
            }
            return EXIT_USAGE;
        }
    };
    // Help needs no config.
    if let Command::Help { topic } = &cmd {
        print!(
            "{}",
            topic.as_deref().and_then(help::command).unwrap_or_else(help::overview)
        );
        return 0;
    }
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    match cmd {
        Command::Env { env, action, options } => {
            // `--break-glass` skips an approval here as it goes through a freeze.
            let approval = ApprovalOptions {
                break_glass: options.break_glass.clone(),
                ..approval
            };
            run_env(config, env.as_str(), action, &options, assume_yes, approval).await
        }
        Command::Hold { .. } | Command::Release { .. } | Command::Freeze { .. } | Command::Unfreeze { .. } => {
            holds::run(&config, &cmd).await
        }
        Command::Envs => {
            // As in chat: free, running, held or frozen, and the last deploy.
            let store = match job::open_store(&config).await {
                Ok(s) => s,
                Err((code, e)) => {
                    eprintln!("error: {e}");
                    return code;
                }
            };
            println!(
                "{}",
                crate::bot::messages::envs(
                    &crate::holds::env_states(&store, &config),
                    &store.drift_results().unwrap_or_default()
                )
            );
            0
        }
        // The terminal is private: the link is printed.
        Command::Web => web::run(&config).await,
        other => {
            eprintln!(
                "error: `{}` works where jobs live: in `argos console` or chat",
                describe(&other)
            );
            EXIT_USAGE
        }
    }
}

fn describe(cmd: &Command) -> &'static str {
    match cmd {
        Command::Jobs => "jobs",
        Command::Job { .. } => "job",
        Command::Cancel { .. } => "cancel",
        Command::Whoami => "whoami",
        Command::Approve { .. } => "approve",
        Command::Deny { .. } => "deny",
        Command::Schedules => "schedules",
        _ => "this command",
    }
}

/// The job this command runs as: through approval when the environment's policy asks for it
/// (unless `--break-glass`), under the environment's lock in any case.
async fn claim_job(
    engine: &Engine,
    env: &str,
    pinned: &Pinned,
    options: &EnvOptions,
    opts: &ApprovalOptions,
) -> Result<CliJob, (i32, String)> {
    let action = &pinned.action;
    let session = Session::open(&engine.config).await?;
    if action.mutates() {
        // Before an approval is asked for; the start decides again, under the lock.
        let refusal = crate::holds::precheck(&session.store, &engine.config, env, &session.person, options)
            .map_err(|e| (EXIT_FAILED, e.to_string()))?;
        if let Some(r) = refusal {
            let command = format!("{env} {}", action.verb());
            session.audit(&command, &crate::bot::messages::refusal_audit(&r), None);
            session.replica.retire();
            return Err((EXIT_USAGE, crate::bot::messages::refusal(env, "argos", &command, &r)));
        }
    }
    let checks = crate::holds::checks(&engine.config, env, options.confirm);
    let break_glass = options.break_glass.as_deref();
    // The account's request budget is shared with every live argos process.
    if let Ok(replicas) = session.store.replicas() {
        engine.aws.set_share(replicas.iter().filter(|r| r.alive).count());
    }
    let settings = &engine.config.settings.approvals;
    let outside_rule = pinned.needs_approval.is_some();
    let needs = action
        .mutates()
        .then(|| crate::approvals::requirement_for(settings, env, action.grant(), outside_rule))
        .flatten();
    match (needs, &opts.break_glass) {
        (Some(req), None) => approval::gate(session, engine, env, action, req, opts).await,
        (Some(_), Some(reason)) => {
            approval::break_glass(&session, engine, env, action, reason);
            CliJob::start(session, &engine.config, env, action, break_glass, &checks)
        }
        (None, Some(reason)) => {
            approval::break_glass(&session, engine, env, action, reason);
            CliJob::start(session, &engine.config, env, action, break_glass, &checks)
        }
        (None, None) => CliJob::start(session, &engine.config, env, action, None, &checks),
    }
}

async fn run_env(
    config: Config,
    env: &str,
    action: Action,
    options: &EnvOptions,
    assume_yes: bool,
    approval: ApprovalOptions,
) -> i32 {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let store = match job::open_store(&config).await {
        Ok(s) => s,
        Err((code, e)) => {
            eprintln!("error: {e}");
            return code;
        }
    };
    let engine = Engine::new(config).await.with_store(store);
    let typed = format!(
        "{} {}",
        crate::names::shorten(env, crate::names::QUOTE_MAX_CHARS),
        action.verb()
    );
    let refuse = |why: String| {
        let engine = engine.clone();
        let typed = typed.clone();
        async move {
            eprintln!("error: {why}");
            job::audit_refusal(&engine.config, &typed, &format!("refused: {why}")).await;
            EXIT_USAGE
        }
    };
    let target = match engine.target(env) {
        Ok(t) => t,
        Err(e) => return refuse(e.to_string()).await,
    };
    // Before anything is asked or claimed: a typo in a role is not a failed job.
    if let Action::Deploy { roles, .. } = &action {
        if let Err(e) = engine::check_roles(&engine.config, roles) {
            return refuse(e.to_string()).await;
        }
    }
    // Without recorded drift there is nothing to revert: refused before any job exists.
    if let Action::Update { revert_drift: true, .. } = &action {
        if let Err(e) = engine::check_revertable(&engine, env) {
            return refuse(e.to_string()).await;
        }
    }
    // The commit, before any job exists (see `engine::versions::pin`).
    let pinned = match engine::versions::pin(&engine, env, action).await {
        Ok(p) => p,
        Err(e) => return refuse(e.redacted(&engine.redactor).to_string()).await,
    };
    let action = pinned.action.clone();
    if action.destroys() && !assume_yes {
        if !interactive {
            return refuse(format!(
                "`{env} {}` destroys resources: pass --yes to confirm when not on a terminal",
                action.verb()
            ))
            .await;
        }
        if !confirm(
            &format!(
                "{} {env}: this deletes resources in AWS. Type the environment name to confirm: ",
                action.verb()
            ),
            env,
        ) {
            eprintln!("not confirmed; nothing was changed");
            job::audit_refusal(&engine.config, &typed, "refused: not confirmed").await;
            return EXIT_USAGE;
        }
    }
    let stack = target.names.stack();
    let logs = engine.config.state_dir().join("logs");
    let log = std::fs::create_dir_all(&logs).ok().map(|_| {
        logs.join(format!(
            "{stack}-{}-{}.log",
            action.verb(),
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        ))
    });
    let (progress, rx) = ProgressTx::channel();
    let cancel = CancellationToken::new();
    let mut ctx = Ctx {
        engine: engine.clone(),
        target,
        progress,
        cancel: cancel.clone(),
        log: log.clone(),
    };
    // Work on AWS is a job like any other: recorded, audited, and under the environment's
    // lock in the shared store, so the bot, a console and another CLI see it and wait.
    let slot = if action.is_job() {
        match claim_job(&engine, env, &pinned, options, &approval).await {
            Ok(s) => Some(s),
            Err((0, message)) => {
                eprintln!("{message}");
                return 0;
            }
            Err((code, message)) => {
                eprintln!("error: {message}");
                return code;
            }
        }
    } else {
        None
    };
    if let Some(s) = &slot {
        s.announce_start(&engine.config, &action);
        // An assumed role's session is named after who ran it and the job (CloudTrail).
        let user = std::env::var("USER").unwrap_or_else(|_| "cli".into());
        ctx.target = ctx.target.clone().for_job(&user, Some(s.id));
    }
    let printer = tokio::spawn(print_progress(rx, std::io::stderr().is_terminal()));
    let ctrl_c = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ncancelling… (press ctrl-c again to quit at once)");
                cancel.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(EXIT_CANCELLED);
                }
            }
        })
    };
    let result = match &slot {
        // Losing the lease (this process was paused past it and another took over) drops the
        // work at once: nothing more is done or recorded from here.
        Some(s) => tokio::select! {
            r = execute(&ctx, &action).instrument(s.span.clone()) => r,
            _ = s.lease.lost() => Err(Error::Invalid(format!(
                "lost the lock on {env}: another process took job #{} over", s.id
            ))),
        },
        None => execute(&ctx, &action).await,
    };
    drop(ctx);
    if let Some(s) = slot {
        if matches!(action, Action::Rollback { .. }) && result.is_ok() {
            // Before the environment's lock is let go, so nobody redeploys in between.
            hold_after_rollback(&engine, &s.session.store, s.id);
        }
        s.finish(&action, &result, &engine).await;
    }
    let _ = printer.await;
    ctrl_c.abort();
    let log_note = log
        .filter(|p| p.exists())
        .map(|p| format!("full log: {}", crate::names::shown_path(&p)));
    match result {
        Ok(Outcome::Summary(s)) => {
            print_summary(&s);
            if let Some(n) = log_note {
                println!("{n}");
            }
            0
        }
        Ok(Outcome::Text(t)) => {
            print!("{t}");
            0
        }
        Err(e) => {
            if let Some(n) = log_note {
                eprintln!("{n}");
            }
            let code = match &e {
                Error::Cancelled => EXIT_CANCELLED,
                Error::Invalid(_) | Error::Config(_) | Error::Template(_) => EXIT_USAGE,
                _ => EXIT_FAILED,
            };
            eprintln!("error: {}", e.redacted(&engine.redactor));
            code
        }
    }
}

/// Holds the environment for the operator after their rollback (`holds.after_rollback`).
fn hold_after_rollback(engine: &Engine, store: &crate::store::Store, id: u64) {
    let Ok(Some(job)) = store.job(id) else { return };
    let from = crate::holds::previous_commit(store, &job);
    let people = crate::people::People::new(&engine.config.settings.people);
    if let Some(h) = crate::holds::after_rollback(store, &engine.config, &people, &job, from.as_deref()) {
        let text = crate::bot::messages::announced::hold_taken(&h);
        crate::bot::notices::post_with(store, &engine.config, &h.env, &text, &format!("hold-{}-start", h.id));
        eprintln!("{}", crate::bot::messages::hold_taken(&h));
    }
}

pub(crate) enum Outcome {
    Summary(Summary),
    Text(String),
}

async fn execute(ctx: &Ctx, action: &Action) -> Result<Outcome, Error> {
    Ok(match engine::run(ctx, action).await? {
        engine::Outcome::Done(summary) => Outcome::Summary(summary),
        engine::Outcome::Report(report) if matches!(action, Action::Events) => {
            let lines: Vec<String> = report
                .events
                .iter()
                .filter_map(|e| plain_line(&Progress::StackEvent(e.clone())))
                .collect();
            Outcome::Text(if lines.is_empty() {
                format!("no events for {}\n", report.stack_name)
            } else {
                lines.join("\n") + "\n"
            })
        }
        engine::Outcome::Report(report) => {
            let mut text = report.to_string();
            let settings = &ctx.target.settings;
            if let Some((j, behind)) = engine::versions::deployed(&ctx.engine, ctx.target.env.as_str(), settings).await
            {
                text.push_str(&format!("deployed: {}\n", engine::versions::deploy_line(&j)));
                if let Some(n) = behind {
                    text.push_str(&format!(
                        "behind {}: {n} commit(s)\n",
                        engine::versions::default_ref(&ctx.target.settings)
                    ));
                }
            }
            // As in chat: the last drift check, when there was one.
            let env = ctx.target.env.as_str();
            if let Some(Ok(Some(drift))) = ctx.engine.store.as_ref().map(|s| s.last_drift(env)) {
                let line = crate::bot::messages::drift_line(&drift, chrono::Utc::now());
                text.push_str(&format!("drift: {line}\n"));
            }
            Outcome::Text(text)
        }
        engine::Outcome::History(h) => Outcome::Text(h.to_string()),
        engine::Outcome::Drift(report) => Outcome::Summary(crate::bot::messages::drift_summary(&report)),
    })
}

fn print_summary(s: &Summary) {
    println!("{}", s.headline);
    for d in &s.details {
        println!("  {d}");
    }
    for (k, v) in &s.outputs {
        println!("  output {k} = {v}");
    }
    if !s.hosts.is_empty() {
        println!("  hosts: {}", s.hosts.join(", "));
    }
}

fn confirm(prompt: &str, expected: &str) -> bool {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && answer.trim() == expected
}

/// Prints progress to stderr: on a terminal the resource counter is a bar redrawn in place.
async fn print_progress(mut rx: UnboundedReceiver<Progress>, terminal: bool) {
    let mut bar_shown = false;
    while let Some(p) = rx.recv().await {
        let mut err = std::io::stderr().lock();
        if let Progress::StackProgress { stack, done, total } = &p {
            if terminal {
                let _ = write!(err, "\r\x1b[2K{}", bar(stack, *done, *total));
                bar_shown = true;
            } else {
                let _ = writeln!(err, "    {stack}: {done}/{total} resources");
            }
            continue;
        }
        if let Some(line) = plain_line(&p) {
            if bar_shown {
                let _ = write!(err, "\r\x1b[2K");
                bar_shown = false;
            }
            let _ = writeln!(err, "{line}");
        }
    }
    if bar_shown {
        let _ = writeln!(std::io::stderr());
    }
}

/// `[#########-----------] 9/20 argos-staging`
pub fn bar(label: &str, done: usize, total: usize) -> String {
    format!(
        "[{}] {done}/{total} {label}",
        crate::progress::bar(done, total, 24, "#", "-")
    )
}
