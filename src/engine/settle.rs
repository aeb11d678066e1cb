//! After a restart: if the environment's stack is in the middle of an operation, follow it to
//! its end, so the job that started it can be re-run idempotently from a settled state.

use crate::cloud::stack;
use crate::cloud::watcher::{Operation, StackWatcher};
use crate::engine::Ctx;
use crate::error::Result;

/// Waits until the stack is not `*_IN_PROGRESS`; returns the status it settled in (`None`
/// when there is no stack).
pub async fn wait_until_settled(ctx: &Ctx) -> Result<Option<String>> {
    let name = ctx.target.names.stack();
    let Some(info) = stack::describe(ctx.aws(), &name).await? else {
        return Ok(None);
    };
    if !info.status.ends_with("_IN_PROGRESS") || info.status == "REVIEW_IN_PROGRESS" {
        return Ok(Some(info.status));
    }
    ctx.progress.step(
        "re-attach",
        format!("{name} is {}; following it to the end", info.status),
    );
    let mut watcher = StackWatcher::before_operation(ctx.aws(), &info.name, &info.id).await?;
    let op = if info.status.starts_with("DELETE") {
        Operation::Delete
    } else if info.status.starts_with("CREATE") || info.status.starts_with("ROLLBACK") {
        Operation::Create
    } else {
        Operation::Update
    };
    let pace = ctx.engine.pace(ctx.config().settings.timeouts.stack_update_secs);
    let outcome = watcher.wait(ctx.aws(), op, pace, &ctx.progress, &ctx.cancel).await?;
    ctx.progress.info(format!("{name} settled in {}", outcome.status));
    Ok(Some(outcome.status))
}
