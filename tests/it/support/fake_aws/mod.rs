//! A scripted fake AWS endpoint (CloudFormation, EC2 and Auto Scaling query protocols) for tests.
//!
//! The real `aws-sdk-cloudformation` and `aws-sdk-autoscaling` clients and argos's own EC2
//! client talk to it through `endpoint_url(fake.endpoint_url())`. Stack operations play a [`StackScript`]: a timeline of
//! stack events in *scenario seconds* after the call. An event becomes visible once
//! `real elapsed since the call × time scale >= step.at`; the stack's `StackStatus` follows its
//! latest visible own event. The clock is `tokio::time::Instant`, so under
//! `tokio::time::pause()` the scenario follows the paused clock.
//!
//! Without a scripted timeline, operations play a default script derived from the template
//! (JSON templates only; other templates are accepted but have no resources). Throttling and
//! arbitrary error answers can be injected per action, and every call is recorded.
//!
//! Element names and list wrappings follow the SDK's own deserializers
//! (`protocol_serde/shape_*.rs` of aws-sdk-cloudformation 1.136 and aws-sdk-ec2 1.274, read
//! when the fake was written; moto answers the same EC2 calls in the lifecycle tests):
//! CloudFormation lists are wrapped in `<member>`, EC2 lists in `<item>`.

pub mod autoscaling;
mod change_sets;
mod cloudformation;
mod drift;
mod ec2;
mod query;
mod script;
mod sqs;
mod templates;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use tokio::time::Instant;

use super::http_server::{HttpServer, Request, Response};

pub use drift::*;
/// Account id used in every ARN and as the EC2 owner id of "self".
use query::*;
pub use script::*;
use templates::*;

pub const ACCOUNT_ID: &str = "123456789012";
/// Region used in every ARN.
pub const REGION: &str = "us-east-1";
/// `ResourceType` of the stack's own events (and of nested stacks).
pub const STACK_TYPE: &str = "AWS::CloudFormation::Stack";
/// A real-looking EC2 failure reason for [`StackScript::create_failed_with_cascade`].
pub const EC2_UNSUPPORTED_CONFIGURATION: &str = "Resource handler returned message: \"The requested configuration is currently not supported. Please check the documentation for supported configurations. (Service: Ec2, Status Code: 400, Request ID: 5f1c9a7e-2b4d-4c8e-9f3a-6d2e8b1c0a47)\" (RequestToken: 0b7d3f9e-8a61-2c45-d1e0-93f7a6b5c2d8, HandlerErrorCode: GeneralServiceException)";
/// A real-looking security group deletion failure for [`StackScript::delete_failed`].
pub const SG_DEPENDENCY_VIOLATION: &str = "Resource handler returned message: \"resource sg-0a1b2c3d4e5f67890 has a dependent object (Service: Ec2, Status Code: 400, Request ID: 2e9d7c4b-1a3f-4e5d-8c6b-7a9f0e1d2c3b)\" (RequestToken: 6c8e0a2b-4d6f-8a0c-2e4b-6d8f0a2c4e6b, HandlerErrorCode: GeneralServiceException)";
/// `StatusReason` of a change set that has no changes (exact AWS text).
pub const NO_CHANGES_REASON: &str =
    "The submitted information didn't contain changes. Submit different information to create a change set.";
/// Reason of the rolled-back resources that were cancelled by another resource's failure.
pub const CANCELLED_REASON: &str = "Resource creation cancelled";

pub(super) const CFN_XMLNS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";
pub(super) const EC2_XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
/// Scenario seconds a change set takes to reach CREATE_COMPLETE / FAILED.
pub(super) const CHANGE_SET_SECONDS: f64 = 2.0;

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub(super) struct EventRec {
    id: String,
    seq: u64,
    logical_id: String,
    physical_id: Option<String>,
    resource_type: String,
    status: String,
    reason: Option<String>,
    visible_at: Instant,
    token: Option<String>,
}

#[derive(Clone, Debug)]
pub(super) struct StackRec {
    id: String,
    name: String,
    created: Instant,
    last_updated: Option<Instant>,
    deletion_started: Option<Instant>,
    template: String,
    parameters: Vec<(String, String)>,
    tags: Vec<(String, String)>,
    capabilities: Vec<String>,
    /// Status before any own event is visible.
    initial_status: String,
    disable_rollback: bool,
    events: Vec<EventRec>,
}

