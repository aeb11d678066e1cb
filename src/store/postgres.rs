//! The PostgreSQL backend, for several replicas on several hosts. The store's API is
//! synchronous (its calls are short, as SQLite's are), so the async `tokio-postgres` client
//! lives on a thread of its own with a private single-threaded runtime; callers hand it one
//! statement at a time and wait for the answer. A lost connection (PostgreSQL restarted, a
//! network cut) is reported as [`DbError::Connection`]; the next request connects again, and
//! the store retries for a bounded time.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use bytes::BytesMut;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};

use super::sql::{Row, Sql, Value};
use super::{DbError, StoreError, StoreResult};

/// How long one statement may take before the connection is given up as dead.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => i.to_string().to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Value::Text(t) => match *ty {
                Type::INT8 => t.parse::<i64>()?.to_sql(ty, out),
                Type::INT4 => t.parse::<i32>()?.to_sql(ty, out),
                _ => t.as_str().to_sql(ty, out),
            },
        }
    }

    // The store sends integers and text only; the conversion above picks the wire format
    // from the type the server inferred for each placeholder.
    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn column(row: &tokio_postgres::Row, i: usize) -> Result<Value, tokio_postgres::Error> {
    let ty = row.columns()[i].type_().clone();
    Ok(match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map_or(Value::Null, |v| Value::Int(v.into())),
        _ => row.try_get::<_, Option<String>>(i)?.map_or(Value::Null, Value::Text),
    })
}

/// Whether an error means the connection is gone (as opposed to a statement the server
/// refused): those are retried on a new connection.
fn lost_connection(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::CONNECTION_FAILURE,
            SqlState::CONNECTION_EXCEPTION,
            SqlState::CONNECTION_DOES_NOT_EXIST,
        ]
        .contains(code),
        // No SQLSTATE: an I/O error, a timeout or a protocol failure.
        None => true,
    }
}

fn classify(context: &str, e: tokio_postgres::Error) -> StoreError {
    let source = if lost_connection(&e) {
        DbError::Connection(e.to_string())
    } else {
        DbError::Postgres(
            e.as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or(e.to_string()),
        )
    };
    StoreError::new(context, source)
}

/// How long the server lets a session sit idle inside a transaction before it ends it.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(5);

enum Request {
    Execute(String, Vec<Value>, mpsc::SyncSender<StoreResult<u64>>),
    Query(String, Vec<Value>, mpsc::SyncSender<StoreResult<Vec<Row>>>),
}

/// The caller's end: a channel to the connection thread.
pub(crate) struct PgLink {
    requests: mpsc::Sender<Request>,
}

impl PgLink {
    /// Starts the connection thread and checks that the server answers. The URL (with its
    /// password) stays inside the thread and is never part of an error.
    pub(crate) fn connect(url: &str) -> StoreResult<PgLink> {
        let config: tokio_postgres::Config = url.parse().map_err(|_| {
            StoreError::new(
                "parse store.url",
                DbError::Config("not a PostgreSQL URL (postgresql://user@host:port/database)".into()),
            )
        })?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("argos-postgres".into())
            .spawn(move || serve(config, rx))
            .map_err(|e| StoreError::new("start the PostgreSQL thread", DbError::Config(e.to_string())))?;
        let mut link = PgLink { requests: tx };
        link.query("SELECT 1", &[])?;
        Ok(link)
    }

    fn ask<T>(&self, make: impl FnOnce(mpsc::SyncSender<StoreResult<T>>) -> Request) -> StoreResult<T> {
        let (reply, answer) = mpsc::sync_channel(1);
        let gone = || {
            StoreError::new(
                "PostgreSQL",
                DbError::Connection("the connection thread stopped".into()),
            )
        };
        self.requests.send(make(reply)).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

impl Sql for PgLink {
    fn execute(&mut self, sql: &str, params: &[Value]) -> StoreResult<u64> {
        self.ask(|r| Request::Execute(sql.to_string(), params.to_vec(), r))
    }
    fn query(&mut self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>> {
        self.ask(|r| Request::Query(sql.to_string(), params.to_vec(), r))
    }
}

/// One live connection with its prepared statements.
struct Session {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Session {
    async fn statement(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

async fn open_session(config: &tokio_postgres::Config) -> StoreResult<Session> {
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls));
    let (client, connection) = match connect.await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(classify("connect to PostgreSQL", e)),
        Err(_) => {
            return Err(StoreError::new(
                "connect to PostgreSQL",
                DbError::Connection(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())),
            ))
        }
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection closed");
        }
    });
    // A process stopped inside a transaction (SIGSTOP, a stalled VM) would keep its row locks
    // for as long as it is stopped, and a live replica's takeover of the environment's lock
    // would wait on them instead of taking over: the server ends such a session. Argos's
    // transactions are a few statements sent back to back, never seconds apart.
    if let Err(e) = client
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = {}",
            IDLE_IN_TRANSACTION.as_millis()
        ))
        .await
    {
        return Err(classify("set up the PostgreSQL session", e));
    }
    Ok(Session {
        client,
        statements: HashMap::new(),
    })
}

async fn run<T>(
    session: &mut Session,
    sql: &str,
    f: impl AsyncFnOnce(&Client, &Statement) -> Result<T, tokio_postgres::Error>,
) -> StoreResult<T> {
    let work = async {
        let stmt = session.statement(sql).await?;
        f(&session.client, &stmt).await
    };
    match tokio::time::timeout(STATEMENT_TIMEOUT, work).await {
        Ok(r) => r.map_err(|e| classify("statement", e)),
        Err(_) => Err(StoreError::new(
            "statement",
            DbError::Connection(format!("no answer within {} s", STATEMENT_TIMEOUT.as_secs())),
        )),
    }
}

fn serve(config: tokio_postgres::Config, requests: mpsc::Receiver<Request>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the PostgreSQL runtime");
            return;
        }
    };
    let mut session: Option<Session> = None;
    for request in requests {
        rt.block_on(async {
            if session.as_ref().is_none_or(|s| s.client.is_closed()) {
                session = None;
                match open_session(&config).await {
                    Ok(s) => session = Some(s),
                    Err(e) => {
                        match request {
                            Request::Execute(_, _, reply) => drop(reply.send(Err(e))),
                            Request::Query(_, _, reply) => drop(reply.send(Err(e))),
                        }
                        return;
                    }
                }
            }
            let s = session.as_mut().expect("connected above");
            let lost = match request {
                Request::Execute(sql, params, reply) => {
                    let r = run(s, &sql, async |c, st| {
                        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
                        c.execute(st, &refs).await
                    })
                    .await;
                    let lost = r.as_ref().is_err_and(StoreError::is_connection);
                    let _ = reply.send(r);
                    lost
                }
                Request::Query(sql, params, reply) => {
                    let r = run(s, &sql, async |c, st| {
                        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
                        let rows = c.query(st, &refs).await?;
                        rows.iter()
                            .map(|row| {
                                (0..row.len())
                                    .map(|i| column(row, i))
                                    .collect::<Result<Vec<_>, _>>()
                                    .map(Row)
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .await;
                    let lost = r.as_ref().is_err_and(StoreError::is_connection);
                    let _ = reply.send(r);
                    lost
                }
            };
            if lost {
                session = None;
            }
        });
    }
}
