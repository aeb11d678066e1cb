//! The arguments of the environment verbs: roles, template parameters, `ref=`, a rollback's
//! target and a count, each checked as it is read so that a bad one is named in the reply.

use std::collections::BTreeMap;

use super::{closest, err, Action, ParseError, Version, HISTORY_DEFAULT, HISTORY_MAX};
use crate::names::quote;

/// Takes `ref=<name>` (or `--ref <name>`, `--ref=<name>`) out of the arguments. The name is
/// checked for what git would take as an option or a range here; whether it exists is the
/// repository's to say.
pub(super) fn take_ref<'a>(args: &[&'a str], verb: &str) -> Result<(Version, Vec<&'a str>), ParseError> {
    let mut version = Version::default();
    let mut rest = Vec::new();
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        let value = if let Some(v) = a.strip_prefix("ref=").or_else(|| a.strip_prefix("--ref=")) {
            v
        } else if *a == "--ref" {
            iter.next()
                .copied()
                .ok_or_else(|| err("`--ref` needs a branch, tag or commit", verb))?
        } else {
            rest.push(*a);
            continue;
        };
        if version.git_ref.is_some() {
            return Err(err("ref= is given twice", verb));
        }
        check_ref_name(value, verb)?;
        version.git_ref = Some(value.to_string());
    }
    Ok((version, rest))
}

/// The longest ref name taken (git allows more; nobody types it, and refusing them keeps
/// errors short).
const REF_MAX_CHARS: usize = 200;

fn check_ref_name(name: &str, verb: &str) -> Result<(), ParseError> {
    if !is_ref_name(name) {
        return Err(err(
            format!("{} is not a branch, tag or commit name", quote(name)),
            verb,
        ));
    }
    Ok(())
}

/// Whether `name` could be a branch, tag or commit.
pub fn is_ref_name(name: &str) -> bool {
    ref_name_problem(name).is_none()
}

/// What is wrong with `name` as a branch, tag or commit, if anything: what git would read as
/// an option, a range or a pattern, or refuse as a ref. The one rule for the parser, the
/// config and the repository.
pub fn ref_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    if name.len() > REF_MAX_CHARS {
        return Some(format!("longer than {REF_MAX_CHARS} characters"));
    }
    if name.starts_with('-') {
        return Some("it starts with '-'".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Some(format!("it contains {c:?}"));
    }
    if let Some(c) = name.chars().find(|c| "~^:?*[\\".contains(*c)) {
        return Some(format!("it contains '{c}'"));
    }
    if name.contains("..") {
        return Some("it contains '..'".into());
    }
    if name.contains("@{") || name == "@" {
        return Some("it contains '@{'".into());
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Some("it has an empty path component".into());
    }
    if name.split('/').any(|part| part.starts_with('.')) {
        return Some("a path component starts with '.'".into());
    }
    if name.ends_with('.') || name.ends_with(".lock") {
        return Some("it ends with '.' or '.lock'".into());
    }
    None
}

/// `rollback` or `rollback to <job|sha|ref>` (`#12` and `12` name job 12).
pub(super) fn parse_rollback_target(args: &[&str]) -> Result<Option<String>, ParseError> {
    match args {
        [] => Ok(None),
        ["to", target] => {
            check_ref_name(target, "rollback")?;
            Ok(Some(target.to_string()))
        }
        ["to"] => Err(err("`rollback to` needs a job number, a commit or a ref", "rollback")),
        [first, ..] => Err(err(
            format!("`rollback` takes `to <job|sha|ref>` (got {})", quote(first)),
            "rollback",
        )),
    }
}

/// `history` or `history <n>`, n from 1 to [`HISTORY_MAX`].
pub(super) fn parse_count(args: &[&str]) -> Result<u32, ParseError> {
    match args {
        [] => Ok(HISTORY_DEFAULT),
        [n] => match n.parse::<u32>() {
            Ok(n) if (1..=HISTORY_MAX).contains(&n) => Ok(n),
            _ => Err(err(
                format!("{} is not a number from 1 to {HISTORY_MAX}", quote(n)),
                "history",
            )),
        },
        [_, extra, ..] => Err(err(
            format!("`history` takes one number (got {})", quote(extra)),
            "history",
        )),
    }
}

pub(super) fn parse_roles(args: &[&str]) -> Result<Vec<String>, ParseError> {
    let mut roles = Vec::new();
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        let list = if *a == "--roles" || *a == "-r" {
            *iter
                .next()
                .ok_or_else(|| err("`--roles` needs a list, e.g. `--roles api,front`", "deploy"))?
        } else if let Some(v) = a.strip_prefix("--roles=") {
            v
        } else if a.starts_with('-') {
            return Err(err(format!("unknown option {}", quote(a)), "deploy"));
        } else {
            a
        };
        for r in list.split(',').filter(|r| !r.is_empty()) {
            if !r
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            {
                return Err(err(format!("{} is not a role name", quote(r)), "deploy"));
            }
            if !roles.iter().any(|x: &String| x == r) {
                roles.push(r.to_string());
            }
        }
    }
    Ok(roles)
}

pub(super) fn parse_parameters(args: &[&str], verb: &str) -> Result<BTreeMap<String, String>, ParseError> {
    let mut out = BTreeMap::new();
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            return Err(err(format!("{} is not Parameter=value", quote(a)), verb));
        };
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(err(
                format!("{} is not a parameter name (letters and digits only)", quote(k)),
                verb,
            ));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(err(format!("parameter {} is given twice", quote(k)), verb));
        }
    }
    Ok(out)
}

/// The options `update` takes besides `--confirm` and `--break-glass`.
const UPDATE_OPTIONS: &[&str] = &["--revert-drift"];

/// `update [Parameter=value...] [ref=X]`, or `update --revert-drift` alone: reverting the
/// drift uses the stack's current template and parameters and deploys no code, so it takes
/// neither parameters nor a ref.
pub(super) fn parse_update(args: &[&str]) -> Result<Action, ParseError> {
    let revert_drift = args.contains(&"--revert-drift");
    let args: Vec<&str> = args.iter().copied().filter(|a| *a != "--revert-drift").collect();
    // `--ref` is taken below; anything else with two dashes is a mistyped option.
    if let Some(option) = args
        .iter()
        .find(|a| a.starts_with("--") && **a != "--ref" && !a.starts_with("--ref="))
    {
        let typed = option.split('=').next().unwrap_or(option);
        let hint = closest(typed, UPDATE_OPTIONS)
            .map(|s| format!("; did you mean '{s}'?"))
            .unwrap_or_else(|| " (update takes --revert-drift)".into());
        return Err(err(format!("unknown option {}{hint}", quote(option)), "update"));
    }
    let (version, rest) = take_ref(&args, "update")?;
    if revert_drift {
        let extra = match (&version.git_ref, rest.first()) {
            (Some(r), _) => Some(format!("ref={r}")),
            (None, Some(a)) => Some(a.to_string()),
            (None, None) => None,
        };
        if let Some(extra) = extra {
            return Err(err(
                format!(
                    "`update --revert-drift` takes nothing else (got {}): it reverts to the stack's current template and parameters",
                    quote(&extra)
                ),
                "update",
            ));
        }
    }
    Ok(Action::Update {
        parameters: parse_parameters(&rest, "update")?,
        version,
        revert_drift,
    })
}
