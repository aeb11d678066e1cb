//! A real, throwaway PostgreSQL server for tests: `initdb` into a fresh folder, started on a free
//! loopback port (listening on 127.0.0.1 only, `fsync=off`, trust authentication for the
//! `postgres` superuser), stopped and removed when dropped.
//!
//! - [`PgServer::start`] gives a test its own server (needed to stop or restart it).
//! - [`shared`] gives every test of one test binary the same server; take a fresh database with
//!   [`PgServer::new_database`] so tests do not see each other's tables.
//!
//! The binaries come from `ARGOS_PG_BIN` (a folder holding `initdb` and `pg_ctl`), else the
//! newest `/usr/lib/postgresql/*/bin`, else `PATH`; `scripts/bootstrap` installs them.
//!
//! PostgreSQL refuses to run as root: when the tests run as root the folders are handed to the
//! `postgres` user and `initdb`/`pg_ctl` run through `runuser -u postgres --`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use tokio_postgres::NoTls;

/// A running (or deliberately stopped) PostgreSQL server owned by the test process.
pub struct PgServer {
    port: u16,
    bin: PgBin,
    /// `Some((uid, gid))` of the `postgres` user when the tests run as root.
    run_as: Option<(u32, u32)>,
    /// Holds `data/` (the cluster), `sock/` (the Unix socket) and `postgres.log`; removed on drop.
    dir: tempfile::TempDir,
    /// See [`Watchdog`].
    watchdog: Option<Watchdog>,
}

/// Makes sure a server left running dies with the test process, however that process ends.
///
/// A static (the [`shared`] server) is never dropped, and a test process can also end by a
/// signal, by `process::exit` or by an abort, so neither `Drop` nor `libc::atexit` is enough.
/// Instead each server gets a tiny `sh` whose stdin is a pipe from the test process: it blocks
/// reading that pipe, and the kernel closes the write end when the test process ends for any
/// reason (even SIGKILL); the read then returns EOF and the shell runs `pg_ctl stop -m immediate`
/// and removes the folder. `Drop` takes the same path: it closes the pipe and waits for the shell.
/// The write end is close-on-exec (Rust opens pipes that way), so other children of the test
/// process do not inherit it and keep it open. The watchdog runs in its own
/// process group so that a Ctrl-C on the terminal, which kills the test process, does not kill
/// the watchdog with it (`pg_ctl` likewise detaches the postmaster from the terminal).
struct Watchdog {
    child: Child,
    pipe: Option<ChildStdin>,
}

/// Where `initdb` and `pg_ctl` are (`pg_ctl` finds `postgres` next to itself).
#[derive(Clone, Debug)]
struct PgBin {
    initdb: PathBuf,
    pg_ctl: PathBuf,
}

fn find_bin() -> PgBin {
    let in_dir = |dir: &Path| {
        let bin = PgBin {
            initdb: dir.join("initdb"),
            pg_ctl: dir.join("pg_ctl"),
        };
        (bin.initdb.is_file() && bin.pg_ctl.is_file() && dir.join("postgres").is_file()).then_some(bin)
    };
    if let Some(dir) = std::env::var_os("ARGOS_PG_BIN") {
        let dir = PathBuf::from(dir);
        return in_dir(&dir).unwrap_or_else(|| {
            panic!(
                "ARGOS_PG_BIN={} does not hold initdb, pg_ctl and postgres",
                dir.display()
            )
        });
    }
    // Debian/Ubuntu layout: /usr/lib/postgresql/<major>/bin; take the newest major.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    if let Some(bin) = versions.iter().rev().find_map(|(_, dir)| in_dir(dir)) {
        return bin;
    }
    let on_path = |name: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    match (on_path("initdb"), on_path("pg_ctl")) {
        (Some(initdb), Some(pg_ctl)) => PgBin { initdb, pg_ctl },
        _ => panic!(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: set ARGOS_PG_BIN, or \
             run scripts/bootstrap (the test command does), which installs them"
        ),
    }
}

