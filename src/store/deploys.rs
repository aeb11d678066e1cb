//! What ran where: the jobs that deployed a commit, as `history`, `envs`, `status` and a
//! rollback read them. A deploy is a job row with its ref, commit and hosts filled in (see
//! `jobs::insert_row`), so the record of a deploy is written in the same transaction as the job.

use super::jobs::{from_row, COLUMNS};
use super::sql::params;
use super::{Context, JobRecord, JobState, Store, StoreResult};

impl Store {
    /// The newest `limit` deploys of `env` (any result, running ones included), newest first.
    pub fn deploys(&self, env: &str, limit: usize) -> StoreResult<Vec<JobRecord>> {
        self.with(|db| {
            let rows = db.query(
                &format!("SELECT {COLUMNS} FROM jobs WHERE env = ?1 AND sha IS NOT NULL ORDER BY id DESC LIMIT ?2"),
                params![env, limit as i64],
            )?;
            Ok(rows.iter().map(from_row).collect())
        })
        .ctx("list deploys")
    }

    /// The successful deploys of `env`, newest first (one job runs on an environment at a
    /// time, so the order of ids is the order they finished in).
    pub fn good_deploys(&self, env: &str, limit: usize) -> StoreResult<Vec<JobRecord>> {
        self.with(|db| {
            let rows = db.query(
                &format!(
                    "SELECT {COLUMNS} FROM jobs WHERE env = ?1 AND sha IS NOT NULL AND state = ?2
                     ORDER BY id DESC LIMIT ?3"
                ),
                params![env, JobState::Succeeded.as_str(), limit as i64],
            )?;
            Ok(rows.iter().map(from_row).collect())
        })
        .ctx("list deploys")
    }

    /// Records the hosts a deploy configured.
    pub fn set_job_hosts(&self, id: u64, hosts: &[String]) -> StoreResult<()> {
        self.with(|db| db.execute("UPDATE jobs SET hosts = ?2 WHERE id = ?1", params![id, hosts.join(",")]))
            .ctx("record a deploy's hosts")?;
        Ok(())
    }
}
