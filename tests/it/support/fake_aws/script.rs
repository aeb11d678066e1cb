//! What a test scripts and reads back: stack operations and their timelines of events
//! ([`StackScript`], [`Step`]), change sets' changes, recorded calls, EC2 instances and images.

use super::*;

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
    /// `(path, before, after)` of each changed property, described as Details (values only
    /// when DescribeChangeSet asks for IncludePropertyValues).
    pub details: Vec<(String, String, String)>,
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

pub(super) fn dur(durations: &[f64], i: usize) -> f64 {
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

    /// Status of the last own event (the stack's final status).
    pub fn final_status(&self) -> Option<&str> {
        self.steps
            .iter()
            .filter(|s| s.resource_type == STACK_TYPE && (s.logical_id == self.stack || s.logical_id.is_empty()))
            .max_by(|a, b| a.at.total_cmp(&b.at))
            .map(|s| s.status.as_str())
    }

    pub(super) fn pid(&self, r: (&str, &str)) -> String {
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
            details: Vec::new(),
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
