//! The app repository as Argos sees it: a bare mirror of the app's git repository under the
//! state folder, kept with the real `git` binary, that turns a branch, tag or SHA into the
//! commit a deploy checks out, lists names for autocomplete, and says what lies between two
//! commits (what a rollback undoes, how far an environment is behind, whether a migration
//! changed).

mod auth;
mod error;
mod lock;
mod mirror;
mod names;
mod run;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use auth::{strip_userinfo, Auth, DEFAULT_TOKEN_USER};
pub use error::GitError;
pub use names::validate_ref;

use auth::Scrubber;
use names::{looks_like_sha, nearest, quoted};
use run::Finished;

/// How long a clone or fetch may take unless [`AppRepo::with_timeout`] says otherwise.
pub const DEFAULT_NETWORK_TIMEOUT: Duration = Duration::from_secs(120);
/// Local commands (rev-parse, log, diff) on a mirror take milliseconds; this only stops a hang.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How old a fetch may be for autocomplete and "how far behind" (a resolve always fetches).
pub const DEFAULT_FRESH_FOR: Duration = Duration::from_secs(60);
/// How many tags [`AppRepo::refs`] offers, newest first.
pub const RECENT_TAGS: usize = 20;
/// How many nearest names an unknown ref's error suggests.
const SUGGESTIONS: usize = 3;

/// What kind of name a ref was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKind {
    Branch,
    Tag,
    Commit,
}

/// A ref resolved to the commit it names now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The full 40-character commit SHA (a tag is peeled to its commit).
    pub sha: String,
    /// The name as given.
    pub name: String,
    pub kind: RefKind,
}

/// A branch or tag name, for autocomplete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefName {
    pub name: String,
    pub kind: RefKind,
}

/// One commit: its full SHA and the first line of its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitLine {
    pub sha: String,
    pub subject: String,
}

/// The commits in a range, newest first, at most the limit asked for, and how many there are
/// in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRange {
    pub commits: Vec<CommitLine>,
    pub total: u32,
}

/// The app repository: its URL, how to authenticate, and the bare mirror that answers every
/// question locally. Cheap to clone; clones share the time of the last fetch.
#[derive(Debug, Clone)]
pub struct AppRepo {
    url: String,
    mirror: PathBuf,
    auth: Auth,
    network_timeout: Duration,
    fresh_for: Duration,
    last_fetch: Arc<Mutex<Option<Instant>>>,
}

impl AppRepo {
    /// A handle on the repository at `url`, mirrored in `mirror_dir` (for example
    /// `<state>/git/<app>.git`; created at the first use). Nothing runs yet. A URL with a
    /// password in it is refused: it would be written into the mirror's config on disk and
    /// show up in git's messages; name a token variable in `auth` instead.
    pub fn new(url: impl Into<String>, mirror_dir: impl Into<PathBuf>, auth: Auth) -> Result<AppRepo, GitError> {
        let url = url.into();
        validate_url(&url)?;
        Ok(AppRepo {
            url,
            mirror: mirror_dir.into(),
            auth,
            network_timeout: DEFAULT_NETWORK_TIMEOUT,
            fresh_for: DEFAULT_FRESH_FOR,
            last_fetch: Arc::new(Mutex::new(None)),
        })
    }

    /// The longest a clone or fetch may take.
    pub fn with_timeout(mut self, network_timeout: Duration) -> AppRepo {
        self.network_timeout = network_timeout;
        self
    }

    /// How old a fetch may be before [`AppRepo::refs`], [`AppRepo::matching`] and
    /// [`AppRepo::behind`] fetch again.
    pub fn with_fresh_for(mut self, fresh_for: Duration) -> AppRepo {
        self.fresh_for = fresh_for;
        self
    }

    /// The URL, safe to show (no user information).
    pub fn display_url(&self) -> String {
        strip_userinfo(&self.url)
    }

    pub fn mirror_dir(&self) -> &Path {
        &self.mirror
    }

    /// Brings the mirror up to date with the remote now: a clone the first time, a fetch of
    /// every branch and tag (pruning deleted ones) after.
    pub async fn sync(&self) -> Result<(), GitError> {
        self.sync_if_older_than(Duration::ZERO).await
    }

    /// Resolves a branch, a tag (peeled to its commit, annotated or not) or a full or
    /// abbreviated SHA (unique in the repository) to the commit it names right now, fetching
    /// first. A name that is both a tag and a branch is the tag, as git reads it.
    pub async fn resolve(&self, name: &str) -> Result<Resolved, GitError> {
        validate_ref(name)?;
        self.sync().await?;
        let refs = self.list_refs().await?;
        let found = |kind| refs.iter().any(|r| r.kind == kind && r.name == name);
        let (full, kind) = if found(RefKind::Tag) {
            (format!("refs/tags/{name}"), RefKind::Tag)
        } else if found(RefKind::Branch) {
            (format!("refs/heads/{name}"), RefKind::Branch)
        } else if looks_like_sha(name) {
            (name.to_string(), RefKind::Commit)
        } else {
            return Err(self.unknown(name, &refs));
        };
        let out = self.rev_parse(&full).await?;
        if out.ok {
            let sha = out.stdout.trim().to_string();
            return Ok(Resolved {
                sha,
                name: name.to_string(),
                kind,
            });
        }
        match kind {
            RefKind::Commit if out.stderr.contains("ambiguous") => Err(GitError::Invalid(format!(
                "the abbreviated SHA {} matches several objects in {}; give more characters",
                quoted(name),
                self.display_url()
            ))),
            RefKind::Commit => Err(self.unknown(name, &refs)),
            _ => Err(GitError::Failed(format!(
                "{} in {} does not point to a commit",
                quoted(name),
                self.display_url()
            ))),
        }
    }

