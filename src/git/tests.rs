//! Unit tests of the app repository against real git on local folders (no network): the demo
//! repository from `scripts/demo-repo` is the remote, named by its path.

use super::*;

/// The demo repository in `dir/app` and a handle mirroring it into `dir/state/git/app.git`.
fn demo(dir: &Path) -> AppRepo {
    let app = dir.join("app");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo-repo");
    let out = std::process::Command::new(script)
        .arg(&app)
        .output()
        .expect("demo-repo runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    AppRepo::new(app.display().to_string(), dir.join("state/git/app.git"), Auth::None).unwrap()
}

#[test]
fn urls_with_passwords_or_option_shapes_are_refused() {
    for (url, why) in [
        ("https://bob:hunter22@example.com/a.git", "password"),
        ("-uhttps://x", "'-'"),
        ("https://x/a b", "space"),
        ("", "empty"),
    ] {
        let err = AppRepo::new(url, "/tmp/m.git", Auth::None).unwrap_err().to_string();
        assert!(err.contains(why), "{url}: {err}");
        assert!(!err.contains("hunter22"), "{err}");
    }
    AppRepo::new("git@github.com:org/app.git", "/tmp/m.git", Auth::None).unwrap();
    AppRepo::new("ssh://git@h/app.git", "/tmp/m.git", Auth::None).unwrap();
}

#[test]
fn path_prefixes_stay_inside_the_repository() {
    validate_prefix("migrations/").unwrap();
    validate_prefix("db/migrate").unwrap();
    for bad in ["/etc", "../x", "a/../../b", "", "a\nb"] {
        assert!(validate_prefix(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn lock_and_temporary_folders_sit_beside_the_mirror() {
    let repo = AppRepo::new("https://x/app.git", "/state/git/app.git", Auth::None).unwrap();
    assert_eq!(repo.sibling("lock"), Path::new("/state/git/app.git.lock"));
}

#[tokio::test]
async fn a_local_mirror_resolves_and_compares() {
    let dir = tempfile::tempdir().unwrap();
    let repo = demo(dir.path());
    let tag = repo.resolve("v1.1.0").await.unwrap();
    assert_eq!(tag.kind, RefKind::Tag);
    let short = repo.resolve(&tag.sha[..7]).await.unwrap();
    assert_eq!((short.sha.as_str(), short.kind), (tag.sha.as_str(), RefKind::Commit));
    let undone = repo.commits_between("v1.1.0", "v1.2.0", 1).await.unwrap();
    assert_eq!(undone.total, 2);
    assert_eq!(undone.commits.len(), 1);
    assert_eq!(undone.commits[0].subject, "Release 1.2.0");
    let migrations = ["migrations/".to_string()];
    assert_eq!(
        repo.changed_paths("v1.1.0", "v1.2.0", &migrations).await.unwrap(),
        ["migrations/0002_add_column.sql"]
    );
    assert!(repo
        .changed_paths("v1.0.0", "v1.1.0", &migrations)
        .await
        .unwrap()
        .is_empty());
    assert!(repo.changed_paths("v1.0.0", "v1.2.0", &[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_mirror_follows_the_configured_url_and_sweeps_crashed_clones() {
    let dir = tempfile::tempdir().unwrap();
    let first = demo(dir.path());
    first.resolve("master").await.unwrap();
    // The app moves to another repository with one more commit on master.
    let moved = dir.path().join("moved");
    let out = std::process::Command::new("git")
        .args(["clone", "--quiet", "--bare"])
        .arg(dir.path().join("app"))
        .arg(&moved)
        .output()
        .unwrap();
    assert!(out.status.success());
    let tree = git_in(&moved, &["rev-parse", "master^{tree}"], "");
    let head = git_in(&moved, &["rev-parse", "master"], "");
    let moved_head = git_in(
        &moved,
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@demo.invalid",
            "commit-tree",
            tree.trim(),
            "-p",
            head.trim(),
            "-m",
            "moved",
        ],
        "",
    );
    git_in(&moved, &["update-ref", "refs/heads/master", moved_head.trim()], "");
    // A clone that crashed half-way in another process.
    let crashed = dir.path().join("state/git/app.git.tmp-999999");
    std::fs::create_dir_all(crashed.join("objects")).unwrap();
    let second = AppRepo::new(moved.display().to_string(), first.mirror_dir(), Auth::None).unwrap();
    assert_eq!(second.resolve("master").await.unwrap().sha, moved_head.trim());
    // A fresh mirror elsewhere sweeps leftovers beside it before cloning.
    std::fs::create_dir_all(dir.path().join("state/git/other.git.tmp-999999")).unwrap();
    let other = AppRepo::new(
        moved.display().to_string(),
        dir.path().join("state/git/other.git"),
        Auth::None,
    )
    .unwrap();
    other.resolve("v1.0.0").await.unwrap();
    assert!(!dir.path().join("state/git/other.git.tmp-999999").exists());
    assert!(crashed.exists(), "only other.git's leftovers are its business");
}

/// Runs git in `dir` with stdin `input`, returning stdout.
fn git_in(dir: &Path, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn an_ambiguous_short_sha_asks_for_more_characters() {
    // 2000 commits with fixed dates (the same SHAs every run): some two share 4 hex digits.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("many");
    std::fs::create_dir(&source).unwrap();
    git_in(&source, &["init", "--quiet"], "");
    let mut script = String::new();
    for i in 0..2000 {
        let message = format!("commit {i}\n");
        script.push_str(&format!(
            "commit refs/heads/master\ncommitter T <t@demo.invalid> 1767225600 +0000\ndata {}\n{message}\n",
            message.len()
        ));
    }
    git_in(&source, &["fast-import", "--quiet"], &script);
    let shas = git_in(&source, &["rev-list", "master"], "");
    let mut seen = std::collections::HashMap::new();
    let shared = shas
        .lines()
        .find_map(|sha| seen.insert(&sha[..4], sha).map(|_| sha[..4].to_string()))
        .expect("two commits share a 4-digit prefix");
    let repo = AppRepo::new(source.display().to_string(), dir.path().join("m.git"), Auth::None).unwrap();
    let err = repo.resolve(&shared).await.unwrap_err();
    assert!(matches!(err, GitError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("matches several objects"), "{err}");
    let one = shas.lines().next().unwrap();
    assert_eq!(repo.resolve(&one[..12]).await.unwrap().sha, one);
}
