//! What a merged template must satisfy before it is sent: CloudFormation's size limits, and
//! every reference (Ref, GetAtt, Sub variable, DependsOn, FindInMap, Condition, and what
//! `Rules` may name) pointing at something defined, so a mistake fails here with the file
//! named rather than in AWS.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{section, TemplateError};

/// CloudFormation's documented quotas for one template.
pub const MAX_RESOURCES: usize = 500;
pub const MAX_PARAMETERS: usize = 200;
pub const MAX_OUTPUTS: usize = 200;
pub const MAX_MAPPINGS: usize = 200;
/// Largest template body that may be passed inline (TemplateBody) rather than via S3.
pub const MAX_BODY_BYTES: usize = 51_200;

fn count(t: &Map<String, Value>, name: &str) -> usize {
    section(t, name).map_or(0, Map::len)
}

pub(super) fn check_limits(t: &Map<String, Value>, body_len: usize) -> Result<(), TemplateError> {
    let checks = [
        ("resources", count(t, "Resources"), MAX_RESOURCES),
        ("parameters", count(t, "Parameters"), MAX_PARAMETERS),
        ("outputs", count(t, "Outputs"), MAX_OUTPUTS),
        ("mappings", count(t, "Mappings"), MAX_MAPPINGS),
        ("bytes (compact JSON body)", body_len, MAX_BODY_BYTES),
    ];
    for (what, n, max) in checks {
        if n > max {
            return Err(TemplateError::Limit {
                message: format!("{n} {what}, over CloudFormation's limit of {max}"),
            });
        }
    }
    if count(t, "Resources") == 0 {
        return Err(TemplateError::Limit {
            message: "no resources".into(),
        });
    }
    Ok(())
}

/// Pseudo parameters that `Ref` may name without a declaration.
fn is_pseudo(name: &str) -> bool {
    name.starts_with("AWS::")
}

