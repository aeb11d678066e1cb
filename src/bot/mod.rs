//! The chat bot: the dispatcher, jobs, permissions in action, and live status messages. It
//! drives the same engine as the CLI and talks to platforms only through [`port::ChatPort`].

pub mod announce;
pub mod announcements;
mod approval_flow;
mod audit_batch;
mod dispatch;
mod handlers;
pub mod housekeeping;
pub mod jobs;
mod log_copy;
pub mod messages;
pub(crate) mod notices;
pub mod pace;
pub mod port;
pub mod replica;
pub mod reporter;
pub mod status;
mod takeover;
pub(crate) mod workers;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::task::TaskTracker;

use crate::address::{ChatPlatform, Surface};
use crate::config::Config;
use crate::engine::Engine;
use crate::permissions::Permissions;
use crate::store::{AuditEntry, Store};
use jobs::JobTable;
use port::{ChatEvent, ChatPort, CommandHandler, EventClaim, Reply};
use replica::Replica;

/// What every handler and job shares.
pub(crate) struct Inner {
    pub engine: Engine,
    pub store: Store,
    /// This process among the replicas: its id, heartbeat and the leases of its jobs.
    pub replica: Arc<Replica>,
    pub perms: Permissions,
    pub limiter: DefaultKeyedRateLimiter<String>,
    pub ports: RwLock<HashMap<ChatPlatform, Arc<dyn ChatPort>>>,
    /// Platforms being connected, whose adapter is not added yet (readiness: `connecting`).
    pub connecting: RwLock<std::collections::BTreeSet<ChatPlatform>>,
    pub jobs: JobTable,
    pub global_edits: Arc<DefaultDirectRateLimiter>,
    pub tasks: TaskTracker,
    /// The expiry timer of each pending approval (by job id), cancelled when it is decided.
    pub approval_timers: std::sync::Mutex<HashMap<u64, tokio_util::sync::CancellationToken>>,
    /// Stops the pushed stack events' consumers (on shutdown, or when the bot is dropped).
    pub events_stop: tokio_util::sync::CancellationToken,
    _events_guard: tokio_util::sync::DropGuard,
    /// When this replica last forgot the store's old records ([`housekeeping`]).
    pub last_sweep: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Inner {
    /// The token that stops the events queue's consumers.
    pub fn events_stop_token(&self) -> tokio_util::sync::CancellationToken {
        self.events_stop.clone()
    }

    pub fn port(&self, platform: ChatPlatform) -> Option<Arc<dyn ChatPort>> {
        self.ports
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&platform)
            .cloned()
    }

    /// The adapter a job or a person's surface posts through (none for the CLI).
    pub fn port_of(&self, surface: Surface) -> Option<Arc<dyn ChatPort>> {
        surface.chat().and_then(|p| self.port(p))
    }
}

/// The bot. Cheap to clone; adapters hold one and call [`Bot::handle`].
#[derive(Clone)]
pub struct Bot {
    inner: Arc<Inner>,
}

