//! The posting half of the scheduled cleanup announcements: at each due time (computed by
//! [`crate::schedule`]) the run is claimed in the store, so no announcement goes out twice even
//! across replicas and restarts, then the report is gathered, rendered with a button per
//! actionable item and posted to the schedule's channel. One catch-up run follows downtime.

use chrono::{DateTime, Utc};

use crate::address::ChatPlatform;
use crate::bot::port::{Button, OutgoingMessage};
use crate::bot::Bot;
use crate::config::ScheduleSettings;
use crate::schedule::{gather, missed_since, next_due, Item};
use crate::store::AuditEntry;

/// The announcement message, with a button per actionable item.
pub fn announcement(s: &ScheduleSettings, due: DateTime<Utc>, items: &[Item], prefix: &str) -> OutgoingMessage {
    let mut lines = vec![format!(
        "🧹 **Cleanup report** ({}, {})",
        s.name,
        due.format("%Y-%m-%d %H:%M UTC")
    )];
    if items.is_empty() {
        lines.push("Nothing to clean up: no stale environment, failed stack or leftover image.".into());
    }
    let mut buttons = Vec::new();
    for item in items {
        match &item.command {
            Some(c) => {
                lines.push(format!("• {} → `{prefix} {c}`", item.text));
                if buttons.len() < 5 && !buttons.iter().any(|b: &Button| &b.command == c) {
                    buttons.push(Button {
                        label: c.clone(),
                        command: c.clone(),
                    });
                }
            }
            None => lines.push(format!("• {}", item.text)),
        }
    }
    OutgoingMessage {
        text: lines.join("\n"),
        attachment: None,
        buttons,
    }
}

/// Runs one schedule's announcement for `due`, unless that run was already claimed.
pub async fn run_once(bot: &Bot, s: &ScheduleSettings, due: DateTime<Utc>) -> bool {
    match bot.store().claim_schedule_run(&s.name, due, "announced") {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            tracing::error!(schedule = %s.name, error = %e, "cannot record the schedule run");
            return false;
        }
    }
    let msg = match gather(bot.engine(), bot.store(), s, crate::clock::now()).await {
        Ok(items) => announcement(s, due, &items, &bot.engine().config.settings.chat.prefix),
        Err(e) => OutgoingMessage::text(format!(
            "🧹 Cleanup report ({}): could not look at AWS: {}",
            s.name,
            bot.engine().redactor.redact(&e.to_string())
        )),
    };
    match ChatPlatform::parse(&s.platform).ok().and_then(|p| bot.port(p)) {
        Some(port) => {
            if let Err(e) = port.send(&s.channel, msg).await {
                tracing::warn!(schedule = %s.name, error = %e, "cannot post the announcement");
            }
        }
        None => tracing::warn!(schedule = %s.name, platform = %s.platform, "the schedule's platform is not connected"),
    }
    let _ = bot.store().audit(AuditEntry::system(
        "schedule",
        &s.name,
        &s.channel,
        &format!("schedule {}", s.name),
        "announced",
        None,
    ));
    true
}

/// Runs every configured schedule until the task is dropped: one catch-up run for a due time
/// missed while the bot was down, then each due time as it comes.
pub async fn run_all(bot: Bot) {
    let schedules = bot.engine().config.settings.schedules.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for s in schedules {
        let bot = bot.clone();
        tasks.spawn(async move {
            if let Ok(Some(last)) = bot.store().last_schedule_run(&s.name) {
                if let Some(missed) = missed_since(&s, last, crate::clock::now()) {
                    run_once(&bot, &s, missed).await;
                }
            }
            loop {
                let Some(due) = next_due(&s, crate::clock::now()) else {
                    return;
                };
                crate::clock::sleep_until(due).await;
                run_once(&bot, &s, due).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}
