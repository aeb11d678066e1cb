//! Which credentials an [`Aws`] calls with: the default chain, a named profile, or a role in
//! another account assumed through STS (with the config's external id and a session name
//! that names who and which job), and the SDK config they share. One [`Account`] per distinct
//! choice in the config; every environment and job on it shares its request budget.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudformation::config::{Credentials, SharedCredentialsProvider};

use super::Aws;
use crate::budget::SharedBudget;
use crate::config::{AwsSettings, Config, EnvAwsSettings, RoleSettings};

/// The account an environment names in the config.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The top-level `aws` settings (their profile, or the default chain).
    Default,
    Profile(String),
    /// The name of an entry of `aws.roles`.
    Role(String),
}

impl Source {
    pub fn of(env: &EnvAwsSettings) -> Source {
        match (&env.role, &env.profile) {
            (Some(role), _) => Source::Role(role.clone()),
            (None, Some(profile)) => Source::Profile(profile.clone()),
            (None, None) => Source::Default,
        }
    }
}

/// A role to assume, resolved from the config.
pub(crate) struct Role {
    pub name: String,
    pub settings: RoleSettings,
    /// Read once from the config or its variable; never logged or shown.
    pub external_id: Option<String>,
}

/// One account: its settings, the SDK config loaded at the first call, and its budget.
pub(crate) struct Account {
    pub settings: AwsSettings,
    pub region: String,
    pub profile: Option<String>,
    pub role: Option<Role>,
    /// Credentials to call with instead of the default chain (embedding, and the tests' IAM
    /// users); not used where the config names a profile.
    pub fixed: Option<Credentials>,
    base: tokio::sync::OnceCell<SdkConfig>,
    pub budget: Arc<SharedBudget>,
    /// Every budget of the engine, so that one process count divides them all.
    pub group: Arc<Mutex<Vec<Arc<SharedBudget>>>>,
}

impl Account {
    pub fn new(
        settings: &AwsSettings,
        region: &str,
        source: &Source,
        fixed: Option<Credentials>,
        group: Arc<Mutex<Vec<Arc<SharedBudget>>>>,
    ) -> Account {
        let budget = Arc::new(SharedBudget::new(settings.requests_per_second, settings.burst));
        {
            let mut all = group.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(first) = all.first() {
                budget.set_share(first.share() as usize);
            }
            all.push(budget.clone());
        }
        let (profile, role) = match source {
            Source::Default => (settings.profile.clone(), None),
            Source::Profile(p) => (Some(p.clone()), None),
            Source::Role(name) => {
                let role = settings.roles.get(name).cloned().map(|r| Role {
                    name: name.clone(),
                    external_id: r.external_id(),
                    settings: r,
                });
                (settings.profile.clone(), role)
            }
        };
        Account {
            settings: settings.clone(),
            region: region.to_string(),
            profile,
            role,
            fixed,
            base: tokio::sync::OnceCell::new(),
            budget,
            group,
        }
    }

    /// The SDK config of the account's own (source) credentials, loaded once.
    pub async fn base(&self) -> &SdkConfig {
        self.base.get_or_init(|| self.load()).await
    }

    async fn load(&self) -> SdkConfig {
        let settings = &self.settings;
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
            .region(Region::new(self.region.clone()))
            .http_client(http)
            .retry_config(retry);
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        // Fixed credentials replace the default chain; a profile the config names still wins.
        if let (Some(fixed), None) = (&self.fixed, &self.profile) {
            loader = loader.credentials_provider(fixed.clone());
        } else if settings.local_credentials && self.profile.is_none() {
            loader = loader.credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "argos-local-stand-in",
            ));
        }
        loader.load().await
    }

    /// The credentials a session's clients call with: the account's own, or the role's,
    /// assumed with the account's own credentials (renewed before they expire).
    pub async fn credentials(&self, session: &str) -> Option<SharedCredentialsProvider> {
        let role = self.role.as_ref()?;
        let mut builder = aws_config::sts::AssumeRoleProvider::builder(&role.settings.role_arn)
            .configure(self.base().await)
            .session_name(session)
            .session_length(Duration::from_secs(role.settings.session_secs));
        if let Some(id) = &role.external_id {
            builder = builder.external_id(id);
        }
        Some(SharedCredentialsProvider::new(builder.build().await))
    }

    pub fn cloudformation_role(&self) -> Option<&str> {
        match &self.role {
            Some(r) => r.settings.cloudformation_role_arn.as_deref(),
            None => self.settings.cloudformation_role_arn.as_deref(),
        }
    }
}

