//! The embedded backend: one SQLite file that several processes on one host may open at
//! once (the bot, a console, the CLI). WAL with `synchronous=FULL`, a busy timeout so writers
//! wait for each other instead of failing, and transactions that take the write lock up front
//! (`BEGIN IMMEDIATE`, see [`super::Store::tx`]), so a read-then-write inside one cannot be overtaken by another process.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use super::sql::{Row, Sql, Value};
use super::{DbError, StoreError, StoreResult};

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

fn err(context: &str, e: rusqlite::Error) -> StoreError {
    StoreError::new(context, DbError::Sqlite(e))
}

pub(crate) fn open(path: &Path) -> StoreResult<Connection> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let conn = Connection::open(path).map_err(|e| err(&format!("open {}", path.display()), e))?;
    configure(&conn)?;
    Ok(conn)
}

pub(crate) fn open_in_memory() -> StoreResult<Connection> {
    let conn = Connection::open_in_memory().map_err(|e| err("open in-memory database", e))?;
    configure(&conn)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> StoreResult<()> {
    // The busy timeout first: every later step may meet a second process opening the file.
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| err("set busy timeout", e))?;
    enable_wal(conn)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| err("set synchronous", e))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| err("enable foreign keys", e))?;
    Ok(())
}

/// Switching to WAL needs a moment of exclusive access, and SQLite answers `database is
/// locked` at once (without the busy handler) when a second process is doing the same. The
/// mode is stored in the file, so once any opener has switched, the others find it done.
fn enable_wal(conn: &Connection) -> StoreResult<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(e) if is_busy(&e) && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(err("enable WAL", e)),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn bind(values: &[Value]) -> Vec<rusqlite::types::Value> {
    values
        .iter()
        .map(|v| match v {
            Value::Null => rusqlite::types::Value::Null,
            Value::Int(i) => rusqlite::types::Value::Integer(*i),
            Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
        })
        .collect()
}

fn column(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Int(f as i64),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

impl Sql for Connection {
    fn execute(&mut self, sql: &str, params: &[Value]) -> StoreResult<u64> {
        let mut stmt = self.prepare_cached(sql).map_err(|e| err("prepare", e))?;
        let n = stmt
            .execute(rusqlite::params_from_iter(bind(params)))
            .map_err(|e| err("execute", e))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>> {
        let mut stmt = self.prepare_cached(sql).map_err(|e| err("prepare", e))?;
        let width = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(bind(params)))
            .map_err(|e| err("query", e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| err("read row", e))? {
            let mut row = Vec::with_capacity(width);
            for i in 0..width {
                row.push(column(r.get_ref(i).map_err(|e| err("read column", e))?));
            }
            out.push(Row(row));
        }
        Ok(out)
    }
}

/// The schema version SQLite keeps in the file header.
pub(crate) fn user_version(conn: &mut Connection) -> StoreResult<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| err("read schema version", e))
}
