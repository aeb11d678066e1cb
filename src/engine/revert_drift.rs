//! `<env> update --revert-drift`: the way back from drift. A change set in REVERT_DRIFT mode on
//! the stack's current template and parameters brings the drifted resources back to what the
//! stack says, and nothing else. It is refused unless the environment's last drift check found
//! drift; its plan (what an approval is bound to) names each resource and property it reverts.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cloud::stack::{self, ChangeSet, ChangeSetSource, ParamValue, PropertyChange, StackInfo, HEALTHY_STATES};
use crate::engine::{drift, Ctx, Engine, Summary};
use crate::error::{Error, Result};
use crate::progress::ResourceChange;
use crate::redact::MASK;
use crate::store::DriftState;

/// Whether `env` has drift to revert by its last recorded check; the refusal says what to do
/// if not. It reads only the store, so the bot and the CLI ask it before any job exists.
pub fn check_revertable(engine: &Engine, env: &str) -> Result<()> {
    let Some(store) = &engine.store else {
        return Err(Error::Refused(
            "no job store here: `update --revert-drift` reverts what a recorded drift check found".into(),
        ));
    };
    let last = store
        .last_drift(env)
        .map_err(|e| Error::Io(format!("cannot read the last drift check: {e}")))?;
    match last.map(|r| r.state) {
        Some(DriftState::Drifted) => Ok(()),
        None => Err(Error::Refused(format!(
            "no drift is recorded for {env}: run `{env} drift` first; `update --revert-drift` reverts what it finds"
        ))),
        Some(DriftState::InSync) => Err(Error::Refused(format!(
            "{env} was in sync at its last drift check: there is nothing to revert (run `{env} drift` to check again)"
        ))),
        Some(DriftState::Failed) => Err(Error::Refused(format!(
            "the last drift check of {env} failed, so there is no drift to revert: run `{env} drift` first"
        ))),
    }
}

/// What a revert would change, in words (headline, then one line per resource and one per
/// property), after which the change set is deleted: the plan an approval is bound to.
pub async fn revert_drift_plan(ctx: &Ctx) -> Result<Summary> {
    let (cs, info) = prepare(ctx).await?;
    let summary = describe(ctx, &cs, &info, "would revert");
    if cs.changes.is_some() {
        stack::delete_change_set(ctx.aws(), &cs).await?;
    }
    Ok(summary)
}

/// Reverts the drift, then checks again and records what the check finds.
pub async fn revert_drift(ctx: &Ctx) -> Result<Summary> {
    let (cs, info) = prepare(ctx).await?;
    let stack_name = ctx.target.names.stack();
    let Some(changes) = &cs.changes else {
        ctx.progress.info(format!(
            "no changes: CloudFormation finds no drift to revert on {stack_name}"
        ));
        let mut summary = describe(ctx, &cs, &info, "reverted");
        summary.details.extend(check_after(ctx).await);
        return Ok(summary);
    };
    ctx.progress
        .step("revert drift", format!("{stack_name}: {} change(s)", changes.len()));
    stack::report_changes(changes, &ctx.progress);
    let pace = ctx.engine.pace(ctx.config().settings.timeouts.stack_update_secs);
    let outcome = stack::execute_change_set(
        ctx.aws(),
        &cs,
        &stack_name,
        &ctx.follow("revert", &stack_name),
        pace,
        &ctx.progress,
        &ctx.cancel,
    )
    .await?;
    if !outcome.succeeded {
        let what = if outcome.status.contains("ROLLBACK") {
            "drift revert rolled back"
        } else {
            "drift revert failed"
        };
        return Err(Error::StackFailed(format!(
            "{what}: {}",
            outcome.failure_line(&stack_name)
        )));
    }
    let mut summary = describe(ctx, &cs, &info, "reverted");
    summary
        .details
        .push(format!("{} -> {}; no code was deployed", info.status, outcome.status));
    summary
        .details
        .extend(replaced_instances_note(changes, ctx.target.env.as_str()));
    summary.details.extend(check_after(ctx).await);
    Ok(summary)
}

/// A detection after the revert, so `status`, `envs` and the next scheduled check start from
/// what is true now. Its failure does not undo the revert: it is only reported.
async fn check_after(ctx: &Ctx) -> Vec<String> {
    ctx.progress.step("detect drift", "checking again after the revert");
    match Box::pin(drift::drift_and_record(ctx)).await {
        Ok(r) if r.is_drifted() => {
            let names: Vec<&str> = r.drifted.iter().map(|d| d.logical_id.as_str()).collect();
            vec![format!(
                "drift check after the revert: still drifted: {} resource(s) ({})",
                names.len(),
                names.join(", ")
            )]
        }
        Ok(r) if r.not_checked.is_empty() => vec!["drift check after the revert: in sync".into()],
        Ok(r) => vec![format!(
            "drift check after the revert: in sync, but {} resource(s) not checked",
            r.not_checked.len()
        )],
        Err(e) => vec![format!("drift check after the revert failed: {e}")],
    }
}

