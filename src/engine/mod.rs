//! The engine: the operations behind every command, written as idempotent steps. It reports
//! through typed [`Progress`](crate::progress::Progress) events and returns a [`Summary`] or an
//! [`Error`](crate::error::Error) whose message leads with the root cause. It never prints and
//! knows nothing of chat.

mod bake;
mod clean;
mod commission;
mod decommission;
mod deploy;
mod drift;
mod health_check;
mod params;
mod preflight;
mod revert_drift;
mod settle;
mod status;
mod update;
pub mod versions;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use bake::{get_or_bake_image, image_inputs_hash};
pub use clean::clean;
pub use commission::commission;
pub use decommission::decommission;
pub use deploy::{check_roles, deploy};
pub use drift::{drift, drift_and_record, DriftReport, DriftedResource, PropertyDrift};
pub use params::choices as environment_choices;
pub use revert_drift::{check_revertable, revert_drift, revert_drift_plan};
pub use settle::wait_until_settled;
pub use status::{status, StatusReport};
pub use update::{plan, update};

use crate::cloud::watcher::Pace;
use crate::cloud::{Accounts, Aws};
use crate::command::Action;
use crate::config::{Config, Connection, EnvSettings};
use crate::error::{Error, Result};
use crate::git::AppRepo;
use crate::names::{EnvName, Names};
use crate::progress::ProgressTx;
use crate::redact::Redactor;
use crate::store::Store;
use crate::template::{load_formations, Template};

/// What the engine needs for every operation: the config, the AWS clients, the redactor.
#[derive(Clone)]
pub struct Engine {
    pub config: Arc<Config>,
    /// The default account's clients (the one environments use unless they name another).
    pub aws: Aws,
    /// Every account of the config, by environment.
    pub accounts: Accounts,
    pub redactor: Redactor,
    /// Where jobs are recorded: what `history` and rollbacks read (none in a bare engine).
    pub store: Option<Store>,
    /// The app's repository, opened on first use (`repository.url`).
    repo: Arc<OnceLock<Result<AppRepo, String>>>,
}

impl Engine {
    pub async fn new(config: Config) -> Engine {
        Self::build(config, None)
    }

    /// An engine whose accounts call with these credentials instead of the default chain (a
    /// role's AssumeRole included): for embedding, and the tests' IAM users on moto.
    pub async fn with_credentials(config: Config, access_key_id: &str, secret_access_key: &str) -> Engine {
        let fixed = aws_sdk_cloudformation::config::Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "argos-fixed",
        );
        Self::build(config, Some(fixed))
    }

    fn build(config: Config, fixed: Option<aws_sdk_cloudformation::config::Credentials>) -> Engine {
        let accounts = Accounts::new(&config, fixed);
        let redactor = config.redactor();
        Engine {
            config: Arc::new(config),
            aws: accounts.default_account().clone(),
            accounts,
            redactor,
            store: None,
            repo: Arc::new(OnceLock::new()),
        }
    }

    /// The engine with the store its jobs are recorded in.
    pub fn with_store(mut self, store: Store) -> Engine {
        self.store = Some(store);
        self
    }

    /// The app's repository, if `repository.url` is configured: versions are on.
    pub fn repo(&self) -> Option<Result<AppRepo>> {
        self.config.settings.repository.url.as_ref()?;
        let opened = self.repo.get_or_init(|| versions::open_repo(&self.config));
        Some(opened.clone().map_err(Error::Invalid))
    }

    /// The clients of an environment's account (its profile or role, else the default).
    pub fn aws_for(&self, env: &str) -> &Aws {
        self.accounts.for_env(env)
    }

    /// Resolves an environment name: valid, and configured.
    pub fn target(&self, env: &str) -> Result<Target> {
        let (env, settings) = self.config.environment(env).map_err(Error::Invalid)?;
        Ok(Target {
            names: Names::new(&self.config.vars.app_name, &env),
            aws: self.aws_for(env.as_str()).clone(),
            env,
            settings,
        })
    }

    /// The templates, merged and checked; nothing is sent to AWS if they are broken.
    pub fn templates(&self) -> Result<(Template, Template)> {
        Ok(load_formations(&self.config.formations_dir())?)
    }

    pub(crate) fn pace(&self, timeout_secs: u64) -> Pace {
        let w = &self.config.settings.watch;
        Pace {
            poll: Duration::from_millis(w.poll_interval_ms),
            max_poll: Duration::from_millis(w.max_poll_interval_ms),
            timeout: Duration::from_secs(timeout_secs),
        }
    }

    /// The SSH key is needed only when hosts are reached over SSH; check it before any work.
    pub fn private_key(&self) -> Result<Option<std::path::PathBuf>> {
        if self.config.settings.ansible.connection == Connection::Local {
            return Ok(None);
        }
        let key = self.config.key_file();
        crate::check::key_file(&key).map_err(Error::Invalid)?;
        Ok(Some(key))
    }
}

