//! Approvals: which (environment, action) needs how many approvers with which roles
//! ([`requirement`]), the plan a request is bound to ([`plan`]), and one request's life from
//! filing to its end ([`life`]), which the bot and the CLI both drive.

pub mod life;
pub mod plan;

pub use plan::{plan, Plan};

use crate::config::ApprovalSettings;
use crate::permissions::pattern_matches;

/// What an (environment, action) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub approvers: u32,
    /// Roles that may approve; empty: anyone granted `approve` on the environment.
    pub roles: Vec<String>,
    pub ttl: chrono::Duration,
}

impl Requirement {
    /// One approver from anyone allowed to approve, for the settings' time to live.
    pub fn one(settings: &ApprovalSettings) -> Requirement {
        Requirement {
            approvers: 1,
            roles: vec![],
            ttl: chrono::Duration::minutes(settings.ttl_minutes as i64),
        }
    }
}

/// What a request needs: its policy's requirement, or one approver when the policy asks for
/// none but the request names a ref outside the environment's rule (`outside_rule`).
pub fn requirement_for(
    settings: &ApprovalSettings,
    env: &str,
    action: &str,
    outside_rule: bool,
) -> Option<Requirement> {
    requirement(settings, env, action).or_else(|| outside_rule.then(|| Requirement::one(settings)))
}

/// The first matching policy; decommission needs one approver everywhere by default.
pub fn requirement(settings: &ApprovalSettings, env: &str, action: &str) -> Option<Requirement> {
    let matching = settings.policies.iter().find(|p| {
        p.environments.iter().any(|e| pattern_matches(e, env)) && p.actions.iter().any(|a| a == action || a == "*")
    });
    let default_ttl = chrono::Duration::minutes(settings.ttl_minutes as i64);
    match matching {
        Some(p) if p.approvers == 0 => None,
        Some(p) => Some(Requirement {
            approvers: p.approvers,
            roles: p.roles.clone(),
            ttl: p
                .ttl_minutes
                .map(|m| chrono::Duration::minutes(m as i64))
                .unwrap_or(default_ttl),
        }),
        None if action == "decommission" => Some(Requirement {
            approvers: 1,
            roles: vec![],
            ttl: default_ttl,
        }),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApprovalPolicy;

    #[test]
    fn decommission_needs_one_approver_by_default() {
        let s = ApprovalSettings::default();
        let r = requirement(&s, "staging", "decommission").unwrap();
        assert_eq!((r.approvers, r.ttl), (1, chrono::Duration::minutes(30)));
        assert!(requirement(&s, "staging", "deploy").is_none());
    }

    #[test]
    fn the_first_matching_policy_wins() {
        let s = ApprovalSettings {
            ttl_minutes: 30,
            policies: vec![
                ApprovalPolicy {
                    environments: vec!["production".into()],
                    actions: vec!["update".into(), "decommission".into()],
                    approvers: 2,
                    roles: vec!["admins".into()],
                    ttl_minutes: Some(10),
                },
                ApprovalPolicy {
                    environments: vec!["sandbox".into()],
                    actions: vec!["decommission".into()],
                    approvers: 0,
                    roles: vec![],
                    ttl_minutes: None,
                },
            ],
        };
        let r = requirement(&s, "production", "update").unwrap();
        assert_eq!(
            (r.approvers, r.roles.clone(), r.ttl),
            (2, vec!["admins".to_string()], chrono::Duration::minutes(10))
        );
        assert!(
            requirement(&s, "sandbox", "decommission").is_none(),
            "approvers: 0 switches it off"
        );
        assert_eq!(requirement(&s, "staging", "decommission").unwrap().approvers, 1);
    }
}
