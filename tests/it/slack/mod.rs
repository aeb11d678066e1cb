//! The whole bot end to end on Slack: the real slack-morphism client (Web API and Socket Mode)
//! against the fake Slack on loopback (`tests/it/support/fake_slack/`), the real engine against the
//! scripted fake AWS, and for deploys the real `ansible-playbook` with the sandbox playbooks.
//! The Discord counterparts are `tests/discord_bot.rs`, `tests/discord_buttons.rs` and
//! `tests/discord_adapter.rs`.
//!
//! Every scenario ends with each envelope acknowledged within Slack's 3 s, no 429 unless the
//! test provokes one, no request the fake does not serve, nothing the bot wrote carrying a
//! broadcast mention, and every post read by the test (`world::finish_with`).
//!
//! - `commands.rs`: `!argos`, mentions (two envelopes, one answer) and `/argos` (answered
//!   through the response_url); denials, unknown environments and the command budget; roles
//!   from member ids and user groups; `<!channel>` and friends; redelivered envelopes; a slow
//!   store that holds up no acknowledgement.
//! - `jobs.rs`: one status message per job, edited to the end, the log in its thread; failures
//!   with the root cause first; the shared update budget; a 429 waited out, and edits queued
//!   behind it coalesced without losing the final one's log.
//! - `approvals.rs`: Block Kit approvals, and their buttons after a restart.
//! - `connection.rs`: a `disconnect` and a dropped socket in the middle of a job.
//! - `both.rs`: a Discord job and a Slack job at once in one bot.
//! - `health.rs`: readiness and metrics with the Slack adapter.
//! - `world.rs`: what they share.

mod approvals;
mod both;
mod commands;
mod connection;
mod health;
mod jobs;
mod world;
