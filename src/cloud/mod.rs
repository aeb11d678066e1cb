//! AWS access: one CloudFormation and one EC2 client per account, built from the config, with
//! the SDK's standard retries and one shared request budget (governor) that every operation and
//! stack watcher draws from, so ten watchers at once do not trip AWS throttling.

pub mod image;
pub mod instances;
pub mod stack;
pub mod template;
pub mod watcher;

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudformation::error::ProvideErrorMetadata;

use crate::config::{AwsSettings, Config};

/// A failed AWS call, described for a person: the action, AWS's error code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{action} failed: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct AwsError {
    pub action: String,
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    pub fn from_sdk<E>(action: &str, err: aws_sdk_cloudformation::error::SdkError<E>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        use aws_sdk_cloudformation::error::SdkError;
        let code = err.code().map(str::to_string);
        let message = match (err.message(), &err) {
            (Some(m), _) => m.to_string(),
            // An answer we could not read (an HTML error page, say): its status says enough.
            (None, SdkError::ServiceError(se)) => {
                format!("HTTP {} with an unreadable body", se.raw().status().as_u16())
            }
            (None, SdkError::TimeoutError(_)) => "no answer in time".to_string(),
            (None, SdkError::DispatchFailure(d)) => match d.as_connector_error() {
                Some(c) if c.is_io() => format!("cannot reach the AWS endpoint: {c}"),
                _ => "cannot reach the AWS endpoint".to_string(),
            },
            (None, _) => aws_sdk_cloudformation::error::DisplayErrorContext(&err).to_string(),
        };
        AwsError {
            action: action.to_string(),
            code,
            message,
        }
    }

    /// CloudFormation's way of saying a stack does not exist.
    pub fn is_missing_stack(&self) -> bool {
        self.code.as_deref() == Some("ValidationError") && self.message.contains("does not exist")
    }
}

/// The clients and the request budget for one AWS account and region. The clients are built
/// at the first call, not at start: a console or a bot that only answers chat never loads the
/// SDK's config and profile files, the TLS roots (every file of the system's certificate
/// folder) or the code behind them, which made up about a fifth of an idle console's resident
/// memory and a third of its start-up (see `benches/service.rs`).
#[derive(Clone)]
pub struct Aws {
    clients: Arc<tokio::sync::OnceCell<Clients>>,
    settings: Arc<(AwsSettings, String)>,
    budget: Arc<crate::budget::SharedBudget>,
}

struct Clients {
    cfn: aws_sdk_cloudformation::Client,
    ec2: aws_sdk_ec2::Client,
}

impl Aws {
    /// The clients for the config's account. Credentials come from the usual chain
    /// (environment, profile, SSO, instance role) unless the config asks for the local
    /// stand-in's dummy credentials; they are looked up at the first call.
    pub async fn connect(config: &Config) -> Aws {
        Self::connect_with(&config.settings.aws, config.region()).await
    }

    pub async fn connect_with(settings: &AwsSettings, region: &str) -> Aws {
        Aws {
            clients: Arc::new(tokio::sync::OnceCell::new()),
            settings: Arc::new((settings.clone(), region.to_string())),
            budget: Arc::new(crate::budget::SharedBudget::new(
                settings.requests_per_second,
                settings.burst,
            )),
        }
    }

    /// The CloudFormation client (built at the first call).
    pub async fn cfn(&self) -> &aws_sdk_cloudformation::Client {
        &self.clients().await.cfn
    }

    /// The EC2 client (built at the first call).
    pub async fn ec2(&self) -> &aws_sdk_ec2::Client {
        &self.clients().await.ec2
    }

    async fn clients(&self) -> &Clients {
        self.clients
            .get_or_init(|| Clients::build(&self.settings.0, &self.settings.1))
            .await
    }

    /// Waits for a slot in the account's request budget. Every AWS call goes through here.
    pub async fn budget(&self) {
        self.budget.until_ready().await;
    }

    /// The account's budget is shared by this many live processes (this one included).
    pub fn set_share(&self, processes: usize) {
        self.budget.set_share(processes);
    }

    /// How many processes share the account's budget now, and this one's rate.
    pub fn budget_share(&self) -> (u32, u32) {
        (self.budget.share(), self.budget.rate())
    }
}

impl Clients {
    async fn build(settings: &AwsSettings, region: &str) -> Clients {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let retry = RetryConfig::standard()
            .with_max_attempts(settings.max_attempts)
            .with_initial_backoff(Duration::from_millis(settings.retry_initial_backoff_ms))
            .with_max_backoff(Duration::from_secs(20));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .http_client(http)
            .retry_config(retry);
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if settings.local_credentials {
            loader = loader.credentials_provider(aws_sdk_cloudformation::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "argos-local-stand-in",
            ));
        }
        let shared = loader.load().await;
        Clients {
            cfn: aws_sdk_cloudformation::Client::new(&shared),
            ec2: aws_sdk_ec2::Client::new(&shared),
        }
    }
}

/// Calls an SDK operation inside the request budget and maps its error.
#[macro_export]
macro_rules! aws_call {
    ($aws:expr, $action:literal, $send:expr) => {{
        $aws.budget().await;
        let result = $send.await.map_err(|e| $crate::cloud::AwsError::from_sdk($action, e));
        $crate::cloud::count_call($action, &result);
        result
    }};
}

/// Counts an AWS call in the metrics, by operation and outcome.
pub fn count_call<T>(action: &str, result: &Result<T, AwsError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) if crate::metrics::is_throttling(e.code.as_deref()) => "throttled",
        Err(_) => "error",
    };
    crate::metrics::get().aws_call(action, outcome);
}
