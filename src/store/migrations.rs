//! Schema migrations, applied in order, once, under a lock, so processes opening a fresh
//! database at the same moment do not race: SQLite records the version in `PRAGMA
//! user_version` (inside a `BEGIN IMMEDIATE` transaction), PostgreSQL in `argos_schema`
//! (under a transaction-scoped advisory lock). Migrations are written in SQLite's DDL and
//! translated for PostgreSQL ([`Dialect::ddl`]). Never edit a migration that has shipped: add
//! a new one.

use rusqlite::Connection;

use super::sql::{params, Dialect, Sql};
use super::{DbError, StoreError, StoreResult};

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
    // 3: shared state across processes and replicas.
    "ALTER TABLE jobs ADD COLUMN owner TEXT;
    ALTER TABLE jobs ADD COLUMN token INTEGER;
    ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN progress TEXT;
    CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        platforms TEXT NOT NULL,
        started_at TEXT NOT NULL,
        heartbeat_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        stopped INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE env_locks (
        env TEXT PRIMARY KEY,
        job_id INTEGER,
        owner TEXT,
        token INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    CREATE TABLE event_claims (
        platform TEXT NOT NULL,
        event_id TEXT NOT NULL,
        replica TEXT NOT NULL,
        claimed_ms INTEGER NOT NULL,
        PRIMARY KEY (platform, event_id)
    );
    CREATE INDEX event_claims_by_age ON event_claims(claimed_ms);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        platform TEXT NOT NULL,
        channel TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at TEXT NOT NULL,
        claimed_by TEXT,
        delivered_at TEXT,
        buttons TEXT,
        approval_job INTEGER
    );
    CREATE INDEX outbox_by_state ON outbox(delivered_at, platform);",
    // 4: a platform's global rate-limit hold, shared by the replicas using one token.
    "CREATE TABLE rate_limit_holds (
        platform TEXT PRIMARY KEY,
        until_ms INTEGER NOT NULL
    );",
    // 5: what a job deployed: the ref asked for, the commit it resolved to, the hosts it reached.
    "ALTER TABLE jobs ADD COLUMN git_ref TEXT;
    ALTER TABLE jobs ADD COLUMN sha TEXT;
    ALTER TABLE jobs ADD COLUMN hosts TEXT;
    CREATE INDEX jobs_by_env_sha ON jobs(env, sha);",
    // 6: holds and freezes (times by the database's clock, like leases), a break-glass
    // reason on the job it let through, and an outbox key that makes an announcement
    // queued by several replicas one message.
    "CREATE TABLE holds (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        env TEXT NOT NULL,
        person TEXT NOT NULL,
        holder_name TEXT NOT NULL,
        platform TEXT NOT NULL,
        channel TEXT NOT NULL,
        reason TEXT NOT NULL,
        warn INTEGER NOT NULL DEFAULT 0,
        started_ms INTEGER NOT NULL,
        ends_ms INTEGER NOT NULL,
        released_ms INTEGER,
        released_by TEXT,
        reminded INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX holds_by_env ON holds(env, released_ms);
    CREATE TABLE freezes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        envs TEXT NOT NULL,
        reason TEXT NOT NULL,
        person TEXT NOT NULL,
        by_name TEXT NOT NULL,
        starts_ms INTEGER NOT NULL,
        ends_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        ended_by TEXT
    );
    ALTER TABLE jobs ADD COLUMN person TEXT;
    ALTER TABLE jobs ADD COLUMN break_glass TEXT;
    ALTER TABLE outbox ADD COLUMN dedup TEXT;
    CREATE UNIQUE INDEX outbox_by_dedup ON outbox(dedup);",
    // 7: the web page: jobs' logs in chunks at their byte offsets (so any replica serves a
    // tail), and sign-in links and sessions, kept as SHA-256 hashes of their tokens.
    "CREATE TABLE job_logs (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        start_offset INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (job_id, start_offset)
    );
    CREATE TABLE web_links (
        token_hash TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        user_id TEXT NOT NULL,
        display_name TEXT NOT NULL,
        platform_roles TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        used_ms INTEGER
    );
    CREATE TABLE web_sessions (
        token_hash TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        user_id TEXT NOT NULL,
        display_name TEXT NOT NULL,
        platform_roles TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    CREATE INDEX web_sessions_by_expiry ON web_sessions(expires_ms);",
    // 8: drift: the last drift detection per environment: when, its state (in_sync, drifted,
    // failed), how many resources drifted, and what it found as JSON.
    "CREATE TABLE drift_results (
        env TEXT PRIMARY KEY,
        checked_at TEXT NOT NULL,
        state TEXT NOT NULL,
        drifted INTEGER NOT NULL,
        summary TEXT NOT NULL
    );",
    // 9: pushed stack events: what the queue's consumer stored, by stack and operation
    // (client request token), unique on EventBridge's event id so a redelivery drops; and the
    // one long poll per account that replicas take turns at (a lease, like env_locks).
    "CREATE TABLE stack_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        stack_id TEXT NOT NULL,
        stack_name TEXT NOT NULL,
        token TEXT NOT NULL,
        at TEXT NOT NULL,
        logical_id TEXT NOT NULL,
        physical_id TEXT NOT NULL,
        resource_type TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        stored_ms INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX stack_events_by_id ON stack_events(event_id);
    CREATE INDEX stack_events_by_stack ON stack_events(stack_id, token, seq);
    CREATE TABLE event_pollers (
        account TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    );",
];

fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(';').map(str::trim).filter(|s| !s.is_empty())
}

/// Applies what is missing, holding SQLite's write lock throughout: a second process that
/// opens the file meanwhile waits, then finds the schema current.
pub fn apply_sqlite(conn: &mut Connection) -> StoreResult<()> {
    let fail = |what: &str, e: rusqlite::Error| StoreError::new(what, DbError::Sqlite(e));
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| fail("begin migration", e))?;
    let result = (|| {
        let current: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| fail("read schema version", e))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let version = i as i64 + 1;
            conn.execute_batch(sql)
                .map_err(|e| fail(&format!("migration {version}"), e))?;
            conn.execute_batch(&format!("PRAGMA user_version = {version}"))
                .map_err(|e| fail("record schema version", e))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT").map_err(|e| fail("commit migration", e)),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Any number with which no other program locks this database.
const MIGRATION_LOCK: i64 = 0x4152_474f_5301;

/// Applies what is missing in one transaction under an advisory lock: replicas that start
/// together migrate once, the others wait and find the schema current.
pub fn apply_postgres(db: &mut dyn Sql) -> StoreResult<()> {
    db.execute("BEGIN", &[])?;
    let result = (|| {
        // pg_advisory_xact_lock returns void, which has no row type of its own.
        db.query(
            "SELECT 1 FROM (SELECT pg_advisory_xact_lock(?1)) AS held",
            params![MIGRATION_LOCK],
        )?;
        db.execute(
            "CREATE TABLE IF NOT EXISTS argos_schema (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
            &[],
        )?;
        let current = db
            .query_opt("SELECT COALESCE(MAX(version), 0) FROM argos_schema", &[])?
            .map(|r| r.int(0))
            .unwrap_or(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let version = i as i64 + 1;
            for statement in statements(&Dialect::Postgres.ddl(sql)) {
                db.execute(statement, &[]).map_err(|e| StoreError {
                    context: format!("migration {version}"),
                    source: e.source,
                })?;
            }
            db.execute(
                "INSERT INTO argos_schema (version, applied_at) VALUES (?1, ?2)",
                params![version, super::now()],
            )?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => db.execute("COMMIT", &[]).map(|_| ()),
        Err(e) => {
            let _ = db.execute("ROLLBACK", &[]);
            Err(e)
        }
    }
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
        apply_sqlite(&mut conn).unwrap();
        apply_sqlite(&mut conn).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, latest());
    }

    #[test]
    fn every_migration_translates_for_postgres() {
        for sql in MIGRATIONS {
            let pg = Dialect::Postgres.ddl(sql);
            assert!(!pg.contains("AUTOINCREMENT") && !pg.contains("INTEGER"), "{pg}");
            assert!(statements(&pg).count() >= 1);
        }
    }
}
