//! A scripted fake AWS endpoint (CloudFormation + EC2 query protocols) for tests.
//!
//! The real `aws-sdk-cloudformation` / `aws-sdk-ec2` clients talk to it through
//! `endpoint_url(fake.endpoint_url())`. Stack operations play a [`StackScript`]: a timeline of
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
//! (`protocol_serde/shape_*.rs` of aws-sdk-cloudformation 1.136 and aws-sdk-ec2 1.274):
//! CloudFormation lists are wrapped in `<member>`, EC2 lists in `<item>`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use tokio::time::Instant;

use super::http_server::{HttpServer, Request, Response};

/// Account id used in every ARN and as the EC2 owner id of "self".
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

const CFN_XMLNS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";
const EC2_XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
/// Scenario seconds a change set takes to reach CREATE_COMPLETE / FAILED.
const CHANGE_SET_SECONDS: f64 = 2.0;

// ---------------------------------------------------------------------------------------------
// Public scripting types
// ---------------------------------------------------------------------------------------------

/// The stack operations a script can be queued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Update,
    Delete,
    ExecuteChangeSet,
    CancelUpdate,
}

/// One event of a script.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Scenario seconds after the operation's call.
    pub at: f64,
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: Option<String>,
    pub physical_id: Option<String>,
}

/// A timeline of events for one stack operation. Steps whose `resource_type` is
/// [`STACK_TYPE`] and whose `logical_id` is `stack` (or empty) are the stack's own events; they
/// are renamed to the real stack name (and get the stack id as physical id) when played, so a
/// script built for one name can be played on any stack.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StackScript {
    pub stack: String,
    pub steps: Vec<Step>,
}

/// One resource change of a change set (`Changes.member.ResourceChange`).
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// `Add`, `Modify`, `Remove`, `Import`, `Dynamic`.
    pub action: String,
    pub logical_id: String,
    pub resource_type: String,
    pub physical_id: Option<String>,
    /// `True`, `False`, `Conditional` (only for `Modify`).
    pub replacement: Option<String>,
    /// `Properties`, `Metadata`, `CreationPolicy`, `UpdatePolicy`, `DeletionPolicy`, `Tags`, ...
    pub scope: Vec<String>,
}

/// One recorded call.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// `cloudformation`, `ec2` or `unknown`.
    pub service: String,
    pub action: String,
    /// The decoded form parameters (without `Action` and `Version`).
    pub params: BTreeMap<String, String>,
    /// Answered with an injected throttling error.
    pub throttled: bool,
    /// HTTP status of the answer.
    pub status: u16,
    /// When the call arrived (std clock).
    pub at: std::time::Instant,
}

/// An EC2 instance as served by DescribeInstances.
#[derive(Clone, Debug, PartialEq)]
pub struct Ec2Instance {
    pub instance_id: String,
    pub image_id: String,
    pub instance_type: String,
    /// `pending`, `running`, `shutting-down`, `terminated`, `stopping`, `stopped`.
    pub state: String,
    pub tags: Vec<(String, String)>,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub subnet_id: Option<String>,
    pub vpc_id: Option<String>,
    pub key_name: Option<String>,
    pub availability_zone: String,
    pub launch_time: DateTime<Utc>,
}

impl Ec2Instance {
    /// A running t3.micro with these tags and derived IPs.
    pub fn running(instance_id: &str, tags: &[(&str, &str)]) -> Ec2Instance {
        let h = fnv(instance_id);
        Ec2Instance {
            instance_id: instance_id.to_string(),
            image_id: "ami-0abcdef1234567890".to_string(),
            instance_type: "t3.micro".to_string(),
            state: "running".to_string(),
            tags: pairs(tags),
            private_ip: Some(format!("172.31.{}.{}", (h >> 8) % 250 + 1, h % 250 + 2)),
            public_ip: Some(format!(
                "54.{}.{}.{}",
                (h >> 16) % 250 + 1,
                (h >> 24) % 250 + 1,
                (h >> 32) % 250 + 1
            )),
            subnet_id: Some("subnet-0aaa1111bbbb2222c".to_string()),
            vpc_id: Some("vpc-0default000000001".to_string()),
            key_name: None,
            availability_zone: "us-east-1a".to_string(),
            launch_time: Utc::now(),
        }
    }

    /// The same instance in another state.
    pub fn with_state(mut self, state: &str) -> Ec2Instance {
        self.state = state.to_string();
        self
    }
}

/// An AMI as served by DescribeImages.
#[derive(Clone, Debug, PartialEq)]
pub struct Ec2Image {
    pub image_id: String,
    pub name: String,
    pub owner_id: String,
    /// e.g. `amazon` for public Amazon images.
    pub owner_alias: Option<String>,
    /// `available`, `pending`, `failed`.
    pub state: String,
    pub public: bool,
    pub description: Option<String>,
    /// e.g. `2024-05-01T12:00:00.000Z`.
    pub creation_date: String,
    pub tags: Vec<(String, String)>,
    /// EBS snapshots of the block device mappings; registered as existing snapshots.
    pub snapshot_ids: Vec<String>,
}

impl Ec2Image {
    /// An available private image owned by [`ACCOUNT_ID`] with one derived snapshot.
    pub fn owned(image_id: &str, name: &str, tags: &[(&str, &str)]) -> Ec2Image {
        Ec2Image {
            image_id: image_id.to_string(),
            name: name.to_string(),
            owner_id: ACCOUNT_ID.to_string(),
            owner_alias: None,
            state: "available".to_string(),
            public: false,
            description: None,
            creation_date: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            tags: pairs(tags),
            snapshot_ids: vec![format!("snap-0{:016x}", fnv(image_id))],
        }
    }

