//! The one limiter every REST request of the adapter passes through ([`super::rest`] asks it
//! before each attempt and tells it what Discord answered). It decides from four things:
//!
//! - Discord's buckets, as its headers announce them (`X-RateLimit-Bucket`, `-Limit`,
//!   `-Remaining`, `-Reset-After`): a route's requests share the bucket the first answer names,
//!   per major parameter (channel, guild, webhook/interaction). When a bucket has nothing left,
//!   the next request waits for its reset instead of drawing a 429.
//! - Every 429: its `retry_after` (body; `Retry-After` header otherwise) is waited out before
//!   the request is tried again. A per-route 429 holds that bucket; a global one
//!   (`"global": true`, `X-RateLimit-Global` or scope `global`) holds every request but the
//!   interaction endpoints, in this process and, through a [`GlobalHold`] (the store), in every
//!   replica that shares the token.
//! - A prior for what the headers have not told yet: at most `per_channel` message creates and
//!   edits per channel in any `window` (a sliding log measured from each request's completion,
//!   so latency cannot squeeze two windows together; a GCRA quota would let a 6th request of a
//!   burst of 5 through one period later), each replica keeping to its share. Requests to one
//!   channel are serialized, which also keeps edits of one message in order, retries included.
//! - A global quota of `global_per_second` (small burst) for every request but the interaction
//!   endpoints (responses, deferrals, follow-ups), which Discord does not count against the
//!   global limit; shared by the live replicas.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::budget::SharedBudget;
use crate::platform::channel_window::{ChannelTurn, ChannelWindows};

/// The limits the adapter keeps to before Discord's headers say more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Message creates and edits per channel in any `window`.
    pub per_channel: u32,
    pub window: Duration,
    /// Every REST call together (interaction endpoints aside), per second.
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

/// Where the replicas that share a bot token share a global 429: "Discord refuses this token
/// until T" (the store implements it with the database's clock).
pub trait GlobalHold: Send + Sync {
    /// Records a hold of `wait` from now.
    fn hold(&self, wait: Duration) -> BoxFuture<'static, ()>;
    /// How much longer the current hold lasts, if one does.
    fn remaining(&self) -> BoxFuture<'static, Option<Duration>>;
}

/// A request as the limiter sees it.
#[derive(Debug, Clone)]
pub(super) struct RouteKey {
    /// Method and path with the ids left out, e.g. `PATCH /channels/{c}/messages/{m}`.
    pub route: &'static str,
    /// The major parameter (channel, guild, application or interaction): buckets are per route
    /// *and* per major parameter.
    pub major: String,
    /// An interaction endpoint: outside the global limit.
    pub interaction: bool,
    /// A message create or edit in this channel: paced by the per-channel prior, in order.
    pub channel: Option<String>,
}

/// What Discord said about a request's limits, from its headers and a 429's body.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Verdict {
    pub bucket: Option<String>,
    pub limit: Option<u32>,
    pub remaining: Option<u32>,
    pub reset_after: Option<Duration>,
    /// A 429: how long to wait before trying again, and whether the hold is global.
    pub retry: Option<(Duration, bool)>,
}

/// When a 429 says nothing about how long to wait.
const UNTOLD_RETRY: Duration = Duration::from_secs(1);

fn seconds(text: &str) -> Option<Duration> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
}

impl Verdict {
    /// Reads an answer: its status, a header by (lower-case) name, and its body.
    pub(super) fn read<'h>(status: u16, header: impl Fn(&str) -> Option<&'h str>, body: &[u8]) -> Verdict {
        let mut v = Verdict {
            bucket: header("x-ratelimit-bucket").map(str::to_string),
            limit: header("x-ratelimit-limit").and_then(|t| t.trim().parse().ok()),
            remaining: header("x-ratelimit-remaining").and_then(|t| t.trim().parse().ok()),
            reset_after: header("x-ratelimit-reset-after").and_then(seconds),
            retry: None,
        };
        if status == 429 {
            let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let wait = json["retry_after"]
                .as_f64()
                .and_then(|s| seconds(&s.to_string()))
                .or_else(|| header("retry-after").and_then(seconds))
                .or(v.reset_after)
                .unwrap_or(UNTOLD_RETRY);
            let global = json["global"].as_bool() == Some(true)
                || header("x-ratelimit-global").is_some_and(|g| g.trim().eq_ignore_ascii_case("true"))
                || header("x-ratelimit-scope").is_some_and(|s| s.trim().eq_ignore_ascii_case("global"));
            v.retry = Some((wait, global));
        }
        v
    }
}

