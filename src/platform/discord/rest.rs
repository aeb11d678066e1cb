//! The one road to Discord's REST API: every request the adapter makes (messages, edits,
//! interaction responses and follow-ups, command registration) is sent here, through
//! [`Limiter`], which sees each answer's status, headers and body before the caller does.
//!
//! Why not serenity's `Http`: its rate limiter is the only code that sees the answers'
//! headers, and it is skipped whenever a proxy is set (`HttpBuilder::proxy` only works with
//! `ratelimiter_disabled(true)`, DESIGN.md §4), which is exactly how the tests reach the fake
//! Discord and how serenity suggests using a rate-limiting proxy. With its limiter off, `Http`
//! turns a 429 into an error without its headers, and its body's `retry_after` into "could not
//! decode json". So the tests and production would run different limiters, and the one the
//! tests run could not see a 429. Here one hyper client (the same rustls stack serenity and the
//! Slack client use) sends the requests to `https://discord.com` or to `discord.api_proxy`, and
//! the same limiter decides for both. serenity's `Http`, with its limiter always off, is left
//! with the gateway client's own lookups when it connects (`GET /gateway`), which we gate
//! through the global hold before connecting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::Method;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::limiter::{Limiter, RouteKey, Verdict};

/// Discord's REST API, as of serenity 0.12.
const API: &str = "/api/v10";
const DISCORD: &str = "https://discord.com";

/// A request that keeps drawing 429s is given up after this many attempts.
const MAX_ATTEMPTS: u32 = 5;

/// One attempt that takes longer than this is abandoned.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A request's body.
pub(super) enum Body {
    Json(serde_json::Value),
    /// A message with one file: `payload_json` and `files[0]`.
    WithFile {
        json: serde_json::Value,
        filename: String,
        data: Vec<u8>,
    },
}

/// One request: what it is for (`what`, in errors and metrics), its method, its path under
/// `/api/v10`, its route for the limiter, and its body.
pub(super) struct Call {
    pub what: &'static str,
    pub method: Method,
    pub path: String,
    pub key: RouteKey,
    pub body: Body,
}

pub(super) struct Rest {
    client: Client<Https, Full<Bytes>>,
    base: String,
    auth: HeaderValue,
    pub(super) limiter: Limiter,
    boundaries: AtomicU64,
}

fn connector() -> Https {
    // The system's roots (a company proxy's CA included); the bundled ones if it has none.
    match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots(),
    }
    // Plain http only ever goes to an `api_proxy` the operator configured.
    .https_or_http()
    .enable_http1()
    .enable_http2()
    .build()
}

/// The `Authorization` header for a bot token (with or without its `Bot ` prefix).
pub(super) fn authorization(token: &str) -> Result<HeaderValue, String> {
    let bare = token.trim().trim_start_matches("Bot ").trim();
    let mut auth = HeaderValue::from_str(&format!("Bot {bare}"))
        .map_err(|_| "the Discord token has characters an HTTP header cannot carry".to_string())?;
    auth.set_sensitive(true);
    Ok(auth)
}

fn user_agent() -> HeaderValue {
    HeaderValue::from_static(concat!(
        "DiscordBot (https://github.com/argos/argos, ",
        env!("CARGO_PKG_VERSION"),
        ")"
    ))
}

impl Rest {
    /// `proxy`: `discord.api_proxy` (requests go there instead of `https://discord.com`).
    /// A token a header cannot carry is sent as an empty one (Discord then answers 401);
    /// [`authorization`] lets the caller refuse it first with a clear error.
    pub(super) fn new(token: &str, proxy: Option<&str>, limiter: Limiter) -> Rest {
        Rest {
            client: Client::builder(TokioExecutor::new()).build(connector()),
            base: proxy.unwrap_or(DISCORD).trim_end_matches('/').to_string(),
            auth: authorization(token).unwrap_or_else(|_| HeaderValue::from_static("Bot")),
            limiter,
            boundaries: AtomicU64::new(0),
        }
    }

