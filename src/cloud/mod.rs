//! AWS access: one CloudFormation, EC2, Auto Scaling and SQS client per account, built from
//! the config, with the SDK's standard retries (EC2's client is Argos's own: `ec2`) and one
//! shared request budget (governor) that every operation and stack watcher draws from, so ten
//! watchers at once do not trip AWS throttling.

pub mod account;
pub mod credentials;
pub mod ec2;
pub mod events;
pub mod image;
pub mod instances;
pub mod stack;
pub mod watcher;
pub mod workers;

use std::sync::Arc;

use aws_sdk_cloudformation::error::ProvideErrorMetadata;

use crate::config::{AwsSettings, Config};
pub use crate::error::AwsError;
pub use account::Accounts;
use account::{session_name, Account, Source};

/// The clients and the request budget for one AWS account and region, as one environment
/// (and, for an assumed role, one session) uses them. The clients are built at the first
/// call, not at start: a console or a bot that only answers chat never loads the SDK's config
/// and profile files, the TLS roots (every file of the system's certificate folder) or the
/// code behind them, which made up about a fifth of an idle console's resident memory and a
/// third of its start-up (see `benches/service.rs`).
#[derive(Clone)]
pub struct Aws {
    account: Arc<Account>,
    clients: Arc<tokio::sync::OnceCell<Clients>>,
    /// The role session's name (what CloudTrail shows as the caller).
    session: Arc<str>,
    /// The environment, for errors that must say which one failed.
    env: Option<Arc<str>>,
}

impl std::fmt::Debug for Aws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The external id and any credentials stay out of debug output.
        f.debug_struct("Aws")
            .field("region", &self.account.region)
            .field("role", &self.account.role.as_ref().map(|r| &r.name))
            .field("session", &self.session)
            .field("env", &self.env)
            .finish()
    }
}

struct Clients {
    cfn: aws_sdk_cloudformation::Client,
    ec2: ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    sqs: aws_sdk_sqs::Client,
}

impl Aws {
    /// The clients for the config's default account. Credentials come from the usual chain
    /// (environment, profile, SSO, instance role) unless the config asks for the local
    /// stand-in's dummy credentials; they are looked up at the first call.
    pub async fn connect(config: &Config) -> Aws {
        Self::connect_with(&config.settings.aws, config.region()).await
    }

    pub async fn connect_with(settings: &AwsSettings, region: &str) -> Aws {
        let group = Arc::new(std::sync::Mutex::new(Vec::new()));
        let account = Account::new(settings, region, &Source::Default, None, group);
        Aws::for_account(Arc::new(account), &session_name(&account::process_user(), None))
    }

    pub(crate) fn for_account(account: Arc<Account>, session: &str) -> Aws {
        Aws {
            account,
            clients: Arc::new(tokio::sync::OnceCell::new()),
            session: session.into(),
            env: None,
        }
    }

    /// The same clients, labelled with the environment they serve.
    pub fn in_env(&self, env: &str) -> Aws {
        Aws {
            env: Some(env.into()),
            ..self.clone()
        }
    }

    /// The clients for one role session (`argos-<user>-job<id>`): a role account gets new
    /// clients whose credentials STS issues under that name; other accounts have no session
    /// to name and keep theirs.
    pub fn for_session(&self, user: &str, job: Option<u64>) -> Aws {
        let session = session_name(user, job);
        if self.account.role.is_none() || *self.session == *session {
            return self.clone();
        }
        Aws {
            clients: Arc::new(tokio::sync::OnceCell::new()),
            session: session.into(),
            ..self.clone()
        }
    }

    /// Whether both call the same account with the same credentials source.
    pub fn same_account(&self, other: &Aws) -> bool {
        Arc::ptr_eq(&self.account, &other.account)
    }

    /// The role session's name, when the account is a role's.
    pub fn session_name(&self) -> Option<&str> {
        self.account.role.as_ref().map(|_| &*self.session)
    }

    /// The CloudFormation service role the account's stacks are created and changed with.
    pub fn cloudformation_role(&self) -> Option<&str> {
        self.account.cloudformation_role()
    }

