//! The setup stack of pushed events (`events/stack-events.json`, beside `formations/`): one EventBridge
//! rule for the app's stacks and one SQS queue with its policy, per account and region, kept
//! apart from the app's stack (the template merge reads only `formations/*.json`). `argos
//! setup-events` creates it, or updates it through a change set.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cloud::stack::{self, CreateRequest, ParamValue};
use crate::cloud::watcher::Pace;
use crate::cloud::Aws;
use crate::error::{Error, Result};
use crate::progress::ProgressTx;

/// The template, as shipped (also readable beside the app's templates).
pub const TEMPLATE: &str = include_str!("../../../events/stack-events.json");

/// The setup stack's name: `<app>-stack-events`.
pub fn stack_name(app: &str) -> String {
    format!("{app}-stack-events")
}

/// What the setup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setup {
    Created { queue_url: String },
    Updated { queue_url: String },
    Unchanged { queue_url: String },
}

/// Creates or updates the setup stack in `aws`'s account and region.
pub async fn ensure(
    aws: &Aws,
    app: &str,
    queue: &str,
    pace: Pace,
    progress: &ProgressTx,
    cancel: &CancellationToken,
) -> Result<Setup> {
    let name = stack_name(app);
    let params = BTreeMap::from([
        ("AppName".to_string(), ParamValue::Set(app.to_string())),
        ("QueueName".to_string(), ParamValue::Set(queue.to_string())),
    ]);
    let tags = BTreeMap::from([("argos:app".to_string(), app.to_string())]);
    let existing = stack::describe(aws, &name).await?;
    let setup = match existing {
        Some(info) if stack::RECREATE_STATES.contains(&info.status.as_str()) => {
            return Err(Error::Refused(format!(
                "stack {name} is {}: delete it, then run setup-events again",
                info.status
            )))
        }
        None => {
            progress.step("setup-events", format!("creating stack {name}"));
            let req = CreateRequest {
                name: &name,
                body: TEMPLATE,
                parameters: params,
                tags,
                resources: 3,
            };
            let (_, outcome) = stack::create(aws, req, pace, progress, cancel).await?;
            if !outcome.succeeded {
                return Err(Error::StackFailed(outcome.failure_line(&name)));
            }
            Setup::Created {
                queue_url: String::new(),
            }
        }
        Some(_) => {
            let cs = match stack::create_change_set(
                aws,
                &name,
                TEMPLATE,
                &params,
                &tags,
                Duration::from_secs(300),
                pace.poll,
            )
            .await
            {
                Ok(cs) => cs,
                // Some endpoints refuse an empty change set outright instead of failing it.
                Err(e) if stack::is_no_change(&e.to_string()) => stack::ChangeSet {
                    id: String::new(),
                    stack_id: String::new(),
                    changes: None,
                    properties: Vec::new(),
                },
                Err(e) => return Err(e),
            };
            match &cs.changes {
                None => Setup::Unchanged {
                    queue_url: String::new(),
                },
                Some(changes) => {
                    progress.step(
                        "setup-events",
                        format!("updating stack {name}: {} change(s)", changes.len()),
                    );
                    let follow = crate::cloud::watcher::Follow::default();
                    let outcome = stack::execute_change_set(aws, &cs, &name, &follow, pace, progress, cancel).await?;
                    if !outcome.succeeded {
                        return Err(Error::StackFailed(outcome.failure_line(&name)));
                    }
                    Setup::Updated {
                        queue_url: String::new(),
                    }
                }
            }
        }
    };
    let url = stack::describe(aws, &name)
        .await?
        .and_then(|s| s.outputs.get("QueueUrl").cloned())
        .unwrap_or_default();
    Ok(match setup {
        Setup::Created { .. } => Setup::Created { queue_url: url },
        Setup::Updated { .. } => Setup::Updated { queue_url: url },
        Setup::Unchanged { .. } => Setup::Unchanged { queue_url: url },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_routes_the_apps_stack_events_to_one_queue_only_from_its_rule() {
        let t: serde_json::Value = serde_json::from_str(TEMPLATE).expect("JSON");
        let r = &t["Resources"];
        assert_eq!(r.as_object().unwrap().len(), 3, "a queue, a rule, a policy");
        let pattern = &r["StackEventsRule"]["Properties"]["EventPattern"];
        assert_eq!(pattern["source"], serde_json::json!(["aws.cloudformation"]));
        assert_eq!(pattern["detail-type"].as_array().unwrap().len(), 3);
        let prefix = pattern["detail"]["stack-id"][0]["prefix"]["Fn::Sub"].as_str().unwrap();
        assert!(prefix.ends_with(":stack/${AppName}-"), "{prefix}");
        let policy = &r["StackEventsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
        assert_eq!(policy["Principal"]["Service"], "events.amazonaws.com");
        assert_eq!(policy["Action"], "sqs:SendMessage");
        assert_eq!(
            policy["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"],
            serde_json::json!(["StackEventsRule", "Arn"])
        );
    }

    #[test]
    fn the_merge_of_the_apps_templates_never_picks_it_up() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("formations");
        let (_, merged) = crate::template::load_formations(&dir).expect("the project's templates");
        let body: serde_json::Value = serde_json::from_str(&merged.body).expect("JSON");
        let resources = body["Resources"].as_object().unwrap();
        assert!(!resources.contains_key("StackEventsQueue") && !resources.contains_key("StackEventsRule"));
    }
}
