//! EC2 through a small client of Argos's own for its Query API: a form POST signed with SigV4
//! (the SDK's own signer, `aws-sigv4`), sent on the hyper and rustls stack the other clients
//! use, retried like the SDK's standard mode, and answered in XML (`xml`).
//!
//! Why not `aws-sdk-ec2`: Argos calls nine EC2 operations, and that crate (the whole EC2 API,
//! 600-odd operations) compiled for 183 s by itself on the critical path of a cold test build
//! of 5 min 44 s, plus its check under clippy (docs/benchmarks.md, issue 16). CloudFormation,
//! Auto Scaling and SQS stay on the SDK. What this client shares with them: the account's
//! credentials provider (so a role is assumed once per session for all of them), its region,
//! endpoint override and retry settings; the request budget and the metrics are the callers'
//! (`aws_call!`), as for the SDK's clients.

pub mod query;
pub mod xml;

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::AwsSettings;
use crate::error::AwsError;
pub use query::Params;
pub use xml::Element;

/// How long a connection may take to open (the SDK's default).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3_100);
/// One attempt (request and whole answer) that takes longer is abandoned and retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait between two attempts (the SDK's standard mode).
const MAX_BACKOFF: Duration = Duration::from_secs(20);

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// EC2 answered with an error.
    Service {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// No credentials to sign with: the chain found none, or STS refused the role. Each
    /// error of the chain, outermost first.
    Credentials(Vec<String>),
    /// The endpoint could not be reached, or its answer was cut off.
    Unreachable(String),
    /// No whole answer within [`ATTEMPT_TIMEOUT`].
    Timeout,
}

impl Failure {
    /// Worth another attempt: throttling, EC2's transient errors, a 5xx, a dropped or slow
    /// connection (the SDK's standard retry classifiers).
    fn is_transient(&self) -> bool {
        match self {
            Failure::Service { status, code, .. } => {
                *status >= 500
                    || crate::metrics::is_throttling(code.as_deref())
                    || matches!(
                        code.as_deref(),
                        Some("RequestTimeout" | "RequestTimeoutException" | "InternalError" | "ServiceUnavailable")
                    )
            }
            Failure::Unreachable(_) | Failure::Timeout => true,
            Failure::Credentials(_) => false,
        }
    }

    /// The failure described for a person, as [`AwsError`] describes the SDK's.
    pub fn describe(self, action: &str) -> AwsError {
        let (code, message) = match self {
            Failure::Service { code, message, .. } => (code, message),
            Failure::Credentials(chain) => (None, chain.join(": ")),
            Failure::Unreachable(why) => (None, format!("cannot reach the AWS endpoint: {why}")),
            Failure::Timeout => (None, "no answer in time".to_string()),
        };
        AwsError {
            action: action.to_string(),
            code,
            message,
        }
    }
}

/// One account's EC2 client (built with the account's other clients, at its first call).
pub struct Client {
    http: hyper_util::client::legacy::Client<Https, Full<Bytes>>,
    endpoint: String,
    region: String,
    /// Cached by the caller (`cloud::credentials`); None: the SDK config found no
    /// credentials provider at all.
    credentials: Option<SharedCredentialsProvider>,
    max_attempts: u32,
    initial_backoff: Duration,
}

