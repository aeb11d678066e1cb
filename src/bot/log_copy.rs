//! Copies a running job's log file (its lines already redacted as they were written) into the
//! store, so the web page serves it from any replica and it outlives this process. Batched:
//! what was written in the last half second goes in one transaction, whole lines only, so a
//! chatty playbook costs two writes a second, not one per line; the rest goes when the job ends.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::store::Store;

/// How often the file is read for new lines.
const EVERY: Duration = Duration::from_millis(500);

/// The most read from the file in one batch.
const MAX_BATCH: u64 = 1024 * 1024;

/// A copy in progress; [`LogCopy::finish`] copies the last of it. Dropped unfinished (the
/// job's lease is gone), it stops without copying more: the new owner writes the log now.
pub(crate) struct LogCopy {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

struct Reader {
    store: Store,
    job: u64,
    path: PathBuf,
    limit: u64,
    at: u64,
}

impl Reader {
    /// Copies what was written since the last call (whole lines, unless `all`).
    fn copy(&mut self, all: bool) {
        loop {
            let Ok(mut file) = std::fs::File::open(&self.path) else {
                return;
            };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len <= self.at || file.seek(SeekFrom::Start(self.at)).is_err() {
                return;
            }
            let mut buf = Vec::new();
            if file.take((len - self.at).min(MAX_BATCH)).read_to_end(&mut buf).is_err() {
                return;
            }
            let full = self.at + buf.len() as u64 >= len;
            let take = if all && full {
                buf.len()
            } else {
                match buf.iter().rposition(|b| *b == b'\n') {
                    Some(i) => i + 1,
                    None if buf.len() as u64 >= MAX_BATCH => buf.len(),
                    None => return,
                }
            };
            let text = String::from_utf8_lossy(&buf[..take]);
            if let Err(e) = self.store.append_log(self.job, &text, self.limit) {
                tracing::warn!(job = self.job, error = %e, "cannot copy the job's log to the store");
                return;
            }
            self.at += take as u64;
            if full {
                return;
            }
        }
    }
}

/// Starts copying `path` into the store as `job`'s log. A job resumed on the same host goes on
/// from what the store has; one resumed elsewhere from the end of this host's file.
pub(crate) fn start(store: Store, job: u64, path: PathBuf, limit: u64) -> LogCopy {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stored = store.log_end(job).unwrap_or(0);
        let on_disk = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let reader = Reader {
            store,
            job,
            path,
            limit,
            at: if stored <= on_disk { stored } else { on_disk },
        };
        let mut reader = Some(reader);
        loop {
            let all = tokio::select! {
                _ = tokio::time::sleep(EVERY) => false,
                r = &mut stopped => {
                    if r.is_err() {
                        return;
                    }
                    true
                }
            };
            let mut r = reader.take().expect("the reader is put back after each batch");
            r = match tokio::task::spawn_blocking(move || {
                r.copy(all);
                r
            })
            .await
            {
                Ok(r) => r,
                Err(_) => return,
            };
            if all {
                return;
            }
            reader = Some(r);
        }
    });
    LogCopy { stop, task }
}

impl LogCopy {
    /// Copies the rest of the file and waits until it is in the store.
    pub(crate) async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
