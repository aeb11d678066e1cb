//! Credentials loaded once and kept until they near their expiry, behind the credentials
//! provider interface: a role session's clients (the SDK's three and our EC2 client) share
//! one of these, so the session costs one AssumeRole (and one per renewal), and the EC2
//! client keeps the account's own credentials in one (the SDK's clients have their identity
//! cache for that; ours has no other).

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{self, future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;

/// Credentials this close to their expiry are renewed before they are handed out (the SDK's
/// lazy cache renews within its buffer time too).
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// A provider that asks `inner` only when it holds nothing fresh; one load at a time, the
/// other callers wait for it and share its result.
#[derive(Debug)]
pub struct CachedCredentials {
    inner: SharedCredentialsProvider,
    held: tokio::sync::Mutex<Option<Credentials>>,
}

impl CachedCredentials {
    pub fn new(inner: SharedCredentialsProvider) -> CachedCredentials {
        CachedCredentials {
            inner,
            held: tokio::sync::Mutex::new(None),
        }
    }

    /// This cache as a provider the SDK's clients take.
    pub fn shared(self) -> SharedCredentialsProvider {
        SharedCredentialsProvider::new(self)
    }

    /// The credentials held, or new ones from the provider behind.
    pub async fn get(&self) -> provider::Result {
        let mut held = self.held.lock().await;
        if let Some(c) = held.as_ref() {
            if c.expiry().is_none_or(|at| at > SystemTime::now() + RENEW_BEFORE) {
                return Ok(c.clone());
            }
        }
        let loaded = self.inner.provide_credentials().await?;
        *held = Some(loaded.clone());
        Ok(loaded)
    }
}

impl ProvideCredentials for CachedCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// Hands out credentials that expire `lifetime` from now, counting its loads.
    #[derive(Debug)]
    struct Counting {
        loads: Arc<AtomicU32>,
        lifetime: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.loads.fetch_add(1, Ordering::SeqCst);
            let expiry = SystemTime::now() + self.lifetime;
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                Some("token".into()),
                Some(expiry),
                "counting",
            )))
        }
    }

    fn cache(lifetime: Duration) -> (CachedCredentials, Arc<AtomicU32>) {
        let loads = Arc::new(AtomicU32::new(0));
        let inner = Counting {
            loads: loads.clone(),
            lifetime,
        };
        (CachedCredentials::new(SharedCredentialsProvider::new(inner)), loads)
    }

    #[tokio::test]
    async fn loads_once_while_fresh_and_again_near_expiry() {
        let (fresh, loads) = cache(Duration::from_secs(3600));
        for _ in 0..5 {
            assert_eq!(fresh.get().await.expect("credentials").access_key_id(), "AKID0");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // Credentials within the renewal window are never handed out: each call renews.
        let (short, loads) = cache(Duration::from_secs(60));
        short.get().await.expect("credentials");
        assert_eq!(short.get().await.expect("credentials").access_key_id(), "AKID1");
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }
}
