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
/// falls exactly where the last one ends): enough for any sane schedule, and a bound on the
/// work for a pathological one.
const MAX_CHAINED_WINDOWS: usize = 1000;

/// How many starts of a recurring freeze the load-time check looks at for overlapping windows.
const OVERLAP_CHECK_STARTS: usize = 1000;

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

/// The first start of `cron` in `tz` after `t` (or at `t`, when `inclusive`).
fn start_after(cron: &Cron, tz: Tz, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&t.with_timezone(&tz), inclusive)
        .ok()
        .map(|s| s.with_timezone(&Utc))
}

/// The window that starts at `start`, running on through any window that starts before or
/// exactly when it ends (so its end is when the freeze really lifts).
fn window_from(cron: &Cron, tz: Tz, duration: Duration, start: DateTime<Utc>) -> Window {
    let mut end = start + duration;
    let mut cursor = start;
    for _ in 0..MAX_CHAINED_WINDOWS {
        match start_after(cron, tz, cursor, false) {
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
            let start = start_after(&cron, tz, now - duration, false)?;
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
                let Some(start) = start_after(&cron, tz, cursor, false) else {
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

/// Refuses a recurring freeze whose window outlasts the gap to its next start: it would
/// never lift (or lift at surprising times).
fn check_no_overlap(f: &FreezeSettings, cron: &Cron, duration: Duration, now: DateTime<Utc>) -> Result<(), String> {
    let tz = f.time_zone();
    let Some(mut start) = start_after(cron, tz, now, false) else {
        return Ok(());
    };
    for _ in 0..OVERLAP_CHECK_STARTS {
        let Some(next) = start_after(cron, tz, start, false) else {
            break;
        };
        if next < start + duration {
            return Err(format!(
                "{} is longer than the {} between the starts at {} and {}: the windows overlap",
                format_duration(duration),
                format_duration(next - start),
                format_local(start, tz),
                format_local(next, tz)
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
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window(start: &str, end: &str) -> Window {
        Window {
            start: at(start),
            end: at(end),
        }
    }

    fn recurring(name: &str, envs: &[&str], cron: &str, duration: &str, tz: &str) -> FreezeSettings {
        FreezeSettings {
            name: name.into(),
            environments: envs.iter().map(|e| e.to_string()).collect(),
            reason: "weekend".into(),
            timezone: tz.into(),
            cron: Some(cron.into()),
            duration: Some(duration.into()),
            from: None,
            until: None,
        }
    }

    fn fixed(name: &str, envs: &[&str], from: &str, until: &str, tz: &str) -> FreezeSettings {
        FreezeSettings {
            name: name.into(),
            environments: envs.iter().map(|e| e.to_string()).collect(),
            reason: "holidays".into(),
            timezone: tz.into(),
            cron: None,
            duration: None,
            from: Some(from.into()),
            until: Some(until.into()),
        }
    }

    fn settings(freezes: Vec<FreezeSettings>) -> Settings {
        let mut s: Settings =
            serde_saphyr::from_str("environments:\n  staging: {}\n  production: {}\n  qa-1: {}\n").unwrap();
        s.freezes = freezes;
        s
    }

    fn check_at(freezes: Vec<FreezeSettings>) -> Result<(), (String, String)> {
        check(&settings(freezes), at("2026-12-07T03:00:00Z"))
    }

    #[test]
    fn a_friday_evening_freeze_starts_at_18_local_in_summer_and_in_winter() {
        let f = recurring("weekend", &["production"], "0 18 * * FRI", "62h", "Europe/Berlin");
        // Summer (CEST, UTC+2): Friday 2026-07-03 18:00 local is 16:00 UTC, Monday 08:00 local.
        let summer = window("2026-07-03T16:00:00Z", "2026-07-06T06:00:00Z");
        assert_eq!(active_at(&f, at("2026-07-04T12:00:00Z")), Some(summer));
        assert_eq!(
            active_at(&f, at("2026-07-03T16:00:00Z")),
            Some(summer),
            "the start is in"
        );
        assert_eq!(active_at(&f, at("2026-07-06T06:00:00Z")), None, "the end is out");
        assert_eq!(active_at(&f, at("2026-07-03T15:59:59Z")), None);
        // Winter (CET, UTC+1): 18:00 local is 17:00 UTC.
        let winter = window("2026-12-11T17:00:00Z", "2026-12-14T07:00:00Z");
        assert_eq!(active_at(&f, at("2026-12-13T23:00:00Z")), Some(winter));
        // Monday 04:00 local is still in the window of Friday 4th; the next one follows.
        let before = window("2026-12-04T17:00:00Z", "2026-12-07T07:00:00Z");
        assert_eq!(next_windows(&f, at("2026-12-07T03:00:00Z"), 2), vec![before, winter]);
        assert_eq!(next_windows(&f, at("2026-12-07T07:00:00Z"), 1), vec![winter]);
    }

    #[test]
    fn windows_across_a_dst_change_start_at_the_same_local_time() {
        let f = recurring("weekend", &["production"], "0 18 * * FRI", "62h", "Europe/Berlin");
        // Europe/Berlin falls back on Sunday 2026-10-25: the window from Friday 23rd is still
        // 62 hours long (so it ends at 07:00 local), and the next starts at 18:00 CET.
        let windows = next_windows(&f, at("2026-10-20T00:00:00Z"), 3);
        assert_eq!(
            windows,
            vec![
                window("2026-10-23T16:00:00Z", "2026-10-26T06:00:00Z"),
                window("2026-10-30T17:00:00Z", "2026-11-02T07:00:00Z"),
                window("2026-11-06T17:00:00Z", "2026-11-09T07:00:00Z"),
            ]
        );
        let tz = f.time_zone();
        assert_eq!(format_local(windows[0].start, tz), "2026-10-23 18:00 CEST");
        assert_eq!(format_local(windows[0].end, tz), "2026-10-26 07:00 CET");
        assert_eq!(format_local(windows[1].start, tz), "2026-10-30 18:00 CET");
        // Inside the window, on the far side of the change.
        assert_eq!(active_at(&f, at("2026-10-25T12:00:00Z")), Some(windows[0]));
        // Spring forward: Friday 2027-03-26 is still CET, the next Friday CEST.
        let spring = next_windows(&f, at("2027-03-23T00:00:00Z"), 2);
        assert_eq!(format_local(spring[0].start, tz), "2027-03-26 18:00 CET");
        assert_eq!(format_local(spring[1].start, tz), "2027-04-02 18:00 CEST");
    }

    #[test]
    fn a_nightly_window_spans_midnight() {
        let f = recurring("nightly", &["*"], "0 22 * * *", "8h", "America/New_York");
        // 22:00 EST is 03:00 UTC the next day; the window ends 06:00 local.
        let w = window("2026-12-08T03:00:00Z", "2026-12-08T11:00:00Z");
        assert_eq!(
            active_at(&f, at("2026-12-08T05:30:00Z")),
            Some(w),
            "after midnight local"
        );
        assert_eq!(
            active_at(&f, at("2026-12-08T03:30:00Z")),
            Some(w),
            "before midnight local"
        );
        assert_eq!(active_at(&f, at("2026-12-08T12:00:00Z")), None);
        assert_eq!(
            next_windows(&f, at("2026-12-08T05:30:00Z"), 2),
            vec![w, window("2026-12-09T03:00:00Z", "2026-12-09T11:00:00Z")]
        );
    }

    #[test]
    fn a_fixed_window_holds_between_from_and_until_in_its_time_zone() {
        let f = fixed(
            "holidays",
            &["production"],
            "2026-12-24 00:00",
            "2027-01-02",
            "Europe/Berlin",
        );
        let w = window("2026-12-23T23:00:00Z", "2027-01-01T23:00:00Z");
        assert_eq!(
            next_windows(&f, at("2026-12-07T00:00:00Z"), 2),
            vec![w],
            "one window only"
        );
        assert_eq!(active_at(&f, at("2026-12-07T00:00:00Z")), None);
        assert_eq!(active_at(&f, at("2026-12-23T23:00:00Z")), Some(w));
        assert_eq!(active_at(&f, at("2027-01-01T22:59:59Z")), Some(w));
        assert_eq!(active_at(&f, at("2027-01-01T23:00:00Z")), None);
        assert_eq!(next_windows(&f, at("2027-01-02T00:00:00Z"), 2), vec![], "over");
        // RFC 3339 carries its own offset, whatever the time zone.
        let g = fixed(
            "g",
            &["*"],
            "2026-12-24T00:00:00+05:00",
            "2026-12-24T10:00:00Z",
            "Europe/Berlin",
        );
        assert_eq!(
            active_at(&g, at("2026-12-24T00:00:00Z")),
            Some(window("2026-12-23T19:00:00Z", "2026-12-24T10:00:00Z"))
        );
    }

    #[test]
    fn back_to_back_windows_are_one_that_lifts_when_the_last_ends() {
        // Saturday and Sunday, each 24h: one freeze from Saturday 00:00 to Monday 00:00.
        let f = recurring("weekend", &["*"], "0 0 * * SAT,SUN", "24h", "UTC");
        let w = window("2026-12-12T00:00:00Z", "2026-12-14T00:00:00Z");
        assert_eq!(active_at(&f, at("2026-12-12T10:00:00Z")), Some(w));
        assert_eq!(
            active_at(&f, at("2026-12-13T10:00:00Z")),
            Some(window("2026-12-13T00:00:00Z", "2026-12-14T00:00:00Z"))
        );
        assert_eq!(
            next_windows(&f, at("2026-12-07T00:00:00Z"), 2),
            vec![w, window("2026-12-19T00:00:00Z", "2026-12-21T00:00:00Z")]
        );
    }

    #[test]
    fn the_freeze_that_lifts_last_is_the_one_named() {
        let nightly = recurring("nightly", &["production", "staging"], "0 22 * * *", "8h", "UTC");
        let holidays = fixed("holidays", &["prod*"], "2026-12-24", "2027-01-02", "UTC");
        let freezes = [nightly, holidays];
        let night = at("2026-12-25T23:00:00Z");
        let (f, w) = active_for(&freezes, "production", night).unwrap();
        assert_eq!((f.name.as_str(), w.end), ("holidays", at("2027-01-02T00:00:00Z")));
        let (f, _) = active_for(&freezes, "staging", night).unwrap();
        assert_eq!(f.name, "nightly");
        assert!(active_for(&freezes, "qa-1", night).is_none(), "not covered");
        assert!(
            active_for(&freezes, "staging", at("2026-12-25T12:00:00Z")).is_none(),
            "daytime"
        );
    }

    #[test]
    fn bad_freezes_are_refused_naming_the_key() {
        let good = || recurring("weekend", &["production"], "0 18 * * FRI", "62h", "Europe/Berlin");
        assert_eq!(check_at(vec![good()]), Ok(()));
        assert_eq!(
            check_at(vec![fixed(
                "x",
                &["qa-*"],
                "2026-12-24 00:00",
                "2027-01-02 00:00",
                "UTC"
            )]),
            Ok(())
        );
        let cases: Vec<(FreezeSettings, &str, &str)> = vec![
            (
                FreezeSettings {
                    cron: Some("61 * * * *".into()),
                    ..good()
                },
                "freezes[1].cron",
                "invalid cron",
            ),
            (
                FreezeSettings {
                    timezone: "Mars/Olympus".into(),
                    ..good()
                },
                "freezes[1].timezone",
                "unknown time zone",
            ),
            (
                FreezeSettings {
                    duration: Some("0h".into()),
                    ..good()
                },
                "freezes[1].duration",
                "is zero",
            ),
            (
                FreezeSettings {
                    duration: Some("32d".into()),
                    ..good()
                },
                "freezes[1].duration",
                "longer than 31 days",
            ),
            (
                FreezeSettings {
                    duration: Some("soon".into()),
                    ..good()
                },
                "freezes[1].duration",
                "not a duration",
            ),
            (
                FreezeSettings {
                    duration: None,
                    ..good()
                },
                "freezes[1].duration",
                "needs a duration",
            ),
            (
                FreezeSettings { cron: None, ..good() },
                "freezes[1].cron",
                "needs a cron",
            ),
            (
                FreezeSettings {
                    from: Some("2026-12-24".into()),
                    ..good()
                },
                "freezes[1]",
                "not both",
            ),
            (
                FreezeSettings {
                    cron: None,
                    duration: None,
                    ..good()
                },
                "freezes[1]",
                "either cron and duration",
            ),
            (
                FreezeSettings {
                    reason: " ".into(),
                    ..good()
                },
                "freezes[1].reason",
                "needs a reason",
            ),
            (
                FreezeSettings {
                    name: "".into(),
                    ..good()
                },
                "freezes[1].name",
                "needs a name",
            ),
            (
                FreezeSettings {
                    environments: vec![],
                    ..good()
                },
                "freezes[1].environments",
                "list the environments",
            ),
            (
                FreezeSettings {
                    environments: vec!["prod".into()],
                    ..good()
                },
                "freezes[1].environments",
                "unknown environment 'prod'",
            ),
            (
                FreezeSettings {
                    name: "first".into(),
                    ..good()
                },
                "freezes[1].name",
                "used twice",
            ),
            (
                FreezeSettings {
                    cron: Some("0 18 * * *".into()),
                    duration: Some("25h".into()),
                    ..good()
                },
                "freezes[1].duration",
                "the windows overlap",
            ),
            (
                fixed("w", &["*"], "2026-12-24", "2026-12-24", "UTC"),
                "freezes[1].until",
                "is not after from",
            ),
            (
                fixed("w", &["*"], "2026-12-24", "2027-02-24", "UTC"),
                "freezes[1].until",
                "longer than 31 days",
            ),
            (
                fixed("w", &["*"], "Christmas", "2027-01-02", "UTC"),
                "freezes[1].from",
                "is not a time",
            ),
            (
                fixed("w", &["*"], "2026-03-29 02:30", "2026-03-30", "Europe/Berlin"),
                "freezes[1].from",
                "clocks skip it",
            ),
            (
                FreezeSettings {
                    until: None,
                    ..fixed("w", &["*"], "2026-12-24", "x", "UTC")
                },
                "freezes[1].until",
                "needs until",
            ),
        ];
        for (bad, key, message) in cases {
            let first = FreezeSettings {
                name: "first".into(),
                ..good()
            };
            let (k, e) = check_at(vec![first, bad.clone()]).expect_err(key);
            assert_eq!(k, key, "{bad:?}: {e}");
            assert!(e.contains(message), "{bad:?}: {e}");
        }
    }

    #[test]
    fn patterns_that_match_nothing_and_windows_that_are_over_are_warned_about() {
        let envs = vec!["staging".to_string(), "production".to_string()];
        let freezes = [
            fixed("old", &["prod*", "qa-*"], "2025-12-24", "2026-01-02", "UTC"),
            recurring("weekend", &["*"], "0 18 * * FRI", "62h", "UTC"),
        ];
        let w = warnings(&freezes, &envs, at("2026-12-07T00:00:00Z"));
        assert_eq!(
            w,
            vec![
                "freeze 'old': environment pattern 'qa-*' matches no configured environment".to_string(),
                "freeze 'old' ended at 2026-01-02 00:00 UTC: remove it".to_string(),
            ]
        );
    }

    #[test]
    fn the_timing_is_described_for_people() {
        let f = recurring("weekend", &["*"], "0 18 * * FRI", "62h", "UTC");
        assert_eq!(f.describe_timing(), "`0 18 * * FRI` for 2d 14h");
        assert_eq!(
            fixed("h", &["*"], "2026-12-24", "2027-01-02", "UTC").describe_timing(),
            "fixed window"
        );
    }
}
