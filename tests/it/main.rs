//! The integration tests, in one binary: every module below links the crate (and the AWS SDK)
//! once, and `cargo test` runs their tests side by side. Most of them wait on subprocesses
//! (moto, ansible-playbook, sshd, PostgreSQL, the real `argos` binary) rather than on the CPU.
//!
//! `support/` holds the stand-ins and harnesses they share (the scripted fake AWS, moto,
//! the fake Discord and Slack, PostgreSQL, sshd, replicas, and the `World` builder the
//! console, Discord and Slack scenarios start from); `upstream_argos/` the facts read
//! from the upstream app. Run one family with a filter: `cargo test --test it slack::`.

mod announcements;
mod ansible_runner;
mod ansible_ssh;
mod app_requirements;
mod app_settings;
mod approvals;
mod aws_accounts;
mod bad_input;
mod bot_jobs;
mod cli_approvals;
mod config_files;
mod config_numbers;
mod console;
mod delete_progress;
mod discord_adapter;
mod discord_bot;
mod discord_buttons;
mod discord_rate_limits;
mod drift;
mod drift_revert;
mod engine_scenarios;
mod fake_aws_selftest;
mod fake_slack_selftest;
mod git_repo;
mod grammar_fuzz;
mod health_checks;
mod health_metrics;
mod holds;
mod https_front;
mod iam_enforcement;
mod json_logs;
mod moto_lifecycle;
mod postgres_harness;
mod replicas;
mod schedules;
mod shared_state;
mod slack;
mod stack_hardening;
mod stack_scan;
mod stack_wiring;
mod store_backends;
mod support;
mod systemd_unit;
mod upstream_argos;
mod versions;
mod web;
