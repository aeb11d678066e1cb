//! Scale: `WorkerCount` changed through a change set (update's own path), and the workers it
//! starts or stops answered by this job. The job holds the environment's lock, so the bot's
//! lookout cannot answer them meanwhile: this job configures its new workers itself, also
//! while CloudFormation still works on the group (which may wait for them), and ends when the
//! group has as many workers in service as it asked for and none waits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cloud::workers as group;
use crate::engine::workers::{answer_hooks, answering_while, Handled, Watch};
use crate::engine::{update, Ctx, Summary};
use crate::error::{Error, Result};

/// The template parameter `scale` sets.
pub const WORKER_COUNT: &str = "WorkerCount";

pub async fn scale(ctx: &Ctx, workers: u32) -> Result<Summary> {
    let names = &ctx.target.names;
    let stack_name = names.stack();
    let overrides = BTreeMap::from([(WORKER_COUNT.to_string(), workers.to_string())]);
    ctx.progress
        .step("scale", format!("{stack_name}: {WORKER_COUNT}={workers}"));
    let pace = ctx.engine.pace(ctx.config().settings.timeouts.stack_update_secs);
    let every = pace.max_poll.max(Duration::from_millis(100));
    // While the change set runs, the new workers already wait in the launch hook.
    let (applied, answered) = answering_while(ctx, Watch::Tags, update::apply(ctx, &overrides, false)).await;
    let mut summary = applied?;
    let mut handled = answered?;
    summary.headline = format!("scaled {stack_name} to {workers} worker(s)");

    // Then until the group is whole: as many in service as desired, none waiting.
    let started = Instant::now();
    let settled = loop {
        let g = group::find(ctx.aws(), &names.app, names.env.as_str()).await?;
        let Some(g) = g else {
            // No group: scaled to 0 workers (the template removes it).
            break None;
        };
        handled.extend(answer_hooks(ctx, &g).await?);
        if handled.iter().any(|h| matches!(h, Handled::Abandoned { .. })) {
            break Some(g);
        }
        if !g.waiting() && g.in_service() == g.desired as usize && g.desired as u32 == workers {
            break Some(g);
        }
        if started.elapsed() > pace.timeout {
            return Err(Error::Timeout(format!(
                "{} of {workers} worker(s) in service after {} s",
                g.in_service(),
                pace.timeout.as_secs()
            )));
        }
        tokio::select! {
            _ = ctx.cancel.cancelled() => return Err(Error::Cancelled),
            _ = tokio::time::sleep(every) => {}
        }
    };
    summary.details.extend(handled.iter().map(Handled::line));
    if let Some(failed) = handled.iter().find_map(|h| match h {
        Handled::Abandoned { instance, reason } => Some((instance, reason)),
        _ => None,
    }) {
        return Err(Error::Playbook(format!(
            "worker {} could not be configured (the group replaces it): {}",
            failed.0, failed.1
        )));
    }
    if let Some(g) = settled {
        summary
            .details
            .push(format!("{}: {} worker(s) in service", g.name, g.in_service()));
    }
    Ok(summary)
}
