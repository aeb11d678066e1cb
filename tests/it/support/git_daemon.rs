//! A real `git daemon` serving a folder of repositories over `git://` on a free loopback port,
//! started for one test and killed when dropped; and the demo app repository that
//! `scripts/demo-repo` creates, with a helper to add commits to it as a developer would.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::sshd::free_port;

pub struct GitDaemon {
    pub port: u16,
    child: Child,
}

impl GitDaemon {
    /// Serves every repository under `base` (`git://127.0.0.1:<port>/<name>`), once it accepts
    /// connections.
    pub async fn start(base: &Path) -> GitDaemon {
        // Another test may take the free port between our pick and the daemon's bind: retry.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(daemon_bin())
                .arg("--export-all")
                .arg(format!("--base-path={}", base.display()))
                .args([
                    "--listen=127.0.0.1",
                    &format!("--port={port}"),
                    "--reuseaddr",
                    "--informative-errors",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group: the children it forks per connection go with it.
                .process_group(0)
                .spawn()
                .expect("git daemon starts");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                    return GitDaemon { port, child };
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("git daemon did not start");
    }

    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

/// `git-daemon` itself: `git daemon` would run it as a child of its own and leave it serving
/// when killed.
fn daemon_bin() -> PathBuf {
    let out = Command::new("git").arg("--exec-path").output().expect("git runs");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("git-daemon")
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        // SAFETY: signals the process group the daemon leads; no memory is involved.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates the demo app repository at `dir` with `scripts/demo-repo`.
pub fn demo_repo(dir: &Path) -> PathBuf {
    let out = Command::new(super::repo().join("scripts/demo-repo"))
        .arg(dir)
        .output()
        .expect("scripts/demo-repo runs");
    assert!(
        out.status.success(),
        "demo-repo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.to_path_buf()
}

/// Runs git in `repo` with a fixed identity and no user config; returns its stdout, trimmed.
pub fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@demo.invalid")
        .env("GIT_COMMITTER_NAME", "Test Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@demo.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Commits `content` to `file` on the checked-out branch of `repo`; returns the new SHA.
pub fn commit(repo: &Path, file: &str, content: &str, message: &str) -> String {
    std::fs::write(repo.join(file), content).unwrap();
    git(repo, &["add", file]);
    git(repo, &["commit", "--quiet", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}
