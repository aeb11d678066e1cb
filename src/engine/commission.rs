//! Commission: get or bake the image, create the environment's stack from the merged
//! templates (or recognise a healthy one), watch it, then deploy. A failed create deletes the
//! failed stack by its real name, so the next run starts clean (the original tool did not).

use crate::cloud::instances;
use crate::cloud::stack::{self, CreateRequest, HEALTHY_STATES, RECREATE_STATES};
use crate::command::Version;
use crate::engine::preflight::{self, Creates};
use crate::engine::{deploy, get_or_bake_image, params, Ctx, Summary};
use crate::error::{Error, Result};
use crate::template::Template;

pub async fn commission(ctx: &Ctx, version: &Version) -> Result<Summary> {
    // Everything that can be checked locally is checked before the first AWS call.
    let (image_template, app_template) = ctx.engine.templates()?;
    ctx.engine.private_key()?;
    preflight::check(
        ctx,
        Creates::StackAndImage {
            image: &image_template,
            merged: &app_template,
        },
    )?;
    // The front's HTTPS choice, before an image is baked for a stack that would be refused.
    params::environment_choices(&app_template, &ctx.target)?;
    let names = &ctx.target.names;
    let stack_name = names.stack();
    let existing = stack::describe(ctx.aws(), &stack_name).await?;
    if let Some(s) = &existing {
        if !HEALTHY_STATES.contains(&s.status.as_str()) && !RECREATE_STATES.contains(&s.status.as_str()) {
            return Err(Error::Refused(refusal(&stack_name, &s.status, names.env.as_str())));
        }
    }
    // Each step's future on the heap: inline, commission's future is as large as bake, the
    // stack watch and deploy together, and a debug build overflowed a test thread's 2 MiB
    // stack polling it (moto_lifecycle calls commission directly, not through engine::run).
    let image = Box::pin(get_or_bake_image(ctx, &image_template, version)).await?;
    let mut summary = Summary::new(format!("commissioned {stack_name}"));
    summary.details.push(format!("image {} ({})", image.id, image.name));
    match existing {
        Some(s) if HEALTHY_STATES.contains(&s.status.as_str()) => {
            ctx.progress.step(
                "stack",
                format!("{stack_name} already exists and is healthy ({})", s.status),
            );
            summary
                .details
                .push(format!("stack {stack_name} already existed ({})", s.status));
        }
        Some(s) => {
            ctx.progress.step(
                "stack",
                format!(
                    "{stack_name} is {} from an earlier failed create: deleting it, then creating it anew",
                    s.status
                ),
            );
            let pace = ctx.engine.pace(ctx.config().settings.timeouts.stack_delete_secs);
            let outcome = stack::delete_following(
                ctx.aws(),
                &s,
                &ctx.follow("replace", &stack_name),
                pace,
                &ctx.progress,
                &ctx.cancel,
            )
            .await?;
            if !outcome.succeeded {
                return Err(Error::StackFailed(format!(
                    "could not delete the failed stack: {}",
                    outcome.failure_line(&stack_name)
                )));
            }
            Box::pin(create(ctx, &app_template, &image.id)).await?;
            summary.details.push(format!("stack {stack_name} recreated"));
        }
        None => {
            Box::pin(create(ctx, &app_template, &image.id)).await?;
            summary.details.push(format!("stack {stack_name} created"));
        }
    }
    let deployed = Box::pin(deploy(ctx, &[], version)).await?;
    summary.details.extend(deployed.details);
    if let Some(line) = super::workers::ensure_hooks(ctx, &deployed.outputs).await? {
        summary.details.push(line);
    }
    summary.hosts = deployed.hosts;
    summary.outputs = deployed.outputs;
    Ok(summary)
}

