//! Scheduled cleanup reports, the pure half: when each schedule is due (cron in its time zone),
//! what a report finds (stale environments, stacks in failed states, leftover image builds and
//! unused images, each with the clean or decommission that deals with it), and the
//! `schedules` listing, which also shows the configured freezes and their next windows.
//! Posting them, claimed once across replicas, is `bot::announce`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::cloud::{image, instances};
use crate::config::freezes::{format_local, next_windows};
use crate::config::{parse_cron, FreezeSettings, ScheduleSettings};
use crate::engine::Engine;
use crate::error::Result;
use crate::names::{image_name, image_stack, tags};
use crate::store::Store;

/// The first due time strictly after `after`.
pub fn next_due(s: &ScheduleSettings, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron = parse_cron(&s.cron).ok()?;
    let tz: Tz = s.timezone.parse().ok()?;
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The latest due time in (`since`, `now`], if any: what a catch-up run makes up for.
pub fn missed_since(s: &ScheduleSettings, since: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut last = None;
    let mut t = since;
    // Bounded: a schedule that fires every minute and a bot down for a year is 525,600 steps,
    // well within reason, and anything longer is cut.
    for _ in 0..600_000 {
        match next_due(s, t) {
            Some(n) if n <= now => {
                last = Some(n);
                t = n;
            }
            _ => break,
        }
    }
    last
}

/// One thing the announcement reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub text: String,
    /// The command that deals with it, if the bot can.
    pub command: Option<String>,
}

/// Looks at AWS and the job history and lists what costs money for nothing.
pub async fn gather(engine: &Engine, store: &Store, s: &ScheduleSettings, now: DateTime<Utc>) -> Result<Vec<Item>> {
    let envs: Vec<String> = engine.config.settings.environments.keys().cloned().collect();
    let mut items = Vec::new();
    // Each account once: environments that live in another account are looked at there.
    for (aws, here) in engine.accounts.distinct() {
        items.extend(gather_account(engine, store, s, now, &aws, &envs, &here).await?);
    }
    Ok(items)
}

