//! How often a job's status message is redrawn, per platform. A chat API counts edits:
//! Discord and Slack get at most one edit per `chat.edit_interval_ms` per message, a per-message
//! budget (`chat.edit_burst`, then one every `chat.edit_refill_secs`) and a budget shared by
//! every message of the bot (`chat.edits_per_second`), under the adapters' own request limits.
//! A terminal counts nothing: the console has no budget, and redraws each second even when
//! nothing happened, so the elapsed time it shows is never more than a second old.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::ChatSettings;
use crate::platform::Platform;

/// How often the console redraws a running job's status message.
pub const CONSOLE_REDRAW: Duration = Duration::from_secs(1);

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
    pub fn of(platform: Platform, chat: &ChatSettings) -> Pacing {
        match platform {
            Platform::Console => Pacing {
                budget: None,
                redraw: Some(CONSOLE_REDRAW),
            },
            Platform::Discord | Platform::Slack => Pacing {
                budget: Some(EditBudget::from_settings(chat)),
                redraw: None,
            },
        }
    }

    /// The pacing of the platform an adapter names; an adapter of no known platform (an
    /// embedder's) keeps a chat API's budgets, the safe side.
    pub fn of_port(platform: &str, chat: &ChatSettings) -> Pacing {
        match Platform::from_name(platform) {
            Some(p) => Pacing::of(p, chat),
            None => Pacing {
                budget: Some(EditBudget::from_settings(chat)),
                redraw: None,
            },
        }
    }

    /// The per-message budget this pacing keeps to, if any.
    pub fn budgets(&self) -> Option<DefaultDirectRateLimiter> {
        self.budget.map(|b| b.per_message())
    }
}

/// The edit budget shared by every status message of the bot on the chat APIs.
pub fn shared_edit_budget(c: &ChatSettings) -> Arc<DefaultDirectRateLimiter> {
    let per_sec = NonZeroU32::new(c.edits_per_second).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(Quota::per_second(per_sec)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_has_no_budget_and_redraws_each_second_the_chat_apis_keep_theirs() {
        let chat = ChatSettings::default();
        let console = Pacing::of(Platform::Console, &chat);
        assert_eq!((console.budget, console.redraw), (None, Some(Duration::from_secs(1))));
        for p in [Platform::Discord, Platform::Slack] {
            let paced = Pacing::of(p, &chat);
            assert_eq!(paced.budget, Some(EditBudget::from_settings(&chat)), "{p:?}");
            assert_eq!(paced.redraw, None, "{p:?}");
        }
        assert_eq!(Pacing::of_port("console", &chat), console);
        assert_eq!(Pacing::of_port("an-embedder's", &chat).redraw, None);
    }
}
