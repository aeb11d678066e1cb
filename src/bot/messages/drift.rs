//! The words of `drift`: a detection's result as a job's summary (chat and CLI alike).

use crate::engine::{DriftReport, Summary};

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
