//! A request budget that belongs to an account or a token, not to a process (the AWS request
//! rate per account, Discord's global limit per bot token): each replica takes its share, the
//! budget divided by the number of live replicas in the store, so three replicas never send
//! more than one would be allowed.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A rate (`count` per `period`) with a burst, shared by `share` replicas.
pub struct SharedBudget {
    count: u32,
    period: Duration,
    burst: u32,
    share: AtomicU32,
    limiter: RwLock<Arc<DefaultDirectRateLimiter>>,
}

fn limiter(count: u32, period: Duration, burst: u32, share: u32) -> Arc<DefaultDirectRateLimiter> {
    let share = share.max(1);
    // At least one request a period each, however many replicas: a budget never stalls.
    let count = (count / share).max(1);
    let burst = NonZeroU32::new((burst / share).max(1)).unwrap_or(NonZeroU32::MIN);
    // The config keeps rates far below one a nanosecond; a period is never zero all the same.
    let each = (period / count).max(Duration::from_nanos(1));
    let quota = Quota::with_period(each).unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX));
    Arc::new(RateLimiter::direct(quota.allow_burst(burst)))
}

impl SharedBudget {
    pub fn new(per_second: u32, burst: u32) -> SharedBudget {
        SharedBudget::per_period(per_second, Duration::from_secs(1), burst)
    }

    /// `count` requests per `period` (Slack's budgets are per minute).
    pub fn per_period(count: u32, period: Duration, burst: u32) -> SharedBudget {
        let count = count.max(1);
        SharedBudget {
            count,
            period,
            burst,
            share: AtomicU32::new(1),
            limiter: RwLock::new(limiter(count, period, burst, 1)),
        }
    }

    /// This replica's rate now, per period.
    pub fn rate(&self) -> u32 {
        (self.count / self.share.load(Ordering::Relaxed).max(1)).max(1)
    }

    /// How many replicas share the budget (this one included); a change takes effect at once.
    pub fn set_share(&self, replicas: usize) {
        let n = (replicas as u32).max(1);
        if self.share.swap(n, Ordering::Relaxed) != n {
            *self.limiter.write().unwrap_or_else(|p| p.into_inner()) = limiter(self.count, self.period, self.burst, n);
            tracing::info!(replicas = n, rate = self.rate(), "request budget shared");
        }
    }

    pub fn share(&self) -> u32 {
        self.share.load(Ordering::Relaxed)
    }

    /// Waits for a slot.
    pub async fn until_ready(&self) {
        let current = self.limiter.read().unwrap_or_else(|p| p.into_inner()).clone();
        current.until_ready().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_divides_the_rate_and_never_drops_below_one() {
        let b = SharedBudget::new(40, 5);
        assert_eq!(b.rate(), 40);
        b.set_share(3);
        assert_eq!((b.rate(), b.share()), (13, 3));
        b.set_share(0);
        assert_eq!(b.rate(), 40);
        b.set_share(100);
        assert_eq!(b.rate(), 1);
    }

    #[test]
    fn a_rate_above_one_a_nanosecond_does_not_panic() {
        let b = SharedBudget::new(2_000_000_000, 5);
        assert_eq!(b.rate(), 2_000_000_000);
        assert!(b.limiter.read().unwrap().check().is_ok());
    }

    #[test]
    fn three_shares_admit_a_third_of_the_burst_at_once() {
        let b = SharedBudget::new(30, 9);
        b.set_share(3);
        let l = b.limiter.read().unwrap().clone();
        let admitted = (0..9).filter(|_| l.check().is_ok()).count();
        assert_eq!(admitted, 3);
    }
}
