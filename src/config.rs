//! Configuration: `config/argos.yaml` (engine settings and environments), the variables shared
//! with Ansible in `playbooks/group_vars/all.yml`, and `.env`. Everything is validated when it
//! is loaded; an error names the file, the line and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::names::{validate_app_name, EnvName};
use crate::redact::{is_secret_name, Redactor};

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

/// `config/argos.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub paths: Paths,
    #[serde(default)]
    pub aws: AwsSettings,
    #[serde(default)]
    pub watch: WatchSettings,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub ansible: AnsibleSettings,
    #[serde(default)]
    pub network: NetworkSettings,
    /// Settings every environment starts from.
    #[serde(default)]
    pub defaults: EnvSettings,
    /// The environments the engine may work on, by name. Anything else is refused.
    pub environments: BTreeMap<String, EnvSettings>,
    /// Who may do what, where (the chat bot). Empty means nobody may do anything.
    #[serde(default)]
    pub permissions: PermissionSettings,
    #[serde(default)]
    pub chat: ChatSettings,
    /// Where the shared state lives (SQLite by default, PostgreSQL for several replicas).
    #[serde(default)]
    pub store: StoreSettings,
    #[serde(default)]
    pub discord: DiscordSettings,
    #[serde(default)]
    pub approvals: ApprovalSettings,
    /// Scheduled announcements (cleanup reports).
    #[serde(default)]
    pub schedules: Vec<ScheduleSettings>,
}

/// Which actions need approval, by whom, for how long.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalSettings {
    /// How long a request lives, unless a policy says otherwise.
    pub ttl_minutes: u64,
    /// The first policy that matches an (environment, action) applies. When none matches,
    /// decommission still needs one approver (with the `approve` permission) everywhere.
    pub policies: Vec<ApprovalPolicy>,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings {
            ttl_minutes: 30,
            policies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    pub environments: Vec<String>,
    pub actions: Vec<String>,
    /// How many people other than the requester must approve (0: no approval).
    pub approvers: u32,
    /// Roles whose holders may approve; empty means anyone granted `approve` on the environment.
    #[serde(default)]
    pub roles: Vec<String>,
    pub ttl_minutes: Option<u64>,
}

/// One scheduled cleanup announcement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    pub name: String,
    /// Cron expression: minute hour day-of-month month day-of-week (`0 9 * * MON`).
    pub cron: String,
    /// IANA time zone the expression is read in (`Europe/Berlin`); default UTC.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Where to post: platform and channel id (`console` uses the console).
    #[serde(default = "default_platform")]
    pub platform: String,
    pub channel: String,
    /// An environment is stale when its stack is older than this, or was not deployed for this long.
    #[serde(default = "default_stale_days")]
    pub stale_after_days: i64,
    /// Images that no stack uses are reported when older than this.
    #[serde(default = "default_image_days")]
    pub unused_image_days: i64,
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_platform() -> String {
    "discord".into()
}
fn default_stale_days() -> i64 {
    14
}
fn default_image_days() -> i64 {
    30
}

/// Roles mapped to platform identities, and the rules that grant them actions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PermissionSettings {
    pub roles: BTreeMap<String, RoleMembers>,
    pub rules: Vec<PermissionRule>,
}

/// Who holds a role, per platform.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleMembers {
    /// Discord user ids (snowflakes, as strings).
    pub discord_users: Vec<String>,
    /// Discord role ids: everyone with the role holds this role.
    pub discord_roles: Vec<String>,
    /// Console user names (`argos console --user NAME`).
    pub console_users: Vec<String>,
}

/// A grant: holders of `role` may run `actions` on environments matching `environments`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionRule {
    pub role: String,
    /// Environment name patterns; `*` matches any run of characters (`qa-*`, `*`).
    pub environments: Vec<String>,
    /// Action names (commission, deploy, update, plan, decommission, clean, status, events,
    /// approve) or `*`.
    pub actions: Vec<String>,
}

/// The shared state and the leases that decide who runs a job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// A PostgreSQL URL (`postgresql://argos@db.internal/argos`) for several replicas. Leave
    /// it unset and set `ARGOS_DATABASE_URL` to keep the password out of this file. Unset: the
    /// SQLite file (`chat.database`).
    pub url: Option<String>,
    /// How long a replica's lease on a job lasts without a heartbeat: a dead replica's jobs
    /// are taken over this long after its last heartbeat, at most.
    pub lease_ms: u64,
    /// How often each replica renews its leases (well under `lease_ms`).
    pub heartbeat_ms: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: None,
            lease_ms: 10_000,
            heartbeat_ms: 2_000,
        }
    }
}

