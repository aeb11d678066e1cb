//! Drift: asks CloudFormation whether the live resources still match the stack
//! (DetectStackDrift, then its status until done, then every resource's result), and names the
//! resources it did not or could not check: unsupported types are left out of the results while
//! the stack still reads IN_SYNC, so "in sync" alone would hide them.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_cloudformation::types::{StackDriftDetectionStatus, StackResourceDriftStatus};
use tokio::time::Instant;

use crate::aws_call;
use crate::cloud::{stack, Aws};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::redact::{is_secret_name, MASK};
use crate::store::DriftState;

/// What one detection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftReport {
    pub stack_name: String,
    /// The resources whose live configuration differs from the stack's (or that are gone).
    pub drifted: Vec<DriftedResource>,
    /// How many resources CloudFormation checked and found in sync.
    pub in_sync: usize,
    /// `(logical id, type)` of the stack's resources with no result: types CloudFormation
    /// cannot check, and those it reported NOT_CHECKED or UNKNOWN.
    pub not_checked: Vec<(String, String)>,
    /// From DetectStackDrift to the last result read.
    pub took: Duration,
}

impl DriftReport {
    pub fn is_drifted(&self) -> bool {
        !self.drifted.is_empty()
    }
}

/// One drifted resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftedResource {
    pub logical_id: String,
    pub resource_type: String,
    /// MODIFIED or DELETED.
    pub status: String,
    pub properties: Vec<PropertyDrift>,
}

/// One changed property; values that may be secrets are masked before they get here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyDrift {
    pub path: String,
    pub expected: String,
    pub actual: String,
    /// ADD, REMOVE or NOT_EQUAL.
    pub difference: String,
}

/// Runs one detection and records how it ended in the store (when the engine has one), so
/// `status`, `envs` and a scheduled check can tell it later. A refusal (no stack, cancelled)
/// detected nothing and is not recorded.
pub async fn drift_and_record(ctx: &Ctx) -> Result<DriftReport> {
    let result = drift(ctx).await;
    let Some(store) = &ctx.engine.store else { return result };
    let (state, count, summary) = match &result {
        Ok(r) => (
            if r.is_drifted() {
                DriftState::Drifted
            } else {
                DriftState::InSync
            },
            r.drifted.len() as u32,
            serde_json::json!({
                "drifted": r.drifted.iter().map(|d| [&d.logical_id, &d.resource_type]).collect::<Vec<_>>(),
                "not_checked": r.not_checked,
                "in_sync": r.in_sync,
                "took_ms": r.took.as_millis() as u64,
            }),
        ),
        Err(Error::Refused(_)) => return result,
        // Already redacted where it quotes AWS.
        Err(e) => (DriftState::Failed, 0, serde_json::json!({ "error": e.to_string() })),
    };
    let env = ctx.target.env.as_str();
    if let Err(e) = store.record_drift(env, state, count, &summary.to_string()) {
        tracing::warn!(env, error = %e, "the drift result could not be recorded");
    }
    result
}

/// Runs one detection on the environment's stack and reads its results.
pub async fn drift(ctx: &Ctx) -> Result<DriftReport> {
    let stack_name = ctx.target.names.stack();
    let aws = ctx.aws();
    let Some(info) = stack::describe(aws, &stack_name).await? else {
        return Err(Error::Refused(format!(
            "stack {stack_name} does not exist: there is nothing to check for drift"
        )));
    };
    let started = Instant::now();
    ctx.progress
        .step("detect drift", format!("{stack_name}: detection started"));
    let out = aws_call!(
        aws,
        "DetectStackDrift",
        aws.cfn().await.detect_stack_drift().stack_name(&info.id).send()
    )?;
    let detection = out.stack_drift_detection_id().unwrap_or_default().to_string();
    let timeout = Duration::from_secs(ctx.config().settings.timeouts.drift_detection_secs);
    wait_for_detection(ctx, aws, &detection, started, timeout).await?;
    let results = resource_drifts(aws, &info.id).await?;
    let resources = stack::resources(aws, &info.id).await?;
    let secrets = no_echo_values(ctx, &info);
    let mask = |text: &str| {
        let text = if secrets.iter().any(|s| s == text) {
            MASK.to_string()
        } else {
            text.to_string()
        };
        ctx.engine.redactor.redact(&text)
    };
    let mut report = DriftReport {
        stack_name,
        drifted: vec![],
        in_sync: 0,
        not_checked: vec![],
        took: Duration::ZERO,
    };
    let mut answered = BTreeSet::new();
    for r in &results {
        let id = r.logical_resource_id().unwrap_or_default().to_string();
        let kind = r.resource_type().unwrap_or_default().to_string();
        match r.stack_resource_drift_status() {
            Some(StackResourceDriftStatus::InSync) => report.in_sync += 1,
            Some(s @ (StackResourceDriftStatus::Modified | StackResourceDriftStatus::Deleted)) => {
                let properties = r
                    .property_differences()
                    .iter()
                    .map(|d| {
                        let path = d.property_path().unwrap_or_default().to_string();
                        let secret = is_secret_path(&path);
                        let value = |v: Option<&str>| {
                            if secret {
                                MASK.to_string()
                            } else {
                                mask(v.unwrap_or_default())
                            }
                        };
                        PropertyDrift {
                            expected: value(d.expected_value()),
                            actual: value(d.actual_value()),
                            difference: d.difference_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                            path,
                        }
                    })
                    .collect();
                report.drifted.push(DriftedResource {
                    logical_id: id.clone(),
                    resource_type: kind,
                    status: s.as_str().to_string(),
                    properties,
                });
            }
            // NOT_CHECKED, UNKNOWN, or a status this SDK does not know: not checked.
            _ => continue,
        }
        answered.insert(id);
    }
    report.not_checked = resources
        .into_iter()
        .filter(|(id, ..)| !answered.contains(id))
        .map(|(id, kind, ..)| (id, kind))
        .collect();
    report.took = started.elapsed();
    Ok(report)
}

