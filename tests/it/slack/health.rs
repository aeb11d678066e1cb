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
    w.chat.assert_no_unexpected();
}

/// A free loopback address for the real binary to listen on.
fn free_loopback_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().unwrap()
}

/// GET `path`, polling until the server answers (the binary is starting).
async fn get_when_up(addr: std::net::SocketAddr, path: &str, within: std::time::Duration) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            let (status, _, body) = http_get(addr, path).await;
            return (status, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing answers {path} on {addr} within {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `argos bot` answers its probes from the first second: while Slack has not said `hello`
/// (which may take up to a minute), `/healthz` says the process lives, `/readyz` is 503 and
/// says what it waits for, and `/metrics` answers; once Slack said `hello`, it is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_probes_answer_while_slack_is_still_connecting() {
    let w = world().await;
    w.chat.hold_hello();
    let addr = free_loopback_addr();
    let mut yaml = std::fs::read_to_string(&w.project.config_path).unwrap();
    yaml.push_str(&format!("health:\n  listen: \"{addr}\"\n"));
    std::fs::write(&w.project.config_path, yaml).unwrap();
    crate::support::set_test_secrets();
    let mut bot = tokio::process::Command::new(env!("CARGO_BIN_EXE_argos"))
        .arg("--config")
        .arg(&w.project.config_path)
        .arg("bot")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("argos bot starts");

    let (status, body) = get_when_up(addr, "/healthz", std::time::Duration::from_secs(20)).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // The bot is connecting: its Socket Mode connection is open, Slack's `hello` is held.
    w.chat
        .wait_for("a Socket Mode connection", |s| (!s.sockets.is_empty()).then_some(()))
        .await;
    let (status, _, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, "store: ok\nslack: connecting\nreplica lease: ok\n");
    let (status, _, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics.contains("argos_chat_requests_total"), "{metrics}");

    w.chat.release_hello();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let body = loop {
        let (status, _, body) = http_get(addr, "/readyz").await;
        if status == 200 {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "not ready after hello: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(body, "store: ok\nslack: connected\nreplica lease: ok\n");
    assert_eq!(bot.try_wait().unwrap(), None, "the bot is still running");
    bot.start_kill().unwrap();
    let out = bot.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
