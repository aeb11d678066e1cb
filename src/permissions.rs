//! Permissions: roles map to people and platform identities; rules grant actions on
//! environments that match a pattern. Everything not granted is denied. A denial says which
//! permission is missing.

use std::collections::BTreeSet;

use crate::address::{ChatPlatform, Surface};
use crate::config::PermissionSettings;
use crate::people::{IdSpace, People};

/// Who is asking, as the platform adapter saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub platform: Surface,
    pub user_id: String,
    pub display_name: String,
    /// Platform role ids (Discord roles, Slack user groups); empty elsewhere.
    pub platform_roles: Vec<String>,
}

impl Identity {
    /// Someone known on a surface by one name and no platform roles (the CLI, the console).
    pub fn named(platform: Surface, user: &str) -> Identity {
        Identity {
            platform,
            user_id: user.to_string(),
            display_name: user.to_string(),
            platform_roles: Vec::new(),
        }
    }
}

/// The answer to "may they?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied { missing: String },
}

#[derive(Debug, Clone, Default)]
pub struct Permissions {
    settings: PermissionSettings,
    people: People,
}

/// Environment patterns (`qa-*`): one matcher for permissions, approvals, refs and freezes.
pub use crate::names::pattern_matches;

impl Permissions {
    pub fn new(settings: PermissionSettings, people: People) -> Permissions {
        Permissions { settings, people }
    }

    /// Who is who across surfaces (`people:` in the config).
    pub fn people(&self) -> &People {
        &self.people
    }