impl Client {
    /// A client for the account `base` loads, calling with `credentials` (already cached:
    /// this client asks it before every call).
    pub fn new(base: &SdkConfig, credentials: Option<SharedCredentialsProvider>, settings: &AwsSettings) -> Client {
        let region = base
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        Client {
            http: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector()),
            endpoint: endpoint(base, settings, &region),
            region,
            credentials,
            max_attempts: settings.max_attempts.max(1),
            initial_backoff: Duration::from_millis(settings.retry_initial_backoff_ms),
        }
    }

    /// Calls `action` with `params`, retrying transient failures, and returns the answer's
    /// root element.
    pub async fn call(&self, action: &str, params: &Params) -> Result<Element, Failure> {
        let body = params.body(action);
        let mut attempt = 1;
        loop {
            let result = match tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(&body)).await {
                Ok(result) => result,
                Err(_) => Err(Failure::Timeout),
            };
            match result {
                Err(failure) if failure.is_transient() && attempt < self.max_attempts => {
                    let wait = backoff(self.initial_backoff, attempt);
                    tracing::debug!(
                        action,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        ?failure,
                        "EC2 call retried"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn attempt(&self, body: &str) -> Result<Element, Failure> {
        let credentials = self.credentials().await?;
        let request = self.signed(body, &credentials)?;
        let answer = self
            .http
            .request(request)
            .await
            .map_err(|e| Failure::Unreachable(error_chain(&e).join(": ")))?;
        let status = answer.status().as_u16();
        let bytes = answer
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::Unreachable(format!("the answer was cut off: {e}")))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        if (200..300).contains(&status) {
            return xml::parse(&text).map_err(|e| Failure::Service {
                status,
                code: None,
                message: format!("EC2's answer could not be read ({e})"),
            });
        }
        Err(service_error(status, &text))
    }

    /// The POST of `body` to the endpoint, with its SigV4 signature.
    fn signed(&self, body: &str, credentials: &Credentials) -> Result<hyper::Request<Full<Bytes>>, Failure> {
        let uri: hyper::Uri = self
            .endpoint
            .parse()
            .map_err(|e| Failure::Unreachable(format!("the endpoint {} is not a URL: {e}", self.endpoint)))?;
        let host = match (uri.host(), uri.port_u16(), uri.scheme_str()) {
            (Some(h), Some(443), Some("https")) | (Some(h), Some(80), Some("http")) | (Some(h), None, _) => {
                h.to_string()
            }
            (Some(h), Some(port), _) => format!("{h}:{port}"),
            (None, ..) => {
                return Err(Failure::Unreachable(format!(
                    "the endpoint {} names no host",
                    self.endpoint
                )))
            }
        };
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let identity = credentials.clone().into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(aws_sigv4::http_request::SigningSettings::default())
            .build()
            .map_err(|e| Failure::Credentials(vec![format!("cannot sign the request: {e}")]))?
            .into();
        let signable = aws_sigv4::http_request::SignableRequest::new(
            "POST",
            self.endpoint.as_str(),
            [("content-type", content_type), ("host", host.as_str())].into_iter(),
            aws_sigv4::http_request::SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| Failure::Unreachable(format!("cannot sign a request to {}: {e}", self.endpoint)))?;
        let (instructions, _) = aws_sigv4::http_request::sign(signable, &params)
            .map_err(|e| Failure::Credentials(vec![format!("cannot sign the request: {e}")]))?
            .into_parts();
        let mut request = hyper::Request::post(uri)
            .header(CONTENT_TYPE, content_type)
            .header(HOST, host)
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("argos/", env!("CARGO_PKG_VERSION"))),
            )
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .map_err(|e| Failure::Unreachable(format!("cannot build a request to {}: {e}", self.endpoint)))?;
        instructions.apply_to_request_http1x(&mut request);
        for (name, value) in request.headers_mut().iter_mut() {
            if name == "authorization" || name == "x-amz-security-token" {
                value.set_sensitive(true);
            }
        }
        Ok(request)
    }

    /// The credentials to sign with.
    async fn credentials(&self) -> Result<Credentials, Failure> {
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| Failure::Credentials(vec!["no credentials provider is configured".into()]))?;
        provider.provide_credentials().await.map_err(|e| {
            let mut chain = vec!["failed to load credentials".to_string()];
            chain.extend(error_chain(&e));
            Failure::Credentials(chain)
        })
    }
}

/// Where EC2 is: the config's endpoint, the SDK's (`AWS_ENDPOINT_URL_EC2`, then
/// `AWS_ENDPOINT_URL` or the profile's), else the region's public one (FIPS or dual-stack
/// when the SDK config asks for them; China's regions under `amazonaws.com.cn`).
fn endpoint(base: &SdkConfig, settings: &AwsSettings, region: &str) -> String {
    let configured = settings
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_EC2").ok().filter(|u| !u.is_empty()))
        .or_else(|| base.endpoint_url().map(str::to_string));
    if let Some(url) = configured {
        return url.trim_end_matches('/').to_string();
    }
    let fips = base.use_fips().unwrap_or(false);
    let dual = base.use_dual_stack().unwrap_or(false);
    let service = if fips { "ec2-fips" } else { "ec2" };
    let suffix = match (region.starts_with("cn-"), dual) {
        (true, true) => "api.amazonwebservices.com.cn",
        (true, false) => "amazonaws.com.cn",
        (false, true) => "api.aws",
        (false, false) => "amazonaws.com",
    };
    format!("https://{service}.{region}.{suffix}")
}

