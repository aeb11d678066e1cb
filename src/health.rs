//! The operator's endpoints of `argos bot`, on `health.listen` (loopback by default), served
//! with hyper (already in the build for the Slack client) from the moment the store is open,
//! before any platform is connected:
//! - `/healthz`: the process answers (liveness; restart it when this fails);
//! - `/readyz`: the store answers, every chat platform is connected, and this replica's
//!   heartbeat reaches the store within its lease time (503 with the failing checks otherwise,
//!   `slack: connecting` while the adapter waits for Slack's first `hello`);
//! - `/metrics`: [`crate::metrics`] in the OpenMetrics text format Prometheus scrapes;
//! - and the read-only web page ([`crate::web`]), on the same listener.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::bot::Bot;

/// How long the store may take to answer the readiness probe.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` checked, one line per check.
pub async fn readiness(bot: &Bot) -> (bool, String) {
    let mut ok = true;
    let mut lines = Vec::new();
    let store = bot.store().clone();
    let reached = tokio::time::timeout(STORE_TIMEOUT, tokio::task::spawn_blocking(move || store.replicas())).await;
    match reached {
        Ok(Ok(Ok(_))) => lines.push("store: ok".to_string()),
        Ok(Ok(Err(e))) => {
            ok = false;
            lines.push(format!("store: {}", bot.engine().redactor.redact(&e.to_string())));
        }
        _ => {
            ok = false;
            lines.push(format!("store: no answer within {} s", STORE_TIMEOUT.as_secs()));
        }
    }
    let connecting = bot.still_connecting();
    let mut platforms: Vec<(&str, String)> = bot
        .ports()
        .iter()
        .map(|port| {
            let state = if port.connected() { "connected" } else { "not connected" };
            (port.platform().as_str(), state.to_string())
        })
        .chain(connecting.iter().map(|p| (*p, "connecting".to_string())))
        .collect();
    platforms.sort();
    if platforms.is_empty() {
        ok = false;
        lines.push("chat: no platform connected".into());
    }
    for (platform, state) in platforms {
        ok &= state == "connected";
        lines.push(format!("{platform}: {state}"));
    }
    if bot.heartbeat_ok() {
        lines.push("replica lease: ok".into());
    } else {
        ok = false;
        lines.push("replica lease: the last heartbeat did not reach the store in time".into());
    }
    (ok, lines.join("\n") + "\n")
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_str(content_type).expect("a valid content type"),
    );
    response
}

/// The health endpoints, the web page ([`crate::web`]) beside them, and a plain 404 for
/// anything else. axum answers HEAD like GET, and 405 to other methods.
pub fn router(bot: Bot) -> axum::Router {
    use axum::routing::get;
    let plain = "text/plain; charset=utf-8";
    let ready = bot.clone();
    axum::Router::new()
        .route(
            "/healthz",
            get(move || async move { text(StatusCode::OK, plain, "ok\n".into()) }),
        )
        .route(
            "/readyz",
            get(move || async move {
                let (ready, body) = readiness(&ready).await;
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                text(status, plain, body)
            }),
        )
        .route(
            "/metrics",
            get(|| async {
                text(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    crate::metrics::get().render(),
                )
            }),
        )
        .merge(crate::web::router(bot))
        .fallback(move || async move {
            text(
                StatusCode::NOT_FOUND,
                plain,
                "not found: try /healthz, /readyz or /metrics\n".into(),
            )
        })
}

/// Starts serving on `addr`; returns the address bound (port 0 picks a free one) and the
/// server's task.
pub async fn serve(addr: &str, bot: Bot) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let routes = router(bot);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            // Who connected: the web page believes a trusted proxy's header from it only.
            let routes = routes.clone().layer(axum::Extension(crate::web::PeerAddr(peer)));
            tokio::spawn(async move {
                let service = hyper_util::service::TowerToHyperService::new(routes);
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "a health connection ended badly");
                }
            });
        }
    });
    Ok((bound, task))
}
