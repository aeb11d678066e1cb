//! One writer at a time per mirror, across tasks and processes: an exclusive `flock` on a lock
//! file next to the mirror. The kernel drops the lock when its holder exits, so a crash never
//! leaves a stale lock behind (a create-only lock file would).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use super::GitError;

/// How often a waiter tries again.
const RETRY: Duration = Duration::from_millis(50);

/// Held while the mirror is created or fetched; dropping it (closing the file) unlocks.
#[derive(Debug)]
pub(super) struct MirrorLock {
    _file: File,
}

/// Waits up to `wait` for the lock at `path` (created if missing).
pub(super) async fn acquire(path: &Path, wait: Duration) -> Result<MirrorLock, GitError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| GitError::Failed(format!("cannot create {}: {e}", parent.display())))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| GitError::Failed(format!("cannot open the lock file {}: {e}", path.display())))?;
    let deadline = Instant::now() + wait;
    loop {
        // Non-blocking, so waiting never ties up a runtime thread.
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(MirrorLock { _file: file });
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) && err.kind() != std::io::ErrorKind::Interrupted {
            return Err(GitError::Failed(format!("cannot lock {}: {err}", path.display())));
        }
        if Instant::now() >= deadline {
            return Err(GitError::Timeout(format!(
                "another fetch held {} for more than {}s",
                path.display(),
                wait.as_secs()
            )));
        }
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.git.lock");
        let first = acquire(&path, Duration::from_secs(1)).await.unwrap();
        let err = acquire(&path, Duration::from_millis(120)).await.unwrap_err();
        assert!(matches!(err, GitError::Timeout(_)), "{err}");
        drop(first);
        acquire(&path, Duration::from_millis(120)).await.unwrap();
    }
}