/// One bucket's state, as the last answer left it and our own requests since.
#[derive(Debug, Default)]
struct Bucket {
    limit: Option<u32>,
    /// Requests left before `reset_at`; `None`: not announced.
    remaining: Option<u32>,
    reset_at: Option<Instant>,
    /// A 429 on this bucket: nothing goes out before this.
    held_until: Option<Instant>,
}

#[derive(Default)]
struct Buckets {
    /// Route → the bucket Discord named for it.
    named: HashMap<&'static str, String>,
    /// (bucket or route, major parameter) → state.
    state: HashMap<String, Bucket>,
}

/// Bucket states kept before stale ones are dropped (interaction tokens make many).
const MAX_BUCKETS: usize = 2048;

impl Buckets {
    fn id(&self, key: &RouteKey) -> String {
        let bucket = self.named.get(key.route).map(String::as_str).unwrap_or(key.route);
        format!("{bucket}\u{1f}{}", key.major)
    }

    fn prune(&mut self, now: Instant) {
        if self.state.len() > MAX_BUCKETS {
            self.state
                .retain(|_, b| b.held_until.is_some_and(|t| t > now) || b.reset_at.is_some_and(|t| t > now));
        }
    }
}

pub(super) struct Limiter {
    pub(super) limits: RateLimits,
    /// The global limit belongs to the bot token: replicas share it.
    pub(super) global: SharedBudget,
    channels: ChannelWindows,
    buckets: StdMutex<Buckets>,
    /// The end of the last global 429 this process saw.
    global_until: StdMutex<Option<Instant>>,
    shared: StdMutex<Option<Arc<dyn GlobalHold>>>,
}

/// Held while one message create/edit is in flight (retries included); records its
/// completion in the channel's window when dropped.
pub(super) type ChannelPermit = ChannelTurn;

impl Limiter {
    pub(super) fn new(limits: RateLimits) -> Limiter {
        Limiter {
            limits,
            global: SharedBudget::new(limits.global_per_second, (limits.global_per_second / 8).max(1)),
            channels: ChannelWindows::new(limits.per_channel, limits.window),
            buckets: StdMutex::new(Buckets::default()),
            global_until: StdMutex::new(None),
            shared: StdMutex::new(None),
        }
    }

    pub(super) fn share_holds(&self, shared: Arc<dyn GlobalHold>) {
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(shared);
    }

