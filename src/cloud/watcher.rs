//! The stack watcher: follows one CloudFormation operation through DescribeStackEvents, the way
//! CDK's stack activity monitor does. It pages newest-first only until an event it has already
//! seen, starts from the operation's own first event, polls once more after the terminal
//! status, counts resources done over the total, and names the first real failure.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::aws_call;
use crate::cloud::Aws;
use crate::error::{Error, Result};
use crate::progress::{Progress, ProgressTx, StackEvent};

/// How the watcher paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Interval while events keep coming.
    pub poll: Duration,
    /// Ceiling of the back-off while nothing changes.
    pub max_poll: Duration,
    /// The whole wait may not take longer than this.
    pub timeout: Duration,
}

/// The operation being watched decides which final status counts as success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn success_status(self) -> &'static str {
        match self {
            Operation::Create => "CREATE_COMPLETE",
            Operation::Update => "UPDATE_COMPLETE",
            Operation::Delete => "DELETE_COMPLETE",
        }
    }
}

/// How the watched operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: String,
    pub succeeded: bool,
    /// The first real failure ("Resource creation cancelled" and wrapper messages skipped).
    pub root_cause: Option<String>,
    /// Resources that ended in a *_FAILED state, with their reasons, in order.
    pub failed: Vec<(String, String)>,
    pub events: usize,
    pub calls: usize,
}

impl Outcome {
    /// One line that leads with the root cause.
    pub fn failure_line(&self, stack: &str) -> String {
        match &self.root_cause {
            Some(cause) => format!("{cause} (stack {stack} ended {})", self.status),
            None => format!("stack {stack} ended {}", self.status),
        }
    }
}

/// Follows one stack operation. Create it with [`StackWatcher::before_operation`] *before*
/// calling CreateStack/UpdateStack/DeleteStack/ExecuteChangeSet, so that older events are
/// never mistaken for this operation's.
pub struct StackWatcher {
    stack_name: String,
    /// The stack id (ARN) once known: events of a deleted stack can only be read by id.
    stack_id: String,
    /// The newest event before the operation started; paging stops there.
    boundary: Option<String>,
    seen: HashSet<String>,
    total: usize,
    settled: BTreeMap<String, String>,
    status: Option<String>,
    root_cause: Option<String>,
    failed: Vec<(String, String)>,
    events: usize,
    calls: usize,
}

/// Statuses after which a resource counts as done for the progress bar.
fn is_settled(status: &str) -> bool {
    status.ends_with("_COMPLETE") || status.ends_with("_FAILED") || status.ends_with("_SKIPPED")
}

/// Reasons that report a consequence of another failure, not a cause.
fn is_noise(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("resource creation cancelled")
        || r.contains("resource update cancelled")
        || r.contains("resource(s) failed to")
        || r.starts_with("embedded stack")
        || r.contains("rollback requested by user")
}

