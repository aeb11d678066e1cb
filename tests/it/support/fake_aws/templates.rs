//! Templates, change sets and default scripts: what CloudFormation would check, resolve and
//! change for a template, and the timeline a change plays when no script was queued.

use super::*;

// ---------------------------------------------------------------------------------------------
// Templates, change sets and default scripts
// ---------------------------------------------------------------------------------------------

pub(super) fn check_stack_name(name: &str) -> Result<(), AwsError> {
    let ok = name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'stackName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*"
        )))
    }
}

pub(super) fn check_updatable(stack: &StackRec, status: &str) -> Result<(), AwsError> {
    const UPDATABLE: [&str; 4] = [
        "CREATE_COMPLETE",
        "UPDATE_COMPLETE",
        "UPDATE_ROLLBACK_COMPLETE",
        "IMPORT_COMPLETE",
    ];
    if UPDATABLE.contains(&status) {
        Ok(())
    } else {
        Err(validation(format!(
            "Stack:{} is in {status} state and can not be updated.",
            stack.id
        )))
    }
}

pub(super) fn template_of(p: &Params, previous: Option<&str>) -> Result<String, AwsError> {
    if let Some(body) = p.get("TemplateBody") {
        return Ok(body.clone());
    }
    if p.get("UsePreviousTemplate").is_some_and(|v| v == "true") {
        if let Some(prev) = previous {
            return Ok(prev.to_string());
        }
    }
    if p.contains_key("TemplateURL") {
        return Err(validation(
            "TemplateURL is not supported by the fake; send TemplateBody",
        ));
    }
    Err(validation("Either Template URL or Template Body must be specified."))
}

