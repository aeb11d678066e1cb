//! The schema of `config/argos.yaml` and `group_vars/all.yml`: every section, its defaults,
//! and what each key means. Loading and checking live in the parent module.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{
    DiscordSettings, FreezeSettings, HealthCheck, HealthSettings, HoldSettings, OtherRefs, PersonSettings,
    RepositorySettings, SlackSettings, WebSettings,
};

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
    /// The people who use the bot, each with their names on every surface (one person, one
    /// identity: nobody approves their own request from another surface).
    #[serde(default)]
    pub people: BTreeMap<String, PersonSettings>,
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
    pub slack: SlackSettings,
    /// `/healthz`, `/readyz` and `/metrics` of `argos bot`.
    #[serde(default)]
    pub health: HealthSettings,
    /// The read-only web page, served on `health.listen`.
    #[serde(default)]
    pub web: WebSettings,
    #[serde(default)]
    pub approvals: ApprovalSettings,
    /// Scheduled announcements (cleanup reports).
    #[serde(default)]
    pub schedules: Vec<ScheduleSettings>,
    /// Configured change freezes: recurring (cron and duration) or fixed windows, during which
    /// mutating actions on their environments are refused.
    #[serde(default)]
    pub freezes: Vec<FreezeSettings>,
    /// Where the app's code comes from.
    #[serde(default)]
    pub repository: RepositorySettings,
    /// How long holds last, and the hold after a rollback.
    #[serde(default)]
    pub holds: HoldSettings,
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
    /// What the schedule does: `cleanup` (the default) or `drift`.
    #[serde(default)]
    pub kind: ScheduleKind,
    /// `kind: drift`: the environments to check (default: every configured one).
    #[serde(default)]
    pub environments: Vec<String>,
}

/// What a schedule does at each due time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Post the cleanup report.
    #[default]
    Cleanup,
    /// Check the environments for drift; post only what changed since the last check.
    Drift,
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

/// Who holds a role: people by name (on every surface), and platform ids.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleMembers {
    /// Names from `people`: the person holds the role on every surface they are known on.
    pub people: Vec<String>,
    /// Discord user ids (snowflakes, as strings).
    pub discord_users: Vec<String>,
    /// Discord role ids: everyone with the role holds this role.
    pub discord_roles: Vec<String>,
    /// Console user names: the operating-system user of the CLI (`$USER`) and the console
    /// (`argos console --user NAME`, default `$USER`).
    pub console_users: Vec<String>,
    /// Slack member ids (`U...`, or `W...` in Enterprise Grid).
    pub slack_users: Vec<String>,
    /// Slack user group ids (`S...`): every member of the group holds this role. The bot
    /// reads group membership with `usergroups.list` (scope `usergroups:read`).
    pub slack_groups: Vec<String>,
}

/// A grant: holders of `role` may run `actions` on environments matching `environments`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionRule {
    pub role: String,
    /// Environment name patterns; `*` matches any run of characters (`qa-*`, `*`).
    pub environments: Vec<String>,
    /// Action names (`crate::command::actions()`: the environment verbs, `hold` for holding
    /// and releasing, `approve`, `freeze`, `break-glass`, `force-release`) or `*`.
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
    /// A CloudFormation service role for the stacks of this (the default) account: stacks
    /// are created and changed with its permissions, so the bot needs `iam:PassRole` on it
    /// instead of every permission its templates' resources need.
    pub cloudformation_role_arn: Option<String>,
    /// The roles an environment may assume (`environments.NAME.aws.role: KEY`), by name. Only
    /// these can be used: an environment names one, chat never does.
    pub roles: BTreeMap<String, RoleSettings>,
}

/// A role in another account that the bot assumes (STS `AssumeRole`) with its own credentials.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSettings {
    /// `arn:aws:iam::<account>:role/<name>`.
    pub role_arn: String,
    /// The external id the role's trust policy requires (`sts:ExternalId`). Prefer
    /// `external_id_env` to keep it out of this file.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The environment variable (or `.env` entry) holding the external id.
    #[serde(default)]
    pub external_id_env: Option<String>,
    /// How long the assumed credentials last before they are renewed (900 to 43200 s; the
    /// role's own maximum session duration must allow it).
    #[serde(default = "default_session_secs")]
    pub session_secs: u64,
    /// The CloudFormation service role of that account (see `aws.cloudformation_role_arn`).
    #[serde(default)]
    pub cloudformation_role_arn: Option<String>,
}

impl std::fmt::Debug for RoleSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The external id is not printed: a debug line may end up in a log.
        f.debug_struct("RoleSettings")
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id.as_ref().map(|_| "***"))
            .field("external_id_env", &self.external_id_env)
            .field("session_secs", &self.session_secs)
            .field("cloudformation_role_arn", &self.cloudformation_role_arn)
            .finish()
    }
}

fn default_session_secs() -> u64 {
    3600
}

/// Which account an environment works in: the default credentials (nothing set), a named
/// profile, or a role listed under `aws.roles`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvAwsSettings {
    /// A named profile from ~/.aws/config (SSO and credential_process work).
    pub profile: Option<String>,
    /// The name of an entry of `aws.roles`; not an ARN.
    pub role: Option<String>,
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
            cloudformation_role_arn: None,
            roles: BTreeMap::new(),
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
    /// How long a drift detection may run before `drift` gives up reading it.
    pub drift_detection_secs: u64,
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
            drift_detection_secs: 900,
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
    /// HTTP checks each role's hosts must pass once a deploy's playbooks are done, by role.
    pub health_checks: BTreeMap<String, Vec<HealthCheck>>,
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
            health_checks: BTreeMap::new(),
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
    /// Where the team is told what happens to this environment, whoever asked and from where
    /// (every mutating job's start and end, approval requests filed from the CLI, break-glass
    /// runs; see `bot::announcements`): `discord:<channel id>`, `slack:<channel id>`, or
    /// `console:<user>` for a console.
    pub announce: Option<String>,
    /// The AWS account the environment lives in (a profile or a listed role); default: the
    /// top-level `aws` credentials.
    pub aws: EnvAwsSettings,
    /// The ref a deploy takes when none is named (`master`, `v1.4.0`); default `master`.
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// The refs the environment accepts, as patterns (`v*`, `release/*`); empty: any ref.
    pub refs: Vec<String>,
    /// What happens to a ref outside `refs`: `refuse` (the default) or `approval` (it needs
    /// an approval under the environment's policy, one approver if no policy says more).
    pub other_refs: OtherRefs,
    /// The ACM certificate of the front's HTTPS load balancer
    /// (`arn:aws:acm:<region>:<account>:certificate/<id>`): HTTPS on 443, HTTP redirected to
    /// it. An environment without one must say `plain_http: true`.
    pub certificate_arn: Option<String>,
    /// `true`: no certificate, the front's nginx serves plain HTTP to the internet, on purpose
    /// (shown by `status`, warned by `argos check`).
    pub plain_http: Option<bool>,
    /// `true`: the database gets a Multi-AZ standby and enhanced monitoring (the template's
    /// safe defaults); otherwise (a throwaway environment) both are off, to save their cost.
    pub production: Option<bool>,
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