    /// Fetches if the last fetch is older than the freshness window. If the remote cannot be
    /// reached but a mirror exists, answers from the mirror (autocomplete and "how far behind"
    /// are better a little stale than gone) and waits a window before trying again; a resolve
    /// never does this.
    async fn fresh_enough(&self) -> Result<(), GitError> {
        match self.sync_if_older_than(self.fresh_for).await {
            Err(e) if self.mirror_exists() => {
                tracing::warn!(repo = %self.display_url(), error = %e, "answering from the mirror as last fetched");
                *self.last_fetch.lock().expect("fetch time") = Some(Instant::now());
                Ok(())
            }
            other => other,
        }
    }

    /// The branches (most recently committed first) and the [`RECENT_TAGS`] newest tags, for
    /// autocomplete; from the mirror as last fetched if the remote is down.
    pub async fn refs(&self) -> Result<Vec<RefName>, GitError> {
        self.fresh_enough().await?;
        let all = self.list_refs().await?;
        let branches = all.iter().filter(|r| r.kind == RefKind::Branch).cloned();
        let tags = all.iter().filter(|r| r.kind == RefKind::Tag).take(RECENT_TAGS).cloned();
        Ok(branches.chain(tags).collect())
    }

    /// Up to `limit` branch and tag names (of all, not only the recent) that start with
    /// `prefix`, ignoring case, then those that merely contain it; newest first within each.
    /// Like [`AppRepo::refs`], answers from the mirror when the remote is down.
    pub async fn matching(&self, prefix: &str, limit: usize) -> Result<Vec<RefName>, GitError> {
        self.fresh_enough().await?;
        let all = self.list_refs().await?;
        let wanted = prefix.to_lowercase();
        let (starts, rest): (Vec<RefName>, Vec<RefName>) = all
            .into_iter()
            .partition(|r| r.name.to_lowercase().starts_with(&wanted));
        let contains = rest.into_iter().filter(|r| r.name.to_lowercase().contains(&wanted));
        Ok(starts.into_iter().chain(contains).take(limit).collect())
    }

    /// The commits reachable from `to_incl` but not from `from_excl` (what redeploying
    /// `from_excl` over `to_incl` undoes), newest first, at most `limit`, with the full count.
    /// Both are commits (SHAs or names) already in the mirror; nothing is fetched.
    pub async fn commits_between(&self, from_excl: &str, to_incl: &str, limit: usize) -> Result<CommitRange, GitError> {
        let (from, to) = (self.commit(from_excl).await?, self.commit(to_incl).await?);
        let range = format!("{from}..{to}");
        let total = self.count(&range).await?;
        let out = self
            .local([
                "log",
                "--no-show-signature",
                "--format=%H%x1f%s",
                &format!("--max-count={limit}"),
                "--end-of-options",
                &range,
                "--",
            ])
            .await?;
        let commits = out
            .stdout
            .lines()
            .filter_map(|l| l.split_once('\u{1f}'))
            .map(|(sha, subject)| CommitLine {
                sha: sha.to_string(),
                subject: subject.to_string(),
            })
            .collect();
        Ok(CommitRange { commits, total })
    }

    /// How many commits `reference` (a branch, tag or SHA) has that `sha` does not: how far a
    /// deployed commit is behind. Fetches if the mirror is older than the freshness window
    /// (and answers from the mirror if the remote is down).
    pub async fn behind(&self, sha: &str, reference: &str) -> Result<u32, GitError> {
        self.fresh_enough().await?;
        let (from, to) = (self.commit(sha).await?, self.commit(reference).await?);
        self.count(&format!("{from}..{to}")).await
    }

