//! The config's numbers at their extremes: a property test writes configs whose numbers are
//! 0, 1, `u32::MAX`, `u64::MAX`, negative, or anything in between, and checks that a config
//! `Config::load` (and so `argos check`) accepts starts what the console, the bot and the CLI
//! start (the engine with its AWS request budget, a bot replica with its command and edit
//! budgets, each platform's pacing of status messages) without a panic. A number those would
//! panic on must be refused when the config is loaded, naming its key. `ARGOS_FUZZ_CASES=N`
//! runs N cases instead of the default.
use crate::support;

use std::path::Path;

use argos::bot::Bot;
use argos::config::Config;
use argos::engine::Engine;
use argos::store::Store;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

/// Every number of the config that start-up or a job computes with, as `section.key`; a
/// `{}` in the YAML of a list entry takes the value instead.
const NUMBERS: &[&str] = &[
    "aws.requests_per_second",
    "aws.burst",
    "aws.max_attempts",
    "aws.retry_initial_backoff_ms",
    "store.lease_ms",
    "store.heartbeat_ms",
    "watch.poll_interval_ms",
    "watch.max_poll_interval_ms",
    "watch.recent_events",
    "timeouts.stack_create_secs",
    "timeouts.stack_update_secs",
    "timeouts.stack_delete_secs",
    "timeouts.change_set_secs",
    "timeouts.image_available_secs",
    "timeouts.ssh_ready_secs",
    "timeouts.playbook_secs",
    "timeouts.drift_detection_secs",
    "chat.commands_per_minute",
    "chat.command_burst",
    "chat.edit_interval_ms",
    "chat.edit_burst",
    "chat.edit_refill_secs",
    "chat.edits_per_second",
    "chat.shutdown_grace_secs",
    "web.link_minutes",
    "web.session_hours",
    "web.log_limit_bytes",
    "web.stack_status_secs",
    "slack.connections",
    "slack.updates_per_minute",
    "approvals.ttl_minutes",
    "ansible.ssh_port",
];

/// Numbers inside list entries.
const LISTED: &[(&str, &str)] = &[
    (
        "approvals",
        "  policies:\n    - { environments: [\"*\"], actions: [deploy], approvers: 1, ttl_minutes: {} }\n",
    ),
    (
        "schedules",
        "  - { name: weekly, cron: \"0 9 * * MON\", channel: \"console:alice\", stale_after_days: {} }\n",
    ),
    (
        "schedules",
        "  - { name: images, cron: \"0 9 * * MON\", channel: \"console:alice\", unused_image_days: {} }\n",
    ),
];