    /// The CloudFormation client (built at the first call).
    pub async fn cfn(&self) -> &aws_sdk_cloudformation::Client {
        &self.clients().await.cfn
    }

    /// The EC2 client (built at the first call).
    pub async fn ec2(&self) -> &ec2::Client {
        &self.clients().await.ec2
    }

    /// One EC2 call, as `aws_call!` makes the SDK's: inside the request budget, counted in the
    /// metrics, its failure described. (A function, not the macro: the action is named once.)
    pub async fn ec2_call(&self, action: &'static str, params: &ec2::Params) -> Result<ec2::Element, AwsError> {
        self.budget().await;
        let result = self
            .ec2()
            .await
            .call(action, params)
            .await
            .map_err(|e| self.error(action, e));
        count_call(action, &result);
        result
    }

    /// The Auto Scaling client (built at the first call): the workers' lifecycle hooks.
    pub async fn autoscaling(&self) -> &aws_sdk_autoscaling::Client {
        &self.clients().await.autoscaling
    }

    /// The SQS client (built at the first call): the pushed stack events' queue.
    pub async fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.clients().await.sqs
    }

    /// Names the account and region for what replicas share per account (the one long poll
    /// of its events queue): the role or profile the config names, or `default`.
    pub fn account_key(&self) -> String {
        let who = match (&self.account.role, &self.account.profile) {
            (Some(role), _) => format!("role:{}", role.name),
            (None, Some(profile)) => format!("profile:{profile}"),
            (None, None) => "default".to_string(),
        };
        format!("{who}@{}", self.account.region)
    }

    async fn clients(&self) -> &Clients {
        self.clients
            .get_or_init(|| Clients::build(&self.account, &self.session))
            .await
    }

    /// Waits for a slot in the account's request budget. Every AWS call goes through here.
    pub async fn budget(&self) {
        self.account.budget.until_ready().await;
    }

    /// The accounts' budgets are shared by this many live processes (this one included).
    pub fn set_share(&self, processes: usize) {
        for b in self.account.group.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            b.set_share(processes);
        }
    }

    /// How many processes share the account's budget now, and this one's rate.
    pub fn budget_share(&self) -> (u32, u32) {
        (self.account.budget.share(), self.account.budget.rate())
    }

    /// A failed call, described: a role that could not be assumed is named with its
    /// environment first, since no other part of the message would say why nothing works.
    pub fn error(&self, action: &str, err: impl CallFailure) -> AwsError {
        let denied = self.account.role.as_ref().and_then(|role| {
            let (code, message) = err.credentials_failure()?;
            let env = self
                .env
                .as_deref()
                .map(|e| format!(" for environment {e}"))
                .unwrap_or_default();
            Some(AwsError {
                action: format!("assume role {} ({}){env}", role.name, role.settings.role_arn),
                code,
                message,
            })
        });
        denied.unwrap_or_else(|| err.describe(action))
    }
}

/// A failed call of either kind of client (the SDK's, or `ec2`'s), as [`Aws::error`] reads it.
pub trait CallFailure {
    /// AWS's code and message when the call failed for want of credentials (STS's answer,
    /// for a role).
    fn credentials_failure(&self) -> Option<(Option<String>, String)>;
    /// The failure described for a person.
    fn describe(self, action: &str) -> AwsError;
}

impl<E> CallFailure for aws_sdk_cloudformation::error::SdkError<E>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn credentials_failure(&self) -> Option<(Option<String>, String)> {
        credentials_failure(self)
    }

    fn describe(self, action: &str) -> AwsError {
        AwsError::from_sdk(action, self)
    }
}

impl CallFailure for ec2::Failure {
    fn credentials_failure(&self) -> Option<(Option<String>, String)> {
        match self {
            ec2::Failure::Credentials(chain) => {
                Some(split_code(chain.last().map(String::as_str).unwrap_or("no credentials")))
            }
            _ => None,
        }
    }

    fn describe(self, action: &str) -> AwsError {
        ec2::Failure::describe(self, action)
    }
}

/// The account's clients for calls that do not draw from its request budget: SQS, whose
/// limits are its own and far higher than CloudFormation's (the budget is there so that
/// watchers do not trip CloudFormation's throttling). Its `budget` waits for nothing.
#[derive(Clone)]
pub struct OutsideBudget(Aws);

