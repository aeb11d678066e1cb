//! The grammar, fuzzed: property tests of the parser (`argos::command`) and of the bot's
//! dispatcher (`Bot::handle`) on grammar-aware input (real verbs, environment names, flags,
//! parameters, job numbers, quotes, chat mentions, unicode, control characters, very long
//! tokens) and on arbitrary strings. Whatever comes in: no panic, an answer, a bounded one,
//! no raw control or invisible character in it, and no job, lock or AWS call unless the input
//! was a valid command by someone allowed to run it. `ARGOS_FUZZ_CASES=N` runs N cases per
//! property instead of the default (a longer fuzzing session).
use crate::support;

use std::time::Instant;

use argos::bot::port::ChatEvent;
use argos::bot::Bot;
use argos::command::{self, Action, Command, ParseError, COMMANDS, REASON_MAX_CHARS};
use argos::names::{EnvName, QUOTE_MAX_CHARS};
use argos::permissions::Identity;
use argos::store::Store;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::fake_aws::FakeAws;
use support::world::{self, World as AnyWorld};
use support::TestProject;

/// Cases per property unless `ARGOS_FUZZ_CASES` says otherwise: one to two seconds each in a
/// debug build on 2 cores.
const PARSER_CASES: u32 = 5000;
const DISPATCH_CASES: u32 = 2000;

/// Discord's limit for one message: every reply must fit in one.
const CHAT_MESSAGE_MAX_CHARS: usize = 2000;

/// The longest wording of a parse error around the one quote of the input it may carry:
/// `invalid environment name '…': hyphens may not end it or stand twice in a row (use …)` has
/// 171 characters besides the quote (`it contains '…'` quotes one character more, at most 12).
const ERROR_WORDING_MAX_CHARS: usize = 200;

/// Everyone may ask for help; only alice may act, and on staging and sandbox only.
const CONFIG: &str = r#"
chat:
  # No rate limit in the way: every case must reach the parser.
  commands_per_minute: 1000000
  command_burst: 1000000
permissions:
  roles:
    admins: { console_users: [alice] }
  rules:
    - role: admins
      environments: ["*"]
      actions: ["*"]
"#;

fn cases(default: u32) -> u32 {
    std::env::var("ARGOS_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        // Failures are shown, shrunk, in the test's output; nothing is written to the tree.
        failure_persistence: None,
        ..Config::default()
    })
}

fn pick(words: &'static [&'static str]) -> BoxedStrategy<String> {
    proptest::sample::select(words).prop_map(str::to_string).boxed()
}

/// The verbs, mostly as they are, some typed oddly or misspelt.
fn verb() -> BoxedStrategy<String> {
    let real = pick(&[
        "commission",
        "deploy",
        "update",
        "plan",
        "decommission",
        "clean",
        "status",
        "events",
        "envs",
        "jobs",
        "job",
        "cancel",
        "whoami",
        "help",
        "approve",
        "deny",
        "schedules",
    ]);
    let odd = pick(&[
        "DEPLOY",
        "Help",
        "deplyo",
        "comission",
        "aprove",
        "stauts",
        "!argos",
        "deploy!",
    ]);
    prop_oneof![3 => real, 1 => odd].boxed()
}

/// Environment names: the configured ones, others that are valid, and invalid ones.
fn env() -> BoxedStrategy<String> {
    let configured = pick(&["staging", "sandbox"]);
    let others = pick(&[
        "production",
        "qa-7",
        "Staging",
        "staging!",
        "-staging",
        "staging-",
        "stag--ing",
        "7staging",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "ステージング",
        "stag\u{202e}ing",
        "stag\u{200b}ing",
    ]);
    prop_oneof![2 => configured, 1 => others].boxed()
}

