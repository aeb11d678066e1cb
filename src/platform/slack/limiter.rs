//! Our own pacing of Slack's Web API limits, so the bot waits instead of collecting 429s:
//! `chat.postMessage` about one a second per channel (a sliding window measured from each
//! post's completion, requests to a channel serialized, which also keeps a message's edits in
//! order), and one per-minute budget of `chat.update` calls for the whole workspace, shared by
//! every job's status message and by the live replicas. When Slack answers 429 anyway (another
//! client on the same token), its `Retry-After` pauses that method for everyone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::time::Instant;

use crate::budget::SharedBudget;

/// The limits the adapter keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlackLimits {
    /// `chat.postMessage` calls per channel in any `post_window`.
    pub posts_per_channel: u32,
    pub post_window: Duration,
    /// `chat.update` calls for the whole workspace per `update_period`.
    pub updates: u32,
    pub update_period: Duration,
}

impl SlackLimits {
    /// Slack's: one post a second per channel, and tier 3 (about 50 a minute) for updates.
    pub const SLACK: SlackLimits = SlackLimits {
        posts_per_channel: 1,
        post_window: Duration::from_secs(1),
        updates: 50,
        update_period: Duration::from_secs(60),
    };

    /// Slack's limits with another per-minute update budget (`slack.updates_per_minute`).
    pub fn with_updates_per_minute(per_minute: u32) -> SlackLimits {
        SlackLimits {
            updates: per_minute.max(1),
            ..SlackLimits::SLACK
        }
    }
}

/// The longest `Retry-After` the bot honours before it gives a request up.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Which method a 429 paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Post,
    Update,
    Other,
}

pub(super) struct Limiter {
    pub(super) limits: SlackLimits,
    updates: SharedBudget,
    channels: StdMutex<HashMap<String, Arc<AsyncMutex<VecDeque<Instant>>>>>,
    paused: StdMutex<HashMap<Method, Instant>>,
}

/// Held while one request to a channel is in flight; a post records its completion in the
/// channel's window when dropped.
pub(super) struct ChannelPermit {
    log: OwnedMutexGuard<VecDeque<Instant>>,
    keep: usize,
    counts: bool,
}

impl ChannelPermit {
    /// This request does not count against the channel's post window (an update).
    pub(super) fn uncounted(mut self) -> ChannelPermit {
        self.counts = false;
        self
    }
}

impl Drop for ChannelPermit {
    fn drop(&mut self) {
        if !self.counts {
            return;
        }
        self.log.push_back(Instant::now());
        while self.log.len() > self.keep {
            self.log.pop_front();
        }
    }
}

impl Limiter {
    pub(super) fn new(limits: SlackLimits) -> Limiter {
        Limiter {
            limits,
            updates: SharedBudget::per_period(limits.updates, limits.update_period, (limits.updates / 10).max(1)),
            channels: StdMutex::new(HashMap::new()),
            paused: StdMutex::new(HashMap::new()),
        }
    }

    /// The limits belong to the app's tokens: `replicas` live bots share them.
    pub(super) fn set_share(&self, replicas: usize) {
        self.updates.set_share(replicas);
    }

    /// Takes the channel: waits for its turn and, for a post, until one more fits in its window.
    pub(super) async fn channel(&self, channel: &str, method: Method) -> ChannelPermit {
        let slot = {
            let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(channel.to_string()).or_default().clone()
        };
        let log = slot.lock_owned().await;
        let keep = (self.limits.posts_per_channel / self.updates.share()).max(1) as usize;
        if method == Method::Post && log.len() >= keep {
            let window = self.limits.post_window + self.limits.post_window / 50;
            tokio::time::sleep_until(log[log.len() - keep] + window).await;
        }
        self.wait_pause(method).await;
        if method == Method::Update {
            self.updates.until_ready().await;
        }
        ChannelPermit {
            log,
            keep,
            counts: method == Method::Post,
        }
    }

    /// Slack said 429: nobody calls `method` again before `retry_after` has passed.
    pub(super) fn pause(&self, method: Method, retry_after: Duration) {
        let until = Instant::now() + retry_after.min(MAX_RETRY_AFTER);
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        let entry = paused.entry(method).or_insert(until);
        if *entry < until {
            *entry = until;
        }
    }

    pub(super) async fn wait_pause(&self, method: Method) {
        let until = self
            .paused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&method)
            .copied();
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn posts_to_one_channel_keep_a_second_apart_and_updates_do_not_count() {
        let l = Limiter::new(SlackLimits::SLACK);
        let start = Instant::now();
        drop(l.channel("C1", Method::Post).await);
        drop(l.channel("C1", Method::Update).await.uncounted());
        assert!(
            start.elapsed() < Duration::from_millis(10),
            "an update waits for no post"
        );
        drop(l.channel("C1", Method::Post).await);
        assert!(start.elapsed() >= Duration::from_secs(1));
        let other = Instant::now();
        drop(l.channel("C2", Method::Post).await);
        assert!(other.elapsed() < Duration::from_millis(10), "channels are independent");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_the_method_for_its_retry_after() {
        let l = Limiter::new(SlackLimits::SLACK);
        l.pause(Method::Update, Duration::from_secs(7));
        let start = Instant::now();
        l.wait_pause(Method::Post).await;
        assert!(start.elapsed() < Duration::from_millis(10));
        l.wait_pause(Method::Update).await;
        assert!(start.elapsed() >= Duration::from_secs(7));
        l.pause(Method::Post, Duration::from_secs(3600));
        let again = Instant::now();
        l.wait_pause(Method::Post).await;
        assert!(again.elapsed() <= MAX_RETRY_AFTER);
    }
}
