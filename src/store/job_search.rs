//! Jobs by what they ran on, what they did, how they ended and who asked: the web page's jobs
//! list and an environment's history.

use super::jobs::{from_row, COLUMNS};
use super::sql::Value;
use super::{Context, JobRecord, Store, StoreResult};

/// Which jobs to list; `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only these environments (the ones the reader may see); empty matches nothing.
    pub envs: Vec<String>,
    pub env: Option<String>,
    pub action: Option<String>,
    /// A job state (`succeeded`, `failed`, ...).
    pub state: Option<String>,
    /// The requester's name as recorded.
    pub person: Option<String>,
}

impl Store {
    /// The newest `limit` jobs matching `filter`, newest first.
    pub fn find_jobs(&self, filter: &JobFilter, limit: usize) -> StoreResult<Vec<JobRecord>> {
        if filter.envs.is_empty() {
            return Ok(Vec::new());
        }
        let mut params: Vec<Value> = Vec::new();
        let place = |v: &str, params: &mut Vec<Value>| {
            params.push(Value::Text(v.to_string()));
            format!("?{}", params.len())
        };
        let envs: Vec<String> = filter.envs.iter().map(|e| place(e, &mut params)).collect();
        let mut clauses = vec![format!("env IN ({})", envs.join(", "))];
        for (column, wanted) in [
            ("env", &filter.env),
            ("action", &filter.action),
            ("state", &filter.state),
            ("requester_name", &filter.person),
        ] {
            if let Some(w) = wanted {
                let p = place(w, &mut params);
                clauses.push(format!("{column} = {p}"));
            }
        }
        params.push(Value::Int(limit as i64));
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE {} ORDER BY id DESC LIMIT ?{}",
            clauses.join(" AND "),
            params.len()
        );
        self.with(|db| Ok(db.query(&sql, &params)?.iter().map(from_row).collect()))
            .ctx("list jobs")
    }
}