impl OutsideBudget {
    pub async fn budget(&self) {}

    pub async fn sqs(&self) -> &aws_sdk_sqs::Client {
        self.0.sqs().await
    }

    pub fn error(&self, action: &str, err: impl CallFailure) -> AwsError {
        self.0.error(action, err)
    }
}

impl Aws {
    /// These clients outside the account's request budget (for SQS).
    pub fn outside_budget(&self) -> OutsideBudget {
        OutsideBudget(self.clone())
    }
}

/// When a call failed before it was sent because its credentials could not be loaded: the
/// code and message of the deepest error (STS's answer, for a role).
fn credentials_failure<E>(err: &aws_sdk_cloudformation::error::SdkError<E>) -> Option<(Option<String>, String)>
where
    E: std::error::Error + 'static,
{
    use aws_sdk_cloudformation::error::SdkError;
    if !matches!(err, SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)) {
        return None;
    }
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        chain.push(e.to_string());
        cur = e.source();
    }
    if !chain.iter().any(|m| m.contains("credentials")) {
        return None;
    }
    Some(split_code(chain.last().map(String::as_str).unwrap_or("no credentials")))
}

/// STS's error, as the SDK shows it (`Error { code: "AccessDenied", message: "..." }` or
/// `unhandled error (AccessDenied)`), split into code and message.
fn split_code(text: &str) -> (Option<String>, String) {
    let field = |name: &str| {
        let start = text.find(&format!("{name}: \""))? + name.len() + 3;
        let len = text[start..].find('"')?;
        Some(text[start..start + len].to_string())
    };
    match (field("code"), field("message")) {
        (code, Some(message)) => (code, message),
        // Only a request id: STS's answer was not one the SDK could read.
        (code, None) if text.starts_with("Error {") => (code, "STS refused the role; its answer gave no reason".into()),
        (code, None) => (code, text.to_string()),
    }
}

impl Clients {
    async fn build(account: &Account, session: &str) -> Clients {
        let base = account.base().await;
        let mut cfn = aws_sdk_cloudformation::config::Builder::from(base);
        let mut autoscaling = aws_sdk_autoscaling::config::Builder::from(base);
        let mut sqs = aws_sdk_sqs::config::Builder::from(base);
        // One cached provider for every client of a role session: the SDK's clients each keep
        // an identity cache of their own and the EC2 client is not the SDK's, so without one
        // cache they share, each would assume the role (one AssumeRole per session and renewal).
        // The EC2 client keeps the account's own credentials in a cache too (the SDK's clients
        // have theirs).
        let cached = |p| credentials::CachedCredentials::new(p).shared();
        let role = account.credentials(session).await.map(cached);
        if let Some(provider) = &role {
            cfn.set_credentials_provider(Some(provider.clone()));
            autoscaling.set_credentials_provider(Some(provider.clone()));
            sqs.set_credentials_provider(Some(provider.clone()));
        }
        if account
            .settings
            .endpoint_url
            .as_deref()
            .is_some_and(crate::config::is_loopback_url)
        {
            cfn = cfn.interceptor(account::PlusForSpace);
            autoscaling = autoscaling.interceptor(account::PlusForSpace);
        }
        Clients {
            cfn: aws_sdk_cloudformation::Client::from_conf(cfn.build()),
            ec2: ec2::Client::new(
                base,
                role.or_else(|| base.credentials_provider().map(cached)),
                &account.settings,
            ),
            autoscaling: aws_sdk_autoscaling::Client::from_conf(autoscaling.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
        }
    }
}

/// Calls an SDK operation inside the request budget and maps its error.
///
/// The SDK's request future is on the heap: it is several kilobytes, and inline it made every
/// operation's future that large at each await, so a debug build overflowed a 2 MiB test
/// thread's stack polling a commission (bake, stack watch, deploy) directly.
#[macro_export]
macro_rules! aws_call {
    ($aws:expr, $action:literal, $send:expr) => {{
        $aws.budget().await;
        let result = Box::pin($send).await.map_err(|e| $aws.error($action, e));
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
