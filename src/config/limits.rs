//! The ranges of the config's numbers. Each bound is one that later code relies on: a rate
//! becomes a governor quota whose period must stay above zero (`budget.rs`), a duration is
//! added to `Instant::now()` or turned into a chrono span (which panic when they overflow), a
//! lease is stored as signed milliseconds. A number outside its range is refused when the
//! config is loaded, naming its key, instead of panicking at start-up.

use crate::config::Settings;

/// One hour, one day and one week, in the units the keys use.
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
const HOUR_SECS: u64 = 3_600;
const DAY_SECS: u64 = 24 * HOUR_SECS;
const WEEK_SECS: u64 = 7 * DAY_SECS;
const YEAR_MINUTES: u64 = 365 * 24 * 60;

/// A number of the config, where it is, and the range it must be in.
struct Bounded {
    key: String,
    value: u64,
    min: u64,
    max: u64,
    unit: &'static str,
}

fn bounded(key: impl Into<String>, value: impl Into<u64>, min: u64, max: u64, unit: &'static str) -> Bounded {
    Bounded {
        key: key.into(),
        value: value.into(),
        min,
        max,
        unit,
    }
}

/// The first number out of its range: its key, and what the range is.
pub(super) fn check(s: &Settings) -> Result<(), (String, String)> {
    let mut numbers = vec![
        bounded(
            "aws.requests_per_second",
            s.aws.requests_per_second,
            1,
            10_000,
            "requests a second",
        ),
        bounded("aws.burst", s.aws.burst, 1, 10_000, "requests"),
        bounded("aws.max_attempts", s.aws.max_attempts, 1, 20, "attempts"),
        bounded(
            "aws.retry_initial_backoff_ms",
            s.aws.retry_initial_backoff_ms,
            0,
            60_000,
            "ms",
        ),
        bounded("store.heartbeat_ms", s.store.heartbeat_ms, 1, HOUR_MS, "ms"),
        bounded("store.lease_ms", s.store.lease_ms, 2, DAY_MS, "ms"),
        bounded("watch.poll_interval_ms", s.watch.poll_interval_ms, 1, HOUR_MS, "ms"),
        bounded(
            "watch.max_poll_interval_ms",
            s.watch.max_poll_interval_ms,
            1,
            HOUR_MS,
            "ms",
        ),
        bounded("watch.recent_events", s.watch.recent_events as u64, 0, 1_000, "events"),
        // The command budget's burst times its period must fit governor's 64-bit nanoseconds.
        bounded(
            "chat.commands_per_minute",
            s.chat.commands_per_minute,
            1,
            1_000_000,
            "commands a minute",
        ),
        bounded("chat.command_burst", s.chat.command_burst, 1, 1_000_000, "commands"),
        bounded("chat.edit_interval_ms", s.chat.edit_interval_ms, 0, HOUR_MS, "ms"),
        bounded("chat.edit_burst", s.chat.edit_burst, 1, 1_000, "edits"),
        bounded("chat.edit_refill_secs", s.chat.edit_refill_secs, 0, HOUR_SECS, "s"),
        bounded(
            "chat.edits_per_second",
            s.chat.edits_per_second,
            1,
            1_000,
            "edits a second",
        ),
        bounded("chat.shutdown_grace_secs", s.chat.shutdown_grace_secs, 0, DAY_SECS, "s"),
        bounded(
            "slack.updates_per_minute",
            s.slack.updates_per_minute,
            1,
            10_000,
            "updates a minute",
        ),
        bounded(
            "approvals.ttl_minutes",
            s.approvals.ttl_minutes,
            1,
            YEAR_MINUTES,
            "minutes",
        ),
    ];
    let t = &s.timeouts;
    for (name, value) in [
        ("stack_create_secs", t.stack_create_secs),
        ("stack_update_secs", t.stack_update_secs),
        ("stack_delete_secs", t.stack_delete_secs),
        ("change_set_secs", t.change_set_secs),
        ("image_available_secs", t.image_available_secs),
        ("ssh_ready_secs", t.ssh_ready_secs),
        ("playbook_secs", t.playbook_secs),
        ("drift_detection_secs", t.drift_detection_secs),
    ] {
        numbers.push(bounded(format!("timeouts.{name}"), value, 0, WEEK_SECS, "s"));
    }
    for (i, p) in s.approvals.policies.iter().enumerate() {
        if let Some(ttl) = p.ttl_minutes {
            numbers.push(bounded(
                format!("approvals.policies[{i}].ttl_minutes"),
                ttl,
                1,
                YEAR_MINUTES,
                "minutes",
            ));
        }
    }
    for (i, sch) in s.schedules.iter().enumerate() {
        for (name, days) in [
            ("stale_after_days", sch.stale_after_days),
            ("unused_image_days", sch.unused_image_days),
        ] {
            if !(0..=36_500).contains(&days) {
                return Err((
                    format!("schedules[{i}].{name}"),
                    format!("must be 0 to 36500 (days); {days} is out of range"),
                ));
            }
        }
    }
    for n in numbers {
        if n.value < n.min || n.value > n.max {
            return Err((
                n.key,
                format!(
                    "must be {} to {} ({}); {} is out of range",
                    n.min, n.max, n.unit, n.value
                ),
            ));
        }
    }
    Ok(())
}
