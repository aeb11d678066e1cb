//! Wall-clock time that follows tokio's clock: in production it is the real time; in tests
//! with paused time (`tokio::time::pause`, `advance`) approval expiries and schedules move
//! with the paused clock instead of sleeping. Also human durations (`1h30m`), read and shown
//! one way for the config and the chat grammar.

use std::cell::Cell;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

thread_local! {
    static ANCHOR: Cell<Option<(Instant, DateTime<Utc>)>> = const { Cell::new(None) };
}

/// The current time.
pub fn now() -> DateTime<Utc> {
    ANCHOR.with(|a| {
        let (instant, wall) = a.get().unwrap_or_else(|| {
            let anchor = (Instant::now(), Utc::now());
            a.set(Some(anchor));
            anchor
        });
        let elapsed = Instant::now().saturating_duration_since(instant);
        wall + chrono::Duration::from_std(elapsed).unwrap_or_default()
    })
}

/// Re-anchors this thread's clock to tokio's current instant (tests call it first, inside
/// their runtime).
pub fn reset() {
    ANCHOR.with(|a| a.set(Some((Instant::now(), Utc::now()))));
}

/// Sleeps until a wall-clock time, on tokio's clock.
pub async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(d) = (at - now()).to_std() {
        tokio::time::sleep(d).await;
    }
}

/// The longest duration [`parse_duration`] accepts: ten years. Anything longer is a typo, and
/// adding it to a time could overflow the calendar.
pub const MAX_DURATION_DAYS: i64 = 3650;

/// The units a human duration may use, largest first (a duration must name them in this
/// order), each with its spellings and its length in seconds. A unit is matched as a whole
/// word, so `min` is minutes and `mo` is refused rather than read as minutes.
const UNITS: &[(&[&str], i64)] = &[
    (&["w", "wk", "wks", "week", "weeks"], 7 * 86_400),
    (&["d", "day", "days"], 86_400),
    (&["h", "hr", "hrs", "hour", "hours"], 3_600),
    (&["m", "min", "mins", "minute", "minutes"], 60),
    (&["s", "sec", "secs", "second", "seconds"], 1),
];

/// Reads a human duration: one or more `<number><unit>` parts, largest unit first, each unit
/// at most once, optionally separated by spaces: `30m`, `2h`, `1h30m`, `1h 30m`, `2d`, `90s`,
/// `1w`, `2 hours`. Units: w, d, h, m, s (also spelled out: `weeks`, `days`, `hours`,
/// `min`/`minutes`, `sec`/`seconds`), in any case. Zero, a bare number, an unknown unit, a
/// repeated or out-of-order unit and anything over [`MAX_DURATION_DAYS`] are refused with a
/// message that says what a duration looks like.
pub fn parse_duration(text: &str) -> Result<chrono::Duration, String> {
    let shown = crate::names::quote(text);
    let hint = "write it like 30m, 2h, 1h30m or 2d";
    let lower = text.trim().to_ascii_lowercase();
    if lower.is_empty() {
        return Err(format!("a duration is needed; {hint}"));
    }
    let mut rest = lower.as_str();
    let mut total: i64 = 0;
    // The index in UNITS of the last unit seen: the next one must be smaller.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{shown} is not a duration; {hint}"));
        }
        let (number, after) = rest.split_at(digits);
        let after = after.trim_start();
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        if unit.is_empty() && after.is_empty() {
            return Err(format!("{shown} has a number without a unit (s, m, h, d or w); {hint}"));
        }
        if unit.is_empty() {
            return Err(format!("{shown} is not a duration; {hint}"));
        }
        let Some(index) = UNITS.iter().position(|(names, _)| names.contains(&unit)) else {
            return Err(format!(
                "{shown}: unknown unit {}; use s, m, h, d or w",
                crate::names::quote(unit)
            ));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(format!(
                "{shown}: give each unit once, largest first (like 1h30m); {hint}"
            ));
        }
        last_unit = Some(index);
        let too_long = || format!("{shown} is too long; at most {MAX_DURATION_DAYS} days");
        let number: i64 = number.parse().map_err(|_| too_long())?;
        total = number
            .checked_mul(UNITS[index].1)
            .and_then(|s| total.checked_add(s))
            .filter(|&s| s <= MAX_DURATION_DAYS * 86_400)
            .ok_or_else(too_long)?;
        rest = after.trim_start();
    }
    if total == 0 {
        return Err(format!("{shown} is zero; a duration must be at least 1s"));
    }
    Ok(chrono::Duration::seconds(total))
}

