//! Loading templates: one file read and shape-checked, `formations/` read as the image
//! template alone plus the merge of all the others, and the merge itself (one namespace of
//! logical ids across files; the merged result goes through `checks` before it is returned).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::checks::{check_limits, check_references, check_rule_references};
use super::strict::parse_strict;
use super::{section, Template, TemplateError, TemplateFile};

/// The template that builds the image instance; never merged with the others.
pub const IMAGE_TEMPLATE: &str = "image.json";

/// Sections whose keys share one namespace of logical ids across all merged files.
pub const MERGED_SECTIONS: &[&str] = &["Parameters", "Resources", "Outputs", "Conditions", "Mappings"];
const TOP_LEVEL_KEYS: &[&str] = &[
    "AWSTemplateFormatVersion",
    "Description",
    "Metadata",
    "Parameters",
    "Rules",
    "Mappings",
    "Conditions",
    "Transform",
    "Resources",
    "Outputs",
];

/// Reads and parses one file, rejecting duplicate keys anywhere in it.
pub fn load_file(path: &Path) -> Result<TemplateFile, TemplateError> {
    let text = std::fs::read_to_string(path).map_err(|e| TemplateError::Io {
        file: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    let body = parse_strict(&text).map_err(|e| TemplateError::Json {
        file: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    let Value::Object(body) = body else {
        return Err(TemplateError::Shape {
            file: path.to_path_buf(),
            message: "a template must be a JSON object".into(),
        });
    };
    for key in body.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            return Err(TemplateError::Shape {
                file: path.to_path_buf(),
                message: format!("unknown top-level section '{key}'"),
            });
        }
    }
    for name in MERGED_SECTIONS {
        if body.get(*name).is_some_and(|v| !v.is_object()) {
            return Err(TemplateError::Shape {
                file: path.to_path_buf(),
                message: format!("'{name}' must be an object"),
            });
        }
    }
    if let Some(resources) = section(&body, "Resources") {
        for (id, r) in resources {
            if !r.get("Type").is_some_and(Value::is_string) {
                return Err(TemplateError::Shape {
                    file: path.to_path_buf(),
                    message: format!("resource '{id}' has no Type"),
                });
            }
        }
    }
    Ok(TemplateFile {
        path: path.to_path_buf(),
        body,
    })
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Loads `formations/`: the image template alone, and every other `*.json` merged.
pub fn load_formations(dir: &Path) -> Result<(Template, Template), TemplateError> {
    let entries = std::fs::read_dir(dir).map_err(|e| TemplateError::Io {
        file: dir.to_path_buf(),
        message: format!("cannot list: {e}"),
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let image_path = dir.join(IMAGE_TEMPLATE);
    if !paths.contains(&image_path) {
        return Err(TemplateError::Io {
            file: image_path,
            message: "missing: the image template is required".into(),
        });
    }
    let image = merge(&[load_file(&image_path)?])?;
    let others: Vec<TemplateFile> = paths
        .iter()
        .filter(|p| **p != image_path)
        .map(|p| load_file(p))
        .collect::<Result<_, _>>()?;
    if others.is_empty() {
        return Err(TemplateError::Io {
            file: dir.to_path_buf(),
            message: "no templates to merge besides image.json".into(),
        });
    }
    Ok((image, merge(&others)?))
}

/// Merges templates, checking id clashes, references and CloudFormation's limits.
pub fn merge(files: &[TemplateFile]) -> Result<Template, TemplateError> {
    let mut out = Map::new();
    out.insert("AWSTemplateFormatVersion".into(), Value::String("2010-09-09".into()));
    let mut owner: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
    let mut descriptions = Vec::new();
    let mut rules_file = None;
    for file in files {
        if let Some(v) = file.body.get("AWSTemplateFormatVersion") {
            if v != "2010-09-09" {
                return Err(TemplateError::Shape {
                    file: file.path.clone(),
                    message: format!("unsupported AWSTemplateFormatVersion {v}"),
                });
            }
        }
        if let Some(Value::String(d)) = file.body.get("Description") {
            descriptions.push(d.clone());
        }
        for key in ["Metadata", "Rules", "Transform"] {
            if let Some(v) = file.body.get(key) {
                if out.insert(key.to_string(), v.clone()).is_some() {
                    return Err(TemplateError::Shape {
                        file: file.path.clone(),
                        message: format!("'{key}' may appear in only one merged template"),
                    });
                }
                if key == "Rules" {
                    rules_file = Some(file.path.clone());
                }
            }
        }
        for name in MERGED_SECTIONS {
            let Some(entries) = section(&file.body, name) else {
                continue;
            };
            let target = out.entry(name.to_string()).or_insert_with(|| Value::Object(Map::new()));
            let target = target.as_object_mut().expect("sections are objects");
            for (id, v) in entries {
                if let Some(first) = owner.get(id) {
                    return Err(TemplateError::Clash {
                        id: id.clone(),
                        first: first.clone(),
                        second: (file.path.clone(), name.to_string()),
                    });
                }
                owner.insert(id.clone(), (file.path.clone(), name.to_string()));
                target.insert(id.clone(), v.clone());
            }
        }
    }
    if !descriptions.is_empty() {
        out.insert("Description".into(), Value::String(descriptions.join(" ")));
    }
    let sources: BTreeMap<String, PathBuf> = owner.into_iter().map(|(id, (p, _))| (id, p)).collect();
    check_references(&out, &sources)?;
    check_rule_references(&out, rules_file.unwrap_or_default())?;
    let body = serde_json::to_string(&Value::Object(out.clone())).expect("a JSON value serializes");
    check_limits(&out, body.len())?;
    Ok(Template {
        body,
        value: out,
        sources,
    })
}
