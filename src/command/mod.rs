//! The one grammar every surface speaks: the CLI (`argos staging deploy`), the console, chat
//! prefixes and mentions (`!argos staging deploy`, `@Argos staging deploy`). Text in, a typed
//! [`Command`] or a [`ParseError`] with usage and a "did you mean" out. Nothing here acts.

mod args;
mod help;
mod holds;
mod version;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use help::{usage, CommandHelp, COMMANDS};

pub use args::WORKERS_MAX;
pub use args::{is_ref_name, ref_name_problem};
use args::{parse_count, parse_parameters, parse_roles, parse_rollback_target, parse_update, parse_workers, take_ref};
pub use holds::{EnvOptions, EnvSelection};
pub use version::{short_sha, Version};

use crate::names::{quote, shorten, EnvName};

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An operation on one environment.
    Env {
        env: EnvName,
        action: Action,
        options: EnvOptions,
    },
    /// Hands off an environment: others are refused (or, with `warn`, warned) until it ends.
    Hold {
        env: EnvName,
        reason: String,
        /// None: the configured default.
        duration: Option<std::time::Duration>,
        warn: bool,
    },
    /// Ends one's own hold (`force`: anyone's, for those allowed to).
    Release { env: EnvName, force: bool },
    /// Refuses every mutating action on the environments for a while.
    Freeze {
        envs: EnvSelection,
        duration: std::time::Duration,
        reason: String,
    },
    /// Ends the freezes on the environments.
    Unfreeze { envs: EnvSelection },
    /// List the configured environments.
    Envs,
    /// List recent jobs.
    Jobs,
    /// Show one job.
    Job { id: u64 },
    /// Cancel a running job.
    Cancel { id: u64 },
    /// Show who the bot thinks you are and what you may do.
    Whoami,
    /// Help, for everything or one command.
    Help { topic: Option<String> },
    /// Approve a pending request (by its job id).
    Approve { id: u64 },
    /// Deny a pending request, or withdraw one's own.
    Deny { id: u64, reason: Option<String> },
    /// List schedules and their next runs.
    Schedules,
    /// A sign-in link for the read-only web page.
    Web,
}

/// Who may ask for a command, before its handler looks closer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Everyone, strangers included (`help`, `whoami`: how a stranger learns what to ask for).
    Anyone,
    /// Anyone with a role.
    KnownUser,
    /// A permission rule, checked by the handler against the environment and the verb
    /// (`approve` and `deny` check the request's environment).
    Rule,
}

impl Command {
    /// Who may ask for this command.
    pub fn gate(&self) -> Gate {
        match self {
            Command::Help { .. } | Command::Whoami => Gate::Anyone,
            Command::Envs
            | Command::Jobs
            | Command::Job { .. }
            | Command::Cancel { .. }
            | Command::Schedules
            | Command::Web => Gate::KnownUser,
            Command::Env { .. }
            | Command::Hold { .. }
            | Command::Release { .. }
            | Command::Freeze { .. }
            | Command::Unfreeze { .. }
            | Command::Approve { .. }
            | Command::Deny { .. } => Gate::Rule,
        }
    }

    /// Whether its answer is for the asker's eyes only (a sign-in link). An adapter that must
    /// choose before the answer exists (Discord defers a slash command publicly or
    /// ephemerally) asks this of the text typed.
    pub fn answers_privately(&self) -> bool {
        matches!(self, Command::Web)
    }
}

/// [`Command::answers_privately`] of a typed command (false when it does not parse).
pub fn answers_privately(text: &str) -> bool {
    parse(text).is_ok_and(|c| c.answers_privately())
}

/// What to do to an environment. It is data: a job stores it (the verb in its own column, the
/// rest as JSON: `{"roles":["api"]}`), and a resumed, taken-over or approved job reads it back
/// through serde, so a verb that cannot be read fails loudly instead of being dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "lowercase")]
pub enum Action {
    Commission {
        #[serde(default, flatten)]
        version: Version,
    },
    Deploy {
        #[serde(default)]
        roles: Vec<String>,
        #[serde(default, flatten)]
        version: Version,
    },
    Update {
        #[serde(default)]
        parameters: BTreeMap<String, String>,
        #[serde(default, flatten)]
        version: Version,
        /// `--revert-drift`: instead of the templates, a REVERT_DRIFT change set on the
        /// stack's current template and parameters, undoing the drift the last check found.
        /// It deploys no code, so it has no version.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        revert_drift: bool,
    },
    /// Redeploys an earlier commit: the last good one before the current, or `to`.
    Rollback {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        #[serde(default, flatten)]
        version: Version,
    },
    /// The environment's last deploys.
    History {
        #[serde(default = "default_history")]
        count: u32,
    },
    Plan {
        #[serde(default)]
        parameters: BTreeMap<String, String>,
    },
    /// Sets the number of workers (`WorkerCount`) through a change set and configures the new
    /// workers as they launch (drains the leaving ones).
    Scale {
        workers: u32,
    },
    /// Answers the workers' lifecycle hooks: configures each worker waiting to launch and
    /// drains each waiting to terminate. Nobody types it: the bot's lookout starts it when
    /// the group has a worker waiting.
    Lifecycle,
    /// Asks CloudFormation whether the live resources still match the stack.
    Drift,
    Decommission,
    Clean,
    Status,
    Events,
}

