//! The words of `drift`: a detection's result as a job's summary (chat and CLI alike).

use crate::engine::{DriftReport, Summary};
use crate::store::{DriftRecord, DriftState};

/// A job's command as people typed it, for its request and its status message: `update
/// --revert-drift` is not an ordinary update to whoever approves or watches it.
pub fn job_command(action: &str, args: &str) -> String {
    match crate::command::Action::from_stored(action, args) {
        Ok(crate::command::Action::Update { revert_drift: true, .. }) => format!("{action} --revert-drift"),
        _ => action.to_string(),
    }
}

/// `argos-prod: drifted: 2 resource(s)` and, beneath, each drifted resource with its changed
/// properties, the resources that were not checked (named, never folded into "in sync"), and
/// how long the detection took. Values are already masked where they may be secrets.
pub fn drift_summary(r: &DriftReport) -> Summary {
    let headline = if r.is_drifted() {
        format!("{}: drifted: {} resource(s)", r.stack_name, r.drifted.len())
    } else if r.not_checked.is_empty() {
        format!("{}: in sync", r.stack_name)
    } else {
        format!(
            "{}: in sync, but {} resource(s) not checked",
            r.stack_name,
            r.not_checked.len()
        )
    };
    let mut s = Summary::new(headline);
    for d in &r.drifted {
        s.details
            .push(format!("{} ({}): {}", d.logical_id, d.resource_type, d.status));
        for p in &d.properties {
            s.details.push(format!(
                "  {} [{}]: expected {}, actual {}",
                p.path,
                p.difference,
                shown(&p.expected),
                shown(&p.actual)
            ));
        }
    }
    s.details.push(format!("{} resource(s) checked and in sync", r.in_sync));
    if !r.not_checked.is_empty() {
        let names: Vec<String> = r.not_checked.iter().map(|(id, t)| format!("{id} ({t})")).collect();
        s.details.push(format!(
            "not checked (CloudFormation cannot check these types or gave no result): {}",
            names.join(", ")
        ));
    }
    s.details.push(format!("detection took {}", took(r.took)));
    s
}

/// What a scheduled check says about one environment, only when something changed since its
/// previous check: newly drifted, drift changed (other resources), back in sync, or failing.
/// Nothing for the first check of an environment in sync, or the same state again.
pub fn drift_change(
    env: &str,
    before: Option<&DriftRecord>,
    after: Option<&DriftRecord>,
    report: Option<&DriftReport>,
) -> Option<String> {
    let after = after?;
    let names = |r: &DriftRecord| drifted_names(&r.summary);
    let now_drifted = || {
        report
            .map(|r| r.drifted.iter().map(|d| d.logical_id.clone()).collect::<Vec<_>>())
            .unwrap_or_else(|| names(after))
            .join(", ")
    };
    let before_state = before.map(|b| b.state);
    match (before_state, after.state) {
        (Some(DriftState::Drifted), DriftState::Drifted) if before.map(names) != Some(names(after)) => Some(format!(
            "⚠️ {env}: drift changed: {} resource(s) now ({})",
            after.drifted,
            now_drifted()
        )),
        (Some(DriftState::Drifted), DriftState::Drifted) => None,
        (_, DriftState::Drifted) => Some(format!(
            "⚠️ {env}: drifted: {} resource(s) ({})",
            after.drifted,
            now_drifted()
        )),
        (Some(DriftState::Drifted), DriftState::InSync) => Some(format!("✅ {env}: back in sync")),
        (_, DriftState::InSync) => None,
        (Some(DriftState::Failed), DriftState::Failed) => None,
        (_, DriftState::Failed) => Some(format!("❌ {env}: the drift check failed")),
    }
}

/// The logical ids in a recorded summary's `drifted` list.
fn drifted_names(summary: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(summary)
        .ok()
        .and_then(|v| {
            v["drifted"]
                .as_array()
                .map(|list| list.iter().filter_map(|d| d[0].as_str().map(str::to_string)).collect())
        })
        .unwrap_or_default()
}

/// The post of a scheduled drift check: its changes, and how to see the details.
pub fn drift_announcement(schedule: &str, changes: &[String], prefix: &str) -> String {
    let mut lines = vec![format!("🔎 **Drift check** ({schedule})")];
    lines.extend(changes.iter().cloned());
    lines.push(format!("Details: `{prefix} <env> drift`."));
    lines.join("\n")
}

fn shown(value: &str) -> &str {
    if value.is_empty() {
        "(none)"
    } else {
        value
    }
}

fn took(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The last detection in a few words, for `status` and `envs`: `drifted: 2 resources, checked
/// 3h ago`, `in sync, checked 5m ago`, `drift check failed 1d ago`.
pub fn drift_line(r: &DriftRecord, now: chrono::DateTime<chrono::Utc>) -> String {
    let ago = ago(now - r.checked_at);
    match r.state {
        DriftState::InSync => format!("in sync, checked {ago}"),
        DriftState::Drifted if r.drifted == 1 => format!("drifted: 1 resource, checked {ago}"),
        DriftState::Drifted => format!("drifted: {} resources, checked {ago}", r.drifted),
        DriftState::Failed => format!("drift check failed {ago}"),
    }
}

/// `status`'s line about drift (empty when it was never checked).
pub fn status_drift(r: Option<&DriftRecord>, now: chrono::DateTime<chrono::Utc>) -> String {
    r.map(|r| format!("\nDrift: {}", drift_line(r, now)))
        .unwrap_or_default()
}

fn ago(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    match secs {
        0..=59 => "just now".into(),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: DriftState, drifted: u32, hours: i64) -> (DriftRecord, chrono::DateTime<chrono::Utc>) {
        let now = chrono::Utc::now();
        let r = DriftRecord {
            env: "staging".into(),
            checked_at: now - chrono::TimeDelta::hours(hours) - chrono::TimeDelta::minutes(5),
            state,
            drifted,
            summary: "{}".into(),
        };
        (r, now)
    }

    #[test]
    fn the_last_check_in_a_few_words() {
        let (r, now) = record(DriftState::Drifted, 2, 3);
        assert_eq!(drift_line(&r, now), "drifted: 2 resources, checked 3h ago");
        let (r, now) = record(DriftState::Drifted, 1, 0);
        assert_eq!(drift_line(&r, now), "drifted: 1 resource, checked 5m ago");
        let (r, now) = record(DriftState::InSync, 0, 48);
        assert_eq!(drift_line(&r, now), "in sync, checked 2d ago");
        let (r, now) = record(DriftState::Failed, 0, 1);
        assert_eq!(drift_line(&r, now), "drift check failed 1h ago");
        assert_eq!(status_drift(None, now), "");
    }
}
