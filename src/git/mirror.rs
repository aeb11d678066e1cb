//! The bare mirror under the state folder: cloned once (into a temporary folder, then renamed
//! into place), fetched after, always under the mirror's lock.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::auth::Scrubber;
use super::{lock, run, AppRepo, GitError, LOCAL_TIMEOUT};

impl AppRepo {
    /// Clones or fetches unless this handle (or a clone of it) fetched less than `max_age` ago
    /// and the mirror is there. Holds the mirror's lock throughout, so two jobs or two
    /// processes never write it at once.
    pub(super) async fn sync_if_older_than(&self, max_age: Duration) -> Result<(), GitError> {
        let last = *self.last_fetch.lock().expect("fetch time");
        if last.is_some_and(|t| t.elapsed() < max_age) && self.mirror_exists() {
            return Ok(());
        }
        let _lock = lock::acquire(&self.sibling("lock"), self.network_timeout * 2).await?;
        if self.mirror_exists() {
            self.fetch().await?;
        } else {
            self.clone_mirror().await?;
        }
        *self.last_fetch.lock().expect("fetch time") = Some(Instant::now());
        Ok(())
    }

    pub(super) fn mirror_exists(&self) -> bool {
        self.mirror.join("HEAD").is_file()
    }

    /// A path next to the mirror: `<mirror>.<suffix>` (the mirror itself may not exist yet).
    pub(super) fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self
            .mirror
            .file_name()
            .map(OsString::from)
            .unwrap_or_else(|| "mirror".into());
        name.push(format!(".{suffix}"));
        self.mirror.with_file_name(name)
    }

    /// Builds the mirror in a temporary folder beside it and renames it into place, so a
    /// crash leaves either no mirror or a whole one. Called with the lock held.
    async fn clone_mirror(&self) -> Result<(), GitError> {
        let parent = self.mirror.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
        // A crashed earlier attempt (of any process) may have left its folder; under the lock
        // nobody else is using one.
        let stale = self.sibling("tmp-");
        let stale = stale.file_name().unwrap_or_default().to_string_lossy().into_owned();
        for entry in std::fs::read_dir(parent)
            .map_err(|e| io_error("read", parent, e))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&stale) {
                remove_dir(&entry.path())?;
            }
        }
        let tmp = self.sibling(&format!("tmp-{}", std::process::id()));
        let built = self.build_mirror(&tmp).await;
        let placed = built.and_then(|()| {
            if self.mirror.exists() {
                // An empty folder (say, made by hand) is replaced; anything else is not ours.
                std::fs::remove_dir(&self.mirror).map_err(|_| {
                    GitError::Failed(format!(
                        "{} exists and is not a git mirror: move it away so Argos can clone the app repository",
                        self.mirror.display()
                    ))
                })?;
            }
            std::fs::rename(&tmp, &self.mirror).map_err(|e| io_error("rename into", &self.mirror, e))
        });
        if placed.is_err() {
            let _ = remove_dir(&tmp);
        }
        placed
    }

    /// An empty bare repository (no sample hooks: `--template=`), then the first fetch.
    async fn build_mirror(&self, tmp: &Path) -> Result<(), GitError> {
        let init = run::git(
            vec![
                "init".into(),
                "--quiet".into(),
                "--bare".into(),
                "--template=".into(),
                tmp.into(),
            ],
            &[],
            &Scrubber::default(),
            LOCAL_TIMEOUT,
            "init",
        )
        .await?;
        if !init.ok {
            return Err(GitError::Failed(format!(
                "cannot create a mirror in {}: {}",
                tmp.display(),
                init.reason()
            )));
        }
        let git_dir = format!("--git-dir={}", tmp.display());
        self.fetch_into(&git_dir).await
    }

    async fn fetch(&self) -> Result<(), GitError> {
        self.fetch_into(&format!("--git-dir={}", self.mirror.display())).await
    }

    async fn fetch_into(&self, git_dir: &str) -> Result<(), GitError> {
        let (env, scrubber) = self.auth.prepare()?;
        // The configured URL, not a remote stored in the mirror: if the config moves the app
        // to another URL, the mirror follows. Only branches and tags (not, say, GitHub's
        // refs/pull/*), forced, so a moved tag or a force-pushed branch is followed too.
        let args = [
            git_dir,
            "fetch",
            "--quiet",
            "--prune",
            "--no-write-fetch-head",
            "--end-of-options",
            &self.url,
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ];
        let out = run::git(
            args.iter().map(OsString::from).collect(),
            &env,
            &scrubber,
            self.network_timeout,
            "fetch",
        )
        .await
        .map_err(|e| match e {
            GitError::Timeout(_) => GitError::Timeout(format!(
                "fetching {} took longer than {}s",
                self.display_url(),
                self.network_timeout.as_secs_f32()
            )),
            other => other,
        })?;
        if !out.ok {
            return Err(GitError::Unreachable(format!(
                "cannot fetch the app repository {}: {}",
                self.display_url(),
                out.reason()
            )));
        }
        Ok(())
    }
}

fn io_error(doing: &str, path: &Path, e: std::io::Error) -> GitError {
    GitError::Failed(format!("cannot {doing} {}: {e}", path.display()))
}

fn remove_dir(path: &Path) -> Result<(), GitError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("remove", path, e)),
        _ => Ok(()),
    }
}
