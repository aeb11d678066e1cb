//! Pushed stack events: CloudFormation's events reach an SQS queue through EventBridge, the
//! consumer stores them, the watcher reports them from the store and polls only as a fallback.
//! On the scripted fake AWS (its SQS publishes every stack's events as they become visible):
//! duplicates, out-of-order delivery, a lost event, throttled SQS, a replica dying between
//! receive and delete, one poller per account. On moto: the setup command's rule and queue,
//! with events put on the bus as CloudFormation would.
use crate::support;

mod fake;
mod moto;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use argos::cloud::events::consumer::Consumer;
use argos::cloud::watcher::{Follow, Operation, Outcome, Pace, Pushed, StackWatcher};
use argos::cloud::Aws;
use argos::config::AwsSettings;
use argos::progress::{Progress, ProgressTx, StackEvent};
use argos::store::Store;
use tokio_util::sync::CancellationToken;

/// A consumer paced for tests: 1 s long polls, a short lease, a quick standby check.
fn consumer(aws: &Aws, store: &Store, queue: &str, owner: &str) -> Consumer {
    let mut c = Consumer::new(aws.clone(), store.clone(), queue, owner);
    c.wait_secs = 1;
    c.lease = Duration::from_millis(1500);
    c.standby = Duration::from_millis(50);
    c
}

/// Clients on `endpoint` with the local dummy credentials and quick retries.
async fn aws_on(endpoint: &str) -> Aws {
    let settings = AwsSettings {
        endpoint_url: Some(endpoint.to_string()),
        local_credentials: true,
        requests_per_second: 1000,
        burst: 100,
        retry_initial_backoff_ms: 5,
        ..AwsSettings::default()
    };
    Aws::connect_with(&settings, "us-east-1").await
}

/// How a pushed watch is followed: the token, the store, a quiet period, a quick store check.
fn follow(store: &Store, token: &str, quiet: Duration) -> Follow {
    Follow {
        token: Some(token.to_string()),
        pushed: Some(Pushed {
            store: store.clone(),
            quiet,
            check: Duration::from_millis(20),
        }),
    }
}

/// What a watch reported: its outcome, the stack events in the order emitted, the info lines.
struct Watched {
    outcome: Outcome,
    events: Vec<StackEvent>,
    infos: Vec<String>,
}

/// Watches `op` on the stack `id` through `follow`, collecting its progress.
async fn watch(aws: &Aws, name: &str, id: &str, follow: &Follow, op: Operation, resources: usize) -> Watched {
    let (progress, mut rx) = ProgressTx::channel();
    let mut watcher = StackWatcher::for_new_stack(name, id);
    watcher.follow(follow);
    watcher.expect_resources(resources);
    let pace = Pace {
        poll: Duration::from_millis(50),
        max_poll: Duration::from_millis(100),
        timeout: Duration::from_secs(60),
    };
    let outcome = watcher
        .wait(aws, op, pace, &progress, &CancellationToken::new())
        .await
        .expect("the watch ends");
    drop(progress);
    let mut events = Vec::new();
    let mut infos = Vec::new();
    while let Some(p) = rx.recv().await {
        match p {
            Progress::StackEvent(e) => events.push(e),
            Progress::Info { message } => infos.push(message),
            _ => {}
        }
    }
    Watched { outcome, events, infos }
}

/// Each (resource, status, reason) reported at most once: progress never repeats an event.
fn assert_each_once(events: &[StackEvent]) {
    let mut seen: HashMap<(String, String, Option<String>), usize> = HashMap::new();
    for e in events {
        *seen
            .entry((e.logical_id.clone(), e.status.clone(), e.reason.clone()))
            .or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "reported more than once: {repeated:?}");
}

fn stats(c: &Consumer) -> (u64, u64, u64) {
    (
        c.stats.receives.load(Ordering::Relaxed),
        c.stats.stored.load(Ordering::Relaxed),
        c.stats.errors.load(Ordering::Relaxed),
    )
}
