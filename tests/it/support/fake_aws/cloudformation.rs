//! The CloudFormation actions on stacks, their events and resources, each played
//! from its script on the fake's clock.

use super::*;

impl State {
    pub(super) fn wall(&self, at: Instant) -> DateTime<Utc> {
        let offset = at.saturating_duration_since(self.instant_base);
        self.wall_base + chrono::Duration::from_std(offset).unwrap_or_default()
    }

    pub(super) fn ts(&self, at: Instant) -> String {
        self.wall(at).to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Index of the stack a `StackName` parameter designates: an ARN finds any stack (also a
    /// deleted one); a name finds the live stack with that name.
    pub(super) fn find_stack(&self, name_or_id: &str, now: Instant) -> Option<usize> {
        if name_or_id.starts_with("arn:") {
            return self.stacks.iter().position(|s| s.id == name_or_id);
        }
        self.stacks
            .iter()
            .rposition(|s| s.name == name_or_id && s.status(now).0 != "DELETE_COMPLETE")
    }

    pub(super) fn new_stack(
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

    pub(super) fn take_script(&mut self, stack: &str, op: Op) -> Option<StackScript> {
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
    pub(super) fn play(&mut self, idx: usize, script: StackScript, token: Option<String>, now: Instant) {
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

    pub(super) fn settle_instances(&mut self, now: Instant) {
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

    pub(super) fn cloudformation(&mut self, action: &str, p: &Params, now: Instant) -> Answer {
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
            "DetectStackDrift" => self.detect_stack_drift(p, now),
            "DescribeStackDriftDetectionStatus" => self.describe_stack_drift_detection_status(p, now),
            "DescribeStackResourceDrifts" => self.describe_stack_resource_drifts(p, now),
            _ => Err(err(
                "InvalidAction",
                format!("Could not find operation {action} for version 2010-05-15"),
            )),
        }
    }

    pub(super) fn live_stack(&self, p: &Params, now: Instant, describe_style: bool) -> Result<usize, AwsError> {
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

    pub(super) fn create_stack(&mut self, p: &Params, now: Instant) -> Answer {
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

    pub(super) fn update_stack(&mut self, p: &Params, now: Instant) -> Answer {
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

    pub(super) fn delete_stack(&mut self, p: &Params, now: Instant) -> Answer {
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

    pub(super) fn cancel_update_stack(&mut self, p: &Params, now: Instant) -> Answer {
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

    pub(super) fn stack_xml(&self, s: &StackRec, now: Instant) -> String {
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

    pub(super) fn describe_stacks(&mut self, p: &Params, now: Instant) -> Answer {
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

    pub(super) fn describe_stack_events(&mut self, p: &Params, now: Instant) -> Answer {
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

    pub(super) fn describe_stack_resources(&mut self, p: &Params, now: Instant) -> Answer {
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
}
