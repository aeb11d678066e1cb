//! The replicas' shared global hold: when Discord answers a global 429, every replica that
//! shares the bot's token must wait it out. The store keeps the hold with the database's
//! clock; a request never waits long for the store to answer.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::limiter::GlobalHold;

/// How long a request waits for the store to say whether the replicas are held.
const SHARED_HOLD_READ: Duration = Duration::from_millis(500);

/// The store keeps the replicas' shared global hold, with the database's clock.
impl GlobalHold for crate::store::Store {
    fn hold(&self, wait: Duration) -> BoxFuture<'static, ()> {
        let store = self.clone();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || store.hold_platform("discord", wait)).await {
                Ok(Ok(())) => {}
                // This replica still waits (its own hold is in memory); the others may not.
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot share Discord's global rate limit with the other replicas")
                }
                Err(_) => {}
            }
        })
    }

    fn remaining(&self) -> BoxFuture<'static, Option<Duration>> {
        let store = self.clone();
        Box::pin(async move {
            // The store's one connection may be busy (or reconnecting): a request to Discord
            // does not wait long for it; this process's own hold still applies.
            let read = tokio::task::spawn_blocking(move || store.platform_hold("discord"));
            match tokio::time::timeout(SHARED_HOLD_READ, read).await {
                Ok(Ok(Ok(left))) => left,
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "cannot read the replicas' shared Discord rate limit");
                    None
                }
                Ok(Err(_)) => None,
                Err(_) => {
                    tracing::warn!("the store did not answer in time for the replicas' shared Discord rate limit");
                    None
                }
            }
        })
    }
}
