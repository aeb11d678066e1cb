//! A request budget that belongs to an account or a token, not to a process (the AWS request
//! rate per account, Discord's global limit per bot token): each replica takes its share, the
//! budget divided by the number of live replicas in the store, so three replicas never send
//! more than one would be allowed.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A rate with a burst, shared by `share` replicas.
pub struct SharedBudget {
    per_second: u32,
    burst: u32,
    share: AtomicU32,
    limiter: RwLock<Arc<DefaultDirectRateLimiter>>,
}

fn limiter(per_second: u32, burst: u32, share: u32) -> Arc<DefaultDirectRateLimiter> {
    let share = share.max(1);
    // At least one request a second each, however many replicas: a budget never stalls.
    let rate = NonZeroU32::new((per_second / share).max(1)).expect("at least 1");
    let burst = NonZeroU32::new((burst / share).max(1)).expect("at least 1");
    Arc::new(RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)))
}

impl SharedBudget {
    pub fn new(per_second: u32, burst: u32) -> SharedBudget {
        SharedBudget {
            per_second,
            burst,
            share: AtomicU32::new(1),
            limiter: RwLock::new(limiter(per_second, burst, 1)),
        }
    }

    /// This replica's rate now.
    pub fn per_second(&self) -> u32 {
        (self.per_second / self.share.load(Ordering::Relaxed).max(1)).max(1)
    }

    /// How many replicas share the budget (this one included); a change takes effect at once.
    pub fn set_share(&self, replicas: usize) {
        let n = (replicas as u32).max(1);
        if self.share.swap(n, Ordering::Relaxed) != n {
            *self.limiter.write().unwrap_or_else(|p| p.into_inner()) = limiter(self.per_second, self.burst, n);
            tracing::info!(replicas = n, per_second = self.per_second(), "request budget shared");
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
        assert_eq!(b.per_second(), 40);
        b.set_share(3);
        assert_eq!((b.per_second(), b.share()), (13, 3));
        b.set_share(0);
        assert_eq!(b.per_second(), 40);
        b.set_share(100);
        assert_eq!(b.per_second(), 1);
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
