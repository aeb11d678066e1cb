//! SSH to real hosts: the private key's mode, host keys recorded per environment (a
//! `known_hosts` file in the state directory, keyed by instance id), the options Ansible's ssh
//! gets, the readiness probe that waits for an SSH banner, and the one-line summary of why a
//! host was unreachable.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// How long ssh may take to connect and finish the handshake before the host counts as
/// unreachable: a dead host fails in seconds instead of the system's TCP timeout (minutes).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The SSH side of one playbook run.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Where host keys are recorded and checked; `None` leaves ssh's default (`~/.ssh`).
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: Duration,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            known_hosts: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// The `known_hosts` file of one scope: an environment name, or `image` for build instances.
/// Entries are keyed by instance id (`HostKeyAlias`, see [`host_key_alias`]), so an address
/// that AWS hands to a new instance is a new entry, not a "changed key".
pub fn known_hosts_file(state_dir: &Path, scope: &str) -> PathBuf {
    state_dir.join("ssh").join(format!("known_hosts.{scope}"))
}

/// The inventory variable that makes ssh record and check a host's key under its instance id.
pub fn host_key_alias(instance_id: &str) -> (String, String) {
    (
        "ansible_ssh_extra_args".into(),
        format!("-o HostKeyAlias={instance_id}"),
    )
}

/// Refuses a private key that is missing, not a file, or readable by group or others: ssh
/// would ignore such a key ("UNPROTECTED PRIVATE KEY FILE") and every host would fail with a
/// misleading "Permission denied (publickey)".
pub fn check_private_key(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::Invalid(format!(
            "SSH key {} cannot be read ({e}): put the private key of the EC2 key pair there (see keys/README.md)",
            path.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(Error::Invalid(format!("SSH key {} is not a file", path.display())));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Invalid(format!(
            "SSH key {} has mode {mode:o}: group or others can read it and ssh refuses such a key; run chmod 600 {}",
            path.display(),
            path.display()
        )));
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid && euid != 0 {
        return Err(Error::Invalid(format!(
            "SSH key {} belongs to uid {}, not to this process (uid {euid}); ssh cannot use it",
            path.display(),
            meta.uid()
        )));
    }
    Ok(())
}

/// Creates the `known_hosts` file (and its folder) private to this user, if missing.
pub(crate) fn prepare_known_hosts(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", parent.display())))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", path.display())))?;
    Ok(())
}

/// `ANSIBLE_SSH_ARGS` (which replaces Ansible's defaults, so those are repeated). Host keys
/// are checked strictly against our own file; an instance never seen is recorded on first
/// contact (`accept-new`), a changed key is refused. No agent, no other identities, no
/// password prompt: the key given is the only way in, and a failure is a failure, not a hang.
pub(crate) fn ssh_args(opts: &SshOptions) -> String {
    let secs = opts.connect_timeout.as_secs().max(1);
    let mut args = vec![
        "-C".to_string(),
        "-o ControlMaster=auto".into(),
        "-o ControlPersist=60s".into(),
        format!("-o ConnectTimeout={secs}"),
        // A host that dies mid-run is noticed in about a minute, not never.
        "-o ServerAliveInterval=15".into(),
        "-o ServerAliveCountMax=4".into(),
        "-o BatchMode=yes".into(),
        "-o IdentitiesOnly=yes".into(),
        "-o StrictHostKeyChecking=accept-new".into(),
    ];
    if let Some(file) = &opts.known_hosts {
        args.push(format!(
            "-o UserKnownHostsFile={}",
            shell_quote(&file.to_string_lossy())
        ));
        // Only our file decides; the machine's global list must not vouch for a host.
        args.push("-o GlobalKnownHostsFile=/dev/null".into());
        // Plain entries (instance ids are no secret), so an operator can read which
        // instances are recorded whatever the machine's ssh_config says (Debian hashes).
        args.push("-o HashKnownHosts=no".into());
    }
    args.join(" ")
}

/// Quotes for the shlex split Ansible applies to `ssh_args`.
fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@%=,".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The job's first line for an unreachable host: `host H unreachable: reason (during task 'T')`,
/// one line whatever ssh printed, with the remedy when the host key changed.
pub(crate) fn unreachable_line(host: &str, task: &str, message: &str, known_hosts: Option<&Path>) -> String {
    let reason = if message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || message.contains("Host key verification failed")
    {
        let file = known_hosts.map_or_else(|| "known_hosts".to_string(), |p| p.display().to_string());
        let alias = changed_key_name(message).unwrap_or_else(|| host.to_string());
        format!(
            "its SSH host key is not the one recorded for {alias} in {file}, so the connection was refused (a changed key can mean a man-in-the-middle); if the instance really was rebuilt, remove the old key with: ssh-keygen -R {alias} -f {file}"
        )
    } else {
        one_line(message)
    };
    format!("host {host} unreachable: {reason} (during task '{task}')")
}

