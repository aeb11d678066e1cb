//! Starting a playbook's process tree so that none of it outlives the run or argos itself, and
//! stopping it: the supervisor, the death signals, the run markers, and the guard that cleans up.
//!
//! Why this much: Ansible's workers call `setsid`, so signals to the process group or session
//! of `ansible-playbook` do not reach them, and the kernel clears `PR_SET_PDEATHSIG` on every
//! fork, so a death signal armed on `ansible-playbook` covers it alone. A task's shell, its module
//! and whatever that runs (`sleep`, `apt`) are started with `fork`+`exec` by Python code that
//! runs no at-fork hooks, through `/bin/sh`. After `kill -9` of argos nothing in argos can act,
//! so the tree is laid out like this:
//!
//! ```text
//! argos ── python -S -E argos_supervisor.py ── ansible-playbook ── workers ── sh ── module ── sleep
//!          PDEATHSIG=SIGTERM, subreaper          PDEATHSIG=SIGKILL   PDEATHSIG=SIGKILL
//!                                                (pre-exec)          (our sitecustomize.py)
//! ```
//!
//! * The supervisor ([`SUPERVISOR`]) is a child subreaper: every process of the run that loses
//!   its parent is re-parented to it, so the whole run stays its descendants. When argos dies the
//!   kernel sends it SIGTERM (armed before exec, and checked with `getppid` to close the race
//!   with an argos that died first); it then kills every descendant and every process marked
//!   with this run (below) with SIGKILL, waits until they are gone (at most 5 s), removes the run
//!   folder and exits. Measured: the whole tree is gone about 50 ms after `kill -9` of argos.
//! * If the supervisor itself is killed with SIGKILL, `ansible-playbook` and its workers die by
//!   their death signals (the workers' through [`SITECUSTOMIZE`]'s at-fork hook), and argos, which
//!   sees its child end, kills what is left by marker.
//! * Every process carries `ARGOS_RUN_OWNER=<argos pid>:<start time>` and `ARGOS_RUN_DIR=<run
//!   folder>` in its environment (children inherit it), so the processes of a run are found even
//!   when something re-parented them to init, and [`super::sweep_orphans`] finds those of a dead
//!   argos at the next start.
//! * The kernel sends a death signal when the parent *thread* ends, not the process, so children
//!   are forked from one spawner thread that lives as long as argos, never from a tokio worker or
//!   blocking-pool thread that may end on its own.
//!
//! Without a Python 3 for the supervisor (the command is not a Python script and there is no
//! `python3` on PATH), `ansible-playbook` runs directly with its death signal; then grandchildren
//! of a killed argos live until the next [`super::sweep_orphans`]. Processes that clear their
//! environment (`sudo`, `env -i`) lose the markers; the supervisor still finds them as its
//! descendants, the sweep does not.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::procfs;
use super::reaper::Owner;

/// The supervisor, shipped inside the binary and written into each run folder.
pub const SUPERVISOR: &str = include_str!("argos_supervisor.py");
/// Written as `sitecustomize.py` into each run folder, which comes first on `PYTHONPATH`.
pub const SITECUSTOMIZE: &str = include_str!("argos_sitecustomize.py");
pub(crate) const SUPERVISOR_FILE: &str = "argos_supervisor.py";
pub(crate) const SITECUSTOMIZE_FILE: &str = "sitecustomize.py";

/// How long a stopped tree may take to be gone (the supervisor waits as long).
pub const STOP_WAIT: Duration = Duration::from_secs(5);

/// What to run: the program, its arguments and environment, in a run folder.
pub(crate) struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub envs: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    /// The canonical run folder, holding [`SUPERVISOR_FILE`] and [`SITECUSTOMIZE_FILE`].
    pub run_dir: PathBuf,
}

