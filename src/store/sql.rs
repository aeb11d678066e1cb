//! The small SQL surface both backends share: parameter and column values, rows, the
//! [`Sql`] trait the store's queries are written against, and the few dialect differences
//! (placeholders, the database's own clock, DDL types).
//!
//! Queries are written once, in SQLite's `?N` placeholder style, and use `NOW_MS()` for the
//! database's clock in milliseconds since the epoch. The PostgreSQL backend rewrites both.

use std::borrow::Cow;

use super::StoreResult;

/// A parameter or column value. The store keeps to integers and text (times are RFC 3339
/// text or epoch milliseconds), which both backends read and write the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v as i64)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v as i64)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map(Into::into).unwrap_or(Value::Null)
    }
}

/// `params![a, b, c]`: a parameter list of anything that converts into a [`Value`].
macro_rules! params {
    ($($v:expr),* $(,)?) => { &[$($crate::store::sql::Value::from($v)),*][..] };
}
pub(crate) use params;

/// One result row.
#[derive(Debug, Clone, Default)]
pub struct Row(pub Vec<Value>);

impl Row {
    pub fn int(&self, i: usize) -> i64 {
        match self.0.get(i) {
            Some(Value::Int(v)) => *v,
            Some(Value::Text(t)) => t.parse().unwrap_or(0),
            _ => 0,
        }
    }
    pub fn opt_int(&self, i: usize) -> Option<i64> {
        match self.0.get(i) {
            Some(Value::Int(v)) => Some(*v),
            _ => None,
        }
    }
    pub fn text(&self, i: usize) -> String {
        self.opt_text(i).unwrap_or_default()
    }
    pub fn opt_text(&self, i: usize) -> Option<String> {
        match self.0.get(i) {
            Some(Value::Text(t)) => Some(t.clone()),
            Some(Value::Int(v)) => Some(v.to_string()),
            _ => None,
        }
    }
}

/// What the store's queries run on: one connection, inside or outside a transaction.
pub trait Sql {
    /// Runs a statement; returns the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> StoreResult<u64>;
    /// Runs a query (or a statement with `RETURNING`); returns its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>>;

    fn query_opt(&mut self, sql: &str, params: &[Value]) -> StoreResult<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

/// The two SQL dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

const SQLITE_NOW_MS: &str = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)";
const POSTGRES_NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

impl Dialect {
    /// A query in this dialect: `NOW_MS()` becomes the database's clock, and for PostgreSQL
    /// `?N` placeholders become `$N`.
    /// `FOR_UPDATE` locks the selected rows until the transaction ends on PostgreSQL; SQLite
    /// has no row locks (a `BEGIN IMMEDIATE` transaction holds the whole database).
    pub fn render<'a>(self, sql: &'a str) -> Cow<'a, str> {
        match self {
            Dialect::Sqlite if !sql.contains("NOW_MS()") && !sql.contains("FOR_UPDATE") => Cow::Borrowed(sql),
            Dialect::Sqlite => Cow::Owned(sql.replace("NOW_MS()", SQLITE_NOW_MS).replace("FOR_UPDATE", "")),
            Dialect::Postgres => {
                let sql = sql
                    .replace("NOW_MS()", POSTGRES_NOW_MS)
                    .replace("FOR_UPDATE", "FOR UPDATE");
                let mut out = String::with_capacity(sql.len());
                let mut chars = sql.chars().peekable();
                while let Some(c) = chars.next() {
                    if c == '?' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
                        out.push('$');
                    } else {
                        out.push(c);
                    }
                }
                Cow::Owned(out)
            }
        }
    }

    /// A migration's DDL in this dialect. Migrations are written for SQLite (that is how the
    /// first ones shipped); PostgreSQL gets 64-bit integers and identity keys.
    pub fn ddl(self, sql: &str) -> String {
        match self {
            Dialect::Sqlite => sql.to_string(),
            Dialect::Postgres => sql
                .replace(
                    "INTEGER PRIMARY KEY AUTOINCREMENT",
                    "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                )
                .replace("INTEGER", "BIGINT"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_and_clock() {
        let sql = "UPDATE t SET a = ?1, b = ?12 WHERE c < NOW_MS() AND d = '?'";
        assert_eq!(
            Dialect::Postgres.render(sql),
            format!("UPDATE t SET a = $1, b = $12 WHERE c < {POSTGRES_NOW_MS} AND d = '?'")
        );
        assert_eq!(
            Dialect::Sqlite.render(sql),
            format!("UPDATE t SET a = ?1, b = ?12 WHERE c < {SQLITE_NOW_MS} AND d = '?'")
        );
    }

    #[test]
    fn postgres_ddl_uses_wide_integers() {
        assert_eq!(
            Dialect::Postgres.ddl("id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL"),
            "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL"
        );
    }

    #[test]
    fn rows_read_what_either_backend_returns() {
        let r = Row(vec![Value::Int(7), Value::Text("x".into()), Value::Null]);
        assert_eq!(r.int(0), 7);
        assert_eq!(r.text(1), "x");
        assert_eq!(r.opt_text(2), None);
        assert_eq!(r.opt_int(2), None);
    }
}
