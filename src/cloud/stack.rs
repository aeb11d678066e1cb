//! Stack operations: describe, create, change sets (preview, execute), delete. Each long
//! operation is handed to the [`StackWatcher`] so callers get typed progress and a root cause.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudformation::types::{Capability, ChangeSetStatus, ChangeSetType, DeploymentMode, Parameter, Tag};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::aws_call;
use crate::cloud::watcher::{Follow, Operation, Outcome, Pace, StackWatcher};
use crate::cloud::Aws;
use crate::error::{Error, Result};
use crate::progress::{Progress, ProgressTx, ResourceChange};

/// What DescribeStacks says about a stack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackInfo {
    pub name: String,
    pub id: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub outputs: BTreeMap<String, String>,
    pub parameters: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    pub updated: Option<chrono::DateTime<chrono::Utc>>,
}

/// A stack parameter value for create or update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    Set(String),
    /// Keep what the stack has (updates only).
    Previous,
}

/// The states in which a stack can neither be used nor updated, and is safe to delete and
/// recreate because it holds nothing (a failed first create).
pub const RECREATE_STATES: &[&str] = &["ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS"];

/// States in which a stack is healthy and usable.
pub const HEALTHY_STATES: &[&str] = &[
    "CREATE_COMPLETE",
    "UPDATE_COMPLETE",
    "UPDATE_ROLLBACK_COMPLETE",
    "IMPORT_COMPLETE",
];

fn to_chrono(t: &aws_sdk_cloudformation::primitives::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// Every stack of the account and region (deleted ones included, as DescribeStacks lists
/// them for a while), every page: the reports and the web page's overview read them all.
pub async fn all(aws: &Aws) -> std::result::Result<Vec<aws_sdk_cloudformation::types::Stack>, crate::cloud::AwsError> {
    let mut stacks = Vec::new();
    let mut token = None;
    loop {
        let out = aws_call!(
            aws,
            "DescribeStacks",
            aws.cfn().await.describe_stacks().set_next_token(token.clone()).send()
        )?;
        stacks.extend(out.stacks().iter().cloned());
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(stacks),
        }
    }
}

