//! Stack events pushed by CloudFormation through EventBridge to an SQS queue, instead of
//! polled: what a queue message says ([`parse_message`]), the token that ties an operation's
//! events to its job ([`request_token`]), the consumer that long-polls the queue into the store
//! ([`consumer`]), and the setup stack that makes the rule and the queue ([`setup`]).

pub mod consumer;
pub mod setup;

use serde_json::Value;

use crate::progress::StackEvent;

/// The detail types CloudFormation publishes that carry a stack's progress.
pub const RESOURCE_CHANGE: &str = "CloudFormation Resource Status Change";
pub const STACK_CHANGE: &str = "CloudFormation Stack Status Change";
/// Published too (and routed to the queue, so a drift check could read it), but no progress.
pub const DRIFT_CHANGE: &str = "CloudFormation Drift Detection Status Change";

/// The client request token of one stack operation of a job: stable for the job, the
/// operation and the stack, so the call a replica repeats after a takeover is the same
/// request to CloudFormation (idempotent) and its events still match the job. Within
/// CloudFormation's alphabet (`[a-zA-Z0-9][-a-zA-Z0-9]*`, at most 128 characters).
pub fn request_token(job: Option<u64>, operation: &str, stack: &str) -> String {
    let who = match job {
        Some(id) => format!("job{id}"),
        // The CLI without the store: unique per process and operation.
        None => format!("cli{}x{}", std::process::id(), chrono::Utc::now().timestamp_millis()),
    };
    let raw = format!("argos-{who}-{operation}-{stack}");
    let clean: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(128)
        .collect();
    clean
}

/// What one queue message (an EventBridge event, JSON) says: the stack event and its
/// operation's client request token (empty when the operation had none). `None` for events
/// that carry no progress (drift detection, other sources) or that cannot be read; the caller
/// deletes those from the queue too.
pub fn parse_message(body: &str) -> Option<(StackEvent, String)> {
    let v: Value = serde_json::from_str(body).ok()?;
    if v.get("source")?.as_str()? != "aws.cloudformation" {
        return None;
    }
    let kind = v.get("detail-type")?.as_str()?;
    let detail = v.get("detail")?;
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let stack_id = text(detail, "stack-id");
    let stack_name = stack_name_of(&stack_id)?.to_string();
    let status_details = detail.get("status-details")?;
    let status = text(status_details, "status");
    if status.is_empty() {
        return None;
    }
    let reason = Some(text(status_details, "status-reason")).filter(|r| !r.is_empty());
    let (logical_id, resource_type, physical_id) = match kind {
        RESOURCE_CHANGE => (
            text(detail, "logical-resource-id"),
            text(detail, "resource-type"),
            text(detail, "physical-resource-id"),
        ),
        STACK_CHANGE => (
            stack_name.clone(),
            "AWS::CloudFormation::Stack".to_string(),
            stack_id.clone(),
        ),
        _ => return None,
    };
    let timestamp = v
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let event = StackEvent {
        event_id: text(&v, "id"),
        stack_name,
        stack_id,
        timestamp,
        logical_id,
        physical_id,
        resource_type,
        status,
        reason,
    };
    if event.event_id.is_empty() {
        return None;
    }
    Some((event, text(detail, "client-request-token")))
}

/// The stack's name from its id (`arn:...:stack/<name>/<uuid>`).
pub fn stack_name_of(stack_id: &str) -> Option<&str> {
    let rest = stack_id.split_once(":stack/")?.1;
    rest.split('/').next().filter(|n| !n.is_empty())
}