/// What one account holds; `here` are the environments that live in it (a clean of the
/// image is offered through one of them).
async fn gather_account(
    engine: &Engine,
    store: &Store,
    s: &ScheduleSettings,
    now: DateTime<Utc>,
    aws: &crate::cloud::Aws,
    envs: &[String],
    here: &[String],
) -> Result<Vec<Item>> {
    let app = engine.config.vars.app_name.clone();
    let mut items = Vec::new();

    // Every stack of the app, paged.
    let stacks = crate::cloud::stack::all(aws).await?;
    let tag = |st: &aws_sdk_cloudformation::types::Stack, k: &str| {
        st.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    let mut images_in_use = Vec::new();
    let running = instances::find(
        aws,
        &[(tags::APP, &app)],
        &["pending", "running", "stopping", "stopped"],
    )
    .await?;
    for st in &stacks {
        if tag(st, tags::APP).as_deref() != Some(app.as_str()) {
            continue;
        }
        let name = st.stack_name().unwrap_or_default().to_string();
        let status = st.stack_status().map(|x| x.as_str().to_string()).unwrap_or_default();
        if status == "DELETE_COMPLETE" {
            continue;
        }
        if let Some(p) = st.parameters().iter().find(|p| p.parameter_key() == Some("ImageId")) {
            images_in_use.extend(p.parameter_value().map(str::to_string));
        }
        if name == image_stack(&app) {
            items.push(Item {
                text: format!("leftover image build stack {name} ({status})"),
                command: here.first().map(|e| format!("{e} clean")),
            });
            continue;
        }
        let Some(env) = tag(st, tags::ENV) else { continue };
        let configured = envs.contains(&env);
        let decommission = configured.then(|| format!("{env} decommission"));
        let fleet = fleet(&running, &env);
        if status.ends_with("_FAILED") || status == "ROLLBACK_COMPLETE" {
            items.push(Item {
                text: format!("stack {name} is {status}{fleet}"),
                command: decommission.clone(),
            });
            continue;
        }
        let created = st.creation_time().and_then(|t| DateTime::from_timestamp(t.secs(), 0));
        let age = created.map(|c| (now - c).num_days()).unwrap_or(0);
        let last_deploy = store
            .last_success(&env, &["commission", "deploy", "update"])
            .ok()
            .flatten()
            .or(created);
        let idle = last_deploy.map(|d| (now - d).num_days()).unwrap_or(0);
        if age >= s.stale_after_days || idle >= s.stale_after_days {
            let why = if idle >= s.stale_after_days {
                format!("no deploy for {idle} day(s)")
            } else {
                format!("{age} day(s) old")
            };
            items.push(Item {
                text: format!("environment {env} ({name}): {why}{fleet}"),
                command: decommission,
            });
        }
    }
    let builders: Vec<_> = running
        .iter()
        .filter(|i| i.tag(tags::GROUP) == Some(tags::IMAGE_GROUP))
        .collect();
    if !builders.is_empty() {
        let ids: Vec<&str> = builders.iter().map(|i| i.id.as_str()).collect();
        items.push(Item {
            text: format!(
                "leftover image build instance(s) {} ({})",
                ids.join(", "),
                builders[0].instance_type
            ),
            command: here.first().map(|e| format!("{e} clean")),
        });
    }
    for img in image::find_images(aws, &app, &image_name(&app)).await? {
        let age = img.age_days(now).unwrap_or(0);
        if !images_in_use.contains(&img.id) && age >= s.unused_image_days {
            items.push(Item {
                text: format!(
                    "image {} ({}) is used by no stack and {age} day(s) old, {} snapshot(s)",
                    img.id,
                    img.name,
                    img.snapshots.len()
                ),
                command: here.first().map(|e| format!("{e} clean")),
            });
        }
    }
    Ok(items)
}

/// ` — 2× t3.small, 1× t3.medium`
fn fleet(running: &[instances::InstanceInfo], env: &str) -> String {
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for i in running.iter().filter(|i| i.tag(tags::ENV) == Some(env)) {
        *by_type.entry(i.instance_type.as_str()).or_default() += 1;
    }
    if by_type.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = by_type.iter().map(|(t, n)| format!("{n}× {t}")).collect();
    format!(" — {}", parts.join(", "))
}

/// `schedules`: each schedule and its next run, then each configured freeze and its windows.
pub fn describe(config: &crate::config::Config) -> String {
    let now = crate::clock::now();
    let mut out = describe_schedules(&config.settings.schedules, now);
    if !config.settings.freezes.is_empty() {
        out.push('\n');
        out.push_str(&describe_freezes(&config.settings.freezes, now));
    }
    out
}

/// Each cleanup schedule and its next run.
fn describe_schedules(schedules: &[ScheduleSettings], now: DateTime<Utc>) -> String {
    if schedules.is_empty() {
        return "No schedules are configured.".into();
    }
    schedules
        .iter()
        .map(|s| {
            let next = next_due(s, now).map(|t| {
                t.with_timezone(&s.timezone.parse::<Tz>().unwrap_or(Tz::UTC))
                    .format("%Y-%m-%d %H:%M %Z")
                    .to_string()
            });
            format!(
                "• {} `{}` ({}) → {} {}: next {}",
                s.name,
                s.cron,
                s.timezone,
                s.platform,
                s.channel,
                next.unwrap_or_else(|| "never".into())
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each configured freeze: its name, environments, timing and reason, then its next two
/// windows in its own time zone (the one holding now as "active until …").
pub fn describe_freezes(freezes: &[FreezeSettings], now: DateTime<Utc>) -> String {
    let mut lines = vec!["Freezes:".to_string()];
    for f in freezes {
        let tz = f.time_zone();
        let windows = next_windows(f, now, 2);
        let span =
            |w: &crate::config::freezes::Window| format!("{} → {}", format_local(w.start, tz), format_local(w.end, tz));
        let when = match windows.as_slice() {
            [] => "no window to come".to_string(),
            [first, rest @ ..] if first.contains(now) => {
                let mut text = format!("active until {}", format_local(first.end, tz));
                if let Some(next) = rest.first() {
                    text.push_str(&format!("; next {}", span(next)));
                }
                text
            }
            all => format!("next {}", all.iter().map(span).collect::<Vec<_>>().join(", then ")),
        };
        lines.push(format!(
            "• {} on {} ({}, {}): {}: {when}",
            f.name,
            f.environments.join(", "),
            f.describe_timing(),
            f.timezone,
            f.reason
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(cron: &str, tz: &str) -> ScheduleSettings {
        ScheduleSettings {
            name: "weekly".into(),
            cron: cron.into(),
            timezone: tz.into(),
            platform: "console".into(),
            channel: "ops".into(),
            stale_after_days: 14,
            unused_image_days: 30,
            kind: Default::default(),
            environments: vec![],
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_due_respects_the_time_zone() {
        // 09:00 in Berlin on Monday 2026-11-30 is 08:00 UTC (winter time).
        let s = sched("0 9 * * MON", "Europe/Berlin");
        assert_eq!(
            next_due(&s, at("2026-11-24T12:00:00Z")),
            Some(at("2026-11-30T08:00:00Z"))
        );
    }

    #[test]
    fn a_catch_up_covers_only_the_latest_missed_run() {
        let s = sched("0 9 * * *", "UTC");
        let missed = missed_since(&s, at("2026-11-20T09:00:00Z"), at("2026-11-24T12:00:00Z"));
        assert_eq!(missed, Some(at("2026-11-24T09:00:00Z")));
        assert_eq!(
            missed_since(&s, at("2026-11-24T09:00:00Z"), at("2026-11-24T12:00:00Z")),
            None
        );
    }

    fn freeze(name: &str, timing: (&str, &str), fixed: bool) -> FreezeSettings {
        let (a, b) = (Some(timing.0.to_string()), Some(timing.1.to_string()));
        FreezeSettings {
            name: name.into(),
            environments: vec!["production".into(), "qa-*".into()],
            reason: "no changes over the weekend".into(),
            timezone: "Europe/Berlin".into(),
            cron: if fixed { None } else { a.clone() },
            duration: if fixed { None } else { b.clone() },
            from: if fixed { a } else { None },
            until: if fixed { b } else { None },
        }
    }

    #[test]
    fn the_listing_shows_each_freeze_with_its_next_two_windows_in_its_time_zone() {
        let freezes = [
            freeze("weekend", ("0 18 * * FRI", "62h"), false),
            freeze("holidays", ("2026-12-24 00:00", "2027-01-02 00:00"), true),
        ];
        // Wednesday 2026-12-09: neither holds.
        let text = describe_freezes(&freezes, at("2026-12-09T12:00:00Z"));
        assert_eq!(
            text,
            "Freezes:\n\
             • weekend on production, qa-* (`0 18 * * FRI` for 2d 14h, Europe/Berlin): no changes over the weekend: \
             next 2026-12-11 18:00 CET → 2026-12-14 08:00 CET, then 2026-12-18 18:00 CET → 2026-12-21 08:00 CET\n\
             • holidays on production, qa-* (fixed window, Europe/Berlin): no changes over the weekend: \
             next 2026-12-24 00:00 CET → 2027-01-02 00:00 CET"
        );
        // Saturday 2026-12-26: both hold; after the holidays, the fixed one has nothing to come.
        let text = describe_freezes(&freezes, at("2026-12-26T12:00:00Z"));
        assert!(
            text.contains("active until 2026-12-28 08:00 CET; next 2027-01-01 18:00 CET → 2027-01-04 08:00 CET"),
            "{text}"
        );
        assert!(text.contains("active until 2027-01-02 00:00 CET"), "{text}");
        let text = describe_freezes(&freezes, at("2027-01-05T12:00:00Z"));
        assert!(
            text.contains("(fixed window, Europe/Berlin): no changes over the weekend: no window to come"),
            "{text}"
        );
    }
}
