//! Jobs: one operation per environment at a time (the lock is a proof token that the running
//! job holds), persisted from acceptance to result, cancellable, and resumed after a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;

use crate::bot::port::{Attachment, OutgoingMessage};
use crate::bot::reporter::{Pacing, Reporter};
use crate::bot::status::{Ending, StatusModel};
use crate::bot::Inner;
use crate::command::Action;
use crate::engine::{self, Ctx, Summary};
use crate::error::Error;
use crate::progress::ProgressTx;
use crate::store::{JobRecord, JobState};

/// Proof that the holder is the one job working on an environment. Only [`JobTable`] makes
/// them; engine work that mutates an environment takes one.
pub struct EnvLock {
    pub env: String,
    _guard: OwnedMutexGuard<()>,
}

/// Which jobs run now, and the per-environment locks.
#[derive(Default)]
pub struct JobTable {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    running: Mutex<HashMap<u64, (String, CancellationToken)>>,
}

impl JobTable {
    fn env_mutex(&self, env: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(env.to_string()).or_default().clone()
    }

    /// The lock if the environment is free now.
    pub fn try_lock(&self, env: &str) -> Option<EnvLock> {
        self.env_mutex(env).try_lock_owned().ok().map(|g| EnvLock {
            env: env.to_string(),
            _guard: g,
        })
    }

    /// Waits for the environment (queue mode).
    pub async fn lock(&self, env: &str) -> EnvLock {
        let g = self.env_mutex(env).lock_owned().await;
        EnvLock {
            env: env.to_string(),
            _guard: g,
        }
    }

    /// Records the job as the one running on `env`, as soon as it holds the lock, so a
    /// competitor is always told which job is in the way. Returns its cancel token.
    pub(crate) fn register(&self, id: u64, env: &str) -> CancellationToken {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .entry(id)
            .or_insert_with(|| (env.to_string(), CancellationToken::new()))
            .1
            .clone()
    }

    fn unregister(&self, id: u64) {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Cancels a running job; false if it is not running here.
    pub fn cancel(&self, id: u64) -> bool {
        match self.running.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// The running job on an environment, if any.
    pub fn running_on(&self, env: &str) -> Option<u64> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(_, (e, _))| e == env)
            .map(|(id, _)| *id)
    }

    pub fn running_ids(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        v.sort();
        v
    }
}

/// The arguments of an action, as stored with the job (so it can be re-run after a restart).
pub fn action_args(action: &Action) -> String {
    let v = match action {
        Action::Deploy { roles } => serde_json::json!({ "roles": roles }),
        Action::Update { parameters } | Action::Plan { parameters } => serde_json::json!({ "parameters": parameters }),
        _ => serde_json::json!({}),
    };
    v.to_string()
}

/// Rebuilds an action from a stored job.
pub fn action_from(verb: &str, args: &str) -> Option<Action> {
    let v: serde_json::Value = serde_json::from_str(args).unwrap_or_default();
    let params = || -> BTreeMap<String, String> { serde_json::from_value(v["parameters"].clone()).unwrap_or_default() };
    Some(match verb {
        "commission" => Action::Commission,
        "deploy" => Action::Deploy {
            roles: serde_json::from_value(v["roles"].clone()).unwrap_or_default(),
        },
        "update" => Action::Update { parameters: params() },
        "plan" => Action::Plan { parameters: params() },
        "decommission" => Action::Decommission,
        "clean" => Action::Clean,
        _ => return None,
    })
}

async fn run_action(ctx: &Ctx, action: &Action) -> Result<Summary, Error> {
    match action {
        Action::Commission => engine::commission(ctx).await,
        Action::Deploy { roles } => engine::deploy(ctx, roles).await,
        Action::Update { parameters } => engine::update(ctx, parameters).await,
        Action::Plan { parameters } => engine::plan(ctx, parameters).await,
        Action::Decommission => engine::decommission(ctx).await,
        Action::Clean => engine::clean(ctx).await,
        Action::Status | Action::Events => Err(Error::Invalid("status and events are not jobs".into())),
    }
}

/// Runs one job to its end: status message, engine operation, reporter, result. `lock` is
/// held until the job is recorded as finished. `resumed` jobs first follow any stack operation
/// still in flight, then re-run their (idempotent) operation.
pub(crate) async fn execute(inner: Arc<Inner>, job: JobRecord, action: Action, lock: Option<EnvLock>, resumed: bool) {
    let id = job.id;
    let Some(port) = inner.port(&job.platform) else {
        let why = format!("the {} adapter is not running", job.platform);
        let _ = inner
            .store
            .finish_job(id, JobState::Interrupted, &crate::bot::messages::interrupted(&why));
        return;
    };
    let started = job.started_at.unwrap_or_else(chrono::Utc::now);
    let mut model = StatusModel::new(id, &job.env, &job.action, &job.requester_name, started);
    if resumed {
        model.note(crate::bot::messages::resumed(id));
    }
    let first = OutgoingMessage::text(model.render(chrono::Utc::now()));
    let message_id = match &job.status_message_id {
        Some(m) => {
            let _ = port.edit(&job.channel, m, first).await;
            m.clone()
        }
        None => match port.send(&job.channel, first).await {
            Ok(m) => {
                let _ = inner.store.set_status_message(id, &m);
                m
            }
            Err(e) => {
                tracing::warn!(job = id, error = %inner.engine.redactor.redact(&e.0), "cannot post the status message");
                String::new()
            }
        },
    };
    let cancel = inner.jobs.register(id, &job.env);
    let logs = inner.engine.config.state_dir().join("logs");
    let _ = std::fs::create_dir_all(&logs);
    let log = logs.join(format!("job-{id}.log"));
    let _ = inner.store.mark_running(id, &log.to_string_lossy());

    let (progress, rx) = ProgressTx::channel();
    let mut reporter = Reporter {
        port: port.clone(),
        channel: job.channel.clone(),
        message_id,
        pacing: Pacing::from_settings(&inner.engine.config.settings.chat),
        global: inner.global_edits.clone(),
        redactor: inner.engine.redactor.clone(),
        edits: 0,
    };
    let result = match inner.engine.target(&job.env) {
        Err(e) => {
            drop(progress);
            Err(e)
        }
        Ok(target) => {
            let ctx = Ctx {
                engine: inner.engine.clone(),
                target,
                progress,
                cancel: cancel.clone(),
                log: Some(log.clone()),
            };
            let follow = reporter.follow(model, rx);
            let work = async {
                let r = async {
                    if resumed {
                        engine::wait_until_settled(&ctx).await?;
                    }
                    run_action(&ctx, &action).await
                }
                .await;
                drop(ctx);
                r
            };
            let (m, r) = tokio::join!(follow, work);
            model = m;
            r
        }
    };
    let redactor = &inner.engine.redactor;
    let (state, ending, text) = match result {
        Ok(summary) => {
            let text = summary.headline.clone();
            (JobState::Succeeded, Ending::Succeeded(summary), text)
        }
        Err(Error::Cancelled) => (JobState::Cancelled, Ending::Cancelled, "cancelled".to_string()),
        Err(e) => {
            let text = redactor.redact(&e.to_string());
            (JobState::Failed, Ending::Failed(text.clone()), text)
        }
    };
    let attachment = log.exists().then(|| Attachment {
        filename: format!("argos-job-{id}.log"),
        path: log.clone(),
    });
    reporter.finish(&mut model, ending, attachment).await;
    if let Err(e) = inner.store.finish_job(id, state, &text) {
        tracing::error!(job = id, error = %e, "cannot record the job's end");
    }
    inner.jobs.unregister(id);
    drop(lock);
}
