//! The audit log: every command, allowed or denied, with its outcome.

use rusqlite::params;

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
        self.conn()
            .execute(
                "INSERT INTO audit (at, platform, user_id, user_name, channel, command, outcome, job_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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
            .ctx("write audit record")?;
        Ok(())
    }

    /// The newest records first.
    pub fn audit_log(&self, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, at, platform, user_id, user_name, channel, command, outcome, job_id
                 FROM audit ORDER BY id DESC LIMIT ?1",
            )
            .ctx("read audit log")?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(AuditRecord {
                    id: r.get::<_, i64>(0)? as u64,
                    at: r.get(1)?,
                    platform: r.get(2)?,
                    user_id: r.get(3)?,
                    user_name: r.get(4)?,
                    channel: r.get(5)?,
                    command: r.get(6)?,
                    outcome: r.get(7)?,
                    job_id: r.get::<_, Option<i64>>(8)?.map(|j| j as u64),
                })
            })
            .ctx("read audit log")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("read audit log")
    }
}