/// An EventBridge event as CloudFormation publishes it (for tests, benchmarks and the fake):
/// the `Detail` of a PutEvents entry and its detail type.
pub fn detail_json(e: &StackEvent, token: &str) -> (&'static str, String) {
    let mut detail = serde_json::json!({
        "stack-id": e.stack_id,
        "status-details": { "status": e.status, "status-reason": e.reason.clone().unwrap_or_default() },
        "client-request-token": token,
    });
    if e.is_stack_itself() {
        (STACK_CHANGE, detail.to_string())
    } else {
        detail["logical-resource-id"] = e.logical_id.clone().into();
        detail["physical-resource-id"] = e.physical_id.clone().into();
        detail["resource-type"] = e.resource_type.clone().into();
        (RESOURCE_CHANGE, detail.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESOURCE: &str = r#"{"version":"0","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type":"CloudFormation Resource Status Change","source":"aws.cloudformation",
        "account":"123456789012","time":"2026-12-07T06:00:01Z","region":"us-east-1",
        "resources":["arn:aws:cloudformation:us-east-1:123456789012:stack/argos-staging/5b1f"],
        "detail":{"stack-id":"arn:aws:cloudformation:us-east-1:123456789012:stack/argos-staging/5b1f",
        "logical-resource-id":"Database","physical-resource-id":"argos-db","status-details":
        {"status":"CREATE_FAILED","status-reason":"DB quota exceeded"},"resource-type":"AWS::RDS::DBInstance",
        "client-request-token":"argos-job42-create-argos-staging"}}"#;

    #[test]
    fn a_resource_change_reads_as_the_stack_event_it_reports() {
        let (e, token) = parse_message(RESOURCE).expect("a resource event");
        assert_eq!(token, "argos-job42-create-argos-staging");
        assert_eq!(e.event_id, "6a7e8feb-b491-4cf7-a9f1-bf3703467718");
        assert_eq!(e.stack_name, "argos-staging");
        assert_eq!(e.logical_id, "Database");
        assert_eq!(e.physical_id, "argos-db");
        assert_eq!(e.resource_type, "AWS::RDS::DBInstance");
        assert_eq!(e.status, "CREATE_FAILED");
        assert_eq!(e.reason.as_deref(), Some("DB quota exceeded"));
        assert_eq!(e.timestamp.unwrap().to_rfc3339(), "2026-12-07T06:00:01+00:00");
        assert!(!e.is_stack_itself());
    }

    #[test]
    fn a_stack_change_is_the_stacks_own_event_and_round_trips() {
        let (e, _) = parse_message(RESOURCE).unwrap();
        let own = StackEvent {
            logical_id: e.stack_name.clone(),
            resource_type: "AWS::CloudFormation::Stack".into(),
            physical_id: e.stack_id.clone(),
            status: "CREATE_COMPLETE".into(),
            reason: None,
            ..e
        };
        let (kind, detail) = detail_json(&own, "t1");
        assert_eq!(kind, STACK_CHANGE);
        let body = serde_json::json!({"id": own.event_id, "source": "aws.cloudformation", "detail-type": kind,
            "time": "2026-12-07T06:00:01Z", "detail": serde_json::from_str::<Value>(&detail).unwrap()});
        let (back, token) = parse_message(&body.to_string()).unwrap();
        assert_eq!((back, token.as_str()), (own, "t1"));
    }

    #[test]
    fn drift_and_foreign_events_carry_no_progress() {
        let drift = RESOURCE.replace("CloudFormation Resource Status Change", DRIFT_CHANGE);
        assert_eq!(parse_message(&drift), None);
        assert_eq!(parse_message(&RESOURCE.replace("aws.cloudformation", "aws.ec2")), None);
        assert_eq!(parse_message("not json"), None);
    }

    #[test]
    fn tokens_are_stable_per_job_and_keep_to_cloudformations_alphabet() {
        let t = request_token(Some(42), "create", "argos-staging");
        assert_eq!(t, "argos-job42-create-argos-staging");
        assert_eq!(t, request_token(Some(42), "create", "argos-staging"));
        assert_ne!(t, request_token(Some(42), "delete", "argos-staging"));
        let long = request_token(Some(1), "update", &"x.y_".repeat(60));
        assert!(long.len() <= 128 && long.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
