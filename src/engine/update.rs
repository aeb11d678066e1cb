//! Update and plan: a change set with the merged template. Parameters not given keep their
//! previous values; "no changes" is recognised; the update is watched through cleanup and
//! rollback states, and a rollback is a failure with its cause. `plan` shows the change set
//! and deletes it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cloud::image;
use crate::cloud::stack::{self, ChangeSet, StackInfo, HEALTHY_STATES};
use crate::command::Version;
use crate::engine::preflight::{self, Creates};
use crate::engine::{deploy, params, Ctx, Summary};
use crate::error::{Error, Result};
use crate::names::image_name;
use crate::template::Template;

/// Updates the stack (`overrides` are explicit `Parameter=value` changes), then deploys.
pub async fn update(ctx: &Ctx, overrides: &BTreeMap<String, String>, version: &Version) -> Result<Summary> {
    let (cs, info, _) = prepare(ctx, overrides).await?;
    let stack_name = ctx.target.names.stack();
    let mut summary = Summary::new(format!("updated {stack_name}"));
    match &cs.changes {
        None => {
            ctx.progress.info(format!(
                "no changes: {stack_name} already matches the templates and parameters"
            ));
            summary.details.push("no infrastructure changes".into());
        }
        Some(changes) => {
            ctx.progress
                .step("update stack", format!("{stack_name}: {} change(s)", changes.len()));
            stack::report_changes(changes, &ctx.progress);
            let pace = ctx.engine.pace(ctx.config().settings.timeouts.stack_update_secs);
            let outcome =
                stack::execute_change_set(ctx.aws(), &cs, &stack_name, pace, &ctx.progress, &ctx.cancel).await?;
            if !outcome.succeeded {
                let what = if outcome.status.contains("ROLLBACK") {
                    "update rolled back"
                } else {
                    "update failed"
                };
                return Err(Error::StackFailed(format!(
                    "{what}: {}",
                    outcome.failure_line(&stack_name)
                )));
            }
            summary.details.push(format!(
                "{} change(s) applied ({} -> {})",
                changes.len(),
                info.status,
                outcome.status
            ));
        }
    }
    let deployed = deploy(ctx, &[], version).await?;
    summary.details.extend(deployed.details);
    summary.hosts = deployed.hosts;
    summary.outputs = deployed.outputs;
    Ok(summary)
}

/// Shows what an update would change, then deletes the change set.
pub async fn plan(ctx: &Ctx, overrides: &BTreeMap<String, String>) -> Result<Summary> {
    let (cs, _, _) = prepare(ctx, overrides).await?;
    let stack_name = ctx.target.names.stack();
    let summary = match &cs.changes {
        None => Summary::new(format!(
            "no changes: {stack_name} already matches the templates and parameters"
        )),
        Some(changes) => {
            stack::report_changes(changes, &ctx.progress);
            let mut s = Summary::new(format!("{} change(s) would be made to {stack_name}", changes.len()));
            s.details = changes
                .iter()
                .map(|c| {
                    let repl = match c.replacement.as_deref() {
                        Some("True") => " (REPLACEMENT)",
                        Some("Conditional") => " (may replace)",
                        _ => "",
                    };
                    format!("{} {} {}{repl}", c.action, c.logical_id, c.resource_type)
                })
                .collect();
            stack::delete_change_set(ctx.aws(), &cs).await?;
            s
        }
    };
    Ok(summary)
}

/// Checks, then creates and describes the change set.
async fn prepare(ctx: &Ctx, overrides: &BTreeMap<String, String>) -> Result<(ChangeSet, StackInfo, String)> {
    let (_, template) = ctx.engine.templates()?;
    params::check_declared(&template, overrides, "the command")?;
    params::check_declared(
        &template,
        &ctx.target.settings.parameters,
        &format!("environments.{}", ctx.target.env),
    )?;
    preflight::check(ctx, Creates::ChangeSet { merged: &template })?;
    let stack_name = ctx.target.names.stack();
    let info = stack::describe(ctx.aws(), &stack_name).await?.ok_or_else(|| {
        Error::Refused(format!(
            "there is no stack {stack_name}: run `{} commission` first",
            ctx.target.env
        ))
    })?;
    if !HEALTHY_STATES.contains(&info.status.as_str()) {
        return Err(Error::Refused(super::commission::refusal(
            &stack_name,
            &info.status,
            ctx.target.env.as_str(),
        )));
    }
    let cs = change_set(ctx, &template, &info, overrides).await?;
    Ok((cs, info, template.sha256()))
}

async fn change_set(
    ctx: &Ctx,
    template: &Template,
    info: &StackInfo,
    overrides: &BTreeMap<String, String>,
) -> Result<ChangeSet> {
    let cfg = ctx.config();
    let app = &cfg.vars.app_name;
    let image_id = image::find_images(ctx.aws(), app, &image_name(app))
        .await?
        .into_iter()
        .find(|i| i.state == "available")
        .map(|i| i.id);
    let network = (
        info.parameters.get("VpcId").cloned().unwrap_or_default(),
        info.parameters.get("SubnetId").cloned().unwrap_or_default(),
    );
    let net = &cfg.settings.network;
    let vpc = net.vpc_id.clone().unwrap_or(network.0);
    let subnet = net.subnet_id.clone().unwrap_or(network.1);
    let mut values = params::known_values(cfg, &ctx.target, image_id.as_deref(), (&vpc, &subnet))?;
    values.extend(params::environment_choices(template, &ctx.target)?);
    if image_id.is_none() {
        values.remove("ImageId");
    }
    let parameters = params::for_update(template, &values, overrides, info);
    params::check_update_rules(template, &parameters, info, ctx.target.env.as_str())?;
    ctx.progress
        .step("change set", format!("comparing {} with formations/", info.name));
    stack::create_change_set(
        ctx.aws(),
        &info.name,
        &template.body,
        &parameters,
        &params::stack_tags(cfg, &ctx.target),
        Duration::from_secs(cfg.settings.timeouts.change_set_secs),
        Duration::from_millis(cfg.settings.watch.poll_interval_ms.min(2000)),
    )
    .await
}
