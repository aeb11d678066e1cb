//! The `freezes:` section: configured change freezes, each on some environments, either
//! recurring (a cron start and a duration, `0 18 * * FRI` for `62h`) or a fixed window
//! (`from` .. `until`), read in the freeze's own time zone. Here are the settings, their checks
//! at load, and the window math the refusal gate and the `schedules` listing use: pure
//! functions of the settings and a `now` passed in.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::Deserialize;

use super::{parse_cron, Settings};
use crate::clock::{format_duration, parse_duration};
use crate::names::pattern_matches;

/// The longest a freeze may last, recurring or fixed: anything longer is a typo (a year in
/// `until`), and a freeze that long is better written as permissions.
pub const MAX_FREEZE_DAYS: i64 = 31;

/// How many back-to-back windows one window may absorb (a recurring freeze whose next start
/// falls exactly where the last one ends). The load-time check keeps such a run within
/// [`MAX_FREEZE_DAYS`], so this covers a run of one-minute windows that long (44,640) and
/// only bounds the work for settings that were never checked.
const MAX_CHAINED_WINDOWS: usize = 50_000;

/// How far ahead, and over how many starts at most, the load-time check looks for windows
/// that overlap or run back to back for too long: two years holds a February of 28 days.
const CHECK_HORIZON_DAYS: i64 = 2 * 366;
const CHECK_MAX_STARTS: usize = 50_000;

/// One configured freeze (`freezes:` in `config/argos.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeSettings {
    /// Unique; what a refusal and the `schedules` listing call the freeze.
    pub name: String,
    /// Environment patterns, as permissions write them: `production`, `qa-*`, `*`.
    pub environments: Vec<String>,
    /// Why: shown in every refusal.
    pub reason: String,
    /// IANA time zone the cron expression and `from`/`until` are read in; default UTC.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Recurring: when each window starts (minute hour day-of-month month day-of-week).
    #[serde(default)]
    pub cron: Option<String>,
    /// Recurring: how long each window lasts (`14h`, `2d`, `1h30m`), in elapsed time.
    #[serde(default)]
    pub duration: Option<String>,
    /// Fixed window: its start, a local date-time (`2026-12-24 00:00`, or a date, which means
    /// its midnight) or RFC 3339 (`2026-12-24T00:00:00+01:00`).
    #[serde(default)]
    pub from: Option<String>,
    /// Fixed window: its end (exclusive), written as `from` is.
    #[serde(default)]
    pub until: Option<String>,
}

fn default_timezone() -> String {
    "UTC".into()
}

/// A span of time during which a freeze holds: from `start` (included) to `end` (excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

/// A freeze's timing, read from its settings.
enum Timing {
    // Boxed: a parsed cron is large next to a window.
    Recurring { cron: Box<Cron>, duration: Duration },
    Fixed(Window),
}

impl FreezeSettings {
    /// Whether the freeze covers `env` (one of its patterns matches it).
    pub fn applies_to(&self, env: &str) -> bool {
        self.environments.iter().any(|p| pattern_matches(p, env))
    }

    /// The time zone its times are read and shown in (UTC if it does not name a known one,
    /// which the config check refuses).
    pub fn time_zone(&self) -> Tz {
        self.timezone.parse().unwrap_or(Tz::UTC)
    }

    /// How the freeze recurs, for people: ``0 18 * * FRI` for 2d 14h` or `fixed window`.
    pub fn describe_timing(&self) -> String {
        match (&self.cron, self.duration.as_deref().map(parse_duration)) {
            (Some(cron), Some(Ok(d))) => format!("`{cron}` for {}", format_duration(d)),
            _ => "fixed window".into(),
        }
    }

