//! The grammar of holds and freezes: `<env> hold [reason] [for 2h] [--warn]`, `<env> release
//! [--force]`, `freeze <envs|all> for 2h "reason"`, `unfreeze <envs|all>`, and the options
//! every environment verb takes: `--confirm` (go ahead past a warning hold) and
//! `--break-glass "reason"` (go through a freeze).

use std::time::Duration;

use super::{err, Command, ParseError, REASON_MAX_CHARS};
use crate::clock;
use crate::names::{quote, shorten, EnvName};

/// What an environment verb was given besides its own arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvOptions {
    /// `--break-glass "reason"`: run through a freeze (audited and announced).
    pub break_glass: Option<String>,
    /// `--confirm`: go ahead although someone holds the environment with `--warn`.
    pub confirm: bool,
}

/// The environments a freeze names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSelection {
    All,
    Only(Vec<EnvName>),
}

impl EnvSelection {
    /// Whether `env` is among them.
    pub fn covers(&self, env: &str) -> bool {
        match self {
            EnvSelection::All => true,
            EnvSelection::Only(envs) => envs.iter().any(|e| e.as_str() == env),
        }
    }

    /// `all`, or the names joined with commas.
    pub fn describe(&self) -> String {
        match self {
            EnvSelection::All => "all".into(),
            EnvSelection::Only(envs) => envs.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", "),
        }
    }
}

/// A duration as typed (`2h`, `30m`), as the store takes it.
fn parse_duration(text: &str) -> Result<Duration, String> {
    clock::parse_duration(text)?
        .to_std()
        .map_err(|_| "a duration must be positive".to_string())
}

/// A reason as typed: the words joined, surrounding quotes dropped (chat does not group
/// quoted words; a shell already did), cut to [`REASON_MAX_CHARS`].
fn reason_of(words: &[&str]) -> String {
    let joined = words.join(" ");
    let trimmed = joined
        .trim()
        .trim_matches(|c| c == '"' || c == '\'' || c == '“' || c == '”')
        .trim();
    shorten(trimmed, REASON_MAX_CHARS)
}

/// Takes `--confirm` and `--break-glass <reason>` (the words up to the next `--option`, or
/// `--break-glass=<reason>`) out of an environment verb's arguments.
pub(super) fn take_env_options<'a>(args: &[&'a str], verb: &str) -> Result<(EnvOptions, Vec<&'a str>), ParseError> {
    let mut options = EnvOptions::default();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        i += 1;
        if a == "--confirm" {
            options.confirm = true;
            continue;
        }
        let reason = if let Some(r) = a.strip_prefix("--break-glass=") {
            vec![r]
        } else if a == "--break-glass" {
            let start = i;
            while i < args.len() && !args[i].starts_with("--") {
                i += 1;
            }
            args[start..i].to_vec()
        } else {
            rest.push(a);
            continue;
        };
        if options.break_glass.is_some() {
            return Err(err("--break-glass is given twice", verb));
        }
        let reason = reason_of(&reason);
        if reason.is_empty() {
            return Err(err("--break-glass needs a reason: --break-glass \"why\"", verb));
        }
        options.break_glass = Some(reason);
    }
    Ok((options, rest))
}

/// `for <duration>` at the end of the words, if it is there: a last word that starts with a
/// digit is a duration (and an error if it is not a good one); `waiting for QA` is a reason.
fn take_trailing_duration<'a>(
    words: &'a [&'a str],
    verb: &str,
) -> Result<(Option<Duration>, &'a [&'a str]), ParseError> {
    match words {
        [head @ .., f, d] if f.eq_ignore_ascii_case("for") && d.starts_with(|c: char| c.is_ascii_digit()) => {
            let duration = parse_duration(d).map_err(|e| err(e, verb))?;
            Ok((Some(duration), head))
        }
        _ => Ok((None, words)),
    }
}

/// `<env> hold [reason] [for <duration>] [--warn]`.
pub(super) fn parse_hold(env: EnvName, args: &[&str]) -> Result<Command, ParseError> {
    let mut warn = false;
    let mut words = Vec::new();
    for a in args {
        match *a {
            "--warn" => warn = true,
            other if other.starts_with("--") => {
                return Err(err(
                    format!("unknown option {} (hold takes --warn)", quote(other)),
                    "hold",
                ))
            }
            other => words.push(other),
        }
    }
    let (duration, reason) = take_trailing_duration(&words, "hold")?;
    if reason.last().is_some_and(|w| w.eq_ignore_ascii_case("for")) {
        return Err(err("`for` needs a duration, e.g. `for 2h`", "hold"));
    }
    Ok(Command::Hold {
        env,
        reason: reason_of(reason),
        duration,
        warn,
    })
}

/// `<env> release [--force]`.
pub(super) fn parse_release(env: EnvName, args: &[&str]) -> Result<Command, ParseError> {
    match args {
        [] => Ok(Command::Release { env, force: false }),
        ["--force"] => Ok(Command::Release { env, force: true }),
        [other, ..] => Err(err(
            format!("`release` takes only --force (got {})", quote(other)),
            "release",
        )),
    }
}