impl StackRec {
    pub(super) fn visible(&self, now: Instant) -> &[EventRec] {
        let n = self.events.partition_point(|e| e.visible_at <= now);
        &self.events[..n]
    }

    pub(super) fn is_own(&self, e: &EventRec) -> bool {
        e.resource_type == STACK_TYPE && e.logical_id == self.name
    }

    pub(super) fn status(&self, now: Instant) -> (String, Option<String>) {
        self.visible(now)
            .iter()
            .rev()
            .find(|e| self.is_own(e))
            .map(|e| (e.status.clone(), e.reason.clone()))
            .unwrap_or_else(|| (self.initial_status.clone(), None))
    }

    /// Latest visible event per resource, in order of first appearance.
    pub(super) fn resources(&self, now: Instant) -> Vec<EventRec> {
        let mut order: Vec<String> = Vec::new();
        let mut latest: HashMap<String, EventRec> = HashMap::new();
        let mut pids: HashMap<String, String> = HashMap::new();
        for e in self.visible(now).iter().filter(|e| !self.is_own(e)) {
            if !latest.contains_key(&e.logical_id) {
                order.push(e.logical_id.clone());
            }
            if let Some(p) = e.physical_id.as_ref().filter(|p| !p.is_empty()) {
                pids.insert(e.logical_id.clone(), p.clone());
            }
            latest.insert(e.logical_id.clone(), e.clone());
        }
        order
            .into_iter()
            .filter_map(|l| {
                let mut e = latest.remove(&l)?;
                e.physical_id = pids.get(&l).cloned();
                Some(e)
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
pub(super) struct ChangeSetRec {
    id: String,
    name: String,
    stack_id: String,
    stack_name: String,
    kind: String,
    description: Option<String>,
    template: String,
    parameters: Vec<(String, String)>,
    capabilities: Vec<String>,
    tags: Vec<(String, String)>,
    changes: Vec<Change>,
    created: Instant,
    ready_at: Instant,
    executed: bool,
    obsolete: bool,
}

#[derive(Clone, Debug)]
pub(super) struct InstanceRec {
    instance: Ec2Instance,
    /// A pending state change (e.g. shutting-down -> terminated).
    becomes: Option<(Instant, String)>,
}

#[derive(Clone, Debug)]
pub(super) struct VpcRec {
    vpc_id: String,
    cidr: String,
    is_default: bool,
    tags: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub(super) struct SubnetRec {
    subnet_id: String,
    vpc_id: String,
    az: String,
    cidr: String,
    default_for_az: bool,
    tags: Vec<(String, String)>,
}

pub(super) struct State {
    time_scale: f64,
    page_size: usize,
    throttles: HashMap<String, usize>,
    failures: HashMap<String, VecDeque<(u16, String, String)>>,
    scripts: HashMap<(Option<String>, Op), VecDeque<StackScript>>,
    change_set_overrides: HashMap<String, VecDeque<Vec<Change>>>,
    outputs: HashMap<String, Vec<(String, String)>>,
    stacks: Vec<StackRec>,
    change_sets: Vec<ChangeSetRec>,
    instances: Vec<InstanceRec>,
    images: Vec<Ec2Image>,
    snapshots: Vec<String>,
    vpcs: Vec<VpcRec>,
    subnets: Vec<SubnetRec>,
    drift_scripts: HashMap<String, VecDeque<DriftScript>>,
    detections: Vec<DetectionRec>,
    groups: Vec<autoscaling::GroupRec>,
    calls: Vec<Call>,
    seq: u64,
    wall_base: DateTime<Utc>,
    instant_base: Instant,
    sqs: sqs::SqsState,
}

/// Handle on a running fake; clones share the same state and server.
#[derive(Clone)]
pub struct FakeAws {
    state: Arc<Mutex<State>>,
    server: Arc<HttpServer>,
}

/// An error answer.
#[derive(Debug)]
pub(super) struct AwsError {
    status: u16,
    code: String,
    message: String,
}

pub(super) fn err(code: &str, message: impl Into<String>) -> AwsError {
    AwsError {
        status: 400,
        code: code.to_string(),
        message: message.into(),
    }
}

pub(super) fn validation(message: impl Into<String>) -> AwsError {
    err("ValidationError", message)
}

pub(super) type Params = BTreeMap<String, String>;
pub(super) type Answer = Result<String, AwsError>;

pub(super) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FakeAws {
    /// Starts the fake on `127.0.0.1:0` (panics if it cannot bind).
    pub async fn start() -> FakeAws {
        match FakeAws::try_start().await {
            Ok(f) => f,
            Err(e) => panic!("fake AWS could not bind 127.0.0.1:0: {e}"),
        }
    }

    /// Starts the fake on `127.0.0.1:0`.
    pub async fn try_start() -> std::io::Result<FakeAws> {
        let state = Arc::new(Mutex::new(State {
            time_scale: 1.0,
            page_size: 100,
            throttles: HashMap::new(),
            failures: HashMap::new(),
            scripts: HashMap::new(),
            change_set_overrides: HashMap::new(),
            outputs: HashMap::new(),
            stacks: Vec::new(),
            change_sets: Vec::new(),
            instances: Vec::new(),
            images: Vec::new(),
            snapshots: Vec::new(),
            vpcs: Vec::new(),
            subnets: Vec::new(),
            drift_scripts: HashMap::new(),
            detections: Vec::new(),
            groups: Vec::new(),
            calls: Vec::new(),
            seq: 0,
            wall_base: Utc::now(),
            instant_base: Instant::now(),
            sqs: sqs::SqsState::default(),
        }));
        let s = state.clone();
        let server = HttpServer::start(move |req| handle(&s, req)).await?;
        Ok(FakeAws {
            state,
            server: Arc::new(server),
        })
    }

    /// `http://127.0.0.1:PORT`, for `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        self.server.url()
    }

    /// Scenario seconds per real second (default 1.0). Read when an operation starts: changing
    /// it does not move events of operations already under way.
    pub fn set_time_scale(&self, scenario_seconds_per_real_second: f64) {
        let scale = scenario_seconds_per_real_second;
        lock(&self.state).time_scale = if scale.is_finite() && scale > 0.0 { scale } else { 1.0 };
    }

    /// Events per DescribeStackEvents page (default 100, like AWS).
    pub fn set_event_page_size(&self, n: usize) {
        lock(&self.state).page_size = n.max(1);
    }

    /// The next `times` calls of `action` (`"DescribeStackEvents"` or
    /// `"cloudformation:DescribeStackEvents"`) answer HTTP 400 `Throttling` "Rate exceeded"
    /// (EC2: `RequestLimitExceeded` "Request limit exceeded.").
    pub fn throttle(&self, action: &str, times: usize) {
        *lock(&self.state).throttles.entry(action.to_string()).or_default() += times;
    }

    /// The next call of `action` answers this error (queued; one per call).
    pub fn fail_next(&self, action: &str, http_status: u16, code: &str, message: &str) {
        lock(&self.state)
            .failures
            .entry(action.to_string())
            .or_default()
            .push_back((http_status, code.to_string(), message.to_string()));
    }

    /// Plays `script` on the next `op` call on any stack (queued, FIFO).
    pub fn script_next(&self, op: Op, script: StackScript) {
        lock(&self.state)
            .scripts
            .entry((None, op))
            .or_default()
            .push_back(script);
    }

    /// Plays `script` on the next `op` call on the stack named `stack` (takes precedence over
    /// [`script_next`](Self::script_next)).
    pub fn script_next_for(&self, stack: &str, op: Op, script: StackScript) {
        lock(&self.state)
            .scripts
            .entry((Some(stack.to_string()), op))
            .or_default()
            .push_back(script);
    }

    /// The next change set created on `stack` has exactly these changes (an empty list is the
    /// no-change case). Without this, changes are computed from the templates.
    pub fn set_change_set(&self, stack: &str, changes: Vec<Change>) {
        lock(&self.state)
            .change_set_overrides
            .entry(stack.to_string())
            .or_default()
            .push_back(changes);
    }

    /// The next change set created on `stack` has no changes (Status FAILED).
    pub fn no_changes(&self, stack: &str) {
        self.set_change_set(stack, Vec::new());
    }

    /// Outputs DescribeStacks shows for `stack` once it has been created.
    pub fn set_outputs(&self, stack: &str, outputs: &[(&str, &str)]) {
        lock(&self.state).outputs.insert(stack.to_string(), pairs(outputs));
    }

    /// Adds an already complete stack (CREATE_COMPLETE with these resources and parameters,
    /// all events visible now); returns its stack id.
    pub fn add_stack(
        &self,
        name: &str,
        template_body: &str,
        parameters: &[(&str, &str)],
        resources: &[(&str, &str)],
    ) -> String {
        let mut st = lock(&self.state);
        let now = Instant::now();
        let given = pairs(parameters);
        let parameters = parse_template(template_body)
            .and_then(|tpl| resolve_parameters(&tpl, &given, &[]))
            .unwrap_or(given);
        let id = st.new_stack(
            name,
            template_body.to_string(),
            parameters,
            Vec::new(),
            Vec::new(),
            "CREATE_IN_PROGRESS",
        );
        let script = StackScript::create_success(name, resources, &[0.0]);
        let scale = st.time_scale;
        st.time_scale = f64::INFINITY;
        if let Some(idx) = st.stacks.iter().position(|s| s.id == id) {
            st.play(idx, script, None, now);
        }
        st.time_scale = scale;
        id
    }

    /// Adds an EC2 instance.
    pub fn add_instance(&self, instance: Ec2Instance) {
        lock(&self.state).instances.push(InstanceRec {
            instance,
            becomes: None,
        });
    }

    /// Adds an AMI (and its snapshots).
    pub fn add_image(&self, image: Ec2Image) {
        let mut st = lock(&self.state);
        for snap in &image.snapshot_ids {
            if !st.snapshots.contains(snap) {
                st.snapshots.push(snap.clone());
            }
        }
        st.images.push(image);
    }

    /// Adds a snapshot not attached to any image.
    pub fn add_snapshot(&self, snapshot_id: &str) {
        lock(&self.state).snapshots.push(snapshot_id.to_string());
    }

    /// Sets the default VPC and its default subnets `(subnet id, availability zone)`.
    pub fn set_default_vpc(&self, vpc_id: &str, cidr: &str, subnets: &[(&str, &str)]) {
        let mut st = lock(&self.state);
        st.vpcs.retain(|v| !v.is_default && v.vpc_id != vpc_id);
        st.vpcs.push(VpcRec {
            vpc_id: vpc_id.to_string(),
            cidr: cidr.to_string(),
            is_default: true,
            tags: Vec::new(),
        });
        st.subnets.retain(|s| s.vpc_id != vpc_id);
        for (i, (subnet_id, az)) in subnets.iter().enumerate() {
            st.subnets.push(SubnetRec {
                subnet_id: subnet_id.to_string(),
                vpc_id: vpc_id.to_string(),
                az: az.to_string(),
                cidr: format!("172.31.{}.0/20", i * 16),
                default_for_az: true,
                tags: Vec::new(),
            });
        }
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.state).calls.clone()
    }

    /// `service:Action` of every call so far, in order.
    pub fn actions(&self) -> Vec<String> {
        lock(&self.state)
            .calls
            .iter()
            .map(|c| format!("{}:{}", c.service, c.action))
            .collect()
    }

    /// How many calls of `action` (`Action` or `service:Action`) were made.
    pub fn count(&self, action: &str) -> usize {
        lock(&self.state)
            .calls
            .iter()
            .filter(|c| c.action == action || format!("{}:{}", c.service, c.action) == action)
            .count()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        lock(&self.state).calls.clear();
    }

    /// `(EventId, when it became visible)` for every event visible now, oldest first.
    pub fn event_visible_at(&self) -> Vec<(String, std::time::Instant)> {
        let st = lock(&self.state);
        let now = Instant::now();
        let mut all: Vec<&EventRec> = st.stacks.iter().flat_map(|s| s.visible(now).iter()).collect();
        all.sort_by_key(|e| (e.visible_at, e.seq));
        all.iter().map(|e| (e.id.clone(), e.visible_at.into_std())).collect()
    }

    /// Current status of the live stack with this name (or of the stack with this id).
    pub fn stack_status(&self, name_or_id: &str) -> Option<String> {
        let st = lock(&self.state);
        let now = Instant::now();
        st.find_stack(name_or_id, now).map(|i| st.stacks[i].status(now).0)
    }

    /// Ids of the images not deregistered.
    pub fn image_ids(&self) -> Vec<String> {
        lock(&self.state).images.iter().map(|i| i.image_id.clone()).collect()
    }

    /// Ids of the snapshots not deleted.
    pub fn snapshot_ids(&self) -> Vec<String> {
        lock(&self.state).snapshots.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------------------------

fn handle(state: &Mutex<State>, req: Request) -> Response {
    if let Some(action) = req.header("x-amz-target").and_then(|t| t.strip_prefix("AmazonSQS.")) {
        let action = action.to_string();
        return sqs::handle_sqs(state, req, &action);
    }
    let mut params: Params = BTreeMap::new();
    for (k, v) in req.query_params().into_iter().chain(req.form_params()) {
        params.insert(k, v);
    }
    let version = params.remove("Version").unwrap_or_default();
    let scope_service = req
        .header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("")
        .to_string();
    let service = match (version.as_str(), scope_service.as_str()) {
        ("2010-05-15", _) | (_, "cloudformation") => "cloudformation",
        ("2016-11-15", _) | (_, "ec2") => "ec2",
        ("2011-01-01", _) | (_, "autoscaling") => "autoscaling",
        _ => "unknown",
    };
    let action = params.remove("Action").unwrap_or_default();
    let mut st = lock(state);
    st.seq += 1;
    let rid = uuid(st.seq, 0x5eed);
    let call_index = st.calls.len();
    st.calls.push(Call {
        service: service.to_string(),
        action: action.clone(),
        params: params.clone(),
        throttled: false,
        status: 0,
        at: std::time::Instant::now(),
    });
    let qualified = format!("{service}:{action}");
    let mut result: Answer = Err(err("InternalFailure", "not answered"));
    let mut answered = false;
    for key in [qualified.as_str(), action.as_str()] {
        if let Some(n) = st.throttles.get_mut(key).filter(|n| **n > 0) {
            *n -= 1;
            st.calls[call_index].throttled = true;
            result = Err(if service == "ec2" {
                err("RequestLimitExceeded", "Request limit exceeded.")
            } else {
                err("Throttling", "Rate exceeded")
            });
            answered = true;
            break;
        }
        if let Some((status, code, message)) = st.failures.get_mut(key).and_then(VecDeque::pop_front) {
            result = Err(AwsError { status, code, message });
            answered = true;
            break;
        }
    }
    if !answered {
        let now = Instant::now();
        result = match service {
            "cloudformation" => st.cloudformation(&action, &params, now),
            "ec2" => st.ec2(&action, &params, now),
            "autoscaling" => st.autoscaling(&action, &params, now),
            _ => Err(err(
                "InvalidAction",
                format!("Could not find operation {action} for version {version}"),
            )),
        };
    }
    let response = match result {
        Ok(inner) if service == "ec2" => Response::xml(
            200,
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><{action}Response xmlns="{EC2_XMLNS}"><requestId>{rid}</requestId>{inner}</{action}Response>"#
            ),
        ),
        Ok(inner) => Response::xml(
            200,
            format!(
                r#"<{action}Response xmlns="{CFN_XMLNS}"><{action}Result>{inner}</{action}Result><ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></{action}Response>"#
            ),
        ),
        Err(e) if service == "ec2" => Response::xml(
            e.status,
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>"#,
                esc(&e.code),
                esc(&e.message)
            ),
        ),
        Err(e) => Response::xml(
            e.status,
            format!(
                r#"<ErrorResponse xmlns="{CFN_XMLNS}"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"#,
                if e.status >= 500 { "Receiver" } else { "Sender" },
                esc(&e.code),
                esc(&e.message)
            ),
        ),
    };
    st.calls[call_index].status = response.status;
    response.with_header("x-amzn-RequestId", &rid)
}
