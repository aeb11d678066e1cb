//! Evaluating a template's `Conditions` and `Rules` for given parameter values: which
//! resources a create makes (for the progress total) and what the `Rules` refuse.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{section, Template};

impl Template {
    /// How many resources a create with these parameter values makes: resources whose
    /// `Condition` evaluates false are not counted. An expression we cannot evaluate counts as
    /// true (the progress bar then overestimates, never underestimates).
    pub fn active_resources(&self, params: &BTreeMap<String, String>) -> usize {
        section(&self.value, "Resources")
            .map(|m| m.keys().filter(|id| self.resource_active(id, params)).count())
            .unwrap_or(0)
    }

    /// Whether the resource is created with these parameter values: it exists and its
    /// `Condition` holds (a condition we cannot evaluate counts as holding, as above).
    pub fn resource_active(&self, logical_id: &str, params: &BTreeMap<String, String>) -> bool {
        let Some(resource) = section(&self.value, "Resources").and_then(|m| m.get(logical_id)) else {
            return false;
        };
        match resource.get("Condition").and_then(Value::as_str) {
            Some(c) => self.condition_holds(c, params).unwrap_or(true),
            None => true,
        }
    }

    /// The value of a named condition; `None` when it is not defined or cannot be evaluated.
    pub fn condition_holds(&self, name: &str, params: &BTreeMap<String, String>) -> Option<bool> {
        let conditions = section(&self.value, "Conditions").cloned().unwrap_or_default();
        eval_condition(&conditions, name, params, 0)
    }

    /// What the template's `Rules` refuse for these parameter values: the description of every
    /// assertion that fails while its rule's `RuleCondition` holds (CloudFormation refuses such
    /// a create, update or change set). An expression we cannot evaluate refuses nothing.
    pub fn rule_violations(&self, params: &BTreeMap<String, String>) -> Vec<String> {
        let conditions = section(&self.value, "Conditions").cloned().unwrap_or_default();
        let mut out = Vec::new();
        for (name, rule) in section(&self.value, "Rules").into_iter().flatten() {
            let applies = match rule.get("RuleCondition") {
                Some(c) => eval_expr(&conditions, c, params, 0).unwrap_or(false),
                None => true,
            };
            if !applies {
                continue;
            }
            for a in rule.get("Assertions").and_then(Value::as_array).into_iter().flatten() {
                let Some(assert) = a.get("Assert") else { continue };
                if eval_expr(&conditions, assert, params, 0) == Some(false) {
                    let why = a.get("AssertDescription").and_then(Value::as_str).unwrap_or(name);
                    out.push(format!("{name}: {why}"));
                }
            }
        }
        out
    }
}

fn eval_condition(
    conds: &Map<String, Value>,
    name: &str,
    params: &BTreeMap<String, String>,
    depth: u8,
) -> Option<bool> {
    if depth > 16 {
        return None;
    }
    eval_expr(conds, conds.get(name)?, params, depth + 1)
}

fn eval_expr(conds: &Map<String, Value>, v: &Value, params: &BTreeMap<String, String>, depth: u8) -> Option<bool> {
    let obj = v.as_object()?;
    let (k, arg) = obj.iter().next()?;
    let list = || arg.as_array().cloned().unwrap_or_default();
    match k.as_str() {
        "Fn::Equals" => {
            let items = list();
            let a = eval_scalar(items.first()?, params)?;
            let b = eval_scalar(items.get(1)?, params)?;
            Some(a == b)
        }
        "Fn::Not" => Some(!eval_expr(conds, list().first()?, params, depth)?),
        "Fn::And" => list()
            .iter()
            .map(|e| eval_expr(conds, e, params, depth))
            .collect::<Option<Vec<_>>>()
            .map(|v| v.iter().all(|b| *b)),
        "Fn::Or" => list()
            .iter()
            .map(|e| eval_expr(conds, e, params, depth))
            .collect::<Option<Vec<_>>>()
            .map(|v| v.iter().any(|b| *b)),
        "Condition" => eval_condition(conds, arg.as_str()?, params, depth),
        _ => None,
    }
}

fn eval_scalar(v: &Value, params: &BTreeMap<String, String>) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(m) if m.contains_key("Fn::Join") => {
            // `Fn::Join [sep, list]`: the list is literal items, or a Ref to a list parameter
            // (its value is comma-separated, as CloudFormation takes it).
            let args = m.get("Fn::Join")?.as_array()?;
            let sep = args.first()?.as_str()?;
            let items: Vec<String> = match args.get(1)? {
                Value::Array(items) => items.iter().map(|i| eval_scalar(i, params)).collect::<Option<_>>()?,
                other => eval_scalar(other, params)?.split(',').map(str::to_string).collect(),
            };
            Some(items.join(sep))
        }
        Value::Object(m) => params.get(m.get("Ref")?.as_str()?).cloned(),
        _ => None,
    }
}
