//! Drift detection (moto has none): DetectStackDrift starts a detection that plays a
//! [`DriftScript`] on the fake's clock; DescribeStackDriftDetectionStatus follows it;
//! DescribeStackResourceDrifts pages through its results (`set_event_page_size` per page).
//! Without a script, every resource of the stack is found IN_SYNC at once. A change set in
//! REVERT_DRIFT mode reverts what the stack's last finished detection found.

use super::*;

/// What the next detection on a stack finds, and after how many scenario seconds.
#[derive(Clone, Debug)]
pub struct DriftScript {
    pub seconds: f64,
    pub outcome: DriftOutcome,
}

#[derive(Clone, Debug)]
pub enum DriftOutcome {
    /// These results (a resource left out is one CloudFormation could not check).
    Complete(Vec<ResourceDrift>),
    /// DETECTION_FAILED with this reason.
    Failed(String),
}

/// One resource's result.
#[derive(Clone, Debug)]
pub struct ResourceDrift {
    pub logical_id: String,
    pub resource_type: String,
    /// IN_SYNC, MODIFIED, DELETED, NOT_CHECKED.
    pub status: String,
    /// `(path, expected, actual, difference type)`.
    pub differences: Vec<(String, String, String, String)>,
}

impl ResourceDrift {
    pub fn in_sync(logical_id: &str, resource_type: &str) -> ResourceDrift {
        ResourceDrift {
            logical_id: logical_id.into(),
            resource_type: resource_type.into(),
            status: "IN_SYNC".into(),
            differences: vec![],
        }
    }

    /// MODIFIED, with `(path, expected, actual)` NOT_EQUAL differences.
    pub fn modified(logical_id: &str, resource_type: &str, differences: &[(&str, &str, &str)]) -> ResourceDrift {
        ResourceDrift {
            logical_id: logical_id.into(),
            resource_type: resource_type.into(),
            status: "MODIFIED".into(),
            differences: differences
                .iter()
                .map(|(p, e, a)| (p.to_string(), e.to_string(), a.to_string(), "NOT_EQUAL".to_string()))
                .collect(),
        }
    }
}

impl DriftScript {
    /// Done after `seconds` with these results.
    pub fn complete(seconds: f64, results: Vec<ResourceDrift>) -> DriftScript {
        DriftScript {
            seconds,
            outcome: DriftOutcome::Complete(results),
        }
    }