/// Shows a duration the way people write it, largest unit first, zero parts left out and
/// seconds below one dropped: `3d 4h`, `2h 5m`, `45m`, `1m 30s`, `0s`; negative ones with a
/// leading `-`. [`parse_duration`] reads the result back to the same whole seconds (weeks are
/// shown as days: `14d`).
pub fn format_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    let sign = if seconds < 0 { "-" } else { "" };
    let mut left = seconds.unsigned_abs();
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400u64), ("h", 3_600), ("m", 60), ("s", 1)] {
        let n = left / size;
        left %= size;
        if n > 0 {
            parts.push(format!("{n}{unit}"));
        }
    }
    if parts.is_empty() {
        return "0s".into();
    }
    format!("{sign}{}", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use proptest::prelude::*;

    #[test]
    fn durations_people_write_are_read() {
        let cases = [
            ("30m", 30 * 60),
            ("2h", 2 * 3600),
            ("1h30m", 90 * 60),
            ("1h 30m", 90 * 60),
            ("2d", 2 * 86_400),
            ("90s", 90),
            ("90m", 90 * 60),
            ("1w", 7 * 86_400),
            ("2 hours", 2 * 3600),
            ("1 day 2 hours", 26 * 3600),
            ("3D4H", 3 * 86_400 + 4 * 3600),
            ("  45min ", 45 * 60),
            ("62h", 62 * 3600),
            ("3650d", 3650 * 86_400),
        ];
        for (text, seconds) in cases {
            assert_eq!(parse_duration(text), Ok(Duration::seconds(seconds)), "{text}");
        }
    }

    #[test]
    fn junk_zero_and_overflow_are_refused_with_a_reason() {
        let cases = [
            ("", "a duration is needed"),
            ("   ", "a duration is needed"),
            ("0m", "is zero"),
            ("0h0m", "is zero"),
            ("2", "without a unit"),
            ("h", "is not a duration"),
            ("2x", "unknown unit 'x'"),
            ("1.5h", "is not a duration"),
            ("-2h", "is not a duration"),
            ("+2h", "is not a duration"),
            ("30m1h", "largest first"),
            ("1h1h", "largest first"),
            ("2h foo", "is not a duration"),
            ("3651d", "too long"),
            ("522w", "too long"),
            ("99999999999999999999999s", "too long"),
            ("9223372036854775807d", "too long"),
            ("3650d 1s", "too long"),
        ];
        for (text, expected) in cases {
            let e = parse_duration(text).expect_err(text);
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn durations_are_shown_largest_unit_first_without_zero_parts() {
        let cases = [
            (0, "0s"),
            (45 * 60, "45m"),
            (2 * 3600 + 5 * 60, "2h 5m"),
            (3 * 86_400 + 4 * 3600, "3d 4h"),
            (90, "1m 30s"),
            (86_400 + 1, "1d 1s"),
            (-(2 * 3600), "-2h"),
        ];
        for (seconds, text) in cases {
            assert_eq!(format_duration(Duration::seconds(seconds)), text, "{seconds}");
        }
        assert_eq!(format_duration(Duration::milliseconds(59_999)), "59s");
    }

    proptest! {
        /// Every whole-second duration up to the limit survives format then parse unchanged,
        /// and what is read back formats the same way again.
        #[test]
        fn durations_round_trip(seconds in 1i64..=MAX_DURATION_DAYS * 86_400) {
            let shown = format_duration(Duration::seconds(seconds));
            let read = parse_duration(&shown);
            prop_assert_eq!(read.clone(), Ok(Duration::seconds(seconds)), "{}", shown);
            prop_assert_eq!(format_duration(read.unwrap()), shown);
        }

        /// Whatever is typed, the parser answers (never panics) and what it accepts is
        /// positive and within the limit.
        #[test]
        fn any_text_is_answered_without_panic(text in "[0-9a-zA-Z .+-]{0,16}") {
            if let Ok(d) = parse_duration(&text) {
                prop_assert!(d > Duration::zero() && d <= Duration::days(MAX_DURATION_DAYS));
            }
        }
    }
}
