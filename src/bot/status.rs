//! The status message of a job: environment, action, requester, elapsed time, a progress bar
//! (stack resources, playbook tasks), the latest events; at the end a summary, or the failure
//! with its root cause on the first line.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::engine::Summary;
use crate::progress::{HostStatus, PlaybookEvent, Progress};

/// How many recent lines the message shows.
const RECENT: usize = 5;
/// Discord's message limit is 2000 characters; stay well under it.
const MAX_LEN: usize = 1900;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Succeeded(Summary),
    Failed(String),
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct StatusModel {
    pub job_id: u64,
    pub env: String,
    pub action: String,
    pub requester: String,
    pub started: DateTime<Utc>,
    step: Option<String>,
    stack: Option<(String, usize, usize)>,
    playbook: Option<(String, usize, String)>,
    recent: VecDeque<String>,
    ending: Option<(Ending, DateTime<Utc>)>,
    notes: Vec<String>,
}

/// `1h 02m`, `3m 05s`, `12s`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn bar(done: usize, total: usize) -> String {
    format!("`[{}]` {done}/{total}", crate::progress::bar(done, total, 20, "█", "░"))
}

impl StatusModel {
    pub fn new(job_id: u64, env: &str, action: &str, requester: &str, started: DateTime<Utc>) -> StatusModel {
        StatusModel {
            job_id,
            env: env.into(),
            action: action.into(),
            requester: requester.into(),
            started,
            step: None,
            stack: None,
            playbook: None,
            recent: VecDeque::new(),
            ending: None,
            notes: Vec::new(),
        }
    }

    /// A line shown above the progress (e.g. "resumed after a restart").
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    fn push_recent(&mut self, line: String) {
        self.recent.push_back(line);
        while self.recent.len() > RECENT {
            self.recent.pop_front();
        }
    }

    /// Folds one progress event into the model. Returns whether the rendering changed enough
    /// to be worth an edit (every event does, except skipped hosts).
    pub fn apply(&mut self, p: &Progress) -> bool {
        match p {
            Progress::Step { name, detail } => {
                self.step = Some(if detail.is_empty() {
                    name.clone()
                } else {
                    format!("{name}: {detail}")
                });
            }
            Progress::Info { message } => self.push_recent(message.clone()),
            Progress::StackEvent(e) => {
                let when = e
                    .timestamp
                    .map(|t| t.format("%H:%M:%S ").to_string())
                    .unwrap_or_default();
                let reason = match (&e.reason, e.status.ends_with("FAILED")) {
                    (Some(r), true) => format!(": {r}"),
                    _ => String::new(),
                };
                self.push_recent(format!("{when}{} {}{reason}", e.status, e.logical_id));
            }
            Progress::StackProgress { stack, done, total } => self.stack = Some((stack.clone(), *done, *total)),
            Progress::Change(c) => {
                self.push_recent(format!("change: {} {} {}", c.action, c.logical_id, c.resource_type))
            }
            Progress::Playbook(PlaybookEvent::Started { role, .. }) => {
                self.playbook = Some((role.clone(), 0, String::new()))
            }
            Progress::Playbook(PlaybookEvent::Task { role, task }) => {
                let n = self
                    .playbook
                    .as_ref()
                    .filter(|(r, _, _)| r == role)
                    .map_or(0, |(_, n, _)| *n)
                    + 1;
                self.playbook = Some((role.clone(), n, task.clone()));
            }
            Progress::Playbook(PlaybookEvent::HostResult {
                host,
                status,
                message,
                task,
                ..
            }) => match status {
                HostStatus::Failed | HostStatus::Unreachable => {
                    let msg = message.as_deref().unwrap_or("");
                    self.push_recent(format!("{host}: {task} failed: {msg}"));
                }
                HostStatus::Skipped => return false,
                _ => return false,
            },
            Progress::Playbook(PlaybookEvent::Finished {
                role,
                ok,
                tasks,
                changed,
            }) => {
                let verdict = if *ok { "ok" } else { "failed" };
                self.push_recent(format!("{role}.yml {verdict}: {tasks} tasks, {changed} changed"));
            }
        }
        true
    }

    pub fn finish(&mut self, ending: Ending, at: DateTime<Utc>) {
        self.ending = Some((ending, at));
    }