    /// Reads the timing; an error names the key (relative to the freeze) and the problem.
    fn timing(&self) -> Result<Timing, (&'static str, String)> {
        let tz: Tz = self.timezone.parse().map_err(|_| {
            (
                "timezone",
                format!(
                    "unknown time zone '{}' (use an IANA name like Europe/Berlin)",
                    self.timezone
                ),
            )
        })?;
        let either = "give either cron and duration (a recurring freeze) or from and until (a fixed window)";
        match (&self.cron, &self.duration, &self.from, &self.until) {
            (Some(cron), Some(duration), None, None) => {
                let cron = parse_cron(cron).map_err(|e| ("cron", e))?;
                let duration = parse_duration(duration).map_err(|e| ("duration", e))?;
                if duration > Duration::days(MAX_FREEZE_DAYS) {
                    return Err((
                        "duration",
                        format!("{} is longer than {MAX_FREEZE_DAYS} days", format_duration(duration)),
                    ));
                }
                Ok(Timing::Recurring {
                    cron: Box::new(cron),
                    duration,
                })
            }
            (None, None, Some(from), Some(until)) => {
                let start = parse_time(from, tz).map_err(|e| ("from", e))?;
                let end = parse_time(until, tz).map_err(|e| ("until", e))?;
                if end <= start {
                    return Err(("until", format!("'{until}' is not after from ('{from}')")));
                }
                if end - start > Duration::days(MAX_FREEZE_DAYS) {
                    return Err((
                        "until",
                        format!(
                            "the window lasts {}, longer than {MAX_FREEZE_DAYS} days",
                            format_duration(end - start)
                        ),
                    ));
                }
                Ok(Timing::Fixed(Window { start, end }))
            }
            (Some(_), None, None, None) => Err((
                "duration",
                format!("a cron freeze needs a duration (like 14h); {either}"),
            )),
            (None, Some(_), None, None) => Err(("cron", format!("a duration needs a cron start; {either}"))),
            (None, None, Some(_), None) => Err(("until", format!("a fixed window needs until; {either}"))),
            (None, None, None, Some(_)) => Err(("from", format!("a fixed window needs from; {either}"))),
            (None, None, None, None) => Err(("", format!("no timing; {either}"))),
            _ => Err((
                "",
                format!("mixes a recurring freeze and a fixed window; {either}, not both"),
            )),
        }
    }
}

/// A time as `from`/`until` write it: RFC 3339 (with its own offset), or a local date-time or
/// date in `tz`. A local time the clocks skip (a spring-forward gap) is refused; one they pass
/// twice (fall back) means the first.
fn parse_time(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let local = [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(|| {
        format!("'{text}' is not a time; write a local time like 2026-12-24 18:00 (or a date, or RFC 3339)")
    })?;
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("'{text}' does not exist in {tz} (the clocks skip it)"))
}

/// The first start of `cron` in `tz` strictly after `t`.
fn start_after(cron: &Cron, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&t.with_timezone(&tz), false)
        .ok()
        .map(|s| s.with_timezone(&Utc))
}

/// The window that starts at `start`, running on through any window that starts before or
/// exactly when it ends (so its end is when the freeze really lifts).
fn window_from(cron: &Cron, tz: Tz, duration: Duration, start: DateTime<Utc>) -> Window {
    let mut end = start + duration;
    let mut cursor = start;
    for _ in 0..MAX_CHAINED_WINDOWS {
        match start_after(cron, tz, cursor) {
            Some(next) if next <= end => {
                end = end.max(next + duration);
                cursor = next;
            }
            _ => break,
        }
    }
    Window { start, end }
}

/// The window of `freeze` that holds at `now`, if any. For a recurring freeze: the one that
/// starts at the earliest start in (now - duration, now], the only starts whose window can
/// still cover `now`.
pub fn active_at(freeze: &FreezeSettings, now: DateTime<Utc>) -> Option<Window> {
    match freeze.timing().ok()? {
        Timing::Fixed(w) => w.contains(now).then_some(w),
        Timing::Recurring { cron, duration } => {
            let tz = freeze.time_zone();
            let start = start_after(&cron, tz, now - duration)?;
            (start <= now).then(|| window_from(&cron, tz, duration, start))
        }
    }
}

/// The next `n` windows of `freeze`, soonest first; the one holding at `now` first if any.
/// A fixed window that has ended has none.
pub fn next_windows(freeze: &FreezeSettings, now: DateTime<Utc>, n: usize) -> Vec<Window> {
    let Ok(timing) = freeze.timing() else {
        return Vec::new();
    };
    match timing {
        Timing::Fixed(w) => (n > 0 && now < w.end).then_some(w).into_iter().collect(),
        Timing::Recurring { cron, duration } => {
            let tz = freeze.time_zone();
            let mut out: Vec<Window> = active_at(freeze, now).into_iter().take(n).collect();
            // No start falls in a window's span after its start (those are chained into it),
            // nor in (now - duration, now] when none holds now.
            let mut cursor = out.last().map_or(now, |w| w.end);
            while out.len() < n {
                let Some(start) = start_after(&cron, tz, cursor) else {
                    break;
                };
                let w = window_from(&cron, tz, duration, start);
                cursor = w.end;
                out.push(w);
            }
            out
        }
    }
}

