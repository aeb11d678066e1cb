//! A job's log in the store, so that any replica serves it and nothing is lost when the one
//! running the job dies: the (already redacted) text in chunks at their byte offsets in the
//! whole log. A log longer than its limit keeps its head (the first half of the limit) and its
//! tail (the last half); a reader whose offset falls in the part dropped between them is told
//! how many bytes are missing and goes on from the tail.

use super::sql::params;
use super::{Context, JobState, Store, StoreResult};

/// The largest chunk stored (a larger append is split), so that the kept head and tail
/// overshoot their halves of the limit by at most one chunk each.
const MAX_CHUNK: usize = 64 * 1024;

/// The most chunks one read goes through.
const MAX_CHUNKS_READ: i64 = 2000;

/// What a reader gets from [`Store::log_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTail {
    /// The log from the offset asked for (with a line saying what was dropped, if the offset
    /// fell in the part of a long log that was not kept).
    pub text: String,
    /// Where the next read starts.
    pub next_offset: u64,
    /// The job has ended and this read reached the end of its log: nothing more will come.
    pub finished: bool,
}

/// The line a reader sees in place of the middle of a log longer than the limit.
pub fn dropped_line(bytes: u64) -> String {
    format!("\n[… {bytes} bytes of this log were not kept (web.log_limit_bytes): its head and its tail are …]\n")
}

/// The largest char boundary of `text` at or below `at`.
fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// `text` in pieces of at most [`MAX_CHUNK`] bytes (or `limit / 8`, if smaller), cut at char
/// boundaries.
fn pieces(text: &str, limit: u64) -> Vec<&str> {
    let size = MAX_CHUNK.min((limit / 8).max(64) as usize);
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = floor_boundary(rest, size);
        if cut == 0 {
            // One character wider than the size: take it whole.
            cut = rest.char_indices().nth(1).map(|(i, _)| i).unwrap_or(rest.len());
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

impl Store {
    /// Appends `text` (already redacted) to the job's log, keeping about `limit` bytes of it:
    /// the head (first half) always, and the newest half as the tail. One transaction, unsynced
    /// on SQLite (a log line is worth less than a forced disk write per batch).
    pub fn append_log(&self, job: u64, text: &str, limit: u64) -> StoreResult<()> {
        if text.is_empty() {
            return Ok(());
        }
        let head = limit / 2;
        let tail = limit - head;
        self.tx_unsynced(|db| {
            let mut end = db
                .query_opt(
                    "SELECT COALESCE(MAX(start_offset + bytes), 0) FROM job_logs WHERE job_id = ?1",
                    params![job],
                )?
                .map(|r| r.int(0))
                .unwrap_or(0);
            for piece in pieces(text, limit) {
                db.execute(
                    "INSERT INTO job_logs (job_id, start_offset, bytes, text) VALUES (?1, ?2, ?3, ?4)",
                    params![job, end, piece.len() as i64, piece],
                )?;
                end += piece.len() as i64;
            }
            // Chunks wholly between the head and the tail go: the head is what began the job
            // (its plan, its first error), the tail what is happening now.
            let tail_starts = end - tail as i64;
            if tail_starts > head as i64 {
                db.execute(
                    "DELETE FROM job_logs WHERE job_id = ?1 AND start_offset >= ?2 AND start_offset + bytes <= ?3",
                    params![job, head as i64, tail_starts],
                )?;
            }
            Ok(())
        })
        .ctx("append to a job's log")
    }

    /// The length of the job's log so far (dropped bytes included).
    pub fn log_end(&self, job: u64) -> StoreResult<u64> {
        self.with(|db| {
            Ok(db
                .query_opt(
                    "SELECT COALESCE(MAX(start_offset + bytes), 0) FROM job_logs WHERE job_id = ?1",
                    params![job],
                )?
                .map(|r| r.int(0) as u64)
                .unwrap_or(0))
        })
        .ctx("read a job's log length")
    }

    /// The job's log from byte `offset` on, at most about `max` bytes of it.
    pub fn log_since(&self, job: u64, offset: u64, max: usize) -> StoreResult<LogTail> {
        self.with(|db| {
            let finished_job = db
                .query_opt("SELECT state FROM jobs WHERE id = ?1", params![job])?
                .map(|r| JobState::parse(&r.text(0)).is_finished())
                .unwrap_or(true);
            let end = db
                .query_opt(
                    "SELECT COALESCE(MAX(start_offset + bytes), 0) FROM job_logs WHERE job_id = ?1",
                    params![job],
                )?
                .map(|r| r.int(0) as u64)
                .unwrap_or(0);
            // The chunk holding `offset` (the last one starting at or before it), and on.
            let rows = db.query(
                "SELECT start_offset, bytes, text FROM job_logs WHERE job_id = ?1 AND start_offset >= COALESCE(
                     (SELECT MAX(start_offset) FROM job_logs WHERE job_id = ?1 AND start_offset <= ?2), 0)
                 ORDER BY start_offset LIMIT ?3",
                params![job, offset as i64, MAX_CHUNKS_READ],
            )?;
            let mut text = String::new();
            let mut at = offset.min(end);
            for row in rows {
                let (start, bytes, chunk) = (row.int(0) as u64, row.int(1) as u64, row.text(2));
                if start + bytes <= at {
                    continue;
                }
                if start > at {
                    text.push_str(&dropped_line(start - at));
                    at = start;
                }
                let from = floor_boundary(&chunk, (at - start) as usize);
                let room = max.saturating_sub(text.len());
                if room == 0 {
                    break;
                }
                let to = floor_boundary(&chunk, from + room);
                if to <= from {
                    break;
                }
                text.push_str(&chunk[from..to]);
                at = start + to as u64;
                if to < chunk.len() {
                    break;
                }
            }
            Ok(LogTail {
                text,
                next_offset: at,
                finished: finished_job && at >= end,
            })
        })
        .ctx("read a job's log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cut_at_char_boundaries_and_cover_the_text() {
        let text = "é".repeat(100) + "abc";
        let parts = pieces(&text, 512);
        assert!(parts.len() > 1);
        assert_eq!(parts.concat(), text);
        assert!(parts.iter().all(|p| p.len() <= 64));
    }

    #[test]
    fn floor_boundary_never_splits_a_character() {
        let text = "aé";
        assert_eq!(floor_boundary(text, 2), 1);
        assert_eq!(floor_boundary(text, 3), 3);
        assert_eq!(floor_boundary(text, 10), 3);
    }
}
