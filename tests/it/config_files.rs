//! The committed configuration files load, and config errors name the file, line and key.
use argos::config::Config;

fn repo(p: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn every_committed_config_loads() {
    for file in ["config/argos.example.yaml", "config/argos.yaml", "config/sandbox.yaml"] {
        let c = Config::load(&repo(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(c.vars.app_name, "argos");
        assert!(c.settings.environments.contains_key("staging"), "{file}");
    }
}

#[test]
fn the_example_documents_every_section_with_its_defaults() {
    let c = Config::load(&repo("config/argos.example.yaml")).unwrap();
    let s = &c.settings;
    let d = argos::config::AwsSettings::default();
    assert_eq!(s.aws.requests_per_second, d.requests_per_second);
    assert_eq!(s.aws.max_attempts, d.max_attempts);
    let w = argos::config::WatchSettings::default();
    assert_eq!(
        (s.watch.poll_interval_ms, s.watch.max_poll_interval_ms),
        (w.poll_interval_ms, w.max_poll_interval_ms)
    );
    let t = argos::config::Timeouts::default();
    assert_eq!(s.timeouts.stack_create_secs, t.stack_create_secs);
    assert_eq!(s.timeouts.playbook_secs, t.playbook_secs);
    assert_eq!(s.ansible.roles, argos::config::AnsibleSettings::default().roles);
    let (_, prod) = c.environment("production").unwrap();
    assert_eq!(prod.instance_types["api"], "t3.large");
    assert_eq!(
        prod.instance_types["knowledge"], "t3.medium",
        "environments inherit defaults"
    );
}

fn load_yaml(body: &str) -> String {
    try_load_yaml(body).map(|_| ()).unwrap_err()
}

/// Loads a config written to a fresh project (with the committed group variables).
fn try_load_yaml(body: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::create_dir_all(dir.path().join("playbooks/group_vars")).unwrap();
    std::fs::copy(
        repo("playbooks/group_vars/all.yml"),
        dir.path().join("playbooks/group_vars/all.yml"),
    )
    .unwrap();
    let path = cfg.join("argos.yaml");
    std::fs::write(&path, body).unwrap();
    Config::load(&path).map_err(|e| e.to_string())
}

#[test]
fn an_unknown_key_names_file_line_and_key() {
    let e = load_yaml("environments:\n  staging: {}\nwatch:\n  poll_interval_ms: 100\n  pol_interval: 3\n");
    assert!(e.contains("argos.yaml:5"), "{e}");
    assert!(e.contains("pol_interval"), "{e}");
}

#[test]
fn a_wrong_type_names_file_line_and_key() {
    let e = load_yaml("environments:\n  staging: {}\naws:\n  max_attempts: many\n");
    assert!(e.contains("argos.yaml:4"), "{e}");
    assert!(e.contains("max_attempts"), "{e}");
}

#[test]
fn semantic_errors_name_the_key() {
    let e = load_yaml("environments:\n  Prod!: {}\n");
    assert!(
        e.contains("environments.Prod!") && e.contains("invalid environment name"),
        "{e}"
    );
    let e = load_yaml("environments:\n  staging:\n    instance_types: {apii: t3.small}\n");
    assert!(
        e.contains("environments.staging.instance_types.apii") && e.contains("unknown group"),
        "{e}"
    );
    let e = load_yaml("environments:\n  staging: {}\naws:\n  local_credentials: true\n");
    assert!(e.contains("aws.local_credentials") && e.contains("loopback"), "{e}");
    let e = load_yaml("environments: {}\n");
    assert!(e.contains("at least one environment"), "{e}");
}

#[test]
fn a_missing_file_is_named() {
    let e = Config::load(std::path::Path::new("/nonexistent/argos.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/argos.yaml: cannot read the config file"),
        "{e}"
    );
}

#[test]
fn people_and_channel_addresses_are_checked_and_errors_name_the_key() {
    let base = "environments:\n  staging: {}\n";
    let e = load_yaml(&format!("{base}people:\n  alice: {{ discord: \"alice#1234\" }}\n"));
    assert!(
        e.contains("key `people.alice.discord`") && e.contains("'alice#1234' is not a snowflake"),
        "{e}"
    );
    let e = load_yaml(&format!("{base}people:\n  alice: {{ slack: \"alice\" }}\n"));
    assert!(
        e.contains("key `people.alice.slack`") && e.contains("Slack member id"),
        "{e}"
    );
    let e = load_yaml(&format!(
        "{base}people:\n  alice: {{ discord: \"112233445566778899\" }}\n  bob: {{ discord: \"112233445566778899\" }}\n"
    ));
    assert!(
        e.contains("key `people.bob.discord`") && e.contains("'112233445566778899' is also alice's"),
        "{e}"
    );
    // The console name defaults to the person's name, so a second claim of it is caught too.
    let e = load_yaml(&format!("{base}people:\n  alice: {{}}\n  al: {{ console: alice }}\n"));
    assert!(
        e.contains("key `people.alice.console`") || e.contains("key `people.al.console`"),
        "{e}"
    );
    assert!(e.contains("'alice' is also"), "{e}");
    let e = load_yaml(&format!(
        "{base}people:\n  alice: {{}}\n  alice: {{ slack: U0ALICE }}\n"
    ));
    assert!(
        e.contains("alice") && e.to_lowercase().contains("duplicate"),
        "a person listed twice: {e}"
    );
    let e = load_yaml(&format!(
        "{base}people:\n  alice: {{}}\npermissions:\n  roles:\n    admins: {{ people: [alice, dave] }}\n"
    ));
    assert!(
        e.contains("key `permissions.roles.admins.people`") && e.contains("unknown person 'dave'; people: alice"),
        "{e}"
    );
    let e = load_yaml(&format!(
        "{base}people:\n  alice: {{}}\npermissions:\n  roles:\n    admins: {{ people: [alice, alice] }}\n"
    ));
    assert!(e.contains("'alice' is listed twice"), "{e}");
    let e = load_yaml(&format!(
        "{base}permissions:\n  roles:\n    admins: {{ discord_users: [alice] }}\n"
    ));
    assert!(
        e.contains("key `permissions.roles.admins.discord_users`") && e.contains("not a snowflake"),
        "{e}"
    );
    // Channel addresses: one parser, which says what is wrong.
    let e = load_yaml("environments:\n  staging: { announce: \"console:console:carol\" }\n");
    assert!(
        e.contains("key `environments.staging.announce`") && e.contains("write console:carol"),
        "{e}"
    );
    let e = load_yaml("environments:\n  staging: { announce: \"discord:#ops\" }\n");
    assert!(e.contains("Discord channel '#ops' is not a snowflake"), "{e}");
    let e = load_yaml("defaults: { announce: \"slack:general\" }\nenvironments:\n  staging: {}\n");
    assert!(
        e.contains("key `defaults.announce`") && e.contains("not its name"),
        "{e}"
    );
    let e = load_yaml(&format!(
        "{base}schedules:\n  - {{ name: weekly, cron: \"0 9 * * MON\", platform: discord, channel: \"#ops\" }}\n"
    ));
    assert!(
        e.contains("key `schedules[0].channel`") && e.contains("Discord channel '#ops' is not a snowflake"),
        "{e}"
    );
}

#[test]
fn the_repository_and_refs_are_checked_and_errors_name_the_key() {
    let repo = "repository:\n  url: https://github.com/publicscience/argos.git\n";
    for (yaml, key, says) in [
        (
            "environments:\n  staging: { ref: master }\n".to_string(),
            "key `environments.staging`",
            "need repository.url",
        ),
        (
            format!("{repo}environments:\n  staging: {{ ref: \"--upload-pack=x\" }}\n"),
            "key `environments.staging.ref`",
            "is not a branch, tag or commit name",
        ),
        (
            format!("{repo}environments:\n  staging: {{ refs: [\"v *\"] }}\n"),
            "key `environments.staging.refs`",
            "is not a ref pattern",
        ),
        (
            format!("{repo}environments:\n  staging: {{ other_refs: maybe }}\n"),
            "argos.yaml:4:",
            "unknown variant `maybe`, expected one of refuse, approval",
        ),
        (
            "repository:\n  url: https://bot:s3cret@github.com/x.git\nenvironments:\n  staging: {}\n".to_string(),
            "key `repository.url`",
            "holds a password",
        ),
        (
            format!("{repo}  ssh_key: keys/deploy\n  token_env: GIT_TOKEN\nenvironments:\n  staging: {{}}\n"),
            "key `repository`",
            "not both",
        ),
        (
            format!("{repo}  migrations: [\"../db\"]\nenvironments:\n  staging: {{}}\n"),
            "key `repository.migrations`",
            "not a path inside the repository",
        ),
    ] {
        let e = load_yaml(&yaml);
        assert!(e.contains(key) && e.contains(says), "{yaml}\n→ {e}");
        assert!(!e.contains("s3cret"), "a password never shows: {e}");
    }
}

#[test]
fn freezes_load_in_both_forms_and_a_bad_one_is_refused_naming_the_key() {
    use argos::config::freezes::{active_for, next_windows};
    let base = "environments:\n  staging: {}\n  production: {}\n";
    let weekend = "  - name: weekend\n    environments: [production]\n    cron: \"0 18 * * FRI\"\n    duration: 62h\n    timezone: Europe/Berlin\n    reason: nobody is around\n";
    // Unquoted YAML date-times are read as the text they are.
    let holidays = "  - name: holidays\n    environments: [\"*\"]\n    from: 2026-12-24 00:00\n    until: 2027-01-02\n    timezone: Europe/Berlin\n    reason: everyone is away\n";
    let c = try_load_yaml(&format!("{base}freezes:\n{weekend}{holidays}")).unwrap();
    let freezes = &c.settings.freezes;
    assert_eq!(freezes.len(), 2);
    assert_eq!(freezes[1].from.as_deref(), Some("2026-12-24 00:00"));
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    let next = next_windows(&freezes[0], at("2026-12-09T12:00:00Z"), 1);
    assert_eq!(
        (next[0].start, next[0].end),
        (at("2026-12-11T17:00:00Z"), at("2026-12-14T07:00:00Z"))
    );
    let (f, w) = active_for(freezes, "staging", at("2026-12-25T12:00:00Z")).unwrap();
    assert_eq!((f.name.as_str(), w.end), ("holidays", at("2027-01-01T23:00:00Z")));
    assert!(active_for(freezes, "staging", at("2026-12-12T12:00:00Z")).is_none());

    let refused = |section: &str, key: &str, message: &str| {
        let e = load_yaml(&format!("{base}freezes:\n{section}"));
        assert!(e.contains(&format!("key `{key}`")) && e.contains(message), "{key}: {e}");
    };
    refused(
        &weekend.replace("0 18 * * FRI", "0 25 * * FRI"),
        "freezes[0].cron",
        "invalid cron expression",
    );
    refused(&weekend.replace("62h", "62"), "freezes[0].duration", "without a unit");
    refused(
        &weekend.replace("62h", "32d"),
        "freezes[0].duration",
        "longer than 31 days",
    );
    refused(
        &weekend.replace("Europe/Berlin", "Europe/Atlantis"),
        "freezes[0].timezone",
        "unknown time zone",
    );
    refused(
        &weekend.replace("[production]", "[prod]"),
        "freezes[0].environments",
        "unknown environment 'prod'",
    );
    refused(
        &weekend.replace("nobody is around", "\"\""),
        "freezes[0].reason",
        "needs a reason",
    );
    refused(&format!("{weekend}    from: 2026-12-24\n"), "freezes[0]", "not both");
    refused(
        &format!("{weekend}{}", weekend.replace("[production]", "[staging]")),
        "freezes[1].name",
        "used twice",
    );
    refused(
        &holidays.replace("2027-01-02", "2026-12-23"),
        "freezes[0].until",
        "is not after from",
    );
    refused(
        &holidays.replace("    until: 2027-01-02\n", ""),
        "freezes[0].until",
        "needs until",
    );
    // An unknown key is the parser's error, which names it and its line.
    let e = load_yaml(&format!("{base}freezes:\n{}", weekend.replace("duration", "lasts")));
    assert!(e.contains("argos.yaml:") && e.contains("lasts"), "{e}");
}
