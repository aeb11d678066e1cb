//! The app repository (`argos::git`) against real git: the demo app from `scripts/demo-repo`
//! served by a real `git daemon` on loopback (and by sshd with a deploy key), mirrored into a
//! temporary state folder.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argos::git::{AppRepo, Auth, GitError, RefKind};

use crate::support::git_daemon::{commit, demo_repo, git, GitDaemon};
use crate::support::http_server::{HttpServer, Response};
use crate::support::sshd::{free_port, Sshd};

/// The demo repository served over git://, and where its mirror goes.
struct Served {
    dir: tempfile::TempDir,
    daemon: GitDaemon,
}

impl Served {
    async fn start() -> Served {
        let dir = tempfile::tempdir().unwrap();
        demo_repo(&dir.path().join("served/app"));
        let daemon = GitDaemon::start(&dir.path().join("served")).await;
        Served { dir, daemon }
    }

    /// The developer's working copy the daemon serves.
    fn source(&self) -> PathBuf {
        self.dir.path().join("served/app")
    }

    fn mirror(&self) -> PathBuf {
        self.dir.path().join("state/git/app.git")
    }

    fn repo(&self) -> AppRepo {
        AppRepo::new(self.daemon.url("app"), self.mirror(), Auth::None)
            .unwrap()
            .with_timeout(Duration::from_secs(20))
    }

    fn sha(&self, rev: &str) -> String {
        git(&self.source(), &["rev-parse", &format!("{rev}^{{commit}}")])
    }
}

#[tokio::test]
async fn a_branch_an_annotated_tag_and_a_short_sha_resolve_to_commits() {
    let s = Served::start().await;
    let repo = s.repo();
    let master = repo.resolve("master").await.unwrap();
    assert_eq!((master.sha.clone(), master.kind), (s.sha("master"), RefKind::Branch));
    let annotated = repo.resolve("v1.1.0").await.unwrap();
    assert_eq!((annotated.sha.clone(), annotated.kind), (s.sha("v1.1.0"), RefKind::Tag));
    // Peeled: the commit, not the tag object.
    assert_ne!(annotated.sha, git(&s.source(), &["rev-parse", "v1.1.0"]));
    assert_eq!(repo.resolve("v1.0.0").await.unwrap().sha, s.sha("v1.0.0"));
    let feature = s.sha("feature-x");
    let short = repo.resolve(&feature[..7]).await.unwrap();
    assert_eq!(
        (short.sha, short.kind, short.name),
        (feature.clone(), RefKind::Commit, feature[..7].to_string())
    );
    assert_eq!(repo.resolve(&feature).await.unwrap().kind, RefKind::Commit);
}

#[tokio::test]
async fn an_unknown_ref_names_the_nearest_existing_names() {
    let s = Served::start().await;
    let err = s.repo().resolve("featur-x").await.unwrap_err();
    assert!(matches!(err, GitError::UnknownRef(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "unknown ref \"featur-x\" in {}; nearest: feature-x, feature-y",
            s.daemon.url("app")
        )
    );
    let err = s.repo().resolve("deadbeef").await.unwrap_err().to_string();
    assert!(err.starts_with("unknown ref \"deadbeef\""), "{err}");
}

#[tokio::test]
async fn an_invalid_ref_is_refused_before_git_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("git/app.git");
    // A closed port: had git run, the error would be about the connection.
    let repo = AppRepo::new(format!("git://127.0.0.1:{}/app", free_port()), &mirror, Auth::None).unwrap();
    for name in ["--upload-pack=touch /tmp/argos-pwned", "-x", "v1..v2", "a b", "HEAD~1"] {
        let err = repo.resolve(name).await.unwrap_err();
        assert!(matches!(err, GitError::Invalid(_)), "{name}: {err:?}");
        assert!(err.to_string().starts_with("invalid ref"), "{err}");
    }
    assert!(!dir.path().join("git").exists(), "nothing was created");
}

#[tokio::test]
async fn the_mirror_is_cloned_once_and_follows_the_remote() {
    let s = Served::start().await;
    let repo = s.repo();
    let before = repo.resolve("master").await.unwrap().sha;
    // A marker inside the mirror survives every later sync: it is fetched, not cloned again.
    std::fs::write(s.mirror().join("argos-marker"), "x").unwrap();
    let pushed = commit(&s.source(), "app.py", "print('v2')\n", "A new commit on master");
    git(&s.source(), &["tag", "v1.3.0"]);
    git(&s.source(), &["branch", "-D", "feature-y"]);
    let after = repo.resolve("master").await.unwrap().sha;
    assert_ne!(after, before);
    assert_eq!(after, pushed);
    assert!(s.mirror().join("argos-marker").exists());
    // New tags arrive and deleted branches go.
    let names: Vec<String> = repo.refs().await.unwrap().into_iter().map(|r| r.name).collect();
    assert!(names.contains(&"v1.3.0".to_string()), "{names:?}");
    assert!(!names.contains(&"feature-y".to_string()), "{names:?}");
    let leftovers: Vec<_> = std::fs::read_dir(s.mirror().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers.len(), 2, "the mirror and its lock file only: {leftovers:?}");
}

