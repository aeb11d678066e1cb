//! The workers' Auto Scaling group: its size and the instances waiting in a lifecycle hook
//! (`Pending:Wait` after launch, `Terminating:Wait` before termination), and the calls that
//! answer those hooks: complete with CONTINUE or ABANDON, record a heartbeat, and make sure
//! the hooks exist. Every call goes through the account's request budget (`aws_call!`).

use aws_sdk_autoscaling::types::{Filter, LifecycleState};

use crate::aws_call;
use crate::cloud::Aws;
use crate::error::Result;
use crate::names::tags;

/// The launch hook's name: a new worker waits in `Pending:Wait` until Argos has configured it.
pub const LAUNCH_HOOK: &str = "argos-launch";
/// The termination hook's name: a leaving worker waits in `Terminating:Wait` until it drained.
pub const TERMINATE_HOOK: &str = "argos-terminate";
/// How long a hook waits without a heartbeat before its default result (as in the template).
pub const HOOK_TIMEOUT_SECS: i32 = 900;
/// The transitions, as Auto Scaling names them.
pub const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
pub const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";

/// One instance of the group and where it is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInstance {
    pub id: String,
    /// `Pending:Wait`, `InService`, `Terminating:Wait`, ... as Auto Scaling says it.
    pub state: String,
}

impl GroupInstance {
    pub fn waits_to_launch(&self) -> bool {
        self.state == LifecycleState::PendingWait.as_str()
    }
    pub fn waits_to_terminate(&self) -> bool {
        self.state == LifecycleState::TerminatingWait.as_str()
    }
    pub fn in_service(&self) -> bool {
        self.state == LifecycleState::InService.as_str()
    }
    /// On its way out (its termination hook, or past it): `status` no longer lists it.
    pub fn leaving(&self) -> bool {
        self.state.starts_with("Terminating") || self.state == LifecycleState::Terminated.as_str()
    }
}

/// The group as `status` and the lifecycle handler read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    pub name: String,
    pub desired: i32,
    pub instances: Vec<GroupInstance>,
}

impl GroupState {
    pub fn in_service(&self) -> usize {
        self.instances.iter().filter(|i| i.in_service()).count()
    }
    /// The instances waiting in the launch hook.
    pub fn launching(&self) -> Vec<&GroupInstance> {
        self.instances.iter().filter(|i| i.waits_to_launch()).collect()
    }
    /// The instances waiting in the termination hook.
    pub fn terminating(&self) -> Vec<&GroupInstance> {
        self.instances.iter().filter(|i| i.waits_to_terminate()).collect()
    }
    /// Whether any instance waits for Argos.
    pub fn waiting(&self) -> bool {
        self.instances
            .iter()
            .any(|i| i.waits_to_launch() || i.waits_to_terminate())
    }
}

/// How a lifecycle action ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Go on: the launch enters service, the termination proceeds.
    Continue,
    /// Give up: a launching instance is terminated (the group replaces it).
    Abandon,
}

impl Answer {
    fn as_str(self) -> &'static str {
        match self {
            Answer::Continue => "CONTINUE",
            Answer::Abandon => "ABANDON",
        }
    }
}

fn group_state(g: &aws_sdk_autoscaling::types::AutoScalingGroup) -> GroupState {
    GroupState {
        name: g.auto_scaling_group_name().unwrap_or_default().to_string(),
        desired: g.desired_capacity().unwrap_or_default(),
        instances: g
            .instances()
            .iter()
            .map(|i| GroupInstance {
                id: i.instance_id().unwrap_or_default().to_string(),
                state: i.lifecycle_state().map(|s| s.as_str().to_string()).unwrap_or_default(),
            })
            .collect(),
    }
}

/// The group named `name`, if it exists.
pub async fn describe(aws: &Aws, name: &str) -> Result<Option<GroupState>> {
    let out = aws_call!(
        aws,
        "DescribeAutoScalingGroups",
        aws.autoscaling()
            .await
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
    )?;
    Ok(out.auto_scaling_groups().first().map(group_state))
}

/// The workers' group of an environment, found by the tags the template gives it
/// (`App`, `Env`, `Group=worker`): one call, without reading the stack first.
pub async fn find(aws: &Aws, app: &str, env: &str) -> Result<Option<GroupState>> {
    let tag = |k: &str, v: &str| Filter::builder().name(format!("tag:{k}")).values(v).build();
    let out = aws_call!(
        aws,
        "DescribeAutoScalingGroups",
        aws.autoscaling()
            .await
            .describe_auto_scaling_groups()
            .filters(tag(tags::APP, app))
            .filters(tag(tags::ENV, env))
            .filters(tag(tags::GROUP, "worker"))
            .send()
    )?;
    Ok(out.auto_scaling_groups().first().map(group_state))
}

/// Ends the lifecycle action `hook` holds `instance` in.
pub async fn complete(aws: &Aws, group: &str, hook: &str, instance: &str, answer: Answer) -> Result<()> {
    aws_call!(
        aws,
        "CompleteLifecycleAction",
        aws.autoscaling()
            .await
            .complete_lifecycle_action()
            .auto_scaling_group_name(group)
            .lifecycle_hook_name(hook)
            .instance_id(instance)
            .lifecycle_action_result(answer.as_str())
            .send()
    )?;
    Ok(())
}

/// Restarts the hook's timeout for `instance`: Argos is still working on it.
pub async fn heartbeat(aws: &Aws, group: &str, hook: &str, instance: &str) -> Result<()> {
    aws_call!(
        aws,
        "RecordLifecycleActionHeartbeat",
        aws.autoscaling()
            .await
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(group)
            .lifecycle_hook_name(hook)
            .instance_id(instance)
            .send()
    )?;
    Ok(())
}

/// Makes sure the group has Argos's two hooks, putting the missing ones; returns the names of
/// those it put. The template declares both (`LifecycleHookSpecificationList`), but not every
/// CloudFormation implementation creates them (moto drops the list), and a hook deleted by
/// hand would leave new workers unconfigured without a word: so the engine looks after every
/// commission and update.
pub async fn ensure_hooks(aws: &Aws, group: &str) -> Result<Vec<String>> {
    let out = aws_call!(
        aws,
        "DescribeLifecycleHooks",
        aws.autoscaling()
            .await
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(group)
            .send()
    )?;
    let present: Vec<&str> = out
        .lifecycle_hooks()
        .iter()
        .filter_map(|h| h.lifecycle_hook_name())
        .collect();
    let mut put = Vec::new();
    // Launch: ABANDON when nobody answers (an unconfigured worker must not take tasks);
    // termination: CONTINUE (a worker that could not be drained still goes).
    for (name, transition, default) in [
        (LAUNCH_HOOK, LAUNCHING, Answer::Abandon),
        (TERMINATE_HOOK, TERMINATING, Answer::Continue),
    ] {
        if present.contains(&name) {
            continue;
        }
        aws_call!(
            aws,
            "PutLifecycleHook",
            aws.autoscaling()
                .await
                .put_lifecycle_hook()
                .auto_scaling_group_name(group)
                .lifecycle_hook_name(name)
                .lifecycle_transition(transition)
                .heartbeat_timeout(HOOK_TIMEOUT_SECS)
                .default_result(default.as_str())
                .send()
        )?;
        put.push(name.to_string());
    }
    Ok(put)
}
