//! What the outside scan (checkov, scripts/lint) asked of the stack (issue 23), held by tests
//! of our own: every security group rule says what it is for, and the database's options are
//! parameters whose defaults are production's (Multi-AZ, enhanced monitoring with its role,
//! IAM authentication), turned off by the engine for an environment that is not
//! `production: true`; the front's HTTPS choice is the environment's, made on purpose.

use std::collections::BTreeMap;
use std::path::PathBuf;

use argos::config::Config;
use argos::template::{load_formations, Template};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn templates() -> (Template, Template) {
    load_formations(&repo().join("formations")).expect("formations/ merges")
}

/// Every rule of every security group (inline, or a resource of its own), as (where, rule).
fn rules(t: &Template) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (id, r) in t.value["Resources"].as_object().unwrap() {
        let p = &r["Properties"];
        match r["Type"].as_str().unwrap() {
            "AWS::EC2::SecurityGroup" => {
                for key in ["SecurityGroupIngress", "SecurityGroupEgress"] {
                    for (i, rule) in p[key].as_array().into_iter().flatten().enumerate() {
                        out.push((format!("{id}.{key}[{i}]"), rule.clone()));
                    }
                }
            }
            "AWS::EC2::SecurityGroupIngress" | "AWS::EC2::SecurityGroupEgress" => out.push((id.clone(), p.clone())),
            _ => {}
        }
    }
    out
}

#[test]
fn every_security_group_rule_says_what_it_is_for() {
    let (image, merged) = templates();
    let mut undescribed = Vec::new();
    let mut count = 0;
    for t in [&image, &merged] {
        for (at, rule) in rules(t) {
            count += 1;
            let d = rule["Description"].as_str().unwrap_or_default();
            // What EC2 accepts in a rule's description (255 characters of this set).
            let valid = d
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c));
            if d.trim().is_empty() || !valid || d.len() > 255 {
                undescribed.push(format!("{at}: {d:?}"));
            }
        }
    }
    assert!(count >= 20, "the rules are found: {count}");
    assert!(
        undescribed.is_empty(),
        "rules without a valid Description:\n{}",
        undescribed.join("\n")
    );
}

fn config() -> Config {
    Config::load(&repo().join("config/argos.yaml")).expect("config/argos.yaml loads")
}

fn choices(config: &Config, env: &str) -> BTreeMap<String, String> {
    let (_, t) = templates();
    let (_, settings) = config.environment(env).unwrap();
    argos::engine::environment_choices(&t, &settings, env).unwrap()
}

#[test]
fn the_database_options_default_to_production_and_are_off_for_a_throwaway_environment() {
    let (_, t) = templates();
    let default = |p: &str| t.value["Parameters"][p]["Default"].clone();
    assert_eq!(default("DatabaseMultiAz"), "true");
    assert_eq!(default("DatabaseMonitoringInterval"), "60");
    assert_eq!(default("DatabaseIamAuthentication"), "true");
    let db = &t.value["Resources"]["Database"]["Properties"];
    assert_eq!(db["MultiAZ"]["Ref"], "DatabaseMultiAz");
    assert_eq!(db["MonitoringInterval"]["Ref"], "DatabaseMonitoringInterval");
    assert_eq!(
        db["EnableIAMDatabaseAuthentication"]["Ref"],
        "DatabaseIamAuthentication"
    );
    // The monitoring role exists exactly when monitoring is on, and is RDS's to assume.
    let role = &t.value["Resources"]["DatabaseMonitoringRole"];
    assert_eq!(role["Condition"], "DatabaseMonitored");
    assert_eq!(db["MonitoringRoleArn"]["Fn::If"][0], "DatabaseMonitored");
    assert_eq!(
        role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"],
        "monitoring.rds.amazonaws.com"
    );
    let mut p: BTreeMap<String, String> = t
        .parameters()
        .into_iter()
        .filter_map(|p| Some((p.name, p.default?)))
        .collect();
    assert!(t.resource_active("DatabaseMonitoringRole", &p));
    p.insert("DatabaseMonitoringInterval".into(), "0".into());
    assert!(!t.resource_active("DatabaseMonitoringRole", &p));

    // config/argos.yaml: production keeps the defaults; staging turns both off.
    let config = config();
    let production = choices(&config, "production");
    assert!(!production.contains_key("DatabaseMultiAz"), "{production:?}");
    assert!(!production.contains_key("DatabaseMonitoringInterval"), "{production:?}");
    let staging = choices(&config, "staging");
    assert_eq!(staging["DatabaseMultiAz"], "false");
    assert_eq!(staging["DatabaseMonitoringInterval"], "0");
}

fn project_config(environments: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("argos.yaml");
    let yaml = format!(
        "paths:\n  root: {}\n  group_vars: config/sandbox/group_vars.yml\nenvironments:\n{environments}",
        repo().display()
    );
    std::fs::write(&path, yaml).unwrap();
    Config::load(&path).map_err(|e| e.to_string())
}

#[test]
fn the_front_is_https_or_plain_http_on_purpose() {
    let (_, t) = templates();
    let arn = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0000-4000-8000-000000000000";
    // Neither: the config loads, but the stack is refused, naming the key to set.
    let config = project_config("  qa: {}\n").unwrap();
    let (_, settings) = config.environment("qa").unwrap();
    let e = argos::engine::environment_choices(&t, &settings, "qa").unwrap_err();
    assert!(
        e.starts_with("environments.qa.certificate_arn: the front needs HTTPS") && e.contains("plain_http: true"),
        "{e}"
    );
    // Both: a config error naming the key.
    let e = project_config(&format!("  qa:\n    plain_http: true\n    certificate_arn: {arn}\n")).unwrap_err();
    assert!(
        e.contains("key `environments.qa.plain_http`") && e.contains("not both"),
        "{e}"
    );
    // A default's choice is replaced by the environment's own, not combined with it.
    let config = project_config(&format!(
        "  qa:\n    certificate_arn: {arn}\ndefaults:\n  plain_http: true\n"
    ))
    .unwrap();
    let (_, settings) = config.environment("qa").unwrap();
    assert_eq!(
        argos::engine::environment_choices(&t, &settings, "qa").unwrap()["CertificateArn"],
        arn
    );
    // Not an ACM ARN: refused at load.
    let e = project_config("  qa:\n    certificate_arn: arn:aws:iam::123456789012:server-certificate/x\n").unwrap_err();
    assert!(
        e.contains("key `environments.qa.certificate_arn`") && e.contains("not an ACM certificate ARN"),
        "{e}"
    );
    // Plain HTTP on purpose: no certificate; a parameter the environment sets itself wins.
    let config = project_config("  qa:\n    plain_http: true\n    parameters: {DatabaseMultiAz: \"true\"}\n").unwrap();
    let (_, settings) = config.environment("qa").unwrap();
    let v = argos::engine::environment_choices(&t, &settings, "qa").unwrap();
    assert_eq!(v["CertificateArn"], "");
    assert!(!v.contains_key("DatabaseMultiAz"), "{v:?}");
    assert_eq!(v["DatabaseMonitoringInterval"], "0");
}
