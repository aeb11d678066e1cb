//! The query protocol's parameters (lists, filters, paging) and the XML helpers answers
//! are written with.

use super::*;

// ---------------------------------------------------------------------------------------------
// Query parameters, filters, XML helpers
// ---------------------------------------------------------------------------------------------

/// Elements of a query list: `Prefix.N.Rest=v` -> one map per N (ordered by N) of `Rest -> v`
/// (`Rest` is empty for scalar lists like `Owner.1`).
pub(super) fn member_list(p: &Params, prefix: &str) -> Vec<BTreeMap<String, String>> {
    let mut items: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
    let dotted = format!("{prefix}.");
    for (k, v) in p.range(dotted.clone()..) {
        let Some(rest) = k.strip_prefix(&dotted) else {
            break;
        };
        let (n, field) = rest.split_once('.').unwrap_or((rest, ""));
        if let Ok(n) = n.parse::<usize>() {
            items.entry(n).or_default().insert(field.to_string(), v.clone());
        }
    }
    items.into_values().collect()
}

pub(super) fn scalar_list(p: &Params, prefix: &str) -> Vec<String> {
    member_list(p, prefix)
        .into_iter()
        .filter_map(|m| m.get("").cloned())
        .collect()
}

pub(super) fn member_pairs(p: &Params, prefix: &str, key: &str, value: &str) -> Vec<(String, String)> {
    member_list(p, prefix)
        .into_iter()
        .map(|m| {
            (
                m.get(key).cloned().unwrap_or_default(),
                m.get(value).cloned().unwrap_or_default(),
            )
        })
        .collect()
}

/// `Filter.N.Name` / `Filter.N.Value.M` -> (name, values).
pub(super) fn filters(p: &Params) -> Result<Vec<(String, Vec<String>)>, AwsError> {
    let mut out = Vec::new();
    for m in member_list(p, "Filter") {
        let name = m
            .get("Name")
            .cloned()
            .ok_or_else(|| err("InvalidParameterValue", "The filter 'null' is invalid"))?;
        let mut values: Vec<(usize, String)> = m
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("Value.")
                    .and_then(|n| n.parse().ok())
                    .map(|n| (n, v.clone()))
            })
            .collect();
        values.sort();
        out.push((name, values.into_iter().map(|(_, v)| v).collect()));
    }
    Ok(out)
}

/// AND over filters, OR over a filter's values; values may use `*` and `?` wildcards.
/// `field` returns the attribute values for a filter name, or `None` for an unknown filter.
pub(super) fn filters_match(
    filters: &[(String, Vec<String>)],
    tags: &[(String, String)],
    field: impl Fn(&str) -> Option<Vec<String>>,
) -> Result<bool, AwsError> {
    for (name, values) in filters {
        let actual: Vec<String> = if let Some(key) = name.strip_prefix("tag:") {
            tags.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
        } else if name == "tag-key" {
            tags.iter().map(|(k, _)| k.clone()).collect()
        } else if name == "tag-value" {
            tags.iter().map(|(_, v)| v.clone()).collect()
        } else {
            field(name).ok_or_else(|| err("InvalidParameterValue", format!("The filter '{name}' is invalid")))?
        };
        if !actual.iter().any(|a| values.iter().any(|v| glob(v, a))) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// EC2 filter wildcard match (`*` any run, `?` one character).
pub(super) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

pub(super) fn paginate<T>(items: Vec<T>, p: &Params) -> Result<(Vec<T>, Option<String>), AwsError> {
    let start = match p.get("NextToken") {
        Some(t) => t
            .strip_prefix("ec2p1.")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| err("InvalidParameterValue", "Invalid value for nextToken"))?,
        None => 0,
    };
    let max = match p.get("MaxResults") {
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| err("InvalidParameterValue", "Invalid value for MaxResults"))?,
        None => usize::MAX,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let end = start.saturating_add(page.len());
    let next = (end < total).then(|| format!("ec2p1.{end}"));
    Ok((page, next))
}

pub(super) fn state_code(state: &str) -> u16 {
    match state {
        "pending" => 0,
        "running" => 16,
        "shutting-down" => 32,
        "terminated" => 48,
        "stopping" => 64,
        "stopped" => 80,
        _ => 0,
    }
}

pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn tag(name: &str, value: &str) -> String {
    format!("<{name}>{}</{name}>", esc(value))
}

pub(super) fn tag_set(tags: &[(String, String)]) -> String {
    if tags.is_empty() {
        return String::new();
    }
    let mut x = String::from("<tagSet>");
    for (k, v) in tags {
        x += &format!("<item>{}{}</item>", tag("key", k), tag("value", v));
    }
    x += "</tagSet>";
    x
}

pub(super) fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub(super) fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A deterministic UUID-shaped id from a sequence number and a salt.
pub(super) fn uuid(n: u64, salt: u64) -> String {
    let a = fnv(&format!("{salt}:{n}"));
    let b = fnv(&format!("{n}:{salt}:b"));
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}
