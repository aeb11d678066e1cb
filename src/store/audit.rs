//! The audit log: every command, allowed or denied, with its outcome.

use super::sql::params;
use super::{now, Context, Store, StoreResult};

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

impl Store {
    /// Records one command. A job id that names no job (`job 999`) is kept out of the
    /// reference, so the record is never lost to the foreign key.
    #[allow(clippy::too_many_arguments)]
    pub fn audit(
        &self,
        platform: &str,
        user_id: &str,
        user_name: &str,
        channel: &str,
        command: &str,
        outcome: &str,
        job_id: Option<u64>,
    ) -> StoreResult<()> {
        self.with(|db| {
            db.execute(
                "INSERT INTO audit (at, platform, user_id, user_name, channel, command, outcome, job_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, (SELECT id FROM jobs WHERE id = ?8))",
                params![
                    now(),
                    platform,
                    user_id,
                    user_name,
                    channel,
                    command,
                    outcome,
                    job_id.map(|j| j as i64)
                ],
            )
        })
        .ctx("write audit record")?;
        Ok(())
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
