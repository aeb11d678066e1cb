//! Deploy: run the configured roles' playbooks, in order, against the environment's running
//! instances found by their App/Env/Group tags, with the database and knowledge hosts taken
//! from the stack outputs. A role with no host is an error, found before anything runs.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ansible::inventory::{Inventory, Reach};
use crate::ansible::{self, PlaybookRun};
use crate::cloud::instances::{self, InstanceInfo};
use crate::cloud::stack;
use crate::command::Version;
use crate::config::Config;
use crate::engine::{health_check, versions, Ctx, Summary};
use crate::error::{Error, Result};
use crate::names::{quote, tags};

/// Refuses roles that are not configured (`ansible.roles`), naming the configured ones: the
/// bot and the CLI ask this before a job exists, and deploy itself again.
pub fn check_roles(config: &Config, roles: &[String]) -> Result<()> {
    let configured = &config.settings.ansible.roles;
    let unknown: Vec<&String> = roles.iter().filter(|r| !configured.contains(r)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    // The reply quotes what was typed: a few names, the rest counted, so that it stays short
    // (one chat message) however many were typed.
    let mut named: Vec<String> = unknown.iter().take(UNKNOWN_ROLES_NAMED).map(|r| quote(r)).collect();
    if unknown.len() > UNKNOWN_ROLES_NAMED {
        named.push(format!("and {} more", unknown.len() - UNKNOWN_ROLES_NAMED));
    }
    Err(Error::Invalid(format!(
        "unknown role{} {}; configured roles: {}",
        if unknown.len() == 1 { "" } else { "s" },
        named.join(", "),
        configured.join(", ")
    )))
}

/// How many unknown roles [`check_roles`] names.
const UNKNOWN_ROLES_NAMED: usize = 5;

/// Runs `roles` (all configured roles when empty) against the environment.
pub async fn deploy(ctx: &Ctx, roles: &[String], version: &Version) -> Result<Summary> {
    let cfg = ctx.config();
    check_roles(cfg, roles)?;
    let configured = &cfg.settings.ansible.roles;
    // Configured order, whatever order they were asked in.
    let selected: Vec<String> = configured
        .iter()
        .filter(|r| roles.is_empty() || roles.contains(r))
        .cloned()
        .collect();
    for role in &selected {
        let playbook = cfg.playbooks_dir().join(format!("{role}.yml"));
        if !playbook.exists() {
            return Err(Error::Invalid(format!(
                "no playbook for role '{role}': {} is missing",
                playbook.display()
            )));
        }
    }
    ctx.engine.private_key()?;

    let names = &ctx.target.names;
    let stack_name = names.stack();
    ctx.progress
        .step("deploy", format!("{} to {stack_name}", selected.join(", ")));
    let info = stack::describe(ctx.aws(), &stack_name).await?.ok_or_else(|| {
        Error::Refused(format!(
            "there is no stack {stack_name}: run `{} commission` first",
            names.env
        ))
    })?;
    if info.status.ends_with("_IN_PROGRESS") || info.status.ends_with("_FAILED") || info.status == "ROLLBACK_COMPLETE" {
        return Err(Error::Refused(format!(
            "stack {stack_name} is {}; deploy needs a healthy stack",
            info.status
        )));
    }
    let running = instances::running_in_env(ctx.aws(), &names.app, names.env.as_str()).await?;
    for role in &selected {
        if !running.iter().any(|i| i.group() == role) {
            return Err(Error::Invalid(format!(
                "role '{role}' matched no running instance (tags App={}, Env={}, Group={role}, Name={}): nothing would be configured",
                names.app,
                names.env,
                names.group_name_tag(role)
            )));
        }
    }
    let extra = stack_vars(&info.outputs);
    // The playbooks check that every host got that commit.
    let mut extra = extra;
    versions::playbook_vars(&ctx.engine, version, &mut extra);
    let at = version.describe().map(|v| format!(" at {v}")).unwrap_or_default();
    let mut summary = Summary::new(format!("deployed {}{at} to {stack_name}", selected.join(", ")));
    // One ansible-playbook for all the roles, in their order: Ansible starts once per deploy
    // (about 0.7 CPU-s each time), and a failed role still stops the roles after it.
    let hosts: Vec<InstanceInfo> = running
        .iter()
        .filter(|i| selected.iter().any(|r| r == i.group()))
        .cloned()
        .collect();
    // (The config refuses an empty `ansible.roles`.)
    let (first, rest) = selected
        .split_first()
        .ok_or_else(|| Error::Invalid("no role to deploy: ansible.roles is empty".into()))?;
    let mut run = playbook_run(ctx, first, &hosts, extra)?;
    run.then = rest
        .iter()
        .map(|role| ansible::RolePlaybook {
            role: role.clone(),
            playbook: cfg.playbooks_dir().join(format!("{role}.yml")),
        })
        .collect();
    let reports = ansible::run_roles(&run, &ctx.engine.redactor, &ctx.progress, &ctx.cancel).await?;
    for (role, report) in reports {
        summary.details.push(format!(
            "{role}: {} task(s), {} change(s) on {} host(s)",
            report.tasks,
            report.changed,
            report.hosts.len()
        ));
        summary.hosts.extend(report.hosts);
    }
    summary
        .details
        .extend(health_check::check_deployed(ctx, &selected, &running, version).await?);
    summary.outputs = info.outputs.clone();
    Ok(summary)
}

/// The playbooks' variables that come from the stack's outputs: where the database and the
/// knowledge host are.
pub(crate) fn stack_vars(out: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "database_host".to_string(),
            out.get("DatabaseHost").cloned().unwrap_or_default(),
        ),
        (
            "database_port".to_string(),
            out.get("DatabasePort").cloned().unwrap_or_default(),
        ),
        (
            "knowledge_host".to_string(),
            out.get("KnowledgeHost").cloned().unwrap_or_default(),
        ),
    ])
}