/// The freeze that holds `env` at `now`, with its window: the one that lifts last when
/// several hold.
pub fn active_for<'a>(
    freezes: &'a [FreezeSettings],
    env: &str,
    now: DateTime<Utc>,
) -> Option<(&'a FreezeSettings, Window)> {
    freezes
        .iter()
        .filter(|f| f.applies_to(env))
        .filter_map(|f| active_at(f, now).map(|w| (f, w)))
        .max_by_key(|(_, w)| w.end)
}

/// A time as the freeze's listing and refusals show it: local, with the zone's abbreviation
/// (`2026-12-11 18:00 CET`).
pub fn format_local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// The first problem in `freezes:`: its key (`freezes[1].duration`) and what is wrong. `now`
/// is where the check for overlapping recurring windows starts looking.
pub(super) fn check(settings: &Settings, now: DateTime<Utc>) -> Result<(), (String, String)> {
    let freezes = &settings.freezes;
    for (i, f) in freezes.iter().enumerate() {
        let key = |k: &str| {
            if k.is_empty() {
                format!("freezes[{i}]")
            } else {
                format!("freezes[{i}].{k}")
            }
        };
        if f.name.trim().is_empty() {
            return Err((key("name"), "a freeze needs a name".into()));
        }
        if freezes[..i].iter().any(|o| o.name == f.name) {
            return Err((key("name"), format!("freeze name '{}' is used twice", f.name)));
        }
        if f.reason.trim().is_empty() {
            return Err((key("reason"), "a freeze needs a reason (refusals show it)".into()));
        }
        if f.environments.is_empty() {
            return Err((key("environments"), "list the environments it freezes (or '*')".into()));
        }
        // A plain name that is not configured is a typo that would leave the environment it
        // meant unfrozen; a pattern matching nothing may be on purpose (see `warnings`).
        for p in f.environments.iter().filter(|p| !p.contains('*')) {
            if !settings.environments.contains_key(p) {
                let known: Vec<&str> = settings.environments.keys().map(String::as_str).collect();
                return Err((
                    key("environments"),
                    format!("unknown environment '{p}'; configured: {}", known.join(", ")),
                ));
            }
        }
        match f.timing().map_err(|(k, e)| (key(k), e))? {
            Timing::Recurring { cron, duration } => {
                check_no_overlap(f, &cron, duration, now).map_err(|e| (key("duration"), e))?
            }
            Timing::Fixed(_) => {}
        }
    }
    Ok(())
}

/// Refuses a recurring freeze whose window outlasts the gap to its next start (it would lift
/// at surprising times), or whose windows follow each other without a break for longer than
/// [`MAX_FREEZE_DAYS`] (it would never lift).
fn check_no_overlap(f: &FreezeSettings, cron: &Cron, duration: Duration, now: DateTime<Utc>) -> Result<(), String> {
    let tz = f.time_zone();
    let Some(mut start) = start_after(cron, tz, now) else {
        return Ok(());
    };
    let horizon = now + Duration::days(CHECK_HORIZON_DAYS);
    // Where the current run of back-to-back windows began.
    let mut run_start = start;
    for _ in 0..CHECK_MAX_STARTS {
        let Some(next) = start_after(cron, tz, start).filter(|&n| n <= horizon) else {
            break;
        };
        let end = start + duration;
        if next < end {
            return Err(format!(
                "{} is longer than the {} between the starts at {} and {}: the windows overlap",
                format_duration(duration),
                format_duration(next - start),
                format_local(start, tz),
                format_local(next, tz)
            ));
        }
        if next > end {
            run_start = next;
        } else if next + duration - run_start > Duration::days(MAX_FREEZE_DAYS) {
            return Err(format!(
                "the windows follow each other without a break from {} for more than {MAX_FREEZE_DAYS} days",
                format_local(run_start, tz)
            ));
        }
        start = next;
    }
    Ok(())
}

/// Freezes that can never hold and fixed windows that are over: `argos check` shows them.
pub fn warnings(freezes: &[FreezeSettings], envs: &[String], now: DateTime<Utc>) -> Vec<String> {
    let mut out = Vec::new();
    for f in freezes {
        for p in &f.environments {
            if !envs.iter().any(|e| pattern_matches(p, e)) {
                out.push(format!(
                    "freeze '{}': environment pattern '{p}' matches no configured environment",
                    f.name
                ));
            }
        }
        if let Ok(Timing::Fixed(w)) = f.timing() {
            if w.end <= now {
                out.push(format!(
                    "freeze '{}' ended at {}: remove it",
                    f.name,
                    format_local(w.end, f.time_zone())
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
