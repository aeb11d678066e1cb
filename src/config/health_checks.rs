//! `ansible.health_checks`: the HTTP checks each role's hosts must pass after a deploy (run on
//! the hosts themselves, see `engine::health_check`), their defaults, and the rules a check
//! must follow before any deploy may rely on it.

use serde::Deserialize;

use super::Settings;

/// One HTTP check, `GET http://127.0.0.1:<port><path>` on each host of the role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// The request path, starting with `/` (a query string may follow).
    pub path: String,
    /// The port the service listens on, on the host's loopback.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The status a healthy service answers; redirects are not followed, so a 301 is a 301.
    #[serde(default = "default_status")]
    pub status: u16,
    /// How long one request may take.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Attempts after the first that failed: a freshly restarted service needs a moment.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Seconds between attempts.
    #[serde(default = "default_delay_secs")]
    pub delay_secs: u64,
}

impl HealthCheck {
    /// What the check asks, as the job's messages name it: `GET :8000/healthz`.
    pub fn label(&self) -> String {
        format!("GET :{}{}", self.port, self.path)
    }

    /// The longest the check can take: every attempt timing out, with the pauses between.
    pub fn longest_secs(&self) -> u64 {
        let attempts = u64::from(self.retries) + 1;
        attempts * self.timeout_secs + u64::from(self.retries) * self.delay_secs
    }
}

fn default_port() -> u16 {
    80
}
fn default_status() -> u16 {
    200
}
fn default_timeout_secs() -> u64 {
    5
}
fn default_retries() -> u32 {
    3
}
fn default_delay_secs() -> u64 {
    2
}

/// The longest a single request, or a pause between attempts, may be: beyond that the check
/// would outlast any playbook timeout worth having.
const MAX_SECS: u64 = 3_600;
/// More attempts than this only hides a service that does not come up.
const MAX_RETRIES: u32 = 100;

/// The first check that breaks a rule: its key (`ansible.health_checks.api[0].status`) and why.
pub(super) fn check(s: &Settings) -> Result<(), (String, String)> {
    let roles = &s.ansible.roles;
    for (role, checks) in &s.ansible.health_checks {
        let key = format!("ansible.health_checks.{role}");
        if !roles.contains(role) {
            return Err((
                key,
                format!(
                    "role '{role}' is not in ansible.roles ({}), so no deploy would run this check",
                    roles.join(", ")
                ),
            ));
        }
        for (i, c) in checks.iter().enumerate() {
            let key = |field: &str| format!("{key}[{i}].{field}");
            if let Some(why) = path_problem(&c.path) {
                return Err((key("path"), why));
            }
            if c.port == 0 {
                return Err((key("port"), "must be 1 to 65535".into()));
            }
            if !(100..=599).contains(&c.status) {
                return Err((
                    key("status"),
                    format!("must be an HTTP status, 100 to 599; {} is not one", c.status),
                ));
            }
            if c.timeout_secs == 0 || c.timeout_secs > MAX_SECS {
                return Err((
                    key("timeout_secs"),
                    format!("must be 1 to {MAX_SECS} (s); {} is out of range", c.timeout_secs),
                ));
            }
            if c.retries > MAX_RETRIES {
                return Err((
                    key("retries"),
                    format!("must be 0 to {MAX_RETRIES}; {} is out of range", c.retries),
                ));
            }
            if c.delay_secs > MAX_SECS {
                return Err((
                    key("delay_secs"),
                    format!("must be 0 to {MAX_SECS} (s); {} is out of range", c.delay_secs),
                ));
            }
        }
        // The checks of a role run one after the other in one playbook run, which the playbook
        // timeout stops: checks that may need longer would end as a timeout, not as a verdict.
        let longest: u64 = checks.iter().map(HealthCheck::longest_secs).sum();
        if longest > s.timeouts.playbook_secs {
            return Err((
                key,
                format!(
                    "these checks may take up to {longest} s (every attempt timing out), longer than timeouts.playbook_secs ({} s): fewer retries or shorter timeouts",
                    s.timeouts.playbook_secs
                ),
            ));
        }
    }
    Ok(())
}

/// Why a path cannot be checked, if it cannot. The path goes into a generated playbook, where
/// Ansible would evaluate `{{ }}` or `{% %}` as a template: braces are refused, not escaped.
fn path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some(format!(
            "must start with '/' (a path on the host, like /healthz); '{path}' does not"
        ));
    }
    if let Some(bad) = path
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '{' | '}' | '#' | '\\'))
    {
        return Some(format!(
            "may not contain {bad:?}: spaces, control characters, braces, '#' and '\\' are refused (percent-encode them)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        assert_eq!(path_problem("/healthz?deep=1"), None);
        assert!(path_problem("healthz").unwrap().contains("must start with '/'"));
        assert!(path_problem("/x{{ lookup('pipe', 'id') }}").is_some());
        assert!(path_problem("/a b").is_some());
        assert!(path_problem("/a#frag").is_some());
    }

    #[test]
    fn the_label_names_port_and_path() {
        let c: HealthCheck = serde_saphyr::from_str("path: /healthz\nport: 8000\n").unwrap();
        assert_eq!(c.label(), "GET :8000/healthz");
        assert_eq!((c.status, c.timeout_secs, c.retries, c.delay_secs), (200, 5, 3, 2));
    }
}
