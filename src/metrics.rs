//! The process's Prometheus metrics (prometheus-client, OpenMetrics text): jobs by action
//! and outcome with their durations, AWS calls by operation (throttled answers counted apart),
//! chat requests by platform, method and status (429s included), status-message edits sent,
//! coalesced or dropped, and this replica's standing among the others.
//!
//! One registry per process, reached through [`get`]: the counters are bumped where the work
//! happens (the AWS call macro, the chat adapters, the reporter, the job runner), far from
//! the HTTP endpoint that serves them.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    action: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsLabels {
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChatLabels {
    platform: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EditLabels {
    outcome: String,
}

type Histograms = Family<ActionLabels, Histogram, fn() -> Histogram>;

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    jobs: Family<JobLabels, Counter>,
    job_seconds: Histograms,
    aws_calls: Family<AwsLabels, Counter>,
    chat_requests: Family<ChatLabels, Counter>,
    edits: Family<EditLabels, Counter>,
    replicas_live: Gauge,
    leases_held: Gauge,
    heartbeat_ok: Gauge,
}

fn job_histogram() -> Histogram {
    // 1 s to about 4.5 h: a status query to a commission that bakes an image.
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("argos");
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register("jobs", "Jobs finished, by action and outcome", jobs.clone());
        let job_seconds: Histograms = Family::new_with_constructor(job_histogram);
        registry.register(
            "job_duration_seconds",
            "How long jobs ran, by action",
            job_seconds.clone(),
        );
        let aws_calls = Family::<AwsLabels, Counter>::default();
        registry.register(
            "aws_calls",
            "AWS API calls by operation and outcome (ok, error, throttled), after the SDK's retries",
            aws_calls.clone(),
        );
        let chat_requests = Family::<ChatLabels, Counter>::default();
        registry.register(
            "chat_requests",
            "Requests to chat platforms by platform, method and status (ok, error, 429, timeout)",
            chat_requests.clone(),
        );
        let edits = Family::<EditLabels, Counter>::default();
        registry.register(
            "status_edits",
            "Status-message edits: sent, coalesced into a later one, or dropped (lease lost, failed)",
            edits.clone(),
        );
        let replicas_live = Gauge::default();
        registry.register(
            "replicas_live",
            "Live replicas in the store, this one included",
            replicas_live.clone(),
        );
        let leases_held = Gauge::default();
        registry.register(
            "leases_held",
            "Environment leases this replica holds",
            leases_held.clone(),
        );
        let heartbeat_ok = Gauge::default();
        registry.register(
            "heartbeat_ok",
            "1 while this replica's last heartbeat reached the store within its lease time",
            heartbeat_ok.clone(),
        );
        Metrics {
            registry,
            jobs,
            job_seconds,
            aws_calls,
            chat_requests,
            edits,
            replicas_live,
            leases_held,
            heartbeat_ok,
        }
    }

    /// A job ended (`succeeded`, `failed`, `cancelled`, `interrupted`...) after `seconds`.
    pub fn job_finished(&self, action: &str, outcome: &str, seconds: f64) {
        self.jobs
            .get_or_create(&JobLabels {
                action: action.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.job_seconds
            .get_or_create(&ActionLabels {
                action: action.to_string(),
            })
            .observe(seconds.max(0.0));
    }

    /// An AWS call ended: `ok`, `throttled` (AWS's throttling codes) or `error`.
    pub fn aws_call(&self, operation: &str, outcome: &str) {
        self.aws_calls
            .get_or_create(&AwsLabels {
                operation: operation.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// A request to a chat platform ended with `status` (`ok`, `error`, `429`, `timeout`).
    pub fn chat_request(&self, platform: &str, method: &str, status: &str) {
        self.chat_requests
            .get_or_create(&ChatLabels {
                platform: platform.to_string(),
                method: method.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    /// A status-message edit was `sent`, `coalesced` or `dropped`.
    pub fn edit(&self, outcome: &str, n: u64) {
        if n > 0 {
            self.edits
                .get_or_create(&EditLabels {
                    outcome: outcome.to_string(),
                })
                .inc_by(n);
        }
    }

    /// This replica's view of the cluster, refreshed at each heartbeat round.
    pub fn set_replica(&self, live: usize, leases: usize, heartbeat_ok: bool) {
        self.replicas_live.set(live as i64);
        self.leases_held.set(leases as i64);
        self.heartbeat_ok.set(i64::from(heartbeat_ok));
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Whether an AWS error code means "slow down".
pub fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "Throttling"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "TooManyRequestsException"
                | "RequestThrottled"
                | "RequestThrottledException"
                | "SlowDown"
        )
    )
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_every_family_with_its_labels() {
        let m = Metrics::new();
        m.job_finished("deploy", "succeeded", 42.0);
        m.aws_call("DescribeStacks", "throttled");
        m.chat_request("slack", "chat.update", "429");
        m.edit("coalesced", 3);
        m.edit("dropped", 0);
        m.set_replica(3, 1, true);
        let text = m.render();
        for line in [
            r#"argos_jobs_total{action="deploy",outcome="succeeded"} 1"#,
            r#"argos_job_duration_seconds_bucket{le="64.0",action="deploy"} 1"#,
            r#"argos_job_duration_seconds_bucket{le="32.0",action="deploy"} 0"#,
            r#"argos_aws_calls_total{operation="DescribeStacks",outcome="throttled"} 1"#,
            r#"argos_chat_requests_total{platform="slack",method="chat.update",status="429"} 1"#,
            r#"argos_status_edits_total{outcome="coalesced"} 3"#,
            "argos_replicas_live 3",
            "argos_leases_held 1",
            "argos_heartbeat_ok 1",
            "# EOF",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains(r#"outcome="dropped""#), "a zero count adds no series");
    }

    #[test]
    fn throttling_codes() {
        assert!(is_throttling(Some("Throttling")));
        assert!(is_throttling(Some("RequestLimitExceeded")));
        assert!(!is_throttling(Some("ValidationError")));
        assert!(!is_throttling(None));
    }
}
