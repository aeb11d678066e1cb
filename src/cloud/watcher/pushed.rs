//! The watcher's pushed mode: the operation's events come from the store, where the events
//! queue's consumer (any replica) put them, matched by the client request token Argos set on
//! the call. CloudFormation is called only to confirm the end (one DescribeStacks, and one page
//! of DescribeStackEvents for the root cause of a failure) and when no event has come for the
//! quiet period (an event lost, the consumer stopped): then the watcher polls once, and if that
//! finds events the push did not bring, it polls at its pace until pushed events come again.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Operation, Outcome, Pace, Source, StackWatcher};
use crate::aws_call;
use crate::cloud::Aws;
use crate::error::Result;
use crate::progress::ProgressTx;
use crate::store::Store;

/// Where pushed events are found, and how long to trust their silence.
#[derive(Clone)]
pub struct Pushed {
    pub store: Store,
    /// No pushed event for this long during an operation: poll CloudFormation.
    pub quiet: Duration,
    /// How often the store is read (it costs no AWS call).
    pub check: Duration,
}

impl Pushed {
    pub fn new(store: Store, quiet: Duration) -> Pushed {
        Pushed {
            store,
            quiet,
            check: Duration::from_millis(250),
        }
    }
}

/// How one operation is followed: its client request token (set on the call) and, when the
/// bot consumes the events queue, where its pushed events are stored. The default polls.
#[derive(Clone, Default)]
pub struct Follow {
    pub token: Option<String>,
    pub pushed: Option<Pushed>,
}

impl Follow {
    pub(super) fn is_pushed(&self) -> bool {
        self.token.is_some() && self.pushed.is_some()
    }
}

impl StackWatcher {
    /// Follows the operation through `follow`: its token, and pushed events if there are any.
    pub fn follow(&mut self, follow: &Follow) {
        self.follow = follow.clone();
    }

    /// The pushed watch: `Some` with the confirmed outcome, `None` when the store cannot be
    /// read and the caller must poll. While no event is pushed for the quiet period, it polls
    /// once; when that finds events the push did not bring (lost, or late), it polls at the
    /// watcher's pace until pushed events come again.
    pub(super) async fn wait_pushed(
        &mut self,
        aws: &Aws,
        op: Operation,
        pace: Pace,
        deadline: Instant,
        progress: &ProgressTx,
        cancel: &CancellationToken,
    ) -> Result<Option<Outcome>> {
        let (Some(token), Some(pushed)) = (self.follow.token.clone(), self.follow.pushed.clone()) else {
            return Ok(None);
        };
        let mut after_seq = 0;
        let mut next_poll = Instant::now() + pushed.quiet;
        let mut polling = false;
        let mut written = pushed.store.stack_events_written();
        loop {
            written.borrow_and_update();
            let rows = match pushed.store.stack_events_since(&self.stack_id, &token, after_seq) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "pushed stack events: cannot read the store; polling");
                    return Ok(None);
                }
            };
            if let Some(max) = rows.iter().map(|r| r.seq).max() {
                after_seq = max;
                next_poll = Instant::now() + pushed.quiet;
                polling = false;
            }
            self.report(Source::Pushed, rows.into_iter().map(|r| r.event).collect(), progress);
            if let Some(outcome) = self.end_if_over(aws, op, progress).await? {
                return Ok(Some(outcome));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timed_out(&pace));
            }
            if now >= next_poll {
                let found = self.poll(aws, progress).await?;
                if let Some(outcome) = self.end_if_over(aws, op, progress).await? {
                    return Ok(Some(outcome));
                }
                if found > 0 && !polling {
                    polling = true;
                    progress.info(format!(
                        "no stack event pushed for {:?}: polling {}",
                        pushed.quiet, self.stack_name
                    ));
                }
                next_poll = Instant::now() + if polling { pace.poll } else { pushed.quiet };
            }
            let wake = next_poll.min(Instant::now() + pushed.check).min(deadline);
            tokio::select! {
                _ = cancel.cancelled() => return Err(crate::error::Error::Cancelled),
                // Stored by this process's consumer: look at once.
                _ = written.changed() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// When the events say the operation ended, its confirmed outcome.
    async fn end_if_over(&mut self, aws: &Aws, op: Operation, progress: &ProgressTx) -> Result<Option<Outcome>> {
        if self.status.as_deref().is_some_and(|s| !s.ends_with("_IN_PROGRESS")) {
            return self.confirm(aws, op, progress).await;
        }
        Ok(None)
    }

    /// The events say the operation ended: one DescribeStacks confirms it, and for a failure
    /// one page of DescribeStackEvents brings the events the push did not (the root cause
    /// among them). `None` when the stack is still in progress (an event came out of order).
    async fn confirm(&mut self, aws: &Aws, op: Operation, progress: &ProgressTx) -> Result<Option<Outcome>> {
        self.calls += 1;
        let status = match aws_call!(
            aws,
            "DescribeStacks",
            aws.cfn().await.describe_stacks().stack_name(&self.stack_id).send()
        ) {
            Ok(out) => out
                .stacks()
                .first()
                .and_then(|s| s.stack_status())
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            // A deleted stack read by name is gone; by id it answers DELETE_COMPLETE.
            Err(e) if e.is_missing_stack() && op == Operation::Delete => "DELETE_COMPLETE".to_string(),
            Err(e) => return Err(e.into()),
        };
        if status.ends_with("_IN_PROGRESS") || status.is_empty() {
            // An end that came out of order: wait for the next one, do not ask again.
            self.status = Some(status)
                .filter(|s| !s.is_empty())
                .or(Some("UNKNOWN_IN_PROGRESS".into()));
            return Ok(None);
        }
        if status != op.success_status() {
            self.page(aws, progress).await?;
        }
        self.status = Some(status.clone());
        self.completed |= status == op.success_status();
        Ok(Some(self.outcome(op, &status)))
    }

    /// One page of DescribeStackEvents (the newest), reported where it brings news.
    async fn page(&mut self, aws: &Aws, progress: &ProgressTx) -> Result<()> {
        self.read_new(aws, progress, 1).await.map(|_| ())
    }
}
