//! The stack's wiring, derived from the merged template (through the crate's merge API) and
//! from the playbooks' variables and templates, never written down twice: every connection
//! between roles (front → api, the app's hosts → database, → the knowledge server's Fuseki
//! and NER, → broker) must go to a port on which the target's playbook makes a service
//! listen, reachable from other hosts, and be allowed by the target's security group from
//! exactly the source's group; every ingress rule must serve such a connection (or be the
//! front's public HTTP, or SSH from `AllowedSshCidr`). The app's side of a connection is the
//! setting upstream Argos reads (see `upstream_argos`): a name it does not read leaves the app
//! on upstream's default, `localhost`.
//!
//! Checked for every switch of the template that changes the wiring (broker on/off, workers
//! on/off); a combination the template's `Rules` refuse is not deployable and is skipped.
mod upstream_argos;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use argos::cloud::template::{load_formations, Template};
use serde_json::Value;
use upstream_argos as up;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn templates() -> (Template, Template) {
    load_formations(&repo().join("formations")).expect("formations/ merges")
}

// ---------------------------------------------------------------------------------------------
// Ansible variables: role defaults, then group_vars/all.yml (which wins, as in Ansible).

struct Vars(BTreeMap<String, Value>);

impl Vars {
    fn load() -> Vars {
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

    fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The port an expression stands for: `5000`, `{{ gunicorn_port }}`,
    /// `{{ fuseki_port | default(3030) | int }}`.
    fn port(&self, expr: &str) -> Result<u16, String> {
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
    fn expand(&self, text: &str) -> String {
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
fn jinja_exprs(text: &str) -> Vec<String> {
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

fn lead_ident(expr: &str) -> &str {
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
fn idents(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_'))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The playbooks: which roles each group runs, what listens where, who connects to what.

#[derive(Debug, Clone)]
struct Listener {
    port: u16,
    /// Reachable from other hosts (not only loopback).
    remote: bool,
    /// The variable a client must present (Redis `requirepass`).
    auth: Option<String>,
    what: String,
    note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum To {
    Group(String),
    /// The client's own host (127.0.0.1 / localhost).
    Local,
}

#[derive(Debug, Clone)]
struct Connection {
    from: String,
    to: To,
    port: u16,
    what: String,
    /// The variables the client's setting is made of (for passwords).
    uses: BTreeSet<String>,
}

struct Group {
    name: String,
    roles: Vec<String>,
    listeners: Vec<Listener>,
    /// nginx `listen` ports: the stack's public entry.
    public_ports: Vec<u16>,
    runs_celery: bool,
}

fn role_files(role: &str, sub: &str) -> Vec<(String, String)> {
    let dir = repo().join(format!("playbooks/roles/{role}/{sub}"));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return vec![];
    };
    let mut out: Vec<_> = entries
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let text = std::fs::read_to_string(e.path()).unwrap();
            (name, text)
        })
        .collect();
    out.sort();
    out
}

fn role_tasks(role: &str) -> Vec<Value> {
    let rel = format!("playbooks/roles/{role}/tasks/main.yml");
    if !repo().join(&rel).exists() {
        return vec![];
    }
    match yaml(&rel) {
        Value::Array(a) => a,
        _ => vec![],
    }
}

fn module_args<'a>(task: &'a Value, module: &str) -> Option<&'a Value> {
    task.get(format!("ansible.builtin.{module}"))
        .or_else(|| task.get(module))
}

fn groups(vars: &Vars) -> Vec<Group> {
    let mut out = Vec::new();
    let mut books: Vec<_> = std::fs::read_dir(repo().join("playbooks"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yml") && n != "image.yml")
        .collect();
    books.sort();
    for book in books {
        let plays = yaml(&format!("playbooks/{book}"));
        for play in plays.as_array().unwrap() {
            let name = play["hosts"].as_str().unwrap().to_string();
            let roles: Vec<String> = play["roles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().or_else(|| r["role"].as_str()).unwrap().to_string())
                .collect();
            let mut g = Group {
                name,
                roles: roles.clone(),
                listeners: vec![],
                public_ports: vec![],
                runs_celery: false,
            };
            for role in &roles {
                scan_role(vars, role, &mut g);
            }
            out.push(g);
        }
    }
    out
}

fn scan_role(vars: &Vars, role: &str, g: &mut Group) {
    for (file, text) in role_files(role, "templates") {
        if file.ends_with(".service.j2") {
            let exec = text
                .lines()
                .find_map(|l| l.strip_prefix("ExecStart="))
                .unwrap_or_else(|| panic!("{role}/templates/{file} has no ExecStart"));
            g.runs_celery |= exec.contains("/bin/celery");
            let loopback = exec.contains("127.0.0.1") || exec.contains("--localhost");
            for e in jinja_exprs(exec) {
                let name = lead_ident(&e);
                if name.ends_with("_port") {
                    g.listeners.push(Listener {
                        port: vars.port(name).unwrap(),
                        remote: !loopback,
                        auth: None,
                        what: format!("{} ({role} role, {name})", file.trim_end_matches(".j2")),
                        note: None,
                    });
                }
            }
        }
        if file.ends_with(".conf.j2") && text.contains("server {") {
            for l in text.lines().map(str::trim) {
                if let Some(rest) = l.strip_prefix("listen ") {
                    let first = rest.split_whitespace().next().unwrap_or("").trim_end_matches(';');
                    if let Ok(port) = first.parse::<u16>() {
                        g.public_ports.push(port);
                        g.listeners.push(Listener {
                            port,
                            remote: true,
                            auth: None,
                            what: format!("nginx ({role} role)"),
                            note: None,
                        });
                    }
                }
            }
        }
    }
    // Redis: configured through lineinfile on redis.conf, or installed with Ubuntu's defaults.
    let tasks = role_tasks(role);
    let redis_lines: Vec<String> = tasks
        .iter()
        .filter_map(|t| module_args(t, "lineinfile"))
        .filter(|a| a["path"].as_str().is_some_and(|p| p.contains("redis")))
        .filter_map(|a| a["line"].as_str().map(str::to_string))
        .collect();
    let installs_redis = tasks.iter().filter_map(|t| module_args(t, "apt")).any(|a| {
        let name = match &a["name"] {
            Value::String(s) if s.contains("{{") => vars
                .0
                .get(lead_ident(&jinja_exprs(s)[0]))
                .cloned()
                .unwrap_or(Value::Null),
            other => other.clone(),
        };
        match name {
            Value::String(s) => s == "redis-server",
            Value::Array(a) => a.iter().any(|v| v == "redis-server"),
            _ => false,
        }
    });
    if !redis_lines.is_empty() {
        let port_line = redis_lines.iter().find_map(|l| l.strip_prefix("port "));
        let port = port_line.map_or(Ok(6379), |p| vars.port(p)).unwrap();
        let bind = redis_lines.iter().find_map(|l| l.strip_prefix("bind "));
        let binds_remote = bind.is_some_and(|b| {
            b.split_whitespace()
                .any(|a| !["127.0.0.1", "::1", "-::1", "localhost"].contains(&a))
        });
        let auth = redis_lines
            .iter()
            .find_map(|l| l.strip_prefix("requirepass "))
            .map(|p| lead_ident(&jinja_exprs(p).into_iter().next().unwrap_or_default()).to_string())
            .filter(|p| !p.is_empty());
        let protected_off = redis_lines.iter().any(|l| l.trim() == "protected-mode no");
        let protected = binds_remote && auth.is_none() && !protected_off;
        g.listeners.push(Listener {
            port,
            remote: binds_remote && !protected,
            auth,
            what: format!("redis ({role} role)"),
            note: protected.then(|| {
                "it binds a private address but sets no requirepass: Redis 7's protected mode then refuses every client but loopback".to_string()
            }),
        });
    } else if installs_redis {
        // Ubuntu's redis.conf: bind 127.0.0.1 -::1, port 6379.
        g.listeners.push(Listener {
            port: 6379,
            remote: false,
            auth: None,
            what: format!("local redis-server ({role} role, Ubuntu's defaults)"),
            note: None,
        });
    }
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

fn connections(vars: &Vars, groups: &[Group], present: &BTreeSet<String>) -> Vec<Connection> {
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

// ---------------------------------------------------------------------------------------------
// The template: each group's compute resource and security groups, and every ingress rule.

fn props(r: &Value) -> &Value {
    &r["Properties"]
}

fn tag(tags: &Value, key: &str) -> Option<String> {
    tags.as_array()?
        .iter()
        .find(|t| t["Key"] == key)
        .and_then(|t| t["Value"].as_str())
        .map(str::to_string)
}

fn sg_ref(v: &Value) -> Option<String> {
    if let Some(a) = v.get("Fn::GetAtt").and_then(Value::as_array) {
        return a.first().and_then(Value::as_str).map(str::to_string);
    }
    v.get("Ref").and_then(Value::as_str).map(str::to_string)
}

fn sg_list(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(sg_ref).collect()
}

fn resources(t: &Template) -> &serde_json::Map<String, Value> {
    t.value["Resources"].as_object().unwrap()
}

/// group → (the resource whose condition decides whether the group exists, its security groups)
fn group_resources(t: &Template) -> BTreeMap<String, (String, Vec<String>)> {
    let res = resources(t);
    let mut out = BTreeMap::new();
    for (id, r) in res {
        let p = props(r);
        match r["Type"].as_str().unwrap() {
            "AWS::EC2::Instance" => {
                let group = tag(&p["Tags"], "Group").unwrap_or_else(|| panic!("{id} has no Group tag"));
                out.insert(group, (id.clone(), sg_list(&p["SecurityGroupIds"])));
            }
            "AWS::AutoScaling::AutoScalingGroup" => {
                let group = tag(&p["Tags"], "Group").unwrap_or_else(|| panic!("{id} has no Group tag"));
                let lt = sg_ref(&p["LaunchTemplate"]["LaunchTemplateId"]).unwrap();
                let sgs = sg_list(&res[&lt]["Properties"]["LaunchTemplateData"]["SecurityGroupIds"]);
                out.insert(group, (id.clone(), sgs));
            }
            "AWS::RDS::DBInstance" => {
                out.insert("database".into(), (id.clone(), sg_list(&p["VPCSecurityGroups"])));
            }
            _ => {}
        }
    }
    out
}

fn database_id(t: &Template) -> String {
    group_resources(t)["database"].0.clone()
}

/// The port RDS listens on: `Port`, else the engine's default (5432 for postgres).
fn database_port(t: &Template) -> u16 {
    let db = &resources(t)[&database_id(t)]["Properties"];
    match &db["Port"] {
        Value::Null => {
            assert_eq!(
                db["Engine"], "postgres",
                "the database's default port is known for postgres only"
            );
            5432
        }
        Value::String(s) => s.parse().unwrap(),
        v => v.as_u64().unwrap() as u16,
    }
}

#[derive(Debug, Clone)]
enum Source {
    Sg(String),
    Cidr(String),
    /// A CIDR from a parameter.
    CidrParam(String),
}

#[derive(Debug, Clone)]
struct Ingress {
    /// The resource holding the rule (its condition applies).
    resource: String,
    sg: String,
    from: i64,
    to: i64,
    proto: String,
    source: Source,
}

fn ingress_rules(t: &Template) -> Vec<Ingress> {
    let parse = |resource: &str, sg: &str, rule: &Value| -> Ingress {
        let source = if let Some(s) = rule.get("SourceSecurityGroupId") {
            Source::Sg(sg_ref(s).expect("SourceSecurityGroupId names a group of the stack"))
        } else {
            match &rule["CidrIp"] {
                Value::String(s) => Source::Cidr(s.clone()),
                v if v.get("Ref").is_some() => Source::CidrParam(v["Ref"].as_str().unwrap().to_string()),
                v if v.get("Fn::Sub").is_some() => {
                    let s = v["Fn::Sub"].as_str().unwrap();
                    match s.strip_prefix("${").and_then(|s| s.strip_suffix('}')) {
                        Some(p) if !p.contains('$') => Source::CidrParam(p.to_string()),
                        _ => Source::Cidr(s.to_string()),
                    }
                }
                other => panic!("{resource}: an ingress rule without a source: {other}"),
            }
        };
        Ingress {
            resource: resource.to_string(),
            sg: sg.to_string(),
            from: rule["FromPort"].as_i64().unwrap_or(-1),
            to: rule["ToPort"].as_i64().unwrap_or(-1),
            proto: rule["IpProtocol"].as_str().unwrap_or("tcp").to_string(),
            source,
        }
    };
    let mut out = Vec::new();
    for (id, r) in resources(t) {
        match r["Type"].as_str().unwrap() {
            "AWS::EC2::SecurityGroup" => {
                for rule in props(r)["SecurityGroupIngress"].as_array().into_iter().flatten() {
                    out.push(parse(id, id, rule));
                }
            }
            "AWS::EC2::SecurityGroupIngress" => {
                let sg = sg_ref(&props(r)["GroupId"]).unwrap();
                out.push(parse(id, &sg, props(r)));
            }
            _ => {}
        }
    }
    out
}

impl Ingress {
    fn covers(&self, port: u16) -> bool {
        (self.proto == "tcp" || self.proto == "-1")
            && (self.from == -1 || (self.from <= port as i64 && port as i64 <= self.to))
    }
}

// ---------------------------------------------------------------------------------------------

/// The switches that change the wiring, as (label, parameter values).
fn scenarios(t: &Template) -> Vec<(String, BTreeMap<String, String>)> {
    let base: BTreeMap<String, String> = t
        .parameters()
        .into_iter()
        .map(|p| (p.name, p.default.unwrap_or_else(|| "unset".into())))
        .collect();
    let mut out = Vec::new();
    for (broker, workers) in [("false", "0"), ("true", "0"), ("false", "2"), ("true", "2")] {
        let mut p = base.clone();
        p.insert("EnableBroker".into(), broker.into());
        p.insert("WorkerCount".into(), workers.into());
        let label = format!(
            "broker {}, {} workers",
            if broker == "true" { "on" } else { "off" },
            workers
        );
        out.push((label, p));
    }
    out
}

/// Every mismatch, each with the scenarios it shows in.
fn wiring_mismatches() -> (Vec<String>, Vec<String>) {
    let (_, t) = templates();
    let vars = Vars::load();
    let groups = groups(&vars);
    let compute = group_resources(&t);
    let rules = ingress_rules(&t);
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut refused = Vec::new();
    let mut fail = |label: &str, msg: String| found.entry(msg).or_default().push(label.to_string());

    for g in &groups {
        if !compute.contains_key(&g.name) {
            fail(
                "all",
                format!(
                    "playbooks/{}.yml configures group '{}', which no resource of the template has (Group tag)",
                    g.name, g.name
                ),
            );
        }
    }
    // The hosts the engine passes come from the right resources.
    let outputs = &t.value["Outputs"];
    let db = database_id(&t);
    for (out_name, res, att) in [
        ("DatabaseHost", db.as_str(), "Endpoint.Address"),
        ("DatabasePort", db.as_str(), "Endpoint.Port"),
        ("KnowledgeHost", compute["knowledge"].0.as_str(), "PrivateIp"),
    ] {
        let v = &outputs[out_name]["Value"]["Fn::GetAtt"];
        if v[0] != res || v[1] != att {
            fail(
                "all",
                format!(
                    "output {out_name} must be GetAtt [{res}, {att}] (deploy passes it to the playbooks); it is {v}"
                ),
            );
        }
    }

    for (label, params) in scenarios(&t) {
        let refusals = t.rule_violations(&params);
        if !refusals.is_empty() {
            refused.push(format!("{label}: {}", refusals.join("; ")));
            continue;
        }
        let present: BTreeSet<String> = compute
            .iter()
            .filter(|(_, (res, _))| t.resource_active(res, &params))
            .map(|(g, _)| g.clone())
            .collect();
        let sgs_of = |g: &str| -> Vec<String> { compute.get(g).map(|c| c.1.clone()).unwrap_or_default() };
        let group_of_sg = |sg: &str| -> Vec<String> {
            compute
                .iter()
                .filter(|(g, c)| present.contains(*g) && c.1.iter().any(|s| s == sg))
                .map(|(g, _)| g.clone())
                .collect()
        };
        let listeners = |g: &str| -> Vec<Listener> {
            if g == "database" {
                return vec![Listener {
                    port: database_port(&t),
                    remote: true,
                    auth: None,
                    what: "RDS postgres".into(),
                    note: None,
                }];
            }
            groups
                .iter()
                .find(|x| x.name == g)
                .map(|x| x.listeners.clone())
                .unwrap_or_default()
        };
        let active: Vec<&Ingress> = rules
            .iter()
            .filter(|r| t.resource_active(&r.resource, &params))
            .collect();
        let conns = connections(&vars, &groups, &present);

        for c in &conns {
            match &c.to {
                To::Local => {
                    let local = listeners(&c.from);
                    if !local.iter().any(|l| l.port == c.port) {
                        fail(
                            &label,
                            format!(
                                "{} → localhost:{}: {}; nothing the {} playbook installs listens on {} there",
                                c.from, c.port, c.what, c.from, c.port
                            ),
                        );
                    }
                }
                To::Group(target) => {
                    let here = listeners(target);
                    let Some(l) = here.iter().find(|l| l.port == c.port) else {
                        let ports: Vec<String> = here.iter().map(|l| format!("{} ({})", l.port, l.what)).collect();
                        fail(
                            &label,
                            format!(
                                "{} → {target}:{}: {}; but on {target} the playbooks make services listen on [{}]",
                                c.from,
                                c.port,
                                c.what,
                                ports.join(", ")
                            ),
                        );
                        continue;
                    };
                    if !l.remote {
                        fail(
                            &label,
                            format!(
                                "{} → {target}:{}: {} listens for loopback clients only{}",
                                c.from,
                                c.port,
                                l.what,
                                l.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
                            ),
                        );
                    }
                    if let Some(pw) = &l.auth {
                        if !c.uses.contains(pw) {
                            fail(
                                &label,
                                format!(
                                    "{} → {target}:{}: {} requires the password {pw}, which {} does not carry",
                                    c.from, c.port, l.what, c.what
                                ),
                            );
                        }
                    }
                    let from_sgs = sgs_of(&c.from);
                    let target_sgs = sgs_of(target);
                    let allowed = active.iter().any(|r| {
                        target_sgs.contains(&r.sg)
                            && r.covers(c.port)
                            && matches!(&r.source, Source::Sg(s) if from_sgs.contains(s))
                    });
                    if !allowed {
                        fail(
                            &label,
                            format!(
                                "{} → {target}:{} ({}): no ingress rule of {} allows tcp {} from {}",
                                c.from,
                                c.port,
                                c.what,
                                target_sgs.join("/"),
                                c.port,
                                from_sgs.join("/")
                            ),
                        );
                    }
                }
            }
        }

        // Every ingress rule serves a connection (or the public entry, or SSH).
        for r in &active {
            let owners = group_of_sg(&r.sg);
            let ports = if r.from == r.to {
                r.from.to_string()
            } else {
                format!("{}-{}", r.from, r.to)
            };
            match &r.source {
                Source::CidrParam(p) if r.from == 22 && r.to == 22 => {
                    if p != "AllowedSshCidr" {
                        fail(
                            &label,
                            format!("{}: SSH from parameter {p}, not AllowedSshCidr", r.resource),
                        );
                    }
                }
                Source::Cidr(c) if r.from == 22 && r.to == 22 => {
                    fail(
                        &label,
                        format!("{}: SSH from the literal {c}; use AllowedSshCidr", r.resource),
                    );
                }
                Source::Cidr(c) | Source::CidrParam(c) => {
                    let public = owners.iter().any(|g| {
                        groups
                            .iter()
                            .any(|x| &x.name == g && x.public_ports.iter().any(|p| r.covers(*p) && r.from == r.to))
                    });
                    if !public {
                        let ls: Vec<String> = owners
                            .iter()
                            .flat_map(|g| listeners(g))
                            .map(|l| format!("{} ({})", l.port, l.what))
                            .collect();
                        fail(&label, format!(
                            "{} opens tcp {ports} of {} to {c}; only the front's nginx ports are public, and on {} the playbooks listen on [{}]",
                            r.resource, owners.join("/"), owners.join("/"), ls.join(", ")
                        ));
                    }
                }
                Source::Sg(src) => {
                    let sources = group_of_sg(src);
                    let served = conns.iter().any(|c| {
                        sources.contains(&c.from)
                            && matches!(&c.to, To::Group(g) if owners.contains(g))
                            && r.covers(c.port)
                    });
                    if !served && !sources.is_empty() && !owners.is_empty() {
                        let listening = owners
                            .iter()
                            .flat_map(|g| listeners(g))
                            .filter(|l| r.covers(l.port))
                            .map(|l| l.what)
                            .collect::<Vec<_>>();
                        fail(
                            &label,
                            format!(
                                "{} allows tcp {ports} into {} from {}, but {} never connects there{}",
                                r.resource,
                                owners.join("/"),
                                sources.join("/"),
                                sources.join("/"),
                                if listening.is_empty() {
                                    format!(" (and nothing listens on {ports} there)")
                                } else {
                                    String::new()
                                }
                            ),
                        );
                    }
                }
            }
        }
        // SSH: every instance's group is reachable for Ansible, from AllowedSshCidr.
        for g in present.iter().filter(|g| *g != "database") {
            let ssh = active.iter().any(|r| {
                sgs_of(g).contains(&r.sg)
                    && r.covers(22)
                    && matches!(&r.source, Source::CidrParam(p) if p == "AllowedSshCidr")
            });
            if !ssh {
                fail(
                    &label,
                    format!("{g}: no SSH rule from AllowedSshCidr (Ansible needs port 22)"),
                );
            }
        }
    }
    let mismatches = found
        .into_iter()
        .map(|(msg, labels)| {
            if labels.len() == 4 || labels == ["all"] {
                msg
            } else {
                format!("{msg}  [{}]", labels.join("; "))
            }
        })
        .collect();
    (mismatches, refused)
}

#[test]
fn every_connection_between_roles_is_wired() {
    let (mismatches, refused) = wiring_mismatches();
    for r in &refused {
        eprintln!("not deployable (the template's Rules refuse it): {r}");
    }
    assert!(
        mismatches.is_empty(),
        "{} wiring mismatch(es):\n- {}",
        mismatches.len(),
        mismatches.join("\n- ")
    );
}

#[test]
fn the_derivation_sees_the_stack() {
    // Guards the test above against deriving nothing: the parsers find what is there.
    let (_, t) = templates();
    let vars = Vars::load();
    let groups = groups(&vars);
    let names: BTreeSet<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["api", "broker", "collector", "front", "knowledge", "worker"])
    );
    let compute = group_resources(&t);
    assert_eq!(compute.len(), 7, "{compute:?}");
    let all: BTreeSet<String> = compute.keys().cloned().collect();
    let conns = connections(&vars, &groups, &all);
    let pairs: BTreeSet<(String, String)> = conns
        .iter()
        .filter_map(|c| match &c.to {
            To::Group(g) => Some((c.from.clone(), g.clone())),
            To::Local => None,
        })
        .collect();
    for (from, to) in [
        ("front", "api"),
        ("api", "database"),
        ("collector", "knowledge"),
        ("worker", "database"),
    ] {
        assert!(
            pairs.contains(&(from.to_string(), to.to_string())),
            "{from} → {to} not derived: {conns:#?}"
        );
    }
    assert!(groups.iter().any(|g| g.runs_celery), "the celery units are found");
    assert!(ingress_rules(&t).len() >= 10);
}
