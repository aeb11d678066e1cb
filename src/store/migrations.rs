//! Schema migrations, applied in order and recorded in `PRAGMA user_version`. Never edit a
//! migration that has shipped: add a new one.

use rusqlite::Connection;

use super::{Context, StoreResult};

const MIGRATIONS: &[&str] = &[
    // 1: jobs and the audit log.
    "CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        requester_id TEXT NOT NULL,
        requester_name TEXT NOT NULL,
        platform TEXT NOT NULL,
        channel TEXT NOT NULL,
        env TEXT NOT NULL,
        action TEXT NOT NULL,
        args TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        status_message_id TEXT,
        result TEXT,
        log_path TEXT
    );
    CREATE INDEX jobs_by_state ON jobs(state);
    CREATE INDEX jobs_by_env ON jobs(env, id);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        platform TEXT NOT NULL,
        user_id TEXT NOT NULL,
        user_name TEXT NOT NULL,
        channel TEXT NOT NULL,
        command TEXT NOT NULL,
        outcome TEXT NOT NULL,
        job_id INTEGER REFERENCES jobs(id)
    );",
    // 2: approvals and schedule runs.
    "CREATE TABLE approvals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        digest TEXT NOT NULL,
        plan TEXT NOT NULL,
        needed INTEGER NOT NULL,
        state TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        message_id TEXT,
        decided_at TEXT
    );
    CREATE TABLE approval_votes (
        approval_id INTEGER NOT NULL REFERENCES approvals(id),
        user_id TEXT NOT NULL,
        user_name TEXT NOT NULL,
        decision TEXT NOT NULL,
        reason TEXT,
        at TEXT NOT NULL,
        PRIMARY KEY (approval_id, user_id)
    );
    CREATE TABLE schedule_runs (
        schedule TEXT NOT NULL,
        due_at TEXT NOT NULL,
        ran_at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        PRIMARY KEY (schedule, due_at)
    );",
];

pub fn apply(conn: &mut Connection) -> StoreResult<()> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx("read schema version")?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let tx = conn.transaction().ctx("begin migration")?;
        tx.execute_batch(sql).ctx(&format!("migration {version}"))?;
        tx.pragma_update(None, "user_version", version)
            .ctx("record schema version")?;
        tx.commit().ctx("commit migration")?;
    }
    Ok(())
}

#[cfg(test)]
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_in_order() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, latest());
    }
}
