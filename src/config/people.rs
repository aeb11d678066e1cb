//! The `people:` section: one entry per person with the names they have on each surface (the
//! operating-system user that the CLI and the console go by, a Discord user id, a Slack member
//! id), and the checks that keep it unambiguous: well-formed ids, no id claimed by two people,
//! no unknown person in a role.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, Settings};
use crate::address::{console_name_problem, slack_id_problem, snowflake_problem};

/// One person's names, per surface.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersonSettings {
    /// The operating-system user name the CLI (`$USER`) and the console (`--user`, default
    /// `$USER`) go by. Default: the person's name in `people`.
    pub console: Option<String>,
    /// The Discord user id (a snowflake, as a string).
    pub discord: Option<String>,
    /// The Slack member id (`U...`, or `W...` in Enterprise Grid).
    pub slack: Option<String>,
}

impl PersonSettings {
    /// The console (operating-system) name of the person called `name`.
    pub fn console_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.console.as_deref().unwrap_or(name)
    }
}

/// Checks `people` and the roles that name people.
pub(super) fn check(f: &Path, settings: &Settings) -> Result<(), ConfigError> {
    let err = |key: String, message: String| ConfigError::new(f, Some(&key), message);
    // Which person claims each (surface, id) seen so far.
    let mut claimed: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for (name, p) in &settings.people {
        let key = format!("people.{name}");
        if let Some(why) = console_name_problem(name) {
            return Err(err(key, format!("the person's name {why}")));
        }
        let console = p.console_name(name);
        if let Some(why) = console_name_problem(console) {
            return Err(err(
                format!("{key}.console"),
                format!("'{console}' {why}: it is an operating-system user name"),
            ));
        }
        if let Some(id) = &p.discord {
            if let Some(why) = snowflake_problem(id) {
                return Err(err(
                    format!("{key}.discord"),
                    format!("'{id}' {why}: a Discord user id (Developer Mode, then Copy User ID)"),
                ));
            }
        }
        if let Some(id) = &p.slack {
            if let Some(why) = slack_id_problem(id, &['U', 'W']) {
                return Err(err(
                    format!("{key}.slack"),
                    format!("'{id}' {why}: a Slack member id (U... or W...; profile, then Copy member ID)"),
                ));
            }
        }
        let ids = [
            ("console", Some(console)),
            ("discord", p.discord.as_deref()),
            ("slack", p.slack.as_deref()),
        ];
        for (surface, id) in ids {
            let Some(id) = id else { continue };
            if let Some(other) = claimed.insert((surface, id), name) {
                return Err(err(
                    format!("{key}.{surface}"),
                    format!("{surface} id '{id}' is also {other}'s: an id belongs to one person"),
                ));
            }
        }
    }
    for (role, m) in &settings.permissions.roles {
        let key = format!("permissions.roles.{role}");
        for (i, person) in m.people.iter().enumerate() {
            if !settings.people.contains_key(person) {
                let known: Vec<&str> = settings.people.keys().map(String::as_str).collect();
                return Err(err(
                    format!("{key}.people"),
                    format!(
                        "unknown person '{person}'; people: {}",
                        if known.is_empty() {
                            "none (add them under `people`)".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            if m.people[..i].contains(person) {
                return Err(err(format!("{key}.people"), format!("'{person}' is listed twice")));
            }
        }
        for (list, ids) in [("discord_users", &m.discord_users), ("discord_roles", &m.discord_roles)] {
            for id in ids {
                if let Some(why) = snowflake_problem(id) {
                    return Err(err(format!("{key}.{list}"), format!("'{id}' {why}")));
                }
            }
        }
        for id in &m.slack_users {
            if let Some(why) = slack_id_problem(id, &['U', 'W']) {
                return Err(err(format!("{key}.slack_users"), format!("'{id}' {why}")));
            }
        }
    }
    Ok(())
}