/// Polls the detection until it is complete; a failed one says why, one that outlasts the
/// timeout says so. A throttled poll is only a slower poll.
async fn wait_for_detection(ctx: &Ctx, aws: &Aws, detection: &str, started: Instant, timeout: Duration) -> Result<()> {
    let pace = ctx.engine.pace(timeout.as_secs());
    let mut poll = pace.poll;
    loop {
        let answer = aws_call!(
            aws,
            "DescribeStackDriftDetectionStatus",
            aws.cfn()
                .await
                .describe_stack_drift_detection_status()
                .stack_drift_detection_id(detection)
                .send()
        );
        match answer {
            Ok(out) => match out.detection_status() {
                Some(StackDriftDetectionStatus::DetectionComplete) => return Ok(()),
                Some(StackDriftDetectionStatus::DetectionFailed) => {
                    let reason = out.detection_status_reason().unwrap_or("CloudFormation gave no reason");
                    return Err(Error::StackFailed(format!(
                        "drift detection failed: {}",
                        ctx.engine.redactor.redact(reason)
                    )));
                }
                _ => {}
            },
            Err(e) if crate::metrics::is_throttling(e.code.as_deref()) => {}
            Err(e) => return Err(e.into()),
        }
        if started.elapsed() >= timeout {
            return Err(Error::Timeout(format!(
                "drift detection still running after {}s (timeouts.drift_detection_secs); its result was not read",
                timeout.as_secs()
            )));
        }
        tokio::select! {
            _ = ctx.cancel.cancelled() => return Err(Error::Refused("drift detection cancelled".into())),
            _ = tokio::time::sleep(poll) => {}
        }
        poll = (poll * 2).min(pace.max_poll);
    }
}

/// Every resource's result, page by page.
async fn resource_drifts(aws: &Aws, stack_id: &str) -> Result<Vec<aws_sdk_cloudformation::types::StackResourceDrift>> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = aws_call!(
            aws,
            "DescribeStackResourceDrifts",
            aws.cfn()
                .await
                .describe_stack_resource_drifts()
                .stack_name(stack_id)
                .set_next_token(token.clone())
                .send()
        )?;
        all.extend(out.stack_resource_drifts().iter().cloned());
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(all),
        }
    }
}

/// The values of the template's NoEcho parameters that the engine knows (from the config's
/// variables), so a property set from one is masked wherever it appears.
pub(crate) fn no_echo_values(ctx: &Ctx, info: &stack::StackInfo) -> Vec<String> {
    let Ok((_, main)) = ctx.engine.templates() else {
        return vec![];
    };
    let secret_names: Vec<String> = main
        .parameters()
        .into_iter()
        .filter(|p| p.no_echo)
        .map(|p| p.name)
        .collect();
    let known = crate::engine::params::known_values(ctx.config(), &ctx.target, None, ("", "")).unwrap_or_default();
    secret_names
        .iter()
        .filter_map(|n| known.get(n).or_else(|| info.parameters.get(n)))
        .filter(|v| !v.is_empty() && v.as_str() != "****")
        .cloned()
        .collect()
}

/// Whether a property path (`/MasterUserPassword`, `/Environment/Variables/API_TOKEN`) names
/// a value that may be a secret.
pub fn is_secret_path(path: &str) -> bool {
    path.split('/').any(|segment| {
        let upper = segment.to_ascii_uppercase();
        is_secret_name(segment) || upper.contains("PASSWORD") || upper.contains("SECRET")
    })
}

#[cfg(test)]
mod tests {
    use super::is_secret_path;

    #[test]
    fn password_like_paths_are_secret() {
        assert!(is_secret_path("/MasterUserPassword"));
        assert!(is_secret_path("/Environment/Variables/API_TOKEN"));
        assert!(is_secret_path("/SecretString"));
        assert!(!is_secret_path("/SecurityGroupIngress/0/CidrIp"));
        assert!(!is_secret_path("/InstanceType"));
        assert!(!is_secret_path("/KeyName"));
    }
}