/// Starts `launch` under the supervisor (or directly, see the module doc), with piped stdout
/// and stderr and no stdin. `Err` is an error starting the process.
pub(crate) async fn spawn(launch: Launch, guard: &mut RunGuard) -> std::io::Result<Child> {
    let program = resolve(&launch.program)?;
    let python = python_for(&program);
    let mut cmd = match &python {
        Some(py) => {
            let mut c = Command::new(py);
            c.arg("-S")
                .arg("-E")
                .arg(launch.run_dir.join(SUPERVISOR_FILE))
                .arg(&program);
            c
        }
        None => Command::new(&program),
    };
    let mut pythonpath = OsString::from(&launch.run_dir);
    if let Some(old) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
        pythonpath.push(":");
        pythonpath.push(old);
    }
    cmd.args(&launch.args)
        .envs(launch.envs.iter().map(|(k, v)| (k, v)))
        .env(super::ENV_RUN_DIR, &launch.run_dir)
        .env(super::ENV_RUN_OWNER, Owner::current().marker())
        .env("ARGOS_PDEATHSIG", "1")
        .env("PYTHONPATH", pythonpath)
        .current_dir(&launch.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(false)
        .process_group(0);
    let supervised = python.is_some();
    let parent = std::process::id();
    let death_signal = if supervised { libc::SIGTERM } else { libc::SIGKILL };
    // SAFETY: runs in the forked child before exec and calls only async-signal-safe functions
    // (prctl, getppid, sigemptyset/sigaddset, pthread_sigmask); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                // argos died between fork and prctl: no death signal would ever come.
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            if supervised {
                // Keep SIGTERM from the death signal pending until the supervisor takes it
                // with sigtimedwait, even if it comes while Python is still starting.
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for s in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGCHLD] {
                    libc::sigaddset(&mut set, s);
                }
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            Ok(())
        });
    }
    let child = spawn_on_spawner_thread(cmd).await?;
    if let Some(pid) = child.id() {
        guard.started(pid, supervised);
    }
    Ok(child)
}

/// The program's absolute path: as given (relative to our working directory) if it has a
/// slash, else the first executable match on PATH. Errors like exec's: ENOENT, EACCES.
fn resolve(program: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let candidates: Vec<PathBuf> = if program.as_os_str().as_encoded_bytes().contains(&b'/') {
        vec![std::path::absolute(program)?]
    } else {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .filter(|d| d.is_absolute())
            .map(|d| d.join(program))
            .collect()
    };
    let mut error = libc::ENOENT;
    for p in candidates {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(p),
            Ok(_) => error = libc::EACCES,
            Err(_) => {}
        }
    }
    Err(std::io::Error::from_raw_os_error(error))
}

/// The Python to run the supervisor with: the interpreter of the program's `#!` line when it
/// is a Python (so the same one that runs ansible-playbook), else `python3` on PATH.
fn python_for(program: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = Vec::with_capacity(256);
    if let Ok(f) = std::fs::File::open(program) {
        let _ = f.take(256).read_to_end(&mut head);
    }
    let line = head
        .strip_prefix(b"#!")
        .map(|b| String::from_utf8_lossy(b.split(|c| *c == b'\n').next().unwrap_or(b"")).into_owned());
    let mut words = line.as_deref().unwrap_or("").split_whitespace();
    let mut interpreter = words.next().map(PathBuf::from);
    if interpreter.as_deref().and_then(Path::file_name) == Some("env".as_ref()) {
        interpreter = words
            .find(|w| !w.starts_with('-') && !w.contains('='))
            .map(PathBuf::from);
    }
    let is_python = |p: &PathBuf| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("python"))
    };
    interpreter
        .filter(is_python)
        .and_then(|p| resolve(&p).ok())
        .or_else(|| resolve(Path::new("python3")).ok())
}

/// Spawns `cmd` on the one long-lived thread that forks every child (see the module doc).
async fn spawn_on_spawner_thread(mut cmd: Command) -> std::io::Result<Child> {
    type Job = Box<dyn FnOnce() + Send>;
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("argos-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("spawn the process spawner thread");
        tx
    });
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = move || {
        let _runtime = handle.enter();
        // Nobody waits any more (the run was dropped): the child must not run unattended.
        if let Err(Ok(mut child)) = tx.send(cmd.spawn()) {
            let _ = child.start_kill();
        }
    };
    let gone = || std::io::Error::other("the process spawner thread is gone");
    spawner.send(Box::new(job)).map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?
}

/// Owns a run's folder and process tree from before the start to the end: the folder is
/// removed and no process of the run is left, whatever way the run ends. [`RunGuard::stop`]
/// (timeout, cancel) and [`RunGuard::finish`] (every end) wait until that is so; dropping the
/// guard half-way (the job's task was aborted) signals at once and leaves the waiting and the
/// removal to a thread.
pub(crate) struct RunGuard {
    run_dir: PathBuf,
    /// The supervisor (or ansible-playbook) until it is reaped; then its pid may be reused.
    root: Option<(u32, u64)>,
    supervised: bool,
    done: bool,
}

impl RunGuard {
    pub fn new(run_dir: PathBuf) -> RunGuard {
        RunGuard {
            run_dir,
            root: None,
            supervised: false,
            done: false,
        }
    }

