//! Stack parameters and tags for an environment: computed from group_vars and the config, and
//! checked against what the template declares, so a typo in the config is caught here.

use std::collections::BTreeMap;

use crate::cloud::stack::{ParamValue, StackInfo};
use crate::cloud::template::Template;
use crate::config::Config;
use crate::engine::Target;
use crate::error::{Error, Result};
use crate::names::tags;

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
    for p in template.parameters() {
        let value = values.get(&p.name).cloned().or(p.default.clone()).ok_or_else(|| {
            Error::Invalid(format!(
                "stack parameter '{}' has no value and no default: set environments.{env}.parameters.{} in the config",
                p.name, p.name
            ))
        })?;
        out.insert(p.name, ParamValue::Set(value));
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

/// The stack tags; CloudFormation copies them onto every taggable resource.
pub fn stack_tags(config: &Config, target: &Target) -> BTreeMap<String, String> {
    BTreeMap::from([
        (tags::APP.to_string(), config.vars.app_name.clone()),
        (tags::ENV.to_string(), target.env.to_string()),
    ])
}
