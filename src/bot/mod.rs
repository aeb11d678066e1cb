//! The chat bot: the dispatcher, jobs, permissions in action, and live status messages. It
//! drives the same engine as the CLI and talks to platforms only through [`port::ChatPort`].

mod approval_flow;
mod dispatch;
pub mod jobs;
pub mod messages;
pub mod port;
pub mod reporter;
pub mod status;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::engine::Engine;
use crate::permissions::Permissions;
use crate::store::{JobState, Store};
use jobs::JobTable;
use port::{ChatEvent, ChatPort, CommandHandler};

/// What every handler and job shares.
pub(crate) struct Inner {
    pub engine: Engine,
    pub store: Store,
    pub perms: Permissions,
    pub limiter: DefaultKeyedRateLimiter<String>,
    pub ports: RwLock<HashMap<String, Arc<dyn ChatPort>>>,
    pub jobs: JobTable,
    pub global_edits: Arc<DefaultDirectRateLimiter>,
    pub tasks: TaskTracker,
    /// The expiry timer of each pending approval (by job id), cancelled when it is decided.
    pub approval_timers: std::sync::Mutex<HashMap<u64, tokio_util::sync::CancellationToken>>,
}

impl Inner {
    pub fn port(&self, platform: &str) -> Option<Arc<dyn ChatPort>> {
        self.ports
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(platform)
            .cloned()
    }
}

/// The bot. Cheap to clone; adapters hold one and call [`Bot::handle`].
#[derive(Clone)]
pub struct Bot {
    inner: Arc<Inner>,
}

impl Bot {
    /// Opens the database named in the config and connects the engine.
    pub async fn start(config: Config) -> Result<Bot, String> {
        let store = Store::open(&config.database_path()).map_err(|e| e.to_string())?;
        Ok(Bot::new(Engine::new(config).await, store))
    }

    pub fn new(engine: Engine, store: Store) -> Bot {
        let chat = &engine.config.settings.chat;
        let quota = Quota::per_minute(NonZeroU32::new(chat.commands_per_minute).expect("validated"))
            .allow_burst(NonZeroU32::new(chat.command_burst).expect("validated"));
        let inner = Inner {
            perms: Permissions::new(engine.config.settings.permissions.clone()),
            limiter: RateLimiter::keyed(quota),
            global_edits: reporter::global_budget(chat),
            ports: RwLock::new(HashMap::new()),
            jobs: JobTable::default(),
            tasks: TaskTracker::new(),
            approval_timers: Default::default(),
            store,
            engine,
        };
        Bot { inner: Arc::new(inner) }
    }

    /// Connects a platform: jobs started there post their status messages through it.
    pub fn add_port(&self, port: Arc<dyn ChatPort>) {
        self.inner
            .ports
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(port.platform().to_string(), port);
    }

    /// The adapter of a platform, if connected.
    pub fn port(&self, platform: &str) -> Option<Arc<dyn ChatPort>> {
        self.inner.port(platform)
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The handler adapters call for each command addressed to the bot.
    pub fn handler(&self) -> CommandHandler {
        let bot = self.clone();
        Arc::new(move |ev: ChatEvent| {
            let bot = bot.clone();
            Box::pin(async move { bot.handle(ev).await })
        })
    }

    /// Handles one command: rate limit, parse, permission, then the command's handler.
    pub async fn handle(&self, ev: ChatEvent) -> Option<String> {
        dispatch::handle(&self.inner, ev).await
    }

    /// Picks up the jobs that were running when the bot last stopped: each re-attaches to its
    /// stack operation and keeps editing its status message. Call after the ports are added.
    pub async fn resume_unfinished(&self) -> Vec<u64> {
        let jobs = match self.inner.store.unfinished_jobs() {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "cannot read unfinished jobs");
                return vec![];
            }
        };
        let mut resumed = Vec::new();
        let pending = self.inner.store.pending_approvals().unwrap_or_default();
        for id in &pending {
            // Expiry runs on from the recorded time: a request that expired while the bot was
            // down expires at once.
            approval_flow::arm_expiry(self.inner.clone(), *id);
        }
        for job in jobs {
            if pending.contains(&job.id) {
                continue;
            }
            let Some(action) = jobs::action_from(&job.action, &job.args) else {
                let _ = self.inner.store.finish_job(
                    job.id,
                    JobState::Interrupted,
                    &messages::interrupted("unknown action"),
                );
                continue;
            };
            let lock = if action.mutates() {
                self.inner.jobs.try_lock(&job.env)
            } else {
                None
            };
            if action.mutates() && lock.is_none() {
                let _ = self.inner.store.finish_job(
                    job.id,
                    JobState::Interrupted,
                    &messages::interrupted("another job holds the environment"),
                );
                continue;
            }
            resumed.push(job.id);
            let inner = self.inner.clone();
            self.inner.tasks.spawn(jobs::execute(inner, job, action, lock, true));
        }
        resumed
    }

    /// Stops: waits up to `grace` for running jobs, then leaves the rest recorded as running
    /// (they are resumed at the next start) and writes that to the audit log. Returns their ids.
    pub async fn shutdown(&self, grace: Duration) -> Vec<u64> {
        self.inner.tasks.close();
        let _ = tokio::time::timeout(grace, self.inner.tasks.wait()).await;
        let left = self.inner.jobs.running_ids();
        for id in &left {
            let _ = self.inner.store.audit(
                "bot",
                "bot",
                "argos",
                "-",
                &format!("shutdown with job #{id} running"),
                "left running; resumes at next start",
                Some(*id),
            );
        }
        left
    }

    /// Waits until every job started so far has finished (tests and the console's end).
    pub async fn idle(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.tasks.reopen();
    }
}