/// What to do about a stack in a state commission cannot work from.
pub(crate) fn refusal(stack: &str, status: &str, env: &str) -> String {
    if status.ends_with("_IN_PROGRESS") {
        format!("stack {stack} is {status}: another operation is running on it; wait for it to finish (`{env} status`) and try again")
    } else if status == "DELETE_FAILED" {
        format!("stack {stack} is DELETE_FAILED: see `{env} status` for the resources left, remove or retain them, then run `{env} decommission` again")
    } else if status == "UPDATE_ROLLBACK_FAILED" {
        format!("stack {stack} is UPDATE_ROLLBACK_FAILED: continue the rollback (aws cloudformation continue-update-rollback --stack-name {stack}), then try again")
    } else {
        format!("stack {stack} is {status}, which commission cannot continue from; inspect it with `{env} status`, or `{env} decommission` it")
    }
}

async fn create(ctx: &Ctx, template: &Template, image_id: &str) -> Result<()> {
    let cfg = ctx.config();
    let net = &cfg.settings.network;
    let (vpc, subnet) = instances::network(ctx.aws(), net.vpc_id.as_deref(), net.subnet_id.as_deref()).await?;
    let mut values = params::known_values(cfg, &ctx.target, Some(image_id), (&vpc, &subnet))?;
    values.extend(params::environment_choices(template, &ctx.target)?);
    params::check_declared(
        template,
        &ctx.target.settings.parameters,
        &format!("environments.{}", ctx.target.env),
    )?;
    let parameters = params::for_create(template, &values, ctx.target.env.as_str())?;
    let set: std::collections::BTreeMap<String, String> = parameters
        .iter()
        .filter_map(|(k, v)| match v {
            stack::ParamValue::Set(s) => Some((k.clone(), s.clone())),
            stack::ParamValue::Previous => None,
        })
        .collect();
    let stack_name = ctx.target.names.stack();
    let total = template.active_resources(&set);
    ctx.progress
        .step("create stack", format!("{stack_name}: {total} resource(s)"));
    let req = CreateRequest {
        name: &stack_name,
        body: &template.body,
        parameters,
        tags: params::stack_tags(cfg, &ctx.target),
        resources: total,
    };
    let pace = ctx.engine.pace(cfg.settings.timeouts.stack_create_secs);
    let follow = ctx.follow("create", &stack_name);
    let creating = stack::create_following(ctx.aws(), req, &follow, pace, &ctx.progress, &ctx.cancel);
    // With workers, the new group's first workers wait in their launch hook while the stack
    // is created; they are let in here and configured by the deploy that follows.
    let workers = set.get("WorkerCount").and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
    let result = if workers > 0 {
        let (result, admitted) = super::workers::admitting_while(ctx, creating).await;
        if let Err(e) = admitted {
            ctx.progress
                .info(format!("could not answer the workers' launch hook: {e}"));
        }
        result
    } else {
        creating.await
    };
    let failure = match result {
        Ok((_, outcome)) if outcome.succeeded => return Ok(()),
        Ok((_, outcome)) => Error::StackFailed(outcome.failure_line(&stack_name)),
        Err(Error::Cancelled) => {
            ctx.progress
                .info(format!("cancelled: deleting the half-created stack {stack_name}"));
            Error::Cancelled
        }
        Err(e) => return Err(e),
    };
    // Leave nothing half-made: delete the failed stack (by its own name) right away.
    if let Some(s) = stack::describe(ctx.aws(), &stack_name).await? {
        ctx.progress.step(
            "clean up",
            format!("deleting the failed stack {stack_name} so the next commission starts clean"),
        );
        let pace = ctx.engine.pace(cfg.settings.timeouts.stack_delete_secs);
        let quiet = tokio_util::sync::CancellationToken::new();
        match stack::delete_following(
            ctx.aws(),
            &s,
            &ctx.follow("cleanup", &stack_name),
            pace,
            &ctx.progress,
            &quiet,
        )
        .await
        {
            Ok(o) if o.succeeded => {}
            Ok(o) => ctx
                .progress
                .info(format!("could not delete it: {}", o.failure_line(&stack_name))),
            Err(e) => ctx.progress.info(format!("could not delete it: {e}")),
        }
    }
    Err(failure)
}
