//! The per-channel pacing both chat adapters keep to: at most so many counted requests to a
//! channel in any window, measured as a sliding log of when each request *completed* (so
//! latency cannot squeeze two windows together, as a token bucket would let a burst through
//! one period later), and requests to one channel one at a time, in order, which also keeps a
//! message's edits in order, retries included. Replicas sharing a bot token each keep to
//! their share of a channel's limit. Discord counts creates and edits; Slack counts posts only.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::time::Instant;

/// Every channel's window.
pub struct ChannelWindows {
    per_window: u32,
    window: Duration,
    channels: StdMutex<HashMap<String, Arc<AsyncMutex<VecDeque<Instant>>>>>,
}

/// A channel's turn: held for the whole request (retries included); a counted request is
/// logged in the channel's window when the turn is dropped, that is, when its answer is in.
pub struct ChannelTurn {
    log: OwnedMutexGuard<VecDeque<Instant>>,
    keep: usize,
    counts: bool,
}

impl ChannelTurn {
    /// This request does not count against the window after all (an edit folded into a newer
    /// one, a Slack update).
    pub fn uncounted(mut self) -> ChannelTurn {
        self.counts = false;
        self
    }
}

impl Drop for ChannelTurn {
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

/// The platforms' windows, measured by their clocks from when requests arrive, plus 2 %: what
/// keeps us under them also when the clocks drift apart a little.
pub fn with_margin(window: Duration) -> Duration {
    window + window / 50
}

impl ChannelWindows {
    /// At most `per_window` counted requests per channel in any `window`.
    pub fn new(per_window: u32, window: Duration) -> ChannelWindows {
        ChannelWindows {
            per_window,
            window,
            channels: StdMutex::new(HashMap::new()),
        }
    }

    /// Waits for `channel`'s turn and, for a request that `counts`, until one more fits in its
    /// window, this replica keeping to its share of `share` replicas (at least one request:
    /// a window never stalls).
    pub async fn take(&self, channel: &str, share: u32, counts: bool) -> ChannelTurn {
        let slot = {
            let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(channel.to_string()).or_default().clone()
        };
        let log = slot.lock_owned().await;
        let keep = (self.per_window / share.max(1)).max(1) as usize;
        if counts && log.len() >= keep {
            tokio::time::sleep_until(log[log.len() - keep] + with_margin(self.window)).await;
        }
        ChannelTurn { log, keep, counts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_channel_takes_so_many_requests_per_window_counted_from_completion() {
        let w = ChannelWindows::new(2, Duration::from_secs(5));
        let start = Instant::now();
        drop(w.take("C1", 1, true).await);
        let slow = w.take("C1", 1, true).await;
        // The second request takes 3 s to answer: the window counts from then.
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(slow);
        drop(w.take("C1", 1, false).await.uncounted());
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(3),
            "an uncounted request waits for no room"
        );
        drop(w.take("C1", 1, true).await);
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(5_100),
            "the first left the window"
        );
        drop(w.take("C1", 1, true).await);
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(8_100),
            "the slow one counted from its answer"
        );
        let other = Instant::now();
        drop(w.take("C2", 1, true).await);
        assert_eq!(other.elapsed(), Duration::ZERO, "channels are independent");
    }

    #[tokio::test(start_paused = true)]
    async fn replicas_keep_to_their_share_and_turns_are_in_order() {
        let w = Arc::new(ChannelWindows::new(4, Duration::from_secs(10)));
        let start = Instant::now();
        drop(w.take("C1", 2, true).await);
        drop(w.take("C1", 2, true).await);
        drop(w.take("C1", 2, true).await);
        assert_eq!(start.elapsed(), Duration::from_millis(10_200), "two of four each");
        let first = w.take("C1", 2, false).await;
        let order = Arc::new(StdMutex::new(Vec::new()));
        let waiting = {
            let (w, order) = (w.clone(), order.clone());
            tokio::spawn(async move {
                let _turn = w.take("C1", 2, false).await;
                order.lock().unwrap().push("second");
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        order.lock().unwrap().push("first");
        drop(first);
        waiting.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["first", "second"]);
    }
}
