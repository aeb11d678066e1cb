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
    Config::load(&path).unwrap_err().to_string()
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
