//! Reading a Web API request the way Slack reads it: query string, form body or JSON body
//! (whichever the client used), multipart uploads, and the `Retry-After` of a window.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::super::http_server::Request;

/// Query, then form or JSON body, merged. Form values holding JSON (`blocks`, `files`,
/// `attachments`) are decoded, as Slack does.
pub(super) fn params(req: &Request) -> Value {
    let mut map = Map::new();
    let mut add = |pairs: Vec<(String, String)>| {
        for (k, v) in pairs {
            let decoded = match k.as_str() {
                "blocks" | "attachments" | "files" => serde_json::from_str(&v).unwrap_or(Value::String(v)),
                _ => Value::String(v),
            };
            map.insert(k, decoded);
        }
    };
    add(req.query_params());
    let ct = req.header("content-type").unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("application/json") {
        if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(&req.body) {
            map.extend(o);
        }
    } else if ct.starts_with("application/x-www-form-urlencoded") || (ct.is_empty() && !req.body.is_empty()) {
        add(req.form_params());
    }
    Value::Object(map)
}

pub(super) fn string(p: &Value, key: &str) -> Option<String> {
    match &p[key] {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn flag(p: &Value, key: &str) -> bool {
    match &p[key] {
        Value::Bool(b) => *b,
        Value::String(s) => s == "true" || s == "1",
        Value::Number(n) => n.as_u64() == Some(1),
        _ => false,
    }
}

pub(super) fn array(p: &Value, key: &str) -> Option<Vec<Value>> {
    p[key].as_array().cloned()
}

pub(super) fn retry_after(window: Duration, oldest: Instant, now: Instant) -> u64 {
    let left = window.saturating_sub(now.duration_since(oldest));
    left.as_secs_f64().ceil().max(1.0) as u64
}

/// Splits a multipart body into (name, filename, bytes).
pub(super) fn multipart_parts(req: &Request) -> Vec<(String, Option<String>, Vec<u8>)> {
    let ct = req.header("content-type").unwrap_or("");
    let Some(boundary) = ct.split(';').find_map(|p| p.trim().strip_prefix("boundary=")) else {
        return Vec::new();
    };
    let d = format!("--{}", boundary.trim_matches('"')).into_bytes();
    let body = &req.body;
    let starts: Vec<usize> = (0..body.len().saturating_sub(d.len() - 1))
        .filter(|&i| body[i..].starts_with(&d))
        .collect();
    let mut parts = Vec::new();
    for w in starts.windows(2) {
        let chunk = &body[w[0] + d.len()..w[1]];
        let chunk = chunk.strip_prefix(b"\r\n").unwrap_or(chunk);
        let chunk = chunk.strip_suffix(b"\r\n").unwrap_or(chunk);
        let Some(split) = chunk.windows(4).position(|x| x == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&chunk[..split]).to_string();
        let field = |key: &str| {
            let pat = format!("{key}=\"");
            head.find(&pat).map(|s| {
                let rest = &head[s + pat.len()..];
                rest[..rest.find('"').unwrap_or(rest.len())].to_string()
            })
        };
        let name = field(" name").or_else(|| field(";name")).unwrap_or_default();
        parts.push((name, field("filename"), chunk[split + 4..].to_vec()));
    }
    parts
}
