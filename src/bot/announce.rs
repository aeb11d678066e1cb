//! The posting half of the scheduled cleanup announcements: at each due time (computed by
//! [`crate::schedule`]) the run is claimed in the store, so no announcement goes out twice even
//! across replicas and restarts, then the report is gathered, rendered with a button per
//! actionable item and posted to the schedule's channel. One catch-up run follows downtime.

use chrono::{DateTime, Utc};

use crate::address::{ChatPlatform, Surface};
use crate::bot::port::{Button, OutgoingMessage};
use crate::bot::Bot;
use crate::command::Action;
use crate::config::{ScheduleKind, ScheduleSettings};
use crate::engine::{Ctx, DriftReport};
use crate::error::{Error, Result};
use crate::progress::ProgressTx;
use crate::schedule::{gather, missed_since, next_due, Item};
use crate::store::{AuditEntry, Checks, JobState, NewJob, StartOutcome};

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
    if s.kind == ScheduleKind::Drift {
        let changes = drift_changes(bot, s).await;
        if !changes.is_empty() {
            let prefix = &bot.engine().config.settings.chat.prefix;
            post(
                bot,
                s,
                OutgoingMessage::text(crate::bot::messages::drift_announcement(&s.name, &changes, prefix)),
            )
            .await;
        }
        audit_run(bot, s, &format!("drift checked: {} change(s) posted", changes.len()));
        return true;
    }
    let msg = match gather(bot.engine(), bot.store(), s, crate::clock::now()).await {
        Ok(items) => announcement(s, due, &items, &bot.engine().config.settings.chat.prefix),
        Err(e) => OutgoingMessage::text(format!(
            "🧹 Cleanup report ({}): could not look at AWS: {}",
            s.name,
            bot.engine().redactor.redact(&e.to_string())
        )),
    };
    post(bot, s, msg).await;
    audit_run(bot, s, "announced");
    true
}

async fn post(bot: &Bot, s: &ScheduleSettings, msg: OutgoingMessage) {
    match ChatPlatform::parse(&s.platform).ok().and_then(|p| bot.port(p)) {
        Some(port) => {
            if let Err(e) = port.send(&s.channel, msg).await {
                tracing::warn!(schedule = %s.name, error = %e, "cannot post the announcement");
            }
        }
        None => tracing::warn!(schedule = %s.name, platform = %s.platform, "the schedule's platform is not connected"),
    }
}

fn audit_run(bot: &Bot, s: &ScheduleSettings, outcome: &str) {
    let _ = bot.store().audit(AuditEntry::system(
        "schedule",
        &s.name,
        &s.channel,
        &format!("schedule {}", s.name),
        outcome,
        None,
    ));
}

/// A `kind: drift` run (already claimed, so once across replicas): checks each environment,
/// records the result, and returns a line for each whose state changed since its last check
/// (newly drifted, drift changed, back in sync, failing). Each detection runs as a job under the
/// environment's lock, as an on-demand `drift` does, so nothing that changes the environment
/// starts beside it; an environment whose lock a job holds is skipped this time (a detection
/// beside an update would compare resources in mid-change).
async fn drift_changes(bot: &Bot, s: &ScheduleSettings) -> Vec<String> {
    let engine = bot.engine();
    let envs: Vec<String> = if s.environments.is_empty() {
        engine.config.settings.environments.keys().cloned().collect()
    } else {
        s.environments.clone()
    };
    let mut lines = Vec::new();
    for env in envs {
        let Ok(target) = engine.target(&env) else { continue };
        let before = bot.store().last_drift(&env).ok().flatten();
        let ctx = Ctx {
            engine: engine.clone(),
            target,
            progress: ProgressTx::discard(),
            cancel: Default::default(),
            log: None,
        };
        let Some(result) = detect_under_lock(bot, s, ctx).await else {
            continue;
        };
        let after = bot.store().last_drift(&env).ok().flatten();
        if let Some(line) =
            crate::bot::messages::drift_change(&env, before.as_ref(), after.as_ref(), result.as_ref().ok())
        {
            lines.push(line);
        }
    }
    lines
}

/// One scheduled detection as a `drift` job of the schedule's: recorded and holding the
/// environment's lock (its lease renewed by this replica's heartbeat, cancellable with
/// `cancel <id>`) from before DetectStackDrift to its result. It has no status message: the
/// schedule posts only changes. `None` when a job already holds the environment.
async fn detect_under_lock(bot: &Bot, s: &ScheduleSettings, mut ctx: Ctx) -> Option<Result<DriftReport>> {
    let inner = &bot.inner;
    let env = ctx.target.env.to_string();
    let new = NewJob {
        requester_id: format!("schedule:{}", s.name),
        requester_name: format!("schedule {}", s.name),
        platform: ChatPlatform::parse(&s.platform)
            .map(Surface::Chat)
            .unwrap_or(Surface::CONSOLE),
        channel: s.channel.clone(),
        env: env.clone(),
        action: Action::Drift.verb().to_string(),
        args: Action::Drift.stored_args(),
        person: String::new(),
        break_glass: None,
    };
    let obtained = std::time::Instant::now();
    // A detection changes nothing: holds and freezes do not stop it (as for `drift`).
    let started = inner
        .store
        .start_job_with(&new, &inner.replica.id, inner.replica.lease, &Checks::default());
    let (id, token) = match started {
        Ok(StartOutcome::Started { id, token }) => (id, token),
        Ok(StartOutcome::Busy(..)) | Ok(StartOutcome::Refused(_)) => return None,
        Err(e) => {
            tracing::warn!(schedule = %s.name, env, error = %e, "cannot start the scheduled drift check");
            return None;
        }
    };
    let _lease = inner.replica.hold(id, &env, token, obtained);
    ctx.cancel = inner.jobs.register(id, &env);
    let result = crate::engine::drift_and_record(&ctx).await;
    let (state, text) = match &result {
        Ok(report) => (
            JobState::Succeeded,
            crate::bot::messages::drift_summary(report).headline,
        ),
        Err(Error::Refused(why)) if why.contains("cancelled") => (JobState::Cancelled, why.clone()),
        Err(e) => (JobState::Failed, e.to_string()),
    };
    if let Err(e) = inner.store.finish_and_release(id, token, state, &text) {
        tracing::warn!(job = id, error = %e, "cannot record the scheduled drift check's end");
    }
    inner.replica.release(id);
    inner.jobs.unregister(id);
    Some(result)
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
