//! CloudFormation templates: strict JSON loading (duplicate keys are errors), the merge of
//! every file in `formations/` except `image.json` into one template, CloudFormation's size
//! limits, and a reference check so a dangling `Ref` fails here rather than in AWS.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

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

/// CloudFormation's documented quotas for one template.
pub const MAX_RESOURCES: usize = 500;
pub const MAX_PARAMETERS: usize = 200;
pub const MAX_OUTPUTS: usize = 200;
pub const MAX_MAPPINGS: usize = 200;
/// Largest template body that may be passed inline (TemplateBody) rather than via S3.
pub const MAX_BODY_BYTES: usize = 51_200;

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

fn count(t: &Map<String, Value>, name: &str) -> usize {
    section(t, name).map_or(0, Map::len)
}

fn check_limits(t: &Map<String, Value>, body_len: usize) -> Result<(), TemplateError> {
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
fn check_references(t: &Map<String, Value>, sources: &BTreeMap<String, PathBuf>) -> Result<(), TemplateError> {
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
fn check_rule_references(t: &Map<String, Value>, file: PathBuf) -> Result<(), TemplateError> {
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

/// Parses JSON like serde_json, but a key repeated within one object is an error.
pub fn parse_strict(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = StrictValue::deserialize(&mut de)?;
    de.end()?;
    Ok(v.0)
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(StrictValue(Value::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut m = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if m.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key \"{key}\"")));
            }
            let StrictValue(v) = map.next_value()?;
            m.insert(key, v);
        }
        Ok(StrictValue(Value::Object(m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(name: &str, v: Value) -> TemplateFile {
        TemplateFile {
            path: PathBuf::from(name),
            body: v.as_object().unwrap().clone(),
        }
    }

    fn sg(group: &str) -> Value {
        json!({"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": group}})
    }

    #[test]
    fn duplicate_keys_are_errors_with_position() {
        let err = parse_strict("{\n  \"a\": 1,\n  \"a\": 2\n}").unwrap_err();
        assert!(err.to_string().contains("duplicate key \"a\""), "{err}");
        assert_eq!(err.line(), 3);
        assert!(parse_strict("{\"a\": {\"b\": 1, \"b\": 1}}").is_err());
        assert!(parse_strict("{\"a\": [{\"b\": 1}, {\"b\": 1}]}").is_ok());
    }

    #[test]
    fn merges_sections_and_keeps_sources() {
        let a = file(
            "a.json",
            json!({"Parameters": {"P": {"Type": "String"}}, "Resources": {"A": sg("a")}}),
        );
        let b = file(
            "b.json",
            json!({"Resources": {"B": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": {"Ref": "P"}}}}, "Outputs": {"O": {"Value": {"Fn::GetAtt": ["A", "GroupId"]}}}}),
        );
        let t = merge(&[a, b]).unwrap();
        assert_eq!(t.resources().len(), 2);
        assert_eq!(t.sources["B"], PathBuf::from("b.json"));
        assert_eq!(t.parameters()[0].name, "P");
        assert!(t.body.len() < MAX_BODY_BYTES);
    }

    #[test]
    fn a_clash_names_both_files_even_across_sections() {
        let a = file("a.json", json!({"Resources": {"Thing": sg("a")}}));
        let b = file(
            "b.json",
            json!({"Outputs": {"Thing": {"Value": "x"}}, "Resources": {"B": sg("b")}}),
        );
        let err = merge(&[a, b]).unwrap_err().to_string();
        assert!(
            err.contains("'Thing'") && err.contains("a.json") && err.contains("b.json"),
            "{err}"
        );
    }

    #[test]
    fn dangling_references_are_caught() {
        let cases = [
            json!({"Resources": {"A": {"Type": "T", "Properties": {"X": {"Ref": "Nope"}}}}}),
            json!({"Resources": {"A": {"Type": "T", "Properties": {"X": {"Fn::GetAtt": ["Nope", "Id"]}}}}}),
            json!({"Resources": {"A": {"Type": "T", "Properties": {"X": {"Fn::Sub": "${Nope}-x"}}}}}),
            json!({"Resources": {"A": {"Type": "T", "Condition": "Nope"}}}),
            json!({"Resources": {"A": {"Type": "T", "DependsOn": ["Nope"]}}}),
        ];
        for c in cases {
            let err = merge(&[file("x.json", c.clone())]).unwrap_err().to_string();
            assert!(err.contains("Nope") && err.contains("x.json"), "{c}: {err}");
        }
        let ok = json!({"Parameters": {"P": {"Type": "String"}}, "Resources": {"A": {"Type": "T", "Properties": {
            "X": {"Fn::Sub": "${P}-${AWS::Region}-${!Literal}-${A.Arn}"},
            "Y": {"Fn::Sub": ["${v}", {"v": "1"}]}, "Z": {"Ref": "AWS::StackName"}}}}});
        merge(&[file("ok.json", ok)]).unwrap();
    }

    #[test]
    fn limits_are_enforced() {
        let mut resources = Map::new();
        for i in 0..=MAX_RESOURCES {
            resources.insert(format!("R{i}"), json!({"Type": "T"}));
        }
        let err = merge(&[file("big.json", json!({ "Resources": resources }))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("501 resources"), "{err}");

        let mut params = Map::new();
        for i in 0..=MAX_PARAMETERS {
            params.insert(format!("P{i}"), json!({"Type": "String"}));
        }
        let err = merge(&[file(
            "p.json",
            json!({"Parameters": params, "Resources": {"A": {"Type": "T"}}}),
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains("201 parameters"), "{err}");

        let long = "x".repeat(MAX_BODY_BYTES);
        let err = merge(&[file(
            "l.json",
            json!({"Resources": {"A": {"Type": "T", "Metadata": long}}}),
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains("bytes"), "{err}");
    }
}

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

#[cfg(test)]
mod condition_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_only_resources_whose_condition_holds() {
        let body = json!({
            "Parameters": {"EnableBroker": {"Type": "String"}, "WorkerCount": {"Type": "Number"}},
            "Conditions": {
                "BrokerEnabled": {"Fn::Equals": [{"Ref": "EnableBroker"}, "true"]},
                "WorkersEnabled": {"Fn::Not": [{"Fn::Or": [{"Fn::Equals": [{"Ref": "WorkerCount"}, "0"]}, {"Fn::Equals": [{"Ref": "WorkerCount"}, 0]}]}]},
                "Both": {"Fn::And": [{"Condition": "BrokerEnabled"}, {"Condition": "WorkersEnabled"}]}
            },
            "Resources": {"A": {"Type": "T"}, "B": {"Type": "T", "Condition": "BrokerEnabled"}, "W": {"Type": "T", "Condition": "WorkersEnabled"}, "X": {"Type": "T", "Condition": "Both"}}
        });
        let t = merge(&[TemplateFile {
            path: "t.json".into(),
            body: body.as_object().unwrap().clone(),
        }])
        .unwrap();
        let p = |b: &str, w: &str| {
            BTreeMap::from([
                ("EnableBroker".to_string(), b.to_string()),
                ("WorkerCount".to_string(), w.to_string()),
            ])
        };
        assert_eq!(t.active_resources(&p("false", "0")), 1);
        assert_eq!(t.active_resources(&p("true", "0")), 2);
        assert_eq!(t.active_resources(&p("true", "2")), 4);
        assert!(t.resource_active("W", &p("false", "2")));
        assert!(!t.resource_active("X", &p("false", "2")));
        assert!(!t.resource_active("Nope", &p("true", "2")));
        assert_eq!(t.condition_holds("Both", &p("true", "2")), Some(true));
        assert_eq!(t.condition_holds("Nope", &p("true", "2")), None);
    }

    fn one(body: Value) -> Result<Template, TemplateError> {
        merge(&[TemplateFile {
            path: "r.json".into(),
            body: body.as_object().unwrap().clone(),
        }])
    }

    #[test]
    fn a_joined_list_parameter_can_be_tested_for_emptiness() {
        let t = one(json!({
            "Parameters": {"Subnets": {"Type": "CommaDelimitedList", "Default": ""}},
            "Conditions": {"HasSubnets": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "Subnets"}]}, ""]}]}},
            "Resources": {"G": {"Type": "T", "Condition": "HasSubnets"}, "A": {"Type": "T"}}
        }))
        .unwrap();
        let p = |v: &str| BTreeMap::from([("Subnets".to_string(), v.to_string())]);
        assert_eq!(t.condition_holds("HasSubnets", &p("")), Some(false));
        assert_eq!(t.condition_holds("HasSubnets", &p("subnet-a,subnet-b")), Some(true));
        assert_eq!(t.active_resources(&p("")), 1);
    }

    #[test]
    fn rules_refuse_what_their_assertions_forbid() {
        let body = json!({
            "Parameters": {"EnableBroker": {"Type": "String"}, "WorkerCount": {"Type": "Number"}},
            "Rules": {"WorkersNeedBroker": {
                "RuleCondition": {"Fn::Not": [{"Fn::Equals": [{"Ref": "WorkerCount"}, "0"]}]},
                "Assertions": [{"Assert": {"Fn::Equals": [{"Ref": "EnableBroker"}, "true"]}, "AssertDescription": "workers need the broker"}]
            }},
            "Resources": {"A": {"Type": "T"}}
        });
        let t = one(body.clone()).unwrap();
        let p = |b: &str, w: &str| {
            BTreeMap::from([
                ("EnableBroker".to_string(), b.to_string()),
                ("WorkerCount".to_string(), w.to_string()),
            ])
        };
        assert_eq!(
            t.rule_violations(&p("false", "2")),
            ["WorkersNeedBroker: workers need the broker"]
        );
        assert!(t.rule_violations(&p("true", "2")).is_empty());
        assert!(t.rule_violations(&p("false", "0")).is_empty());

        let mut dangling = body;
        dangling["Rules"]["WorkersNeedBroker"]["Assertions"][0]["Assert"]["Fn::Equals"][0] = json!({"Ref": "Nope"});
        let err = one(dangling).unwrap_err().to_string();
        assert!(err.contains("Rules.WorkersNeedBroker") && err.contains("Nope"), "{err}");
    }
}