impl Bot {
    /// Opens the store named in the config (SQLite, or PostgreSQL) and connects the engine.
    pub async fn start(config: Config, kind: &'static str) -> Result<Bot, String> {
        let url = config.database_url();
        let path = config.database_path();
        let store = tokio::task::spawn_blocking(move || Store::open_configured(url.as_deref(), &path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Bot::new_as(Engine::new(config).await, store, kind)
    }

    /// A bot replica on `store` (tests and benchmarks; panics if the store refuses it).
    pub fn new(engine: Engine, store: Store) -> Bot {
        Bot::new_as(engine, store, "bot").expect("register the replica")
    }

    /// A replica of `kind` (`bot`, `console`) on `store`.
    pub fn new_as(engine: Engine, store: Store, kind: &'static str) -> Result<Bot, String> {
        // The engine reads the bot's own store for `history` and rollbacks.
        let mut engine = engine.with_store(store.clone());
        if engine.config.settings.watch.events_queue.is_some() {
            // Watchers read the events the consumers (any replica's) store.
            let quiet = Duration::from_secs(engine.config.settings.watch.events_quiet_secs);
            engine = engine.with_pushed_events(crate::cloud::watcher::Pushed::new(store.clone(), quiet));
        }
        let replica = Replica::register(
            store.clone(),
            kind,
            &[],
            crate::store::LeaseSettings::from_config(&engine.config.settings.store),
        )?;
        let chat = &engine.config.settings.chat;
        let quota = Quota::per_minute(NonZeroU32::new(chat.commands_per_minute).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(chat.command_burst).unwrap_or(NonZeroU32::MIN));
        let events_stop = tokio_util::sync::CancellationToken::new();
        let inner = Inner {
            perms: Permissions::new(
                engine.config.settings.permissions.clone(),
                crate::people::People::new(&engine.config.settings.people),
            ),
            limiter: RateLimiter::keyed(quota),
            global_edits: pace::shared_edit_budget(chat),
            ports: RwLock::new(HashMap::new()),
            connecting: RwLock::new(Default::default()),
            jobs: JobTable::default(),
            tasks: TaskTracker::new(),
            approval_timers: Default::default(),
            last_sweep: Default::default(),
            _events_guard: events_stop.clone().drop_guard(),
            events_stop,
            replica: Arc::new(replica),
            store,
            engine,
        };
        // Leases are renewed from the start: a job may begin before the periodic work does.
        inner.replica.spawn_heartbeat();
        Ok(Bot { inner: Arc::new(inner) })
    }

    /// This replica's id in the store.
    pub fn replica_id(&self) -> &str {
        &self.inner.replica.id
    }

    /// Connects a platform: jobs started there post their status messages through it.
    pub fn add_port(&self, port: Arc<dyn ChatPort>) {
        self.inner
            .ports
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(port.platform(), port);
    }

    /// A platform is being connected: until its adapter is added ([`Bot::add_port`]), or
    /// [`Bot::gave_up`] on it, readiness names it as `connecting`.
    pub fn connecting(&self, platform: ChatPlatform) {
        self.inner
            .connecting
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(platform);
    }

    /// The platform could not be connected (the process is about to stop).
    pub fn gave_up(&self, platform: ChatPlatform) {
        self.inner
            .connecting
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&platform);
    }

    /// Platforms being connected whose adapter is not there yet, in name order.
    pub fn still_connecting(&self) -> Vec<&'static str> {
        let ports = self.inner.ports.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<&'static str> = self
            .inner
            .connecting
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|p| !ports.contains_key(*p))
            .map(|p| p.as_str())
            .collect();
        names.sort();
        names
    }

    /// Every connected adapter.
    pub fn ports(&self) -> Vec<Arc<dyn ChatPort>> {
        self.inner
            .ports
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Whether this replica's last heartbeat reached the store within its lease time.
    pub fn heartbeat_ok(&self) -> bool {
        self.inner.replica.heartbeat_ok()
    }

    /// The adapter of a platform, if connected.
    pub fn port(&self, platform: ChatPlatform) -> Option<Arc<dyn ChatPort>> {
        self.inner.port(platform)
    }

    /// The refs offered while someone types one (`ref` in the `/argos` slash command): the
    /// repository's branches and recent tags matching what was typed, those the environment
    /// accepts first. None when versions are off or the repository cannot be read.
    pub fn ref_suggester(&self) -> port::RefSuggester {
        let engine = self.inner.engine.clone();
        std::sync::Arc::new(move |env: String, typed: String| {
            let engine = engine.clone();
            Box::pin(async move {
                let Some(Ok(repo)) = engine.repo() else {
                    return Vec::new();
                };
                let names: Vec<String> = match repo.matching(typed.trim(), 100).await {
                    Ok(found) => found.into_iter().map(|r| r.name).collect(),
                    Err(_) => return Vec::new(),
                };
                let settings = engine.config.environment(&env).ok().map(|(_, s)| s);
                let accepts = |name: &str| match &settings {
                    Some(settings) => crate::engine::versions::check_ref(&env, settings, name)
                        .is_ok_and(|c| c == crate::engine::versions::RefCheck::Accepted),
                    None => true,
                };
                let (mut first, rest): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| accepts(n));
                first.extend(rest);
                first.truncate(25);
                first
            })
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Who may do what (the web page shows a person what they may `status`).
    pub fn permissions(&self) -> &Permissions {
        &self.inner.perms
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// What adapters call before answering a chat event that every replica may see (a
    /// Discord message or interaction): true for exactly one replica, which answers it.
    pub fn event_claim(&self) -> EventClaim {
        let bot = self.clone();
        Arc::new(move |platform: &'static str, event_id: String| {
            let bot = bot.clone();
            Box::pin(async move {
                let store = bot.inner.store.clone();
                let me = bot.inner.replica.id.clone();
                let claimed = tokio::task::spawn_blocking(move || store.claim_event(platform, &event_id, &me)).await;
                match claimed {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        // Unsure whether another replica has it: better one answer too many
                        // than a command nobody answers.
                        tracing::warn!(error = %e, "cannot claim a chat event; answering it");
                        true
                    }
                    Err(_) => false,
                }
            })
        })
    }

    /// The handler adapters call for each command addressed to the bot.
    pub fn handler(&self) -> CommandHandler {
        let bot = self.clone();
        Arc::new(move |ev: ChatEvent| {
            let bot = bot.clone();
            Box::pin(async move { bot.reply(ev).await })
        })
    }

    /// Handles one command: rate limit, parse, permission, then the command's handler. The
    /// answer as a private surface (a terminal) shows it: a private reply's text included.
    pub async fn handle(&self, ev: ChatEvent) -> Option<String> {
        self.reply(ev).await.map(Reply::into_text)
    }

    /// [`Bot::handle`], saying whether the answer is for the channel or for its asker only.
    pub async fn reply(&self, ev: ChatEvent) -> Option<Reply> {
        dispatch::handle(&self.inner, ev).await
    }

    /// Handles a burst of commands from one source in order (lines piped into the console),
    /// writing the audit records of the read-only ones in one transaction before returning
    /// the replies.
    pub async fn handle_burst(&self, events: Vec<ChatEvent>) -> Vec<Option<String>> {
        audit_batch::gathering(&self.inner.store, async {
            let mut replies = Vec::with_capacity(events.len());
            for ev in events {
                // The console's terminal is private: a private reply is printed like any other.
                replies.push(dispatch::handle(&self.inner, ev).await.map(Reply::into_text));
            }
            replies
        })
        .await
    }

    /// Starts this replica's heartbeat and periodic work, after the ports are added, and does
    /// the first round at once: jobs whose owner's lease ran out (a crash, or this process's
    /// own previous run) are taken over and resumed: each re-attaches to its stack operation
    /// and keeps editing its status message. A job whose owner is alive is left alone, however
    /// its row reads. Returns the ids of the jobs resumed in the first round.
    pub async fn resume_unfinished(&self) -> Vec<u64> {
        let pending = self.inner.store.pending_approvals().unwrap_or_default();
        for id in &pending {
            // Expiry runs on from the recorded time: a request that expired while the bot was
            // down expires at once. The decision is a compare-and-set, so replicas that all
            // arm it expire it once.
            approval_flow::arm_expiry(self.inner.clone(), *id);
        }
        takeover::sweep_children(&self.inner).await;
        self.start_event_consumers();
        let resumed = takeover::tick(&self.inner).await;
        workers::spawn_lookout(&self.inner);
        // Weak: a bot that is dropped (a test playing a crash) stops ticking.
        let weak = Arc::downgrade(&self.inner);
        let ticks = self.inner.replica.ticks.clone();
        tokio::spawn(async move {
            loop {
                ticks.notified().await;
                let Some(inner) = weak.upgrade() else { break };
                takeover::tick(&inner).await;
            }
        });
        resumed
    }

    /// With `watch.events_queue`: one consumer of the events queue per account, each polling
    /// only while this replica holds that account's poll lease.
    fn start_event_consumers(&self) {
        let Some(queue) = self.inner.engine.config.settings.watch.events_queue.clone() else {
            return;
        };
        let mut accounts = self.inner.engine.accounts.distinct();
        if accounts.is_empty() {
            accounts.push((self.inner.engine.aws.clone(), Vec::new()));
        }
        for (aws, _) in accounts {
            let consumer = crate::cloud::events::consumer::Consumer::new(
                aws,
                self.inner.store.clone(),
                &queue,
                &self.inner.replica.id,
            );
            tokio::spawn(consumer.run(self.inner.events_stop_token()));
        }
    }

    /// Stops: waits up to `grace` for running jobs, then leaves the rest recorded as running
    /// (they are resumed at the next start) and writes that to the audit log. Returns their ids.
    pub async fn shutdown(&self, grace: Duration) -> Vec<u64> {
        self.inner.tasks.close();
        let _ = tokio::time::timeout(grace, self.inner.tasks.wait()).await;
        let left = self.inner.jobs.running_ids();
        for id in &left {
            let _ = self.inner.store.audit(AuditEntry::system(
                "bot",
                "argos",
                "-",
                &format!("shutdown with job #{id} running"),
                "left running; resumes at next start",
                Some(*id),
            ));
        }
        // What is left is another replica's to take over at once (or this one's next start).
        self.inner.events_stop_token().cancel();
        self.inner.replica.retire();
        left
    }

    /// One round of the workers' lookout now (what `workers.poll_secs` paces): a lifecycle job
    /// is started on each free environment whose workers wait in a hook. Returns their ids.
    pub async fn workers_round(&self) -> Vec<u64> {
        workers::round(&self.inner).await
    }

    /// Ends this replica's leases now (a clean exit with nothing left running).
    pub fn retire(&self) {
        self.inner.events_stop_token().cancel();
        self.inner.replica.retire();
    }

    /// Waits until every job started so far has finished (tests and the console's end).
    pub async fn idle(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.tasks.reopen();
    }
}
