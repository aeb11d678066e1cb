//! `/healthz`, `/readyz` and `/metrics`, scraped over loopback like Prometheus and a load
//! balancer would: a bot connected to the fake Discord runs a job against the scripted fake
//! AWS, and the metrics show the job, its AWS calls and its chat requests.
mod support;

use std::time::Duration;

use argos::bot::Bot;
use argos::engine::Engine;
use argos::platform::discord;
use argos::store::Store;
use support::fake_aws::FakeAws;
use support::fake_discord::*;
use support::TestProject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 GET; returns the status code and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: argos\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .unwrap();
    let raw = String::from_utf8(raw).expect("utf-8");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or("")
        .to_string();
    (status, content_type, body.to_string())
}

/// The value of the series `name{labels}` in an OpenMetrics text, 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probes_and_metrics_follow_a_job() {
    let aws = FakeAws::start().await;
    let chat = FakeDiscord::start_with(FAST_FAKE_LIMITS).await;
    let project = TestProject::new(&aws.endpoint_url(), &chat.bot_config(true));
    let config = project.config();
    let settings = config.settings.discord.clone();
    let store = Store::open(&config.database_path()).unwrap();
    let bot = Bot::new(Engine::new(config).await, store);

    let (addr, server) = argos::health::serve("127.0.0.1:0", bot.clone()).await.expect("binds");
    assert_eq!(get(addr, "/healthz").await.0, 200);
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "no chat platform yet: {body}");
    assert!(body.contains("chat: no platform connected"), "{body}");
    assert!(body.contains("store: ok"), "{body}");

    let (port, client) = discord::start_with_limits(
        &settings,
        TOKEN.to_string(),
        "!argos".into(),
        vec!["staging".into()],
        bot.handler(),
        FAST_LIMITS,
    )
    .await
    .unwrap();
    bot.add_port(port);
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "store: ok\ndiscord: connected\nreplica lease: ok\n");

    let before = get(addr, "/metrics").await.2;
    // An update of a stack that does not exist: a job that fails at its first AWS call.
    chat.push_message(CHANNEL, &TestUser::admin(), "!argos staging update");
    chat.wait_for("the job's end", |s| {
        s.sent
            .iter()
            .find(|m| m.content.starts_with("❌ there is no stack argos-staging"))
            .cloned()
    })
    .await;
    bot.idle().await;

    let (status, content_type, after) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(after.ends_with("# EOF\n"), "{after}");
    let delta = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(
        delta(r#"argos_jobs_total{action="update",outcome="failed"}"#),
        1.0,
        "{after}"
    );
    assert_eq!(
        delta(r#"argos_job_duration_seconds_count{action="update"}"#),
        1.0,
        "{after}"
    );
    assert!(
        delta(r#"argos_aws_calls_total{operation="DescribeStacks",outcome="error"}"#) >= 1.0,
        "{after}"
    );
    assert!(
        delta(r#"argos_chat_requests_total{platform="discord",method="send",status="ok"}"#) >= 1.0,
        "{after}"
    );
    assert!(delta(r#"argos_status_edits_total{outcome="sent"}"#) >= 1.0, "{after}");
    assert!(after.contains("argos_replicas_live "), "{after}");
    assert!(after.contains("argos_heartbeat_ok 1"), "{after}");
    assert!(!after.contains(TOKEN), "no secret in the metrics");

    let (status, _, body) = get(addr, "/nope").await;
    assert_eq!(
        (status, body.as_str()),
        (404, "not found: try /healthz, /readyz or /metrics\n")
    );
    chat.assert_no_unexpected();
    client.abort();
    server.abort();
}

#[test]
fn a_bad_listen_address_is_refused_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let project = TestProject::new("http://127.0.0.1:9", "health:\n  listen: \"loopback:80\"\n");
    let err = argos::config::Config::load(&project.config_path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("health.listen"), "{err}");
    assert!(err.contains("'loopback:80' is not an address and port"), "{err}");
    drop(dir);
}
