//! What holds, freezes and break-glass runs say: to whoever asked, to the holder, and in
//! the environment's announce channel.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::{FreezeRecord, HoldRecord, JobRecord, Refusal};

/// `2h 5m`: to the nearest minute from a minute up (a hold's seconds are noise).
fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let shown = if secs >= 60 { (secs + 30) / 60 * 60 } else { secs };
    crate::clock::format_duration(chrono::Duration::seconds(shown as i64))
}

/// `18:00 UTC`, or `2026-12-24 18:00 UTC` when it is not within a day.
fn at(t: DateTime<Utc>) -> String {
    let now = crate::clock::now();
    if (t - now).num_hours().abs() < 20 {
        t.format("%H:%M UTC").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M UTC").to_string()
    }
}

/// `until 18:00 UTC (2h 5m left)`.
fn until(ends_at: DateTime<Utc>, left: Duration) -> String {
    format!("until {} ({} left)", at(ends_at), format_duration(left))
}

fn left_of(t: DateTime<Utc>) -> Duration {
    (t - crate::clock::now()).to_std().unwrap_or_default()
}

fn reason(text: &str) -> String {
    if text.is_empty() {
        "no reason given".into()
    } else {
        text.to_string()
    }
}

/// `alice: testing the migration, until 18:00 UTC (2h left)`.
fn hold_line(h: &HoldRecord) -> String {
    format!("{}: {}, {}", h.holder_name, reason(&h.reason), until(h.ends_at, h.left))
}

/// `freeze #3 (alice): incident 42, until …` or `friday-evening: weekend, until …`.
fn freeze_line(f: &FreezeRecord) -> String {
    let by = f.by_name.as_ref().map(|b| format!(" by {b}")).unwrap_or_default();
    format!("{}{by}: {}, {}", f.name, f.reason, until(f.ends_at, left_of(f.ends_at)))
}

/// Why a change was not started: a hold, a warning hold, or a freeze.
pub fn refusal(env: &str, prefix: &str, command: &str, r: &Refusal) -> String {
    match r {
        Refusal::Held(h) => format!(
            "🔒 {env} is held by {}. Ask them to `release` it (or an admin to `{env} release --force`).",
            hold_line(h)
        ),
        Refusal::Warned(h) => format!(
            "⚠️ {env} is held by {} They asked to be warned: `{prefix} {command} --confirm` goes ahead anyway.",
            hold_line(h) + "."
        ),
        Refusal::Frozen(f) => format!(
            "❄️ {env} is frozen: {}. An urgent change: `{prefix} {command} --break-glass \"why\"` (needs the break-glass permission; audited and announced).",
            freeze_line(f)
        ),
    }
}

/// The audit outcome of a refusal.
pub fn refusal_audit(r: &Refusal) -> String {
    match r {
        Refusal::Held(h) => format!("refused: held by {} until {}", h.holder_name, h.ends_at.to_rfc3339()),
        Refusal::Warned(h) => format!("refused: warning hold of {} not confirmed", h.holder_name),
        Refusal::Frozen(f) => format!("refused: frozen by {} until {}", f.name, f.ends_at.to_rfc3339()),
    }
}

/// A queued or approved job that a hold or freeze stopped before it started.
pub fn refused_before_start(id: u64, env: &str, r: &Refusal) -> String {
    let why = match r {
        Refusal::Held(h) | Refusal::Warned(h) => format!("{env} is held by {}", hold_line(h)),
        Refusal::Frozen(f) => format!("{env} is frozen: {}", freeze_line(f)),
    };
    format!("🛑 Job #{id} did not start: {why}.")
}

pub fn hold_taken(h: &HoldRecord) -> String {
    let who = if h.warn { "warned" } else { "refused" };
    format!(
        "🔒 {} is yours {}: {}. Others are {who}; `{} release` when you are done.",
        h.env,
        until(h.ends_at, h.left),
        reason(&h.reason),
        h.env
    )
}

pub fn hold_renewed(h: &HoldRecord) -> String {
    format!(
        "🔒 Your hold on {} now lasts {}: {}.",
        h.env,
        until(h.ends_at, h.left),
        reason(&h.reason)
    )
}

pub fn held_by_other(h: &HoldRecord) -> String {
    format!("❌ {} is already held by {}.", h.env, hold_line(h))
}

pub fn hold_busy(env: &str, job: &JobRecord) -> String {
    format!(
        "⏸ {env} is busy: job #{} ({} by {}) is {}. Take the hold when it ends.",
        job.id, job.action, job.requester_name, job.state
    )
}

pub fn hold_too_long(asked: Duration, max: Duration) -> String {
    format!(
        "❓ a hold lasts at most {} (holds.max); {} is longer.",
        format_duration(max),
        format_duration(asked)
    )
}

