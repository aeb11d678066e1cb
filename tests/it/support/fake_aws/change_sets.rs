//! The CloudFormation change-set actions: create, describe, execute and delete, each change set
//! computed against its stack and played from its script on the fake's clock.

use super::*;

impl State {
    pub(super) fn create_change_set(&mut self, p: &Params, now: Instant) -> Answer {
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
        let revert_drift = match p.get("DeploymentMode").map(String::as_str) {
            None => false,
            Some("REVERT_DRIFT") if kind == "UPDATE" => true,
            Some("REVERT_DRIFT") => {
                return Err(validation(
                    "DeploymentMode REVERT_DRIFT is only supported for UPDATE change sets",
                ))
            }
            Some(other) => return Err(validation(format!("DeploymentMode {other} is not supported"))),
        };
        let changes = match self
            .change_set_overrides
            .get_mut(&stack_name)
            .and_then(VecDeque::pop_front)
        {
            Some(c) => c,
            None if revert_drift => self.drift_reverts(&stack_id, now),
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

    pub(super) fn find_change_set(&self, p: &Params, now: Instant) -> Result<usize, AwsError> {
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
    pub(super) fn change_set_status(&self, c: &ChangeSetRec, now: Instant) -> (String, Option<String>, String) {
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

    pub(super) fn describe_change_set(&mut self, p: &Params, now: Instant) -> Answer {
        let i = self.find_change_set(p, now)?;
        let c = &self.change_sets[i];
        let (status, reason, exec) = self.change_set_status(c, now);
        let with_values = p.get("IncludePropertyValues").is_some_and(|v| v == "true");
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
                x += "</Scope><Details>";
                for (path, before, after) in &ch.details {
                    x += "<member><Target>";
                    x += &tag("Attribute", "Properties");
                    x += &tag("Name", path.rsplit('/').next().unwrap_or(path));
                    x += &tag("Path", path);
                    x += &tag("RequiresRecreation", "Never");
                    if with_values {
                        x += &tag("BeforeValue", before);
                        x += &tag("AfterValue", after);
                    }
                    x += &tag("AttributeChangeType", "Modify");
                    x += "</Target>";
                    x += &tag("Evaluation", "Static");
                    x += &tag("ChangeSource", "DirectModification");
                    x += "</member>";
                }
                x += "</Details></ResourceChange></member>";
            }
        }
        x += "</Changes>";
        x += "<IncludeNestedStacks>false</IncludeNestedStacks>";
        Ok(x)
    }

    pub(super) fn execute_change_set(&mut self, p: &Params, now: Instant) -> Answer {
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

    pub(super) fn delete_change_set(&mut self, p: &Params, now: Instant) -> Answer {
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
}