/// How many deploys `history` lists when no number is given, and at most.
pub const HISTORY_DEFAULT: u32 = 10;
pub const HISTORY_MAX: u32 = 50;

fn default_history() -> u32 {
    HISTORY_DEFAULT
}

impl Action {
    /// The version the action deploys, for those that deploy code.
    pub fn version(&self) -> Option<&Version> {
        match self {
            Action::Update { revert_drift: true, .. } => None,
            Action::Commission { version }
            | Action::Deploy { version, .. }
            | Action::Update { version, .. }
            | Action::Rollback { version, .. } => Some(version),
            Action::Plan { .. }
            | Action::Scale { .. }
            | Action::Lifecycle
            | Action::Drift
            | Action::Decommission
            | Action::Clean
            | Action::Status
            | Action::Events
            | Action::History { .. } => None,
        }
    }

    /// The same, to fill in.
    pub fn version_mut(&mut self) -> Option<&mut Version> {
        match self {
            Action::Update { revert_drift: true, .. } => None,
            Action::Commission { version }
            | Action::Deploy { version, .. }
            | Action::Update { version, .. }
            | Action::Rollback { version, .. } => Some(version),
            Action::Plan { .. }
            | Action::Scale { .. }
            | Action::Lifecycle
            | Action::Drift
            | Action::Decommission
            | Action::Clean
            | Action::Status
            | Action::Events
            | Action::History { .. } => None,
        }
    }

    /// The verb, as typed and as used in permission rules.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Commission { .. } => "commission",
            Action::Deploy { .. } => "deploy",
            Action::Update { .. } => "update",
            Action::Rollback { .. } => "rollback",
            Action::History { .. } => "history",
            Action::Plan { .. } => "plan",
            Action::Scale { .. } => "scale",
            Action::Lifecycle => "lifecycle",
            Action::Drift => "drift",
            Action::Decommission => "decommission",
            Action::Clean => "clean",
            Action::Status => "status",
            Action::Events => "events",
        }
    }

    /// The grant a permission rule gives for the action, which is also the name approval
    /// policies match: the command table's (`scale` is granted, and approved, as `update`:
    /// it is an update of one parameter). An action nobody types is its own verb.
    pub fn grant(&self) -> &'static str {
        grant_of(self.verb())
    }

    /// What kind of work the action is; every verb answers here, so a new one does not compile
    /// until it says.
    fn kind(&self) -> Kind {
        match self {
            Action::Status | Action::Events | Action::History { .. } => Kind::Read,
            // `plan` runs under the lock too: it creates (and deletes) a change set on the
            // stack, which must not meet a running update.
            Action::Plan { .. } => Kind::Preview,
            // `drift` changes nothing, but a detection beside a running update would compare
            // resources in mid-change: it waits for the lock as `plan` does.
            Action::Drift => Kind::Preview,
            // Configuring a new worker at the deployed commit changes no version and no
            // setting: it restores the group's capacity, which a hold or a freeze must not
            // stop (the hook would time out and the group replace the worker, again and
            // again). It still takes the lock, so it never runs beside another job.
            Action::Lifecycle => Kind::Preview,
            Action::Commission { .. }
            | Action::Deploy { .. }
            | Action::Update { .. }
            | Action::Scale { .. }
            | Action::Rollback { .. } => Kind::Change,
            Action::Decommission | Action::Clean => Kind::Destroy,
        }
    }

    /// Whether the action changes anything in AWS (and so may need an approval).
    pub fn mutates(&self) -> bool {
        matches!(self.kind(), Kind::Change | Kind::Destroy)
    }

    /// Whether the action runs as a job under the environment's lock.
    pub fn is_job(&self) -> bool {
        !matches!(self.kind(), Kind::Read)
    }

    /// Whether the action destroys things (the CLI asks for confirmation).
    pub fn destroys(&self) -> bool {
        matches!(self.kind(), Kind::Destroy)
    }

    /// The arguments as a job row stores them beside the verb: a JSON object without the
    /// verb (`{}` for an action without arguments).
    pub fn stored_args(&self) -> String {
        let mut value = serde_json::to_value(self).expect("an action is plain data");
        if let Some(fields) = value.as_object_mut() {
            fields.remove("verb");
        }
        value.to_string()
    }

    /// Reads back what [`Action::stored_args`] wrote, with the verb from its column.
    pub fn from_stored(verb: &str, args: &str) -> Result<Action, String> {
        let mut fields = match args.trim() {
            "" => serde_json::Map::new(),
            text => match serde_json::from_str(text) {
                Ok(serde_json::Value::Object(fields)) => fields,
                _ => return Err(format!("the stored arguments of `{verb}` are not a JSON object")),
            },
        };
        fields.insert("verb".into(), verb.into());
        serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| format!("the stored action `{verb}` cannot be read: {e}"))
    }
}

