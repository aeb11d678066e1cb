//! A real OpenSSH server for one test, on a free loopback port: its own host key, the test's
//! client key in `keys/` (mode 0600) as the only way in, its config and pid file in a
//! temporary folder. Started as a child (`sshd -D -e`) and killed when dropped; nothing
//! listens beyond 127.0.0.1.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key name the test projects use (`key_name: argos` in the sandbox group_vars), so the
/// client key is `keys/argos.pem`.
pub const KEY_NAME: &str = "argos";

pub struct Sshd {
    pub port: u16,
    /// The folder with the client key, `<KEY_NAME>.pem`, mode 0600: a project's `paths.keys`.
    pub keys: PathBuf,
    /// The user the client key logs in as: whoever runs the tests.
    pub user: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn sshd_bin() -> PathBuf {
    let bin = PathBuf::from(std::env::var("ARGOS_SSHD").unwrap_or_else(|_| "/usr/sbin/sshd".into()));
    assert!(
        bin.exists(),
        "{} is missing: run scripts/bootstrap (the test command does), which installs openssh-server",
        bin.display()
    );
    bin
}

fn keygen(path: &Path, comment: &str) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(public(path));
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen runs (openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where ssh-keygen puts the public half of `path`: `<path>.pub`.
fn public(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", path.display()))
}

/// A port nobody listens on right now (the kernel's pick, released at once).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("addr").port()
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Sshd {
    /// Keys and config on a fresh free port, not started yet ([`Sshd::launch`]).
    pub fn prepare() -> Sshd {
        Self::prepare_on(free_port())
    }

    pub fn prepare_on(port: u16) -> Sshd {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        let client = keys.join(format!("{KEY_NAME}.pem"));
        keygen(&client, "argos-test-client");
        // ssh-keygen already writes 0600; the tests rely on it, so it is not left to chance.
        std::fs::set_permissions(&client, Permissions::from_mode(0o600)).unwrap();
        std::fs::copy(public(&client), dir.path().join("authorized_keys")).unwrap();
        let sshd = Sshd {
            port,
            keys,
            user: current_user(),
            dir,
            child: None,
        };
        sshd.new_host_key();
        sshd.write_config();
        sshd
    }

    /// Prepared and started, answering with its banner.
    pub async fn start() -> Sshd {
        let mut s = Self::prepare();
        s.launch().await;
        s
    }

    pub fn client_key(&self) -> PathBuf {
        self.keys.join(format!("{KEY_NAME}.pem"))
    }

    /// The line a known_hosts file needs to trust this server (its current host key).
    pub fn known_hosts_line(&self) -> String {
        let public = std::fs::read_to_string(public(&self.host_key())).expect("host public key");
        let mut fields = public.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        format!("[127.0.0.1]:{} {kind} {key}\n", self.port)
    }

    fn host_key(&self) -> PathBuf {
        self.dir.path().join("host_ed25519")
    }

    /// A new host key: after a restart the server is, as far as ssh can tell, another host.
    pub fn new_host_key(&self) {
        keygen(&self.host_key(), "argos-test-host");
    }

    /// The server's own log (`sshd -e`), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    fn write_config(&self) {
        let d = self.dir.path();
        // StrictModes no: the files live under /tmp, which is world-writable, and sshd would
        // refuse the authorized_keys there. Nothing else is loosened: keys only, one user.
        let cfg = format!(
            "ListenAddress 127.0.0.1\n\
             Port {port}\n\
             HostKey {host_key}\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\n\
             AllowUsers {user}\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             StrictModes no\n\
             UseDNS no\n\
             Subsystem sftp internal-sftp\n\
             LogLevel VERBOSE\n",
            port = self.port,
            host_key = self.host_key().display(),
            d = d.display(),
            user = self.user,
        );
        std::fs::write(d.join("sshd_config"), cfg).unwrap();
    }

    /// Starts sshd and waits until it answers with its banner.
    pub async fn launch(&mut self) {
        assert!(self.child.is_none(), "sshd already running");
        if unsafe_is_root() {
            // sshd's privilege separation folder; the package does not create it until its
            // service first starts, which the bootstrap prevents.
            let run = Path::new("/run/sshd");
            if !run.exists() {
                std::fs::create_dir_all(run).unwrap();
                std::fs::set_permissions(run, Permissions::from_mode(0o755)).unwrap();
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sshd.log"))
            .unwrap();
        let child = Command::new(sshd_bin())
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd starts");
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("sshd exited ({status}):\n{}", self.log());
            }
            if banner(self.port).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "sshd did not answer on 127.0.0.1:{} within 10 s:\n{}",
            self.port,
            self.log()
        );
    }

    /// Stops sshd and the sessions it serves: sessions are sshd's children and outlive the
    /// listener, so they are ended first, found by their parent pid (ours alone).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            for pid in descendants(c.id()) {
                // SAFETY: kill has no memory preconditions; the pids are this sshd's children.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every process below `pid`, deepest first, from `/proc/<pid>/stat` (field 4: the parent).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // The command name (field 2) may hold spaces and parentheses: parse after its end.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|f| f.parse().ok()) {
            parents.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (child, _) in parents.iter().filter(|(_, pp)| *pp == parent) {
            out.push(*child);
            frontier.push(*child);
        }
    }
    out.reverse();
    out
}

/// True when this process runs as root.
fn unsafe_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `127.0.0.1:port` sends an SSH identification line.
async fn banner(port: u16) -> bool {
    use tokio::io::AsyncReadExt;
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return false;
    };
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await,
        Ok(Ok(n)) if n > 0 && buf.starts_with(b"SSH-")
    )
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
