//! CloudFormation templates: the types the rest of the crate handles (a parsed file, a merged
//! template ready to send, what is wrong with one) and what can be read off a template.
//!
//! The work is split by purpose: `strict` parses JSON rejecting duplicate keys, `load` reads
//! `formations/` and merges every file except `image.json` into one template, `checks` holds
//! what a merge refuses (CloudFormation's size limits, dangling references, so a bad `Ref`
//! fails here rather than in AWS), and `conditions` evaluates `Conditions` and `Rules` for
//! given parameter values. Everything used outside is re-exported here, so callers keep
//! naming `template::X`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

mod checks;
mod conditions;
mod load;
mod strict;

pub use checks::{MAX_BODY_BYTES, MAX_MAPPINGS, MAX_OUTPUTS, MAX_PARAMETERS, MAX_RESOURCES};
pub use load::{load_file, load_formations, merge, IMAGE_TEMPLATE, MERGED_SECTIONS};
pub use strict::parse_strict;

/// What is wrong with a template, naming the file (and both files for a clash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    Io {
        file: PathBuf,
        message: String,
    },
    Json {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    Shape {
        file: PathBuf,
        message: String,
    },
    Clash {
        id: String,
        first: (PathBuf, String),
        second: (PathBuf, String),
    },
    Reference {
        file: PathBuf,
        message: String,
    },
    Limit {
        message: String,
    },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Io { file, message } => write!(f, "{}: {message}", file.display()),
            TemplateError::Json { file, line, column, message } => {
                write!(f, "{}:{line}:{column}: {message}", file.display())
            }
            TemplateError::Shape { file, message } => write!(f, "{}: {message}", file.display()),
            TemplateError::Clash { id, first, second } => write!(
                f,
                "logical id '{id}' is defined twice: in {} ({}) and in {} ({}); logical ids must be unique across all merged templates",
                first.0.display(),
                first.1,
                second.0.display(),
                second.1
            ),
            TemplateError::Reference { file, message } => write!(f, "{}: {message}", file.display()),
            TemplateError::Limit { message } => write!(f, "merged template: {message}"),
        }
    }
}

impl std::error::Error for TemplateError {}

/// One parsed template file.
#[derive(Debug, Clone)]
pub struct TemplateFile {
    pub path: PathBuf,
    pub body: Map<String, Value>,
}

/// A template ready to send: its compact body and what we need to know about it.
#[derive(Debug, Clone)]
pub struct Template {
    pub body: String,
    pub value: Map<String, Value>,
    /// Which file each logical id came from.
    pub sources: BTreeMap<String, PathBuf>,
}

/// A declared template parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSpec {
    pub name: String,
    pub default: Option<String>,
    pub no_echo: bool,
}

impl Template {
    pub fn parameters(&self) -> Vec<ParameterSpec> {
        section(&self.value, "Parameters")
            .map(|m| {
                m.iter()
                    .map(|(name, spec)| ParameterSpec {
                        name: name.clone(),
                        default: spec.get("Default").map(scalar_text),
                        no_echo: spec
                            .get("NoEcho")
                            .is_some_and(|v| v == &Value::Bool(true) || v == "true"),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn resources(&self) -> Vec<(String, String)> {
        section(&self.value, "Resources")
            .map(|m| {
                m.iter()
                    .map(|(id, r)| {
                        (
                            id.clone(),
                            r.get("Type").and_then(Value::as_str).unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `DeletionPolicy` of a resource (Delete when absent, as in CloudFormation).
    pub fn deletion_policy(&self, logical_id: &str) -> String {
        section(&self.value, "Resources")
            .and_then(|m| m.get(logical_id))
            .and_then(|r| r.get("DeletionPolicy"))
            .and_then(Value::as_str)
            .unwrap_or("Delete")
            .to_string()
    }

    /// A hash of the body, for image inputs and approval digests.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.body.as_bytes()))
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn section<'a>(t: &'a Map<String, Value>, name: &str) -> Option<&'a Map<String, Value>> {
    t.get(name).and_then(Value::as_object)
}

#[cfg(test)]
mod tests;
