//! `holds:`: how long a hold lasts when nobody says, how long it may last at most, when its
//! holder is reminded, and whether a rollback holds the environment. Durations are written
//! as people say them (`4h`, `30m`, `1d`) and checked when the config loads.

use std::time::Duration;

use serde::Deserialize;

use crate::clock::parse_duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HoldSettings {
    /// A hold's length when `for` is not given.
    pub default: String,
    /// The longest hold anyone may take (so no hold outlives a forgotten holder for long).
    pub max: String,
    /// The holder is reminded this long before the hold lapses.
    pub remind_before: String,
    /// After a rollback the environment is held by who rolled back ("rolled back from
    /// <sha>") for `max`, until they release it: nobody deploys the bad commit again meanwhile.
    pub after_rollback: bool,
}

impl Default for HoldSettings {
    fn default() -> Self {
        HoldSettings {
            default: "4h".into(),
            max: "24h".into(),
            remind_before: "15m".into(),
            after_rollback: true,
        }
    }
}

/// The same, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldTimes {
    pub default: Duration,
    pub max: Duration,
    pub remind_before: Duration,
}

impl HoldSettings {
    /// The durations, or the key and what is wrong with it.
    pub fn times(&self) -> Result<HoldTimes, (String, String)> {
        let read = |key: &str, text: &str| {
            parse_duration(text)
                .and_then(|d| d.to_std().map_err(|_| "a duration must be positive".to_string()))
                .map_err(|e| (format!("holds.{key}"), e))
        };
        let times = HoldTimes {
            default: read("default", &self.default)?,
            max: read("max", &self.max)?,
            remind_before: read("remind_before", &self.remind_before)?,
        };
        if times.default > times.max {
            return Err((
                "holds.default".into(),
                format!("{} is longer than holds.max ({})", self.default, self.max),
            ));
        }
        Ok(times)
    }

    /// [`HoldSettings::times`] of a config that loaded (its check passed).
    pub fn checked_times(&self) -> HoldTimes {
        self.times().unwrap_or(HoldTimes {
            default: Duration::from_secs(4 * 3600),
            max: Duration::from_secs(24 * 3600),
            remind_before: Duration::from_secs(15 * 60),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_read_and_bad_values_name_their_key() {
        let t = HoldSettings::default().times().unwrap();
        assert_eq!(t.default, Duration::from_secs(4 * 3600));
        assert_eq!(t.max, Duration::from_secs(24 * 3600));
        let bad = HoldSettings {
            max: "forever".into(),
            ..Default::default()
        };
        assert_eq!(bad.times().unwrap_err().0, "holds.max");
        let inverted = HoldSettings {
            default: "2d".into(),
            ..Default::default()
        };
        let (key, why) = inverted.times().unwrap_err();
        assert_eq!(key, "holds.default");
        assert!(why.contains("longer than holds.max"), "{why}");
    }
}