/// `staging,production`, `staging production` or `all`.
fn parse_selection(words: &[&str], verb: &str) -> Result<EnvSelection, ParseError> {
    let names: Vec<&str> = words
        .iter()
        .flat_map(|w| w.split(','))
        .filter(|w| !w.is_empty())
        .collect();
    if names.is_empty() {
        return Err(err(format!("`{verb}` needs environments or `all`"), verb));
    }
    if names.iter().any(|n| n.eq_ignore_ascii_case("all")) {
        if names.len() > 1 {
            return Err(err("`all` stands alone", verb));
        }
        return Ok(EnvSelection::All);
    }
    let mut envs: Vec<EnvName> = Vec::new();
    for n in names {
        let env = EnvName::parse(n).map_err(|e| err(e.to_string(), verb))?;
        if !envs.contains(&env) {
            envs.push(env);
        }
    }
    Ok(EnvSelection::Only(envs))
}

/// `freeze <envs|all> for <duration> <reason>`.
pub(super) fn parse_freeze(args: &[&str]) -> Result<Command, ParseError> {
    let Some(at) = args.iter().position(|w| w.eq_ignore_ascii_case("for")) else {
        return Err(err(
            "`freeze` needs a duration: `freeze staging for 2h \"why\"`",
            "freeze",
        ));
    };
    let envs = parse_selection(&args[..at], "freeze")?;
    let Some(raw) = args.get(at + 1) else {
        return Err(err("`for` needs a duration, e.g. `for 2h`", "freeze"));
    };
    let duration = parse_duration(raw).map_err(|e| err(e, "freeze"))?;
    let reason = reason_of(&args[at + 2..]);
    if reason.is_empty() {
        return Err(err(
            "a freeze needs a reason: `freeze staging for 2h \"why\"`",
            "freeze",
        ));
    }
    Ok(Command::Freeze { envs, duration, reason })
}

/// `unfreeze <envs|all>`.
pub(super) fn parse_unfreeze(args: &[&str]) -> Result<Command, ParseError> {
    Ok(Command::Unfreeze {
        envs: parse_selection(args, "unfreeze")?,
    })
}

#[cfg(test)]
mod tests {
    use crate::command::*;

    fn env(e: &str) -> EnvName {
        EnvName::parse(e).unwrap()
    }

    #[test]
    fn holds_and_freezes_parse() {
        assert_eq!(
            parse("staging hold testing the migration for 2h").unwrap(),
            Command::Hold {
                env: env("staging"),
                reason: "testing the migration".into(),
                duration: Some(std::time::Duration::from_secs(7200)),
                warn: false,
            }
        );
        assert_eq!(
            parse("staging hold --warn").unwrap(),
            Command::Hold {
                env: env("staging"),
                reason: String::new(),
                duration: None,
                warn: true,
            }
        );
        // "for" inside a reason stays in the reason.
        let Command::Hold { reason, duration, .. } = parse("staging hold waiting for QA").unwrap() else {
            panic!()
        };
        assert_eq!((reason.as_str(), duration), ("waiting for QA", None));
        assert_eq!(
            parse("staging release --force").unwrap(),
            Command::Release {
                env: env("staging"),
                force: true
            }
        );
        assert_eq!(
            parse("freeze staging,production for 90m \"incident 42\"").unwrap(),
            Command::Freeze {
                envs: EnvSelection::Only(vec![env("staging"), env("production")]),
                duration: std::time::Duration::from_secs(5400),
                reason: "incident 42".into(),
            }
        );
        assert_eq!(
            parse("unfreeze all").unwrap(),
            Command::Unfreeze {
                envs: EnvSelection::All
            }
        );
        let Command::Env { options, .. } =
            parse("staging deploy ref=v1.2.0 --break-glass \"the site is down\" --confirm").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            options,
            EnvOptions {
                break_glass: Some("the site is down".into()),
                confirm: true
            }
        );
    }

    #[test]
    fn bad_holds_and_freezes_are_refused_with_their_usage() {
        let cases = [
            ("staging hold for", "`for` needs a duration"),
            ("staging hold for 2x", "unknown unit"),
            ("staging hold for 0m", "zero"),
            ("staging hold --force", "unknown option '--force'"),
            ("staging release now", "`release` takes only --force"),
            ("freeze staging", "`freeze` needs a duration"),
            ("freeze staging for 2h", "a freeze needs a reason"),
            ("freeze for 2h why", "`freeze` needs environments or `all`"),
            ("freeze all,staging for 2h why", "`all` stands alone"),
            ("freeze Staging! for 2h why", "environment"),
            ("unfreeze", "`unfreeze` needs environments or `all`"),
            ("staging deploy --break-glass", "--break-glass needs a reason"),
            ("staging status --break-glass why", "`status` changes nothing"),
            (
                "staging deploy --break-glass a --break-glass b",
                "--break-glass is given twice",
            ),
        ];
        for (input, want) in cases {
            let e = parse(input).unwrap_err();
            assert!(e.message.contains(want), "{input}: {}", e.message);
        }
    }
}
