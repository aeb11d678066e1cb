//! Group commit for a burst of commands from one source (lines piped into the console): the
//! records of read-only commands are gathered while the burst is handled and written in one
//! transaction before any of its replies is shown.
//!
//! Nothing a user saw answered goes unrecorded: the replies of a burst are released only after
//! its records are in the database. A record that must be on the disk at once (a job started,
//! an approval) first writes the records gathered before it, so the log keeps the order in
//! which the commands came.

use std::cell::RefCell;
use std::future::Future;

use crate::store::{AuditEntry, Durability, Store};

tokio::task_local! {
    static GATHERED: RefCell<Vec<AuditEntry>>;
}

/// Runs `handle` (a burst's commands, one after another) with its read-only records gathered,
/// then writes them in one transaction.
pub async fn gathering<T>(store: &Store, handle: impl Future<Output = T>) -> T {
    let (out, gathered) = GATHERED
        .scope(RefCell::new(Vec::new()), async {
            let out = handle.await;
            (out, GATHERED.with(|g| std::mem::take(&mut *g.borrow_mut())))
        })
        .await;
    write(store, Durability::Written, &gathered);
    out
}

/// Records `entry`: gathered when a burst is being handled and `durability` allows it,
/// otherwise written now, after whatever the burst gathered before it.
pub fn record(store: &Store, durability: Durability, entry: AuditEntry) {
    let mut entry = Some(entry);
    let earlier = GATHERED.try_with(|g| {
        let mut g = g.borrow_mut();
        match durability {
            Durability::Written => {
                g.extend(entry.take());
                Vec::new()
            }
            Durability::Synced => std::mem::take(&mut *g),
        }
    });
    if let Some(entry) = entry {
        let mut all = earlier.unwrap_or_default();
        all.push(entry);
        write(store, durability, &all);
    }
}

fn write(store: &Store, durability: Durability, entries: &[AuditEntry]) {
    if let Err(e) = store.audit_all(durability, entries) {
        tracing::error!(error = %e, records = entries.len(), "cannot write the audit log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permissions::Identity;

    fn entry(outcome: &str) -> AuditEntry {
        AuditEntry::by(
            &Identity::named(crate::address::Surface::CONSOLE, "alice"),
            "console:alice",
            "cmd",
            outcome,
            None,
        )
    }

    fn outcomes(store: &Store) -> Vec<String> {
        store
            .audit_log(50)
            .unwrap()
            .into_iter()
            .rev()
            .map(|r| r.outcome)
            .collect()
    }

    #[tokio::test]
    async fn a_burst_writes_its_reads_at_the_end_and_a_synced_record_keeps_the_order() {
        let store = Store::in_memory().unwrap();
        gathering(&store, async {
            record(&store, Durability::Written, entry("read 1"));
            record(&store, Durability::Written, entry("read 2"));
            assert!(outcomes(&store).is_empty(), "gathered, not written yet");
            // A job started: on the disk now, after the reads that came before it.
            record(&store, Durability::Synced, entry("job started"));
            assert_eq!(outcomes(&store), ["read 1", "read 2", "job started"]);
            record(&store, Durability::Written, entry("read 3"));
        })
        .await;
        assert_eq!(outcomes(&store), ["read 1", "read 2", "job started", "read 3"]);
    }

    #[tokio::test]
    async fn outside_a_burst_every_record_is_written_at_once() {
        let store = Store::in_memory().unwrap();
        record(&store, Durability::Written, entry("read"));
        record(&store, Durability::Synced, entry("job"));
        assert_eq!(outcomes(&store), ["read", "job"]);
    }
}