/// One word of a command line, as people (and attackers) type them.
fn token() -> BoxedStrategy<String> {
    let verbs = verb();
    let envs = env();
    let flags = pick(&[
        "--roles",
        "-r",
        "--roles=api,front",
        "--roles=",
        "--roles=API",
        "api,front",
        "api",
        "knowledge",
        "--yes",
        "-y",
        "--no-wait",
        "--break-glass",
        "--break-glass=why",
        "--help",
        "-h",
        "--",
        "-",
        "ApiInstanceType=t3.large",
        "WorkerCount=2",
        "=x",
        "Bad-Key=1",
        "Key=",
        "DatabasePassword=hunter22",
    ]);
    let numbers = pick(&[
        "0",
        "1",
        "#1",
        "42",
        "18446744073709551615",
        "18446744073709551616",
        "-1",
        "1e3",
        "０",
        "٣",
        "##1",
    ]);
    let quoting = pick(&[
        "\"staging\"",
        "'deploy'",
        "`rm -rf /`",
        "\"",
        "'",
        "```",
        "@everyone",
        "@here",
        "<@&123456789012345678>",
        "<@!42>",
        "<@42>",
        "<#123456789012345678>",
        "<!channel>",
        "<!here>",
        "<!subteam^S123|ops>",
        "<@U0123ABC>",
        "**bold**",
        "||spoiler||",
        "https://example.com/x?a=1&b=2",
    ]);
    let odd = pick(&[
        "\u{202e}",
        "\u{202e}yolped",
        "\u{200b}",
        "\u{200d}",
        "\u{2066}",
        "\u{feff}",
        "\x1b[2J\x1b[H",
        "\x1b]8;;http://x\x07link",
        "\x07",
        "\0",
        "\r",
        "\u{7f}",
        "\u{85}",
        "\u{9b}31m",
        "é",
        "e\u{301}",
        "🚀",
        "👩\u{200d}👩\u{200d}👧",
        "שלום",
        "\u{fffd}",
        "\u{10ffff}",
    ]);
    // Any characters at all, controls and unassigned ones included.
    let arbitrary = proptest::collection::vec(any::<char>(), 1..24).prop_map(String::from_iter);
    let long = (
        prop_oneof![
            Just("a".to_string()),
            Just("staging".to_string()),
            Just("🚀".to_string()),
            Just("\x1b".to_string()),
            Just("\u{202e}".to_string()),
            "[a-z0-9=,-]{1,3}"
        ],
        1..4000usize,
    )
        .prop_map(|(s, n)| s.repeat(n));
    prop_oneof![
        4 => verbs,
        3 => envs,
        2 => flags,
        2 => numbers,
        2 => quoting,
        2 => odd,
        2 => arbitrary,
        1 => long,
    ]
    .boxed()
}

/// What separates words: the whitespace `split_whitespace` knows, and sometimes nothing.
fn separator() -> BoxedStrategy<&'static str> {
    proptest::sample::select(
        &[
            " ", " ", " ", "  ", "\t", "\n", "\r\n", "\u{a0}", "\u{3000}", "\u{2028}", "",
        ][..],
    )
    .boxed()
}

/// A whole line: grammar-aware most of the time, otherwise arbitrary.
fn line() -> BoxedStrategy<String> {
    let words = proptest::collection::vec((token(), separator()), 0..7).prop_map(|parts| {
        parts.into_iter().fold(String::new(), |mut s, (w, sep)| {
            s.push_str(&w);
            s.push_str(sep);
            s
        })
    });
    // `<env> <verb> [args]`: what reaches the permission check and the command handlers.
    let shaped = (
        env(),
        separator(),
        verb(),
        proptest::collection::vec((separator(), token()), 0..4),
    )
        .prop_map(|(env, sep, verb, args)| {
            let mut s = format!("{env}{sep}{verb}");
            for (sep, a) in args {
                s.push_str(sep);
                s.push_str(&a);
            }
            s
        });
    // Very many short words: lists that a reply might repeat in full. Role names all
    // well-formed (so the line parses and reaches the role check), or a mix that does not.
    // Picked, not generated from a regex: there are hundreds per line.
    let numbered = |words: &'static [&'static str]| {
        (proptest::sample::select(words), 0..1000u32).prop_map(|(w, n)| format!("{w}{n}"))
    };
    let roles = proptest::collection::vec(numbered(&["api", "front", "knowledge", "role", "db_", "x-"]), 1..300);
    let mixed = proptest::collection::vec(
        numbered(&["api", "front", "Api=", "Count=", "API", "--roles=", "#"]),
        1..300,
    );
    let many = (env(), verb(), prop_oneof![roles, mixed])
        .prop_map(|(env, verb, args)| format!("{env} {verb} {}", args.join(" ")));
    let arbitrary = proptest::collection::vec(any::<char>(), 0..200).prop_map(String::from_iter);
    prop_oneof![4 => words, 3 => shaped, 1 => many, 1 => arbitrary, 1 => any::<String>()].boxed()
}

/// Characters that must never reach a chat or a terminal raw: controls (C0, DEL, C1) other
/// than the newline our replies use between lines, and the invisible ones that reorder or hide
/// text (bidirectional overrides and isolates, zero-width characters, line separators).
fn forbidden(c: char) -> bool {
    (c.is_control() && c != '\n') || matches!(c as u32, 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2069 | 0xFEFF)
}

