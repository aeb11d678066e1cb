//! This process as one replica among several: its registration and heartbeat, the leases of
//! the jobs it runs, and the periodic work a live replica owes the others: taking over jobs
//! whose owner's lease ran out, adopting queued jobs of a gone owner, acting on cancel
//! requests made elsewhere, delivering the outbox.
//!
//! A lease is valid locally only until the start of its last successful renewal plus the
//! lease time, by this process's monotonic clock. So a replica that was paused (SIGSTOP, a
//! stalled VM) knows its leases are gone the moment it runs again, before its next heartbeat,
//! and stops touching the job; the store refuses its stale token anyway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::store::{LeaseSettings, Store};

/// The proof that a job holds its environment's lock: the fencing token every store write
/// for the job carries, and whether the lease is still ours.
#[derive(Debug)]
pub struct JobLease {
    pub job_id: u64,
    pub env: String,
    pub token: i64,
    valid_until: Mutex<Instant>,
    lost: CancellationToken,
}

impl JobLease {
    pub fn valid(&self) -> bool {
        !self.lost.is_cancelled() && Instant::now() < *self.valid_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves when the lease is gone: taken over, or not renewed in time (the heartbeat
    /// thread gives up a lease whose time ran out).
    pub async fn lost(&self) {
        self.lost.cancelled().await
    }

    fn give_up(&self) {
        self.lost.cancel();
    }
}

/// This process in the store.
pub struct Replica {
    pub id: String,
    pub kind: &'static str,
    pub lease: LeaseSettings,
    store: Store,
    leases: Mutex<HashMap<u64, Arc<JobLease>>>,
    stopped: AtomicBool,
    /// Woken after every heartbeat: the replica's periodic work runs then.
    pub ticks: Arc<tokio::sync::Notify>,
    /// When the last heartbeat that reached the store started (registration counts).
    last_beat: Mutex<Instant>,
}

impl Replica {
    /// Registers a new replica of `kind` serving `platforms`.
    pub fn register(
        store: Store,
        kind: &'static str,
        platforms: &[&str],
        lease: LeaseSettings,
    ) -> Result<Replica, String> {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let id = format!(
            "{kind}-{}-{}-{:x}",
            crate::names::hostname(),
            std::process::id(),
            start & 0xffff_ffff
        );
        store
            .register_replica(&id, kind, platforms, lease)
            .map_err(|e| e.to_string())?;
        Ok(Replica {
            id,
            kind,
            lease,
            store,
            leases: Mutex::new(HashMap::new()),
            stopped: AtomicBool::new(false),
            last_beat: Mutex::new(Instant::now()),
            ticks: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Records a lease this process just obtained (start, queue, approval or takeover).
    pub fn hold(&self, job_id: u64, env: &str, token: i64, obtained: Instant) -> Arc<JobLease> {
        let lease = Arc::new(JobLease {
            job_id,
            env: env.to_string(),
            token,
            valid_until: Mutex::new(obtained + self.lease.lease),
            lost: CancellationToken::new(),
        });
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job_id, lease.clone());
        lease
    }

    /// Forgets a lease when its job is over.
    pub fn release(&self, job_id: u64) {
        self.leases.lock().unwrap_or_else(|p| p.into_inner()).remove(&job_id);
    }

    /// Heartbeats on a thread of its own, by the real clock: neither a busy async runtime nor
    /// tokio's paused test clock can delay or hurry them.
    /// The thread holds only a weak reference: when the bot is gone (a test drops it to
    /// play a crash), its heartbeats stop, as a dead process's would.
    pub fn spawn_heartbeat(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let every = self.lease.heartbeat;
        let spawned = std::thread::Builder::new()
            .name("argos-heartbeat".into())
            .spawn(move || loop {
                {
                    let Some(me) = weak.upgrade() else { return };
                    if me.stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    me.beat();
                    me.ticks.notify_one();
                }
                let until = Instant::now() + every;
                while Instant::now() < until {
                    std::thread::sleep(std::time::Duration::from_millis(50).min(every));
                    match weak.upgrade() {
                        Some(me) if !me.stopped.load(Ordering::Relaxed) => {}
                        _ => return,
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the heartbeat thread");
        }
    }

    /// The leases held now.
    pub fn held(&self) -> Vec<Arc<JobLease>> {
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// One heartbeat: renews what the store says we still hold and gives up the rest.
    pub fn beat(&self) {
        // A lease whose time ran out is given up before anything else (after a pause, this
        // runs before the next store call).
        for lease in self.held() {
            if !lease.valid() {
                tracing::warn!(job = lease.job_id, "a job's lease ran out; stopping work on it");
                lease.give_up();
            }
        }
        let started = Instant::now();
        match self.store.heartbeat(&self.id, self.lease) {
            Ok(held) => {
                *self.last_beat.lock().unwrap_or_else(|p| p.into_inner()) = started;
                let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
                for (id, lease) in leases.iter() {
                    if held.iter().any(|(_, j, t)| j == id && *t == lease.token) {
                        *lease.valid_until.lock().unwrap_or_else(|p| p.into_inner()) = started + self.lease.lease;
                    } else {
                        tracing::warn!(
                            job = id,
                            token = lease.token,
                            "lost the lease of a job; stopping work on it"
                        );
                        lease.give_up();
                    }
                }
            }
            Err(e) => {
                // The leases run out by themselves if this goes on.
                tracing::warn!(error = %e, "heartbeat failed");
            }
        }
    }

    /// Whether the last heartbeat that reached the store is younger than the lease time.
    pub fn heartbeat_ok(&self) -> bool {
        self.last_beat.lock().unwrap_or_else(|p| p.into_inner()).elapsed() < self.lease.lease
    }

    /// Whether this replica has retired (it starts no new work).
    pub fn retired(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// A clean stop: another replica may take over at once.
    pub fn retire(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        if let Err(e) = self.store.retire_replica(&self.id) {
            tracing::warn!(error = %e, "cannot record this replica's stop");
        }
    }
}