/// `X` from ssh's "Host key for X has changed and you have requested strict checking."
fn changed_key_name(message: &str) -> Option<String> {
    let rest = message.split("Host key for ").nth(1)?;
    let name = rest.split(" has changed").next()?.trim();
    (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| name.to_string())
}

/// ssh's multi-line complaints in one line, without the `@@@` banners.
fn one_line(message: &str) -> String {
    let parts: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '@'))
        .collect();
    let line = parts.join(" ");
    if line.is_empty() {
        "unreachable".into()
    } else {
        line
    }
}

/// The readiness probe: waits until `host:port` answers with an SSH identification line
/// (`SSH-2.0-...`), not merely until it accepts TCP, since a port can accept before sshd
/// is there (a NAT, a proxy, a socket opened early by the init system). Each attempt is
/// bounded; a refused or silent port is retried with a growing pause until `timeout`.
/// Returns how long it waited.
pub async fn wait_for_ssh(host: &str, port: u16, timeout: Duration, cancel: &CancellationToken) -> Result<Duration> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut pause = Duration::from_millis(200);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = ATTEMPT_TIMEOUT.min(left).max(Duration::from_millis(100));
        let last = tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Cancelled),
            r = probe_once(host, port, attempt) => match r {
                Ok(()) => return Ok(started.elapsed()),
                Err(why) => why,
            },
        };
        if Instant::now() + pause >= deadline {
            return Err(Error::Timeout(format!(
                "{host}:{port} did not answer as an SSH server within {} s (last attempt: {last})",
                timeout.as_secs()
            )));
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Cancelled),
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// One probe attempt's limit: connecting plus reading the banner.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// One attempt: connect, then read lines until one starts with `SSH-` (RFC 4253 lets a server
/// send other lines first). The error says what went wrong, for the timeout message.
async fn probe_once(host: &str, port: u16, limit: Duration) -> std::result::Result<(), String> {
    let work = async {
        let mut stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while seen.len() < 4096 {
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed without an SSH banner".to_string());
            }
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            let mut lines: Vec<&str> = text.split('\n').collect();
            lines.pop(); // the unfinished last line, if any
            if lines.iter().any(|l| l.starts_with("SSH-")) {
                return Ok(());
            }
        }
        Err("no SSH banner in the first 4 KiB".to_string())
    };
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no SSH banner within {} ms", limit.as_millis())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn args_check_host_keys_against_our_file() {
        let opts = SshOptions {
            known_hosts: Some(PathBuf::from("/var/lib/argos/ssh/known_hosts.staging")),
            connect_timeout: Duration::from_secs(7),
        };
        let args = ssh_args(&opts);
        assert!(args.contains("StrictHostKeyChecking=accept-new"), "{args}");
        assert!(!args.contains("StrictHostKeyChecking=no"), "{args}");
        assert!(args.contains("UserKnownHostsFile=/var/lib/argos/ssh/known_hosts.staging"));
        assert!(args.contains("ConnectTimeout=7"));
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
    }

    #[test]
    fn unreachable_is_one_line_and_names_the_host_first() {
        let line = unreachable_line(
            "api-i-1",
            "Gathering Facts",
            "Failed to connect to the host via ssh: ssh: connect to host 127.0.0.1 port 9: Connection refused\r\n",
            None,
        );
        assert_eq!(
            line,
            "host api-i-1 unreachable: Failed to connect to the host via ssh: ssh: connect to host 127.0.0.1 port 9: Connection refused (during task 'Gathering Facts')"
        );
        let changed = "Failed to connect to the host via ssh: @@@@@@@\r\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n@@@@@@@\r\nHost key for i-0abc has changed and you have requested strict checking.\r\nHost key verification failed.";
        let line = unreachable_line(
            "api-i-0abc",
            "t",
            changed,
            Some(Path::new("/s/ssh/known_hosts.staging")),
        );
        assert!(line.starts_with("host api-i-0abc unreachable: its SSH host key is not the one recorded for i-0abc in /s/ssh/known_hosts.staging"), "{line}");
        assert!(
            line.contains("ssh-keygen -R i-0abc -f /s/ssh/known_hosts.staging"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[tokio::test]
    async fn probe_wants_a_banner_not_just_an_open_port() {
        let cancel = CancellationToken::new();
        // Accepts, says nothing: not ready.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let err = wait_for_ssh("127.0.0.1", port, Duration::from_millis(700), &cancel)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("did not answer as an SSH server"), "{err}");
        hold.abort();
        // Greets like sshd: ready.
        let greeter = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = greeter.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = greeter.accept().await {
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
            }
        });
        wait_for_ssh("127.0.0.1", port, Duration::from_secs(3), &cancel)
            .await
            .unwrap();
    }

    #[test]
    fn a_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        std::fs::write(&key, "x").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_private_key(&key).unwrap_err().to_string();
        assert!(err.contains("has mode 644") && err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_private_key(&key).unwrap();
    }
}
