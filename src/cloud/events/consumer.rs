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
        loop {
            if cancel.is_cancelled() {
                let _ = self.store.release_event_poll(&account, &self.owner);
                return;
            }
            let pause = match self.store.claim_event_poll(&account, &self.owner, self.lease) {
                Ok(true) => match self.once(&mut url).await {
                    Ok(Step::Continue) => {
                        backoff = Duration::from_secs(1);
                        Duration::ZERO
                    }
                    Ok(Step::Stop) => return,
                    Err(e) => {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        if e.code.as_deref().is_some_and(|c| c.contains("NonExistentQueue")) {
                            url = None;
                        }
                        tracing::warn!(queue = %self.queue, error = %e, "pushed stack events: receive failed; watchers poll meanwhile");
                        let wait = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        wait
                    }
                },
                Ok(false) => self.standby,
                Err(e) => {
                    tracing::warn!(error = %e, "pushed stack events: cannot reach the store");
                    self.standby
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

    /// One receive, store and delete.
    async fn once(&self, url: &mut Option<String>) -> Result<Step, AwsError> {
        let queue_url = match url {
            Some(u) => u.clone(),
            None => {
                let out = aws_call!(
                    self.aws,
                    "GetQueueUrl",
                    self.aws.sqs().await.get_queue_url().queue_name(&self.queue).send()
                )?;
                let u = out.queue_url().unwrap_or_default().to_string();
                *url = Some(u.clone());
                u
            }
        };
        self.stats.receives.fetch_add(1, Ordering::Relaxed);
        let out = aws_call!(
            self.aws,
            "ReceiveMessage",
            self.aws
                .sqs()
                .await
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(self.wait_secs)
                .send()
        )?;
        let messages = out.messages();
        if messages.is_empty() {
            return Ok(Step::Continue);
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
                return Ok(Step::Continue);
            }
        }
        if self.die_before_delete {
            return Ok(Step::Stop);
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
        aws_call!(
            self.aws,
            "DeleteMessageBatch",
            self.aws
                .sqs()
                .await
                .delete_message_batch()
                .queue_url(&queue_url)
                .set_entries(Some(entries))
                .send()
        )?;
        Ok(Step::Continue)
    }
}

enum Step {
    Continue,
    Stop,
}
