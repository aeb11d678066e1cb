//! Configuration: `config/argos.yaml` (engine settings and environments), the variables shared
//! with Ansible in `playbooks/group_vars/all.yml`, and `.env`. Everything is validated when it
//! is loaded; an error names the file, the line and the key.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::names::EnvName;
use crate::redact::{is_secret_name, Redactor};

mod accounts;
mod cron;
pub mod freezes;
mod front;
mod health_checks;
mod holds;
mod limits;
mod people;
mod platforms;
mod repository;
mod settings;
mod validate;
mod web;

pub use accounts::valid_role_arn;
pub use cron::parse_cron;
pub use freezes::FreezeSettings;
pub use front::{is_certificate_arn, FrontAccess};
pub use health_checks::HealthCheck;
pub use holds::{HoldSettings, HoldTimes};
pub use people::PersonSettings;
pub use platforms::{DiscordSettings, HealthSettings, SlackSettings};
pub use repository::{OtherRefs, RepositorySettings};
pub use settings::*;
pub use web::{TrustedNet, WebSettings};

/// Where the config file is looked for when none is given.
pub const DEFAULT_CONFIG: &str = "config/argos.yaml";

/// Overrides `aws.endpoint_url` (the sandbox script sets it to the port moto listens on).
pub const ENDPOINT_ENV: &str = "ARGOS_AWS_ENDPOINT_URL";

/// A configuration problem, always tied to the file it was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn new(file: &Path, key: Option<&str>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            column: None,
            key: key.map(str::to_string),
            message: message.into(),
        }
    }

    /// Turns a YAML error into one that names the file and line, and the key when the parser
    /// says which one (unknown field, missing field, wrong type).
    fn from_yaml(file: &Path, source: &str, err: serde_saphyr::Error) -> Self {
        let line = err.location().map(|l| l.line());
        let column = err.location().map(|l| l.column());
        let full = err.to_string();
        let mut message = full.lines().next().unwrap_or("invalid YAML").trim().to_string();
        // The parser repeats the position ("error: line 5 column 3: ..."); we show it once.
        if let Some(rest) = message.strip_prefix("error: ") {
            message = match rest.split_once(": ") {
                Some((pos, text)) if pos.starts_with("line ") => text.to_string(),
                _ => rest.to_string(),
            };
        }
        // A missing key has no line of its own; the parser points at the end of the map.
        let (line, column) = if message.starts_with("missing field") {
            (None, None)
        } else {
            (line, column)
        };
        // The parser names the offending key in backticks; failing that, read it off the line.
        let key = backticked(&message).or_else(|| {
            line.and_then(|l| source.lines().nth(l.saturating_sub(1) as usize))
                .and_then(|text| text.split(':').next())
                .map(|k| k.trim().trim_start_matches("- ").to_string())
                .filter(|k| !k.is_empty() && !k.contains(' '))
        });
        ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    }
}

fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// The whole configuration, loaded and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The project root: paths in the config are relative to it.
    pub root: PathBuf,
    pub file: PathBuf,
    pub settings: Settings,
    pub vars: GroupVars,
}

/// Groups whose instance type the templates take as `<Group>InstanceType`.
pub const INSTANCE_GROUPS: &[&str] = &["api", "front", "knowledge", "collector", "broker", "worker"];

impl Config {
    /// Loads `path`, then the group_vars and `.env` it points at.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.to_path_buf();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, None, format!("cannot read the config file: {e}")))?;
        let mut settings: Settings =
            serde_saphyr::from_str(&text).map_err(|e| ConfigError::from_yaml(path, &text, e))?;
        if let Ok(url) = std::env::var(ENDPOINT_ENV) {
            settings.aws.endpoint_url = Some(url);
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let root = normalize(&dir.join(&settings.paths.root));
        // Absolute, because playbooks run with their own directory as the working directory.
        let root = std::fs::canonicalize(&root).map_err(|e| {
            ConfigError::new(
                path,
                Some("paths.root"),
                format!("{} is not a directory: {e}", root.display()),
            )
        })?;
        let env_file = root.join(".env");
        if env_file.exists() {
            // Values already in the environment win over .env, as is the convention.
            dotenvy::from_path(&env_file)
                .map_err(|e| ConfigError::new(&env_file, None, format!("cannot load: {e}")))?;
        }
        let vars_path = root.join(&settings.paths.group_vars);
        let vars = load_group_vars(&vars_path)?;
        let config = Config {
            root,
            file,
            settings,
            vars,
        };
        config.validate()?;
        Ok(config)
    }

