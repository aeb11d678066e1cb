//! `argos template [ENV] [--image]`: the template CloudFormation is sent, as pretty JSON on
//! stdout, to read, diff or hand to cfn-lint. formations/ holds pieces; only the merge is what
//! a stack is made of, and it exists nowhere on disk.
//!
//! With an environment, what the config knows for it without AWS (names, the SSH CIDR, the
//! network, instance types and its stack parameters) becomes the parameters' `Default`s, so
//! cfn-lint also checks those values against the template's patterns and allowed values.
//! Secrets (NoEcho parameters) are never filled in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Map, Value};

use crate::config::Config;
use crate::template::load_formations;

/// Loads the config and prints the template; returns the process exit code.
pub fn run(config_path: &Path, env: Option<&str>, image: bool) -> i32 {
    let rendered = Config::load(config_path)
        .map_err(|e| e.to_string())
        .and_then(|config| render(&config, env, image));
    match rendered {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            super::EXIT_USAGE
        }
    }
}

/// The merged template (or image.json), pretty-printed, with an environment's values as
/// defaults when one is named.
pub fn render(config: &Config, env: Option<&str>, image: bool) -> Result<String, String> {
    let (image_template, merged) = load_formations(&config.formations_dir()).map_err(|e| e.to_string())?;
    let template = if image { image_template } else { merged };
    let mut body = template.value.clone();
    if let Some(env) = env {
        let (mut values, own) = env_values(config, env)?;
        let (_, settings) = config.environment(env)?;
        values.extend(crate::engine::environment_choices(&template, &settings, env)?);
        set_defaults(&mut body, &values, &own, env)?;
    }
    serde_json::to_string_pretty(&Value::Object(body)).map_err(|e| format!("cannot print the template: {e}"))
}

/// The values the config gives an environment's stack, and which of them the environment (or
/// `defaults`) names itself: those must be declared, the derived ones only where they are.
fn env_values(config: &Config, env: &str) -> Result<(BTreeMap<String, String>, BTreeSet<String>), String> {
    let (name, settings) = config.environment(env)?;
    let mut v = BTreeMap::new();
    v.insert("AppName".to_string(), config.vars.app_name.clone());
    v.insert("EnvName".to_string(), name.to_string());
    v.insert("KeyName".to_string(), config.vars.key_name.clone());
    let net = &config.settings.network;
    for (param, value) in [
        ("VpcId", &net.vpc_id),
        ("SubnetId", &net.subnet_id),
        ("AllowedSshCidr", &net.allowed_ssh_cidr),
    ] {
        if let Some(value) = value {
            v.insert(param.to_string(), value.clone());
        }
    }
    for (group, ty) in &settings.instance_types {
        v.insert(format!("{}InstanceType", capitalize(group)), ty.clone());
    }
    if let Some(class) = &settings.database_instance_class {
        v.insert("DatabaseInstanceClass".to_string(), class.clone());
    }
    let own = settings.parameters.keys().cloned().collect();
    v.extend(settings.parameters);
    Ok((v, own))
}

/// Writes each value as its parameter's `Default`, skipping NoEcho parameters; a parameter
/// the environment names that the template does not declare is an error, as in a commission.
fn set_defaults(
    body: &mut Map<String, Value>,
    values: &BTreeMap<String, String>,
    own: &BTreeSet<String>,
    env: &str,
) -> Result<(), String> {
    let Some(Value::Object(params)) = body.get_mut("Parameters") else {
        return match own.iter().next() {
            Some(name) => Err(format!(
                "environments.{env} sets stack parameter '{name}', but the template declares no parameters"
            )),
            None => Ok(()),
        };
    };
    if let Some(name) = own.iter().find(|n| !params.contains_key(n.as_str())) {
        let declared: Vec<&str> = params.keys().map(String::as_str).collect();
        return Err(format!(
            "environments.{env} sets stack parameter '{name}', which formations/ does not declare (declared: {})",
            declared.join(", ")
        ));
    }
    for (name, spec) in params.iter_mut() {
        let Some(value) = values.get(name) else { continue };
        let Some(spec) = spec.as_object_mut() else { continue };
        let secret = spec
            .get("NoEcho")
            .is_some_and(|v| v == &Value::Bool(true) || v == "true");
        if !secret {
            spec.insert("Default".into(), Value::String(value.clone()));
        }
    }
    Ok(())
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(environments: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("argos.yaml");
        let yaml = format!(
            "paths:\n  root: {}\n  group_vars: config/sandbox/group_vars.yml\nnetwork:\n  allowed_ssh_cidr: 203.0.113.7/32\nenvironments:\n{environments}\n",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::write(&path, yaml).unwrap();
        let config = Config::load(&path).unwrap();
        (dir, config)
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn prints_the_merge_and_the_image_template() {
        let (_dir, config) = config("  staging: {}\n");
        let merged = parse(&render(&config, None, false).unwrap());
        let image = parse(&render(&config, None, true).unwrap());
        assert!(merged["Resources"].as_object().unwrap().len() > 5);
        assert!(merged["Parameters"]["DatabasePassword"].is_object());
        assert!(image["Parameters"]["BaseImageId"].is_object(), "{image}");
        assert!(image["Parameters"].get("DatabasePassword").is_none());
        // Pretty: one key a line, so cfn-lint's line numbers point somewhere readable.
        assert!(render(&config, None, false).unwrap().lines().count() > 100);
    }

    #[test]
    fn an_environment_fills_in_defaults_but_never_secrets() {
        let (_dir, config) = config(
            "  staging:\n    plain_http: true\n    instance_types: {api: t3.large}\n    parameters: {WorkerCount: \"2\", EnableBroker: \"true\", DatabasePassword: hunter2-hunter2}\n",
        );
        let t = parse(&render(&config, Some("staging"), false).unwrap());
        let default = |p: &str| t["Parameters"][p].get("Default").cloned();
        assert_eq!(default("EnvName"), Some("staging".into()));
        assert_eq!(default("ApiInstanceType"), Some("t3.large".into()));
        assert_eq!(default("WorkerCount"), Some("2".into()));
        assert_eq!(default("AllowedSshCidr"), Some("203.0.113.7/32".into()));
        assert_eq!(default("DatabasePassword"), None);
        assert!(!t.to_string().contains("hunter2"));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let (_dir, config) = config("  staging:\n    plain_http: true\n    parameters: {WorkerCuont: \"2\"}\n");
        let e = render(&config, Some("staging"), false).unwrap_err();
        assert!(
            e.contains("environments.staging sets stack parameter 'WorkerCuont'") && e.contains("WorkerCount"),
            "{e}"
        );
        let e = render(&config, Some("prod"), false).unwrap_err();
        assert!(e.contains("unknown environment") && e.contains("staging"), "{e}");
        // The front's choice is the environment's to make: neither is refused, naming the key.
        let (_unsaid_dir, unsaid) = self::config("  staging: {}\n");
        let e = render(&unsaid, Some("staging"), false).unwrap_err();
        assert!(
            e.starts_with("environments.staging.certificate_arn: the front needs HTTPS"),
            "{e}"
        );
        let (_plain_dir, plain) = self::config("  staging:\n    plain_http: true\n    production: false\n");
        let t: Value = serde_json::from_str(&render(&plain, Some("staging"), false).unwrap()).unwrap();
        assert_eq!(t["Parameters"]["CertificateArn"]["Default"], "");
        assert_eq!(t["Parameters"]["DatabaseMultiAz"]["Default"], "false");
        let e = render(&config, Some("prod"), false).unwrap_err();
        assert!(e.contains("unknown environment") && e.contains("staging"), "{e}");
    }
}
