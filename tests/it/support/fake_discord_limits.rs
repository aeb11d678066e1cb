//! The fake Discord's rate limits beyond its sliding windows, as Discord's rate-limit docs
//! describe them: 429s a test asks for ([`Refusal`]: per route or global, with `retry_after`
//! in the body, `Retry-After`, `X-RateLimit-Remaining: 0`, `-Reset-After` and a bucket), the
//! holds they start (a request that comes back before its hold ends is refused again, as
//! Discord would), and buckets the fake announces in its headers and enforces ([`Announced`]),
//! so a test can run a bucket dry by headers alone. Every 429 is recorded with its time
//! ([`Limited`]).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A 429 a test asks for: the next request whose `"METHOD /path"` starts with `request` is
/// refused for `retry_after` (`global`: every request but the interaction endpoints).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub request: String,
    pub retry_after: Duration,
    pub global: bool,
}

/// A bucket the fake announces for every request whose `"METHOD /path"` starts with
/// `request`: `limit` requests, reset `reset_after` after the first of a round.
#[derive(Debug, Clone)]
pub struct Announced {
    pub request: String,
    pub bucket: String,
    pub limit: u32,
    pub reset_after: Duration,
}

/// One 429 answer.
#[derive(Debug, Clone)]
pub struct Limited {
    /// `"METHOD /path"`.
    pub request: String,
    pub session: Option<String>,
    pub at: Instant,
    pub retry_after: Duration,
    pub global: bool,
}

#[derive(Debug)]
struct Round {
    bucket: Announced,
    /// When the current round resets, and how many of it were served.
    reset_at: Option<Instant>,
    used: u32,
}

/// The state behind it all.
#[derive(Debug, Default)]
pub(super) struct Limits {
    refusals: VecDeque<Refusal>,
    rounds: Vec<Round>,
    global_until: Option<Instant>,
    /// `"METHOD /path"` → the end of its 429 hold.
    held: HashMap<String, Instant>,
}

/// What the fake answers a request with, from these limits.
pub(super) enum Decision {
    Serve,
    /// Refuse it: 429 with these headers, for this long.
    Refuse {
        retry_after: Duration,
        global: bool,
        headers: Vec<(String, String)>,
    },
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

impl Limits {
    pub(super) fn refuse(&mut self, r: Refusal) {
        self.refusals.push_back(r);
    }

    pub(super) fn announce(&mut self, a: Announced) {
        self.rounds.push(Round {
            bucket: a,
            reset_at: None,
            used: 0,
        });
    }

    /// Decides on a request (`"METHOD /path"`); `interaction`: outside the global limit.
    pub(super) fn decide(&mut self, request: &str, interaction: bool, now: Instant) -> Decision {
        if let Some(round) = self.rounds.iter_mut().find(|r| request.starts_with(&r.bucket.request)) {
            if round.reset_at.is_some_and(|t| t <= now) {
                round.reset_at = None;
                round.used = 0;
            }
            let reset_at = *round.reset_at.get_or_insert(now + round.bucket.reset_after);
            if round.used >= round.bucket.limit {
                return Decision::Refuse {
                    retry_after: reset_at.saturating_duration_since(now),
                    global: false,
                    headers: round.headers(now),
                };
            }
            round.used += 1;
        }
        if !interaction {
            if let Some(left) = self
                .global_until
                .map(|t| t.saturating_duration_since(now))
                .filter(|l| !l.is_zero())
            {
                return Decision::Refuse {
                    retry_after: left,
                    global: true,
                    headers: Vec::new(),
                };
            }
        }
        if let Some(left) = self
            .held
            .get(request)
            .map(|t| t.saturating_duration_since(now))
            .filter(|l| !l.is_zero())
        {
            return Decision::Refuse {
                retry_after: left,
                global: false,
                headers: held_headers(left),
            };
        }
        if let Some(i) = self.refusals.iter().position(|r| request.starts_with(&r.request)) {
            let r = self.refusals.remove(i).expect("found");
            if r.global {
                self.global_until = Some(now + r.retry_after);
                return Decision::Refuse {
                    retry_after: r.retry_after,
                    global: true,
                    headers: Vec::new(),
                };
            }
            self.held.insert(request.to_string(), now + r.retry_after);
            return Decision::Refuse {
                retry_after: r.retry_after,
                global: false,
                headers: held_headers(r.retry_after),
            };
        }
        Decision::Serve
    }

    /// The headers of the bucket `request` belongs to, as they stand (after it was served).
    pub(super) fn headers(&self, request: &str, now: Instant) -> Vec<(String, String)> {
        self.rounds
            .iter()
            .find(|r| request.starts_with(&r.bucket.request))
            .map(|r| r.headers(now))
            .unwrap_or_default()
    }
}

impl Round {
    fn headers(&self, now: Instant) -> Vec<(String, String)> {
        let left = self
            .reset_at
            .map_or(self.bucket.reset_after, |t| t.saturating_duration_since(now));
        vec![
            ("x-ratelimit-bucket".to_string(), self.bucket.bucket.clone()),
            ("x-ratelimit-limit".to_string(), self.bucket.limit.to_string()),
            (
                "x-ratelimit-remaining".to_string(),
                self.bucket.limit.saturating_sub(self.used).to_string(),
            ),
            ("x-ratelimit-reset-after".to_string(), secs(left)),
        ]
    }
}

/// The headers of a per-route 429, as in the capture of Discord.
fn held_headers(left: Duration) -> Vec<(String, String)> {
    vec![
        ("x-ratelimit-bucket".to_string(), "fake-held".to_string()),
        ("x-ratelimit-limit".to_string(), "5".to_string()),
        ("x-ratelimit-remaining".to_string(), "0".to_string()),
        ("x-ratelimit-reset-after".to_string(), secs(left)),
    ]
}
