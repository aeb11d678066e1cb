//! Stack parameters and tags for an environment: computed from group_vars and the config, and
//! checked against what the template declares, so a typo in the config is caught here.

use std::collections::BTreeMap;

use crate::cloud::stack::{ParamValue, StackInfo};
use crate::config::{Config, EnvSettings};
use crate::engine::Target;
use crate::error::{Error, Result};
use crate::names::tags;
use crate::template::Template;

/// The values the engine knows for an environment (NoEcho ones included), by parameter name.
pub fn known_values(
    config: &Config,
    target: &Target,
    image_id: Option<&str>,
    network: (&str, &str),
) -> Result<BTreeMap<String, String>> {
    let mut v = BTreeMap::new();
    v.insert("AppName".into(), config.vars.app_name.clone());
    v.insert("EnvName".into(), target.env.to_string());
    v.insert("KeyName".into(), config.vars.key_name.clone());
    if let Some(id) = image_id {
        v.insert("ImageId".into(), id.to_string());
    }
    v.insert("VpcId".into(), network.0.to_string());
    v.insert("SubnetId".into(), network.1.to_string());
    if let Some(cidr) = &config.settings.network.allowed_ssh_cidr {
        v.insert("AllowedSshCidr".into(), cidr.clone());
    }
    for (var, param) in [
        ("db_name", "DatabaseName"),
        ("db_user", "DatabaseUser"),
        ("db_password", "DatabasePassword"),
    ] {
        if let Some(value) = config.var(var)? {
            v.insert(param.into(), value);
        }
    }
    for (group, ty) in &target.settings.instance_types {
        v.insert(format!("{}InstanceType", capitalize(group)), ty.clone());
    }
    if let Some(class) = &target.settings.database_instance_class {
        v.insert("DatabaseInstanceClass".into(), class.clone());
    }
    v.extend(target.settings.parameters.clone());
    Ok(v)
}

/// The values that follow from the environment's choices, for a template that offers them:
/// `CertificateArn` from `certificate_arn` (empty with `plain_http: true`; neither is refused,
/// naming the key), and, unless the environment is `production: true`, the database's Multi-AZ
/// and enhanced monitoring off (the template's defaults are the production ones). A parameter
/// the environment sets itself under `parameters` wins.
pub fn environment_choices(template: &Template, target: &Target) -> Result<BTreeMap<String, String>> {
    choices(template, &target.settings, target.env.as_str()).map_err(Error::Invalid)
}

/// [`environment_choices`] for the front ends that hold a template (`argos template`).
pub fn choices(
    template: &Template,
    settings: &EnvSettings,
    env: &str,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let declared: Vec<String> = template.parameters().into_iter().map(|p| p.name).collect();
    settings.stack_choices(env, &declared)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// Refuses values for parameters the template does not declare.
pub fn check_declared(template: &Template, values: &BTreeMap<String, String>, origin: &str) -> Result<()> {
    let declared: Vec<String> = template.parameters().into_iter().map(|p| p.name).collect();
    for name in values.keys() {
        if !declared.contains(name) {
            return Err(Error::Invalid(format!(
                "{origin} sets stack parameter '{name}', which formations/ does not declare (declared: {})",
                declared.join(", ")
            )));
        }
    }
    Ok(())
}

/// Every parameter for a create: known values, else the template's default. A parameter with
/// neither is an error naming where to set it. (Passing defaults explicitly keeps later updates
/// comparable with what the stack was created with.)
pub fn for_create(
    template: &Template,
    values: &BTreeMap<String, String>,
    env: &str,
) -> Result<BTreeMap<String, ParamValue>> {
    let mut out = BTreeMap::new();
    let mut set = BTreeMap::new();
    for p in template.parameters() {
        let value = values.get(&p.name).cloned().or(p.default.clone()).ok_or_else(|| {
            let hint = match p.name.as_str() {
                "AllowedSshCidr" => format!(
                    "set network.allowed_ssh_cidr (the addresses Ansible connects from, e.g. 203.0.113.7/32) or environments.{env}.parameters.AllowedSshCidr"
                ),
                name => format!("set environments.{env}.parameters.{name}"),
            };
            Error::Invalid(format!(
                "stack parameter '{}' has no value and no default: {hint} in the config",
                p.name
            ))
        })?;
        set.insert(p.name.clone(), value.clone());
        out.insert(p.name, ParamValue::Set(value));
    }
    // CloudFormation refuses these too, but only after the image is baked; stand-ins ignore Rules.
    let refused = template.rule_violations(&set);
    if !refused.is_empty() {
        return Err(Error::Invalid(format!(
            "environments.{env}: the template's rules refuse these parameters: {}",
            refused.join("; ")
        )));
    }
    Ok(out)
}

/// Parameters for an update: what the config sets and what the user overrides change; every
/// other parameter keeps its previous value (the original tool reset them to defaults). Secrets
/// keep theirs unless overridden explicitly.
pub fn for_update(
    template: &Template,
    values: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
    stack: &StackInfo,
) -> BTreeMap<String, ParamValue> {
    let mut out = BTreeMap::new();
    let specs = template.parameters();
    for p in &specs {
        let value = if let Some(v) = overrides.get(&p.name) {
            ParamValue::Set(v.clone())
        } else if let (false, Some(v)) = (p.no_echo, values.get(&p.name)) {
            ParamValue::Set(v.clone())
        } else if let Some(previous) = stack.parameters.get(&p.name) {
            if p.no_echo || previous == "****" {
                ParamValue::Previous
            } else {
                // The explicit previous value, not UsePreviousValue: equivalent on AWS, and
                // stand-ins compare numbers and strings differently.
                ParamValue::Set(previous.clone())
            }
        } else if let Some(v) = values.get(&p.name).or(p.default.as_ref()) {
            ParamValue::Set(v.clone())
        } else {
            ParamValue::Previous
        };
        out.insert(p.name.clone(), value);
    }
    out
}

/// The template's `Rules` against what an update would leave the stack with: CloudFormation
/// refuses a violating change set only once it is created, and the stand-ins not at all.
pub fn check_update_rules(
    template: &Template,
    parameters: &BTreeMap<String, ParamValue>,
    stack: &StackInfo,
    env: &str,
) -> Result<()> {
    let effective: BTreeMap<String, String> = parameters
        .iter()
        .filter_map(|(name, value)| match value {
            ParamValue::Set(v) => Some((name.clone(), v.clone())),
            // A masked secret is never what a rule compares.
            ParamValue::Previous => stack
                .parameters
                .get(name)
                .filter(|v| v.as_str() != "****")
                .map(|v| (name.clone(), v.clone())),
        })
        .collect();
    let refused = template.rule_violations(&effective);
    if refused.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{env}: the template's rules refuse this update: {}",
        refused.join("; ")
    )))
}

