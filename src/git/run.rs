//! Runs the `git` binary: no terminal, no prompts, C locale, a timeout that kills git and
//! whatever it started (ssh, the HTTP helper), and stderr scrubbed before anyone reads it.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use super::auth::Scrubber;
use super::GitError;

/// Lines git prints after every failed SSH connection, whatever the cause.
const BOILERPLATE: &[&str] = &[
    "fatal: Could not read from remote repository",
    "Please make sure you have the correct access rights",
    "and the repository exists",
];

/// What a finished git command left: its exit status, its output, its scrubbed stderr.
pub(super) struct Finished {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The last lines of stderr, which carry git's reason ("fatal: ..."), in one line. git's
    /// boilerplate after an SSH failure is left out: it would push out the line that says why
    /// ("Permission denied (publickey)", "Host key verification failed").
    pub(super) fn reason(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !BOILERPLATE.iter().any(|b| l.starts_with(b)))
            .collect();
        let tail = &lines[lines.len().saturating_sub(2)..];
        if tail.is_empty() {
            "git failed without saying why".to_string()
        } else {
            tail.join("; ")
        }
    }
}

/// Runs `git args...` with `env` added, for at most `timeout`. `what` names the operation in a
/// timeout's error. Fails only if git cannot start or runs out of time; a git that exits
/// non-zero is a [`Finished`] with `ok == false`.
pub(super) async fn git(
    args: Vec<OsString>,
    env: &[(String, String)],
    scrubber: &Scrubber,
    timeout: Duration,
    what: &str,
) -> Result<Finished, GitError> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(&args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Never wait for a password nobody can type; answer in a language we can match.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "never")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout can kill ssh or git-remote-https with it.
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| GitError::Failed(format!("cannot run git (is it installed?): {e}")))?;
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(Finished {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: scrubber.scrub(&String::from_utf8_lossy(&out.stderr)),
        }),
        Ok(Err(e)) => Err(GitError::Failed(format!("git {what}: {e}"))),
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: signals the process group git leads; no memory is involved.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            Err(GitError::Timeout(format!(
                "git {what} took longer than {}s",
                timeout.as_secs_f32()
            )))
        }
    }
}
