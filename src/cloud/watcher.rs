//! The stack watcher: follows one CloudFormation operation through DescribeStackEvents, the way
//! CDK's stack activity monitor does. It pages newest-first only until an event it has already
//! seen, starts from the operation's own first event, polls once more after the terminal
//! status, counts resources done over the total, and names the first real failure.
//!
//! Pacing is resource-aware: while every resource in progress is a create of a type known to
//! take long (an RDS instance, a CloudFront distribution, ...) that is still well inside its
//! minimum typical duration, nothing can happen until one of them completes, so the next poll
//! waits until the earliest expected completion (capped); otherwise the interval is `poll`
//! while events keep coming, backing off to `max_poll` while nothing changes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::aws_call;
use crate::cloud::Aws;
use crate::error::{Error, Result};
use crate::progress::{Progress, ProgressTx, StackEvent};

mod pushed;
pub use pushed::{Follow, Pushed};

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

/// Creates that take long, with a conservative *minimum* of how long one takes, in seconds.
///
/// The figures come from general experience with CloudFormation, not from AWS documentation
/// (AWS publishes no creation times): they are deliberately lower than the usual durations,
/// which are often several times longer (an RDS instance typically takes 5-15 min, Multi-AZ
/// longer; an OpenSearch domain or an EKS cluster 10-20 min; a CloudFront distribution several
/// minutes; an EC2 instance 30 s-2 min until CloudFormation sees it running). A resource that
/// finishes early only costs latency, bounded by the cap on the wait.
///
/// Deliberately absent: types whose duration depends on the template rather than the type
/// (`AWS::AutoScaling::AutoScalingGroup` takes seconds unless it waits for signals or
/// instances; nested stacks; custom resources; wait conditions), and the many fast types.
/// Only creates count: updates of these types are often quick (tags, parameters), and a
/// replacement shows up as UPDATE_IN_PROGRESS.
const SLOW_CREATES: &[(&str, u64)] = &[
    ("AWS::RDS::DBInstance", 240),
    ("AWS::RDS::DBCluster", 120),
    ("AWS::ElastiCache::CacheCluster", 180),
    ("AWS::ElastiCache::ReplicationGroup", 240),
    ("AWS::CloudFront::Distribution", 120),
    ("AWS::OpenSearchService::Domain", 300),
    ("AWS::Elasticsearch::Domain", 300),
    ("AWS::EKS::Cluster", 300),
    ("AWS::EC2::NatGateway", 40),
    ("AWS::EC2::Instance", 20),
];

/// The conservative minimum duration of a create of `resource_type`, if it is known to be slow.
pub fn min_create_duration(resource_type: &str) -> Option<Duration> {
    SLOW_CREATES
        .iter()
        .find(|(t, _)| *t == resource_type)
        .map(|(_, secs)| Duration::from_secs(*secs))
}

/// A wait on slow resources never exceeds this (in the operation's time)...
pub const SLOW_WAIT_MAX: Duration = Duration::from_secs(30);
/// ... nor this many back-off ceilings (`max_poll`), so that fast paces stay fast.
pub const SLOW_WAIT_MAX_POLLS: u32 = 5;

/// One resource in progress, as the pacing decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct InProgress<'a> {
    pub resource_type: &'a str,
    /// CREATE_IN_PROGRESS (other operations on a resource are never assumed slow).
    pub creating: bool,
    /// The handler has started ("Resource creation Initiated", or a physical id is known):
    /// before that, a second event is imminent.
    pub initiated: bool,
    /// Since its first CREATE_IN_PROGRESS event.
    pub age: Duration,
}