/// The environment variable that names the PostgreSQL URL (it wins over `store.url`).
pub const DATABASE_URL_ENV: &str = "ARGOS_DATABASE_URL";

impl StoreSettings {
    pub fn lease(&self) -> crate::store::LeaseSettings {
        crate::store::LeaseSettings {
            lease: std::time::Duration::from_millis(self.lease_ms),
            heartbeat: std::time::Duration::from_millis(self.heartbeat_ms),
        }
    }
}

/// How the bot behaves in chat.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatSettings {
    /// The text prefix of commands in channels (`!argos staging deploy`).
    pub prefix: String,
    /// The embedded database, relative to the project root (default: `<paths.state>/argos.db`).
    pub database: Option<PathBuf>,
    /// Per-user command budget.
    pub commands_per_minute: u32,
    pub command_burst: u32,
    /// A status message is edited at most this often.
    pub edit_interval_ms: u64,
    /// Edits a status message may make in a burst; then one more every `edit_refill_secs`.
    /// (5 and 30 s keep a 10-minute job at 1 message and about 26 edits.)
    pub edit_burst: u32,
    pub edit_refill_secs: u64,
    /// All status-message edits of the bot together stay under this rate.
    pub edits_per_second: u32,
    /// Queue a job behind a running one on the same environment instead of refusing it.
    pub queue_when_busy: bool,
    /// How long shutdown waits for running jobs before recording them as still running.
    pub shutdown_grace_secs: u64,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            prefix: "!argos".into(),
            database: None,
            commands_per_minute: 10,
            command_burst: 3,
            edit_interval_ms: 2000,
            edit_burst: 5,
            edit_refill_secs: 30,
            edits_per_second: 4,
            queue_when_busy: false,
            shutdown_grace_secs: 10,
        }
    }
}

/// The Discord adapter. The token is read from the environment (or .env) only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordSettings {
    pub enabled: bool,
    /// The environment variable holding the bot token.
    pub token_env: String,
    /// Register slash commands in this guild (instantly) rather than globally.
    pub guild_id: Option<String>,
    /// Send Discord traffic through this HTTP proxy and gateway (the tests' fake Discord).
    pub api_proxy: Option<String>,
    /// Ask for the privileged message-content intent, which prefix commands (`!argos ...`)
    /// need. Without it the bot answers mentions and slash commands only.
    pub message_content_intent: bool,
}

impl Default for DiscordSettings {
    fn default() -> Self {
        DiscordSettings {
            enabled: false,
            token_env: "DISCORD_TOKEN".into(),
            guild_id: None,
            api_proxy: None,
            message_content_intent: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Paths {
    /// The project root, relative to the directory of the config file.
    pub root: PathBuf,
    pub formations: PathBuf,
    pub playbooks: PathBuf,
    pub keys: PathBuf,
    pub group_vars: PathBuf,
    /// Where job logs and the generated inventories go.
    pub state: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            root: "..".into(),
            formations: "formations".into(),
            playbooks: "playbooks".into(),
            keys: "keys".into(),
            group_vars: "playbooks/group_vars/all.yml".into(),
            state: "state".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    /// Overrides `region` from group_vars.
    pub region: Option<String>,
    /// A named profile from ~/.aws/config.
    pub profile: Option<String>,
    /// Send every AWS call here (a local moto server, for example).
    pub endpoint_url: Option<String>,
    /// Use fixed dummy credentials. Allowed only with a loopback `endpoint_url`.
    pub local_credentials: bool,
    /// The account-wide request budget that every stack watcher and operation shares.
    pub requests_per_second: u32,
    pub burst: u32,
    /// Attempts per call, including the first, for the SDK's standard retry.
    pub max_attempts: u32,
    /// First back-off of that retry (it grows exponentially, with jitter).
    pub retry_initial_backoff_ms: u64,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: None,
            profile: None,
            endpoint_url: None,
            local_credentials: false,
            requests_per_second: 8,
            burst: 8,
            max_attempts: 6,
            retry_initial_backoff_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchSettings {
    /// Poll interval while events keep arriving.
    pub poll_interval_ms: u64,
    /// Ceiling of the back-off when nothing changes.
    pub max_poll_interval_ms: u64,
    /// How many recent stack events `status` shows.
    pub recent_events: usize,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            poll_interval_ms: 2000,
            max_poll_interval_ms: 3500,
            recent_events: 8,
        }
    }
}

/// Every wait has a limit, in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub stack_create_secs: u64,
    pub stack_update_secs: u64,
    pub stack_delete_secs: u64,
    pub change_set_secs: u64,
    pub image_available_secs: u64,
    pub ssh_ready_secs: u64,
    pub playbook_secs: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            stack_create_secs: 3600,
            stack_update_secs: 3600,
            stack_delete_secs: 3600,
            change_set_secs: 300,
            image_available_secs: 3600,
            ssh_ready_secs: 600,
            playbook_secs: 3600,
        }
    }
}

