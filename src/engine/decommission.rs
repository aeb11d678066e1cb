//! Decommission: delete the environment's stack and wait, with a timeout. DELETE_FAILED is
//! reported with the resources left and why, instead of the original tool's endless loop.

use crate::cloud::stack;
use crate::engine::{Ctx, Summary};
use crate::error::{Error, Result};

pub async fn decommission(ctx: &Ctx) -> Result<Summary> {
    let stack_name = ctx.target.names.stack();
    let Some(info) = stack::describe(ctx.aws(), &stack_name).await? else {
        return Ok(Summary::new(format!(
            "nothing to decommission: there is no stack {stack_name}"
        )));
    };
    if info.status.ends_with("_IN_PROGRESS") && info.status != "REVIEW_IN_PROGRESS" {
        return Err(Error::Refused(format!(
            "stack {stack_name} is {}: another operation is running on it; wait for it to finish and try again",
            info.status
        )));
    }
    ctx.progress
        .step("delete stack", format!("{stack_name} ({})", info.status));
    let pace = ctx.engine.pace(ctx.config().settings.timeouts.stack_delete_secs);
    let outcome = stack::delete_following(
        ctx.aws(),
        &info,
        &ctx.follow("delete", &stack_name),
        pace,
        &ctx.progress,
        &ctx.cancel,
    )
    .await?;
    if outcome.succeeded {
        let mut s = Summary::new(format!("decommissioned {stack_name}"));
        s.details.push(format!(
            "{} event(s), {} AWS call(s) while watching",
            outcome.events, outcome.calls
        ));
        return Ok(s);
    }
    let left: Vec<String> = if outcome.failed.is_empty() {
        stack::resources(ctx.aws(), &info.id)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.2 == "DELETE_FAILED")
            .map(|r| format!("{} ({})", r.0, r.1))
            .collect()
    } else {
        outcome
            .failed
            .iter()
            .map(|(id, reason)| format!("{id}: {reason}"))
            .collect()
    };
    Err(Error::StackFailed(format!(
        "stack {stack_name} is {}; resources left: {}. Remove or retain them, then run decommission again",
        outcome.status,
        if left.is_empty() {
            "unknown".to_string()
        } else {
            left.join("; ")
        }
    )))
}