    fn shared(&self) -> Option<Arc<dyn GlobalHold>> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits out a global hold (this process's and the replicas' shared one), then the global
    /// quota. Interaction endpoints never call this.
    pub(super) async fn global(&self) {
        loop {
            let local = self.global_hold();
            let shared = match self.shared() {
                Some(s) => s.remaining().await,
                None => None,
            };
            match local.max(shared) {
                Some(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                _ => break,
            }
        }
        self.global.until_ready().await;
    }

    /// How much longer the last global 429 this process saw holds it.
    pub(super) fn global_hold(&self) -> Option<Duration> {
        let now = Instant::now();
        self.global_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .filter(|t| *t > now)
            .map(|t| t - now)
    }

    /// The per-channel prior and order: waits until one more create/edit fits in the channel's
    /// window. Hold the permit for the whole request, retries included.
    pub(super) async fn channel(&self, channel: &str) -> ChannelPermit {
        // A channel's bucket belongs to the token too: each replica keeps to its share.
        self.channels.take(channel, self.global.share(), true).await
    }

    /// Waits until `key`'s bucket has a request left (or its 429 hold is over) and takes it.
    async fn bucket(&self, key: &RouteKey) {
        loop {
            let wait = {
                let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
                let id = b.id(key);
                let now = Instant::now();
                let bucket = b.state.entry(id).or_default();
                if let Some(t) = bucket.held_until.filter(|t| *t > now) {
                    t - now
                } else {
                    bucket.held_until = None;
                    if bucket.reset_at.is_some_and(|t| t <= now) {
                        bucket.reset_at = None;
                        bucket.remaining = bucket.limit;
                    }
                    match (bucket.remaining, bucket.reset_at) {
                        (Some(0), Some(reset)) => reset - now,
                        (remaining, _) => {
                            bucket.remaining = remaining.map(|r| r.saturating_sub(1));
                            return;
                        }
                    }
                }
            };
            tracing::debug!(
                route = key.route,
                wait_ms = wait.as_millis() as u64,
                "waiting for a Discord bucket"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Everything a request must wait for before each attempt.
    pub(super) async fn ready(&self, key: &RouteKey) {
        if !key.interaction {
            self.global().await;
        }
        self.bucket(key).await;
    }

    /// Takes in what Discord answered to a request on `key`.
    pub(super) async fn observe(&self, key: &RouteKey, verdict: &Verdict) {
        let now = Instant::now();
        {
            let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(name) = &verdict.bucket {
                b.named.insert(key.route, name.clone());
            }
            let id = b.id(key);
            let bucket = b.state.entry(id).or_default();
            if verdict.limit.is_some() {
                bucket.limit = verdict.limit;
            }
            if verdict.remaining.is_some() {
                bucket.remaining = verdict.remaining;
            }
            if let Some(after) = verdict.reset_after {
                bucket.reset_at = Some(now + after);
            }
            if let Some((wait, false)) = verdict.retry {
                bucket.held_until = Some(now + wait);
            }
            b.prune(now);
        }
        if let Some((wait, true)) = verdict.retry {
            {
                let mut until = self.global_until.lock().unwrap_or_else(|e| e.into_inner());
                *until = Some(until.map_or(now + wait, |t| t.max(now + wait)));
            }
            if let Some(shared) = self.shared() {
                shared.hold(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    #[test]
    fn a_429_is_read_from_its_body_first_then_its_headers() {
        let h = [
            ("retry-after", "2"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset-after", "2.000"),
            ("x-ratelimit-bucket", "abcd"),
        ];
        let v = Verdict::read(429, headers(&h), br#"{"retry_after": 1.5, "global": false}"#);
        assert_eq!(v.retry, Some((Duration::from_millis(1500), false)));
        assert_eq!(v.bucket.as_deref(), Some("abcd"));
        assert_eq!(v.remaining, Some(0));
        assert_eq!(v.reset_after, Some(Duration::from_secs(2)));
        let v = Verdict::read(429, headers(&h), b"not json");
        assert_eq!(
            v.retry,
            Some((Duration::from_secs(2), false)),
            "Retry-After when the body says nothing"
        );
        let g = [("x-ratelimit-scope", "global")];
        let v = Verdict::read(429, headers(&g), br#"{"retry_after": 0.25}"#);
        assert_eq!(v.retry, Some((Duration::from_millis(250), true)));
        let v = Verdict::read(200, headers(&h), b"{}");
        assert_eq!(v.retry, None, "only a 429 asks for a retry");
    }

    fn key() -> RouteKey {
        RouteKey {
            route: "POST /channels/{c}/messages",
            major: "1".into(),
            interaction: false,
            channel: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_bucket_waits_for_its_reset() {
        let l = Limiter::new(RateLimits::DISCORD);
        let k = key();
        l.ready(&k).await;
        let announced = Verdict {
            bucket: Some("b".into()),
            limit: Some(2),
            remaining: Some(0),
            reset_after: Some(Duration::from_secs(3)),
            retry: None,
        };
        l.observe(&k, &announced).await;
        let start = Instant::now();
        l.ready(&k).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        // After the reset the announced limit applies again: one left after this one.
        l.ready(&k).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_global_429_holds_everything_but_interactions() {
        let l = Limiter::new(RateLimits::DISCORD);
        let k = key();
        let global = Verdict {
            retry: Some((Duration::from_secs(2), true)),
            ..Verdict::default()
        };
        l.observe(&k, &global).await;
        let start = Instant::now();
        let interaction = RouteKey {
            route: "POST /interactions/{i}/{t}/callback",
            major: "9".into(),
            interaction: true,
            channel: None,
        };
        l.ready(&interaction).await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "interactions are outside the global limit"
        );
        let other = RouteKey {
            major: "2".into(),
            ..key()
        };
        l.ready(&other).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