    /// A public image owned by Amazon (`owner_alias` `amazon`).
    pub fn amazon(image_id: &str, name: &str) -> Ec2Image {
        Ec2Image {
            owner_id: "137112412989".to_string(),
            owner_alias: Some("amazon".to_string()),
            public: true,
            ..Ec2Image::owned(image_id, name, &[])
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Script builders
// ---------------------------------------------------------------------------------------------

fn dur(durations: &[f64], i: usize) -> f64 {
    durations.get(i).or(durations.last()).copied().unwrap_or(2.0)
}

/// A deterministic, realistic-looking physical id for a resource.
pub fn physical_id_for(stack: &str, logical_id: &str, resource_type: &str) -> String {
    let h = fnv(&format!("{stack}/{logical_id}"));
    let hex17 = format!("{h:016x}");
    match resource_type {
        "AWS::EC2::SecurityGroup" => format!("sg-0{}", &hex17[..16]),
        "AWS::EC2::Instance" => format!("i-0{}", &hex17[..16]),
        "AWS::EC2::VPC" => format!("vpc-0{}", &hex17[..16]),
        "AWS::EC2::Subnet" => format!("subnet-0{}", &hex17[..16]),
        "AWS::EC2::Volume" => format!("vol-0{}", &hex17[..16]),
        "AWS::EC2::EIP" => format!("54.{}.{}.{}", h % 250 + 1, (h >> 8) % 250 + 1, (h >> 16) % 250 + 1),
        "AWS::S3::Bucket" => format!(
            "{}-{}-{:x}",
            stack.to_lowercase(),
            logical_id.to_lowercase(),
            h % 0xffff_ffff
        ),
        _ => {
            let suffix: String = format!("{h:016X}").chars().take(12).collect();
            format!("{stack}-{logical_id}-{suffix}")
        }
    }
}

impl StackScript {
    /// An empty script for this stack name.
    pub fn new(stack: &str) -> StackScript {
        StackScript {
            stack: stack.to_string(),
            steps: Vec::new(),
        }
    }

    /// Adds one of the stack's own events.
    pub fn stack_event(mut self, at: f64, status: &str, reason: Option<&str>) -> StackScript {
        let stack = self.stack.clone();
        self.steps.push(Step {
            at,
            logical_id: stack,
            resource_type: STACK_TYPE.to_string(),
            status: status.to_string(),
            reason: reason.map(str::to_string),
            physical_id: None,
        });
        self
    }

    /// Adds one resource event.
    pub fn resource_event(
        mut self,
        at: f64,
        (logical_id, resource_type): (&str, &str),
        status: &str,
        reason: Option<&str>,
        physical_id: Option<&str>,
    ) -> StackScript {
        self.steps.push(Step {
            at,
            logical_id: logical_id.to_string(),
            resource_type: resource_type.to_string(),
            status: status.to_string(),
            reason: reason.map(str::to_string),
            physical_id: physical_id.map(str::to_string),
        });
        self
    }

    /// Scenario seconds until the last step.
    pub fn duration(&self) -> f64 {
        self.steps.iter().map(|s| s.at).fold(0.0, f64::max)
    }

    /// Status of the last own event (the stack's final status).
    pub fn final_status(&self) -> Option<&str> {
        self.steps
            .iter()
            .filter(|s| s.resource_type == STACK_TYPE && (s.logical_id == self.stack || s.logical_id.is_empty()))
            .max_by(|a, b| a.at.total_cmp(&b.at))
            .map(|s| s.status.as_str())
    }

    fn pid(&self, r: (&str, &str)) -> String {
        physical_id_for(&self.stack, r.0, r.1)
    }

    /// Creates the resources one after another (each starts when the previous completes).
    /// Timeline: 0 stack CREATE_IN_PROGRESS "User Initiated"; from 0.5 per resource:
    /// CREATE_IN_PROGRESS, +0.3 CREATE_IN_PROGRESS "Resource creation Initiated" (with physical
    /// id), +duration CREATE_COMPLETE; 0.5 after the last one stack CREATE_COMPLETE.
    pub fn create_success(stack: &str, resources: &[(&str, &str)], durations: &[f64]) -> StackScript {
        let mut s = StackScript::new(stack).stack_event(0.0, "CREATE_IN_PROGRESS", Some("User Initiated"));
        let mut t = 0.5;
        for (i, r) in resources.iter().enumerate() {
            let pid = s.pid(*r);
            s = s
                .resource_event(t, *r, "CREATE_IN_PROGRESS", None, None)
                .resource_event(
                    t + 0.3,
                    *r,
                    "CREATE_IN_PROGRESS",
                    Some("Resource creation Initiated"),
                    Some(&pid),
                );
            t += 0.3 + dur(durations, i);
            s = s.resource_event(t, *r, "CREATE_COMPLETE", None, Some(&pid));
        }
        s.stack_event(t + 0.5, "CREATE_COMPLETE", None)
    }

    /// Resources before `failing` are created one after another as in
    /// [`create_success`](Self::create_success); then `failing` and all later resources start
    /// together (0.1 s apart). `failing` gets CREATE_FAILED with `reason` after its duration;
    /// the later ones get CREATE_FAILED "Resource creation cancelled" 0.1 s apart just after.
    /// Then stack ROLLBACK_IN_PROGRESS "The following resource(s) failed to create: [sorted
    /// failed ids]. Rollback requested by user.", then in reverse order each resource is
    /// deleted (DELETE_IN_PROGRESS, +1 s DELETE_COMPLETE; failed ones without a physical id
    /// only DELETE_COMPLETE), then stack ROLLBACK_COMPLETE.
    pub fn create_failed_with_cascade(
        stack: &str,
        resources: &[(&str, &str)],
        failing: &str,
        reason: &str,
        durations: &[f64],
    ) -> StackScript {
        let mut s = StackScript::new(stack).stack_event(0.0, "CREATE_IN_PROGRESS", Some("User Initiated"));
        let split = resources.iter().position(|r| r.0 == failing).unwrap_or(resources.len());
        let mut t = 0.5;
        for (i, r) in resources[..split].iter().enumerate() {
            let pid = s.pid(*r);
            s = s
                .resource_event(t, *r, "CREATE_IN_PROGRESS", None, None)
                .resource_event(
                    t + 0.3,
                    *r,
                    "CREATE_IN_PROGRESS",
                    Some("Resource creation Initiated"),
                    Some(&pid),
                );
            t += 0.3 + dur(durations, i);
            s = s.resource_event(t, *r, "CREATE_COMPLETE", None, Some(&pid));
        }
        let mut failed = Vec::new();
        let mut fail_t = t;
        if let Some(f) = resources.get(split) {
            s = s.resource_event(t, *f, "CREATE_IN_PROGRESS", None, None);
            for (k, r) in resources[split + 1..].iter().enumerate() {
                let pid = s.pid(*r);
                let start = t + 0.1 * (k as f64 + 1.0);
                s = s
                    .resource_event(start, *r, "CREATE_IN_PROGRESS", None, None)
                    .resource_event(
                        start + 0.3,
                        *r,
                        "CREATE_IN_PROGRESS",
                        Some("Resource creation Initiated"),
                        Some(&pid),
                    );
            }
            fail_t = t + 0.4 + dur(durations, split);
            s = s.resource_event(fail_t, *f, "CREATE_FAILED", Some(reason), None);
            failed.push(f.0.to_string());
            for (k, r) in resources[split + 1..].iter().enumerate() {
                let pid = s.pid(*r);
                s = s.resource_event(
                    fail_t + 0.1 * (k as f64 + 1.0),
                    *r,
                    "CREATE_FAILED",
                    Some(CANCELLED_REASON),
                    Some(&pid),
                );
                failed.push(r.0.to_string());
            }
        }
        failed.sort();
        let mut t = fail_t + 0.1 * resources.len() as f64 + 0.5;
        let why = format!(
            "The following resource(s) failed to create: [{}]. Rollback requested by user.",
            failed.join(", ")
        );
        s = s.stack_event(t, "ROLLBACK_IN_PROGRESS", Some(&why));
        for (i, r) in resources.iter().enumerate().rev() {
            t += 0.5;
            if i == split {
                s = s.resource_event(t, *r, "DELETE_COMPLETE", None, None);
            } else {
                let pid = s.pid(*r);
                s = s.resource_event(t, *r, "DELETE_IN_PROGRESS", None, Some(&pid));
                t += 1.0;
                s = s.resource_event(t, *r, "DELETE_COMPLETE", None, Some(&pid));
            }
        }
        s.stack_event(t + 0.5, "ROLLBACK_COMPLETE", None)
    }

    /// 0 stack UPDATE_IN_PROGRESS "User Initiated"; from 0.5 each of `updated` in turn:
    /// UPDATE_IN_PROGRESS, +duration UPDATE_COMPLETE; +0.5 stack
    /// UPDATE_COMPLETE_CLEANUP_IN_PROGRESS; each of `removed` (reverse order)
    /// DELETE_IN_PROGRESS, +1 s DELETE_COMPLETE; +0.5 stack UPDATE_COMPLETE.
    pub fn update_with_cleanup(
        stack: &str,
        updated: &[(&str, &str)],
        removed: &[(&str, &str)],
        durations: &[f64],
    ) -> StackScript {
        let mut s = StackScript::new(stack).stack_event(0.0, "UPDATE_IN_PROGRESS", Some("User Initiated"));
        let mut t = 0.5;
        for (i, r) in updated.iter().enumerate() {
            let pid = s.pid(*r);
            s = s.resource_event(t, *r, "UPDATE_IN_PROGRESS", None, Some(&pid));
            t += dur(durations, i);
            s = s.resource_event(t, *r, "UPDATE_COMPLETE", None, Some(&pid));
        }
        t += 0.5;
        s = s.stack_event(t, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", None);
        for r in removed.iter().rev() {
            let pid = s.pid(*r);
            t += 0.5;
            s = s.resource_event(t, *r, "DELETE_IN_PROGRESS", None, Some(&pid));
            t += 1.0;
            s = s.resource_event(t, *r, "DELETE_COMPLETE", None, Some(&pid));
        }
        s.stack_event(t + 0.5, "UPDATE_COMPLETE", None)
    }

    /// 0 stack UPDATE_IN_PROGRESS; resources before `failing` update in turn
    /// (UPDATE_IN_PROGRESS, +duration UPDATE_COMPLETE); `failing` UPDATE_IN_PROGRESS, +duration
    /// UPDATE_FAILED `reason`; +0.5 stack UPDATE_ROLLBACK_IN_PROGRESS "The following
    /// resource(s) failed to update: [failing]. "; the touched resources in reverse order
    /// UPDATE_IN_PROGRESS, +1 s UPDATE_COMPLETE; +0.5 stack
    /// UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS; +0.5 stack UPDATE_ROLLBACK_COMPLETE.
    pub fn update_rollback(
        stack: &str,
        updated: &[(&str, &str)],
        failing: &str,
        reason: &str,
        durations: &[f64],
    ) -> StackScript {
        let mut s = StackScript::new(stack).stack_event(0.0, "UPDATE_IN_PROGRESS", Some("User Initiated"));
        let mut t = 0.5;
        let mut touched = Vec::new();
        for (i, r) in updated.iter().enumerate() {
            let pid = s.pid(*r);
            s = s.resource_event(t, *r, "UPDATE_IN_PROGRESS", None, Some(&pid));
            t += dur(durations, i);
            touched.push(*r);
            if r.0 == failing {
                s = s.resource_event(t, *r, "UPDATE_FAILED", Some(reason), Some(&pid));
                break;
            }
            s = s.resource_event(t, *r, "UPDATE_COMPLETE", None, Some(&pid));
        }
        t += 0.5;
        let why = format!("The following resource(s) failed to update: [{failing}]. ");
        s = s.stack_event(t, "UPDATE_ROLLBACK_IN_PROGRESS", Some(&why));
        for r in touched.iter().rev() {
            let pid = s.pid(*r);
            t += 0.5;
            s = s.resource_event(t, *r, "UPDATE_IN_PROGRESS", None, Some(&pid));
            t += 1.0;
            s = s.resource_event(t, *r, "UPDATE_COMPLETE", None, Some(&pid));
        }
        t += 0.5;
        s = s.stack_event(t, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", None);
        s.stack_event(t + 0.5, "UPDATE_ROLLBACK_COMPLETE", None)
    }

    /// The default answer to CancelUpdateStack: 0 stack UPDATE_ROLLBACK_IN_PROGRESS "Resource
    /// update cancelled", +1 UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS, +1.5
    /// UPDATE_ROLLBACK_COMPLETE.
    pub fn update_cancelled(stack: &str) -> StackScript {
        StackScript::new(stack)
            .stack_event(0.0, "UPDATE_ROLLBACK_IN_PROGRESS", Some("Resource update cancelled"))
            .stack_event(1.0, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", None)
            .stack_event(1.5, "UPDATE_ROLLBACK_COMPLETE", None)
    }

    /// 0 stack DELETE_IN_PROGRESS "User Initiated"; resources in reverse order
    /// DELETE_IN_PROGRESS, +duration DELETE_COMPLETE; +0.5 stack DELETE_COMPLETE.
    pub fn delete_success(stack: &str, resources: &[(&str, &str)], durations: &[f64]) -> StackScript {
        let mut s = StackScript::new(stack).stack_event(0.0, "DELETE_IN_PROGRESS", Some("User Initiated"));
        let mut t = 0.5;
        for (i, r) in resources.iter().enumerate().rev() {
            let pid = s.pid(*r);
            s = s.resource_event(t, *r, "DELETE_IN_PROGRESS", None, Some(&pid));
            t += dur(durations, i);
            s = s.resource_event(t, *r, "DELETE_COMPLETE", None, Some(&pid));
        }
        s.stack_event(t + 0.5, "DELETE_COMPLETE", None)
    }

    /// Like [`delete_success`](Self::delete_success) in reverse order until `failing`, which
    /// gets DELETE_IN_PROGRESS, +duration DELETE_FAILED `reason`; resources listed before it
    /// are left alone; +0.5 stack DELETE_FAILED "The following resource(s) failed to delete:
    /// [failing]. ".
    pub fn delete_failed(
        stack: &str,
        resources: &[(&str, &str)],
        failing: &str,
        reason: &str,
        durations: &[f64],
    ) -> StackScript {
        let mut s = StackScript::new(stack).stack_event(0.0, "DELETE_IN_PROGRESS", Some("User Initiated"));
        let mut t = 0.5;
        for (i, r) in resources.iter().enumerate().rev() {
            let pid = s.pid(*r);
            s = s.resource_event(t, *r, "DELETE_IN_PROGRESS", None, Some(&pid));
            t += dur(durations, i);
            if r.0 == failing {
                s = s.resource_event(t, *r, "DELETE_FAILED", Some(reason), Some(&pid));
                break;
            }
            s = s.resource_event(t, *r, "DELETE_COMPLETE", None, Some(&pid));
        }
        let why = format!("The following resource(s) failed to delete: [{failing}]. ");
        s.stack_event(t + 0.5, "DELETE_FAILED", Some(&why))
    }
}

impl Change {
    /// `Add` of a new resource.
    pub fn add(logical_id: &str, resource_type: &str) -> Change {
        Change {
            action: "Add".to_string(),
            logical_id: logical_id.to_string(),
            resource_type: resource_type.to_string(),
            physical_id: None,
            replacement: None,
            scope: Vec::new(),
        }
    }

    /// `Modify` with a `Replacement` (`True`/`False`/`Conditional`) and a scope.
    pub fn modify(logical_id: &str, resource_type: &str, replacement: &str, scope: &[&str]) -> Change {
        Change {
            action: "Modify".to_string(),
            replacement: Some(replacement.to_string()),
            scope: scope.iter().map(|s| s.to_string()).collect(),
            ..Change::add(logical_id, resource_type)
        }
    }

    /// `Remove` of an existing resource.
    pub fn remove(logical_id: &str, resource_type: &str) -> Change {
        Change {
            action: "Remove".to_string(),
            ..Change::add(logical_id, resource_type)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct EventRec {
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
struct StackRec {
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
    fn visible(&self, now: Instant) -> &[EventRec] {
        let n = self.events.partition_point(|e| e.visible_at <= now);
        &self.events[..n]
    }

    fn is_own(&self, e: &EventRec) -> bool {
        e.resource_type == STACK_TYPE && e.logical_id == self.name
    }

    fn status(&self, now: Instant) -> (String, Option<String>) {
        self.visible(now)
            .iter()
            .rev()
            .find(|e| self.is_own(e))
            .map(|e| (e.status.clone(), e.reason.clone()))
            .unwrap_or_else(|| (self.initial_status.clone(), None))
    }

    /// Latest visible event per resource, in order of first appearance.
    fn resources(&self, now: Instant) -> Vec<EventRec> {
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
struct ChangeSetRec {
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
struct InstanceRec {
    instance: Ec2Instance,
    /// A pending state change (e.g. shutting-down -> terminated).
    becomes: Option<(Instant, String)>,
}

#[derive(Clone, Debug)]
struct VpcRec {
    vpc_id: String,
    cidr: String,
    is_default: bool,
    tags: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
struct SubnetRec {
    subnet_id: String,
    vpc_id: String,
    az: String,
    cidr: String,
    default_for_az: bool,
    tags: Vec<(String, String)>,
}

struct State {
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
    calls: Vec<Call>,
    seq: u64,
    wall_base: DateTime<Utc>,
    instant_base: Instant,
}

/// Handle on a running fake; clones share the same state and server.
#[derive(Clone)]
pub struct FakeAws {
    state: Arc<Mutex<State>>,
    server: Arc<HttpServer>,
}

/// An error answer.
#[derive(Debug)]
struct AwsError {
    status: u16,
    code: String,
    message: String,
}

fn err(code: &str, message: impl Into<String>) -> AwsError {
    AwsError {
        status: 400,
        code: code.to_string(),
        message: message.into(),
    }
}

fn validation(message: impl Into<String>) -> AwsError {
    err("ValidationError", message)
}

type Params = BTreeMap<String, String>;
type Answer = Result<String, AwsError>;

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
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
            calls: Vec::new(),
            seq: 0,
            wall_base: Utc::now(),
            instant_base: Instant::now(),
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

    /// Current state of an instance.
    pub fn instance_state(&self, instance_id: &str) -> Option<String> {
        let mut st = lock(&self.state);
        st.settle_instances(Instant::now());
        st.instances
            .iter()
            .find(|i| i.instance.instance_id == instance_id)
            .map(|i| i.instance.state.clone())
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

impl State {
    fn wall(&self, at: Instant) -> DateTime<Utc> {
        let offset = at.saturating_duration_since(self.instant_base);
        self.wall_base + chrono::Duration::from_std(offset).unwrap_or_default()
    }

    fn ts(&self, at: Instant) -> String {
        self.wall(at).to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Index of the stack a `StackName` parameter designates: an ARN finds any stack (also a
    /// deleted one); a name finds the live stack with that name.
    fn find_stack(&self, name_or_id: &str, now: Instant) -> Option<usize> {
        if name_or_id.starts_with("arn:") {
            return self.stacks.iter().position(|s| s.id == name_or_id);
        }
        self.stacks
            .iter()
            .rposition(|s| s.name == name_or_id && s.status(now).0 != "DELETE_COMPLETE")
    }

    fn new_stack(
        &mut self,
        name: &str,
        template: String,
        parameters: Vec<(String, String)>,
        tags: Vec<(String, String)>,
        capabilities: Vec<String>,
        initial_status: &str,
    ) -> String {
        let n = self.next_seq();
        let id = format!(
            "arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{name}/{}",
            uuid(n, 0x57ac)
        );
        self.stacks.push(StackRec {
            id: id.clone(),
            name: name.to_string(),
            created: Instant::now(),
            last_updated: None,
            deletion_started: None,
            template,
            parameters,
            tags,
            capabilities,
            initial_status: initial_status.to_string(),
            disable_rollback: false,
            events: Vec::new(),
        });
        id
    }

    fn take_script(&mut self, stack: &str, op: Op) -> Option<StackScript> {
        if let Some(s) = self
            .scripts
            .get_mut(&(Some(stack.to_string()), op))
            .and_then(VecDeque::pop_front)
        {
            return Some(s);
        }
        self.scripts.get_mut(&(None, op)).and_then(VecDeque::pop_front)
    }

    /// Schedules `script` on stack `idx`, dropping the not yet visible events of earlier ops.
    fn play(&mut self, idx: usize, script: StackScript, token: Option<String>, now: Instant) {
        let scale = self.time_scale;
        let mut steps = script.steps.clone();
        steps.sort_by(|a, b| a.at.total_cmp(&b.at));
        let (name, id) = (self.stacks[idx].name.clone(), self.stacks[idx].id.clone());
        self.stacks[idx].events.retain(|e| e.visible_at <= now);
        let mut new_events = Vec::new();
        for step in steps {
            let seq = self.next_seq();
            let own =
                step.resource_type == STACK_TYPE && (step.logical_id == script.stack || step.logical_id.is_empty());
            let offset = if scale.is_infinite() {
                Duration::ZERO
            } else {
                Duration::from_secs_f64((step.at.max(0.0) / scale).min(1.0e9))
            };
            let (logical_id, physical_id, event_id) = if own {
                (name.clone(), Some(id.clone()), uuid(seq, 0xe7e7))
            } else {
                let eid = format!("{}-{}", step.logical_id, uuid(seq, 0xe7e7));
                (step.logical_id, step.physical_id, eid)
            };
            new_events.push(EventRec {
                id: event_id,
                seq,
                logical_id,
                physical_id,
                resource_type: step.resource_type,
                status: step.status,
                reason: step.reason,
                visible_at: now + offset,
                token: token.clone(),
            });
        }
        let stack = &mut self.stacks[idx];
        stack.events.extend(new_events);
        stack.events.sort_by_key(|e| (e.visible_at, e.seq));
    }

    fn settle_instances(&mut self, now: Instant) {
        for rec in &mut self.instances {
            if let Some((at, state)) = rec.becomes.clone() {
                if at <= now {
                    rec.instance.state = state;
                    rec.becomes = None;
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // CloudFormation
    // -----------------------------------------------------------------------------------------

    fn cloudformation(&mut self, action: &str, p: &Params, now: Instant) -> Answer {
        match action {
            "CreateStack" => self.create_stack(p, now),
            "UpdateStack" => self.update_stack(p, now),
            "DeleteStack" => self.delete_stack(p, now),
            "CancelUpdateStack" => self.cancel_update_stack(p, now),
            "DescribeStacks" => self.describe_stacks(p, now),
            "DescribeStackEvents" => self.describe_stack_events(p, now),
            "DescribeStackResources" => self.describe_stack_resources(p, now),
            "CreateChangeSet" => self.create_change_set(p, now),
            "DescribeChangeSet" => self.describe_change_set(p, now),
            "ExecuteChangeSet" => self.execute_change_set(p, now),
            "DeleteChangeSet" => self.delete_change_set(p, now),
            "ValidateTemplate" => validate_template(p),
            _ => Err(err(
                "InvalidAction",
                format!("Could not find operation {action} for version 2010-05-15"),
            )),
        }
    }

    fn live_stack(&self, p: &Params, now: Instant, describe_style: bool) -> Result<usize, AwsError> {
        let name = p
            .get("StackName")
            .ok_or_else(|| validation("1 validation error detected: Value null at 'stackName' failed to satisfy constraint: Member must not be null"))?;
        self.find_stack(name, now).ok_or_else(|| {
            if describe_style {
                validation(format!("Stack with id {name} does not exist"))
            } else {
                validation(format!("Stack [{name}] does not exist"))
            }
        })
    }

    fn create_stack(&mut self, p: &Params, now: Instant) -> Answer {
        let name = p.get("StackName").cloned().unwrap_or_default();
        check_stack_name(&name)?;
        let template = template_of(p, None)?;
        let tpl = parse_template(&template)?;
        let parameters = resolve_parameters(
            &tpl,
            &member_pairs(p, "Parameters.member", "ParameterKey", "ParameterValue"),
            &[],
        )?;
        let capabilities = scalar_list(p, "Capabilities.member");
        check_capabilities(&tpl, &capabilities)?;
        if self.find_stack(&name, now).is_some() {
            return Err(err("AlreadyExistsException", format!("Stack [{name}] already exists")));
        }
        let tags = member_pairs(p, "Tags.member", "Key", "Value");
        let id = self.new_stack(&name, template, parameters, tags, capabilities, "CREATE_IN_PROGRESS");
        let idx = self.stacks.len() - 1;
        self.stacks[idx].disable_rollback = p.get("DisableRollback").is_some_and(|v| v == "true");
        let script = self.take_script(&name, Op::Create).unwrap_or_else(|| {
            let resources = template_resources(&tpl);
            let refs: Vec<(&str, &str)> = resources.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            StackScript::create_success(&name, &refs, &[2.0])
        });
        self.play(idx, script, p.get("ClientRequestToken").cloned(), now);
        Ok(format!("<StackId>{}</StackId>", esc(&id)))
    }

    fn update_stack(&mut self, p: &Params, now: Instant) -> Answer {
        let idx = self.live_stack(p, now, true)?;
        let stack = self.stacks[idx].clone();
        let (status, _) = stack.status(now);
        check_updatable(&stack, &status)?;
        let template = template_of(p, Some(&stack.template))?;
        let tpl = parse_template(&template)?;
        let given = member_list(p, "Parameters.member");
        let mut explicit = Vec::new();
        let mut previous = Vec::new();
        for m in &given {
            let key = m.get("ParameterKey").cloned().unwrap_or_default();
            if m.get("UsePreviousValue").is_some_and(|v| v == "true") {
                previous.push(key);
            } else {
                explicit.push((key, m.get("ParameterValue").cloned().unwrap_or_default()));
            }
        }
        let prev_values: Vec<(String, String)> = stack
            .parameters
            .iter()
            .filter(|(k, _)| previous.contains(k))
            .cloned()
            .collect();
        let parameters = resolve_parameters(&tpl, &explicit, &prev_values)?;
        let capabilities = scalar_list(p, "Capabilities.member");
        check_capabilities(&tpl, &capabilities)?;
        let script = match self.take_script(&stack.name, Op::Update) {
            Some(s) => s,
            None => {
                if template == stack.template && parameters == stack.parameters {
                    return Err(validation("No updates are to be performed."));
                }
                let old = parse_template(&stack.template).unwrap_or(Value::Null);
                let changes = diff_templates(&old, &tpl, &stack.parameters, &parameters);
                script_for_changes(&stack.name, "UPDATE", &changes)
            }
        };
        let rolls_back = script.final_status().is_some_and(|s| s.contains("ROLLBACK"));
        let s = &mut self.stacks[idx];
        if !rolls_back {
            s.template = template;
            s.parameters = parameters;
            s.capabilities = capabilities;
        }
        s.last_updated = Some(now);
        let id = s.id.clone();
        self.play(idx, script, p.get("ClientRequestToken").cloned(), now);
        Ok(format!("<StackId>{}</StackId>", esc(&id)))
    }

    fn delete_stack(&mut self, p: &Params, now: Instant) -> Answer {
        // AWS answers success for a stack that does not exist.
        let Ok(idx) = self.live_stack(p, now, true) else {
            return Ok(String::new());
        };
        let stack = self.stacks[idx].clone();
        let (status, _) = stack.status(now);
        if status == "DELETE_IN_PROGRESS" || status == "DELETE_COMPLETE" {
            return Ok(String::new());
        }
        let script = self.take_script(&stack.name, Op::Delete).unwrap_or_else(|| {
            let live: Vec<(String, String)> = stack
                .resources(now)
                .into_iter()
                .filter(|e| e.status != "DELETE_COMPLETE")
                .map(|e| (e.logical_id, e.resource_type))
                .collect();
            let refs: Vec<(&str, &str)> = live.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            StackScript::delete_success(&stack.name, &refs, &[1.0])
        });
        self.stacks[idx].deletion_started = Some(now);
        self.play(idx, script, p.get("ClientRequestToken").cloned(), now);
        Ok(String::new())
    }

    fn cancel_update_stack(&mut self, p: &Params, now: Instant) -> Answer {
        let idx = self.live_stack(p, now, true)?;
        let (status, _) = self.stacks[idx].status(now);
        if status != "UPDATE_IN_PROGRESS" {
            return Err(validation(format!(
                "CancelUpdateStack cannot be called from current stack status {status}."
            )));
        }
        let name = self.stacks[idx].name.clone();
        let script = self
            .take_script(&name, Op::CancelUpdate)
            .unwrap_or_else(|| StackScript::update_cancelled(&name));
        self.play(idx, script, p.get("ClientRequestToken").cloned(), now);
        Ok(String::new())
    }

    fn stack_xml(&self, s: &StackRec, now: Instant) -> String {
        let (status, reason) = s.status(now);
        let mut x = String::from("<member>");
        x += &tag("StackId", &s.id);
        x += &tag("StackName", &s.name);
        if let Some(d) = parse_template(&s.template)
            .ok()
            .and_then(|t| t.get("Description").and_then(Value::as_str).map(str::to_string))
        {
            x += &tag("Description", &d);
        }
        if !s.parameters.is_empty() {
            x += "<Parameters>";
            for (k, v) in &s.parameters {
                x += &format!(
                    "<member>{}{}</member>",
                    tag("ParameterKey", k),
                    tag("ParameterValue", v)
                );
            }
            x += "</Parameters>";
        }
        x += &tag("CreationTime", &self.ts(s.created));
        if let Some(t) = s.last_updated {
            x += &tag("LastUpdatedTime", &self.ts(t));
        }
        if let (Some(t), true) = (s.deletion_started, status.starts_with("DELETE")) {
            x += &tag("DeletionTime", &self.ts(t));
        }
        x += &tag("StackStatus", &status);
        if let Some(r) = reason {
            x += &tag("StackStatusReason", &r);
        }
        x += &tag("DisableRollback", if s.disable_rollback { "true" } else { "false" });
        x += "<NotificationARNs/>";
        if !s.capabilities.is_empty() {
            x += "<Capabilities>";
            for c in &s.capabilities {
                x += &tag("member", c);
            }
            x += "</Capabilities>";
        }
        let created = s
            .visible(now)
            .iter()
            .any(|e| s.is_own(e) && e.status == "CREATE_COMPLETE");
        if let Some(outputs) = self
            .outputs
            .get(&s.name)
            .filter(|_| created && status != "DELETE_COMPLETE")
        {
            x += "<Outputs>";
            for (k, v) in outputs {
                x += &format!("<member>{}{}</member>", tag("OutputKey", k), tag("OutputValue", v));
            }
            x += "</Outputs>";
        }
        if !s.tags.is_empty() {
            x += "<Tags>";
            for (k, v) in &s.tags {
                x += &format!("<member>{}{}</member>", tag("Key", k), tag("Value", v));
            }
            x += "</Tags>";
        }
        x += "<EnableTerminationProtection>false</EnableTerminationProtection>";
        x += "<DriftInformation><StackDriftStatus>NOT_CHECKED</StackDriftStatus></DriftInformation>";
        x += "</member>";
        x
    }

    fn describe_stacks(&mut self, p: &Params, now: Instant) -> Answer {
        let mut out = String::from("<Stacks>");
        if p.contains_key("StackName") {
            let idx = self.live_stack(p, now, true)?;
            out += &self.stack_xml(&self.stacks[idx], now);
        } else {
            for s in self.stacks.iter().rev() {
                if s.status(now).0 != "DELETE_COMPLETE" {
                    out += &self.stack_xml(s, now);
                }
            }
        }
        out += "</Stacks>";
        Ok(out)
    }

    fn describe_stack_events(&mut self, p: &Params, now: Instant) -> Answer {
        let idx = self.live_stack(p, now, false)?;
        let s = &self.stacks[idx];
        let visible = s.visible(now);
        // The token is the number of older events still to return; events only ever appear at
        // the newest end, so it stays valid while the stack moves on.
        let end = match p.get("NextToken") {
            Some(t) => t
                .strip_prefix("evt1.")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n <= visible.len())
                .ok_or_else(|| validation("Invalid NextToken"))?,
            None => visible.len(),
        };
        let start = end.saturating_sub(self.page_size);
        let mut x = String::from("<StackEvents>");
        for e in visible[start..end].iter().rev() {
            x += "<member>";
            x += &tag("StackId", &s.id);
            x += &tag("EventId", &e.id);
            x += &tag("StackName", &s.name);
            x += &tag("LogicalResourceId", &e.logical_id);
            x += &tag("PhysicalResourceId", e.physical_id.as_deref().unwrap_or(""));
            x += &tag("ResourceType", &e.resource_type);
            x += &tag("Timestamp", &self.ts(e.visible_at));
            x += &tag("ResourceStatus", &e.status);
            if let Some(r) = &e.reason {
                x += &tag("ResourceStatusReason", r);
            }
            if let Some(t) = &e.token {
                x += &tag("ClientRequestToken", t);
            }
            x += "</member>";
        }
        x += "</StackEvents>";
        if start > 0 {
            x += &tag("NextToken", &format!("evt1.{start}"));
        }
        Ok(x)
    }

    fn describe_stack_resources(&mut self, p: &Params, now: Instant) -> Answer {
        let idx = self.live_stack(p, now, true)?;
        let s = &self.stacks[idx];
        let (status, _) = s.status(now);
        let keep_deleted = status.contains("ROLLBACK") && !status.starts_with("UPDATE") || status.starts_with("DELETE");
        let mut x = String::from("<StackResources>");
        for e in s.resources(now) {
            if e.status == "DELETE_COMPLETE" && !keep_deleted {
                continue;
            }
            x += "<member>";
            x += &tag("StackName", &s.name);
            x += &tag("StackId", &s.id);
            x += &tag("LogicalResourceId", &e.logical_id);
            if let Some(pid) = &e.physical_id {
                x += &tag("PhysicalResourceId", pid);
            }
            x += &tag("ResourceType", &e.resource_type);
            x += &tag("Timestamp", &self.ts(e.visible_at));
            x += &tag("ResourceStatus", &e.status);
            if let Some(r) = &e.reason {
                x += &tag("ResourceStatusReason", r);
            }
            x +=
                "<DriftInformation><StackResourceDriftStatus>NOT_CHECKED</StackResourceDriftStatus></DriftInformation>";
            x += "</member>";
        }
        x += "</StackResources>";
        Ok(x)
    }

    fn create_change_set(&mut self, p: &Params, now: Instant) -> Answer {
        let name = p.get("StackName").cloned().unwrap_or_default();
        let cs_name = p.get("ChangeSetName").cloned().unwrap_or_default();
        check_stack_name(&cs_name)?;
        let kind = p.get("ChangeSetType").cloned().unwrap_or_else(|| "UPDATE".to_string());
        let existing = self.find_stack(&name, now);
        let (idx, old_template, old_params) = match (kind.as_str(), existing) {
            ("CREATE", Some(i)) if self.stacks[i].status(now).0 != "REVIEW_IN_PROGRESS" => {
                return Err(validation(format!(
                    "Stack [{name}] already exists and cannot be created again with the changeSet [{cs_name}]."
                )));
            }
            ("CREATE", Some(i)) => (i, None, Vec::new()),
            ("CREATE", None) => {
                check_stack_name(&name)?;
                self.new_stack(
                    &name,
                    String::new(),
                    Vec::new(),
                    Vec::new(),
                    Vec::new(),
                    "REVIEW_IN_PROGRESS",
                );
                let i = self.stacks.len() - 1;
                let script = StackScript::new(&name).stack_event(0.0, "REVIEW_IN_PROGRESS", Some("User Initiated"));
                self.play(i, script, None, now);
                (i, None, Vec::new())
            }
            ("UPDATE", Some(i)) => {
                let s = &self.stacks[i];
                check_updatable(s, &s.status(now).0)?;
                (i, Some(s.template.clone()), s.parameters.clone())
            }
            ("UPDATE", None) => return Err(validation(format!("Stack [{name}] does not exist"))),
            _ => return Err(validation(format!("ChangeSetType {kind} is not supported"))),
        };
        let stack_name = self.stacks[idx].name.clone();
        let stack_id = self.stacks[idx].id.clone();
        if self
            .change_sets
            .iter()
            .any(|c| c.stack_id == stack_id && c.name == cs_name)
        {
            return Err(err(
                "AlreadyExistsException",
                format!("ChangeSet [{cs_name}] already exists"),
            ));
        }
        let template = template_of(p, old_template.as_deref())?;
        let tpl = parse_template(&template)?;
        let given = member_list(p, "Parameters.member");
        let explicit: Vec<(String, String)> = given
            .iter()
            .filter(|m| m.get("UsePreviousValue").is_none_or(|v| v != "true"))
            .map(|m| {
                (
                    m.get("ParameterKey").cloned().unwrap_or_default(),
                    m.get("ParameterValue").cloned().unwrap_or_default(),
                )
            })
            .collect();
        let prev: Vec<(String, String)> = old_params
            .iter()
            .filter(|(k, _)| {
                given
                    .iter()
                    .any(|m| m.get("ParameterKey") == Some(k) && m.get("UsePreviousValue").is_some_and(|v| v == "true"))
            })
            .cloned()
            .collect();
        let parameters = resolve_parameters(&tpl, &explicit, &prev)?;
        let capabilities = scalar_list(p, "Capabilities.member");
        check_capabilities(&tpl, &capabilities)?;
        let changes = match self
            .change_set_overrides
            .get_mut(&stack_name)
            .and_then(VecDeque::pop_front)
        {
            Some(c) => c,
            None => {
                let old = old_template
                    .as_deref()
                    .and_then(|t| parse_template(t).ok())
                    .unwrap_or(Value::Null);
                diff_templates(&old, &tpl, &old_params, &parameters)
            }
        };
        let n = self.next_seq();
        let id = format!(
            "arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:changeSet/{cs_name}/{}",
            uuid(n, 0xc5c5)
        );
        let delay = Duration::from_secs_f64((CHANGE_SET_SECONDS / self.time_scale).min(1.0e9));
        self.change_sets.push(ChangeSetRec {
            id: id.clone(),
            name: cs_name,
            stack_id: stack_id.clone(),
            stack_name,
            kind,
            description: p.get("Description").cloned(),
            template,
            parameters,
            capabilities,
            tags: member_pairs(p, "Tags.member", "Key", "Value"),
            changes,
            created: now,
            ready_at: now + delay,
            executed: false,
            obsolete: false,
        });
        Ok(format!("{}{}", tag("Id", &id), tag("StackId", &stack_id)))
    }

    fn find_change_set(&self, p: &Params, now: Instant) -> Result<usize, AwsError> {
        let cs = p.get("ChangeSetName").cloned().unwrap_or_default();
        let found = if cs.starts_with("arn:") {
            self.change_sets.iter().position(|c| c.id == cs)
        } else {
            let stack = p.get("StackName").cloned().unwrap_or_default();
            let stack_id = self.find_stack(&stack, now).map(|i| self.stacks[i].id.clone());
            self.change_sets
                .iter()
                .position(|c| c.name == cs && Some(&c.stack_id) == stack_id.as_ref())
        };
        found.ok_or_else(|| err("ChangeSetNotFound", format!("ChangeSet [{cs}] does not exist")))
    }

    /// (Status, StatusReason, ExecutionStatus) of a change set now.
    fn change_set_status(&self, c: &ChangeSetRec, now: Instant) -> (String, Option<String>, String) {
        if now < c.ready_at {
            let status = if now < c.created + (c.ready_at - c.created) / 4 {
                "CREATE_PENDING"
            } else {
                "CREATE_IN_PROGRESS"
            };
            return (status.to_string(), None, "UNAVAILABLE".to_string());
        }
        if c.changes.is_empty() {
            return (
                "FAILED".to_string(),
                Some(NO_CHANGES_REASON.to_string()),
                "UNAVAILABLE".to_string(),
            );
        }
        let exec = if c.executed {
            let status = self
                .stacks
                .iter()
                .find(|s| s.id == c.stack_id)
                .map(|s| s.status(now).0)
                .unwrap_or_default();
            if status.ends_with("IN_PROGRESS") {
                "EXECUTE_IN_PROGRESS"
            } else if status == "CREATE_COMPLETE" || status == "UPDATE_COMPLETE" {
                "EXECUTE_COMPLETE"
            } else {
                "EXECUTE_FAILED"
            }
        } else if c.obsolete {
            "OBSOLETE"
        } else {
            "AVAILABLE"
        };
        ("CREATE_COMPLETE".to_string(), None, exec.to_string())
    }

    fn describe_change_set(&mut self, p: &Params, now: Instant) -> Answer {
        let i = self.find_change_set(p, now)?;
        let c = &self.change_sets[i];
        let (status, reason, exec) = self.change_set_status(c, now);
        let mut x = String::new();
        x += &tag("ChangeSetName", &c.name);
        x += &tag("ChangeSetId", &c.id);
        x += &tag("StackId", &c.stack_id);
        x += &tag("StackName", &c.stack_name);
        if let Some(d) = &c.description {
            x += &tag("Description", d);
        }
        if !c.parameters.is_empty() {
            x += "<Parameters>";
            for (k, v) in &c.parameters {
                x += &format!(
                    "<member>{}{}</member>",
                    tag("ParameterKey", k),
                    tag("ParameterValue", v)
                );
            }
            x += "</Parameters>";
        }
        x += &tag("CreationTime", &self.ts(c.created));
        x += &tag("ExecutionStatus", &exec);
        x += &tag("Status", &status);
        if let Some(r) = reason {
            x += &tag("StatusReason", &r);
        }
        x += "<NotificationARNs/>";
        if !c.capabilities.is_empty() {
            x += "<Capabilities>";
            for cap in &c.capabilities {
                x += &tag("member", cap);
            }
            x += "</Capabilities>";
        }
        if !c.tags.is_empty() {
            x += "<Tags>";
            for (k, v) in &c.tags {
                x += &format!("<member>{}{}</member>", tag("Key", k), tag("Value", v));
            }
            x += "</Tags>";
        }
        x += "<Changes>";
        if now >= c.ready_at {
            for ch in &c.changes {
                x += "<member><Type>Resource</Type><ResourceChange>";
                x += &tag("Action", &ch.action);
                x += &tag("LogicalResourceId", &ch.logical_id);
                if let Some(pid) = &ch.physical_id {
                    x += &tag("PhysicalResourceId", pid);
                }
                x += &tag("ResourceType", &ch.resource_type);
                if let Some(r) = &ch.replacement {
                    x += &tag("Replacement", r);
                }
                x += "<Scope>";
                for s in &ch.scope {
                    x += &tag("member", s);
                }
                x += "</Scope><Details/></ResourceChange></member>";
            }
        }
        x += "</Changes>";
        x += "<IncludeNestedStacks>false</IncludeNestedStacks>";
        Ok(x)
    }

    fn execute_change_set(&mut self, p: &Params, now: Instant) -> Answer {
        let i = self.find_change_set(p, now)?;
        let c = self.change_sets[i].clone();
        let (status, _, exec) = self.change_set_status(&c, now);
        if status != "CREATE_COMPLETE" || exec != "AVAILABLE" {
            return Err(err(
                "InvalidChangeSetStatus",
                format!(
                    "ChangeSet [{}] cannot be executed in its current status of [{}]",
                    c.id,
                    if exec == "UNAVAILABLE" { status } else { exec }
                ),
            ));
        }
        let Some(idx) = self.stacks.iter().position(|s| s.id == c.stack_id) else {
            return Err(validation(format!("Stack [{}] does not exist", c.stack_name)));
        };
        if c.kind != "CREATE" {
            let stack = &self.stacks[idx];
            check_updatable(stack, &stack.status(now).0)?;
        }
        let script = self
            .take_script(&c.stack_name, Op::ExecuteChangeSet)
            .unwrap_or_else(|| script_for_changes(&c.stack_name, &c.kind, &c.changes));
        let rolls_back = script.final_status().is_some_and(|s| s.contains("ROLLBACK"));
        for other in &mut self.change_sets {
            if other.stack_id == c.stack_id && other.id != c.id {
                other.obsolete = true;
            }
        }
        self.change_sets[i].executed = true;
        let s = &mut self.stacks[idx];
        if !rolls_back || c.kind == "CREATE" {
            s.template = c.template.clone();
            s.parameters = c.parameters.clone();
            s.capabilities = c.capabilities.clone();
            if !c.tags.is_empty() {
                s.tags = c.tags.clone();
            }
        }
        if c.kind == "CREATE" {
            s.created = now;
        } else {
            s.last_updated = Some(now);
        }
        self.play(idx, script, p.get("ClientRequestToken").cloned(), now);
        Ok(String::new())
    }

    fn delete_change_set(&mut self, p: &Params, now: Instant) -> Answer {
        let i = self.find_change_set(p, now)?;
        let c = &self.change_sets[i];
        let (_, _, exec) = self.change_set_status(c, now);
        if exec == "EXECUTE_IN_PROGRESS" {
            return Err(err(
                "InvalidChangeSetStatus",
                format!("Cannot delete ChangeSet [{}] in status EXECUTE_IN_PROGRESS", c.id),
            ));
        }
        self.change_sets.remove(i);
        Ok(String::new())
    }

    // -----------------------------------------------------------------------------------------
    // EC2
    // -----------------------------------------------------------------------------------------

    fn ec2(&mut self, action: &str, p: &Params, now: Instant) -> Answer {
        self.settle_instances(now);
        match action {
            "DescribeInstances" => self.describe_instances(p),
            "DescribeImages" => self.describe_images(p),
            "DescribeVpcs" => self.describe_vpcs(p),
            "DescribeSubnets" => self.describe_subnets(p),
            "DeregisterImage" => self.deregister_image(p),
            "DeleteSnapshot" => self.delete_snapshot(p),
            "TerminateInstances" => self.terminate_instances(p, now),
            "CreateTags" => self.create_tags(p),
            _ => Err(err(
                "InvalidAction",
                format!("The action {action} is not valid for this web service."),
            )),
        }
    }

    fn describe_instances(&mut self, p: &Params) -> Answer {
        let filters = filters(p)?;
        let ids = scalar_list(p, "InstanceId");
        for id in &ids {
            if !self.instances.iter().any(|i| &i.instance.instance_id == id) {
                return Err(err(
                    "InvalidInstanceID.NotFound",
                    format!("The instance ID '{id}' does not exist"),
                ));
            }
        }
        let mut matched = Vec::new();
        for rec in &self.instances {
            let i = &rec.instance;
            if !ids.is_empty() && !ids.contains(&i.instance_id) {
                continue;
            }
            let ok = filters_match(&filters, &i.tags, |name| match name {
                "instance-state-name" => Some(vec![i.state.clone()]),
                "instance-id" => Some(vec![i.instance_id.clone()]),
                "image-id" => Some(vec![i.image_id.clone()]),
                "instance-type" => Some(vec![i.instance_type.clone()]),
                "vpc-id" => Some(i.vpc_id.clone().into_iter().collect()),
                "subnet-id" => Some(i.subnet_id.clone().into_iter().collect()),
                "key-name" => Some(i.key_name.clone().into_iter().collect()),
                "availability-zone" => Some(vec![i.availability_zone.clone()]),
                "private-ip-address" => Some(i.private_ip.clone().into_iter().collect()),
                "ip-address" => Some(i.public_ip.clone().into_iter().collect()),
                _ => None,
            })?;
            if ok {
                matched.push(i.clone());
            }
        }
        let (page, next) = paginate(matched, p)?;
        let mut x = String::from("<reservationSet>");
        for i in &page {
            x += "<item>";
            x += &tag("reservationId", &format!("r-0{:016x}", fnv(&i.instance_id)));
            x += &tag("ownerId", ACCOUNT_ID);
            x += "<groupSet/><instancesSet><item>";
            x += &tag("instanceId", &i.instance_id);
            x += &tag("imageId", &i.image_id);
            x += &format!(
                "<instanceState><code>{}</code><name>{}</name></instanceState>",
                state_code(&i.state),
                esc(&i.state)
            );
            let running = i.state == "running";
            x += &tag(
                "privateDnsName",
                &i.private_ip
                    .as_ref()
                    .map(|ip| format!("ip-{}.ec2.internal", ip.replace('.', "-")))
                    .unwrap_or_default(),
            );
            x += &tag(
                "dnsName",
                &i.public_ip
                    .as_ref()
                    .filter(|_| running)
                    .map(|ip| format!("ec2-{}.compute-1.amazonaws.com", ip.replace('.', "-")))
                    .unwrap_or_default(),
            );
            x += &tag("reason", "");
            if let Some(k) = &i.key_name {
                x += &tag("keyName", k);
            }
            x += "<amiLaunchIndex>0</amiLaunchIndex><productCodes/>";
            x += &tag("instanceType", &i.instance_type);
            x += &tag(
                "launchTime",
                &i.launch_time.to_rfc3339_opts(SecondsFormat::Millis, true),
            );
            x += &format!(
                "<placement>{}<groupName/><tenancy>default</tenancy></placement>",
                tag("availabilityZone", &i.availability_zone)
            );
            x += "<monitoring><state>disabled</state></monitoring>";
            if i.state != "terminated" {
                if let Some(s) = &i.subnet_id {
                    x += &tag("subnetId", s);
                }
                if let Some(v) = &i.vpc_id {
                    x += &tag("vpcId", v);
                }
                if let Some(ip) = &i.private_ip {
                    x += &tag("privateIpAddress", ip);
                }
                if let Some(ip) = i.public_ip.as_ref().filter(|_| running) {
                    x += &tag("ipAddress", ip);
                }
            }
            x += "<architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName>";
            x += &tag_set(&i.tags);
            x += "<virtualizationType>hvm</virtualizationType><hypervisor>xen</hypervisor>";
            x += "</item></instancesSet></item>";
        }
        x += "</reservationSet>";
        if let Some(n) = next {
            x += &tag("nextToken", &n);
        }
        Ok(x)
    }

    fn describe_images(&mut self, p: &Params) -> Answer {
        let filters = filters(p)?;
        let owners = scalar_list(p, "Owner");
        let ids = scalar_list(p, "ImageId");
        for id in &ids {
            if !self.images.iter().any(|i| &i.image_id == id) {
                return Err(err(
                    "InvalidAMIID.NotFound",
                    format!("The image id '[{id}]' does not exist"),
                ));
            }
        }
        let mut matched = Vec::new();
        for i in &self.images {
            if !ids.is_empty() && !ids.contains(&i.image_id) {
                continue;
            }
            if !owners.is_empty()
                && !owners.iter().any(|o| {
                    o == &i.owner_id
                        || (o == "self" && i.owner_id == ACCOUNT_ID)
                        || i.owner_alias.as_deref() == Some(o.as_str())
                })
            {
                continue;
            }
            let ok = filters_match(&filters, &i.tags, |name| match name {
                "name" => Some(vec![i.name.clone()]),
                "image-id" => Some(vec![i.image_id.clone()]),
                "state" => Some(vec![i.state.clone()]),
                "owner-id" => Some(vec![i.owner_id.clone()]),
                "owner-alias" => Some(i.owner_alias.clone().into_iter().collect()),
                "is-public" => Some(vec![i.public.to_string()]),
                "description" => Some(i.description.clone().into_iter().collect()),
                "architecture" => Some(vec!["x86_64".to_string()]),
                "block-device-mapping.snapshot-id" => Some(i.snapshot_ids.clone()),
                _ => None,
            })?;
            if ok {
                matched.push(i.clone());
            }
        }
        let (page, next) = paginate(matched, p)?;
        let mut x = String::from("<imagesSet>");
        for i in &page {
            x += "<item>";
            x += &tag("imageId", &i.image_id);
            x += &tag("imageLocation", &format!("{}/{}", i.owner_id, i.name));
            x += &tag("imageState", &i.state);
            x += &tag("imageOwnerId", &i.owner_id);
            x += &tag("creationDate", &i.creation_date);
            x += &tag("isPublic", if i.public { "true" } else { "false" });
            x += "<architecture>x86_64</architecture><imageType>machine</imageType>";
            if let Some(a) = &i.owner_alias {
                x += &tag("imageOwnerAlias", a);
            }
            x += &tag("name", &i.name);
            if let Some(d) = &i.description {
                x += &tag("description", d);
            }
            x += "<rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping>";
            for (n, snap) in i.snapshot_ids.iter().enumerate() {
                let device = if n == 0 {
                    "/dev/xvda".to_string()
                } else {
                    format!("/dev/sd{}", (b'a' + (n as u8 % 26)) as char)
                };
                x += &format!(
                    "<item>{}<ebs>{}<volumeSize>8</volumeSize><deleteOnTermination>true</deleteOnTermination><volumeType>gp3</volumeType><encrypted>false</encrypted></ebs></item>",
                    tag("deviceName", &device),
                    tag("snapshotId", snap)
                );
            }
            x += "</blockDeviceMapping><virtualizationType>hvm</virtualizationType>";
            x += &tag_set(&i.tags);
            x += "<hypervisor>xen</hypervisor><enaSupport>true</enaSupport><bootMode>uefi-preferred</bootMode>";
            x += "</item>";
        }
        x += "</imagesSet>";
        if let Some(n) = next {
            x += &tag("nextToken", &n);
        }
        Ok(x)
    }

    fn describe_vpcs(&mut self, p: &Params) -> Answer {
        let filters = filters(p)?;
        let ids = scalar_list(p, "VpcId");
        let mut x = String::from("<vpcSet>");
        for v in &self.vpcs {
            if !ids.is_empty() && !ids.contains(&v.vpc_id) {
                continue;
            }
            let ok = filters_match(&filters, &v.tags, |name| match name {
                "vpc-id" => Some(vec![v.vpc_id.clone()]),
                "is-default" | "isDefault" => Some(vec![v.is_default.to_string()]),
                "cidr" | "cidr-block-association.cidr-block" => Some(vec![v.cidr.clone()]),
                "state" => Some(vec!["available".to_string()]),
                "owner-id" => Some(vec![ACCOUNT_ID.to_string()]),
                _ => None,
            })?;
            if !ok {
                continue;
            }
            x += "<item>";
            x += &tag("vpcId", &v.vpc_id);
            x += "<state>available</state>";
            x += &tag("cidrBlock", &v.cidr);
            x += "<cidrBlockAssociationSet><item>";
            x += &tag("cidrBlock", &v.cidr);
            x += &tag("associationId", &format!("vpc-cidr-assoc-0{:016x}", fnv(&v.vpc_id)));
            x += "<cidrBlockState><state>associated</state></cidrBlockState></item></cidrBlockAssociationSet>";
            x += "<dhcpOptionsId>dopt-0123456789abcdef0</dhcpOptionsId><instanceTenancy>default</instanceTenancy>";
            x += &tag("isDefault", if v.is_default { "true" } else { "false" });
            x += &tag("ownerId", ACCOUNT_ID);
            x += &tag_set(&v.tags);
            x += "</item>";
        }
        x += "</vpcSet>";
        Ok(x)
    }

    fn describe_subnets(&mut self, p: &Params) -> Answer {
        let filters = filters(p)?;
        let ids = scalar_list(p, "SubnetId");
        let mut x = String::from("<subnetSet>");
        for s in &self.subnets {
            if !ids.is_empty() && !ids.contains(&s.subnet_id) {
                continue;
            }
            let ok = filters_match(&filters, &s.tags, |name| match name {
                "vpc-id" => Some(vec![s.vpc_id.clone()]),
                "subnet-id" => Some(vec![s.subnet_id.clone()]),
                "availability-zone" | "availabilityZone" => Some(vec![s.az.clone()]),
                "default-for-az" | "defaultForAz" => Some(vec![s.default_for_az.to_string()]),
                "cidr-block" => Some(vec![s.cidr.clone()]),
                "state" => Some(vec!["available".to_string()]),
                _ => None,
            })?;
            if !ok {
                continue;
            }
            x += "<item>";
            x += &tag("subnetId", &s.subnet_id);
            x += &tag(
                "subnetArn",
                &format!("arn:aws:ec2:{REGION}:{ACCOUNT_ID}:subnet/{}", s.subnet_id),
            );
            x += "<state>available</state>";
            x += &tag("ownerId", ACCOUNT_ID);
            x += &tag("vpcId", &s.vpc_id);
            x += &tag("cidrBlock", &s.cidr);
            x += "<availableIpAddressCount>4091</availableIpAddressCount>";
            x += &tag("availabilityZone", &s.az);
            x += &tag(
                "availabilityZoneId",
                &format!(
                    "use1-az{}",
                    s.az.chars()
                        .last()
                        .map_or(1, |c| (c as u32).saturating_sub('a' as u32) + 1)
                ),
            );
            x += &tag("defaultForAz", if s.default_for_az { "true" } else { "false" });
            x += &tag("mapPublicIpOnLaunch", if s.default_for_az { "true" } else { "false" });
            x += &tag_set(&s.tags);
            x += "</item>";
        }
        x += "</subnetSet>";
        Ok(x)
    }

    fn deregister_image(&mut self, p: &Params) -> Answer {
        let id = p.get("ImageId").cloned().unwrap_or_default();
        let Some(i) = self.images.iter().position(|i| i.image_id == id) else {
            return Err(err(
                "InvalidAMIID.NotFound",
                format!("The image id '[{id}]' does not exist"),
            ));
        };
        let image = self.images.remove(i);
        let mut x = String::from("<return>true</return>");
        if p.get("DeleteAssociatedSnapshots").is_some_and(|v| v == "true") {
            x += "<deleteSnapshotResultSet>";
            for snap in &image.snapshot_ids {
                self.snapshots.retain(|s| s != snap);
                x += &format!(
                    "<item>{}<returnCode>success</returnCode></item>",
                    tag("snapshotId", snap)
                );
            }
            x += "</deleteSnapshotResultSet>";
        }
        Ok(x)
    }

    fn delete_snapshot(&mut self, p: &Params) -> Answer {
        let id = p.get("SnapshotId").cloned().unwrap_or_default();
        if !self.snapshots.contains(&id) {
            return Err(err(
                "InvalidSnapshot.NotFound",
                format!("The snapshot '{id}' does not exist."),
            ));
        }
        if let Some(image) = self.images.iter().find(|i| i.snapshot_ids.contains(&id)) {
            return Err(err(
                "InvalidSnapshot.InUse",
                format!("The snapshot {id} is currently in use by {}", image.image_id),
            ));
        }
        self.snapshots.retain(|s| s != &id);
        Ok("<return>true</return>".to_string())
    }

    fn terminate_instances(&mut self, p: &Params, now: Instant) -> Answer {
        let ids = scalar_list(p, "InstanceId");
        for id in &ids {
            if !self.instances.iter().any(|i| &i.instance.instance_id == id) {
                return Err(err(
                    "InvalidInstanceID.NotFound",
                    format!("The instance ID '{id}' does not exist"),
                ));
            }
        }
        let delay = Duration::from_secs_f64((5.0 / self.time_scale).min(1.0e9));
        let mut x = String::from("<instancesSet>");
        for id in &ids {
            for rec in self.instances.iter_mut().filter(|r| &r.instance.instance_id == id) {
                let previous = rec.instance.state.clone();
                let current = if previous == "terminated" {
                    "terminated".to_string()
                } else {
                    rec.becomes = Some((now + delay, "terminated".to_string()));
                    "shutting-down".to_string()
                };
                rec.instance.state = current.clone();
                x += &format!(
                    "<item>{}<currentState><code>{}</code><name>{}</name></currentState><previousState><code>{}</code><name>{}</name></previousState></item>",
                    tag("instanceId", id),
                    state_code(&current),
                    current,
                    state_code(&previous),
                    esc(&previous)
                );
            }
        }
        x += "</instancesSet>";
        Ok(x)
    }

    fn create_tags(&mut self, p: &Params) -> Answer {
        let ids = scalar_list(p, "ResourceId");
        let tags: Vec<(String, String)> = member_pairs(p, "Tag", "Key", "Value");
        for id in &ids {
            let target: Option<&mut Vec<(String, String)>> = if id.starts_with("i-") {
                self.instances
                    .iter_mut()
                    .find(|i| &i.instance.instance_id == id)
                    .map(|i| &mut i.instance.tags)
            } else if id.starts_with("ami-") {
                self.images.iter_mut().find(|i| &i.image_id == id).map(|i| &mut i.tags)
            } else if id.starts_with("vpc-") {
                self.vpcs.iter_mut().find(|v| &v.vpc_id == id).map(|v| &mut v.tags)
            } else if id.starts_with("subnet-") {
                self.subnets
                    .iter_mut()
                    .find(|s| &s.subnet_id == id)
                    .map(|s| &mut s.tags)
            } else {
                None
            };
            let Some(target) = target else {
                let code = if id.starts_with("i-") {
                    "InvalidInstanceID.NotFound"
                } else if id.starts_with("ami-") {
                    "InvalidAMIID.NotFound"
                } else {
                    "InvalidID"
                };
                return Err(err(code, format!("The ID '{id}' does not exist")));
            };
            for (k, v) in &tags {
                target.retain(|(tk, _)| tk != k);
                target.push((k.clone(), v.clone()));
            }
        }
        Ok("<return>true</return>".to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Templates, change sets and default scripts
// ---------------------------------------------------------------------------------------------

fn check_stack_name(name: &str) -> Result<(), AwsError> {
    let ok = name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'stackName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*"
        )))
    }
}

fn check_updatable(stack: &StackRec, status: &str) -> Result<(), AwsError> {
    const UPDATABLE: [&str; 4] = [
        "CREATE_COMPLETE",
        "UPDATE_COMPLETE",
        "UPDATE_ROLLBACK_COMPLETE",
        "IMPORT_COMPLETE",
    ];
    if UPDATABLE.contains(&status) {
        Ok(())
    } else {
        Err(validation(format!(
            "Stack:{} is in {status} state and can not be updated.",
            stack.id
        )))
    }
}

fn template_of(p: &Params, previous: Option<&str>) -> Result<String, AwsError> {
    if let Some(body) = p.get("TemplateBody") {
        return Ok(body.clone());
    }
    if p.get("UsePreviousTemplate").is_some_and(|v| v == "true") {
        if let Some(prev) = previous {
            return Ok(prev.to_string());
        }
    }
    if p.contains_key("TemplateURL") {
        return Err(validation(
            "TemplateURL is not supported by the fake; send TemplateBody",
        ));
    }
    Err(validation("Either Template URL or Template Body must be specified."))
}

/// Parses a JSON template; a non-JSON (YAML) template is accepted as an opaque empty object.
fn parse_template(body: &str) -> Result<Value, AwsError> {
    if !body.trim_start().starts_with('{') {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str::<Value>(body).map_err(|e| {
        validation(format!(
            "Template format error: JSON not well-formed. (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

fn template_resources(tpl: &Value) -> Vec<(String, String)> {
    tpl.get("Resources")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let t = v
                        .get("Type")
                        .and_then(Value::as_str)
                        .unwrap_or("AWS::CloudFormation::WaitConditionHandle");
                    (k.clone(), t.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Template parameters merged with the given values and defaults; errors like AWS for missing
/// or unknown parameters.
fn resolve_parameters(
    tpl: &Value,
    given: &[(String, String)],
    previous: &[(String, String)],
) -> Result<Vec<(String, String)>, AwsError> {
    let declared = tpl
        .get("Parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let unknown: Vec<&str> = given
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !declared.contains_key(*k))
        .collect();
    if !unknown.is_empty() && !declared.is_empty() {
        return Err(validation(format!(
            "Parameters: [{}] do not exist in the template",
            unknown.join(", ")
        )));
    }
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for (key, decl) in &declared {
        let value = given
            .iter()
            .chain(previous)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .or_else(|| decl.get("Default").map(value_text));
        match value {
            Some(v) => out.push((key.clone(), v)),
            None => missing.push(key.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(validation(format!(
            "Parameters: [{}] must have values",
            missing.join(", ")
        )));
    }
    if declared.is_empty() {
        out = given.to_vec();
    }
    Ok(out)
}

/// (capabilities required, IAM resource types needing them).
fn required_capabilities(tpl: &Value) -> (Vec<String>, Vec<String>) {
    let mut types = Vec::new();
    let mut named = false;
    if let Some(res) = tpl.get("Resources").and_then(Value::as_object) {
        for r in res.values() {
            let t = r.get("Type").and_then(Value::as_str).unwrap_or("");
            if t.starts_with("AWS::IAM::") {
                if !types.contains(&t.to_string()) {
                    types.push(t.to_string());
                }
                let props = r.get("Properties");
                named |= [
                    "RoleName",
                    "UserName",
                    "GroupName",
                    "ManagedPolicyName",
                    "InstanceProfileName",
                ]
                .iter()
                .any(|k| props.and_then(|p| p.get(k)).is_some());
            }
        }
    }
    let caps = match (types.is_empty(), named) {
        (true, _) => vec![],
        (false, false) => vec!["CAPABILITY_IAM".to_string()],
        (false, true) => vec!["CAPABILITY_NAMED_IAM".to_string()],
    };
    (caps, types)
}

fn check_capabilities(tpl: &Value, given: &[String]) -> Result<(), AwsError> {
    let (needed, _) = required_capabilities(tpl);
    let satisfied = needed
        .iter()
        .all(|n| given.contains(n) || (n == "CAPABILITY_IAM" && given.iter().any(|g| g == "CAPABILITY_NAMED_IAM")));
    if satisfied {
        Ok(())
    } else {
        Err(err(
            "InsufficientCapabilitiesException",
            format!("Requires capabilities : [{}]", needed.join(", ")),
        ))
    }
}

fn validate_template(p: &Params) -> Answer {
    let body = template_of(p, None)?;
    let tpl = parse_template(&body)?;
    if body.trim_start().starts_with('{')
        && tpl
            .get("Resources")
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty())
    {
        return Err(validation(
            "Template format error: At least one Resources member must be defined.",
        ));
    }
    let mut x = String::from("<Parameters>");
    if let Some(params) = tpl.get("Parameters").and_then(Value::as_object) {
        for (k, decl) in params {
            x += "<member>";
            x += &tag("ParameterKey", k);
            if let Some(d) = decl.get("Default") {
                x += &tag("DefaultValue", &value_text(d));
            }
            let no_echo = decl.get("NoEcho").map(value_text).is_some_and(|v| v == "true");
            x += &tag("NoEcho", if no_echo { "true" } else { "false" });
            if let Some(d) = decl.get("Description").and_then(Value::as_str) {
                x += &tag("Description", d);
            }
            x += "</member>";
        }
    }
    x += "</Parameters>";
    if let Some(d) = tpl.get("Description").and_then(Value::as_str) {
        x += &tag("Description", d);
    }
    let (caps, types) = required_capabilities(&tpl);
    if !caps.is_empty() {
        x += "<Capabilities>";
        for c in &caps {
            x += &tag("member", c);
        }
        x += "</Capabilities>";
        x += &tag(
            "CapabilitiesReason",
            &format!("The following resource(s) require capabilities: [{}]", types.join(", ")),
        );
    }
    Ok(x)
}

/// Resource changes between two templates (and parameter changes, for resources that `Ref`
/// a changed parameter).
fn diff_templates(
    old: &Value,
    new: &Value,
    old_params: &[(String, String)],
    new_params: &[(String, String)],
) -> Vec<Change> {
    let empty = serde_json::Map::new();
    let old_r = old.get("Resources").and_then(Value::as_object).unwrap_or(&empty);
    let new_r = new.get("Resources").and_then(Value::as_object).unwrap_or(&empty);
    let changed_params: Vec<&String> = new_params
        .iter()
        .filter(|np| !old_params.contains(np))
        .map(|(k, _)| k)
        .collect();
    let mut changes = Vec::new();
    for (k, v) in new_r {
        let t = v.get("Type").and_then(Value::as_str).unwrap_or("");
        match old_r.get(k) {
            None => changes.push(Change::add(k, t)),
            Some(o) if o.get("Type") != v.get("Type") => changes.push(Change::modify(k, t, "True", &["Properties"])),
            Some(o) if o != v => changes.push(Change::modify(k, t, "False", &["Properties"])),
            Some(_) => {
                let text = v.to_string();
                if changed_params
                    .iter()
                    .any(|p| text.contains(&format!("{{\"Ref\":\"{p}\"}}")))
                {
                    changes.push(Change::modify(k, t, "Conditional", &["Properties"]));
                }
            }
        }
    }
    for (k, v) in old_r {
        if !new_r.contains_key(k) {
            changes.push(Change::remove(k, v.get("Type").and_then(Value::as_str).unwrap_or("")));
        }
    }
    changes
}

/// The default timeline for applying `changes` (`kind` CREATE or UPDATE).
fn script_for_changes(stack: &str, kind: &str, changes: &[Change]) -> StackScript {
    let pick = |action: &str| -> Vec<(&str, &str)> {
        changes
            .iter()
            .filter(|c| c.action == action)
            .map(|c| (c.logical_id.as_str(), c.resource_type.as_str()))
            .collect()
    };
    let (added, modified, removed) = (pick("Add"), pick("Modify"), pick("Remove"));
    if kind == "CREATE" {
        return StackScript::create_success(stack, &added, &[2.0]);
    }
    let mut s = StackScript::new(stack).stack_event(0.0, "UPDATE_IN_PROGRESS", Some("User Initiated"));
    let mut t = 0.5;
    for r in &added {
        let pid = physical_id_for(stack, r.0, r.1);
        s = s
            .resource_event(t, *r, "CREATE_IN_PROGRESS", None, None)
            .resource_event(
                t + 0.3,
                *r,
                "CREATE_IN_PROGRESS",
                Some("Resource creation Initiated"),
                Some(&pid),
            );
        t += 2.3;
        s = s.resource_event(t, *r, "CREATE_COMPLETE", None, Some(&pid));
    }
    for r in &modified {
        let pid = physical_id_for(stack, r.0, r.1);
        s = s.resource_event(t, *r, "UPDATE_IN_PROGRESS", None, Some(&pid));
        t += 2.0;
        s = s.resource_event(t, *r, "UPDATE_COMPLETE", None, Some(&pid));
    }
    t += 0.5;
    s = s.stack_event(t, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", None);
    for r in removed.iter().rev() {
        let pid = physical_id_for(stack, r.0, r.1);
        t += 0.5;
        s = s.resource_event(t, *r, "DELETE_IN_PROGRESS", None, Some(&pid));
        t += 1.0;
        s = s.resource_event(t, *r, "DELETE_COMPLETE", None, Some(&pid));
    }
    s.stack_event(t + 0.5, "UPDATE_COMPLETE", None)
}

// ---------------------------------------------------------------------------------------------
// Query parameters, filters, XML helpers
// ---------------------------------------------------------------------------------------------

/// Elements of a query list: `Prefix.N.Rest=v` -> one map per N (ordered by N) of `Rest -> v`
/// (`Rest` is empty for scalar lists like `Owner.1`).
fn member_list(p: &Params, prefix: &str) -> Vec<BTreeMap<String, String>> {
    let mut items: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
    let dotted = format!("{prefix}.");
    for (k, v) in p.range(dotted.clone()..) {
        let Some(rest) = k.strip_prefix(&dotted) else {
            break;
        };
        let (n, field) = rest.split_once('.').unwrap_or((rest, ""));
        if let Ok(n) = n.parse::<usize>() {
            items.entry(n).or_default().insert(field.to_string(), v.clone());
        }
    }
    items.into_values().collect()
}

fn scalar_list(p: &Params, prefix: &str) -> Vec<String> {
    member_list(p, prefix)
        .into_iter()
        .filter_map(|m| m.get("").cloned())
        .collect()
}

fn member_pairs(p: &Params, prefix: &str, key: &str, value: &str) -> Vec<(String, String)> {
    member_list(p, prefix)
        .into_iter()
        .map(|m| {
            (
                m.get(key).cloned().unwrap_or_default(),
                m.get(value).cloned().unwrap_or_default(),
            )
        })
        .collect()
}

/// `Filter.N.Name` / `Filter.N.Value.M` -> (name, values).
fn filters(p: &Params) -> Result<Vec<(String, Vec<String>)>, AwsError> {
    let mut out = Vec::new();
    for m in member_list(p, "Filter") {
        let name = m
            .get("Name")
            .cloned()
            .ok_or_else(|| err("InvalidParameterValue", "The filter 'null' is invalid"))?;
        let mut values: Vec<(usize, String)> = m
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("Value.")
                    .and_then(|n| n.parse().ok())
                    .map(|n| (n, v.clone()))
            })
            .collect();
        values.sort();
        out.push((name, values.into_iter().map(|(_, v)| v).collect()));
    }
    Ok(out)
}

/// AND over filters, OR over a filter's values; values may use `*` and `?` wildcards.
/// `field` returns the attribute values for a filter name, or `None` for an unknown filter.
fn filters_match(
    filters: &[(String, Vec<String>)],
    tags: &[(String, String)],
    field: impl Fn(&str) -> Option<Vec<String>>,
) -> Result<bool, AwsError> {
    for (name, values) in filters {
        let actual: Vec<String> = if let Some(key) = name.strip_prefix("tag:") {
            tags.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
        } else if name == "tag-key" {
            tags.iter().map(|(k, _)| k.clone()).collect()
        } else if name == "tag-value" {
            tags.iter().map(|(_, v)| v.clone()).collect()
        } else {
            field(name).ok_or_else(|| err("InvalidParameterValue", format!("The filter '{name}' is invalid")))?
        };
        if !actual.iter().any(|a| values.iter().any(|v| glob(v, a))) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// EC2 filter wildcard match (`*` any run, `?` one character).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn paginate<T>(items: Vec<T>, p: &Params) -> Result<(Vec<T>, Option<String>), AwsError> {
    let start = match p.get("NextToken") {
        Some(t) => t
            .strip_prefix("ec2p1.")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| err("InvalidParameterValue", "Invalid value for nextToken"))?,
        None => 0,
    };
    let max = match p.get("MaxResults") {
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| err("InvalidParameterValue", "Invalid value for MaxResults"))?,
        None => usize::MAX,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let end = start.saturating_add(page.len());
    let next = (end < total).then(|| format!("ec2p1.{end}"));
    Ok((page, next))
}

fn state_code(state: &str) -> u16 {
    match state {
        "pending" => 0,
        "running" => 16,
        "shutting-down" => 32,
        "terminated" => 48,
        "stopping" => 64,
        "stopped" => 80,
        _ => 0,
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

fn tag(name: &str, value: &str) -> String {
    format!("<{name}>{}</{name}>", esc(value))
}

fn tag_set(tags: &[(String, String)]) -> String {
    if tags.is_empty() {
        return String::new();
    }
    let mut x = String::from("<tagSet>");
    for (k, v) in tags {
        x += &format!("<item>{}{}</item>", tag("key", k), tag("value", v));
    }
    x += "</tagSet>";
    x
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A deterministic UUID-shaped id from a sequence number and a salt.
fn uuid(n: u64, salt: u64) -> String {
    let a = fnv(&format!("{salt}:{n}"));
    let b = fnv(&format!("{n}:{salt}:b"));
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}
