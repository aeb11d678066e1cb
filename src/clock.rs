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
