//! Our own pacing of Discord's REST limits (serenity's limiter is off when a proxy is set):
//! a sliding window per channel and a global quota shared by the live bot replicas.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::time::Instant;

use crate::budget::SharedBudget;

/// The limits the adapter keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Message creates and edits per channel in any `window`.
    pub per_channel: u32,
    pub window: Duration,
    /// Every REST call together, per second.
    pub global_per_second: u32,
}

impl RateLimits {
    /// Discord's limits (5 message creates/edits per 5 s per channel, 50 requests/s globally),
    /// with the global one kept at 40 for headroom.
    pub const DISCORD: RateLimits = RateLimits {
        per_channel: 5,
        window: Duration::from_secs(5),
        global_per_second: 40,
    };
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::DISCORD
    }
}

pub(super) struct Limiter {
    pub(super) limits: RateLimits,
    /// The global limit belongs to the bot token: replicas share it.
    pub(super) global: SharedBudget,
    channels: StdMutex<HashMap<String, Arc<AsyncMutex<VecDeque<Instant>>>>>,
}

/// Held while one message create/edit is in flight; records its completion when dropped.
pub(super) struct ChannelPermit {
    log: OwnedMutexGuard<VecDeque<Instant>>,
    keep: usize,
}

impl Drop for ChannelPermit {
    fn drop(&mut self) {
        self.log.push_back(Instant::now());
        while self.log.len() > self.keep {
            self.log.pop_front();
        }
    }
}

impl Limiter {
    pub(super) fn new(limits: RateLimits) -> Limiter {
        Limiter {
            limits,
            global: SharedBudget::new(limits.global_per_second, (limits.global_per_second / 8).max(1)),
            channels: StdMutex::new(HashMap::new()),
        }
    }

    /// Waits for the global budget.
    pub(super) async fn global(&self) {
        self.global.until_ready().await;
    }

    /// Waits until one more create/edit fits in the channel's window, then the global budget.
    pub(super) async fn channel(&self, channel: &str) -> ChannelPermit {
        let slot = {
            let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(channel.to_string()).or_default().clone()
        };
        let log = slot.lock_owned().await;
        // A channel's bucket belongs to the token too: each replica keeps to its share.
        let keep = (self.limits.per_channel / self.global.share()).max(1) as usize;
        if log.len() >= keep {
            // A little headroom for clock granularity on Discord's side.
            let window = self.limits.window + self.limits.window / 50;
            tokio::time::sleep_until(log[log.len() - keep] + window).await;
        }
        self.global().await;
        ChannelPermit { log, keep }
    }
}