/// Checks every Ref, GetAtt, Sub variable, DependsOn, FindInMap and Condition name.
pub(super) fn check_references(
    t: &Map<String, Value>,
    sources: &BTreeMap<String, PathBuf>,
) -> Result<(), TemplateError> {
    let names =
        |s: &str| -> BTreeSet<String> { section(t, s).map(|m| m.keys().cloned().collect()).unwrap_or_default() };
    let params = names("Parameters");
    let resources = names("Resources");
    let conditions = names("Conditions");
    let mappings = names("Mappings");
    let refs = Refs {
        params: &params,
        resources: &resources,
        conditions: &conditions,
        mappings: &mappings,
    };
    for sect in ["Resources", "Outputs", "Conditions"] {
        let Some(entries) = section(t, sect) else { continue };
        for (id, body) in entries {
            let file = sources.get(id).cloned().unwrap_or_default();
            let fail = |m: String| TemplateError::Reference {
                file: file.clone(),
                message: format!("{sect}.{id}: {m}"),
            };
            refs.walk(body).map_err(fail)?;
            if sect == "Conditions" {
                continue;
            }
            if let Some(c) = body.get("Condition").and_then(Value::as_str) {
                if !conditions.contains(c) {
                    return Err(fail(format!("condition '{c}' is not defined")));
                }
            }
            let deps: Vec<&str> = match body.get("DependsOn") {
                Some(Value::String(s)) => vec![s.as_str()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            for d in deps {
                if !resources.contains(d) {
                    return Err(fail(format!("DependsOn names '{d}', which is not a resource")));
                }
            }
        }
    }
    Ok(())
}

/// Rules may refer to parameters (and pseudo parameters) only: they are checked before any
/// resource exists.
pub(super) fn check_rule_references(t: &Map<String, Value>, file: PathBuf) -> Result<(), TemplateError> {
    let Some(rules) = t.get("Rules") else { return Ok(()) };
    let fail = |message: String| TemplateError::Reference {
        file: file.clone(),
        message,
    };
    let rules = rules
        .as_object()
        .ok_or_else(|| fail("'Rules' must be an object".into()))?;
    let params: BTreeSet<String> = section(t, "Parameters")
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let none = BTreeSet::new();
    let conditions: BTreeSet<String> = section(t, "Conditions")
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let refs = Refs {
        params: &params,
        resources: &none,
        conditions: &conditions,
        mappings: &none,
    };
    for (name, rule) in rules {
        if !rule.get("Assertions").is_some_and(Value::is_array) {
            return Err(fail(format!("Rules.{name}: a rule needs a list of Assertions")));
        }
        refs.walk(rule).map_err(|m| fail(format!("Rules.{name}: {m}")))?;
    }
    Ok(())
}

struct Refs<'a> {
    params: &'a BTreeSet<String>,
    resources: &'a BTreeSet<String>,
    conditions: &'a BTreeSet<String>,
    mappings: &'a BTreeSet<String>,
}

impl Refs<'_> {
    fn walk(&self, v: &Value) -> Result<(), String> {
        match v {
            Value::Array(items) => items.iter().try_for_each(|i| self.walk(i)),
            Value::Object(m) => {
                if m.len() == 1 {
                    let (k, arg) = m.iter().next().expect("one entry");
                    self.check_intrinsic(k, arg)?;
                }
                m.values().try_for_each(|i| self.walk(i))
            }
            _ => Ok(()),
        }
    }

    fn check_intrinsic(&self, name: &str, arg: &Value) -> Result<(), String> {
        match name {
            "Ref" => {
                let target = arg.as_str().ok_or("Ref takes a string")?;
                if !(is_pseudo(target) || self.params.contains(target) || self.resources.contains(target)) {
                    return Err(format!(
                        "Ref to '{target}', which is neither a parameter nor a resource"
                    ));
                }
            }
            "Fn::GetAtt" => {
                let target = match arg {
                    Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_string),
                    Value::String(s) => s.split('.').next().map(str::to_string),
                    _ => None,
                }
                .ok_or("Fn::GetAtt takes [resource, attribute]")?;
                if !self.resources.contains(&target) {
                    return Err(format!("Fn::GetAtt on '{target}', which is not a resource"));
                }
            }
            "Fn::Sub" => {
                let (text, locals) = match arg {
                    Value::String(s) => (s.as_str(), BTreeSet::new()),
                    Value::Array(a) => (
                        a.first().and_then(Value::as_str).ok_or("Fn::Sub takes a string")?,
                        a.get(1)
                            .and_then(Value::as_object)
                            .map(|m| m.keys().cloned().collect())
                            .unwrap_or_default(),
                    ),
                    _ => return Err("Fn::Sub takes a string or [string, variables]".into()),
                };
                for var in sub_variables(text) {
                    let base = var.split('.').next().unwrap_or(&var);
                    let ok = locals.contains(&var)
                        || is_pseudo(&var)
                        || self.params.contains(&var)
                        || self.resources.contains(base);
                    if !ok {
                        return Err(format!("Fn::Sub uses ${{{var}}}, which is not defined"));
                    }
                }
            }
            "Fn::FindInMap" => {
                if let Some(map) = arg.as_array().and_then(|a| a.first()).and_then(Value::as_str) {
                    if !self.mappings.contains(map) {
                        return Err(format!("Fn::FindInMap on '{map}', which is not a mapping"));
                    }
                }
            }
            "Condition" | "Fn::If" => {
                let c = match arg {
                    Value::String(s) => Some(s.as_str()),
                    Value::Array(a) => a.first().and_then(Value::as_str),
                    _ => None,
                };
                if let Some(c) = c {
                    if !self.conditions.contains(c) {
                        return Err(format!("condition '{c}' is not defined"));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The `${Name}` variables of a Fn::Sub string (not the `${!Literal}` escapes).
fn sub_variables(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let var = after[..end].trim();
        if !var.starts_with('!') && !var.is_empty() {
            out.push(var.to_string());
        }
        rest = &after[end + 1..];
    }
    out
}