/// How hosts are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Connection {
    /// SSH to each instance with the key pair's private key.
    Ssh,
    /// Run every host's tasks on this machine (the sandbox): nothing leaves it.
    Local,
}

/// Which instance address Ansible connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressKind {
    Public,
    Private,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnsibleSettings {
    /// The `ansible-playbook` program: a path relative to the project root, or a name on PATH.
    pub command: String,
    /// Overrides `paths.playbooks` for runs (the sandbox points this at its own playbooks).
    pub playbooks: Option<PathBuf>,
    /// The roles `deploy` runs, in order; each runs `<role>.yml` on the hosts of group `<role>`.
    pub roles: Vec<String>,
    pub connection: Connection,
    pub address: AddressKind,
    pub ssh_port: u16,
    pub python_interpreter: String,
    /// Extra variables passed to every run.
    pub extra_vars: BTreeMap<String, String>,
}

impl Default for AnsibleSettings {
    fn default() -> Self {
        AnsibleSettings {
            command: "ansible-playbook".into(),
            playbooks: None,
            roles: ["knowledge", "api", "front", "collector"].map(String::from).to_vec(),
            connection: Connection::Ssh,
            address: AddressKind::Public,
            ssh_port: 22,
            python_interpreter: "/usr/bin/python3".into(),
            extra_vars: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSettings {
    /// Defaults to the account's default VPC.
    pub vpc_id: Option<String>,
    /// Defaults to a default subnet of that VPC.
    pub subnet_id: Option<String>,
    /// Who may reach port 22.
    pub allowed_ssh_cidr: Option<String>,
}

/// Per-environment settings; `defaults` has the same shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvSettings {
    /// Instance type per group: api, front, knowledge, collector, broker, worker.
    pub instance_types: BTreeMap<String, String>,
    pub database_instance_class: Option<String>,
    /// Further stack parameters, by the template's parameter name.
    pub parameters: BTreeMap<String, String>,
    /// Where the bot tells the team what happens to this environment outside chat (approval
    /// requests filed from the CLI, break-glass runs): `discord:<channel id>`, or
    /// `console:<user>` for a console.
    pub announce: Option<String>,
}

/// `playbooks/group_vars/all.yml`: the variables the engine shares with Ansible.
#[derive(Debug, Clone, Deserialize)]
pub struct GroupVars {
    pub app_name: String,
    pub region: String,
    pub base_ami: String,
    pub key_name: String,
    #[serde(default = "default_instance_user")]
    pub instance_user: String,
    #[serde(default = "default_image_instance_type")]
    pub image_instance_type: String,
    /// Everything else, as written (Ansible owns those).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

fn default_instance_user() -> String {
    "ubuntu".into()
}
fn default_image_instance_type() -> String {
    "t3.small".into()
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

    fn validate(&self) -> Result<(), ConfigError> {
        let f = &self.file;
        for name in self.settings.environments.keys() {
            EnvName::parse(name)
                .map_err(|e| ConfigError::new(f, Some(&format!("environments.{name}")), e.to_string()))?;
        }
        if self.settings.environments.is_empty() {
            return Err(ConfigError::new(
                f,
                Some("environments"),
                "at least one environment must be configured",
            ));
        }
        let vars_path = self.group_vars_path();
        validate_app_name(&self.vars.app_name).map_err(|e| ConfigError::new(&vars_path, Some("app_name"), e))?;
        let aws = &self.settings.aws;
        if aws.local_credentials && !aws.endpoint_url.as_deref().is_some_and(is_loopback_url) {
            return Err(ConfigError::new(
                f,
                Some("aws.local_credentials"),
                "dummy credentials are only allowed with a loopback aws.endpoint_url (a local stand-in)",
            ));
        }
        if aws.requests_per_second == 0 || aws.burst == 0 || aws.max_attempts == 0 {
            return Err(ConfigError::new(
                f,
                Some("aws"),
                "requests_per_second, burst and max_attempts must be at least 1",
            ));
        }
        let st = &self.settings.store;
        if st.heartbeat_ms == 0 || st.lease_ms < 2 * st.heartbeat_ms {
            return Err(ConfigError::new(
                f,
                Some("store"),
                "heartbeat_ms must be at least 1 and lease_ms at least twice heartbeat_ms",
            ));
        }
        if let Some(url) = &st.url {
            if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
                return Err(ConfigError::new(
                    f,
                    Some("store.url"),
                    "must be a PostgreSQL URL (postgresql://user@host:port/database)",
                ));
            }
        }
        let w = &self.settings.watch;
        if w.poll_interval_ms == 0 || w.max_poll_interval_ms < w.poll_interval_ms {
            return Err(ConfigError::new(
                f,
                Some("watch"),
                "poll_interval_ms must be > 0 and <= max_poll_interval_ms",
            ));
        }
        for (env, s) in std::iter::once(("defaults".to_string(), &self.settings.defaults)).chain(
            self.settings
                .environments
                .iter()
                .map(|(k, v)| (format!("environments.{k}"), v)),
        ) {
            for group in s.instance_types.keys() {
                if !INSTANCE_GROUPS.contains(&group.as_str()) {
                    return Err(ConfigError::new(
                        f,
                        Some(&format!("{env}.instance_types.{group}")),
                        format!("unknown group; expected one of {}", INSTANCE_GROUPS.join(", ")),
                    ));
                }
            }
        }
        let p = &self.settings.permissions;
        for (i, rule) in p.rules.iter().enumerate() {
            if !p.roles.contains_key(&rule.role) {
                return Err(ConfigError::new(
                    f,
                    Some(&format!("permissions.rules[{i}].role")),
                    format!("role '{}' is not defined under permissions.roles", rule.role),
                ));
            }
            for a in &rule.actions {
                if a != "*" && !crate::permissions::ACTIONS.contains(&a.as_str()) {
                    return Err(ConfigError::new(
                        f,
                        Some(&format!("permissions.rules[{i}].actions")),
                        format!(
                            "unknown action '{a}'; actions: {}",
                            crate::permissions::ACTIONS.join(", ")
                        ),
                    ));
                }
            }
        }
        for (i, sch) in self.settings.schedules.iter().enumerate() {
            let key = format!("schedules[{i}]");
            crate::schedule::parse_cron(&sch.cron).map_err(|e| ConfigError::new(f, Some(&format!("{key}.cron")), e))?;
            sch.timezone.parse::<chrono_tz::Tz>().map_err(|_| {
                ConfigError::new(
                    f,
                    Some(&format!("{key}.timezone")),
                    format!("unknown time zone '{}'", sch.timezone),
                )
            })?;
            if self.settings.schedules.iter().filter(|o| o.name == sch.name).count() > 1 {
                return Err(ConfigError::new(
                    f,
                    Some(&format!("{key}.name")),
                    format!("schedule name '{}' is used twice", sch.name),
                ));
            }
        }
        for (i, p) in self.settings.approvals.policies.iter().enumerate() {
            for r in &p.roles {
                if !self.settings.permissions.roles.contains_key(r) {
                    return Err(ConfigError::new(
                        f,
                        Some(&format!("approvals.policies[{i}].roles")),
                        format!("role '{r}' is not defined under permissions.roles"),
                    ));
                }
            }
        }
        let c = &self.settings.chat;
        if c.commands_per_minute == 0 || c.command_burst == 0 || c.edits_per_second == 0 || c.edit_burst == 0 {
            return Err(ConfigError::new(
                f,
                Some("chat"),
                "commands_per_minute, command_burst and edits_per_second must be at least 1",
            ));
        }
        if c.prefix.trim().is_empty() {
            return Err(ConfigError::new(f, Some("chat.prefix"), "the prefix may not be empty"));
        }
        if self.settings.ansible.roles.is_empty() {
            return Err(ConfigError::new(
                f,
                Some("ansible.roles"),
                "list at least one role to deploy",
            ));
        }
        Ok(())
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