/// Checks, then creates and describes the REVERT_DRIFT change set.
async fn prepare(ctx: &Ctx) -> Result<(ChangeSet, StackInfo)> {
    let env = ctx.target.env.as_str();
    check_revertable(&ctx.engine, env)?;
    let stack_name = ctx.target.names.stack();
    let info = stack::describe(ctx.aws(), &stack_name)
        .await?
        .ok_or_else(|| Error::Refused(format!("there is no stack {stack_name}: there is no drift to revert")))?;
    if !HEALTHY_STATES.contains(&info.status.as_str()) {
        return Err(Error::Refused(super::commission::refusal(
            &stack_name,
            &info.status,
            env,
        )));
    }
    // Everything as it is: the stack's template, its parameters, its tags. Only the live
    // resources move, back to what these say.
    let parameters: BTreeMap<String, ParamValue> = info
        .parameters
        .keys()
        .map(|k| (k.clone(), ParamValue::Previous))
        .collect();
    let cfg = ctx.config();
    ctx.progress.step(
        "change set",
        format!("{stack_name}: what reverting the drift would change"),
    );
    let cs = stack::create_change_set_from(
        ctx.aws(),
        &info.id,
        ChangeSetSource::RevertDrift,
        &parameters,
        &info.tags,
        Duration::from_secs(cfg.settings.timeouts.change_set_secs),
        Duration::from_millis(cfg.settings.watch.poll_interval_ms.min(2000)),
    )
    .await?;
    Ok((cs, info))
}

/// The change set in words: `Modify ApiEc2Instance AWS::EC2::Instance`, then
/// `  /Properties/InstanceType: t3.large -> t3.small` (the live value, then the template's),
/// with values that may be secrets masked.
fn describe(ctx: &Ctx, cs: &ChangeSet, info: &StackInfo, done: &str) -> Summary {
    let stack_name = ctx.target.names.stack();
    let Some(changes) = &cs.changes else {
        return Summary::new(format!(
            "no changes: CloudFormation finds no drift to revert on {stack_name}"
        ));
    };
    let mut summary = Summary::new(format!(
        "{} change(s) {done} on {stack_name}: drifted resources back to the stack's template",
        changes.len()
    ));
    let secrets = drift::no_echo_values(ctx, info);
    let shown = |value: &Option<String>, path: &str| match value.as_deref() {
        None | Some("") => "(none)".to_string(),
        Some(_) if drift::is_secret_path(path) => MASK.to_string(),
        Some(v) if secrets.iter().any(|s| s == v) => MASK.to_string(),
        Some(v) => ctx.engine.redactor.redact(v),
    };
    for c in changes {
        summary.details.push(resource_line(c));
        for p in cs.properties.iter().filter(|p| p.logical_id == c.logical_id) {
            summary.details.push(property_line(p, &shown));
        }
    }
    summary
}

/// A revert that replaced (or may have replaced) an instance leaves it as its image made it:
/// the playbooks were not run on it. Says so, naming them, or nothing.
fn replaced_instances_note(changes: &[ResourceChange], env: &str) -> Option<String> {
    let replaced: Vec<&str> = changes
        .iter()
        .filter(|c| c.resource_type == "AWS::EC2::Instance")
        .filter(|c| matches!(c.replacement.as_deref(), Some("True" | "Conditional")))
        .map(|c| c.logical_id.as_str())
        .collect();
    (!replaced.is_empty()).then(|| {
        format!(
            "replaced or may have replaced {}: the playbooks did not run on the new instance(s); run `{env} deploy`",
            replaced.join(", ")
        )
    })
}

fn resource_line(c: &ResourceChange) -> String {
    let replacement = match c.replacement.as_deref() {
        Some("True") => " (REPLACEMENT)",
        Some("Conditional") => " (may replace)",
        _ => "",
    };
    format!("{} {} {}{replacement}", c.action, c.logical_id, c.resource_type)
}

fn property_line(p: &PropertyChange, shown: &dyn Fn(&Option<String>, &str) -> String) -> String {
    format!(
        "  {}: {} -> {}",
        p.path,
        shown(&p.before, &p.path),
        shown(&p.after, &p.path)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: &str, kind: &str, replacement: Option<&str>) -> ResourceChange {
        ResourceChange {
            action: "Modify".into(),
            logical_id: id.into(),
            resource_type: kind.into(),
            replacement: replacement.map(str::to_string),
        }
    }

    #[test]
    fn a_replaced_instance_asks_for_a_deploy() {
        let changes = [
            change("ApiEc2Instance", "AWS::EC2::Instance", Some("True")),
            change("FrontEc2Instance", "AWS::EC2::Instance", Some("False")),
            change("WorkerEc2Instance", "AWS::EC2::Instance", Some("Conditional")),
            change("Database", "AWS::RDS::DBInstance", Some("True")),
        ];
        assert_eq!(
            replaced_instances_note(&changes, "staging").as_deref(),
            Some(
                "replaced or may have replaced ApiEc2Instance, WorkerEc2Instance: the playbooks did not run on the new instance(s); run `staging deploy`"
            )
        );
        assert_eq!(replaced_instances_note(&changes[1..2], "staging"), None);
        assert_eq!(
            resource_line(&changes[0]),
            "Modify ApiEc2Instance AWS::EC2::Instance (REPLACEMENT)"
        );
    }
}
