//! Housekeeping: what the store keeps only for a while (chat-event claims, pushed stack
//! events, replicas long gone) is forgotten once it can no longer matter, so those tables do
//! not grow with every chat message and every stack event for as long as the bot runs.

use std::time::{Duration, Instant};

use crate::bot::Inner;
use crate::store::Store;

/// How often a replica sweeps. Every replica sweeps on its own: a DELETE that finds nothing
/// costs one indexed query, and none can delete what another still needs.
pub const EVERY: Duration = Duration::from_secs(3600);

/// How long each kind of record is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Chat platforms redeliver an event within minutes (Slack retries over about half an
    /// hour); a day is far past that.
    pub event_claims: Duration,
    /// Pushed stack events matter while their operation is watched (hours at most) or taken
    /// over; a week keeps them for a look back after an incident.
    pub stack_events: Duration,
    /// A replica silent this long had its jobs taken over long ago.
    pub replicas: Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        Retention {
            event_claims: DAY,
            stack_events: 7 * DAY,
            replicas: 7 * DAY,
        }
    }
}

/// What one sweep forgot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub event_claims: u64,
    pub stack_events: u64,
}

/// Sweeps when the last sweep of this replica is [`EVERY`] ago (or none was made yet).
pub(crate) fn tick(inner: &Inner) {
    {
        let mut last = inner.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        *last = Some(Instant::now());
    }
    let swept = sweep(&inner.store, &Retention::default());
    if swept != Swept::default() {
        tracing::info!(
            event_claims = swept.event_claims,
            stack_events = swept.stack_events,
            "forgot old chat-event claims and stack events"
        );
    }
}

/// Forgets what is older than `kept` says. A failure is logged; the next sweep tries again.
pub fn sweep(store: &Store, kept: &Retention) -> Swept {
    let mut swept = Swept::default();
    match store.prune_event_claims(kept.event_claims) {
        Ok(n) => swept.event_claims = n,
        Err(e) => tracing::warn!(error = %e, "cannot forget old chat-event claims"),
    }
    match store.prune_stack_events(kept.stack_events) {
        Ok(n) => swept.stack_events = n,
        Err(e) => tracing::warn!(error = %e, "cannot forget old stack events"),
    }
    if let Err(e) = store.prune_replicas(kept.replicas) {
        tracing::warn!(error = %e, "cannot forget replicas long gone");
    }
    swept
}