impl StackWatcher {
    /// Remembers where the stack's event history stands now (one DescribeStackEvents call if
    /// the stack exists).
    pub async fn before_operation(aws: &Aws, stack_name: &str, stack_id: &str) -> Result<StackWatcher> {
        let mut w = StackWatcher {
            stack_name: stack_name.to_string(),
            stack_id: stack_id.to_string(),
            boundary: None,
            seen: HashSet::new(),
            total: 0,
            settled: BTreeMap::new(),
            status: None,
            root_cause: None,
            failed: Vec::new(),
            events: 0,
            calls: 0,
        };
        w.calls += 1;
        match aws_call!(
            aws,
            "DescribeStackEvents",
            aws.cfn.describe_stack_events().stack_name(stack_id).send()
        ) {
            Ok(out) => {
                w.boundary = out
                    .stack_events()
                    .first()
                    .and_then(|e| e.event_id().map(str::to_string));
                if let Some(id) = out.stack_events().first().and_then(|e| e.stack_id()) {
                    w.stack_id = id.to_string();
                }
            }
            Err(e) if e.is_missing_stack() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(w)
    }

    /// A watcher for a stack that has no history yet (just created).
    pub fn for_new_stack(stack_name: &str, stack_id: &str) -> StackWatcher {
        StackWatcher {
            stack_name: stack_name.to_string(),
            stack_id: stack_id.to_string(),
            boundary: None,
            seen: HashSet::new(),
            total: 0,
            settled: BTreeMap::new(),
            status: None,
            root_cause: None,
            failed: Vec::new(),
            events: 0,
            calls: 0,
        }
    }

    /// Sets the stack id once the operation's response tells it.
    pub fn set_stack_id(&mut self, id: &str) {
        self.stack_id = id.to_string();
    }

    /// How many resources the operation touches (for "done / total").
    pub fn expect_resources(&mut self, total: usize) {
        self.total = total;
    }

    /// Waits until the stack reaches a terminal status, emitting every new event and progress.
    pub async fn wait(
        &mut self,
        aws: &Aws,
        op: Operation,
        pace: Pace,
        progress: &ProgressTx,
        cancel: &CancellationToken,
    ) -> Result<Outcome> {
        let deadline = Instant::now() + pace.timeout;
        let mut interval = pace.poll;
        loop {
            let new = self.poll(aws, progress).await?;
            if let Some(status) = self.status.clone() {
                if !status.ends_with("_IN_PROGRESS") {
                    // Events of the same second can surface a moment after the terminal one.
                    self.poll(aws, progress).await?;
                    return Ok(self.outcome(op, &status));
                }
            }
            interval = if new > 0 {
                pace.poll
            } else {
                (interval.mul_f64(1.5)).min(pace.max_poll)
            };
            let now = Instant::now();
            if now >= deadline {
                let last = self.status.as_deref().unwrap_or("unknown");
                return Err(Error::Timeout(format!(
                    "stack {} still {last} after {} s",
                    self.stack_name,
                    pace.timeout.as_secs()
                )));
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(Error::Cancelled),
                _ = tokio::time::sleep(interval.min(deadline - now)) => {}
            }
        }
    }

    fn outcome(&self, op: Operation, status: &str) -> Outcome {
        let succeeded = status == op.success_status();
        Outcome {
            status: status.to_string(),
            succeeded,
            root_cause: if succeeded { None } else { self.root_cause.clone() },
            failed: self.failed.clone(),
            events: self.events,
            calls: self.calls,
        }
    }

    /// Reads the events that are new since the last poll; returns how many there were.
    async fn poll(&mut self, aws: &Aws, progress: &ProgressTx) -> Result<usize> {
        let mut fresh: Vec<StackEvent> = Vec::new();
        let mut token: Option<String> = None;
        'pages: loop {
            self.calls += 1;
            let out = aws_call!(
                aws,
                "DescribeStackEvents",
                aws.cfn
                    .describe_stack_events()
                    .stack_name(&self.stack_id)
                    .set_next_token(token.clone())
                    .send()
            )?;
            for e in out.stack_events() {
                let id = e.event_id().unwrap_or_default();
                if self.seen.contains(id) || self.boundary.as_deref() == Some(id) {
                    break 'pages;
                }
                fresh.push(convert(e));
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        let count = fresh.len();
        // Pages are newest-first; report oldest-first.
        for e in fresh.into_iter().rev() {
            self.seen.insert(e.event_id.clone());
            self.absorb(&e);
            progress.emit(Progress::StackEvent(e));
        }
        if count > 0 && self.total > 0 {
            progress.emit(Progress::StackProgress {
                stack: self.stack_name.clone(),
                done: self.settled.len().min(self.total),
                total: self.total,
            });
        }
        Ok(count)
    }

    fn absorb(&mut self, e: &StackEvent) {
        self.events += 1;
        if e.is_stack_itself() {
            self.status = Some(e.status.clone());
        } else if is_settled(&e.status) {
            self.settled.insert(e.logical_id.clone(), e.status.clone());
        }
        if e.status.ends_with("_FAILED") {
            let reason = e.reason.clone().unwrap_or_default();
            if !e.is_stack_itself() {
                self.failed.push((e.logical_id.clone(), reason.clone()));
            }
            if self.root_cause.is_none() && !reason.is_empty() && !is_noise(&reason) {
                self.root_cause = Some(if e.is_stack_itself() {
                    reason
                } else {
                    format!("{} ({}) {}: {reason}", e.logical_id, e.resource_type, e.status)
                });
            }
        }
    }
}

pub(crate) fn convert(e: &aws_sdk_cloudformation::types::StackEvent) -> StackEvent {
    StackEvent {
        event_id: e.event_id().unwrap_or_default().to_string(),
        stack_name: e.stack_name().unwrap_or_default().to_string(),
        stack_id: e.stack_id().unwrap_or_default().to_string(),
        timestamp: e
            .timestamp()
            .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
        logical_id: e.logical_resource_id().unwrap_or_default().to_string(),
        physical_id: e.physical_resource_id().unwrap_or_default().to_string(),
        resource_type: e.resource_type().unwrap_or_default().to_string(),
        status: e.resource_status().map(|s| s.as_str().to_string()).unwrap_or_default(),
        reason: e.resource_status_reason().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(logical: &str, status: &str, reason: Option<&str>) -> StackEvent {
        StackEvent {
            event_id: format!("{logical}-{status}"),
            stack_name: "argos-staging".into(),
            stack_id: "arn:stack/argos-staging/1".into(),
            timestamp: None,
            logical_id: logical.into(),
            physical_id: String::new(),
            resource_type: if logical == "argos-staging" {
                "AWS::CloudFormation::Stack"
            } else {
                "AWS::EC2::Instance"
            }
            .into(),
            status: status.into(),
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn root_cause_skips_cancellations_and_wrappers() {
        let mut w = StackWatcher::for_new_stack("argos-staging", "arn:stack/argos-staging/1");
        for e in [
            ev("argos-staging", "CREATE_IN_PROGRESS", Some("User Initiated")),
            ev("Db", "CREATE_FAILED", Some("Resource creation cancelled")),
            ev(
                "ApiEc2Instance",
                "CREATE_FAILED",
                Some("The requested configuration is currently not supported."),
            ),
            ev(
                "argos-staging",
                "ROLLBACK_IN_PROGRESS",
                Some("The following resource(s) failed to create: [ApiEc2Instance, Db]. Rollback requested by user."),
            ),
            ev("argos-staging", "ROLLBACK_COMPLETE", None),
        ] {
            w.absorb(&e);
        }
        let o = w.outcome(Operation::Create, "ROLLBACK_COMPLETE");
        assert!(!o.succeeded);
        let cause = o.root_cause.unwrap();
        assert!(
            cause.starts_with("ApiEc2Instance (AWS::EC2::Instance) CREATE_FAILED: The requested configuration"),
            "{cause}"
        );
        assert_eq!(o.failed.len(), 2);
    }

    #[test]
    fn cleanup_in_progress_is_not_terminal() {
        assert!("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS".ends_with("_IN_PROGRESS"));
        assert_eq!(Operation::Update.success_status(), "UPDATE_COMPLETE");
    }
}
