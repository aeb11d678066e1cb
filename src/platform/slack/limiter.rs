//! Our own pacing of Slack's Web API limits, so the bot waits instead of collecting 429s:
//! `chat.postMessage` about one a second per channel (a sliding window measured from each
//! post's completion, requests to a channel serialized, which also keeps a message's edits in
//! order), and one per-minute budget of `chat.update` calls for the whole workspace, shared by
//! every job's status message and by the live replicas. When Slack answers 429 anyway (another
//! client on the same token), its `Retry-After` pauses that method for everyone.
//!
//! The update budget is a sliding window too, not a token bucket: Slack counts the calls of
//! the last minute, and a bucket with a burst lets the burst through on top of a full minute's
//! rate (55 calls in a minute for 50 with a burst of 5). Each call counts from when its answer
//! came back, so however late a request reaches Slack, it is still inside the window we kept.
//! Edits wait for room in the order they asked, so one chatty job cannot starve the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::Mutex as AsyncMutex;
use tokio::time::Instant;

use crate::platform::channel_window::{with_margin, ChannelTurn, ChannelWindows};

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
    /// How many live replicas share the limits (this one included).
    share: AtomicU32,
    updates: Arc<StdMutex<UpdateWindow>>,
    /// Whose turn it is to wait for room in the update window: edits of every message queue
    /// in order, so that no job's status message is starved by the others'.
    update_turn: AsyncMutex<()>,
    channels: ChannelWindows,
    paused: StdMutex<HashMap<Method, Instant>>,
}

/// The `chat.update` calls of the last period: each by when it was let through, then by when
/// its answer came.
#[derive(Default)]
struct UpdateWindow {
    next: u64,
    calls: Vec<(u64, Instant)>,
}

/// One `chat.update` call's place in the window; dropping it (the answer is in) moves the
/// call to now, or gives the place back if no call was made.
struct UpdateSlot {
    window: Arc<StdMutex<UpdateWindow>>,
    id: u64,
    called: bool,
}

impl Drop for UpdateSlot {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let at = w.calls.iter().position(|(id, _)| *id == self.id);
        match (at, self.called) {
            (Some(i), true) => w.calls[i].1 = now,
            // It took longer than the period and was let go: it still counts from now.
            (None, true) => w.calls.push((self.id, now)),
            (Some(i), false) => {
                w.calls.swap_remove(i);
            }
            (None, false) => {}
        }
    }
}

/// Held while one request to a channel is in flight; a post records its completion in the
/// channel's window when dropped, an update its place in the update budget.
pub(super) struct ChannelPermit {
    turn: ChannelTurn,
    update: Option<UpdateSlot>,
}

impl ChannelPermit {
    /// This request does not count against the channel's post window (an update).
    pub(super) fn uncounted(self) -> ChannelPermit {
        ChannelPermit {
            turn: self.turn.uncounted(),
            update: self.update,
        }
    }

    /// No request was made after all (an edit folded into a newer one): its place in the
    /// update budget goes back.
    pub(super) fn unused(mut self) {
        if let Some(slot) = self.update.as_mut() {
            slot.called = false;
        }
        drop(self.turn.uncounted());
    }
}

impl Limiter {
    pub(super) fn new(limits: SlackLimits) -> Limiter {
        Limiter {
            limits,
            share: AtomicU32::new(1),
            updates: Default::default(),
            update_turn: AsyncMutex::new(()),
            channels: ChannelWindows::new(limits.posts_per_channel, limits.post_window),
            paused: StdMutex::new(HashMap::new()),
        }
    }

    /// The limits belong to the app's tokens: `replicas` live bots share them.
    pub(super) fn set_share(&self, replicas: usize) {
        let n = (replicas as u32).max(1);
        if self.share.swap(n, Ordering::Relaxed) != n {
            tracing::info!(
                replicas = n,
                updates = self.update_share(),
                "Slack update budget shared"
            );
        }
    }

    fn share(&self) -> u32 {
        self.share.load(Ordering::Relaxed).max(1)
    }

    /// This replica's `chat.update` calls per period (at least one: a budget never stalls).
    fn update_share(&self) -> usize {
        (self.limits.updates / self.share()).max(1) as usize
    }