    pub fn group_vars_path(&self) -> PathBuf {
        self.root.join(&self.settings.paths.group_vars)
    }
    pub fn formations_dir(&self) -> PathBuf {
        self.root.join(&self.settings.paths.formations)
    }
    /// The playbooks that runs use (the sandbox's own, when configured).
    pub fn playbooks_dir(&self) -> PathBuf {
        self.root.join(
            self.settings
                .ansible
                .playbooks
                .as_ref()
                .unwrap_or(&self.settings.paths.playbooks),
        )
    }
    /// The project's real playbooks, which `argos check` syntax-checks.
    pub fn project_playbooks_dir(&self) -> PathBuf {
        self.root.join(&self.settings.paths.playbooks)
    }
    pub fn key_file(&self) -> PathBuf {
        self.root
            .join(&self.settings.paths.keys)
            .join(format!("{}.pem", self.vars.key_name))
    }
    pub fn database_path(&self) -> PathBuf {
        match &self.settings.chat.database {
            Some(p) => self.root.join(p),
            None => self.state_dir().join("argos.db"),
        }
    }
    /// The PostgreSQL URL, if the store is PostgreSQL: `ARGOS_DATABASE_URL`, else `store.url`.
    pub fn database_url(&self) -> Option<String> {
        std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| self.settings.store.url.clone())
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(&self.settings.paths.state)
    }
    pub fn region(&self) -> &str {
        self.settings.aws.region.as_deref().unwrap_or(&self.vars.region)
    }

    /// The `ansible-playbook` to run: a path is taken relative to the project root; a bare
    /// name prefers the project's own virtualenv (made by scripts/bootstrap), then PATH.
    pub fn ansible_command(&self) -> PathBuf {
        let cmd = &self.settings.ansible.command;
        if cmd.contains('/') {
            return self.root.join(cmd);
        }
        let venv = self.root.join(".venv/bin").join(cmd);
        if venv.exists() {
            venv
        } else {
            PathBuf::from(cmd)
        }
    }

    /// The Python interpreter on the hosts; a relative path is relative to the project root
    /// (the sandbox uses the project's virtualenv).
    pub fn python_interpreter(&self) -> String {
        let p = Path::new(&self.settings.ansible.python_interpreter);
        if p.is_relative() && self.settings.ansible.python_interpreter.contains('/') {
            self.root.join(p).to_string_lossy().to_string()
        } else {
            self.settings.ansible.python_interpreter.clone()
        }
    }

    /// Resolves a configured environment, refusing names that are invalid or not configured.
    pub fn environment(&self, raw: &str) -> Result<(EnvName, EnvSettings), String> {
        let env = EnvName::parse(raw).map_err(|e| e.to_string())?;
        let Some(own) = self.settings.environments.get(env.as_str()) else {
            let known: Vec<&str> = self.settings.environments.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown environment {}; configured: {}",
                crate::names::quote(env.as_str()),
                known.join(", ")
            ));
        };
        let mut merged = self.settings.defaults.clone();
        merged.instance_types.extend(own.instance_types.clone());
        merged.parameters.extend(own.parameters.clone());
        if own.database_instance_class.is_some() {
            merged.database_instance_class = own.database_instance_class.clone();
        }
        if own.announce.is_some() {
            merged.announce = own.announce.clone();
        }
        merged.aws = self.merged_aws(&own.aws);
        if own.git_ref.is_some() {
            merged.git_ref = own.git_ref.clone();
        }
        if !own.refs.is_empty() {
            merged.refs = own.refs.clone();
        }
        if own.other_refs != OtherRefs::default() {
            merged.other_refs = own.other_refs;
        }
        if own.certificate_arn.is_some() || own.plain_http.is_some() {
            // The front's access is one choice: an environment's own replaces the default's.
            merged.certificate_arn = own.certificate_arn.clone();
            merged.plain_http = own.plain_http;
        }
        if own.production.is_some() {
            merged.production = own.production;
        }
        Ok((env, merged))
    }

    /// A group variable resolved for the engine: `{{ lookup('env', 'NAME') }}` reads the
    /// environment exactly as Ansible will; other templated values are not ours to evaluate.
    pub fn var(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let Some(value) = self.vars.other.get(key) else {
            return Ok(None);
        };
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => return Ok(None),
            other => other.to_string(),
        };
        match env_lookup_name(&text) {
            Some(name) => match std::env::var(&name) {
                Ok(v) if !v.is_empty() => Ok(Some(v)),
                _ => Err(ConfigError::new(
                    &self.group_vars_path(),
                    Some(key),
                    format!("the environment variable {name} is not set (put it in .env or the environment)"),
                )),
            },
            None => Ok(Some(text)),
        }
    }

    /// Every secret value the configuration knows of, plus secret-looking environment
    /// variables, for redaction.
    pub fn redactor(&self) -> Redactor {
        let mut values = Vec::new();
        for key in self.vars.other.keys().filter(|k| is_secret_name(k)) {
            if let Ok(Some(v)) = self.var(key) {
                values.push(v);
            }
        }
        for (k, v) in &self.settings.defaults.parameters {
            if is_secret_name(k) {
                values.push(v.clone());
            }
        }
        for env in self.settings.environments.values() {
            values.extend(
                env.parameters
                    .iter()
                    .filter(|(k, _)| is_secret_name(k))
                    .map(|(_, v)| v.clone()),
            );
        }
        values.extend(self.external_ids());
        Redactor::new(values).with_environment()
    }
}