/// The wait before the next poll. `base` is the interval of the ordinary pacing; `steady`
/// says the last poll found nothing new and the stack is in its main in-progress status with
/// no failure seen (not rolling back, not cleaning up). When every resource in progress is an initiated create of a slow type
/// that is still inside its minimum duration, nothing new can happen before the earliest of
/// them could complete: wait until then, at most `cap` and never less than `base`.
/// Otherwise `base`.
pub fn paced_wait(base: Duration, cap: Duration, steady: bool, running: &[InProgress<'_>]) -> Duration {
    if !steady || running.is_empty() {
        return base;
    }
    let mut earliest = Duration::MAX;
    for r in running {
        let min = match min_create_duration(r.resource_type) {
            Some(min) if r.creating && r.initiated => min,
            _ => return base,
        };
        match min.checked_sub(r.age) {
            Some(left) if !left.is_zero() => earliest = earliest.min(left),
            // Past its minimum: it may complete any moment.
            _ => return base,
        }
    }
    earliest.min(cap).max(base)
}

/// A resource of the operation that is in progress.
#[derive(Debug, Clone)]
struct Running {
    resource_type: String,
    creating: bool,
    initiated: bool,
    /// When its first in-progress event happened, on the local clock.
    since: Instant,
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
    /// The stack reached the operation's success status: everything it touched is settled,
    /// also the resources whose own events never came (moto reports a delete with stack
    /// events only).
    completed: bool,
    status: Option<String>,
    root_cause: Option<String>,
    failed: Vec<(String, String)>,
    events: usize,
    calls: usize,
    /// Resources in progress, by logical id.
    running: BTreeMap<String, Running>,
    /// Seconds of the operation per second of the clock (1 against AWS).
    time_scale: f64,
    /// The operation being watched, once [`StackWatcher::wait`] is called.
    op: Option<Operation>,
    /// The operation's client request token and where pushed events are stored: with both,
    /// the watcher reads the store and polls CloudFormation only as a fallback.
    follow: Follow,
    /// How often each event (by [`Fingerprint`]) was seen from each source, and reported:
    /// a pushed event and the same event polled are reported once.
    seen_pushed: HashMap<Fingerprint, usize>,
    seen_polled: HashMap<Fingerprint, usize>,
    reported: HashMap<Fingerprint, usize>,
    /// The time of the stack's own event that set `status` (pushed events come out of order).
    status_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What identifies one event across the two sources (EventBridge's ids are not the event ids
/// DescribeStackEvents shows): the resource, its status and the reason. The same fingerprint
/// can occur more than once in one operation (an update and its rollback), so sources are
/// compared by how many times each has seen it.
type Fingerprint = (String, String, String);

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Pushed,
    Polled,
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
        let mut w = StackWatcher::for_new_stack(stack_name, stack_id);
        w.calls += 1;
        match aws_call!(
            aws,
            "DescribeStackEvents",
            aws.cfn().await.describe_stack_events().stack_name(stack_id).send()
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
            completed: false,
            status: None,
            root_cause: None,
            failed: Vec::new(),
            events: 0,
            calls: 0,
            running: BTreeMap::new(),
            time_scale: 1.0,
            op: None,
            follow: Follow::default(),
            seen_pushed: HashMap::new(),
            seen_polled: HashMap::new(),
            reported: HashMap::new(),
            status_at: None,
        }
    }

    /// For tests and benchmarks against a fake AWS that compresses time: how many seconds of
    /// the operation pass per second of the clock, so that the minimum durations of slow
    /// resources keep their meaning. 1 (the default) against AWS.
    pub fn set_time_scale(&mut self, operation_seconds_per_clock_second: f64) {
        let scale = operation_seconds_per_clock_second;
        self.time_scale = if scale.is_finite() && scale > 0.0 { scale } else { 1.0 };
    }

    /// Sets the stack id once the operation's response tells it.
    pub fn set_stack_id(&mut self, id: &str) {
        self.stack_id = id.to_string();
    }

    /// How many resources the operation touches (for "done / total"): those the template
    /// creates, the changes of a change set, the resources a delete removes.
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
        self.op = Some(op);
        // Both watches on the heap: each holds SDK calls' futures, and inline they made every
        // caller's future (a commission holds a bake's watch, then the stack's) large enough
        // that a debug build overflowed a 2 MiB thread stack polling a commission.
        if self.follow.is_pushed() {
            // `None`: the store cannot be read; poll as without it, from where it left off.
            if let Some(outcome) = Box::pin(self.wait_pushed(aws, op, pace, deadline, progress, cancel)).await? {
                return Ok(outcome);
            }
        }
        Box::pin(self.poll_until_done(aws, op, pace, deadline, progress, cancel)).await
    }

    /// The polling watch: DescribeStackEvents at the watcher's pace until a terminal status.
    async fn poll_until_done(
        &mut self,
        aws: &Aws,
        op: Operation,
        pace: Pace,
        deadline: Instant,
        progress: &ProgressTx,
        cancel: &CancellationToken,
    ) -> Result<Outcome> {
        let mut backoff = pace.poll;
        loop {
            let new = self.poll(aws, progress).await?;
            if let Some(status) = self.status.clone() {
                if !status.ends_with("_IN_PROGRESS") {
                    // Events of the same second can surface a moment after the terminal one.
                    self.poll(aws, progress).await?;
                    return Ok(self.outcome(op, &status));
                }
            }
            backoff = if new > 0 {
                pace.poll
            } else {
                (backoff.mul_f64(1.5)).min(pace.max_poll)
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timed_out(&pace));
            }
            let interval = self.next_interval(backoff, new == 0, &pace, now);
            tokio::select! {
                _ = cancel.cancelled() => return Err(Error::Cancelled),
                _ = tokio::time::sleep(interval.min(deadline - now)) => {}
            }
        }
    }

    fn timed_out(&self, pace: &Pace) -> Error {
        let last = self.status.as_deref().unwrap_or("unknown");
        Error::Timeout(format!(
            "stack {} still {last} after {:.1} s",
            self.stack_name,
            pace.timeout.as_secs_f64()
        ))
    }

    /// Whether `e` is news: not reported before from either source. Counts it for `source`.
    fn is_news(&mut self, source: Source, e: &StackEvent) -> bool {
        let fp: Fingerprint = (
            e.logical_id.clone(),
            e.status.clone(),
            e.reason.clone().unwrap_or_default(),
        );
        let seen = match source {
            Source::Pushed => &mut self.seen_pushed,
            Source::Polled => &mut self.seen_polled,
        };
        let n = seen.entry(fp.clone()).or_default();
        *n += 1;
        let n = *n;
        let reported = self.reported.entry(fp).or_default();
        if n > *reported {
            *reported = n;
            true
        } else {
            false
        }
    }

    /// Reports a batch of new events (oldest first, any source) as progress, and tracks them.
    /// Returns how many were news.
    fn report(&mut self, source: Source, batch: Vec<StackEvent>, progress: &ProgressTx) -> usize {
        // When each event happened on the local clock: the newest one just now, the others as
        // much earlier as their timestamps say (only differences of AWS timestamps are used,
        // so clock skew does not matter; the newest may be older than "now" by up to the time
        // since the last poll, which the conservative minimum durations absorb).
        let at = Instant::now();
        let newest = batch.iter().filter_map(|e| e.timestamp).max();
        let mut count = 0;
        for e in batch {
            if !self.is_news(source, &e) {
                continue;
            }
            count += 1;
            let before = match (newest, e.timestamp) {
                (Some(n), Some(t)) => (n - t).to_std().unwrap_or_default(),
                _ => Duration::ZERO,
            };
            self.track(&e, at.checked_sub(before).unwrap_or(at));
            self.absorb(&e);
            progress.emit(Progress::StackEvent(e));
        }
        if count > 0 && self.total > 0 {
            progress.emit(Progress::StackProgress {
                stack: self.stack_name.clone(),
                done: self.done(),
                total: self.total,
            });
        }
        count
    }

    /// The wait before the next poll: `backoff`, or longer while only slow creates run.
    /// `quiet`: the last poll found nothing new. A completion is followed within a moment by
    /// the start of the resources that depend on it, so only a poll that found nothing new
    /// shows the set of resources in progress as it will stay.
    fn next_interval(&self, backoff: Duration, quiet: bool, pace: &Pace, now: Instant) -> Duration {
        let steady = quiet
            && self.failed.is_empty()
            && matches!(
                self.status.as_deref(),
                Some("CREATE_IN_PROGRESS" | "UPDATE_IN_PROGRESS")
            );
        let scale = self.time_scale;
        let running: Vec<InProgress<'_>> = self
            .running
            .values()
            .map(|r| InProgress {
                resource_type: &r.resource_type,
                creating: r.creating,
                initiated: r.initiated,
                age: now.saturating_duration_since(r.since).mul_f64(scale),
            })
            .collect();
        let cap = SLOW_WAIT_MAX.min(pace.max_poll.mul_f64(scale) * SLOW_WAIT_MAX_POLLS);
        paced_wait(backoff.mul_f64(scale), cap, steady, &running).div_f64(scale)
    }

    /// Keeps the resources in progress and since when. `since` is when the event happened on
    /// the local clock.
    fn track(&mut self, e: &StackEvent, since: Instant) {
        if e.is_stack_itself() {
            return;
        }
        if e.status.ends_with("_IN_PROGRESS") {
            let creating = e.status == "CREATE_IN_PROGRESS";
            let initiated = !e.physical_id.is_empty()
                || e.reason
                    .as_deref()
                    .is_some_and(|r| r.to_ascii_lowercase().contains("initiated"));
            let r = self.running.entry(e.logical_id.clone()).or_insert_with(|| Running {
                resource_type: e.resource_type.clone(),
                creating,
                initiated: false,
                since,
            });
            if r.creating != creating {
                // A new phase (an update or a delete of a resource seen before) starts afresh.
                r.creating = creating;
                r.initiated = false;
                r.since = since;
            }
            r.initiated |= initiated;
            r.since = r.since.min(since);
        } else {
            self.running.remove(&e.logical_id);
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
        self.read_new(aws, progress, usize::MAX).await
    }

    /// Reads the new events from at most `max_pages` pages of DescribeStackEvents (newest
    /// first), reports them oldest first and returns how many there were.
    async fn read_new(&mut self, aws: &Aws, progress: &ProgressTx, max_pages: usize) -> Result<usize> {
        let mut fresh: Vec<StackEvent> = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        'pages: loop {
            pages += 1;
            self.calls += 1;
            let out = aws_call!(
                aws,
                "DescribeStackEvents",
                aws.cfn()
                    .await
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
                Some(t) if !t.is_empty() && pages < max_pages => token = Some(t.to_string()),
                _ => break,
            }
        }
        // Pages are newest-first; report oldest-first.
        fresh.reverse();
        for e in &fresh {
            self.seen.insert(e.event_id.clone());
        }
        Ok(self.report(Source::Polled, fresh, progress))
    }

    /// How many of the resources the operation touches are settled.
    fn done(&self) -> usize {
        if self.completed {
            self.total
        } else {
            self.settled.len().min(self.total)
        }
    }

    fn absorb(&mut self, e: &StackEvent) {
        self.events += 1;
        if e.is_stack_itself() {
            // A pushed event can arrive after a later one: the latest by time sets the status.
            if self.status_at.is_none() || e.timestamp >= self.status_at {
                self.status = Some(e.status.clone());
                self.status_at = e.timestamp;
            }
            self.completed |= self.op.is_some_and(|op| e.status == op.success_status());
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
mod tests;
