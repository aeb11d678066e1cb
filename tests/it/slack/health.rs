//! `/readyz` and `/metrics` with the Slack adapter: connected once Socket Mode said hello, and
//! its Web API calls counted by method and status.

use super::world::*;
use crate::support::{http_get, metric_value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_names_slack_and_the_metrics_count_its_calls() {
    let w = world().await;
    let running = start_bot(w.project.config()).await;
    let (addr, server) = argos::health::serve("127.0.0.1:0", running.bot.clone())
        .await
        .expect("binds");
    let (status, _, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "store: ok\nslack: connected\nreplica lease: ok\n");
    let (_, _, metrics) = http_get(addr, "/metrics").await;
    let series = r#"argos_chat_requests_total{platform="slack",method="auth.test",status="ok"}"#;
    assert!(metric_value(&metrics, series) >= 1.0, "{metrics}");
    assert!(
        !metrics.contains("xoxb-") && !metrics.contains("xapp-"),
        "no token in the metrics"
    );
    server.abort();
    running.stop().await;
    w.slack.assert_no_unexpected();
}
