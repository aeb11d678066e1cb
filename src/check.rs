//! `argos check`: every check that needs no AWS call, at once. The templates merge within
//! CloudFormation's limits, the playbooks pass `ansible-playbook --syntax-check`, and the SSH
//! key exists with mode 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::cloud::template::load_formations;
use crate::config::{Config, Connection};

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: String,
    pub ok: bool,
    pub message: String,
}

impl Finding {
    fn ok(check: &str, message: impl Into<String>) -> Finding {
        Finding {
            check: check.into(),
            ok: true,
            message: message.into(),
        }
    }
    fn fail(check: &str, message: impl Into<String>) -> Finding {
        Finding {
            check: check.into(),
            ok: false,
            message: message.into(),
        }
    }
}

/// The key must exist and be readable by its owner only (ssh refuses anything looser).
pub fn key_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|_| {
        format!(
            "SSH key {} is missing: put the private key of the EC2 key pair there (see keys/README.md)",
            path.display()
        )
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode != 0o600 && mode != 0o400 {
        return Err(format!(
            "SSH key {} has mode {mode:o}; it must be 600 (chmod 600 {})",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// Runs every check; the config itself was already validated by loading it.
pub async fn run(config: &Config) -> Vec<Finding> {
    let mut findings = vec![Finding::ok(
        "config",
        format!(
            "{} and {} are valid",
            config.file.display(),
            config.group_vars_path().display()
        ),
    )];
    match load_formations(&config.formations_dir()) {
        Ok((image, merged)) => findings.push(Finding::ok(
            "templates",
            format!(
                "image.json: {} resource(s); merged: {} resource(s), {} parameter(s), {} byte(s)",
                image.resources().len(),
                merged.resources().len(),
                merged.parameters().len(),
                merged.body.len()
            ),
        )),
        Err(e) => findings.push(Finding::fail("templates", e.to_string())),
    }
    let mut dirs = vec![config.project_playbooks_dir()];
    if config.playbooks_dir() != config.project_playbooks_dir() {
        dirs.push(config.playbooks_dir());
    }
    for dir in dirs {
        findings.extend(syntax_check(config, &dir).await);
    }
    let envs: Vec<String> = config.settings.environments.keys().cloned().collect();
    let perms = crate::permissions::Permissions::new(config.settings.permissions.clone());
    let warnings = perms.warnings(&envs);
    if warnings.is_empty() {
        findings.push(Finding::ok(
            "permissions",
            format!(
                "{} rule(s), every one can match",
                config.settings.permissions.rules.len()
            ),
        ));
    }
    for w in warnings {
        findings.push(Finding {
            check: "permissions".into(),
            ok: true,
            message: format!("warning: {w}"),
        });
    }
    if config.settings.ansible.connection == Connection::Local {
        findings.push(Finding::ok(
            "ssh key",
            "not needed: hosts are reached with the local connection",
        ));
    } else {
        findings.push(match key_file(&config.key_file()) {
            Ok(()) => Finding::ok("ssh key", format!("{} (mode 600)", config.key_file().display())),
            Err(e) => Finding::fail("ssh key", e),
        });
    }
    findings
}

async fn syntax_check(config: &Config, dir: &Path) -> Vec<Finding> {
    let mut playbooks: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yml"))
            .collect(),
        Err(e) => return vec![Finding::fail("playbooks", format!("{}: {e}", dir.display()))],
    };
    playbooks.sort();
    let groups: serde_json::Map<String, serde_json::Value> = playbooks
        .iter()
        .filter_map(|p| p.file_stem())
        .map(|s| (s.to_string_lossy().to_string(), serde_json::json!({"hosts": {}})))
        .collect();
    let tmp = std::env::temp_dir().join(format!("argos-check-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&tmp);
    let inventory = tmp.join("inventory.json");
    let _ = std::fs::write(&inventory, serde_json::json!({"all": {"children": groups}}).to_string());
    let mut out = Vec::new();
    for pb in playbooks {
        let name = pb.strip_prefix(&config.root).unwrap_or(&pb).display().to_string();
        let result = tokio::process::Command::new(config.ansible_command())
            .arg("--syntax-check")
            .arg("-i")
            .arg(&inventory)
            .arg(&pb)
            .current_dir(dir)
            .env("ANSIBLE_HOME", tmp.join("home"))
            .env("ANSIBLE_LOCAL_TEMP", tmp.join("tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .output()
            .await;
        out.push(match result {
            Ok(o) if o.status.success() => Finding::ok("playbook syntax", name),
            Ok(o) => {
                let text = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
                let first = text
                    .lines()
                    .find(|l| l.contains("ERROR"))
                    .unwrap_or(text.lines().next().unwrap_or("failed"))
                    .to_string();
                Finding::fail("playbook syntax", format!("{name}: {first}"))
            }
            Err(e) => Finding::fail(
                "playbook syntax",
                format!(
                    "cannot run {}: {e} (run scripts/bootstrap)",
                    config.ansible_command().display()
                ),
            ),
        });
    }
    let _ = std::fs::remove_dir_all(&tmp);
    out
}