fn check_clean(what: &str, text: &str, input: &str) -> Result<(), TestCaseError> {
    if let Some(c) = text.chars().find(|c| forbidden(*c)) {
        return Err(TestCaseError::fail(format!(
            "{what} carries {c:?} raw, for input {input:?}: {text:?}"
        )));
    }
    Ok(())
}

/// The most characters a parse error may have: its wording, one quote of the input, and the
/// longest usage line.
fn parse_error_max_chars() -> usize {
    let usage = COMMANDS
        .iter()
        .map(|c| command::usage(Some(c.name)).chars().count())
        .chain([command::usage(None).chars().count()])
        .max()
        .unwrap();
    ERROR_WORDING_MAX_CHARS + QUOTE_MAX_CHARS + 2 + "\nusage: ".len() + usage
}

fn check_parse_error(e: &ParseError, input: &str) -> Result<(), TestCaseError> {
    check_clean("a parse error", &e.message, input)?;
    prop_assert!(!e.message.contains('\n'), "one line: {:?}", e.message);
    let shown = e.to_string();
    prop_assert!(
        shown.chars().count() <= parse_error_max_chars(),
        "{} chars (ceiling {}) for input of {} chars: {shown:?}",
        shown.chars().count(),
        parse_error_max_chars(),
        input.chars().count()
    );
    Ok(())
}

/// What a successful parse promises.
fn check_command(cmd: &Command, input: &str) -> Result<(), TestCaseError> {
    let words: Vec<&str> = input.split_whitespace().collect();
    match cmd {
        Command::Env { env, action, options } => {
            if let Some(r) = &options.break_glass {
                prop_assert!(r.chars().count() <= REASON_MAX_CHARS, "{} chars", r.chars().count());
                check_clean("a break-glass reason", r, input)?;
            }
            // The environment is the first word exactly as typed, and a valid name.
            prop_assert_eq!(words.first().copied(), Some(env.as_str()));
            prop_assert!(EnvName::parse(env.as_str()).is_ok());
            prop_assert_eq!(words[1].to_ascii_lowercase(), action.verb());
            match action {
                Action::Deploy { roles, .. } => {
                    for r in roles {
                        prop_assert!(!r.is_empty(), "{roles:?}");
                        prop_assert!(
                            r.chars()
                                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'),
                            "{r:?}"
                        );
                    }
                    let unique: std::collections::HashSet<&String> = roles.iter().collect();
                    prop_assert_eq!(unique.len(), roles.len(), "{:?}", roles);
                }
                Action::Update { parameters, .. } | Action::Plan { parameters } => {
                    for k in parameters.keys() {
                        prop_assert!(!k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()), "{k:?}");
                    }
                }
                _ if options == &argos::command::EnvOptions::default() => {
                    prop_assert_eq!(words.len(), 2, "{:?} takes no arguments", action)
                }
                _ => {}
            }
        }
        Command::Hold { reason: r, .. } | Command::Freeze { reason: r, .. } => {
            prop_assert!(r.chars().count() <= REASON_MAX_CHARS, "{} chars", r.chars().count());
            check_clean("a hold or freeze reason", r, input)?;
        }
        Command::Deny { reason: Some(r), .. } => {
            prop_assert!(r.chars().count() <= REASON_MAX_CHARS, "{} chars", r.chars().count());
            check_clean("a deny reason", r, input)?;
        }
        Command::Help { topic: Some(t) } => prop_assert!(COMMANDS.iter().any(|c| c.name == t), "{t:?}"),
        _ => {}
    }
    Ok(())
}

#[test]
fn the_parser_answers_every_line_with_a_command_or_a_short_clean_error() {
    let n = cases(PARSER_CASES);
    let started = Instant::now();
    let result = runner(n).run(&line(), |input| {
        let parsed = command::parse(&input);
        // Whitespace only separates words: any amount, of any kind, means the same.
        let normalized = input.split_whitespace().collect::<Vec<_>>().join(" ");
        prop_assert_eq!(&command::parse(&normalized), &parsed, "{:?} vs {:?}", input, normalized);
        match &parsed {
            Ok(cmd) => check_command(cmd, &input)?,
            Err(e) => check_parse_error(e, &input)?,
        }
        Ok(())
    });
    println!("parser: {n} cases in {:.2?}", started.elapsed());
    if let Err(e) = result {
        panic!("{e}");
    }
}

mod dispatcher;
