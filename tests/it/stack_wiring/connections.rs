//! Who connects to what: nginx upstreams, and the settings upstream Argos reads from the
//! modules the app role writes (database, knowledge server, NER, broker), each resolved to a
//! target group (or the client's own host) and a port.

use std::collections::{BTreeMap, BTreeSet};

use super::listeners::{module_args, role_files, role_tasks, Group};
use super::security_groups::database_port;
use super::upstream_argos as up;
use super::vars::{idents, jinja_exprs, lead_ident, Vars};
use super::{read, templates};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum To {
    Group(String),
    /// The client's own host (127.0.0.1 / localhost).
    Local,
}

#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub(crate) from: String,
    pub(crate) to: To,
    pub(crate) port: u16,
    pub(crate) what: String,
    /// The variables the client's setting is made of (for passwords).
    pub(crate) uses: BTreeSet<String>,
}

/// Where a host variable points: the stack outputs the engine passes (database_host,
/// knowledge_host), or a group's first host (`hostvars[groups['X'][0]]`).
fn host_target(vars: &Vars, name: &str, present: &BTreeSet<String>) -> Option<To> {
    match name {
        "database_host" => return Some(To::Group("database".into())),
        "knowledge_host" => return Some(To::Group("knowledge".into())),
        _ => {}
    }
    let def = vars.text(name)?;
    let i = def.find("groups['")?;
    let group = &def[i + 8..];
    let group = &group[..group.find('\'')?];
    Some(if present.contains(group) {
        To::Group(group.to_string())
    } else {
        To::Local
    })
}

/// Top-level statements of a Python settings template: `NAME = ...` (continued on indented
/// lines), by the name assigned.
fn statements(text: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let continued = line.starts_with([' ', '\t', ')', ']', '}']);
        if continued {
            if let Some(k) = &current {
                let s = out.get_mut(k).unwrap();
                s.push('\n');
                s.push_str(line);
            }
            continue;
        }
        current = None;
        if line.trim_start().starts_with('#') {
            continue;
        }
        if let Some((lhs, rhs)) = line.split_once('=') {
            let lhs = lhs.trim();
            if !rhs.starts_with('=')
                && !lhs.is_empty()
                && lhs.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                out.insert(lhs.to_string(), rhs.to_string());
                current = Some(lhs.to_string());
            }
        }
    }
    out
}

/// The Jinja variables a statement is made of, following the module's own names.
fn uses(stmts: &BTreeMap<String, String>, key: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut todo = vec![key.to_string()];
    while let Some(k) = todo.pop() {
        if !seen.insert(k.clone()) {
            continue;
        }
        let Some(s) = stmts.get(&k) else { continue };
        for e in jinja_exprs(s) {
            for w in idents(&e) {
                out.insert(w);
            }
        }
        let outside: String = {
            let mut t = s.clone();
            for e in jinja_exprs(s) {
                t = t.replace(&e, "");
            }
            t
        };
        for w in idents(&outside) {
            if stmts.contains_key(&w) && w != k {
                todo.push(w);
            }
        }
    }
    out
}

/// The settings modules the app role writes: module name (file stem) → template text.
fn settings_modules(vars: &Vars) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for t in role_tasks("app") {
        let Some(a) = module_args(&t, "template") else { continue };
        let src = a["src"].as_str().unwrap();
        let dest = vars.expand(a["dest"].as_str().unwrap());
        let app_dir = vars.expand("{{ app_dir }}");
        let rel = dest.strip_prefix(&format!("{app_dir}/")).unwrap_or(&dest).to_string();
        let Some(stem) = rel
            .strip_prefix(&format!("{}/", up::CONF_PACKAGE_DIR))
            .and_then(|f| f.strip_suffix(".py"))
        else {
            panic!(
                "the app role writes {src} to {dest}, outside upstream's {} package",
                up::CONF_PACKAGE_DIR
            )
        };
        let text = read(&format!("playbooks/roles/app/templates/{src}"));
        out.insert(stem.to_string(), (src.to_string(), text));
    }
    out
}

