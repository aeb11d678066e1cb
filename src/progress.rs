//! Typed progress events that the engine emits while it works. The engine never prints or
//! talks to chat: the CLI, the console and the chat reporter each render these events their
//! own way.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;

/// One thing that happened during an operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Progress {
    /// A new step of the operation began (e.g. "bake image", "create stack").
    Step { name: String, detail: String },
    /// Something worth telling that is not an error.
    Info { message: String },
    /// A CloudFormation stack event, new since the last poll, in chronological order.
    StackEvent(StackEvent),
    /// Resources finished so far over the resources the operation touches.
    StackProgress { stack: String, done: usize, total: usize },
    /// One entry of a change set (update preview).
    Change(ResourceChange),
    /// A playbook run event (task started, host result, playbook finished).
    Playbook(PlaybookEvent),
}

/// A stack event as the watcher reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackEvent {
    pub event_id: String,
    pub stack_name: String,
    pub stack_id: String,
    pub timestamp: Option<DateTime<Utc>>,
    pub logical_id: String,
    pub physical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: Option<String>,
}

impl StackEvent {
    /// Whether the event is about the stack itself rather than one of its resources.
    pub fn is_stack_itself(&self) -> bool {
        self.resource_type == "AWS::CloudFormation::Stack" && self.logical_id == self.stack_name
    }
}

/// One proposed change from a change set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceChange {
    pub action: String,
    pub logical_id: String,
    pub resource_type: String,
    /// "True", "False" or "Conditional" as CloudFormation reports it, when the action is Modify.
    pub replacement: Option<String>,
}

impl ResourceChange {
    /// Removals and replacements first: they are what a reader must not miss.
    pub fn danger_rank(&self) -> u8 {
        match (self.action.as_str(), self.replacement.as_deref()) {
            ("Remove", _) => 0,
            (_, Some("True")) => 1,
            (_, Some("Conditional")) => 2,
            ("Add", _) => 4,
            _ => 3,
        }
    }
}

/// What a playbook run reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PlaybookEvent {
    Started {
        role: String,
        hosts: usize,
    },
    Task {
        role: String,
        task: String,
    },
    HostResult {
        role: String,
        task: String,
        host: String,
        status: HostStatus,
        message: Option<String>,
    },
    Finished {
        role: String,
        ok: bool,
        tasks: usize,
        changed: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    Ok,
    Changed,
    Failed,
    Unreachable,
    Skipped,
}

/// The sending end handed to engine operations. Sending never fails the operation: if nobody
/// listens any more (the chat message was deleted, the CLI is exiting) the work goes on.
#[derive(Debug, Clone)]
pub struct ProgressTx {
    tx: Option<mpsc::UnboundedSender<Progress>>,
}

impl ProgressTx {
    pub fn channel() -> (ProgressTx, mpsc::UnboundedReceiver<Progress>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ProgressTx { tx: Some(tx) }, rx)
    }

    /// A sink that drops everything (for callers that only want the result).
    pub fn discard() -> ProgressTx {
        ProgressTx { tx: None }
    }

    pub fn emit(&self, p: Progress) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(p);
        }
    }

    pub fn step(&self, name: &str, detail: impl Into<String>) {
        self.emit(Progress::Step {
            name: name.to_string(),
            detail: detail.into(),
        });
    }

    pub fn info(&self, message: impl Into<String>) {
        self.emit(Progress::Info {
            message: message.into(),
        });
    }
}

/// A text progress bar of `width` cells: `fill` for done, `empty` for the rest.
pub fn bar(done: usize, total: usize, width: usize, fill: &str, empty: &str) -> String {
    let filled = (done.min(total) * width).checked_div(total).unwrap_or(0);
    format!("{}{}", fill.repeat(filled), empty.repeat(width - filled))
}

/// Renders an event as one plain line, for terminals that are not interactive and for logs.
/// Returns `None` for events that only feed the progress bar.
pub fn plain_line(p: &Progress) -> Option<String> {
    Some(match p {
        Progress::Step { name, detail } if detail.is_empty() => format!("==> {name}"),
        Progress::Step { name, detail } => format!("==> {name}: {detail}"),
        Progress::Info { message } => format!("    {message}"),
        Progress::StackEvent(e) => {
            let when = e
                .timestamp
                .map(|t| t.format("%H:%M:%S").to_string())
                .unwrap_or_default();
            let reason = e.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            format!(
                "    {when} {:<28} {:<36} {}{reason}",
                e.status, e.logical_id, e.resource_type
            )
        }
        Progress::StackProgress { .. } => return None,
        Progress::Change(c) => {
            let repl = match c.replacement.as_deref() {
                Some("True") => " (REPLACEMENT)",
                Some("Conditional") => " (may replace)",
                _ => "",
            };
            format!("    change: {} {} {}{repl}", c.action, c.logical_id, c.resource_type)
        }
        Progress::Playbook(PlaybookEvent::Started { role, hosts }) => {
            format!("    playbook {role}.yml on {hosts} host(s)")
        }
        Progress::Playbook(PlaybookEvent::Task { role, task }) => format!("    [{role}] {task}"),
        Progress::Playbook(PlaybookEvent::HostResult {
            host, status, message, ..
        }) => {
            let msg = message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            match status {
                HostStatus::Failed | HostStatus::Unreachable => format!("      {host}: {status:?}{msg}"),
                HostStatus::Skipped => return None,
                _ => format!("      {host}: {status:?}"),
            }
        }
        Progress::Playbook(PlaybookEvent::Finished {
            role,
            ok,
            tasks,
            changed,
        }) => {
            let verdict = if *ok { "ok" } else { "FAILED" };
            format!("    playbook {role}.yml {verdict}: {tasks} task(s), {changed} change(s)")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_and_replacements_rank_first() {
        let c = |action: &str, repl: Option<&str>| ResourceChange {
            action: action.into(),
            logical_id: "X".into(),
            resource_type: "T".into(),
            replacement: repl.map(str::to_string),
        };
        let mut v = [
            c("Add", None),
            c("Modify", Some("False")),
            c("Remove", None),
            c("Modify", Some("True")),
        ];
        v.sort_by_key(ResourceChange::danger_rank);
        assert_eq!(v[0].action, "Remove");
        assert_eq!(v[1].replacement.as_deref(), Some("True"));
        assert_eq!(v[3].action, "Add");
    }
}