/// One environment, validated.
#[derive(Debug, Clone)]
pub struct Target {
    pub env: EnvName,
    pub names: Names,
    pub settings: EnvSettings,
    /// The clients of the environment's account, never chosen from chat: the config names
    /// the profile or role (`environments.NAME.aws`).
    pub aws: Aws,
}

impl Target {
    /// The same environment, worked on for `user`'s job: on a role's account the STS
    /// session is named `argos-<user>-job<id>`, so the account's CloudTrail says who and which.
    pub fn for_job(mut self, user: &str, job: Option<u64>) -> Target {
        self.aws = self.aws.for_session(user, job);
        self
    }
}

/// What an operation needs besides the engine: where it reports, and how it is stopped.
#[derive(Clone)]
pub struct Ctx {
    pub engine: Engine,
    pub target: Target,
    pub progress: ProgressTx,
    pub cancel: CancellationToken,
    /// Where the full, redacted playbook output is appended.
    pub log: Option<std::path::PathBuf>,
}

impl Ctx {
    /// The clients of the target environment's account.
    pub fn aws(&self) -> &Aws {
        &self.target.aws
    }
    pub fn config(&self) -> &Config {
        &self.engine.config
    }
}

/// What an action produced: a job's summary, or a report to show (`status`, `events`).
#[derive(Debug)]
pub enum Outcome {
    Done(Summary),
    Report(Box<StatusReport>),
    History(versions::History),
    /// What a drift detection found (`drift`).
    Drift(Box<DriftReport>),
}

/// Runs one action: the one entry point the bot's jobs and the CLI both call. Each verb is
/// named here, so a new one does not compile until it has an operation. Each operation's
/// future is boxed: inline, this one future would be as large as the largest of them all
/// (commission holds bake, stack watch and deploy), and a debug build's worker thread
/// overflowed its stack polling it.
pub async fn run(ctx: &Ctx, action: &Action) -> Result<Outcome> {
    Ok(match action {
        Action::Commission { version } => Outcome::Done(Box::pin(commission(ctx, version)).await?),
        Action::Deploy { roles, version } => Outcome::Done(Box::pin(deploy(ctx, roles, version)).await?),
        Action::Update { revert_drift: true, .. } => Outcome::Done(Box::pin(revert_drift(ctx)).await?),
        Action::Update {
            parameters, version, ..
        } => Outcome::Done(Box::pin(update(ctx, parameters, version)).await?),
        Action::Rollback { version, .. } => Outcome::Done(Box::pin(versions::rollback(ctx, version)).await?),
        Action::History { count } => Outcome::History(versions::history(ctx, *count)?),
        Action::Plan { parameters } => Outcome::Done(Box::pin(plan(ctx, parameters)).await?),
        Action::Drift => Outcome::Drift(Box::new(Box::pin(drift_and_record(ctx)).await?)),
        Action::Decommission => Outcome::Done(Box::pin(decommission(ctx)).await?),
        Action::Clean => Outcome::Done(Box::pin(clean(ctx)).await?),
        Action::Status | Action::Events => Outcome::Report(Box::new(Box::pin(status(ctx)).await?)),
    })
}

/// How an operation ended well.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub headline: String,
    pub details: Vec<String>,
    pub outputs: BTreeMap<String, String>,
    pub hosts: Vec<String>,
}

impl Summary {
    pub fn new(headline: impl Into<String>) -> Summary {
        Summary {
            headline: headline.into(),
            ..Summary::default()
        }
    }
}