pub fn released(h: &HoldRecord, by: &str) -> String {
    if h.holder_name == by {
        format!("🔓 {} is released.", h.env)
    } else {
        format!("🔓 {}'s hold on {} is ended by {by}.", h.holder_name, h.env)
    }
}

pub fn not_held(env: &str) -> String {
    format!("{env} is not held.")
}

pub fn not_your_hold(h: &HoldRecord) -> String {
    format!(
        "❌ {} is held by {}, not you. Ask them, or an admin: `{} release --force`.",
        h.env,
        hold_line(h),
        h.env
    )
}

pub fn hold_reminder(h: &HoldRecord) -> String {
    format!(
        "⏰ {}, your hold on {} lapses at {} ({} left). `{} hold for 2h` keeps it; `{} release` if you are done.",
        h.holder_name,
        h.env,
        at(h.ends_at),
        format_duration(h.left),
        h.env,
        h.env
    )
}

pub fn frozen(f: &FreezeRecord) -> String {
    let envs = if f.envs.is_empty() {
        "every environment".to_string()
    } else {
        f.envs.join(", ")
    };
    let ends = match f.id {
        Some(_) => "`unfreeze` ends it",
        None => "configured under freezes:",
    };
    format!(
        "❄️ {envs} frozen ({}): {}, {}. Changes need --break-glass \"why\"; {ends}.",
        f.name,
        f.reason,
        until(f.ends_at, left_of(f.ends_at))
    )
}

pub fn unfrozen(ended: &[FreezeRecord]) -> String {
    if ended.is_empty() {
        return "Nothing to unfreeze: no freeze made with `freeze` covers them (configured windows end on their own)."
            .into();
    }
    let names: Vec<String> = ended.iter().map(|f| format!("{} ({})", f.name, f.reason)).collect();
    format!("☀️ Unfrozen: {}.", names.join(", "))
}

/// `schedules`' lines about the freezes made with `freeze` that are in force (none: nothing).
pub fn freezes_in_force(freezes: &[FreezeRecord]) -> String {
    if freezes.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nFrozen now (`unfreeze` ends them):");
    for f in freezes {
        let envs = if f.envs.is_empty() {
            "every environment".to_string()
        } else {
            f.envs.join(", ")
        };
        out.push_str(&format!("\n• {envs}: {}", freeze_line(f)));
    }
    out
}

/// The announcements, posted once to the environment's announce channel.
pub mod announced {
    use super::*;

    pub fn hold_taken(h: &HoldRecord) -> String {
        let kind = if h.warn { "holds (warn only)" } else { "holds" };
        format!(
            "🔒 {} {kind} {} {}: {}",
            h.holder_name,
            h.env,
            until(h.ends_at, h.left),
            reason(&h.reason)
        )
    }

    /// A hold that ended: released by its holder, ended by someone else, or lapsed.
    pub fn hold_ended(h: &HoldRecord) -> String {
        match h.released_by.as_deref() {
            None => format!(
                "🔓 {}'s hold on {} lapsed ({}).",
                h.holder_name,
                h.env,
                reason(&h.reason)
            ),
            Some(by) if by == h.holder_name => format!("🔓 {} released {}.", by, h.env),
            Some(by) => format!(
                "🔓 {by} ended {}'s hold on {} (release --force; it was: {}).",
                h.holder_name,
                h.env,
                reason(&h.reason)
            ),
        }
    }

    pub fn frozen(f: &FreezeRecord) -> String {
        super::frozen(f)
    }

    pub fn freeze_ended(f: &FreezeRecord) -> String {
        match &f.ended_by {
            Some(by) => format!("☀️ {} ended by {by} ({}).", f.name, f.reason),
            None => format!("☀️ {} is over ({}).", f.name, f.reason),
        }
    }

    pub fn break_glass(who: &str, command: &str, surface: &str, why: &str) -> String {
        format!("🚨 **Break-glass** · {who} runs `{command}` through the freeze, from {surface}: {why}")
    }
}

/// The state of one environment in `envs`: running, held, frozen or free.
pub fn env_state(running: Option<u64>, hold: Option<&HoldRecord>, freeze: Option<&FreezeRecord>) -> String {
    let mut parts = Vec::new();
    if let Some(id) = running {
        parts.push(format!("running job #{id}"));
    }
    if let Some(h) = hold {
        let kind = if h.warn { "held (warn)" } else { "held" };
        parts.push(format!("{kind} by {} {}", h.holder_name, until(h.ends_at, h.left)));
    }
    if let Some(f) = freeze {
        parts.push(format!("frozen ({}) {}", f.name, until(f.ends_at, left_of(f.ends_at))));
    }
    if parts.is_empty() {
        "free".into()
    } else {
        parts.join(", ")
    }
}