    /// Fails after `seconds` with this reason.
    pub fn failed(seconds: f64, reason: &str) -> DriftScript {
        DriftScript {
            seconds,
            outcome: DriftOutcome::Failed(reason.into()),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct DetectionRec {
    id: String,
    stack_id: String,
    done_at: Option<Instant>,
    outcome: DriftOutcome,
}

impl FakeAws {
    /// The next detection on the stack named `stack` plays `script` (queued, FIFO).
    pub fn script_drift(&self, stack: &str, script: DriftScript) {
        lock(&self.state)
            .drift_scripts
            .entry(stack.to_string())
            .or_default()
            .push_back(script);
    }
}

impl State {
    pub(super) fn detect_stack_drift(&mut self, p: &Params, now: Instant) -> Answer {
        let idx = self.live_stack(p, now, false)?;
        let (name, stack_id) = (self.stacks[idx].name.clone(), self.stacks[idx].id.clone());
        let script = self
            .drift_scripts
            .get_mut(&name)
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| {
                let all = self.stacks[idx]
                    .resources(now)
                    .into_iter()
                    .map(|e| ResourceDrift::in_sync(&e.logical_id, &e.resource_type))
                    .collect();
                DriftScript::complete(0.0, all)
            });
        let real = script.seconds / self.time_scale;
        let done_at = (real.is_finite()).then(|| now + Duration::from_secs_f64(real.max(0.0)));
        let n = self.next_seq();
        let id = uuid(n, 0xd21f);
        self.detections.push(DetectionRec {
            id: id.clone(),
            stack_id,
            done_at,
            outcome: script.outcome,
        });
        Ok(tag("StackDriftDetectionId", &id))
    }

    pub(super) fn describe_stack_drift_detection_status(&mut self, p: &Params, now: Instant) -> Answer {
        let id = p.get("StackDriftDetectionId").cloned().unwrap_or_default();
        let d = self
            .detections
            .iter()
            .find(|d| d.id == id)
            .ok_or_else(|| validation(format!("No drift detection with id {id}")))?;
        let mut x = tag("StackId", &d.stack_id) + &tag("StackDriftDetectionId", &d.id);
        let done = d.done_at.is_some_and(|t| t <= now);
        match (&d.outcome, done) {
            (_, false) => x += &tag("DetectionStatus", "DETECTION_IN_PROGRESS"),
            (DriftOutcome::Failed(reason), true) => {
                x += &tag("StackDriftStatus", "UNKNOWN");
                x += &tag("DetectionStatus", "DETECTION_FAILED");
                x += &tag("DetectionStatusReason", reason);
            }
            (DriftOutcome::Complete(results), true) => {
                let drifted = results
                    .iter()
                    .filter(|r| r.status == "MODIFIED" || r.status == "DELETED")
                    .count();
                x += &tag("StackDriftStatus", if drifted > 0 { "DRIFTED" } else { "IN_SYNC" });
                x += &tag("DetectionStatus", "DETECTION_COMPLETE");
                x += &tag("DriftedStackResourceCount", &drifted.to_string());
            }
        }
        x += &tag("Timestamp", &self.ts(now));
        Ok(x)
    }

    pub(super) fn describe_stack_resource_drifts(&mut self, p: &Params, now: Instant) -> Answer {
        let idx = self.live_stack(p, now, true)?;
        let stack_id = self.stacks[idx].id.clone();
        let results = self
            .detections
            .iter()
            .rev()
            .find(|d| d.stack_id == stack_id && d.done_at.is_some_and(|t| t <= now))
            .map(|d| match &d.outcome {
                DriftOutcome::Complete(r) => r.clone(),
                DriftOutcome::Failed(_) => vec![],
            })
            .unwrap_or_default();
        let start = match p.get("NextToken") {
            Some(t) => t
                .strip_prefix("drift1.")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n <= results.len())
                .ok_or_else(|| validation("Invalid NextToken"))?,
            None => 0,
        };
        let end = (start + self.page_size).min(results.len());
        let mut x = String::from("<StackResourceDrifts>");
        for r in &results[start..end] {
            x += "<member>";
            x += &tag("StackId", &stack_id);
            x += &tag("LogicalResourceId", &r.logical_id);
            x += &tag("PhysicalResourceId", &format!("{}-physical", r.logical_id));
            x += &tag("ResourceType", &r.resource_type);
            x += "<PropertyDifferences>";
            for (path, expected, actual, kind) in &r.differences {
                x += "<member>";
                x += &tag("PropertyPath", path);
                x += &tag("ExpectedValue", expected);
                x += &tag("ActualValue", actual);
                x += &tag("DifferenceType", kind);
                x += "</member>";
            }
            x += "</PropertyDifferences>";
            x += &tag("StackResourceDriftStatus", &r.status);
            x += &tag("Timestamp", &self.ts(now));
            x += "</member>";
        }
        x += "</StackResourceDrifts>";
        if end < results.len() {
            x += &tag("NextToken", &format!("drift1.{end}"));
        }
        Ok(x)
    }
}

impl State {
    /// The changes of a REVERT_DRIFT change set: each resource the stack's last finished
    /// detection found MODIFIED, with its properties back from the actual to the expected
    /// value; each one found DELETED, created again. None when it found no drift.
    pub(super) fn drift_reverts(&self, stack_id: &str, now: Instant) -> Vec<Change> {
        let Some(DriftOutcome::Complete(results)) = self
            .detections
            .iter()
            .rev()
            .find(|d| d.stack_id == stack_id && d.done_at.is_some_and(|t| t <= now))
            .map(|d| &d.outcome)
        else {
            return vec![];
        };
        results
            .iter()
            .filter_map(|r| match r.status.as_str() {
                "MODIFIED" => Some(Change {
                    details: r
                        .differences
                        .iter()
                        .map(|(path, expected, actual, _)| {
                            (format!("/Properties{path}"), actual.clone(), expected.clone())
                        })
                        .collect(),
                    ..Change::modify(&r.logical_id, &r.resource_type, "False", &["Properties"])
                }),
                "DELETED" => Some(Change::add(&r.logical_id, &r.resource_type)),
                _ => None,
            })
            .collect()
    }
}
