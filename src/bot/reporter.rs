//! Keeps one status message per job up to date. Progress events are folded into the
//! [`StatusModel`]; edits are coalesced: at most one per `edit_interval` per message, a per-
//! message budget (burst, then one per `edit_refill`), and one budget shared by every message
//! of the bot, so a job never exceeds the platform's limits however chatty it is.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use crate::bot::port::{Attachment, ChatPort, OutgoingMessage};
use crate::bot::status::{Ending, StatusModel};
use crate::config::ChatSettings;
use crate::progress::Progress;
use crate::redact::Redactor;

/// How status messages are paced.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub min_interval: Duration,
    pub burst: u32,
    pub refill: Duration,
}

impl Pacing {
    pub fn from_settings(c: &ChatSettings) -> Pacing {
        Pacing {
            min_interval: Duration::from_millis(c.edit_interval_ms),
            burst: c.edit_burst,
            refill: Duration::from_secs(c.edit_refill_secs.max(1)),
        }
    }
}

/// The edit budget shared by all status messages of the bot.
pub fn global_budget(c: &ChatSettings) -> Arc<DefaultDirectRateLimiter> {
    let per_sec = NonZeroU32::new(c.edits_per_second.max(1)).expect("at least 1");
    Arc::new(RateLimiter::direct(Quota::per_second(per_sec)))
}

/// One job's status message.
pub struct Reporter {
    pub port: Arc<dyn ChatPort>,
    pub channel: String,
    pub message_id: String,
    pub pacing: Pacing,
    pub global: Arc<DefaultDirectRateLimiter>,
    pub redactor: Redactor,
    /// Edits made so far (for the benchmark and tests).
    pub edits: usize,
    /// The job's lease: no edit goes out once it is lost (the new owner edits the message
    /// now), and each edit is recorded (for `job <id>` anywhere) with the lease's token.
    pub lease: Option<(crate::store::Store, Arc<crate::bot::replica::JobLease>)>,
}

impl Reporter {
    /// Follows the job's progress until every sender is gone, editing the message as allowed.
    /// Returns the model for the final edit.
    pub async fn follow(&mut self, mut model: StatusModel, mut rx: UnboundedReceiver<Progress>) -> StatusModel {
        let per_message = RateLimiter::direct(
            Quota::with_period(self.pacing.refill)
                .expect("refill > 0")
                .allow_burst(NonZeroU32::new(self.pacing.burst.max(1)).expect("at least 1")),
        );
        let clock = DefaultClock::default();
        let mut pending = false;
        let mut last_edit: Option<Instant> = None;
        let mut next_try = Instant::now();
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(p) => {
                        let changed = model.apply(&p);
                        // A change that lands on an edit already waiting is folded into it.
                        if changed && pending {
                            crate::metrics::get().edit("coalesced", 1);
                        }
                        pending |= changed;
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(next_try), if pending => {
                    let since = last_edit.map(|t| t.elapsed()).unwrap_or(Duration::MAX);
                    if since < self.pacing.min_interval {
                        next_try = Instant::now() + (self.pacing.min_interval - since);
                        continue;
                    }
                    match per_message.check() {
                        Ok(()) => {
                            self.global.until_ready().await;
                            self.edit(&model, None).await;
                            pending = false;
                            last_edit = Some(Instant::now());
                            next_try = Instant::now() + self.pacing.min_interval;
                        }
                        Err(not_until) => next_try = Instant::now() + not_until.wait_time_from(clock.now()),
                    }
                }
            }
        }
        model
    }

    /// The last edit: the ending, and the log. It goes out whatever the per-message budget
    /// says (it is the one that matters), but still waits its turn in the shared budget.
    /// A failed final edit (a 429 from a budget another replica used a moment ago) is tried
    /// again: it is the one that must not be lost.
    pub async fn finish(&mut self, model: &mut StatusModel, ending: Ending, log: Option<Attachment>) {
        model.finish(ending, chrono::Utc::now());
        for pause in [1, 2, 4] {
            self.global.until_ready().await;
            if self.edit(model, log.clone()).await {
                return;
            }
            tokio::time::sleep(Duration::from_secs(pause)).await;
        }
    }

    /// True when the edit went out (or there is nothing more to say: the lease is gone).
    async fn edit(&mut self, model: &StatusModel, attachment: Option<Attachment>) -> bool {
        let text = self.redactor.redact(&model.render(chrono::Utc::now()));
        let metrics = crate::metrics::get();
        if let Some((store, lease)) = &self.lease {
            if !lease.valid() {
                metrics.edit("dropped", 1);
                return true;
            }
            if let Err(e) = store.set_progress(lease.job_id, lease.token, &text) {
                if e.is_fenced() {
                    metrics.edit("dropped", 1);
                    return true;
                }
                tracing::warn!(job = model.job_id, error = %e, "cannot record progress");
            }
        }
        let msg = OutgoingMessage {
            text,
            attachment,
            buttons: Vec::new(),
        };
        let lease = self.lease.as_ref().map(|(_, l)| l.clone());
        let still = move || lease.as_ref().is_none_or(|l| l.valid());
        match self.port.edit_if(&self.channel, &self.message_id, msg, &still).await {
            Ok(()) => {
                self.edits += 1;
                metrics.edit("sent", 1);
                true
            }
            Err(e) => {
                metrics.edit("dropped", 1);
                tracing::warn!(job = model.job_id, error = %self.redactor.redact(&e.to_string()), "status edit failed");
                false
            }
        }
    }
}
