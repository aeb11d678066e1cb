//! Auto Scaling's query protocol (version 2011-01-01) on the fake: worker groups that hold a
//! new instance in `Pending:Wait` and a leaving one in `Terminating:Wait` while they have the
//! matching lifecycle hook, and the calls that answer those hooks (complete, heartbeat), which
//! moto lacks. A group belongs to a stack: executing a change set that sets the stack's
//! `WorkerCount` launches or retires instances until the group has that many.
//!
//! Element names follow aws-sdk-autoscaling 1.141's deserializers (`protocol_serde/shape_*`):
//! lists are wrapped in `<member>`.

use super::*;

pub(super) const PENDING_WAIT: &str = "Pending:Wait";
pub(super) const TERMINATING_WAIT: &str = "Terminating:Wait";
const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";

#[derive(Clone, Debug)]
pub(super) struct HookRec {
    name: String,
    transition: String,
    timeout: i64,
    default_result: String,
}

#[derive(Clone, Debug)]
pub(super) struct GroupRec {
    name: String,
    /// The stack whose `WorkerCount` the group follows.
    stack: String,
    tags: Vec<(String, String)>,
    desired: i64,
    /// (instance id, lifecycle state), in launch order.
    instances: Vec<(String, String)>,
    hooks: Vec<HookRec>,
    launched: u64,
}

impl GroupRec {
    fn hook_for(&self, transition: &str) -> Option<&HookRec> {
        self.hooks.iter().find(|h| h.transition == transition)
    }

    fn live(&self) -> usize {
        self.instances
            .iter()
            .filter(|(_, s)| !s.starts_with("Terminating"))
            .count()
    }
}

/// One answer to a lifecycle hook, as the fake recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleAnswer {
    pub instance: String,
    pub hook: String,
    pub result: String,
}

impl FakeAws {
    /// Adds the workers' group of `stack` (environment `env`), tagged as the template tags
    /// it, with no instance; `hooks`: with Argos's two lifecycle hooks (as CloudFormation
    /// creates them from the template), else none (as moto does). Adds the stack's
    /// `WorkerGroupName` output.
    pub fn add_worker_group(&self, stack: &str, env: &str, name: &str, hooks: bool) {
        let mut st = lock(&self.state);
        let hook = |name: &str, transition: &str, default: &str| HookRec {
            name: name.into(),
            transition: transition.into(),
            timeout: 900,
            default_result: default.into(),
        };
        st.groups.push(GroupRec {
            name: name.to_string(),
            stack: stack.to_string(),
            tags: pairs(&[
                ("App", "argos"),
                ("Env", env),
                ("Group", "worker"),
                ("Name", &format!("argos-{env}-worker")),
            ]),
            desired: 0,
            instances: Vec::new(),
            hooks: if hooks {
                vec![
                    hook("argos-launch", LAUNCHING, "ABANDON"),
                    hook("argos-terminate", TERMINATING, "CONTINUE"),
                ]
            } else {
                Vec::new()
            },
            launched: 0,
        });
        st.outputs
            .entry(stack.to_string())
            .or_default()
            .push(("WorkerGroupName".into(), name.to_string()));
    }

    /// The group launches `instance` (a running EC2 instance with the group's tags): it waits
    /// in `Pending:Wait` if the group has a launch hook, else it is in service at once.
    pub fn launch_worker(&self, group: &str, instance: &str) {
        let mut st = lock(&self.state);
        let g = st.groups.iter().position(|g| g.name == group).expect("a worker group");
        st.launch_in(g, instance.to_string());
        let live = st.groups[g].live() as i64;
        st.groups[g].desired = st.groups[g].desired.max(live);
    }

    /// The group lets `instance` go: it waits in `Terminating:Wait` if the group has a
    /// termination hook, else it is terminated at once.
    pub fn terminate_worker(&self, group: &str, instance: &str) {
        let mut st = lock(&self.state);
        let g = st.groups.iter().position(|g| g.name == group).expect("a worker group");
        st.groups[g].desired -= 1;
        st.retire_in(g, instance);
    }

    /// `(instance, lifecycle state)` of the group's instances, in launch order.
    pub fn worker_states(&self, group: &str) -> Vec<(String, String)> {
        let st = lock(&self.state);
        st.groups
            .iter()
            .find(|g| g.name == group)
            .map(|g| g.instances.clone())
            .unwrap_or_default()
    }

    /// The group's desired capacity.
    pub fn worker_desired(&self, group: &str) -> i64 {
        let st = lock(&self.state);
        st.groups.iter().find(|g| g.name == group).map_or(0, |g| g.desired)
    }