/// For a local stand-in only: form bodies spell a space `+` rather than `%20` (both are
/// form encoding, and AWS takes either). moto checks a signature against the form re-encoded
/// by Python, which writes `+`; with `%20` every request whose values hold a space (a template
/// body) would fail its signature check once IAM enforcement is on.
#[derive(Debug)]
pub(crate) struct PlusForSpace;

impl aws_sdk_cloudformation::config::Intercept for PlusForSpace {
    fn name(&self) -> &'static str {
        "PlusForSpace"
    }

    fn modify_before_signing(
        &self,
        context: &mut aws_sdk_cloudformation::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _components: &aws_sdk_cloudformation::config::RuntimeComponents,
        _cfg: &mut aws_sdk_cloudformation::config::ConfigBag,
    ) -> Result<(), aws_sdk_cloudformation::error::BoxError> {
        let request = context.request_mut();
        let form = request
            .headers()
            .get("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        let Some(body) = request.body().bytes().filter(|_| form) else {
            return Ok(());
        };
        let Ok(text) = std::str::from_utf8(body) else {
            return Ok(());
        };
        if text.contains("%20") {
            let text = text.replace("%20", "+");
            request.headers_mut().insert("content-length", text.len().to_string());
            *request.body_mut() = text.into();
        }
        Ok(())
    }
}

/// A role session's name: `argos-<user>-job<id>`, in STS's alphabet (`[\w+=,.@-]`) and at
/// most 64 characters, the job's part kept whole.
pub fn session_name(user: &str, job: Option<u64>) -> String {
    let suffix = job.map(|j| format!("-job{j}")).unwrap_or_default();
    let clean: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_matches('-');
    let clean = if clean.is_empty() { "user" } else { clean };
    let room = 64 - "argos-".len() - suffix.len();
    let user: String = clean.chars().take(room).collect();
    format!("argos-{user}{suffix}")
}

/// The user a session is named after when no job names one: the process's OS user.
pub fn process_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "argos".into())
}

/// The engine's accounts: one [`Aws`] per distinct account in the config, labelled per
/// environment. Built when the engine starts; no call is made until an operation needs one.
#[derive(Clone)]
pub struct Accounts {
    default: Aws,
    by_env: Arc<BTreeMap<String, Aws>>,
}

impl Accounts {
    pub fn new(config: &Config, fixed: Option<Credentials>) -> Accounts {
        let settings = &config.settings.aws;
        let region = config.region();
        let group = Arc::new(Mutex::new(Vec::new()));
        let user = process_user();
        let mut by_source: BTreeMap<Source, Aws> = BTreeMap::new();
        let mut account = |source: Source| {
            by_source
                .entry(source.clone())
                .or_insert_with(|| {
                    let a = Account::new(settings, region, &source, fixed.clone(), group.clone());
                    Aws::for_account(Arc::new(a), &session_name(&user, None))
                })
                .clone()
        };
        let default = account(Source::Default);
        let mut by_env = BTreeMap::new();
        for name in config.settings.environments.keys() {
            let Ok((_, env)) = config.environment(name) else {
                continue;
            };
            by_env.insert(name.clone(), account(Source::of(&env.aws)).in_env(name));
        }
        Accounts {
            default,
            by_env: Arc::new(by_env),
        }
    }

    /// The default account's clients.
    pub fn default_account(&self) -> &Aws {
        &self.default
    }

    /// The clients of an environment's account (the default for one the config lacks).
    pub fn for_env(&self, env: &str) -> &Aws {
        self.by_env.get(env).unwrap_or(&self.default)
    }

    /// Every distinct account, each with the environments that live in it.
    pub fn distinct(&self) -> Vec<(Aws, Vec<String>)> {
        let mut out: Vec<(Aws, Vec<String>)> = Vec::new();
        for (env, aws) in self.by_env.iter() {
            match out.iter_mut().find(|(a, _)| a.same_account(aws)) {
                Some((_, envs)) => envs.push(env.clone()),
                None => out.push((aws.clone(), vec![env.clone()])),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_keep_to_the_sts_alphabet_and_length() {
        assert_eq!(session_name("alice", Some(42)), "argos-alice-job42");
        assert_eq!(session_name("Ann Lee (ops)", Some(7)), "argos-Ann-Lee--ops-job7");
        assert_eq!(session_name("Zoë", None), "argos-Zo");
        assert_eq!(session_name("ü", None), "argos-user");
        let long = session_name(&"x".repeat(200), Some(123_456_789));
        assert_eq!(long.len(), 64);
        assert!(long.ends_with("-job123456789"));
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
        assert!(session_name("a/b\\c:d;e\"f", Some(1)).chars().all(allowed));
    }
}
