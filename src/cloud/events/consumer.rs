//! The events queue's consumer: one long poll (20 s) per account at a time across all
//! replicas, under a lease in the store that the poller renews before each receive, so a dead
//! replica's poll is taken over once its lease runs out. What it receives goes into the store
//! first and is deleted from the queue only after that write, so a crash between the two
//! redelivers the messages (after the queue's visibility timeout) and the store drops them as
//! duplicates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use tokio_util::sync::CancellationToken;

use super::parse_message;
use crate::aws_call;
use crate::cloud::Aws;
use crate::error::AwsError;
use crate::store::Store;

/// How long a receive waits for a message (SQS's maximum).
pub const LONG_POLL_SECS: i32 = 20;
/// How long the poll lease lasts: a receive plus the store write and the delete, with room.
pub const POLL_LEASE: Duration = Duration::from_secs(45);
/// How often a replica that does not hold the lease looks whether it is free.
pub const STANDBY_CHECK: Duration = Duration::from_secs(15);
/// Messages per receive (SQS's maximum).
pub const BATCH: usize = 10;
/// The most receives side by side while batches come full.
pub const MAX_PARALLEL: usize = 4;
/// The longest pause after errors (throttling, a missing queue, no rights).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Counters a test or benchmark reads.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub receives: AtomicU64,
    pub messages: AtomicU64,
    pub stored: AtomicU64,
    pub errors: AtomicU64,
}

/// One account's consumer.
#[derive(Clone)]
pub struct Consumer {
    pub aws: Aws,
    pub store: Store,
    /// The queue's name (`watch.events_queue`).
    pub queue: String,
    /// This replica's id (the lease's owner).
    pub owner: String,
    pub wait_secs: i32,
    pub lease: Duration,
    pub standby: Duration,
    pub stats: Arc<ConsumerStats>,
    /// Test hook: stop after storing a batch, before deleting it (a crash between the two).
    pub die_before_delete: bool,
}

impl Consumer {
    pub fn new(aws: Aws, store: Store, queue: &str, owner: &str) -> Consumer {
        Consumer {
            aws,
            store,
            queue: queue.to_string(),
            owner: owner.to_string(),
            wait_secs: LONG_POLL_SECS,
            lease: POLL_LEASE,
            standby: STANDBY_CHECK,
            stats: Arc::default(),
            die_before_delete: false,
        }
    }

    /// Polls until cancelled; gives the lease up on the way out.
    pub async fn run(self, cancel: CancellationToken) {
        let account = self.aws.account_key();
        let mut url: Option<String> = None;
        let mut backoff = Duration::from_secs(1);
        // Receives at once: one long poll, more while batches come full (a burst of events
        // from many stacks), back to one when the queue runs dry.
        let mut width = 1;
        loop {
            if cancel.is_cancelled() {
                let _ = self.store.release_event_poll(&account, &self.owner);
                return;
            }
            let round = async {
                match self.store.claim_event_poll(&account, &self.owner, self.lease) {
                    Ok(true) => self.round(&mut url, width).await.map(Some),
                    Ok(false) => Ok(None),
                    Err(e) => {
                        tracing::warn!(error = %e, "pushed stack events: cannot reach the store");
                        Ok(None)
                    }
                }
            };
            let outcome = tokio::select! {
                _ = cancel.cancelled() => continue,
                outcome = round => outcome,
            };
            let pause = match outcome {
                Ok(Some(Step::Received { full })) => {
                    backoff = Duration::from_secs(1);
                    width = (full * 2).clamp(1, MAX_PARALLEL);
                    Duration::ZERO
                }
                Ok(Some(Step::Stop)) => return,
                Ok(None) => self.standby,
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    width = 1;
                    if e.code.as_deref().is_some_and(|c| c.contains("NonExistentQueue")) {
                        url = None;
                    }
                    tracing::warn!(queue = %self.queue, error = %e, "pushed stack events: receive failed; watchers poll meanwhile");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    /// `width` receives side by side, each stored then deleted. How many came back full.
    async fn round(&self, url: &mut Option<String>, width: usize) -> Result<Step, AwsError> {
        let queue_url = match url {
            Some(u) => u.clone(),
            None => {
                let sqs = self.aws.outside_budget();
                let out = aws_call!(
                    sqs,
                    "GetQueueUrl",
                    sqs.sqs().await.get_queue_url().queue_name(&self.queue).send()
                )?;
                let u = out.queue_url().unwrap_or_default().to_string();
                *url = Some(u.clone());
                u
            }
        };
        let mut receives = tokio::task::JoinSet::new();
        for _ in 0..width {
            let (me, queue_url) = (self.clone(), queue_url.clone());
            receives.spawn(async move { me.once(&queue_url).await });
        }
        let (mut full, mut failed, mut stop) = (0, None, false);
        while let Some(done) = receives.join_next().await {
            match done {
                Ok(Ok(Some(n))) if n >= BATCH => full += 1,
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => stop = true,
                Ok(Err(e)) => failed = Some(e),
                Err(_) => {}
            }
        }
        if stop {
            return Ok(Step::Stop);
        }
        match failed {
            Some(e) if full == 0 => Err(e),
            _ => Ok(Step::Received { full }),
        }
    }

    /// One receive, store and delete: how many messages came (`None`: the test hook stopped).
    async fn once(&self, queue_url: &str) -> Result<Option<usize>, AwsError> {
        self.stats.receives.fetch_add(1, Ordering::Relaxed);
        let sqs = self.aws.outside_budget();
        let out = aws_call!(
            sqs,
            "ReceiveMessage",
            sqs.sqs()
                .await
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(BATCH as i32)
                .wait_time_seconds(self.wait_secs)
                .send()
        )?;
        let messages = out.messages();
        if messages.is_empty() {
            return Ok(Some(0));
        }
        self.stats.messages.fetch_add(messages.len() as u64, Ordering::Relaxed);
        let events: Vec<_> = messages.iter().filter_map(|m| parse_message(m.body()?)).collect();
        match self.store.store_stack_events(&events) {
            Ok(n) => {
                self.stats.stored.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                // Not stored: leave them on the queue, they come back after its visibility timeout.
                tracing::warn!(error = %e, "pushed stack events: cannot store; left on the queue");
                return Ok(Some(0));
            }
        }
        if self.die_before_delete {
            return Ok(None);
        }
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        // Stored: the delete need not hold up the next receive (a message whose delete is
        // lost comes back after the visibility timeout and drops as a duplicate).
        let count = messages.len();
        let (sqs, stats, queue_url) = (sqs.clone(), self.stats.clone(), queue_url.to_string());
        tokio::spawn(async move {
            let deleted = aws_call!(
                sqs,
                "DeleteMessageBatch",
                sqs.sqs()
                    .await
                    .delete_message_batch()
                    .queue_url(&queue_url)
                    .set_entries(Some(entries))
                    .send()
            );
            if let Err(e) = deleted {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "pushed stack events: delete failed; the messages come back and drop as duplicates");
            }
        });
        Ok(Some(count))
    }
}

enum Step {
    /// A round of receives; `full` of them brought a whole batch.
    Received {
        full: usize,
    },
    Stop,
}