/// Parses a JSON template; a non-JSON (YAML) template is accepted as an opaque empty object.
pub(super) fn parse_template(body: &str) -> Result<Value, AwsError> {
    if !body.trim_start().starts_with('{') {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str::<Value>(body).map_err(|e| {
        validation(format!(
            "Template format error: JSON not well-formed. (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

pub(super) fn template_resources(tpl: &Value) -> Vec<(String, String)> {
    tpl.get("Resources")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let t = v
                        .get("Type")
                        .and_then(Value::as_str)
                        .unwrap_or("AWS::CloudFormation::WaitConditionHandle");
                    (k.clone(), t.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Template parameters merged with the given values and defaults; errors like AWS for missing
/// or unknown parameters.
pub(super) fn resolve_parameters(
    tpl: &Value,
    given: &[(String, String)],
    previous: &[(String, String)],
) -> Result<Vec<(String, String)>, AwsError> {
    let declared = tpl
        .get("Parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let unknown: Vec<&str> = given
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !declared.contains_key(*k))
        .collect();
    if !unknown.is_empty() && !declared.is_empty() {
        return Err(validation(format!(
            "Parameters: [{}] do not exist in the template",
            unknown.join(", ")
        )));
    }
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for (key, decl) in &declared {
        let value = given
            .iter()
            .chain(previous)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .or_else(|| decl.get("Default").map(value_text));
        match value {
            Some(v) => out.push((key.clone(), v)),
            None => missing.push(key.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(validation(format!(
            "Parameters: [{}] must have values",
            missing.join(", ")
        )));
    }
    if declared.is_empty() {
        out = given.to_vec();
    }
    Ok(out)
}

/// (capabilities required, IAM resource types needing them).
pub(super) fn required_capabilities(tpl: &Value) -> (Vec<String>, Vec<String>) {
    let mut types = Vec::new();
    let mut named = false;
    if let Some(res) = tpl.get("Resources").and_then(Value::as_object) {
        for r in res.values() {
            let t = r.get("Type").and_then(Value::as_str).unwrap_or("");
            if t.starts_with("AWS::IAM::") {
                if !types.contains(&t.to_string()) {
                    types.push(t.to_string());
                }
                let props = r.get("Properties");
                named |= [
                    "RoleName",
                    "UserName",
                    "GroupName",
                    "ManagedPolicyName",
                    "InstanceProfileName",
                ]
                .iter()
                .any(|k| props.and_then(|p| p.get(k)).is_some());
            }
        }
    }
    let caps = match (types.is_empty(), named) {
        (true, _) => vec![],
        (false, false) => vec!["CAPABILITY_IAM".to_string()],
        (false, true) => vec!["CAPABILITY_NAMED_IAM".to_string()],
    };
    (caps, types)
}

pub(super) fn check_capabilities(tpl: &Value, given: &[String]) -> Result<(), AwsError> {
    let (needed, _) = required_capabilities(tpl);
    let satisfied = needed
        .iter()
        .all(|n| given.contains(n) || (n == "CAPABILITY_IAM" && given.iter().any(|g| g == "CAPABILITY_NAMED_IAM")));
    if satisfied {
        Ok(())
    } else {
        Err(err(
            "InsufficientCapabilitiesException",
            format!("Requires capabilities : [{}]", needed.join(", ")),
        ))
    }
}

pub(super) fn validate_template(p: &Params) -> Answer {
    let body = template_of(p, None)?;
    let tpl = parse_template(&body)?;
    if body.trim_start().starts_with('{')
        && tpl
            .get("Resources")
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty())
    {
        return Err(validation(
            "Template format error: At least one Resources member must be defined.",
        ));
    }
    let mut x = String::from("<Parameters>");
    if let Some(params) = tpl.get("Parameters").and_then(Value::as_object) {
        for (k, decl) in params {
            x += "<member>";
            x += &tag("ParameterKey", k);
            if let Some(d) = decl.get("Default") {
                x += &tag("DefaultValue", &value_text(d));
            }
            let no_echo = decl.get("NoEcho").map(value_text).is_some_and(|v| v == "true");
            x += &tag("NoEcho", if no_echo { "true" } else { "false" });
            if let Some(d) = decl.get("Description").and_then(Value::as_str) {
                x += &tag("Description", d);
            }
            x += "</member>";
        }
    }
    x += "</Parameters>";
    if let Some(d) = tpl.get("Description").and_then(Value::as_str) {
        x += &tag("Description", d);
    }
    let (caps, types) = required_capabilities(&tpl);
    if !caps.is_empty() {
        x += "<Capabilities>";
        for c in &caps {
            x += &tag("member", c);
        }
        x += "</Capabilities>";
        x += &tag(
            "CapabilitiesReason",
            &format!("The following resource(s) require capabilities: [{}]", types.join(", ")),
        );
    }
    Ok(x)
}

/// Resource changes between two templates (and parameter changes, for resources that `Ref`
/// a changed parameter).
pub(super) fn diff_templates(
    old: &Value,
    new: &Value,
    old_params: &[(String, String)],
    new_params: &[(String, String)],
) -> Vec<Change> {
    let empty = serde_json::Map::new();
    let old_r = old.get("Resources").and_then(Value::as_object).unwrap_or(&empty);
    let new_r = new.get("Resources").and_then(Value::as_object).unwrap_or(&empty);
    let changed_params: Vec<&String> = new_params
        .iter()
        .filter(|np| !old_params.contains(np))
        .map(|(k, _)| k)
        .collect();
    let mut changes = Vec::new();
    for (k, v) in new_r {
        let t = v.get("Type").and_then(Value::as_str).unwrap_or("");
        match old_r.get(k) {
            None => changes.push(Change::add(k, t)),
            Some(o) if o.get("Type") != v.get("Type") => changes.push(Change::modify(k, t, "True", &["Properties"])),
            Some(o) if o != v => changes.push(Change::modify(k, t, "False", &["Properties"])),
            Some(_) => {
                let text = v.to_string();
                if changed_params
                    .iter()
                    .any(|p| text.contains(&format!("{{\"Ref\":\"{p}\"}}")))
                {
                    changes.push(Change::modify(k, t, "Conditional", &["Properties"]));
                }
            }
        }
    }
    for (k, v) in old_r {
        if !new_r.contains_key(k) {
            changes.push(Change::remove(k, v.get("Type").and_then(Value::as_str).unwrap_or("")));
        }
    }
    changes
}

/// The default timeline for applying `changes` (`kind` CREATE or UPDATE).
pub(super) fn script_for_changes(stack: &str, kind: &str, changes: &[Change]) -> StackScript {
    let pick = |action: &str| -> Vec<(&str, &str)> {
        changes
            .iter()
            .filter(|c| c.action == action)
            .map(|c| (c.logical_id.as_str(), c.resource_type.as_str()))
            .collect()
    };
    let (added, modified, removed) = (pick("Add"), pick("Modify"), pick("Remove"));
    if kind == "CREATE" {
        return StackScript::create_success(stack, &added, &[2.0]);
    }
    let mut s = StackScript::new(stack).stack_event(0.0, "UPDATE_IN_PROGRESS", Some("User Initiated"));
    let mut t = 0.5;
    for r in &added {
        let pid = physical_id_for(stack, r.0, r.1);
        s = s
            .resource_event(t, *r, "CREATE_IN_PROGRESS", None, None)
            .resource_event(
                t + 0.3,
                *r,
                "CREATE_IN_PROGRESS",
                Some("Resource creation Initiated"),
                Some(&pid),
            );
        t += 2.3;
        s = s.resource_event(t, *r, "CREATE_COMPLETE", None, Some(&pid));
    }
    for r in &modified {
        let pid = physical_id_for(stack, r.0, r.1);
        s = s.resource_event(t, *r, "UPDATE_IN_PROGRESS", None, Some(&pid));
        t += 2.0;
        s = s.resource_event(t, *r, "UPDATE_COMPLETE", None, Some(&pid));
    }
    t += 0.5;
    s = s.stack_event(t, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", None);
    for r in removed.iter().rev() {
        let pid = physical_id_for(stack, r.0, r.1);
        t += 0.5;
        s = s.resource_event(t, *r, "DELETE_IN_PROGRESS", None, Some(&pid));
        t += 1.0;
        s = s.resource_event(t, *r, "DELETE_COMPLETE", None, Some(&pid));
    }
    s.stack_event(t + 0.5, "UPDATE_COMPLETE", None)
}