/// What an action does to an environment, from reading it to destroying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Preview,
    Change,
    Destroy,
}

/// Why a text is not a command. `Display` gives one reply: the problem, then the usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub usage: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\nusage: {}", self.message, self.usage)
    }
}

impl std::error::Error for ParseError {}

/// The verbs that act on one environment, from the command table (the one source of truth).
pub fn env_verbs() -> Vec<&'static str> {
    COMMANDS.iter().filter(|c| c.per_env).map(|c| c.name).collect()
}

/// What a permission rule may grant besides the commands' own grants: going through a freeze
/// (`--break-glass`) and ending someone else's hold (`release --force`).
pub const OPTION_GRANTS: &[&str] = &["break-glass", "force-release"];

/// Every action a permission rule may grant: each command's grant (the verbs that act on one
/// environment, `hold` for holding and releasing, `freeze` for freezing and unfreezing,
/// `approve` for voting on someone else's request) and the [`OPTION_GRANTS`].
pub fn actions() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for grant in COMMANDS
        .iter()
        .filter_map(|c| c.grant)
        .chain(OPTION_GRANTS.iter().copied())
    {
        if !out.contains(&grant) {
            out.push(grant);
        }
    }
    out
}

/// The grant of a verb as jobs store it (see [`Action::grant`]); a verb not in the command
/// table is its own.
pub fn grant_of(verb: &str) -> &str {
    COMMANDS
        .iter()
        .find(|c| c.name == verb)
        .and_then(|c| c.grant)
        .unwrap_or(verb)
}

/// The verbs that stand alone.
pub fn global_verbs() -> Vec<&'static str> {
    COMMANDS.iter().filter(|c| !c.per_env).map(|c| c.name).collect()
}
fn err(message: impl Into<String>, topic: &str) -> ParseError {
    ParseError {
        message: message.into(),
        usage: usage(Some(topic)),
    }
}

/// The longest reason `deny` keeps (it is shown in the request's message and the audit).
pub const REASON_MAX_CHARS: usize = 200;

fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let len = word.chars().count();
    candidates
        .iter()
        // Two edits change the length by at most two: a long word costs nothing.
        .filter(|c| len.abs_diff(c.len()) <= 2)
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2 && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Parses the words of a command (after any `!argos` prefix or mention was removed).
pub fn parse_words(words: &[&str]) -> Result<Command, ParseError> {
    let Some((first, rest)) = words.split_first() else {
        return Err(err("no command given", "help"));
    };
    let first_lc = first.to_ascii_lowercase();
    if global_verbs().contains(&first_lc.as_str()) {
        return parse_global(&first_lc, rest);
    }
    if env_verbs().contains(&first_lc.as_str()) {
        let example = rest
            .first()
            .copied()
            .filter(|e| EnvName::parse(e).is_ok())
            .unwrap_or("staging");
        return Err(err(
            format!("put the environment first: `{example} {first_lc}`"),
            &first_lc,
        ));
    }
    if rest.is_empty() {
        if let Some(s) = closest(&first_lc, &global_verbs()) {
            return Err(err(format!("unknown command {}; did you mean '{s}'?", quote(first)), s));
        }
        if EnvName::parse(first).is_err() {
            return Err(err(format!("unknown command {}", quote(first)), "help"));
        }
        return Err(err(
            // A valid environment name: short, and safe to show as it is.
            format!("{} needs a command after it, e.g. `{first} status`", quote(first)),
            "help",
        ));
    }
    // `aprove 12`: a near miss of a global command followed by a job number.
    if rest[0].trim_start_matches('#').parse::<u64>().is_ok() {
        if let Some(s) = closest(&first_lc, &global_verbs()) {
            return Err(err(format!("unknown command {}; did you mean '{s}'?", quote(first)), s));
        }
    }
    let env = EnvName::parse(first).map_err(|e| err(e.to_string(), "help"))?;
    let verb = rest[0].to_ascii_lowercase();
    match verb.as_str() {
        "hold" => return holds::parse_hold(env, &rest[1..]),
        "release" => return holds::parse_release(env, &rest[1..]),
        _ => {}
    }
    let (options, args) = holds::take_env_options(&rest[1..], &verb)?;
    let args = args.as_slice();
    let bare = |action: Action| match args.first() {
        Some(extra) => Err(err(
            format!("`{verb}` takes no arguments (got {})", quote(extra)),
            &verb,
        )),
        None => Ok(action),
    };
    let action = match verb.as_str() {
        "commission" => {
            let (version, rest) = take_ref(args, "commission")?;
            match rest.first() {
                Some(extra) => {
                    return Err(err(
                        format!("`commission` takes only ref= (got {})", quote(extra)),
                        "commission",
                    ))
                }
                None => Action::Commission { version },
            }
        }
        "rollback" => Action::Rollback {
            to: parse_rollback_target(args)?,
            version: Version::default(),
        },
        "history" => Action::History {
            count: parse_count(args)?,
        },
        "decommission" => bare(Action::Decommission)?,
        "clean" => bare(Action::Clean)?,
        "status" => bare(Action::Status)?,
        "events" => bare(Action::Events)?,
        "drift" => bare(Action::Drift)?,
        "deploy" => {
            let (version, rest) = take_ref(args, "deploy")?;
            Action::Deploy {
                roles: parse_roles(&rest)?,
                version,
            }
        }
        "update" => parse_update(args)?,
        "plan" => Action::Plan {
            parameters: parse_parameters(args, "plan")?,
        },
        "scale" => Action::Scale {
            workers: parse_workers(args)?,
        },
        other => {
            // Quoted as typed, not lowercased.
            let typed = quote(rest[0]);
            return Err(match closest(other, &env_verbs()) {
                Some(s) => err(format!("unknown command {typed}; did you mean '{s}'?"), s),
                None => err(format!("unknown command {typed}"), "help"),
            });
        }
    };
    if (options.break_glass.is_some() || options.confirm) && !action.mutates() {
        return Err(err(
            format!("`{verb}` changes nothing: --break-glass and --confirm are for commands that do"),
            &verb,
        ));
    }
    Ok(Command::Env { env, action, options })
}

/// Parses a whole line.
pub fn parse(text: &str) -> Result<Command, ParseError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    parse_words(&words)
}

fn parse_id(verb: &str, args: &[&str]) -> Result<u64, ParseError> {
    let Some(raw) = args.first() else {
        return Err(err(format!("`{verb}` needs a number"), verb));
    };
    raw.trim_start_matches('#')
        .parse::<u64>()
        .map_err(|_| err(format!("{} is not a number", quote(raw)), verb))
}

fn parse_global(verb: &str, args: &[&str]) -> Result<Command, ParseError> {
    let no_args = |cmd: Command| match args.first() {
        Some(extra) => Err(err(format!("`{verb}` takes no arguments (got {})", quote(extra)), verb)),
        None => Ok(cmd),
    };
    match verb {
        "envs" => no_args(Command::Envs),
        "jobs" => no_args(Command::Jobs),
        "whoami" => no_args(Command::Whoami),
        "schedules" => no_args(Command::Schedules),
        "web" => no_args(Command::Web),
        "freeze" => holds::parse_freeze(args),
        "unfreeze" => holds::parse_unfreeze(args),
        "approve" => {
            let id = parse_id(verb, args)?;
            if args.len() > 1 {
                return Err(err("`approve` takes one number", verb));
            }
            Ok(Command::Approve { id })
        }
        "deny" => {
            let id = parse_id(verb, args)?;
            let reason = (args.len() > 1).then(|| shorten(&args[1..].join(" "), REASON_MAX_CHARS));
            Ok(Command::Deny { id, reason })
        }
        "job" | "cancel" => {
            let id = parse_id(verb, args)?;
            if args.len() > 1 {
                return Err(err(format!("`{verb}` takes one number"), verb));
            }
            Ok(if verb == "job" {
                Command::Job { id }
            } else {
                Command::Cancel { id }
            })
        }
        _ => {
            if args.len() > 1 {
                return Err(err("`help` takes at most one command name", "help"));
            }
            let topic = args.first().map(|t| t.to_ascii_lowercase());
            if let Some(t) = &topic {
                if !COMMANDS.iter().any(|c| c.name == t) {
                    let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
                    let hint = closest(t, &names)
                        .map(|s| format!("; did you mean '{s}'?"))
                        .unwrap_or_default();
                    return Err(err(format!("no help for {}{hint}", quote(args[0])), "help"));
                }
            }
            Ok(Command::Help { topic })
        }
    }
}

#[cfg(test)]
mod tests;