    /// Waits until one more `chat.update` fits in the window, and takes its place.
    async fn update_slot(&self) -> UpdateSlot {
        let window = with_margin(self.limits.update_period);
        let _turn = self.update_turn.lock().await;
        loop {
            let until = {
                let mut w = self.updates.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                w.calls.retain(|(_, at)| *at + window > now);
                if w.calls.len() < self.update_share() {
                    let id = w.next;
                    w.next += 1;
                    w.calls.push((id, now));
                    return UpdateSlot {
                        window: self.updates.clone(),
                        id,
                        called: true,
                    };
                }
                w.calls.iter().map(|(_, at)| *at).min().unwrap_or(now) + window
            };
            tokio::time::sleep_until(until).await;
        }
    }

    /// Takes the channel: waits for its turn and, for a post, until one more fits in its window.
    pub(super) async fn channel(&self, channel: &str, method: Method) -> ChannelPermit {
        let turn = self.channels.take(channel, self.share(), method == Method::Post).await;
        let update = match method {
            Method::Update => Some(self.update_slot().await),
            _ => None,
        };
        // After any wait for room: a 429 may have come in meanwhile.
        self.wait_pause(method).await;
        ChannelPermit { turn, update }
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
    async fn updates_keep_to_the_budget_in_any_window_however_they_come() {
        let limits = SlackLimits {
            updates: 5,
            update_period: Duration::from_secs(10),
            ..SlackLimits::SLACK
        };
        let l = Limiter::new(limits);
        let start = Instant::now();
        // A burst takes the whole period's budget at once, in any channels...
        for i in 0..5 {
            drop(l.channel(&format!("C{i}"), Method::Update).await.uncounted());
        }
        assert!(start.elapsed() < Duration::from_millis(10));
        // ...and the next call waits until the first has left the window (with the margin).
        drop(l.channel("C9", Method::Update).await.uncounted());
        assert!(
            start.elapsed() >= Duration::from_millis(10_200),
            "{:?}",
            start.elapsed()
        );
        // Two replicas share it: 2 calls each per period.
        let l = Limiter::new(limits);
        l.set_share(2);
        let start = Instant::now();
        for _ in 0..2 {
            drop(l.channel("C1", Method::Update).await.uncounted());
        }
        assert!(start.elapsed() < Duration::from_millis(10));
        drop(l.channel("C1", Method::Update).await.uncounted());
        assert!(start.elapsed() >= Duration::from_millis(10_200));
    }

    #[tokio::test(start_paused = true)]
    async fn updates_waiting_for_the_budget_take_turns() {
        let limits = SlackLimits {
            updates: 1,
            update_period: Duration::from_secs(1),
            ..SlackLimits::SLACK
        };
        let l = Arc::new(Limiter::new(limits));
        let order = Arc::new(StdMutex::new(Vec::new()));
        // A chatty message asks again the moment each edit is out; another asks once, while the
        // chatty one's second edit waits. Edits go in the order they asked, whatever wakes first.
        let chatty = {
            let (l, order) = (l.clone(), order.clone());
            tokio::spawn(async move {
                for _ in 0..3 {
                    drop(l.channel("C1", Method::Update).await.uncounted());
                    order.lock().unwrap().push("chatty");
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        drop(l.channel("C2", Method::Update).await.uncounted());
        order.lock().unwrap().push("other");
        chatty.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["chatty", "chatty", "other", "chatty"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_update_not_made_gives_its_place_back() {
        let limits = SlackLimits {
            updates: 1,
            update_period: Duration::from_secs(10),
            ..SlackLimits::SLACK
        };
        let l = Limiter::new(limits);
        let start = Instant::now();
        l.channel("C1", Method::Update).await.uncounted().unused();
        drop(l.channel("C1", Method::Update).await.uncounted());
        assert!(start.elapsed() < Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_update_counts_from_its_answer() {
        let limits = SlackLimits {
            updates: 1,
            update_period: Duration::from_secs(10),
            ..SlackLimits::SLACK
        };
        let l = Limiter::new(limits);
        let start = Instant::now();
        let permit = l.channel("C1", Method::Update).await.uncounted();
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(permit);
        drop(l.channel("C1", Method::Update).await.uncounted());
        assert!(
            start.elapsed() >= Duration::from_millis(13_200),
            "{:?}",
            start.elapsed()
        );
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