fn load_group_vars(path: &Path) -> Result<GroupVars, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, None, format!("cannot read the group variables: {e}")))?;
    serde_saphyr::from_str(&text).map_err(|e| ConfigError::from_yaml(path, &text, e))
}

/// `{{ lookup('env', 'NAME') }}` (either quote style, any spacing) → `NAME`.
pub fn env_lookup_name(text: &str) -> Option<String> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let args = inner
        .strip_prefix("lookup")?
        .trim()
        .strip_prefix('(')?
        .strip_suffix(')')?;
    let mut parts = args
        .split(',')
        .map(|p| p.trim().trim_matches(|c| c == '\'' || c == '"'));
    if parts.next()? != "env" {
        return None;
    }
    let name = parts.next()?;
    (parts.next().is_none() && !name.is_empty()).then(|| name.to_string())
}

pub fn is_loopback_url(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Removes `.` and `..` components without touching the filesystem.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lookup_forms() {
        assert_eq!(
            env_lookup_name("{{ lookup('env', 'ARGOS_DB_PASSWORD') }}").as_deref(),
            Some("ARGOS_DB_PASSWORD")
        );
        assert_eq!(env_lookup_name("{{lookup(\"env\",\"X\")}}").as_deref(), Some("X"));
        assert_eq!(env_lookup_name("{{ other }}"), None);
        assert_eq!(env_lookup_name("plain"), None);
    }

    #[test]
    fn loopback_urls() {
        assert!(is_loopback_url("http://127.0.0.1:5000"));
        assert!(is_loopback_url("http://localhost:1/x"));
        assert!(!is_loopback_url("https://cloudformation.us-east-1.amazonaws.com"));
        assert!(!is_loopback_url("http://127.example.com.evil:1"));
    }
}
