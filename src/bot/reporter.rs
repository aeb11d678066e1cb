//! Keeps one status message per job up to date. Progress events are folded into the
//! [`StatusModel`] as they come; edits are paced by the platform ([`ChatPort::pacing`]):
//! on a chat API at most one per `edit_interval` per message, a per-message budget and one
//! budget shared by every message of the bot, so a job never exceeds the platform's limits
//! however chatty it is; on the console as often as there is news, and once a second anyway.
//!
//! An edit is rendered from the model when its request goes out ([`ChatPort::edit_rendered`]),
//! not when it was asked for: events that arrive while an edit waits (for a budget, a 429's
//! `Retry-After`) are folded into the model all the same, and the edit shows them and the
//! elapsed time of the moment it is sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use governor::clock::{Clock, DefaultClock};
use governor::DefaultDirectRateLimiter;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use crate::bot::pace::Pacing;
use crate::bot::port::{Attachment, ChatPort, OutgoingMessage, Render};
use crate::bot::status::{Ending, StatusModel};
use crate::progress::Progress;
use crate::redact::Redactor;

/// One job's status message.
pub struct Reporter {
    pub port: Arc<dyn ChatPort>,
    pub channel: String,
    pub message_id: String,
    /// The platform's pacing ([`ChatPort::pacing`]).
    pub pacing: Pacing,
    /// The edit budget every status message of the bot shares (on a chat API).
    pub global: Arc<DefaultDirectRateLimiter>,
    pub redactor: Redactor,
    /// Edits made so far (for the benchmark and tests).
    pub edits: usize,
    /// The job's lease: no edit goes out once it is lost (the new owner edits the message
    /// now), and each edit is recorded (for `job <id>` anywhere) with the lease's token.
    pub lease: Option<(crate::store::Store, Arc<crate::bot::replica::JobLease>)>,
}

/// What one edit needs, owned, so it can be under way while the reporter folds in events.
#[derive(Clone)]
struct Editor {
    port: Arc<dyn ChatPort>,
    channel: String,
    message_id: String,
    global: Option<Arc<DefaultDirectRateLimiter>>,
    redactor: Redactor,
    lease: Option<(crate::store::Store, Arc<crate::bot::replica::JobLease>)>,
}

impl Editor {
    /// True when the edit went out (or there is nothing more to say: the lease is gone).
    async fn edit(self, model: Arc<Mutex<StatusModel>>, attachment: Option<Attachment>) -> bool {
        if let Some(global) = &self.global {
            global.until_ready().await;
        }
        let metrics = crate::metrics::get();
        let job_id = lock(&model).job_id;
        let text = self.render_text(&model);
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
                tracing::warn!(job = job_id, error = %e, "cannot record progress");
            }
        }
        let lease = self.lease.as_ref().map(|(_, l)| l.clone());
        let redactor = self.redactor.clone();
        let render: Render = Arc::new(move || {
            if lease.as_ref().is_some_and(|l| !l.valid()) {
                return None;
            }
            let text = redactor.redact(&lock(&model).render(chrono::Utc::now()));
            Some(OutgoingMessage {
                text,
                attachment: attachment.clone(),
                buttons: Vec::new(),
            })
        });
        match self.port.edit_rendered(&self.channel, &self.message_id, render).await {
            Ok(()) => {
                metrics.edit("sent", 1);
                true
            }
            Err(e) => {
                metrics.edit("dropped", 1);
                tracing::warn!(job = job_id, error = %self.redactor.redact(&e.to_string()), "status edit failed");
                false
            }
        }
    }

    fn render_text(&self, model: &Mutex<StatusModel>) -> String {
        self.redactor.redact(&lock(model).render(chrono::Utc::now()))
    }
}

fn lock(model: &Mutex<StatusModel>) -> std::sync::MutexGuard<'_, StatusModel> {
    model.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits for the next tick of `redraw`, or forever when there is none.
async fn tick(redraw: &mut Option<tokio::time::Interval>) {
    match redraw {
        Some(every) => {
            every.tick().await;
        }
        None => std::future::pending::<()>().await,
    }
}

impl Reporter {
    fn editor(&self) -> Editor {
        Editor {
            port: self.port.clone(),
            channel: self.channel.clone(),
            message_id: self.message_id.clone(),
            global: self.pacing.budget.map(|_| self.global.clone()),
            redactor: self.redactor.clone(),
            lease: self.lease.clone(),
        }
    }

    /// Follows the job's progress until every sender is gone, editing the message as allowed.
    /// Returns the model for the final edit.
    pub async fn follow(&mut self, model: StatusModel, mut rx: UnboundedReceiver<Progress>) -> StatusModel {
        let model = Arc::new(Mutex::new(model));
        let per_message = self.pacing.budgets();
        let min_interval = self.pacing.budget.map_or(Duration::ZERO, |b| b.min_interval);
        let mut redraw = self.pacing.redraw.map(|every| {
            let mut i = tokio::time::interval_at(Instant::now() + every, every);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        let clock = DefaultClock::default();
        let editor = self.editor();
        let mut pending = false;
        let mut in_flight: Option<BoxFuture<'static, bool>> = None;
        let mut last_edit: Option<Instant> = None;
        let mut next_try = Instant::now();
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(p) => {
                        let changed = lock(&model).apply(&p);
                        // A change that lands on an edit already waiting is folded into it.
                        if changed && pending {
                            crate::metrics::get().edit("coalesced", 1);
                        }
                        pending |= changed;
                    }
                    None => break,
                },
                // Nothing happened, but the elapsed time moved on.
                _ = tick(&mut redraw) => pending = true,
                sent = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                    in_flight = None;
                    if sent {
                        self.edits += 1;
                    }
                    last_edit = Some(Instant::now());
                    next_try = Instant::now() + min_interval;
                }
                _ = tokio::time::sleep_until(next_try), if pending && in_flight.is_none() => {
                    let since = last_edit.map(|t| t.elapsed()).unwrap_or(Duration::MAX);
                    if since < min_interval {
                        next_try = Instant::now() + (min_interval - since);
                        continue;
                    }
                    if let Some(budget) = &per_message {
                        if let Err(not_until) = budget.check() {
                            next_try = Instant::now() + not_until.wait_time_from(clock.now());
                            continue;
                        }
                    }
                    pending = false;
                    in_flight = Some(Box::pin(editor.clone().edit(model.clone(), None)));
                }
            }
        }
        if let Some(edit) = in_flight {
            if edit.await {
                self.edits += 1;
            }
        }
        let last = lock(&model).clone();
        last
    }

    /// The last edit: the ending, and the log. It goes out whatever the per-message budget
    /// says (it is the one that matters), but still waits its turn in the shared budget.
    /// A failed final edit (a 429 from a budget another replica used a moment ago) is tried
    /// again: it is the one that must not be lost.
    pub async fn finish(&mut self, model: &mut StatusModel, ending: Ending, log: Option<Attachment>) {
        model.finish(ending, chrono::Utc::now());
        let shared = Arc::new(Mutex::new(model.clone()));
        for pause in [1, 2, 4] {
            if self.editor().edit(shared.clone(), log.clone()).await {
                self.edits += 1;
                return;
            }
            tokio::time::sleep(Duration::from_secs(pause)).await;
        }
    }
}
