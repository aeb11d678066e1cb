//! `envs`, `whoami`, `help [command]` and `schedules`: what there is, who you are, what you
//! may run, and when the scheduled reports come.

use super::audit_read;
use crate::bot::messages;
use crate::bot::port::ChatEvent;
use crate::bot::Inner;
use crate::command::{CommandHelp, COMMANDS};
use crate::names::quote;

pub(crate) fn command_envs(inner: &Inner, ev: &ChatEvent) -> String {
    audit_read(inner, ev, "ok", None);
    messages::envs(
        &crate::holds::env_states(&inner.store, &inner.engine.config),
        &inner.store.drift_results().unwrap_or_default(),
    )
}

fn env_names(inner: &Inner) -> Vec<String> {
    inner.engine.config.settings.environments.keys().cloned().collect()
}

pub(crate) fn command_whoami(inner: &Inner, ev: &ChatEvent) -> String {
    audit_read(inner, ev, "ok", None);
    let who = &ev.identity;
    let roles = inner.perms.roles_of(who);
    let grants = inner.perms.grants(who, &env_names(inner));
    messages::whoami(who, &roles, &grants)
}

/// Help lists only what the asking user may run.
pub(crate) fn command_help(inner: &Inner, ev: &ChatEvent, topic: Option<&str>) -> String {
    audit_read(inner, ev, "ok", None);
    let who = &ev.identity;
    let grants = inner.perms.grants(who, &env_names(inner));
    let known = inner.perms.is_known(who);
    // A command with a grant is listed where the grant is held (`release` with `hold`);
    // the others for anyone with a role, `help` and `whoami` for everyone.
    let may = |c: &CommandHelp| -> bool {
        match c.grant {
            Some(grant) => grants.iter().any(|(_, a)| a == grant),
            None => matches!(c.name, "help" | "whoami") || known,
        }
    };
    if let Some(t) = topic {
        let Some(c) = COMMANDS.iter().find(|c| c.name == t) else {
            return messages::usage_error(&format!("no help for {}", quote(t)));
        };
        if !may(c) {
            return messages::help_not_allowed(c);
        }
        let envs: Vec<&str> = grants
            .iter()
            .filter(|(_, a)| Some(a.as_str()) == c.grant)
            .map(|(e, _)| e.as_str())
            .collect();
        return messages::help_one(c, &envs);
    }
    let prefix = &inner.engine.config.settings.chat.prefix;
    let allowed: Vec<&CommandHelp> = COMMANDS.iter().filter(|c| may(c)).collect();
    messages::help_all(prefix, &allowed, grants.is_empty())
}

/// Each schedule and its next run, each configured freeze and its next windows, and the
/// freezes made with `freeze` that are in force.
pub(crate) fn command_schedules(inner: &Inner, ev: &ChatEvent) -> String {
    audit_read(inner, ev, "ok", None);
    let listing = crate::schedule::describe(&inner.engine.config);
    let ad_hoc = inner.store.active_freezes().unwrap_or_default();
    listing + &messages::freezes_in_force(&ad_hoc)
}
