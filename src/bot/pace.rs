//! What a platform's pacing of status messages is made of ([`Pacing`]); each adapter declares
//! its own through [`crate::bot::port::ChatPort::pacing`] (the values are in
//! `platform::pacing`). A chat API counts edits and gets an [`EditBudget`]; a terminal counts
//! nothing and redraws on a timer instead.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::ChatSettings;

/// The limits a chat API puts on editing one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditBudget {
    /// At most one edit per message this often.
    pub min_interval: Duration,
    /// Edits a message may make at once; then one more every `refill`.
    pub burst: u32,
    pub refill: Duration,
}

impl EditBudget {
    /// `chat.edit_interval_ms`, `chat.edit_burst` and `chat.edit_refill_secs`.
    pub fn from_settings(c: &ChatSettings) -> EditBudget {
        EditBudget {
            min_interval: Duration::from_millis(c.edit_interval_ms),
            burst: c.edit_burst,
            refill: Duration::from_secs(c.edit_refill_secs.max(1)),
        }
    }

    /// The per-message budget, for one message.
    pub fn per_message(&self) -> DefaultDirectRateLimiter {
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        // `refill` is at least a second (see `from_settings`); a zero one would mean no limit.
        let quota = Quota::with_period(self.refill).unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX));
        RateLimiter::direct(quota.allow_burst(burst))
    }
}

/// How one platform's status messages are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// The chat API's edit limits (`None`: edit as often as there is something new).
    pub budget: Option<EditBudget>,
    /// Redraw this often though nothing happened (the elapsed time moves on).
    pub redraw: Option<Duration>,
}

impl Pacing {
    /// A chat API's pacing: the config's edit budget, no redraw of its own.
    pub fn chat_api(c: &ChatSettings) -> Pacing {
        Pacing {
            budget: Some(EditBudget::from_settings(c)),
            redraw: None,
        }
    }

    /// The per-message budget this pacing keeps to, if any.
    pub fn budgets(&self) -> Option<DefaultDirectRateLimiter> {
        self.budget.map(|b| b.per_message())
    }
}

/// The edit budget shared by every status message of the bot on the chat APIs
/// (`chat.edits_per_second`).
pub fn shared_edit_budget(c: &ChatSettings) -> Arc<DefaultDirectRateLimiter> {
    let per_sec = NonZeroU32::new(c.edits_per_second).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(Quota::per_second(per_sec)))
}