#[tokio::test]
async fn with_the_remote_down_names_come_from_the_mirror_but_nothing_resolves() {
    let s = Served::start().await;
    let repo = s.repo().with_fresh_for(Duration::ZERO);
    let sha = repo.resolve("master").await.unwrap().sha;
    let Served { dir, daemon } = s;
    drop(daemon);
    let names = repo.refs().await.unwrap();
    assert_eq!(names.len(), 6, "{names:?}");
    assert_eq!(repo.behind(&sha, "master").await.unwrap(), 0);
    // A deploy must not go out on a branch head that may have moved.
    let err = repo.resolve("master").await.unwrap_err();
    assert!(matches!(err, GitError::Unreachable(_)), "{err:?}");
    drop(dir);
}

#[tokio::test]
async fn names_for_autocomplete_branches_then_newest_tags() {
    let s = Served::start().await;
    let repo = s.repo();
    let refs = repo.refs().await.unwrap();
    let shown: Vec<(&str, RefKind)> = refs.iter().map(|r| (r.name.as_str(), r.kind)).collect();
    assert_eq!(
        shown,
        [
            ("feature-y", RefKind::Branch),
            ("feature-x", RefKind::Branch),
            ("master", RefKind::Branch),
            ("v1.2.0", RefKind::Tag),
            ("v1.1.0", RefKind::Tag),
            ("v1.0.0", RefKind::Tag),
        ]
    );
    let v: Vec<String> = repo
        .matching("V1.", 2)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(v, ["v1.2.0", "v1.1.0"]);
    let x: Vec<String> = repo
        .matching("-x", 5)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(x, ["feature-x"]);
}

#[tokio::test]
async fn commits_between_two_deploys_and_how_far_behind() {
    let s = Served::start().await;
    let repo = s.repo();
    let v100 = repo.resolve("v1.0.0").await.unwrap().sha;
    let range = repo.commits_between(&v100, "master", 3).await.unwrap();
    assert_eq!(range.total, 5);
    let subjects: Vec<&str> = range.commits.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(
        subjects,
        ["Log the start", "Release 1.2.0", "Add a summary column to articles"]
    );
    assert_eq!(range.commits[0].sha, s.sha("master"));
    assert_eq!(repo.commits_between("master", "master", 10).await.unwrap().total, 0);
    assert_eq!(repo.behind(&s.sha("v1.1.0"), "master").await.unwrap(), 3);
    assert_eq!(repo.behind(&s.sha("master"), "master").await.unwrap(), 0);
    assert_eq!(repo.behind(&s.sha("feature-x"), "master").await.unwrap(), 1);
    let err = repo.behind("0000000", "master").await.unwrap_err().to_string();
    assert!(err.starts_with("no commit \"0000000\""), "{err}");
}

