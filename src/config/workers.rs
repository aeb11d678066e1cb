//! `workers:`: how Argos answers the workers' lifecycle hooks: how often it looks for new
//! and leaving workers, how often it tells Auto Scaling it is still configuring one, which
//! role configures a new worker and which playbook drains a leaving one.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Seconds between two looks at each environment's worker group (one
    /// DescribeAutoScalingGroups call per environment); 0 turns the lookout off.
    pub poll_secs: u64,
    /// Seconds between two lifecycle heartbeats while a worker is configured or drained (the
    /// hooks time out after 900 s without one).
    pub heartbeat_secs: u64,
    /// The role whose playbook configures a new worker.
    pub role: String,
    /// The playbook (in the playbooks folder, without `.yml`) run on a leaving worker before
    /// it is let go, e.g. `worker-drain` stopping the worker service; none: let it go at once.
    pub drain_playbook: Option<String>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            poll_secs: 30,
            heartbeat_secs: 60,
            role: "worker".into(),
            drain_playbook: None,
        }
    }
}

impl WorkerSettings {
    /// What is wrong with the section, if anything: the key and why.
    pub fn problem(&self) -> Option<(String, String)> {
        if self.heartbeat_secs == 0 || self.heartbeat_secs >= 900 {
            return Some((
                "workers.heartbeat_secs".into(),
                format!(
                    "{} is not between 1 and 899: the hooks time out after 900 s without a heartbeat",
                    self.heartbeat_secs
                ),
            ));
        }
        if let Some(p) = &self.drain_playbook {
            if p.is_empty() || p.contains('/') || p.contains("..") || p.ends_with(".yml") {
                return Some((
                    "workers.drain_playbook".into(),
                    format!("{p:?} is not a playbook name (a file name in the playbooks folder, without .yml)"),
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_heartbeat_or_drain_playbook_is_named() {
        assert_eq!(WorkerSettings::default().problem(), None);
        let slow = WorkerSettings {
            heartbeat_secs: 900,
            ..Default::default()
        };
        let (key, why) = slow.problem().unwrap();
        assert_eq!(key, "workers.heartbeat_secs");
        assert!(why.starts_with("900 is not between 1 and 899"), "{why}");
        for bad in ["../drain", "drain.yml", "", "roles/drain"] {
            let s = WorkerSettings {
                drain_playbook: Some(bad.into()),
                ..Default::default()
            };
            assert_eq!(
                s.problem().map(|p| p.0).as_deref(),
                Some("workers.drain_playbook"),
                "{bad:?}"
            );
        }
        let good = WorkerSettings {
            drain_playbook: Some("worker-drain".into()),
            ..Default::default()
        };
        assert_eq!(good.problem(), None);
    }
}