    pub fn is_finished(&self) -> bool {
        self.ending.is_some()
    }

    /// The message text as of `now`.
    pub fn render(&self, now: DateTime<Utc>) -> String {
        let head = format!(
            "**{} · {}** · job #{} · {}",
            self.env, self.action, self.job_id, self.requester
        );
        let mut lines: Vec<String> = Vec::new();
        match &self.ending {
            Some((Ending::Failed(cause), at)) => {
                // The root cause leads: it is what the reader needs first.
                lines.push(format!("❌ {cause}"));
                lines.push(format!(
                    "{head} · failed after {}",
                    duration((*at - self.started).to_std().unwrap_or_default())
                ));
            }
            Some((Ending::Cancelled, at)) => {
                lines.push(format!(
                    "🛑 {head} · cancelled after {}",
                    duration((*at - self.started).to_std().unwrap_or_default())
                ));
            }
            Some((Ending::Succeeded(s), at)) => {
                lines.push(format!(
                    "✅ {head} · done in {}",
                    duration((*at - self.started).to_std().unwrap_or_default())
                ));
                lines.push(s.headline.clone());
                lines.extend(s.details.iter().map(|d| format!("• {d}")));
                lines.extend(s.outputs.iter().map(|(k, v)| format!("• {k}: {v}")));
                if !s.hosts.is_empty() {
                    lines.push(format!("• hosts: {}", s.hosts.join(", ")));
                }
                return clip(lines.join("\n"));
            }
            None => {
                lines.push(format!(
                    "⏳ {head} · {}",
                    duration((now - self.started).to_std().unwrap_or_default())
                ));
            }
        }
        lines.extend(self.notes.iter().cloned());
        if let Some(step) = &self.step {
            lines.push(format!("▸ {step}"));
        }
        if let Some((stack, done, total)) = &self.stack {
            lines.push(format!("{} resources of {stack}", bar(*done, *total)));
        }
        if let Some((role, n, task)) = &self.playbook {
            lines.push(format!("▸ {role}.yml task {n}: {task}"));
        }
        if !self.recent.is_empty() {
            lines.push("```".into());
            lines.extend(self.recent.iter().cloned());
            lines.push("```".into());
        }
        clip(lines.join("\n"))
    }
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_LEN {
        let mut cut = MAX_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::StackEvent;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn running_shows_bar_step_and_events() {
        let mut m = StatusModel::new(12, "staging", "commission", "alice", t(0));
        m.apply(&Progress::Step {
            name: "create stack".into(),
            detail: "argos-staging: 19 resource(s)".into(),
        });
        m.apply(&Progress::StackProgress {
            stack: "argos-staging".into(),
            done: 9,
            total: 19,
        });
        m.apply(&Progress::StackEvent(StackEvent {
            event_id: "e".into(),
            stack_name: "argos-staging".into(),
            stack_id: "s".into(),
            timestamp: None,
            logical_id: "ApiEc2Instance".into(),
            physical_id: String::new(),
            resource_type: "AWS::EC2::Instance".into(),
            status: "CREATE_COMPLETE".into(),
            reason: None,
        }));
        let text = m.render(t(65));
        assert!(
            text.starts_with("⏳ **staging · commission** · job #12 · alice · 1m 05s"),
            "{text}"
        );
        assert!(text.contains("9/19 resources of argos-staging"), "{text}");
        assert!(text.contains("CREATE_COMPLETE ApiEc2Instance"), "{text}");
    }

    #[test]
    fn a_failure_leads_with_the_root_cause() {
        let mut m = StatusModel::new(3, "staging", "deploy", "bob", t(0));
        m.finish(
            Ending::Failed("task 'Migrate' failed on host api-1: relation does not exist".into()),
            t(30),
        );
        let text = m.render(t(31));
        assert!(text.starts_with("❌ task 'Migrate' failed on host api-1"), "{text}");
        assert!(text.contains("failed after 30s"));
    }

    #[test]
    fn long_messages_are_clipped() {
        let mut m = StatusModel::new(1, "e", "a", "r", t(0));
        m.finish(Ending::Failed("x".repeat(5000)), t(1));
        assert!(m.render(t(1)).len() <= MAX_LEN + 3);
    }
}
