//! `/healthz`, `/readyz` and `/metrics`, scraped over loopback like Prometheus and a load
//! balancer would: a bot connected to the fake Discord runs a job against the scripted fake
//! AWS, and the metrics show the job, its AWS calls and its chat requests.
use crate::support;

use argos::bot::Bot;
use argos::engine::Engine;
use argos::platform::discord;
use argos::store::Store;
use support::fake_aws::FakeAws;
use support::fake_discord::*;
use support::TestProject;
use support::{http_get as get, metric_value as value};

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