pub(crate) fn connections(vars: &Vars, groups: &[Group], present: &BTreeSet<String>) -> Vec<Connection> {
    let mut out = Vec::new();
    let modules = settings_modules(vars);
    for g in groups.iter().filter(|g| present.contains(&g.name)) {
        for role in &g.roles {
            // nginx upstreams.
            for (file, text) in role_files(role, "templates") {
                let mut in_upstream = false;
                for l in text.lines().map(str::trim) {
                    if l.starts_with("upstream ") {
                        in_upstream = true;
                    } else if l == "}" {
                        in_upstream = false;
                    } else if let (true, Some(addr)) = (in_upstream, l.strip_prefix("server ")) {
                        let addr = addr.trim_end_matches(';');
                        let (host, port) = addr.rsplit_once(':').unwrap();
                        let host_var = lead_ident(&jinja_exprs(host)[0]).to_string();
                        out.push(Connection {
                            from: g.name.clone(),
                            to: host_target(vars, &host_var, present).unwrap_or(To::Local),
                            port: vars.port(port).unwrap(),
                            what: format!("nginx proxies to {addr} ({role}/templates/{file})"),
                            uses: BTreeSet::from([host_var]),
                        });
                    }
                }
            }
        }
        if !g.roles.iter().any(|r| r == "app") {
            continue;
        }
        let mut settings = vec![&up::DATABASE, &up::KNOWLEDGE, &up::NER];
        if g.runs_celery {
            settings.push(&up::BROKER);
        }
        for s in settings {
            let (module, key) = match s.namespace {
                "galaxy_conf" => ("app", format!("galaxy_conf.{}", s.name)),
                ns => (
                    up::CONF_MODULES
                        .iter()
                        .copied()
                        .find(|m| m.to_uppercase() == ns)
                        .unwrap(),
                    s.name.to_string(),
                ),
            };
            let reads = format!("{}['{}']", s.namespace, s.name);
            let Some((src, text)) = modules.get(module) else {
                out.push(Connection {
                    from: g.name.clone(),
                    to: To::Local,
                    port: s.default.1,
                    what: format!(
                        "{reads}: the app role writes no argos/conf/{module}.py, so upstream's default {} applies",
                        s.default_text
                    ),
                    uses: BTreeSet::new(),
                });
                continue;
            };
            let stmts = statements(text);
            if !stmts.contains_key(&key) {
                let lower = stmts
                    .keys()
                    .filter(|k| {
                        up::CELERY_4_NAMES.iter().any(|(l, u)| k == l && *u == s.name)
                            || k.eq_ignore_ascii_case(s.name)
                            || k.ends_with(&format!("_{}", s.name))
                    })
                    .map(|k| format!(" (it sets {k}, which the loader does not read)"))
                    .collect::<String>();
                out.push(Connection {
                    from: g.name.clone(),
                    to: To::Local,
                    port: s.default.1,
                    what: format!(
                        "upstream reads {reads}, which {src} does not set{lower}; upstream's default is {}",
                        s.default_text
                    ),
                    uses: BTreeSet::new(),
                });
                continue;
            }
            let used = uses(&stmts, &key);
            let to = used
                .iter()
                .find_map(|v| host_target(vars, v, present))
                .unwrap_or(To::Local);
            let port = if s.name == up::KNOWLEDGE.name {
                up::FUSEKI_PORT
            } else {
                match used.iter().find(|v| v.ends_with("_port")) {
                    // The stack output DatabasePort: the database's own port (checked below).
                    Some(v) if v == "database_port" => database_port(&templates().1),
                    Some(v) => vars.port(v).unwrap(),
                    None => s.default.1,
                }
            };
            let how = if s.name == up::KNOWLEDGE.name {
                format!(
                    " (upstream queries http://<{reads}>:{}/{}/query)",
                    up::FUSEKI_PORT,
                    up::FUSEKI_DATASET
                )
            } else {
                String::new()
            };
            out.push(Connection {
                from: g.name.clone(),
                to,
                port,
                what: format!("{reads} from {src}{how}"),
                uses: used,
            });
        }
    }
    out
}