/// The stack tags; CloudFormation copies them onto every taggable resource.
pub fn stack_tags(config: &Config, target: &Target) -> BTreeMap<String, String> {
    BTreeMap::from([
        (tags::APP.to_string(), config.vars.app_name.clone()),
        (tags::ENV.to_string(), target.env.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{merge, TemplateFile};
    use serde_json::json;

    #[test]
    fn an_update_that_breaks_a_rule_is_refused_before_the_change_set() {
        let t = template();
        let stack = StackInfo {
            parameters: BTreeMap::from([
                ("EnableBroker".to_string(), "false".to_string()),
                ("WorkerCount".to_string(), "0".to_string()),
            ]),
            ..Default::default()
        };
        let overrides = BTreeMap::from([("WorkerCount".to_string(), "2".to_string())]);
        let params = for_update(&t, &BTreeMap::new(), &overrides, &stack);
        let err = check_update_rules(&t, &params, &stack, "staging").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("staging: the template's rules refuse this update: WorkersNeedBroker"),
            "{err}"
        );
        let both = BTreeMap::from([
            ("WorkerCount".to_string(), "2".to_string()),
            ("EnableBroker".to_string(), "true".to_string()),
        ]);
        let params = for_update(&t, &BTreeMap::new(), &both, &stack);
        assert!(check_update_rules(&t, &params, &stack, "staging").is_ok());
    }

    fn template() -> Template {
        let body = json!({
            "Parameters": {
                "AllowedSshCidr": {"Type": "String"},
                "EnableBroker": {"Type": "String", "Default": "false"},
                "WorkerCount": {"Type": "Number", "Default": 0}
            },
            "Rules": {"WorkersNeedBroker": {
                "RuleCondition": {"Fn::Not": [{"Fn::Equals": [{"Ref": "WorkerCount"}, "0"]}]},
                "Assertions": [{"Assert": {"Fn::Equals": [{"Ref": "EnableBroker"}, "true"]}, "AssertDescription": "workers need the broker"}]
            }},
            "Resources": {"A": {"Type": "T"}}
        });
        merge(&[TemplateFile {
            path: "t.json".into(),
            body: body.as_object().unwrap().clone(),
        }])
        .unwrap()
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_missing_ssh_cidr_names_the_network_setting() {
        let err = for_create(&template(), &values(&[]), "staging")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'AllowedSshCidr'") && err.contains("network.allowed_ssh_cidr"),
            "{err}"
        );
    }

    #[test]
    fn what_the_rules_refuse_is_refused_before_any_call() {
        let t = template();
        let v = values(&[("AllowedSshCidr", "203.0.113.7/32"), ("WorkerCount", "2")]);
        let err = for_create(&t, &v, "staging").unwrap_err().to_string();
        assert!(
            err.contains("environments.staging") && err.contains("workers need the broker"),
            "{err}"
        );
        let mut ok = v.clone();
        ok.insert("EnableBroker".into(), "true".into());
        assert_eq!(for_create(&t, &ok, "staging").unwrap().len(), 3);
    }
}
