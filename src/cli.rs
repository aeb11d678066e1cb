//! The terminal front end: `argos <env> <command>` runs an engine operation in the foreground
//! with live progress (a progress bar on a terminal, plain lines when piped), asks before
//! destroying anything, cancels cleanly on ctrl-c, and exits non-zero with the root cause as
//! its last line.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::command::{self, Action, Command};
use crate::config::Config;
use crate::engine::{self, Ctx, Engine, Summary};
use crate::error::Error;
use crate::progress::{plain_line, Progress, ProgressTx};

/// Exit codes: 0 done, 1 the operation failed, 2 bad input or config, 130 cancelled.
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_CANCELLED: i32 = 130;

/// Runs one command given as words; returns the process exit code.
pub async fn run(config_path: PathBuf, words: Vec<String>, assume_yes: bool) -> i32 {
    let config = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let cmd = match command::parse_words(&refs) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    match cmd {
        Command::Env { env, action } => run_env(config, env.as_str(), action, assume_yes).await,
        Command::Envs => {
            for (name, s) in &config.settings.environments {
                let types: Vec<String> = s.instance_types.iter().map(|(g, t)| format!("{g}={t}")).collect();
                println!("{name}\t{}", types.join(" "));
            }
            0
        }
        Command::Help { topic } => {
            print_help(topic.as_deref());
            0
        }
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

fn print_help(topic: Option<&str>) {
    for c in command::COMMANDS.iter().filter(|c| topic.is_none_or(|t| t == c.name)) {
        println!("  {:<38} {}", c.grammar, c.summary);
    }
}

async fn run_env(config: Config, env: &str, action: Action, assume_yes: bool) -> i32 {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let engine = Engine::new(config).await;
    let target = match engine.target(env) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    if action.destroys() && !assume_yes {
        if !interactive {
            eprintln!(
                "error: `{env} {}` destroys resources: pass --yes to confirm when not on a terminal",
                action.verb()
            );
            return EXIT_USAGE;
        }
        if !confirm(
            &format!(
                "{} {env}: this deletes resources in AWS. Type the environment name to confirm: ",
                action.verb()
            ),
            env,
        ) {
            eprintln!("not confirmed; nothing was changed");
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
    let ctx = Ctx {
        engine: engine.clone(),
        target,
        progress,
        cancel: cancel.clone(),
        log: log.clone(),
    };
    // Work on AWS is a job like any other: recorded, audited, and under the environment's
    // lock in the shared store, so the bot, a console and another CLI see it and wait.
    let slot = if action.is_job() {
        match CliJob::start(&engine.config, env, &action).await {
            Ok(s) => Some(s),
            Err((code, message)) => {
                eprintln!("error: {message}");
                return code;
            }
        }
    } else {
        None
    };
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
            r = execute(&ctx, &action) => r,
            _ = s.lease.lost() => Err(Error::Invalid(format!(
                "lost the lock on {env}: another process took job #{} over", s.id
            ))),
        },
        None => execute(&ctx, &action).await,
    };
    drop(ctx);
    if let Some(s) = slot {
        s.finish(&result, &engine.redactor).await;
    }
    let _ = printer.await;
    ctrl_c.abort();
    let log_note = log.filter(|p| p.exists()).map(|p| format!("full log: {}", p.display()));
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

/// The job a CLI command runs as: its row, its lock and lease, its audit records.
struct CliJob {
    store: crate::store::Store,
    replica: std::sync::Arc<crate::bot::replica::Replica>,
    lease: std::sync::Arc<crate::bot::replica::JobLease>,
    id: u64,
    user: String,
    command: String,
}

impl CliJob {
    async fn start(config: &Config, env: &str, action: &Action) -> Result<CliJob, (i32, String)> {
        use crate::store::{NewJob, StartOutcome, Store};
        let url = config.database_url();
        let path = config.database_path();
        let store = tokio::task::spawn_blocking(move || Store::open_configured(url.as_deref(), &path))
            .await
            .map_err(|e| (EXIT_FAILED, e.to_string()))?
            .map_err(|e| (EXIT_FAILED, e.to_string()))?;
        let runs = crate::ansible::runs_dir(&config.state_dir());
        if let Ok(report) = tokio::task::spawn_blocking(move || crate::ansible::sweep_orphans(Some(&runs))).await {
            if !report.is_empty() {
                tracing::warn!(%report, "swept what a dead argos process left running");
            }
        }
        let lease = config.settings.store.lease();
        let replica = crate::bot::replica::Replica::register(store.clone(), "cli", &["cli"], lease)
            .map_err(|e| (EXIT_FAILED, e))?;
        let replica = std::sync::Arc::new(replica);
        let user = std::env::var("USER").unwrap_or_else(|_| "cli".into());
        let command = format!("{env} {}", action.verb());
        let new = NewJob {
            requester_id: user.clone(),
            requester_name: user.clone(),
            platform: "cli".into(),
            channel: format!("cli:{}", crate::names::hostname()),
            env: env.to_string(),
            action: action.verb().to_string(),
            args: crate::bot::jobs::action_args(action),
        };
        let audit = |outcome: &str, job: Option<u64>| {
            if let Err(e) = store.audit("cli", &user, &user, &new.channel, &command, outcome, job) {
                eprintln!("warning: cannot write the audit log: {e}");
            }
        };
        // One retry: a lock left by a CLI that died is freed by the first look at it.
        for attempt in 0..2 {
            let obtained = std::time::Instant::now();
            match store.start_job(&new, &replica.id, lease) {
                Ok(StartOutcome::Started { id, token }) => {
                    audit(&format!("ok: job #{id} started"), Some(id));
                    let held = replica.hold(id, env, token, obtained);
                    replica.spawn_heartbeat();
                    return Ok(CliJob {
                        store,
                        replica,
                        lease: held,
                        id,
                        user,
                        command,
                    });
                }
                Ok(StartOutcome::Busy(holder, lock)) => {
                    if attempt == 0
                        && !lock.live
                        && reap_dead_cli_job(&store, &replica, &lock, holder.as_ref().as_ref())
                    {
                        continue;
                    }
                    let text = match holder.as_ref() {
                        Some(j) => format!(
                            "{env} is busy: job #{} ({} by {} via {}) is {}{}{}",
                            j.id,
                            j.action,
                            j.requester_name,
                            j.platform,
                            j.state,
                            lock.owner.as_deref().map(|o| format!(" in {o}")).unwrap_or_default(),
                            if lock.live {
                                ""
                            } else {
                                " (its process stopped; a bot takes it over)"
                            }
                        ),
                        None => format!("{env} is busy"),
                    };
                    audit(&format!("busy: {text}"), None);
                    replica.retire();
                    return Err((EXIT_USAGE, format!("{text}; nothing was started")));
                }
                Err(e) => {
                    replica.retire();
                    return Err((EXIT_FAILED, e.to_string()));
                }
            }
        }
        replica.retire();
        Err((EXIT_USAGE, format!("{env} is busy; nothing was started")))
    }

    /// Records the end (fenced by the lease's token) and frees the environment.
    async fn finish(self, result: &Result<Outcome, Error>, redactor: &crate::redact::Redactor) {
        use crate::store::JobState;
        let (state, text) = match result {
            Ok(Outcome::Summary(s)) => (JobState::Succeeded, s.headline.clone()),
            Ok(Outcome::Text(_)) => (JobState::Succeeded, "done".to_string()),
            Err(Error::Cancelled) => (JobState::Cancelled, "cancelled".to_string()),
            Err(e) => (JobState::Failed, redactor.redact(&e.to_string())),
        };
        if self.lease.valid() {
            if let Err(e) = self.store.finish_and_release(self.id, self.lease.token, state, &text) {
                eprintln!("warning: cannot record the end of job #{}: {e}", self.id);
            }
            let _ = self.store.audit(
                "cli",
                &self.user,
                &self.user,
                "-",
                &self.command,
                &format!("{state}: job #{}", self.id),
                Some(self.id),
            );
        }
        self.replica.release(self.id);
        self.replica.retire();
    }
}

/// A CLI job whose process died holds its environment until someone looks: the CLI cannot be
/// resumed elsewhere, so the job ends as interrupted and the lock is freed.
fn reap_dead_cli_job(
    store: &crate::store::Store,
    replica: &crate::bot::replica::Replica,
    lock: &crate::store::EnvLockRecord,
    holder: Option<&crate::store::JobRecord>,
) -> bool {
    let Some(job) = holder.filter(|j| j.platform == "cli") else {
        return false;
    };
    let Ok(Some(token)) = store.take_over(&lock.env, lock.token, &replica.id, replica.lease) else {
        return false;
    };
    store
        .finish_and_release(
            job.id,
            token,
            crate::store::JobState::Interrupted,
            &crate::bot::messages::interrupted("the CLI process that ran it stopped"),
        )
        .is_ok()
}

enum Outcome {
    Summary(Summary),
    Text(String),
}

async fn execute(ctx: &Ctx, action: &Action) -> Result<Outcome, Error> {
    Ok(match action {
        Action::Commission => Outcome::Summary(engine::commission(ctx).await?),
        Action::Deploy { roles } => Outcome::Summary(engine::deploy(ctx, roles).await?),
        Action::Update { parameters } => Outcome::Summary(engine::update(ctx, parameters).await?),
        Action::Plan { parameters } => Outcome::Summary(engine::plan(ctx, parameters).await?),
        Action::Decommission => Outcome::Summary(engine::decommission(ctx).await?),
        Action::Clean => Outcome::Summary(engine::clean(ctx).await?),
        Action::Status => Outcome::Text(engine::status(ctx).await?.to_string()),
        Action::Events => {
            let report = engine::status(ctx).await?;
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