/// `Some((uid, gid))` of the `postgres` user if this process is root, `None` otherwise.
fn postgres_user_if_root() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    // SAFETY: the name is a valid C string; the returned record (or null) is read at once.
    let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    assert!(
        !pw.is_null(),
        "the tests run as root but there is no `postgres` user to run PostgreSQL as (it refuses \
         root): run scripts/bootstrap, or create the user"
    );
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Some((uid, gid))
}

/// A folder to create the server folder in that the `postgres` user can reach: the temp dir if
/// every folder above it is traversable by others, else `/tmp`.
fn base_dir(as_other_user: bool) -> PathBuf {
    let tmp = std::env::temp_dir();
    if !as_other_user {
        return tmp;
    }
    use std::os::unix::fs::PermissionsExt;
    let traversable = |p: &Path| {
        p.ancestors()
            .all(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
    };
    if traversable(&tmp) {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}

/// A free loopback port (free when asked; the OS does not hand it out again right away).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("addr").port()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

/// The server shared by every test of this test binary, started on first use. It is never
/// dropped; its watchdog stops it and removes its folder when the test process ends. Do not stop
/// or restart it (the `&mut self` methods cannot be called on it): use [`PgServer::start`].
pub fn shared() -> &'static PgServer {
    SHARED.get_or_init(PgServer::start)
}

static NEXT_DB: AtomicU64 = AtomicU64::new(0);

impl PgServer {
    /// Creates a fresh cluster and starts it on a free loopback port; waits until it accepts
    /// connections. Panics with the server log if it cannot.
    pub fn start() -> PgServer {
        let bin = find_bin();
        let run_as = postgres_user_if_root();
        let dir = tempfile::Builder::new()
            .prefix("argos-pg-")
            .tempdir_in(base_dir(run_as.is_some()))
            .expect("temp dir for PostgreSQL");
        std::fs::create_dir(dir.path().join("sock")).expect("socket dir");
        if let Some((uid, gid)) = run_as {
            for p in [dir.path().to_path_buf(), dir.path().join("sock")] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", p.display()));
            }
        }
        let mut server = PgServer {
            port: 0,
            bin,
            run_as,
            dir,
            watchdog: None,
        };
        server.initdb();
        server.watchdog = Some(server.spawn_watchdog());
        // The port was free a moment ago; if something grabbed it meanwhile, take another.
        let mut attempts = 0;
        loop {
            attempts += 1;
            server.port = free_port();
            match server.try_start() {
                Ok(()) => return server,
                Err(e) if attempts >= 3 => panic!("{e}"),
                Err(_) => {}
            }
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgresql://postgres@127.0.0.1:PORT/DB` (no password: trust authentication).
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database with a name unique in this process and returns its URL,
    /// `postgresql://postgres@127.0.0.1:PORT/NAME`. Blocking; callable from sync tests and from
    /// async ones alike (it runs its own small runtime on a helper thread, so it also works
    /// under a paused-time tokio runtime).
    pub fn new_database(&self) -> String {
        let name = format!(
            "argos_test_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let admin = self.url("postgres");
        let sql = format!("CREATE DATABASE \"{name}\"");
        let created = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("tokio runtime: {e}"))?;
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&admin, NoTls)
                    .await
                    .map_err(|e| format!("connect to {admin}: {e}"))?;
                let conn = tokio::spawn(conn);
                let done = client.batch_execute(&sql).await.map_err(|e| format!("{sql}: {e}"));
                drop(client);
                let _ = conn.await;
                done
            })
        })
        .join()
        .expect("CREATE DATABASE thread");
        created.unwrap_or_else(|e| panic!("new_database on port {}: {e}", self.port));
        self.url(&name)
    }

    /// Stops the server (`pg_ctl stop -m fast`: open sessions are terminated, open transactions
    /// rolled back, committed data kept) and waits until it is down; new connections are then
    /// refused at once. The port is not held while stopped; [`PgServer::start_again`] reuses it.
    ///
    /// Like the other methods this blocks the calling thread (about 0.1 s); to keep a job on a
    /// current-thread runtime going meanwhile, move the server into `spawn_blocking`.
    pub fn stop(&mut self) {
        self.pg_ctl_stop("fast")
            .unwrap_or_else(|e| panic!("stopping PostgreSQL: {e}"));
    }

    /// Starts the stopped server again on the same port with the same data, and waits until it
    /// accepts connections.
    pub fn start_again(&mut self) {
        self.try_start().unwrap_or_else(|e| panic!("{e}"));
    }

    /// [`PgServer::stop`] then [`PgServer::start_again`]: existing connections break, data
    /// committed before is still there.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// The server log, for assertions or for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// `program`, run as the `postgres` user when we are root, in the server folder (the
    /// caller's working directory may not be readable by `postgres`).
    fn command(&self, program: &Path) -> Command {
        let mut cmd = match self.run_as {
            Some(_) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        cmd
    }

    /// Runs `cmd`; `Err` with its output if it fails.
    fn run(mut cmd: Command) -> Result<(), String> {
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {cmd:?}: {e} (for runuser: util-linux)"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn initdb(&self) {
        let init = |locale: &str| {
            let mut cmd = self.command(&self.bin.initdb);
            cmd.arg("-D")
                .arg(self.data())
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "-N"])
                .arg(format!("--locale={locale}"));
            Self::run(cmd)
        };
        // C.UTF-8 exists on Debian/Ubuntu and recent glibc; C works everywhere.
        if let Err(first) = init("C.UTF-8") {
            let _ = std::fs::remove_dir_all(self.data());
            init("C").unwrap_or_else(|e| panic!("initdb failed with locale C.UTF-8:\n{first}\nand with C:\n{e}"));
        }
    }

    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().join("sock").display()
        );
        let mut cmd = self.command(&self.bin.pg_ctl);
        cmd.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        Self::run(cmd).map_err(|e| {
            format!(
                "PostgreSQL did not start on port {}: {e}\n--- server log (tail) ---\n{}",
                self.port,
                tail(&self.log_path(), 30)
            )
        })
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), String> {
        let mut cmd = self.command(&self.bin.pg_ctl);
        cmd.arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "60", "-m", mode, "stop"]);
        Self::run(cmd)
    }

    fn spawn_watchdog(&self) -> Watchdog {
        // "$@" is the pg_ctl command (behind runuser when root).
        // `read` is a shell builtin: no extra process to leave behind.
        const SCRIPT: &str = r#"while read -r _; do :; done
"$@" -D "$ARGOS_PG_DATA" -w -m immediate stop >/dev/null 2>&1
rm -rf "$ARGOS_PG_DIR""#;
        let mut prog: Vec<OsString> = Vec::new();
        if self.run_as.is_some() {
            prog.extend(["runuser", "-u", "postgres", "--"].map(OsString::from));
        }
        prog.push(self.bin.pg_ctl.clone().into());
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("argos-pg-watchdog")
            .args(prog)
            .env("ARGOS_PG_DATA", self.data())
            .env("ARGOS_PG_DIR", self.dir.path())
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn the PostgreSQL watchdog (sh)");
        let pipe = child.stdin.take().expect("watchdog stdin");
        Watchdog {
            child,
            pipe: Some(pipe),
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Closing the pipe makes the watchdog stop the server and remove the folder.
        if let Some(mut w) = self.watchdog.take() {
            drop(w.pipe.take());
            let _ = w.child.wait();
        }
        // In case the watchdog was gone: already stopped is fine (pg_ctl just fails), and the
        // TempDir field removes whatever is left (root can; otherwise the files are ours).
        if self.data().exists() {
            let _ = self.pg_ctl_stop("immediate");
        }
    }
}
