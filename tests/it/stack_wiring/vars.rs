//! Ansible variables: role defaults, then group_vars/all.yml (which wins, as in Ansible), and
//! the bits of Jinja needed to read a port or a path out of them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{repo, yaml};

pub(crate) struct Vars(pub(crate) BTreeMap<String, Value>);

impl Vars {
    pub(crate) fn load() -> Vars {
        let mut m = BTreeMap::new();
        let mut roles: Vec<_> = std::fs::read_dir(repo().join("playbooks/roles"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        roles.sort();
        for role in roles {
            let rel = format!("playbooks/roles/{role}/defaults/main.yml");
            if repo().join(&rel).exists() {
                if let Value::Object(o) = yaml(&rel) {
                    m.extend(o);
                }
            }
        }
        if let Value::Object(o) = yaml("playbooks/group_vars/all.yml") {
            m.extend(o);
        }
        Vars(m)
    }

    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The port an expression stands for: `5000`, `{{ gunicorn_port }}`,
    /// `{{ fuseki_port | default(3030) | int }}`.
    pub(crate) fn port(&self, expr: &str) -> Result<u16, String> {
        self.port_at(expr, 0)
    }

    fn port_at(&self, expr: &str, depth: u8) -> Result<u16, String> {
        let e = expr.trim().trim_matches('"');
        if let Ok(p) = e.parse() {
            return Ok(p);
        }
        if depth > 8 {
            return Err(format!("'{expr}' refers to itself"));
        }
        let inner = jinja_exprs(e).into_iter().next().unwrap_or_else(|| e.to_string());
        let name = lead_ident(&inner);
        match self.text(name) {
            Some(v) => self.port_at(&v, depth + 1),
            None => default_arg(&inner)
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| format!("'{expr}': variable {name} is not defined")),
        }
    }

    /// A text with its `{{ var }}` references replaced (paths).
    pub(crate) fn expand(&self, text: &str) -> String {
        let mut out = text.to_string();
        for _ in 0..8 {
            let Some(start) = out.find("{{") else { break };
            let Some(end) = out[start..].find("}}") else { break };
            let name = lead_ident(&out[start + 2..start + end]).to_string();
            let value = self.text(&name).unwrap_or_else(|| format!("<{name}>"));
            out.replace_range(start..start + end + 2, &value);
        }
        out
    }
}

/// The contents of every `{{ ... }}` in a text.
pub(crate) fn jinja_exprs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push(after[..end].trim().to_string());
        rest = &after[end + 2..];
    }
    out
}

pub(crate) fn lead_ident(expr: &str) -> &str {
    let e = expr.trim();
    let end = e
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(e.len());
    &e[..end]
}

fn default_arg(expr: &str) -> Option<String> {
    let i = expr.find("default(")?;
    let rest = &expr[i + 8..];
    Some(rest[..rest.find([',', ')'])?].trim().trim_matches('\'').to_string())
}

/// Every identifier in a text (Python or Jinja).
pub(crate) fn idents(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_'))
        .map(str::to_string)
        .collect()
}
