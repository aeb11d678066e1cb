//! SQS (AWS JSON 1.0, `X-Amz-Target: AmazonSQS.<Action>`) for pushed stack events: one queue
//! that EventBridge fills with CloudFormation's events of every stack as they become visible
//! (the events are published when a receive looks, which is when the real bus would have
//! delivered them), long polling, receipt handles and a visibility timeout. Faults to inject:
//! an event lost on the way, every event delivered twice, batches delivered newest first.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::*;

#[derive(Clone, Debug)]
pub(super) struct Message {
    id: String,
    body: String,
    receipt: String,
    /// Invisible (received, not deleted) until then.
    hidden_until: Option<Instant>,
}

/// The queue and what has been published to it.
#[derive(Default)]
pub(super) struct SqsState {
    pub(super) queue: Option<String>,
    pub(super) messages: Vec<Message>,
    published: HashSet<String>,
    pub(super) lose: Vec<(String, String)>,
    pub(super) duplicate: bool,
    pub(super) newest_first: bool,
    pub(super) visibility: Duration,
    receipts: u64,
}

impl FakeAws {
    /// Creates the events queue `name`: from now on every stack's events reach it.
    pub fn create_events_queue(&self, name: &str) {
        let mut st = lock(&self.state);
        st.sqs.queue = Some(name.to_string());
        if st.sqs.visibility.is_zero() {
            st.sqs.visibility = Duration::from_secs(30);
        }
    }

    /// The event of `logical_id` reaching `status` never reaches the queue (lost on the way).
    pub fn lose_pushed(&self, logical_id: &str, status: &str) {
        lock(&self.state)
            .sqs
            .lose
            .push((logical_id.to_string(), status.to_string()));
    }

    /// Every event is delivered twice (two messages, one event id), as at-least-once allows.
    pub fn duplicate_pushed(&self) {
        lock(&self.state).sqs.duplicate = true;
    }

    /// Each batch of events is delivered newest first (EventBridge does not promise order).
    pub fn reorder_pushed(&self) {
        lock(&self.state).sqs.newest_first = true;
    }

    /// How long a received message stays invisible unless deleted (the queue's default 30 s).
    pub fn set_visibility_timeout(&self, d: Duration) {
        lock(&self.state).sqs.visibility = d;
    }

    /// Messages in the queue (visible or received and not deleted).
    pub fn queued_messages(&self) -> usize {
        lock(&self.state).sqs.messages.len()
    }
}

impl State {
    /// Publishes the events that became visible since the last look.
    fn publish(&mut self, now: Instant) {
        if self.sqs.queue.is_none() {
            return;
        }
        let mut batch = Vec::new();
        for s in &self.stacks {
            for e in s.visible(now) {
                if self.sqs.published.contains(&e.id) {
                    continue;
                }
                batch.push((s.id.clone(), s.is_own(e), e.clone()));
            }
        }
        batch.sort_by_key(|(_, _, e)| (e.visible_at, e.seq));
        if self.sqs.newest_first {
            batch.reverse();
        }
        for (stack_id, own, e) in batch {
            self.sqs.published.insert(e.id.clone());
            if self.sqs.lose.iter().any(|(l, s)| *l == e.logical_id && *s == e.status) {
                continue;
            }
            let mut detail = json!({
                "stack-id": stack_id,
                "status-details": {"status": e.status, "status-reason": e.reason.clone().unwrap_or_default()},
                "client-request-token": e.token.clone().unwrap_or_default(),
            });
            let kind = if own {
                "CloudFormation Stack Status Change"
            } else {
                detail["logical-resource-id"] = e.logical_id.clone().into();
                detail["physical-resource-id"] = e.physical_id.clone().unwrap_or_default().into();
                detail["resource-type"] = e.resource_type.clone().into();
                "CloudFormation Resource Status Change"
            };
            let body = json!({
                "version": "0",
                // EventBridge's own id, not the stack event's.
                "id": format!("eb-{}", e.id),
                "detail-type": kind,
                "source": "aws.cloudformation",
                "account": ACCOUNT_ID,
                "time": self.wall(e.visible_at).to_rfc3339_opts(SecondsFormat::Millis, true),
                "region": REGION,
                "resources": [stack_id],
                "detail": detail,
            })
            .to_string();
            let copies = if self.sqs.duplicate { 2 } else { 1 };
            for _ in 0..copies {
                let n = self.next_seq();
                self.sqs.messages.push(Message {
                    id: uuid(n, 0x5a5),
                    body: body.clone(),
                    receipt: String::new(),
                    hidden_until: None,
                });
            }
        }
    }

