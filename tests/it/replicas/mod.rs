//! Bot replicas side by side: two real `argos bot` processes, each with a gateway session of its
//! own on one fake Discord that delivers every event to every session (as Discord does on a
//! shard), all on one PostgreSQL database, AWS on moto (jobs) or on the scripted fake (no
//! jobs). Playbooks are the sandbox ones run by the real ansible-playbook, behind a gate
//! (`support::replicas::Gate`) that holds `api.yml`, so a replica can be killed, paused or have
//! its database restarted while a commission is certainly in the middle of a playbook.
//!
//! 1. 20 users' commands at once: each answered exactly once, by the replica whose claim won.
//! 2. kill -9 of the replica running a commission: the other finishes it, one stack, one image,
//!    one status message edited to ✅, the job's owner changed.
//! 3. SIGSTOP past the lease: the job is taken over; after SIGCONT the paused replica's writes
//!    are refused, it edits nothing more and its playbook is gone.
//! 4. PostgreSQL restarted in the middle of a job: the bot reconnects and nothing is lost; and
//!    PostgreSQL down past the lease: the bot gives the job up, then takes it over again.
//! 5. A scheduled announcement fires once across two replicas.
//!
//! Timings are printed (`cargo test --test it replicas:: -- --nocapture` shows them).
//!
//! The tests are in `chat.rs` (1 and 5), `takeover.rs` (2 and 3) and `database.rs` (4); the
//! cluster they share is in `cluster.rs`.
use crate::support;

mod chat;
mod cluster;
mod database;
mod takeover;