/// Prepares one playbook run for `role` on `hosts`.
pub(crate) fn playbook_run(
    ctx: &Ctx,
    role: &str,
    hosts: &[InstanceInfo],
    mut extra: BTreeMap<String, String>,
) -> Result<PlaybookRun> {
    let cfg = ctx.config();
    let a = &cfg.settings.ansible;
    let reach = Reach {
        connection: a.connection,
        address: a.address,
        user: cfg.vars.instance_user.clone(),
        python: cfg.python_interpreter(),
        ssh_port: a.ssh_port,
    };
    let inventory = Inventory::from_instances(hosts, &reach);
    debug_assert!(hosts.iter().all(|h| h.tags.contains_key(tags::GROUP)));
    extra.insert("app_name".into(), cfg.vars.app_name.clone());
    extra.insert("env_name".into(), ctx.target.env.to_string());
    let root = std::fs::canonicalize(&cfg.root).unwrap_or_else(|_| cfg.root.clone());
    for (k, v) in &a.extra_vars {
        extra.insert(k.clone(), v.replace("{root}", &root.to_string_lossy()));
    }
    Ok(PlaybookRun {
        command: cfg.ansible_command(),
        playbook: cfg.playbooks_dir().join(format!("{role}.yml")),
        role: role.to_string(),
        then: Vec::new(),
        inventory_json: inventory.to_json(),
        extra_vars: extra,
        private_key: ctx.engine.private_key()?,
        ssh: ansible::ssh::SshOptions {
            // One file per environment, in the state directory; `bake` points its run at the
            // image builders' own file.
            known_hosts: (a.connection == crate::config::Connection::Ssh)
                .then(|| ansible::ssh::known_hosts_file(&cfg.state_dir(), ctx.target.env.as_str())),
            ..Default::default()
        },
        timeout: Duration::from_secs(cfg.settings.timeouts.playbook_secs),
        // `<state>/runs/<role>-<pid>-<nanos>`: the folder `ansible::sweep_orphans` looks in.
        workdir: ansible::new_run_dir(&cfg.state_dir(), role),
        log: ctx.log.clone(),
    })
}

/// Runs a playbook; `ansible::run` removes its private work directory (it holds the vars file)
/// however the run ends.
pub(crate) async fn run_with_log(ctx: &Ctx, run: PlaybookRun) -> Result<ansible::PlaybookReport> {
    ansible::run(&run, &ctx.engine.redactor, &ctx.progress, &ctx.cancel).await
}
