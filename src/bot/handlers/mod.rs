//! The command handlers, one family per file (as rust-lang/bors keeps `handlers/<command>.rs`):
//! each `command_<verb>` checks what only it can check, acts, writes its audit record and
//! returns the reply, built in [`crate::bot::messages`]. The dispatcher only routes to them.
//! Approving and denying live with the rest of the approval flow in `bot::approval_flow`.

pub(crate) mod env;
pub(crate) mod hold;
pub(crate) mod info;
pub(crate) mod jobs;
pub(crate) mod web;

use crate::bot::audit_batch;
use crate::bot::messages;
use crate::bot::port::ChatEvent;
use crate::bot::Inner;
use crate::names::shorten;
use crate::store::{AuditEntry, Durability};

/// The most characters of a command the audit log keeps (escaped like a quote in a reply).
const AUDIT_MAX_CHARS: usize = 500;

/// Records a command that starts, changes or refuses work, on the disk before the reply.
pub(crate) fn audit(inner: &Inner, ev: &ChatEvent, outcome: &str, job: Option<u64>) {
    audit_as(inner, ev, outcome, job, Durability::Synced);
}

/// Records a command that only read something (or was refused before anything was looked
/// up): safe from a crash of this process, on the disk with the next synced commit.
pub(crate) fn audit_read(inner: &Inner, ev: &ChatEvent, outcome: &str, job: Option<u64>) {
    audit_as(inner, ev, outcome, job, Durability::Written);
}

fn audit_as(inner: &Inner, ev: &ChatEvent, outcome: &str, job: Option<u64>, durability: Durability) {
    let command = shorten(&inner.engine.redactor.redact(&ev.text), AUDIT_MAX_CHARS);
    let entry = AuditEntry::by(&ev.identity, &ev.channel, &command, outcome, job);
    audit_batch::record(&inner.store, durability, entry);
}

pub(crate) fn internal(inner: &Inner, ev: &ChatEvent, detail: &str) -> String {
    tracing::error!(error = %inner.engine.redactor.redact(detail), "internal error handling a command");
    audit(inner, ev, "error: internal", None);
    messages::internal_error()
}
