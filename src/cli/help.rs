//! The CLI's help, from the command table (`command::COMMANDS`, the one the parser and chat's
//! `help` read): every command for `argos --help` and `argos help`, one command for
//! `argos help deploy`, `argos staging deploy --help` and `argos staging --help`. Help needs
//! no config.

use crate::command::{CommandHelp, COMMANDS};

/// Whether the CLI runs the command itself; the others work where jobs live (the console, chat).
fn runs_here(c: &CommandHelp) -> bool {
    c.per_env || matches!(c.name, "envs" | "help")
}

/// One command's line: its grammar in a column as wide as the longest grammar, then what it
/// does.
fn line(c: &CommandHelp) -> String {
    let width = COMMANDS.iter().map(|c| c.grammar.chars().count()).max().unwrap_or(0);
    format!("  {:<width$}  {}\n", c.grammar, c.summary)
}

/// Every command of the grammar, grouped by where it runs.
pub fn overview() -> String {
    let mut out = String::from("Environment commands (argos <env> <command> [args]):\n");
    for c in COMMANDS.iter().filter(|c| c.per_env) {
        out += &line(c);
    }
    out += "\nAlso:\n";
    for c in COMMANDS.iter().filter(|c| !c.per_env && runs_here(c)) {
        out += &line(c);
    }
    let elsewhere: Vec<&str> = COMMANDS.iter().filter(|c| !runs_here(c)).map(|c| c.grammar).collect();
    out += &format!(
        "\nIn `argos console` and chat only: {}.\n\n`argos help <command>` or `argos <env> <command> --help` shows one command.\n",
        elsewhere.join(", ")
    );
    out
}

/// The help of one command of the grammar; `None` if there is no such command.
pub fn command(name: &str) -> Option<String> {
    let c = COMMANDS.iter().find(|c| c.name == name)?;
    if c.name == "help" {
        return Some(overview());
    }
    let mut out = format!("usage: argos {}\n\n{}.\n", c.grammar, c.summary);
    let more = c.details;
    if !more.is_empty() {
        out += "\n";
        for l in more {
            out += &format!("{l}\n");
        }
    }
    if c.gated {
        out += "\nWhen the environment's policy asks for approval: `--no-wait` files the request and\nexits (run the command again to pick it up); `--break-glass \"reason\"` runs at once,\naudited and announced.\n";
    }
    if !runs_here(c) {
        out += "\nIt runs in `argos console` or chat, where jobs live.\n";
    }
    Some(out)
}

/// The help asked for with `--help` (or `-h`) among a command's words: of the command they
/// name (`staging deploy --help`, `jobs --help`), else of every command (`staging --help`).
pub fn for_words(words: &[String]) -> String {
    let plain: Vec<String> = words
        .iter()
        .filter(|w| !w.starts_with('-'))
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let named = match plain.as_slice() {
        [first, ..] if COMMANDS.iter().any(|c| !c.per_env && c.name == first) => Some(first),
        [_, verb, ..] if COMMANDS.iter().any(|c| c.per_env && c.name == verb) => Some(verb),
        _ => None,
    };
    named.and_then(|n| command(n)).unwrap_or_else(overview)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn help_names_the_command_asked_about() {
        assert!(for_words(&words("staging deploy --help"))
            .starts_with("usage: argos <env> deploy [roles...] [ref=<branch|tag|sha>]\n"));
        assert!(for_words(&words("staging DEPLOY api -h")).starts_with("usage: argos <env> deploy"));
        assert!(for_words(&words("--help staging decommission")).contains("--yes"));
        assert!(for_words(&words("jobs --help")).contains("It runs in `argos console` or chat"));
        for all in ["staging --help", "staging bogus --help", "--help", "help --help"] {
            assert_eq!(for_words(&words(all)), overview(), "{all}");
        }
    }

    #[test]
    fn overview_lists_the_whole_grammar() {
        let text = overview();
        for c in COMMANDS {
            assert!(text.contains(c.grammar), "{}: {text}", c.name);
        }
        assert_eq!(command("nosuch"), None);
    }
}
