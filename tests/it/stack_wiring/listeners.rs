//! What listens where: the groups the playbooks configure, the roles each runs, and the
//! services those roles make listen (systemd units, nginx, Redis), reachable or loopback only.

use serde_json::Value;

use super::vars::{jinja_exprs, lead_ident, Vars};
use super::{repo, yaml};

#[derive(Debug, Clone)]
pub(crate) struct Listener {
    pub(crate) port: u16,
    /// Reachable from other hosts (not only loopback).
    pub(crate) remote: bool,
    /// The variable a client must present (Redis `requirepass`).
    pub(crate) auth: Option<String>,
    pub(crate) what: String,
    pub(crate) note: Option<String>,
}

pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) roles: Vec<String>,
    pub(crate) listeners: Vec<Listener>,
    /// nginx `listen` ports: the stack's public entry.
    pub(crate) public_ports: Vec<u16>,
    pub(crate) runs_celery: bool,
}

pub(crate) fn role_files(role: &str, sub: &str) -> Vec<(String, String)> {
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

pub(crate) fn role_tasks(role: &str) -> Vec<Value> {
    let rel = format!("playbooks/roles/{role}/tasks/main.yml");
    if !repo().join(&rel).exists() {
        return vec![];
    }
    match yaml(&rel) {
        Value::Array(a) => a,
        _ => vec![],
    }
}

pub(crate) fn module_args<'a>(task: &'a Value, module: &str) -> Option<&'a Value> {
    task.get(format!("ansible.builtin.{module}"))
        .or_else(|| task.get(module))
}

pub(crate) fn groups(vars: &Vars) -> Vec<Group> {
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
