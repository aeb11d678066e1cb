//! Wall-clock time that follows tokio's clock: in production it is the real time; in tests
//! with paused time (`tokio::time::pause`, `advance`) approval expiries and schedules move
//! with the paused clock instead of sleeping.

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

/// Reads a human duration: `90s`, `30m`, `2h`, `1h30m`, `2d`. Zero and junk are refused.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a duration is empty (try 30m, 2h, 1d)".into());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(format!("not a duration (try 30m, 2h, 1d): unexpected '{c}'")),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| "not a duration (try 30m, 2h, 1d): a unit without a number".to_string())?;
        number.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .filter(|t| *t <= 366 * 86_400)
            .ok_or("longer than a year")?;
    }
    if !number.is_empty() {
        return Err("not a duration (try 30m, 2h, 1d): a number without a unit".into());
    }
    if total == 0 {
        return Err("a duration of zero".into());
    }
    Ok(std::time::Duration::from_secs(total))
}

/// `2h 5m`, `45m`, `3d 4h`, `30s`: the two largest units.
pub fn format_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}