    /// The roles a person holds: a role that names them (in `people`) or any of their ids
    /// holds on every surface they are known on; platform roles and groups count where they
    /// are seen.
    pub fn roles_of(&self, who: &Identity) -> Vec<String> {
        let person = self.people.person(who.platform, &who.user_id);
        let ids = self.people.ids(who.platform, &who.user_id);
        self.settings
            .roles
            .iter()
            .filter(|(_, m)| {
                person.name().is_some_and(|name| m.people.iter().any(|p| p == name))
                    || ids.iter().any(|(surface, id)| match surface {
                        IdSpace::Os => m.console_users.contains(id),
                        IdSpace::Discord => m.discord_users.contains(id),
                        IdSpace::Slack => m.slack_users.contains(id),
                    })
                    || match who.platform {
                        Surface::Chat(ChatPlatform::Discord) => {
                            who.platform_roles.iter().any(|r| m.discord_roles.contains(r))
                        }
                        Surface::Chat(ChatPlatform::Slack) => {
                            who.platform_roles.iter().any(|g| m.slack_groups.contains(g))
                        }
                        // No platform roles there.
                        Surface::Cli | Surface::Chat(ChatPlatform::Console) => false,
                    }
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// May `who` run `action` on `env`?
    pub fn check(&self, who: &Identity, env: &str, action: &str) -> Decision {
        if self.allows(&self.roles_of(who), env, action) {
            Decision::Allowed
        } else {
            Decision::Denied {
                missing: format!("{action} on {env}"),
            }
        }
    }

    /// Whether the person holds any grant at all (enough to list jobs and environments).
    pub fn is_known(&self, who: &Identity) -> bool {
        let roles = self.roles_of(who);
        self.settings.rules.iter().any(|r| roles.contains(&r.role))
    }

    /// The (environment, action) pairs a person may run, for `help` and `whoami`.
    pub fn grants(&self, who: &Identity, envs: &[String]) -> BTreeSet<(String, String)> {
        // The roles once, not once per pair: `whoami` and `help` ask for every pair.
        let roles = self.roles_of(who);
        let mut out = BTreeSet::new();
        for env in envs {
            for action in crate::command::actions() {
                if self.allows(&roles, env, action) {
                    out.insert((env.clone(), action.to_string()));
                }
            }
        }
        out
    }

    /// Whether any rule for one of `roles` grants `action` on `env`.
    fn allows(&self, roles: &[String], env: &str, action: &str) -> bool {
        self.settings.rules.iter().any(|r| {
            roles.contains(&r.role)
                && r.environments.iter().any(|p| pattern_matches(p, env))
                && r.actions.iter().any(|a| a == "*" || a == action)
        })
    }

    /// Rules that can never match anything: a role with no members, or environment patterns
    /// that match no configured environment.
    pub fn warnings(&self, envs: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for (name, m) in &self.settings.roles {
            let members = [
                &m.people,
                &m.discord_users,
                &m.discord_roles,
                &m.console_users,
                &m.slack_users,
                &m.slack_groups,
            ];
            if members.iter().all(|list| list.is_empty()) {
                out.push(format!("role '{name}' has no members: rules for it never match"));
            }
        }
        for (i, r) in self.settings.rules.iter().enumerate() {
            for p in &r.environments {
                if !envs.iter().any(|e| pattern_matches(p, e)) {
                    out.push(format!(
                        "rule {i} (role '{}'): environment pattern '{p}' matches no configured environment",
                        r.role
                    ));
                }
            }
            if r.actions.is_empty() || r.environments.is_empty() {
                out.push(format!(
                    "rule {i} (role '{}') grants nothing: it lists no actions or no environments",
                    r.role
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::{PermissionRule, RoleMembers};
    use std::collections::BTreeMap;

    fn perms() -> Permissions {
        let mut roles = BTreeMap::new();
        roles.insert(
            "admins".into(),
            RoleMembers {
                console_users: vec!["alice".into()],
                discord_users: vec!["1".into()],
                ..Default::default()
            },
        );
        roles.insert(
            "deployers".into(),
            RoleMembers {
                discord_roles: vec!["900".into()],
                console_users: vec!["bob".into()],
                ..Default::default()
            },
        );
        roles.insert("ghosts".into(), RoleMembers::default());
        roles.insert(
            "slackers".into(),
            RoleMembers {
                slack_groups: vec!["S0OPS".into()],
                ..Default::default()
            },
        );
        let rules = vec![
            PermissionRule {
                role: "admins".into(),
                environments: vec!["*".into()],
                actions: vec!["*".into()],
            },
            PermissionRule {
                role: "deployers".into(),
                environments: vec!["staging".into(), "qa-*".into()],
                actions: vec!["deploy".into(), "status".into()],
            },
            PermissionRule {
                role: "deployers".into(),
                environments: vec!["prod-*".into()],
                actions: vec!["status".into()],
            },
        ];
        Permissions::new(PermissionSettings { roles, rules }, People::default())
    }

    fn who(platform: &str, id: &str, roles: &[&str]) -> Identity {
        let platform = Surface::parse(platform).expect("a known surface");
        Identity {
            platform,
            user_id: id.into(),
            display_name: id.into(),
            platform_roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn deny_by_default_and_grant_by_rule() {
        let p = perms();
        assert_eq!(
            p.check(&who("console", "alice", &[]), "production", "decommission"),
            Decision::Allowed
        );
        assert_eq!(
            p.check(&who("console", "bob", &[]), "staging", "deploy"),
            Decision::Allowed
        );
        assert_eq!(
            p.check(&who("discord", "55", &["900"]), "qa-2", "deploy"),
            Decision::Allowed
        );
        assert_eq!(
            p.check(&who("console", "bob", &[]), "staging", "decommission"),
            Decision::Denied {
                missing: "decommission on staging".into()
            }
        );
        assert!(matches!(
            p.check(&who("console", "mallory", &[]), "staging", "status"),
            Decision::Denied { .. }
        ));
        // A console name is not a Discord id.
        assert!(matches!(
            p.check(&who("discord", "alice", &[]), "staging", "status"),
            Decision::Denied { .. }
        ));
        assert!(!p.is_known(&who("console", "mallory", &[])));
    }

    #[test]
    fn rules_that_never_match_are_warned_about() {
        let w = perms().warnings(&["staging".into(), "production".into()]);
        assert!(w.iter().any(|x| x.contains("'ghosts' has no members")), "{w:?}");
        assert!(
            w.iter().any(|x| x.contains("'qa-*' matches no configured environment")),
            "{w:?}"
        );
        assert!(w.iter().any(|x| x.contains("'prod-*'")), "{w:?}");
        assert!(!w.iter().any(|x| x.contains("'staging'")), "{w:?}");
        // Members of a Slack user group are members.
        assert!(!w.iter().any(|x| x.contains("'slackers'")), "{w:?}");
    }
}
