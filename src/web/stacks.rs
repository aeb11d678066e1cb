//! Each environment's stack status for the overview, from a cache: pages never call AWS per
//! request. The cache is refreshed at most once per `web.stack_status_secs`, by one paged
//! DescribeStacks (no stack name: every stack) per AWS account the environments live in, and
//! concurrent page loads share one refresh (the first takes the lock and reads AWS, the others
//! wait for it and use its answer). A failed read shows as "unknown: <short cause>" on the
//! environments of that account, never as an error page; it is kept for one period like an
//! answer, so a failing AWS is not called on every page load either.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cloud::Aws;
use crate::engine::Engine;
use crate::names::Names;

/// The longest a refresh may take before the page shows "unknown" (the SDK's own retries
/// against an unreachable endpoint would otherwise hold the page).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a cause of failure may be on the page.
const CAUSE_CHARS: usize = 80;

/// What the overview says about an environment's stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StackStatus {
    /// CloudFormation's status: CREATE_COMPLETE, UPDATE_ROLLBACK_COMPLETE, ...
    Is(String),
    /// No stack (never commissioned, or decommissioned).
    None,
    /// AWS did not say: the short cause.
    Unknown(String),
}

impl std::fmt::Display for StackStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StackStatus::Is(status) => f.write_str(status),
            StackStatus::None => f.write_str("no stack"),
            StackStatus::Unknown(cause) => write!(f, "unknown: {cause}"),
        }
    }
}

impl StackStatus {
    /// The CSS class the overview shows it with.
    pub fn class(&self) -> &'static str {
        match self {
            StackStatus::Is(s) if s.ends_with("_IN_PROGRESS") => "live",
            StackStatus::Is(s) if s.contains("FAILED") || s.contains("ROLLBACK") => "bad",
            StackStatus::Is(_) => "ok",
            StackStatus::None | StackStatus::Unknown(_) => "off",
        }
    }
}

/// The statuses as read at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub read_at: Instant,
    pub by_env: BTreeMap<String, StackStatus>,
}

impl Snapshot {
    pub fn of(&self, env: &str) -> StackStatus {
        self.by_env
            .get(env)
            .cloned()
            .unwrap_or_else(|| StackStatus::Unknown("not read".into()))
    }

    /// How old it is, as the page says it: "read 12 s ago".
    pub fn age(&self) -> String {
        format!(
            "read {} ago",
            super::view::duration(self.read_at.elapsed().as_secs() as i64)
        )
    }
}

/// The cache every page handler shares.
pub(crate) struct StackStatuses {
    ttl: Duration,
    /// Held across a refresh: one refresh in flight, the other readers wait for its answer.
    last: tokio::sync::Mutex<Option<Snapshot>>,
}

impl StackStatuses {
    pub fn new(ttl: Duration) -> StackStatuses {
        StackStatuses {
            ttl,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The statuses, read from AWS if the last read is older than the TTL.
    pub async fn get(&self, engine: &Engine) -> Snapshot {
        let mut last = self.last.lock().await;
        if let Some(snapshot) = last.as_ref().filter(|s| s.read_at.elapsed() < self.ttl) {
            return snapshot.clone();
        }
        let snapshot = read(engine).await;
        *last = Some(snapshot.clone());
        snapshot
    }
}

/// Every environment's status: one DescribeStacks (paged) per account.
async fn read(engine: &Engine) -> Snapshot {
    let app = &engine.config.vars.app_name;
    let mut by_env = BTreeMap::new();
    for (aws, envs) in engine.accounts.distinct() {
        let read = tokio::time::timeout(REFRESH_TIMEOUT, stacks_of(&aws)).await;
        for env in envs {
            let status = match &read {
                Ok(Ok(stacks)) => match crate::names::EnvName::parse(&env) {
                    Ok(name) => stacks
                        .get(&Names::new(app, &name).stack())
                        .cloned()
                        .map_or(StackStatus::None, StackStatus::Is),
                    Err(_) => StackStatus::None,
                },
                Ok(Err(cause)) => StackStatus::Unknown(cause.clone()),
                Err(_) => StackStatus::Unknown(format!("no answer from AWS within {} s", REFRESH_TIMEOUT.as_secs())),
            };
            by_env.insert(env, status);
        }
    }
    Snapshot {
        read_at: Instant::now(),
        by_env,
    }
}

/// Stack name → status of every stack in the account but the deleted ones; or the short cause
/// of the failure.
async fn stacks_of(aws: &Aws) -> Result<BTreeMap<String, String>, String> {
    let all = crate::cloud::stack::all(aws).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot read the stacks' status for the web page");
        short_cause(e.code.as_deref(), &e.message)
    })?;
    Ok(all
        .iter()
        .map(|s| {
            let status = s.stack_status().map(|x| x.as_str()).unwrap_or_default();
            (s.stack_name().unwrap_or_default().to_string(), status.to_string())
        })
        .filter(|(_, status)| status != "DELETE_COMPLETE")
        .collect())
}

/// What the page says went wrong: the error code and the start of its message.
fn short_cause(code: Option<&str>, message: &str) -> String {
    let message: String = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = match code {
        Some(code) if !message.is_empty() => format!("{code}: {message}"),
        Some(code) => code.to_string(),
        None => message,
    };
    if text.chars().count() <= CAUSE_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(CAUSE_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_the_page_shows_them() {
        assert_eq!(StackStatus::Is("CREATE_COMPLETE".into()).to_string(), "CREATE_COMPLETE");
        assert_eq!(StackStatus::None.to_string(), "no stack");
        assert_eq!(
            StackStatus::Unknown("AccessDenied".into()).to_string(),
            "unknown: AccessDenied"
        );
        assert_eq!(StackStatus::Is("UPDATE_ROLLBACK_COMPLETE".into()).class(), "bad");
        assert_eq!(StackStatus::Is("UPDATE_IN_PROGRESS".into()).class(), "live");
        assert_eq!(StackStatus::Is("UPDATE_COMPLETE".into()).class(), "ok");
    }

    #[test]
    fn a_cause_is_short_and_on_one_line() {
        assert_eq!(
            short_cause(Some("AccessDenied"), "User: x is not\nauthorized"),
            "AccessDenied: User: x is not authorized"
        );
        assert_eq!(short_cause(Some("Throttling"), ""), "Throttling");
        let long = short_cause(None, &"word ".repeat(40));
        assert_eq!(long.chars().count(), CAUSE_CHARS);
        assert!(long.ends_with('…'));
    }
}
