//! Argos: a chat-ops bot that commissions, deploys, updates and tears down the Argos news app
//! on AWS. The map of the crate, from the outside in:
//!
//! - [`command`]: the one grammar every surface speaks (`staging deploy --roles api`).
//! - [`engine`]: the operations (commission, bake, deploy, update, decommission, clean,
//!   status) as idempotent steps that emit typed [`progress`] events and never print.
//! - [`cloud`]: CloudFormation and EC2 through the AWS SDK: template merge, stack watcher,
//!   images, instances, one shared request budget.
//! - [`ansible`]: `ansible-playbook` as a subprocess with a generated inventory, a JSON-lines
//!   callback, a timeout, and redaction of every line.
//! - [`config`], [`names`], [`redact`], [`error`], [`budget`]: the shared ground.
//! - [`store`]: the shared state (SQLite or PostgreSQL): jobs, locks and leases, approvals,
//!   audit log, chat-event claims, outbox.
//! - [`bot`]: the dispatcher, jobs, replicas and takeovers; [`platform`]: the adapters.
//! - [`check`]: `argos check`, every static check at once.
//! - [`cli`]: the terminal front end.

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
pub mod health;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod permissions;
pub mod platform;
pub mod progress;
pub mod redact;
pub mod schedule;
pub mod serve;
pub mod store;