fn connector() -> Https {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.enforce_http(false);
    // The system's roots (a company proxy's CA included); the bundled ones if it has none.
    match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots(),
    }
    // Plain http only to an endpoint the config or environment names (a local stand-in).
    .https_or_http()
    .enable_http1()
    .wrap_connector(http)
}

/// EC2's error document (`<Response><Errors><Error><Code>…`), or what the status says when
/// the body is not one.
fn service_error(status: u16, text: &str) -> Failure {
    let root = xml::parse(text).ok();
    let error = root.as_ref().and_then(|r| {
        r.child("Errors")
            .and_then(|e| e.child("Error"))
            .or_else(|| r.child("Error"))
            .or_else(|| (r.name == "Error").then_some(r))
    });
    match error {
        Some(e) => Failure::Service {
            status,
            code: e.text(&["Code"]).map(str::to_string),
            message: e
                .text(&["Message"])
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}")),
        },
        None => Failure::Service {
            status,
            code: None,
            message: format!("HTTP {status} with an unreadable body"),
        },
    }
}

/// An error and its sources, outermost first.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut chain = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if chain.last() != Some(&text) {
            chain.push(text);
        }
        cur = e.source();
    }
    chain
}

/// The standard mode's wait before attempt `attempt + 1`: a random part of the initial
/// backoff doubled per attempt, at most [`MAX_BACKOFF`].
fn backoff(initial: Duration, attempt: u32) -> Duration {
    let ceiling = initial
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let mut seed = [0u8; 4];
    let jitter = match getrandom::fill(&mut seed) {
        Ok(()) => f64::from(u32::from_le_bytes(seed)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    };
    ceiling.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ec2_errors_and_what_is_worth_retrying() {
        let throttled = service_error(
            503,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r-1</RequestID></Response>"#,
        );
        assert_eq!(
            throttled,
            Failure::Service {
                status: 503,
                code: Some("RequestLimitExceeded".into()),
                message: "Request limit exceeded.".into()
            }
        );
        assert!(throttled.is_transient());
        let missing = service_error(
            400,
            "<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code><Message>The image id '[ami-1]' does not exist</Message></Error></Errors></Response>",
        );
        assert!(!missing.is_transient());
        let described = missing.describe("DeregisterImage");
        assert_eq!(described.code.as_deref(), Some("InvalidAMIID.NotFound"));
        assert_eq!(
            described.to_string(),
            "DeregisterImage failed: InvalidAMIID.NotFound: The image id '[ami-1]' does not exist"
        );
        let html = service_error(502, "<html><body>Bad gateway</body>");
        assert_eq!(html.clone().describe("X").message, "HTTP 502 with an unreadable body");
        assert!(html.is_transient());
        assert!(Failure::Timeout.is_transient() && !Failure::Credentials(vec![]).is_transient());
    }

    #[test]
    fn backs_off_within_the_doubling_ceiling() {
        let initial = Duration::from_millis(100);
        for attempt in 1..30 {
            let ceiling = initial.saturating_mul(1 << (attempt - 1).min(16)).min(MAX_BACKOFF);
            assert!(backoff(initial, attempt) <= ceiling);
        }
    }

    #[test]
    fn finds_the_regional_endpoint_or_the_configured_one() {
        let base = |b: aws_config::SdkConfig| b;
        let plain = base(
            SdkConfig::builder()
                .region(aws_config::Region::new("eu-west-1"))
                .build(),
        );
        let settings = AwsSettings::default();
        assert_eq!(
            endpoint(&plain, &settings, "eu-west-1"),
            "https://ec2.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            endpoint(&plain, &settings, "cn-north-1"),
            "https://ec2.cn-north-1.amazonaws.com.cn"
        );
        let fips = SdkConfig::builder().use_fips(true).build();
        assert_eq!(
            endpoint(&fips, &settings, "us-east-1"),
            "https://ec2-fips.us-east-1.amazonaws.com"
        );
        let local = AwsSettings {
            endpoint_url: Some("http://127.0.0.1:5000/".into()),
            ..AwsSettings::default()
        };
        assert_eq!(endpoint(&plain, &local, "us-east-1"), "http://127.0.0.1:5000");
    }
}