    fn encode(&self, body: &Body) -> (Option<String>, Bytes) {
        match body {
            Body::Json(v) => (Some("application/json".into()), Bytes::from(v.to_string())),
            Body::WithFile { json, filename, data } => {
                let boundary = format!(
                    "argos-{:x}-{:x}",
                    std::process::id(),
                    self.boundaries.fetch_add(1, Ordering::Relaxed)
                );
                let name = filename.replace(['"', '\r', '\n'], "_");
                let mut out = Vec::with_capacity(data.len() + 512);
                out.extend_from_slice(
                    format!(
                        "--{boundary}\r\nContent-Disposition: form-data; name=\"payload_json\"\r\n\
                         Content-Type: application/json\r\n\r\n{json}\r\n"
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(
                    format!(
                        "--{boundary}\r\nContent-Disposition: form-data; name=\"files[0]\"; filename=\"{name}\"\r\n\
                         Content-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(data);
                out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
                (
                    Some(format!("multipart/form-data; boundary={boundary}")),
                    Bytes::from(out),
                )
            }
        }
    }

    /// One attempt: (status, what the limiter reads, body).
    async fn attempt(
        &self,
        call: &Call,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<(u16, Verdict, Bytes), String> {
        let mut req = hyper::Request::builder()
            .method(call.method.clone())
            .uri(format!("{}{API}{}", self.base, call.path))
            .header(AUTHORIZATION, self.auth.clone())
            .header(USER_AGENT, user_agent());
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|_| format!("Discord {}: the request could not be built", call.what))?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            let verdict = Verdict::read(status, |name| headers.get(name).and_then(|v| v.to_str().ok()), &body);
            Ok::<_, String>((status, verdict, body))
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, exchange).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                crate::metrics::get().chat_request("discord", call.what, "error");
                Err(format!("Discord {} failed: {e}", call.what))
            }
            Err(_) => {
                crate::metrics::get().chat_request("discord", call.what, "timeout");
                Err(format!("Discord {} timed out", call.what))
            }
        }
    }

    /// Sends `call`, waiting before each attempt for what the limiter says and waiting out
    /// every 429 before trying again. Returns the successful answer's body. `render`, if given,
    /// is asked after each wait for the body to send now (an edit shows the job as it is when
    /// it goes out); `None` from it drops the request.
    pub(super) async fn call(
        &self,
        call: Call,
        render: Option<&(dyn Fn() -> Option<Body> + Send + Sync)>,
    ) -> Result<Option<Bytes>, String> {
        let fixed = self.encode(&call.body);
        let _order = match &call.key.channel {
            Some(channel) => Some(self.limiter.channel(channel).await),
            None => None,
        };
        for _ in 0..MAX_ATTEMPTS {
            self.limiter.ready(&call.key).await;
            // The wait may have been long (or this process was paused in it).
            let (content_type, body) = match render {
                None => fixed.clone(),
                Some(render) => match render() {
                    Some(body) => self.encode(&body),
                    None => return Ok(None),
                },
            };
            let (status, verdict, answer) = self.attempt(&call, content_type.as_deref(), body).await?;
            self.limiter.observe(&call.key, &verdict).await;
            match status {
                429 => {
                    crate::metrics::get().chat_request("discord", call.what, "429");
                    let (wait, global) = verdict.retry.unwrap_or_default();
                    tracing::info!(
                        request = call.what,
                        wait_ms = wait.as_millis() as u64,
                        global,
                        "Discord answered 429; waiting it out before trying again"
                    );
                }
                200..=299 => {
                    crate::metrics::get().chat_request("discord", call.what, "ok");
                    return Ok(Some(answer));
                }
                _ => {
                    crate::metrics::get().chat_request("discord", call.what, "error");
                    let json: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
                    let message = json["message"].as_str().unwrap_or("no message");
                    // Discord's own error code says what went wrong (50007: no DMs to that person).
                    let code = match json["code"].as_u64() {
                        Some(code) if code != 0 => format!(" (code {code})"),
                        _ => String::new(),
                    };
                    return Err(format!("Discord {} failed: HTTP {status}: {message}{code}", call.what));
                }
            }
        }
        Err(format!(
            "Discord {} failed: still rate limited after {MAX_ATTEMPTS} attempts",
            call.what
        ))
    }
}