    /// Up to `max` visible messages, now received (hidden for the visibility timeout).
    fn take_visible(&mut self, max: usize, now: Instant) -> Vec<Message> {
        self.publish(now);
        let visibility = self.sqs.visibility;
        let mut out = Vec::new();
        for m in self.sqs.messages.iter_mut() {
            if out.len() >= max {
                break;
            }
            if m.hidden_until.is_some_and(|t| t > now) {
                continue;
            }
            self.sqs.receipts += 1;
            m.receipt = format!("rh-{}-{}", m.id, self.sqs.receipts);
            m.hidden_until = Some(now + visibility);
            out.push(m.clone());
        }
        out
    }
}

fn json_error(status: u16, code: &str, message: &str) -> Response {
    Response::new(status)
        .with_header("content-type", "application/x-amz-json-1.0")
        .with_header("x-amzn-query-error", &format!("{code};Sender"))
        .with_body(
            json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": message})
                .to_string()
                .into_bytes(),
        )
}

fn json_ok(v: Value) -> Response {
    Response::new(200)
        .with_header("content-type", "application/x-amz-json-1.0")
        .with_body(v.to_string().into_bytes())
}

/// Answers one SQS request. Long polls wait outside the state's lock.
pub(super) fn handle_sqs(state: &Mutex<State>, req: Request, action: &str) -> Response {
    let p: Value = serde_json::from_str(&req.body_text()).unwrap_or(Value::Null);
    {
        let mut st = lock(state);
        let call_index = st.calls.len();
        st.calls.push(Call {
            service: "sqs".into(),
            action: action.to_string(),
            params: BTreeMap::new(),
            throttled: false,
            status: 200,
            at: std::time::Instant::now(),
        });
        let qualified = format!("sqs:{action}");
        for key in [qualified.as_str(), action] {
            if let Some(n) = st.throttles.get_mut(key).filter(|n| **n > 0) {
                *n -= 1;
                st.calls[call_index].throttled = true;
                st.calls[call_index].status = 400;
                return json_error(400, "RequestThrottled", "Rate exceeded");
            }
            if let Some((status, code, message)) = st.failures.get_mut(key).and_then(VecDeque::pop_front) {
                st.calls[call_index].status = status;
                return json_error(status, &code, &message);
            }
        }
    }
    let queue_of = |st: &State, url: &str| st.sqs.queue.clone().filter(|q| url.ends_with(&format!("/{q}")));
    match action {
        "GetQueueUrl" => {
            let st = lock(state);
            let name = p["QueueName"].as_str().unwrap_or_default();
            match &st.sqs.queue {
                Some(q) if q == name => {
                    json_ok(json!({"QueueUrl": format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{q}")}))
                }
                _ => json_error(400, "QueueDoesNotExist", "The specified queue does not exist."),
            }
        }
        "ReceiveMessage" => {
            let url = p["QueueUrl"].as_str().unwrap_or_default().to_string();
            let max = p["MaxNumberOfMessages"].as_u64().unwrap_or(1).clamp(1, 10) as usize;
            let wait = std::time::Duration::from_secs(p["WaitTimeSeconds"].as_u64().unwrap_or(0).min(20));
            let until = std::time::Instant::now() + wait;
            loop {
                let got = {
                    let mut st = lock(state);
                    if queue_of(&st, &url).is_none() {
                        return json_error(400, "QueueDoesNotExist", "The specified queue does not exist.");
                    }
                    st.take_visible(max, Instant::now())
                };
                if !got.is_empty() || std::time::Instant::now() >= until {
                    let messages: Vec<Value> = got
                        .iter()
                        .map(|m| json!({"MessageId": m.id, "ReceiptHandle": m.receipt, "Body": m.body}))
                        .collect();
                    return json_ok(json!({"Messages": messages}));
                }
                // A long poll: the handler is synchronous, so wait off the runtime's workers.
                tokio::task::block_in_place(|| std::thread::sleep(std::time::Duration::from_millis(2)));
            }
        }
        "DeleteMessageBatch" | "DeleteMessage" => {
            let mut st = lock(state);
            let entries: Vec<(String, String)> = match action {
                "DeleteMessage" => vec![(
                    String::new(),
                    p["ReceiptHandle"].as_str().unwrap_or_default().to_string(),
                )],
                _ => p["Entries"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|e| {
                                (
                                    e["Id"].as_str().unwrap_or_default().to_string(),
                                    e["ReceiptHandle"].as_str().unwrap_or_default().to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let mut ok = Vec::new();
            for (id, receipt) in entries {
                // A stale receipt (the message was received again since) deletes nothing.
                st.sqs.messages.retain(|m| m.receipt != receipt);
                ok.push(json!({"Id": id}));
            }
            if action == "DeleteMessage" {
                json_ok(json!({}))
            } else {
                json_ok(json!({"Successful": ok, "Failed": []}))
            }
        }
        _ => json_error(400, "InvalidAction", &format!("fake SQS does not answer {action}")),
    }
}