/// Describes a stack by name or id; `None` if it does not exist.
pub async fn describe(aws: &Aws, name: &str) -> Result<Option<StackInfo>> {
    let out = match aws_call!(
        aws,
        "DescribeStacks",
        aws.cfn().await.describe_stacks().stack_name(name).send()
    ) {
        Ok(out) => out,
        Err(e) if e.is_missing_stack() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(s) = out.stacks().first() else { return Ok(None) };
    let status = s.stack_status().map(|x| x.as_str().to_string()).unwrap_or_default();
    if status == "DELETE_COMPLETE" {
        return Ok(None);
    }
    Ok(Some(StackInfo {
        name: s.stack_name().unwrap_or_default().to_string(),
        id: s.stack_id().unwrap_or_default().to_string(),
        status,
        status_reason: s.stack_status_reason().map(str::to_string),
        outputs: s
            .outputs()
            .iter()
            .filter_map(|o| {
                Some((
                    o.output_key()?.to_string(),
                    o.output_value().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
        parameters: s
            .parameters()
            .iter()
            .filter_map(|p| {
                Some((
                    p.parameter_key()?.to_string(),
                    p.parameter_value().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
        tags: s
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect(),
        created: s.creation_time().and_then(to_chrono),
        updated: s.last_updated_time().and_then(to_chrono),
    }))
}

fn parameters(values: &BTreeMap<String, ParamValue>) -> Vec<Parameter> {
    values
        .iter()
        .map(|(k, v)| match v {
            ParamValue::Set(val) => Parameter::builder().parameter_key(k).parameter_value(val).build(),
            ParamValue::Previous => Parameter::builder().parameter_key(k).use_previous_value(true).build(),
        })
        .collect()
}

fn tags(values: &BTreeMap<String, String>) -> Vec<Tag> {
    values
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// What a create needs.
pub struct CreateRequest<'a> {
    pub name: &'a str,
    pub body: &'a str,
    pub parameters: BTreeMap<String, ParamValue>,
    pub tags: BTreeMap<String, String>,
    /// How many resources the template will create (for the progress bar).
    pub resources: usize,
}

/// Creates a stack and watches it to the end by polling. A failed create is left for the
/// caller to delete (it knows the stack's name and id from the error path).
pub async fn create(
    aws: &Aws,
    req: CreateRequest<'_>,
    pace: Pace,
    progress: &ProgressTx,
    cancel: &CancellationToken,
) -> Result<(String, Outcome)> {
    create_following(aws, req, &Follow::default(), pace, progress, cancel).await
}

/// Creates a stack with the operation's client request token and watches it to the end,
/// through pushed events where `follow` has them.
pub async fn create_following(
    aws: &Aws,
    req: CreateRequest<'_>,
    follow: &Follow,
    pace: Pace,
    progress: &ProgressTx,
    cancel: &CancellationToken,
) -> Result<(String, Outcome)> {
    let out = aws_call!(
        aws,
        "CreateStack",
        aws.cfn()
            .await
            .create_stack()
            .stack_name(req.name)
            .template_body(req.body)
            .set_parameters(Some(parameters(&req.parameters)))
            .set_tags(Some(tags(&req.tags)))
            .capabilities(Capability::CapabilityNamedIam)
            .set_role_arn(aws.cloudformation_role().map(str::to_string))
            .set_client_request_token(follow.token.clone())
            .send()
    )?;
    let id = out.stack_id().unwrap_or(req.name).to_string();
    let mut watcher = StackWatcher::for_new_stack(req.name, &id);
    watcher.follow(follow);
    watcher.expect_resources(req.resources);
    let outcome = watcher.wait(aws, Operation::Create, pace, progress, cancel).await?;
    Ok((id, outcome))
}

/// Deletes a stack and waits until it is gone. Returns the outcome; DELETE_FAILED is an
/// outcome, not an error, so the caller can name the resources left.
pub async fn delete(
    aws: &Aws,
    stack: &StackInfo,
    pace: Pace,
    progress: &ProgressTx,
    cancel: &CancellationToken,
) -> Result<Outcome> {
    delete_following(aws, stack, &Follow::default(), pace, progress, cancel).await
}

/// [`delete`] with the operation's client request token, through pushed events where `follow`
/// has them.
pub async fn delete_following(
    aws: &Aws,
    stack: &StackInfo,
    follow: &Follow,
    pace: Pace,
    progress: &ProgressTx,
    cancel: &CancellationToken,
) -> Result<Outcome> {
    let mut watcher = StackWatcher::before_operation(aws, &stack.name, &stack.id).await?;
    watcher.follow(follow);
    // What this delete removes: a stack whose last delete failed still lists the resources
    // that one removed, and they will not be deleted again.
    let left = resources(aws, &stack.id)
        .await?
        .iter()
        .filter(|r| r.2 != "DELETE_COMPLETE")
        .count();
    watcher.expect_resources(left);
    aws_call!(
        aws,
        "DeleteStack",
        aws.cfn()
            .await
            .delete_stack()
            .stack_name(&stack.id)
            .set_client_request_token(follow.token.clone())
            .send()
    )?;
    watcher.wait(aws, Operation::Delete, pace, progress, cancel).await
}

/// The stack's resources: (logical id, type, status, physical id).
pub async fn resources(aws: &Aws, stack: &str) -> Result<Vec<(String, String, String, String)>> {
    let out = aws_call!(
        aws,
        "DescribeStackResources",
        aws.cfn().await.describe_stack_resources().stack_name(stack).send()
    )?;
    Ok(out
        .stack_resources()
        .iter()
        .map(|r| {
            (
                r.logical_resource_id().unwrap_or_default().to_string(),
                r.resource_type().unwrap_or_default().to_string(),
                r.resource_status().map(|s| s.as_str().to_string()).unwrap_or_default(),
                r.physical_resource_id().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// A created change set, described.
#[derive(Debug, Clone)]
pub struct ChangeSet {
    pub id: String,
    pub stack_id: String,
    /// None when CloudFormation found nothing to change.
    pub changes: Option<Vec<ResourceChange>>,
    /// The properties it changes, where CloudFormation gives them (a REVERT_DRIFT change set
    /// does: the live value and the template's).
    pub properties: Vec<PropertyChange>,
}

/// One property a change set changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyChange {
    pub logical_id: String,
    /// `/Properties/InstanceType`, or the property's name when no path is given.
    pub path: String,
    /// The value now (for a drifted property: the live one), if CloudFormation gives it.
    pub before: Option<String>,
    /// The value after the change (the template's), if CloudFormation gives it.
    pub after: Option<String>,
}

/// What a change set is made from.
#[derive(Debug, Clone, Copy)]
pub enum ChangeSetSource<'a> {
    /// This template body (an update or a plan).
    Template(&'a str),
    /// The stack's current template, in REVERT_DRIFT mode: the live resources are brought back
    /// to what the template says.
    RevertDrift,
}

/// Creates an UPDATE change set and waits until it is ready. "No changes" is recognised and
/// the empty change set deleted.
pub async fn create_change_set(
    aws: &Aws,
    stack: &str,
    body: &str,
    params: &BTreeMap<String, ParamValue>,
    stack_tags: &BTreeMap<String, String>,
    timeout: Duration,
    poll: Duration,
) -> Result<ChangeSet> {
    let source = ChangeSetSource::Template(body);
    create_change_set_from(aws, stack, source, params, stack_tags, timeout, poll).await
}

/// [`create_change_set`] from a template body or, in REVERT_DRIFT mode, from the stack's
/// current template (whose changes are described with their property values).
pub async fn create_change_set_from(
    aws: &Aws,
    stack: &str,
    source: ChangeSetSource<'_>,
    params: &BTreeMap<String, ParamValue>,
    stack_tags: &BTreeMap<String, String>,
    timeout: Duration,
    poll: Duration,
) -> Result<ChangeSet> {
    let name = format!("argos-{}", chrono::Utc::now().format("%Y%m%d%H%M%S%3f"));
    let (body, revert) = match source {
        ChangeSetSource::Template(body) => (Some(body.to_string()), false),
        ChangeSetSource::RevertDrift => (None, true),
    };
    let out = aws_call!(
        aws,
        "CreateChangeSet",
        aws.cfn()
            .await
            .create_change_set()
            .stack_name(stack)
            .change_set_name(&name)
            .change_set_type(ChangeSetType::Update)
            .set_template_body(body)
            .set_use_previous_template(revert.then_some(true))
            .set_deployment_mode(revert.then_some(DeploymentMode::RevertDrift))
            .set_parameters(Some(parameters(params)))
            .set_tags(Some(tags(stack_tags)))
            .capabilities(Capability::CapabilityNamedIam)
            .set_role_arn(aws.cloudformation_role().map(str::to_string))
            .send()
    )?;
    let id = out.id().unwrap_or(&name).to_string();
    let stack_id = out.stack_id().unwrap_or(stack).to_string();
    let deadline = Instant::now() + timeout;
    loop {
        let d = aws_call!(
            aws,
            "DescribeChangeSet",
            aws.cfn()
                .await
                .describe_change_set()
                .change_set_name(&id)
                .stack_name(&stack_id)
                .set_include_property_values(revert.then_some(true))
                .send()
        )?;
        match d.status() {
            Some(ChangeSetStatus::CreateComplete) => {
                let mut changes: Vec<ResourceChange> = d
                    .changes()
                    .iter()
                    .filter_map(|c| c.resource_change())
                    .map(|rc| ResourceChange {
                        action: rc.action().map(|a| a.as_str().to_string()).unwrap_or_default(),
                        logical_id: rc.logical_resource_id().unwrap_or_default().to_string(),
                        resource_type: rc.resource_type().unwrap_or_default().to_string(),
                        replacement: rc.replacement().map(|r| r.as_str().to_string()),
                    })
                    .collect();
                changes.sort_by_key(ResourceChange::danger_rank);
                return Ok(ChangeSet {
                    id,
                    stack_id,
                    changes: Some(changes),
                    properties: property_changes(d.changes()),
                });
            }
            Some(ChangeSetStatus::Failed) => {
                let reason = d.status_reason().unwrap_or_default().to_string();
                let _ = aws_call!(
                    aws,
                    "DeleteChangeSet",
                    aws.cfn()
                        .await
                        .delete_change_set()
                        .change_set_name(&id)
                        .stack_name(&stack_id)
                        .send()
                );
                if is_no_change(&reason) {
                    return Ok(ChangeSet {
                        id,
                        stack_id,
                        changes: None,
                        properties: vec![],
                    });
                }
                return Err(Error::StackFailed(format!("change set for {stack} failed: {reason}")));
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "change set for {stack} not ready after {} s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(poll).await;
    }
}

/// The property-level details of a change set's resource changes (for drift: the live value
/// before, the template's after).
fn property_changes(changes: &[aws_sdk_cloudformation::types::Change]) -> Vec<PropertyChange> {
    let mut out = Vec::new();
    for rc in changes.iter().filter_map(|c| c.resource_change()) {
        let logical_id = rc.logical_resource_id().unwrap_or_default();
        for target in rc.details().iter().filter_map(|d| d.target()) {
            let Some(path) = target.path().or(target.name()) else {
                continue;
            };
            let drift = target.drift();
            let change = PropertyChange {
                logical_id: logical_id.to_string(),
                path: path.to_string(),
                before: target
                    .before_value()
                    .or_else(|| drift.and_then(|d| d.actual_value()))
                    .map(str::to_string),
                after: target
                    .after_value()
                    .or_else(|| drift.and_then(|d| d.previous_value()))
                    .map(str::to_string),
            };
            // One property can be named by several details (a static and a dynamic evaluation).
            if !out.contains(&change) {
                out.push(change);
            }
        }
    }
    out
}

/// CloudFormation's wordings for "nothing to do".
pub fn is_no_change(reason: &str) -> bool {
    reason.contains("didn't contain changes") || reason.contains("No updates are to be performed")
}

/// Emits a change set's changes as progress, danger first.
pub fn report_changes(changes: &[ResourceChange], progress: &ProgressTx) {
    for c in changes {
        progress.emit(Progress::Change(c.clone()));
    }
}

/// Executes a change set and watches the update through cleanup or rollback to its end.
pub async fn execute_change_set(
    aws: &Aws,
    cs: &ChangeSet,
    stack_name: &str,
    follow: &Follow,
    pace: Pace,
    progress: &ProgressTx,
    cancel: &CancellationToken,
) -> Result<Outcome> {
    let mut watcher = StackWatcher::before_operation(aws, stack_name, &cs.stack_id).await?;
    watcher.follow(follow);
    watcher.expect_resources(cs.changes.as_ref().map_or(0, Vec::len));
    aws_call!(
        aws,
        "ExecuteChangeSet",
        aws.cfn()
            .await
            .execute_change_set()
            .change_set_name(&cs.id)
            .stack_name(&cs.stack_id)
            .set_client_request_token(follow.token.clone())
            .send()
    )?;
    match watcher.wait(aws, Operation::Update, pace, progress, cancel).await {
        Err(Error::Cancelled) => {
            // Stop the update on the AWS side too; CloudFormation then rolls it back.
            let _ = aws_call!(
                aws,
                "CancelUpdateStack",
                aws.cfn().await.cancel_update_stack().stack_name(&cs.stack_id).send()
            );
            progress.info(format!("cancel requested: CloudFormation is rolling {stack_name} back"));
            Err(Error::Cancelled)
        }
        other => other,
    }
}

/// Deletes a change set (after a preview).
pub async fn delete_change_set(aws: &Aws, cs: &ChangeSet) -> Result<()> {
    aws_call!(
        aws,
        "DeleteChangeSet",
        aws.cfn()
            .await
            .delete_change_set()
            .change_set_name(&cs.id)
            .stack_name(&cs.stack_id)
            .send()
    )?;
    Ok(())
}

/// The newest events of a stack, oldest first.
pub async fn recent_events(aws: &Aws, stack: &str, n: usize) -> Result<Vec<crate::progress::StackEvent>> {
    let out = aws_call!(
        aws,
        "DescribeStackEvents",
        aws.cfn().await.describe_stack_events().stack_name(stack).send()
    )?;
    let mut v: Vec<_> = out.stack_events().iter().take(n).map(super::watcher::convert).collect();
    v.reverse();
    Ok(v)
}