#[tokio::test]
async fn a_migration_change_is_found_between_two_tags() {
    let s = Served::start().await;
    let repo = s.repo();
    let migrations = vec!["migrations/".to_string()];
    let (v100, v110, v120) = (s.sha("v1.0.0"), s.sha("v1.1.0"), s.sha("v1.2.0"));
    repo.sync().await.unwrap();
    assert_eq!(
        repo.changed_paths(&v110, &v120, &migrations).await.unwrap(),
        ["migrations/0002_add_column.sql"]
    );
    // Either direction: a rollback from v1.2.0 to v1.1.0 crosses the same migration.
    assert_eq!(repo.changed_paths(&v120, &v110, &migrations).await.unwrap().len(), 1);
    assert!(repo.changed_paths(&v100, &v110, &migrations).await.unwrap().is_empty());
    let err = repo
        .changed_paths(&v100, &v110, &["../etc".to_string()])
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn two_resolves_at_once_on_a_fresh_mirror_both_succeed() {
    let s = Served::start().await;
    // Two handles, as two jobs or two processes would have: only the lock file is shared.
    let (a, b) = (s.repo(), s.repo());
    let (x, y) = tokio::join!(a.resolve("master"), b.resolve("v1.2.0"));
    assert_eq!(x.unwrap().sha, s.sha("master"));
    assert_eq!(y.unwrap().sha, s.sha("v1.2.0"));
    git(&s.mirror(), &["fsck", "--no-progress"]);
}

#[tokio::test]
async fn another_process_holding_the_mirror_lock_is_waited_for() {
    let s = Served::start().await;
    let lock = s.mirror().with_file_name("app.git.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    // util-linux's flock(1) takes the same kind of lock another argos process would.
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .args(["sleep", "1.5"])
        .spawn()
        .expect("flock runs");
    let held = || {
        !std::process::Command::new("flock")
            .arg("-n")
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap()
            .success()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !held() {
        assert!(Instant::now() < deadline, "flock never took the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let master = s.repo().resolve("master").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(master.sha, s.sha("master"));
    assert!(holder.wait().unwrap().success());
}

#[tokio::test]
async fn an_unreachable_remote_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("git://127.0.0.1:{}/app", free_port());
    let repo = AppRepo::new(&url, dir.path().join("app.git"), Auth::None).unwrap();
    let err = repo.resolve("master").await.unwrap_err();
    assert!(matches!(err, GitError::Unreachable(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot fetch the app repository {url}: ")),
        "{text}"
    );
    assert!(!dir.path().join("app.git").exists(), "no half mirror is left");

    // A remote that accepts the connection and then says nothing: the timeout ends it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("git://{}/app", silent.local_addr().unwrap());
    let repo = AppRepo::new(&url, dir.path().join("app.git"), Auth::None)
        .unwrap()
        .with_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let err = repo.resolve("master").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    assert_eq!(
        err.to_string(),
        format!("timed out: fetching {url} took longer than 2s")
    );
    assert!(!dir.path().join("app.git").exists(), "no half mirror is left");
}

/// A pkt-line of git's wire protocol.
fn pkt(line: &str) -> String {
    format!("{:04x}{line}", line.len() + 4)
}

#[tokio::test]
async fn a_token_from_the_environment_never_shows_in_an_error() {
    const TOKEN: &str = "ghp_argos_test_token_8c1f";
    std::env::set_var("ARGOS_TEST_GIT_REPO_TOKEN", TOKEN);
    let dir = tempfile::tempdir().unwrap();

    // Nobody listening: git names the URL in its message.
    let url = format!("http://deploy@127.0.0.1:{}/app.git", free_port());
    let repo = AppRepo::new(&url, dir.path().join("a.git"), Auth::token("ARGOS_TEST_GIT_REPO_TOKEN")).unwrap();
    let err = repo.resolve("master").await.unwrap_err().to_string();
    assert!(
        err.starts_with("cannot fetch the app repository http://127.0.0.1:"),
        "{err}"
    );
    assert!(!err.contains(TOKEN) && !err.contains("deploy@"), "{err}");

    // A server that echoes the Authorization header back as git's "remote error": the worst
    // case, where git itself prints the secret.
    let seen = Arc::new(Mutex::new(String::new()));
    let seen_by_server = seen.clone();
    let server = HttpServer::start(move |req| {
        let auth = req.header("authorization").unwrap_or("none").to_string();
        *seen_by_server.lock().unwrap() = auth.clone();
        let body = format!(
            "{}0000{}",
            pkt("# service=git-upload-pack\n"),
            pkt(&format!("ERR you sent {auth}\n"))
        );
        Response::new(200)
            .with_header("content-type", "application/x-git-upload-pack-advertisement")
            .with_body(body.into_bytes())
    })
    .await
    .unwrap();
    let url = format!("{}/app.git", server.url());
    let repo = AppRepo::new(&url, dir.path().join("b.git"), Auth::token("ARGOS_TEST_GIT_REPO_TOKEN")).unwrap();
    let err = repo.resolve("master").await.unwrap_err().to_string();
    let header = seen.lock().unwrap().clone();
    assert!(header.starts_with("Basic "), "the token was sent: {header:?}");
    assert!(err.contains("remote error: you sent Basic [redacted]"), "{err}");
    assert!(!err.contains(TOKEN) && !err.contains(&header[6..]), "{err}");
    // And it is nowhere on disk either.
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains(TOKEN), "{}", entry.display());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn a_private_repository_over_ssh_with_a_deploy_key() {
    let sshd = Sshd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let source = demo_repo(&dir.path().join("app"));
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, sshd.known_hosts_line()).unwrap();
    let url = format!("ssh://{}@127.0.0.1:{}{}", sshd.user, sshd.port, source.display());
    let auth = Auth::SshKey {
        key: sshd.client_key(),
        known_hosts: Some(known_hosts.clone()),
    };
    let repo = AppRepo::new(&url, dir.path().join("state/app.git"), auth).unwrap();
    let tag = repo.resolve("v1.2.0").await.unwrap();
    assert_eq!(tag.sha, git(&source, &["rev-parse", "v1.2.0^{commit}"]));

    // Another host key than the one trusted: refused, not prompted for.
    // (The client's own public key stands in for an impostor's host key.)
    let impostor = std::fs::read_to_string(format!("{}.pub", sshd.client_key().display())).unwrap();
    let impostor: Vec<&str> = impostor.split_whitespace().take(2).collect();
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}\n", sshd.port, impostor.join(" ")),
    )
    .unwrap();
    let other = dir.path().join("state/other.git");
    let auth = Auth::SshKey {
        key: sshd.client_key(),
        known_hosts: Some(known_hosts),
    };
    let err = AppRepo::new(&url, other, auth)
        .unwrap()
        .resolve("master")
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains("Host key verification failed"), "{err}");
}