    /// Every lifecycle action completed so far (accepted calls only), in order.
    pub fn lifecycle_answers(&self) -> Vec<LifecycleAnswer> {
        self.calls()
            .into_iter()
            .filter(|c| c.action == "CompleteLifecycleAction" && c.status == 200)
            .map(|c| LifecycleAnswer {
                instance: c.params.get("InstanceId").cloned().unwrap_or_default(),
                hook: c.params.get("LifecycleHookName").cloned().unwrap_or_default(),
                result: c.params.get("LifecycleActionResult").cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// When each accepted heartbeat for `instance` arrived.
    pub fn heartbeats(&self, instance: &str) -> Vec<std::time::Instant> {
        self.calls()
            .into_iter()
            .filter(|c| {
                c.action == "RecordLifecycleActionHeartbeat"
                    && c.status == 200
                    && c.params.get("InstanceId").map(String::as_str) == Some(instance)
            })
            .map(|c| c.at)
            .collect()
    }
}

impl State {
    pub(super) fn autoscaling(&mut self, action: &str, p: &Params, _now: Instant) -> Answer {
        match action {
            "DescribeAutoScalingGroups" => self.describe_groups(p),
            "DescribeLifecycleHooks" => self.describe_hooks(p),
            "PutLifecycleHook" => self.put_hook(p),
            "CompleteLifecycleAction" => self.complete_action(p),
            "RecordLifecycleActionHeartbeat" => self.lifecycle_heartbeat(p),
            other => Err(err("InvalidAction", format!("Could not find operation {other}"))),
        }
    }

    fn launch_in(&mut self, g: usize, instance: String) {
        let group = &self.groups[g];
        let state = if group.hook_for(LAUNCHING).is_some() {
            PENDING_WAIT
        } else {
            "InService"
        };
        let tags: Vec<(&str, &str)> = group.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.instances.push(InstanceRec {
            instance: Ec2Instance::running(&instance, &tags),
            becomes: None,
        });
        self.groups[g].instances.push((instance, state.to_string()));
    }

    fn retire_in(&mut self, g: usize, instance: &str) {
        if self.groups[g].hook_for(TERMINATING).is_some() {
            if let Some(i) = self.groups[g].instances.iter_mut().find(|(id, _)| id == instance) {
                i.1 = TERMINATING_WAIT.to_string();
            }
        } else {
            self.remove_worker(g, instance);
        }
    }

    fn remove_worker(&mut self, g: usize, instance: &str) {
        self.groups[g].instances.retain(|(id, _)| id != instance);
        for rec in &mut self.instances {
            if rec.instance.instance_id == instance {
                rec.instance.state = "terminated".into();
            }
        }
    }

    /// After an update of `stack`: its groups follow its `WorkerCount`.
    pub(super) fn follow_worker_count(&mut self, stack: &str) {
        let Some(idx) = self.stacks.iter().position(|s| s.name == stack) else {
            return;
        };
        let Some(count) = self.stacks[idx]
            .parameters
            .iter()
            .find(|(k, _)| k == "WorkerCount")
            .and_then(|(_, v)| v.parse::<i64>().ok())
        else {
            return;
        };
        for g in 0..self.groups.len() {
            if self.groups[g].stack != stack {
                continue;
            }
            self.groups[g].desired = count;
            while (self.groups[g].live() as i64) < count {
                self.groups[g].launched += 1;
                let id = format!(
                    "i-0{:08x}{:08x}",
                    fnv_str(&self.groups[g].name) as u32,
                    self.groups[g].launched
                );
                self.launch_in(g, id);
            }
            while (self.groups[g].live() as i64) > count {
                let newest = self.groups[g]
                    .instances
                    .iter()
                    .rev()
                    .find(|(_, s)| !s.starts_with("Terminating"))
                    .map(|(id, _)| id.clone())
                    .expect("a live instance");
                self.retire_in(g, &newest);
            }
        }
    }

    fn group_index(&self, p: &Params) -> Result<usize, AwsError> {
        let name = p.get("AutoScalingGroupName").cloned().unwrap_or_default();
        self.groups
            .iter()
            .position(|g| g.name == name)
            .ok_or_else(|| validation(format!("Group {name} not found")))
    }

    fn describe_groups(&self, p: &Params) -> Answer {
        let names = scalar_list(p, "AutoScalingGroupNames.member");
        let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
        for f in member_list(p, "Filters.member") {
            let values: Vec<String> = f
                .iter()
                .filter(|(k, _)| k.starts_with("Values.member."))
                .map(|(_, v)| v.clone())
                .collect();
            wanted.push((f.get("Name").cloned().unwrap_or_default(), values));
        }
        let mut out = String::from("<AutoScalingGroups>");
        for g in &self.groups {
            if !names.is_empty() && !names.contains(&g.name) {
                continue;
            }
            let matches = wanted.iter().all(|(name, values)| match name.strip_prefix("tag:") {
                Some(key) => g.tags.iter().any(|(k, v)| k == key && values.contains(v)),
                None => false,
            });
            if !matches {
                continue;
            }
            out.push_str(&group_xml(g));
        }
        out.push_str("</AutoScalingGroups>");
        Ok(out)
    }

    fn describe_hooks(&self, p: &Params) -> Answer {
        let g = &self.groups[self.group_index(p)?];
        let mut out = String::from("<LifecycleHooks>");
        for h in &g.hooks {
            out.push_str(&format!(
                "<member><LifecycleHookName>{}</LifecycleHookName><AutoScalingGroupName>{}</AutoScalingGroupName><LifecycleTransition>{}</LifecycleTransition><HeartbeatTimeout>{}</HeartbeatTimeout><GlobalTimeout>{}</GlobalTimeout><DefaultResult>{}</DefaultResult></member>",
                esc(&h.name),
                esc(&g.name),
                h.transition,
                h.timeout,
                h.timeout * 100,
                h.default_result
            ));
        }
        out.push_str("</LifecycleHooks>");
        Ok(out)
    }

    fn put_hook(&mut self, p: &Params) -> Answer {
        let g = self.group_index(p)?;
        let name = p.get("LifecycleHookName").cloned().unwrap_or_default();
        let transition = p.get("LifecycleTransition").cloned().unwrap_or_default();
        if transition != LAUNCHING && transition != TERMINATING {
            return Err(validation(format!("Invalid Lifecycle Transition {transition}")));
        }
        let hook = HookRec {
            name: name.clone(),
            transition,
            timeout: p.get("HeartbeatTimeout").and_then(|t| t.parse().ok()).unwrap_or(3600),
            default_result: p.get("DefaultResult").cloned().unwrap_or_else(|| "ABANDON".into()),
        };
        let hooks = &mut self.groups[g].hooks;
        hooks.retain(|h| h.name != name);
        hooks.push(hook);
        Ok(String::new())
    }

    /// The group and the instance's index, when `instance` waits in the named hook.
    fn waiting_in(&self, p: &Params) -> Result<(usize, usize), AwsError> {
        let g = self.group_index(p)?;
        let instance = p.get("InstanceId").cloned().unwrap_or_default();
        let hook = p.get("LifecycleHookName").cloned().unwrap_or_default();
        let group = &self.groups[g];
        let none = || validation(format!("No active Lifecycle Action found with instance ID {instance}"));
        let h = group.hooks.iter().find(|h| h.name == hook).ok_or_else(none)?;
        let wait = if h.transition == LAUNCHING {
            PENDING_WAIT
        } else {
            TERMINATING_WAIT
        };
        let i = group
            .instances
            .iter()
            .position(|(id, s)| *id == instance && s == wait)
            .ok_or_else(none)?;
        Ok((g, i))
    }

    fn complete_action(&mut self, p: &Params) -> Answer {
        let (g, i) = self.waiting_in(p)?;
        let result = p.get("LifecycleActionResult").cloned().unwrap_or_default();
        if result != "CONTINUE" && result != "ABANDON" {
            return Err(validation(format!("Invalid LifecycleActionResult {result}")));
        }
        let (instance, state) = self.groups[g].instances[i].clone();
        if state == PENDING_WAIT && result == "CONTINUE" {
            self.groups[g].instances[i].1 = "InService".into();
        } else {
            // An abandoned launch is terminated (the group would launch a replacement); a
            // termination proceeds either way.
            self.remove_worker(g, &instance);
        }
        Ok(String::new())
    }

    fn lifecycle_heartbeat(&mut self, p: &Params) -> Answer {
        self.waiting_in(p)?;
        Ok(String::new())
    }
}

fn group_xml(g: &GroupRec) -> String {
    let mut instances = String::new();
    for (id, state) in &g.instances {
        instances.push_str(&format!(
            "<member><InstanceId>{id}</InstanceId><InstanceType>t3.micro</InstanceType><AvailabilityZone>us-east-1a</AvailabilityZone><LifecycleState>{state}</LifecycleState><HealthStatus>Healthy</HealthStatus><ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>"
        ));
    }
    let mut tags = String::new();
    for (k, v) in &g.tags {
        tags.push_str(&format!(
            "<member><ResourceId>{}</ResourceId><ResourceType>auto-scaling-group</ResourceType><Key>{}</Key><Value>{}</Value><PropagateAtLaunch>true</PropagateAtLaunch></member>",
            esc(&g.name),
            esc(k),
            esc(v)
        ));
    }
    format!(
        "<member><AutoScalingGroupName>{name}</AutoScalingGroupName><AutoScalingGroupARN>arn:aws:autoscaling:{REGION}:{ACCOUNT_ID}:autoScalingGroup:0d9c8a41-1b2e-4f3a-9c5d-7e6f8a9b0c1d:autoScalingGroupName/{name}</AutoScalingGroupARN><MinSize>{d}</MinSize><MaxSize>{d}</MaxSize><DesiredCapacity>{d}</DesiredCapacity><DefaultCooldown>300</DefaultCooldown><AvailabilityZones><member>us-east-1a</member></AvailabilityZones><HealthCheckType>EC2</HealthCheckType><HealthCheckGracePeriod>0</HealthCheckGracePeriod><Instances>{instances}</Instances><CreatedTime>2026-01-01T00:00:00.000Z</CreatedTime><Tags>{tags}</Tags><NewInstancesProtectedFromScaleIn>false</NewInstancesProtectedFromScaleIn></member>",
        name = esc(&g.name),
        d = g.desired,
    )
}

/// A stable number from a name (instance ids of launched workers).
fn fnv_str(s: &str) -> u64 {
    s.bytes()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}