fn cases(default: u32) -> u32 {
    std::env::var("ARGOS_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Extreme values first, then anything.
fn value() -> BoxedStrategy<String> {
    let edges = proptest::sample::select(vec![
        "0".to_string(),
        "1".to_string(),
        "2".to_string(),
        "59".to_string(),
        "1000".to_string(),
        "65535".to_string(),
        "65536".to_string(),
        "1000000000".to_string(),
        "2000000000".to_string(),
        u32::MAX.to_string(),
        (u32::MAX as u64 + 1).to_string(),
        i64::MAX.to_string(),
        u64::MAX.to_string(),
        "-1".to_string(),
        i64::MIN.to_string(),
    ]);
    prop_oneof![
        3 => edges,
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => (0u64..100_000).prop_map(|n| n.to_string()),
    ]
    .boxed()
}

/// One number set to one value: a plain key, or a list entry.
#[derive(Debug, Clone)]
enum Setting {
    Key(&'static str, String),
    Listed(usize, String),
}

fn setting() -> BoxedStrategy<Setting> {
    prop_oneof![
        4 => (proptest::sample::select(NUMBERS), value()).prop_map(|(k, v)| Setting::Key(k, v)),
        1 => (0..LISTED.len(), value()).prop_map(|(i, v)| Setting::Listed(i, v)),
    ]
    .boxed()
}

/// The index of section `name`, added if missing.
fn section(sections: &mut Vec<(String, Vec<String>)>, name: &str) -> usize {
    match sections.iter().position(|(n, _)| n == name) {
        Some(i) => i,
        None => {
            sections.push((name.to_string(), Vec::new()));
            sections.len() - 1
        }
    }
}

/// A config with `settings` on top of what every config needs (keys set twice: the last wins).
fn write_config(dir: &Path, settings: &[Setting]) -> std::path::PathBuf {
    let mut sections: Vec<(String, Vec<String>)> = vec![
        (
            "paths".into(),
            vec![
                format!("  root: {}", support::repo().display()),
                format!("  state: {}", dir.join("state").display()),
                "  group_vars: config/sandbox/group_vars.yml".into(),
            ],
        ),
        (
            "aws".into(),
            vec![
                "  region: us-east-1".into(),
                "  endpoint_url: http://127.0.0.1:9".into(),
                "  local_credentials: true".into(),
            ],
        ),
        ("environments".into(), vec!["  staging: {}".into()]),
        (
            "permissions".into(),
            vec![
                "  roles: { admins: { console_users: [alice] } }".into(),
                "  rules: [{ role: admins, environments: [\"*\"], actions: [\"*\"] }]".into(),
            ],
        ),
    ];
    for s in settings {
        match s {
            Setting::Key(key, value) => {
                let (name, key) = key.split_once('.').expect("section.key");
                let i = section(&mut sections, name);
                let line = format!("  {key}: {value}");
                let lines = &mut sections[i].1;
                lines.retain(|l| !l.starts_with(&format!("  {key}:")));
                lines.push(line);
            }
            Setting::Listed(n, value) => {
                let (name, yaml) = LISTED[*n];
                let i = section(&mut sections, name);
                let entry = yaml.replace("{}", value);
                // One list per section: the list entry replaces what the section had.
                sections[i].1 = vec![entry.trim_end().to_string()];
            }
        }
    }
    let mut yaml = String::new();
    for (name, lines) in sections {
        yaml.push_str(&format!("{name}:\n"));
        for l in lines {
            yaml.push_str(&l);
            yaml.push('\n');
        }
    }
    let path = dir.join("argos.yaml");
    std::fs::write(&path, yaml).expect("write the config");
    path
}

/// What the console, the bot and the CLI build from the numbers at start-up.
async fn start_up(config: Config) {
    let engine = Engine::new(config).await;
    let store = Store::in_memory().expect("an in-memory store");
    let bot = Bot::new_as(engine, store, "console").expect("a replica");
    for platform in argos::address::ChatPlatform::ALL {
        argos::platform::pacing::of(platform, &bot.engine().config.settings.chat).budgets();
    }
    bot.retire();
}

#[test]
fn a_config_that_loads_starts_without_a_panic_whatever_its_numbers() {
    support::set_test_secrets();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(RunnerConfig {
        cases: cases(300),
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let accepted = std::sync::atomic::AtomicU32::new(0);
    runner
        .run(&proptest::collection::vec(setting(), 1..4), |settings| {
            let dir = tempfile::tempdir().unwrap();
            let path = write_config(dir.path(), &settings);
            match Config::load(&path) {
                Ok(config) => {
                    accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    rt.block_on(start_up(config));
                }
                Err(e) => {
                    let text = e.to_string();
                    prop_assert!(
                        text.contains("key `") || text.contains(":"),
                        "a refusal names where: {text}"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    assert!(
        accepted.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "some configs load (the property is not vacuous)"
    );
}

/// The case from the field: `aws.requests_per_second: 2000000000` passed `argos check`, and
/// the console panicked at start-up (`budget.rs`: "a period longer than zero").
#[tokio::test]
async fn a_huge_aws_request_rate_is_refused_by_argos_check_and_the_console() {
    support::set_test_secrets();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &[Setting::Key("aws.requests_per_second", "2000000000".into())],
    );
    let want = format!(
        "error: {}: key `aws.requests_per_second`: must be 1 to 10000 (requests a second); 2000000000 is out of range",
        path.display()
    );
    for args in [&["check"][..], &["console", "--user", "alice"][..]] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_argos"))
            .arg("--config")
            .arg(&path)
            .args(args)
            .env_remove("ARGOS_CONFIG")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("run argos");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end(), want, "{args:?}");
    }
}