    /// The files under any of `prefixes` (folders or files, relative to the repository's root,
    /// taken literally) that differ between commits `a` and `b`: for example whether
    /// `migrations/` changed between what runs and what a rollback would run. No prefixes, no
    /// files.
    pub async fn changed_paths(&self, a: &str, b: &str, prefixes: &[String]) -> Result<Vec<String>, GitError> {
        for p in prefixes {
            validate_prefix(p)?;
        }
        if prefixes.is_empty() {
            return Ok(Vec::new());
        }
        let (a, b) = (self.commit(a).await?, self.commit(b).await?);
        let mut args: Vec<OsString> = [
            "--literal-pathspecs",
            "diff",
            "--name-only",
            "-z",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.extend([a.into(), b.into(), "--".into()]);
        args.extend(prefixes.iter().map(OsString::from));
        let out = self.local_args(args).await?;
        Ok(out
            .stdout
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Every branch and tag in the mirror, each kind newest first (by committer date for a
    /// branch, tagger or committer date for a tag).
    async fn list_refs(&self) -> Result<Vec<RefName>, GitError> {
        let out = self
            .local([
                "for-each-ref",
                "--sort=-creatordate",
                "--format=%(refname)",
                "refs/heads/",
                "refs/tags/",
            ])
            .await?;
        Ok(out
            .stdout
            .lines()
            .filter_map(|full| {
                let (kind, name) = if let Some(n) = full.strip_prefix("refs/heads/") {
                    (RefKind::Branch, n)
                } else {
                    (RefKind::Tag, full.strip_prefix("refs/tags/")?)
                };
                Some(RefName {
                    name: name.to_string(),
                    kind,
                })
            })
            .collect())
    }

    fn unknown(&self, name: &str, refs: &[RefName]) -> GitError {
        let close = nearest(name, refs.iter().map(|r| r.name.as_str()), SUGGESTIONS);
        let mut text = format!("unknown ref {} in {}", quoted(name), self.display_url());
        if !close.is_empty() {
            text.push_str(&format!("; nearest: {}", close.join(", ")));
        }
        GitError::UnknownRef(text)
    }

    async fn rev_parse(&self, rev: &str) -> Result<Finished, GitError> {
        // No --quiet: git's reason ("ambiguous") is wanted on stderr.
        self.local([
            "rev-parse",
            "--verify",
            "--end-of-options",
            &format!("{rev}^{{commit}}"),
        ])
        .await
    }

    /// The full SHA of a commit in the mirror (the mirror is cloned first if missing).
    async fn commit(&self, rev: &str) -> Result<String, GitError> {
        validate_ref(rev)?;
        if !self.mirror_exists() {
            self.sync().await?;
        }
        let out = self.rev_parse(rev).await?;
        if !out.ok {
            return Err(GitError::UnknownRef(format!(
                "no commit {} in {}",
                quoted(rev),
                self.display_url()
            )));
        }
        Ok(out.stdout.trim().to_string())
    }

    async fn count(&self, range: &str) -> Result<u32, GitError> {
        let out = self
            .local(["rev-list", "--count", "--end-of-options", range, "--"])
            .await?;
        out.stdout
            .trim()
            .parse()
            .map_err(|_| GitError::Failed(format!("git rev-list --count said {:?}", out.stdout.trim())))
    }

    /// A git command on the mirror that needs no network; a failure is an error with git's
    /// reason. (Callers that expect failure use `rev_parse`, which returns it.)
    async fn local<const N: usize>(&self, args: [&str; N]) -> Result<Finished, GitError> {
        self.local_args(args.iter().map(OsString::from).collect()).await
    }

    async fn local_args(&self, args: Vec<OsString>) -> Result<Finished, GitError> {
        // The subcommand, past any global option such as --literal-pathspecs.
        let what = args
            .iter()
            .map(|a| a.to_string_lossy())
            .find(|a| !a.starts_with('-'))
            .map(|a| a.into_owned())
            .unwrap_or_default();
        let mut full: Vec<OsString> = vec![format!("--git-dir={}", self.mirror.display()).into()];
        full.extend(args);
        let out = run::git(full, &[], &Scrubber::default(), LOCAL_TIMEOUT, &what).await?;
        if !out.ok && what != "rev-parse" {
            return Err(GitError::Failed(format!(
                "git {what} in the mirror of {}: {}",
                self.display_url(),
                out.reason()
            )));
        }
        Ok(out)
    }
}

/// A URL git can fetch from that cannot be read as an option and holds no password.
fn validate_url(url: &str) -> Result<(), GitError> {
    let bad = |why: &str| {
        Err(GitError::Invalid(format!(
            "invalid app repository URL {}: {why}",
            quoted(&strip_userinfo(url))
        )))
    };
    if url.is_empty() {
        return bad("it is empty");
    }
    if url.starts_with('-') {
        return bad("it starts with '-'");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("it contains a space or a control character");
    }
    if let Some((_, rest)) = url.split_once("://") {
        let authority = rest.split('/').next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if userinfo.contains(':') {
                return bad("it holds a password; give a token through an environment variable instead");
            }
        }
    }
    Ok(())
}

/// A path prefix for `changed_paths`: relative, inside the repository, printable.
fn validate_prefix(prefix: &str) -> Result<(), GitError> {
    let bad = |why: &str| {
        Err(GitError::Invalid(format!(
            "invalid path prefix {}: {why}",
            quoted(prefix)
        )))
    };
    if prefix.is_empty() {
        return bad("it is empty");
    }
    if prefix.starts_with('/') {
        return bad("it must be relative to the repository's root");
    }
    if prefix.chars().any(char::is_control) {
        return bad("it contains a control character");
    }
    if prefix.split('/').any(|part| part == "..") {
        return bad("it leaves the repository ('..')");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
