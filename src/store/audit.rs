//! The audit log: every command, allowed or denied, with its outcome.

use super::sql::params;
use super::{now, Context, Store, StoreResult};
use crate::permissions::Identity;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: u64,
    pub at: String,
    pub platform: String,
    pub user_id: String,
    pub user_name: String,
    pub channel: String,
    pub command: String,
    pub outcome: String,
    pub job_id: Option<u64>,
}

/// How far a record must have gone before the write returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On the disk (fsynced): records of commands that start, change or refuse work.
    Synced,
    /// In the database's log, safe from a crash of this process, on the disk with the next
    /// synced commit: records of commands that only read (whoami, help, jobs, status) and of
    /// refusals before anything was looked up. Waiting for the disk (0.2-0.4 ms here) would be
    /// most of what such a command costs.
    Written,
}

/// One record to write, taken when the command was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: String,
    pub platform: String,
    pub user_id: String,
    pub user_name: String,
    pub channel: String,
    pub command: String,
    pub outcome: String,
    pub job_id: Option<u64>,
}

impl AuditEntry {
    /// What a person asked for on a channel, and how it ended; stamped now.
    pub fn by(who: &Identity, channel: &str, command: &str, outcome: &str, job_id: Option<u64>) -> AuditEntry {
        AuditEntry {
            at: now(),
            platform: who.platform.as_str().to_string(),
            user_id: who.user_id.clone(),
            user_name: who.display_name.clone(),
            channel: channel.to_string(),
            command: command.to_string(),
            outcome: outcome.to_string(),
            job_id,
        }
    }

    /// What the bot did of its own accord, no person asking (an approval expiring or voided,
    /// a scheduled report, a shutdown): `source` says what acted (`bot`, `schedule`), `name`
    /// which one (`argos`, the schedule's name); stamped now.
    pub fn system(
        source: &str,
        name: &str,
        channel: &str,
        command: &str,
        outcome: &str,
        job_id: Option<u64>,
    ) -> AuditEntry {
        AuditEntry {
            at: now(),
            platform: source.to_string(),
            user_id: source.to_string(),
            user_name: name.to_string(),
            channel: channel.to_string(),
            command: command.to_string(),
            outcome: outcome.to_string(),
            job_id,
        }
    }
}

impl Store {
    /// Records one entry, on the disk before it returns.
    pub fn audit(&self, entry: AuditEntry) -> StoreResult<()> {
        self.audit_all(Durability::Synced, std::slice::from_ref(&entry))
    }

    /// Records several commands in one transaction, in order. A job id that names no job
    /// (`job 999`) is kept out of the reference, so the record is never lost to the foreign key.
    pub fn audit_all(&self, durability: Durability, entries: &[AuditEntry]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let insert = |db: &mut dyn super::sql::Sql| {
            for e in entries {
                db.execute(
                    "INSERT INTO audit (at, platform, user_id, user_name, channel, command, outcome, job_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, (SELECT id FROM jobs WHERE id = ?8))",
                    params![
                        e.at.as_str(),
                        e.platform.as_str(),
                        e.user_id.as_str(),
                        e.user_name.as_str(),
                        e.channel.as_str(),
                        e.command.as_str(),
                        e.outcome.as_str(),
                        e.job_id.map(|j| j as i64)
                    ],
                )?;
            }
            Ok(())
        };
        match durability {
            Durability::Synced => self.tx(insert),
            Durability::Written => self.tx_unsynced(insert),
        }
        .ctx("write audit record")
    }

    /// The newest records first.
    pub fn audit_log(&self, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        self.with(|db| {
            let rows = db.query(
                "SELECT id, at, platform, user_id, user_name, channel, command, outcome, job_id
                 FROM audit ORDER BY id DESC LIMIT ?1",
                params![limit as i64],
            )?;
            Ok(rows
                .iter()
                .map(|r| AuditRecord {
                    id: r.int(0) as u64,
                    at: r.text(1),
                    platform: r.text(2),
                    user_id: r.text(3),
                    user_name: r.text(4),
                    channel: r.text(5),
                    command: r.text(6),
                    outcome: r.text(7),
                    job_id: r.opt_int(8).map(|j| j as u64),
                })
                .collect())
        })
        .ctx("read audit log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(outcome: &str) -> AuditEntry {
        AuditEntry::by(
            &Identity::named(crate::address::Surface::CONSOLE, "alice"),
            "console:alice",
            "whoami",
            outcome,
            None,
        )
    }

    fn synchronous(store: &Store) -> i64 {
        store
            .with(|db| db.query("PRAGMA synchronous", &[]))
            .unwrap()
            .first()
            .map(|r| r.int(0))
            .unwrap_or(-1)
    }

    #[test]
    fn a_batch_is_written_in_order_and_the_connection_stays_fully_synced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("argos.db")).unwrap();
        assert_eq!(synchronous(&store), 2, "FULL to begin with");
        let batch: Vec<_> = (0..5).map(|i| entry(&format!("ok {i}"))).collect();
        store.audit_all(Durability::Written, &batch).unwrap();
        // The relaxed setting is for that commit only: the next job or lock is fsynced.
        assert_eq!(synchronous(&store), 2, "back to FULL");
        store
            .audit(AuditEntry::by(
                &Identity::named(crate::address::Surface::CONSOLE, "bob"),
                "c",
                "jobs",
                "ok",
                None,
            ))
            .unwrap();
        let outcomes: Vec<_> = store
            .audit_log(10)
            .unwrap()
            .into_iter()
            .rev()
            .map(|r| r.outcome)
            .collect();
        assert_eq!(outcomes, ["ok 0", "ok 1", "ok 2", "ok 3", "ok 4", "ok"]);
        // A second connection (another process) sees them all: they are committed.
        let other = Store::open(&dir.path().join("argos.db")).unwrap();
        assert_eq!(other.audit_log(10).unwrap().len(), 6);
    }

    #[test]
    fn a_failed_batch_writes_nothing_and_restores_the_setting() {
        let store = Store::in_memory().unwrap();
        store.with(|db| db.execute("DROP TABLE audit", &[])).unwrap();
        let err = store.audit_all(Durability::Written, &[entry("ok")]).unwrap_err();
        assert!(err.to_string().contains("write audit record"), "{err}");
        assert_eq!(synchronous(&store), 2);
    }
}
