//! Argos: a chat-ops bot that commissions, deploys, updates and tears down the Argos news app
//! on AWS.
//!
//! The crate is built in floors. A module imports only from floors below its own (the test
//! below reads every `crate::` path in `src/` and fails otherwise), so each floor can be read,
//! tested and changed knowing only what is under it. From the top:
//!
//! 1. [`serve`] (and `main.rs`): wiring a process together.
//! 2. The surfaces: [`cli`], [`platform`] (the console, Discord and Slack adapters), [`health`],
//!    [`web`] (the read-only page).
//! 3. [`bot`]: the dispatcher, jobs, the live status message, replicas and takeovers,
//!    approvals in chat, scheduled announcements.
//! 4. Decisions: [`approvals`] (a request's plan and its votes), [`schedule`] (due times and
//!    what a cleanup report finds), [`holds`] (holds and freezes: what a job's start checks).
//! 5. [`engine`]: the operations (commission, bake, deploy, update, decommission, clean,
//!    status) as idempotent steps that emit typed [`progress`] events and never print.
//! 6. [`check`]: `argos check`, every static check at once.
//! 7. [`ansible`]: `ansible-playbook` as a subprocess with a generated inventory, a JSON-lines
//!    callback, a timeout, and redaction of every line.
//! 8. [`cloud`]: CloudFormation, Auto Scaling and SQS through the AWS SDK, EC2 through a
//!    client of our own: stack watcher, images, instances, one shared request budget. [`git`]: the app repository (a bare mirror run with `git`).
//! 9. [`store`] (jobs, locks and leases, approvals, audit log, chat-event claims, outbox, on
//!    SQLite or PostgreSQL), [`permissions`] (who may do what) and [`people`] (who someone
//!    is, whatever surface they speak from).
//! 10. [`error`] (the error a user reads) and [`logging`].
//! 11. [`config`] and [`template`] (the CloudFormation templates: merge, checks, conditions).
//! 12. [`command`]: the one grammar every surface speaks (`staging deploy --roles api`).
//! 13. The ground: [`names`], [`address`] (channel addresses), [`redact`], [`clock`],
//!     [`budget`], [`progress`], [`metrics`].

pub mod address;
pub mod ansible;
pub mod approvals;
pub mod bot;
pub mod budget;
pub mod check;
pub mod cli;
pub mod clock;
pub mod cloud;
pub mod command;
pub mod config;
pub mod engine;
pub mod error;
pub mod git;
pub mod health;
pub mod holds;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod people;
pub mod permissions;
pub mod platform;
pub mod progress;
pub mod redact;
pub mod schedule;
pub mod serve;
pub mod store;
pub mod template;
pub mod web;

/// The floors, top to bottom (see the crate's documentation); a module may import from the
/// floors after its own and from nowhere else.
#[cfg(test)]
const FLOORS: &[&[&str]] = &[
    &["main", "serve"],
    &["cli", "platform", "health", "web"],
    &["bot"],
    &["approvals", "schedule", "holds"],
    &["engine"],
    &["check"],
    &["ansible"],
    &["cloud", "git"],
    &["store", "permissions", "people"],
    &["error", "logging"],
    &["config", "template"],
    &["command"],
    &["names", "address", "redact", "clock", "budget", "progress", "metrics"],
];

#[cfg(test)]
mod floors;
