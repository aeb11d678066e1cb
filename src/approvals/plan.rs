//! The plan an approval is bound to: what will happen, in words, plus a digest of it. If the
//! digest differs when the job is about to start, the approval is void.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::cloud::{image, stack};
use crate::command::{short_sha, Action, Version};
use crate::engine::{versions, Ctx};
use crate::error::{Error, Result};
use crate::names::image_name;

/// A plan: the words shown to approvers and the digest the approval is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub text: String,
    pub digest: String,
}

fn digest(parts: &[String]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..12])
}

/// Works out what `action` would do now, without changing anything.
pub async fn plan(ctx: &Ctx, action: &Action) -> Result<Plan> {
    match action {
        Action::Decommission => decommission_plan(ctx).await,
        Action::Update { revert_drift: true, .. } => revert_drift_plan(ctx).await,
        Action::Update {
            parameters, version, ..
        } => update_plan(ctx, parameters, version).await,
        Action::Clean => clean_plan(ctx).await,
        Action::Commission { version } | Action::Deploy { version, .. } | Action::Rollback { version, .. } => {
            let mut parts = vec![ctx.target.env.to_string(), action.verb().to_string()];
            let mut text = vec![format!("{} {}", ctx.target.env, action.verb())];
            version_plan(ctx, version, &mut text, &mut parts).await?;
            Ok(Plan {
                text: text.join("\n"),
                digest: digest(&parts),
            })
        }
        // What these do is decided when they run, so the plan is the request itself.
        Action::Plan { .. } | Action::Drift | Action::Status | Action::Events | Action::History { .. } => Ok(Plan {
            text: format!("{} {}", ctx.target.env, action.verb()),
            digest: digest(&[ctx.target.env.to_string(), action.verb().to_string()]),
        }),
    }
}

/// The commit a deploy takes and what it changes from what runs now. The digest holds the
/// commit the ref resolves to *now*: if the branch moves before the job starts, the plan
/// differs and the approval is void.
async fn version_plan(ctx: &Ctx, version: &Version, text: &mut Vec<String>, parts: &mut Vec<String>) -> Result<()> {
    let Some(commit) = &version.commit else {
        return Ok(());
    };
    let now = match (&version.git_ref, ctx.engine.repo()) {
        // A rollback's "ref" names a job; a commit stays itself.
        (Some(r), Some(Ok(repo))) if !r.starts_with("job #") && r != commit => repo.resolve(r).await?.sha,
        _ => commit.clone(),
    };
    parts.push(version.git_ref.clone().unwrap_or_default());
    parts.push(now);
    text[0] = format!("{} · {}", text[0], version.describe().unwrap_or_default());
    let running = versions::current(&ctx.engine, ctx.target.env.as_str())
        .ok()
        .flatten()
        .and_then(|j| j.sha);
    match running {
        Some(from) if from == *commit => text.push(format!("• {} runs now: a redeploy", short_sha(commit))),
        Some(from) => {
            let back = versions::undo(&ctx.engine, &from, commit).await?;
            if back.commits.total > 0 {
                text.extend(back.lines());
            }
            let ahead = versions::ahead(&ctx.engine, &from, commit).await?;
            if ahead.total > 0 {
                text.push(format!(
                    "adds {} commit(s) over {} (what runs now)",
                    ahead.total,
                    short_sha(&from)
                ));
                text.extend(
                    ahead
                        .commits
                        .iter()
                        .map(|c| format!("• {} {}", short_sha(&c.sha), c.subject)),
                );
            }
        }
        None => text.push("• nothing recorded runs there now".into()),
    }
    Ok(())
}

async fn decommission_plan(ctx: &Ctx) -> Result<Plan> {
    let name = ctx.target.names.stack();
    let info = stack::describe(ctx.aws(), &name)
        .await?
        .ok_or_else(|| Error::Invalid(format!("nothing to decommission: there is no stack {name}")))?;
    let (_, template) = ctx.engine.templates()?;
    let mut delete = Vec::new();
    let mut snapshot = Vec::new();
    let mut keep = Vec::new();
    let mut parts = vec![
        info.id.clone(),
        info.updated.map(|t| t.to_rfc3339()).unwrap_or_default(),
    ];
    let mut resources = stack::resources(ctx.aws(), &info.id).await?;
    resources.retain(|r| !r.0.is_empty());
    resources.sort();
    for (logical, kind, _, physical) in &resources {
        let policy = template.deletion_policy(logical);
        let line = format!("{logical} ({kind})");
        match policy.as_str() {
            "Retain" | "RetainExceptOnCreate" => keep.push(line),
            "Snapshot" => snapshot.push(line),
            _ => delete.push(line),
        }
        parts.push(format!("{logical}|{kind}|{physical}|{policy}"));
    }
    let mut text = vec![format!(
        "Decommission {name} ({}): {} resource(s)",
        info.status,
        resources.len()
    )];
    if !snapshot.is_empty() {
        text.push(format!("• snapshot, then delete: {}", snapshot.join(", ")));
    }
    if !delete.is_empty() {
        text.push(format!("• delete: {}", delete.join(", ")));
    }
    if !keep.is_empty() {
        text.push(format!("• keep (retained): {}", keep.join(", ")));
    }
    Ok(Plan {
        text: text.join("\n"),
        digest: digest(&parts),
    })
}

async fn update_plan(ctx: &Ctx, parameters: &BTreeMap<String, String>, version: &Version) -> Result<Plan> {
    let summary = crate::engine::plan(ctx, parameters).await?;
    let mut parts = vec![ctx.target.names.stack(), ctx.engine.templates()?.1.sha256()];
    parts.extend(parameters.iter().map(|(k, v)| format!("{k}={v}")));
    parts.extend(summary.details.iter().cloned());
    let mut text = vec![summary.headline.clone()];
    text.extend(summary.details.iter().map(|d| format!("• {d}")));
    version_plan(ctx, version, &mut text, &mut parts).await?;
    Ok(Plan {
        text: text.join("\n"),
        digest: digest(&parts),
    })
}

/// What `update --revert-drift` would revert, resource by resource and property by property
/// (the live value, then the template's): a different drift is a different plan.
async fn revert_drift_plan(ctx: &Ctx) -> Result<Plan> {
    let summary = crate::engine::revert_drift_plan(ctx).await?;
    let mut parts = vec![ctx.target.names.stack(), "revert-drift".to_string()];
    parts.extend(summary.details.iter().cloned());
    let mut text = vec![summary.headline.clone()];
    text.extend(summary.details.iter().map(|d| match d.strip_prefix("  ") {
        Some(property) => format!("  ◦ {property}"),
        None => format!("• {d}"),
    }));
    Ok(Plan {
        text: text.join("\n"),
        digest: digest(&parts),
    })
}

async fn clean_plan(ctx: &Ctx) -> Result<Plan> {
    let app = &ctx.config().vars.app_name;
    let images = image::find_images(ctx.aws(), app, &image_name(app)).await?;
    let mut parts = vec![app.clone()];
    let mut text = vec![format!("Clean {app}'s image and build leftovers")];
    for i in &images {
        text.push(format!(
            "• delete image {} with {} snapshot(s)",
            i.id,
            i.snapshots.len()
        ));
        parts.push(format!("{}|{}", i.id, i.snapshots.join(",")));
    }
    if images.is_empty() {
        text.push("• no image".into());
    }
    Ok(Plan {
        text: text.join("\n"),
        digest: digest(&parts),
    })
}