    fn started(&mut self, pid: u32, supervised: bool) {
        // The child is not reaped yet (the Child is not waited for), so the pid is still its.
        let start = procfs::stat(pid).map_or(0, |s| s.start);
        self.root = Some((pid, start));
        self.supervised = supervised;
    }

    /// The root process was reaped.
    pub fn reaped(&mut self) {
        self.root = None;
    }

    /// Stops a running tree (timeout, cancel) and returns once it is gone, or after a bounded
    /// wait: SIGTERM to the supervisor, which kills the tree; SIGKILL to all if that fails.
    pub async fn stop(&mut self, child: &mut Child) {
        if let Some((pid, start)) = self.root {
            if self.supervised {
                signal(pid, start, libc::SIGTERM);
            } else {
                procfs::kill_all(&self.members());
            }
            if tokio::time::timeout(STOP_WAIT + Duration::from_secs(1), child.wait())
                .await
                .is_err()
            {
                procfs::kill_all(&self.members());
                let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
            }
            if child.try_wait().ok().flatten().is_some() {
                self.reaped();
            }
        }
    }

    /// Kills what is left of the run (by marker and, while the root lives, as its
    /// descendants), waits until it is gone (bounded), and removes the run folder.
    pub async fn finish(mut self) {
        self.done = true;
        let members = self.members();
        let dir = self.run_dir.clone();
        let _ = tokio::task::spawn_blocking(move || clean_up(&members, &dir)).await;
    }

    /// The root, its descendants and every process marked with this run.
    fn members(&self) -> Vec<(u32, u64)> {
        let mut all = procfs::run_members(&self.run_dir);
        if let Some(root) = self.root.filter(|&(p, s)| procfs::alive(p, s)) {
            all.push(root);
            all.extend(procfs::descendants(root.0));
        }
        all.sort_unstable();
        all.dedup();
        all
    }
}

fn signal(pid: u32, start: u64, sig: libc::c_int) {
    if procfs::alive(pid, start) {
        // SAFETY: kill only sends a signal, to our own not yet reaped child.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

fn clean_up(members: &[(u32, u64)], dir: &Path) {
    procfs::kill_all(members);
    procfs::wait_gone(members, STOP_WAIT);
    // A process that started after the listing: once more.
    let late = procfs::run_members(dir);
    procfs::kill_all(&late);
    procfs::wait_gone(&late, STOP_WAIT);
    let _ = std::fs::remove_dir_all(dir);
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Everything but the supervisor gets SIGKILL now; the supervisor gets SIGTERM so it
        // can still find what lost its markers, and SIGKILL later if it does not exit.
        let members = self.members();
        let root = self.root.filter(|_| self.supervised);
        if let Some((pid, start)) = root {
            signal(pid, start, libc::SIGTERM);
        }
        let others: Vec<(u32, u64)> = members.iter().copied().filter(|m| Some(*m) != root).collect();
        procfs::kill_all(&others);
        let dir = self.run_dir.clone();
        let spawned = std::thread::Builder::new().name("argos-run-cleanup".into()).spawn({
            let dir = dir.clone();
            move || {
                if let Some(root) = root {
                    if !procfs::wait_gone(&[root], STOP_WAIT + Duration::from_secs(1)).is_empty() {
                        procfs::kill_all(&[root]);
                    }
                }
                clean_up(&members, &dir);
            }
        });
        if spawned.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supervisor_runs_under_the_python_of_the_shebang() {
        let tmp = tempfile::tempdir().unwrap();
        let script = |name: &str, text: &str| {
            let p = tmp.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let python3 = resolve(Path::new("python3")).ok();
        let sh = resolve(Path::new("sh")).unwrap();
        let direct = script("a", &format!("#!{} -s\nimport ansible\n", sh.display()));
        assert_eq!(python_for(&direct), python3, "not a Python: python3 from PATH");
        if let Some(py) = &python3 {
            let named = script("b", &format!("#!{}\n", py.display()));
            assert_eq!(python_for(&named).as_ref(), Some(py));
            let env = script("c", "#!/usr/bin/env -S python3 -u\n");
            assert_eq!(python_for(&env).as_ref(), Some(py));
        }
    }

    #[test]
    fn a_program_is_resolved_like_exec_would() {
        assert!(resolve(Path::new("sh")).unwrap().is_absolute());
        let missing = resolve(Path::new("/nonexistent/ansible-playbook")).unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("not-executable");
        std::fs::write(&plain, "").unwrap();
        assert_eq!(resolve(&plain).unwrap_err().raw_os_error(), Some(libc::EACCES));
    }
}
