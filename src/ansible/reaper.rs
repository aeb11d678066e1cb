//! Who owns a playbook run, and the sweep that kills the processes and removes the run folders
//! of owners that are gone (an argos killed with SIGKILL, a replica that died).
//!
//! The convention: every process of a run carries `ARGOS_RUN_OWNER=<pid>:<start>` (the argos
//! process that started the run: its pid and its start time, field 22 of `/proc/<pid>/stat`, so
//! a reused pid is told apart) and `ARGOS_RUN_DIR=<run folder>` in its environment, which its
//! children inherit. Every run folder holds an `argos-owner` file with the same owner, plus the
//! host name and boot id. The engine puts run folders under `<state>/runs/` ([`runs_dir`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::procfs;
use crate::error::{Error, Result};

/// The file in each run folder that names the argos process owning it.
pub const OWNER_FILE: &str = "argos-owner";

/// How long a sweep waits for the processes it killed to be gone.
const SWEEP_WAIT: Duration = Duration::from_secs(5);

/// Where the engine keeps run folders: `<state>/runs`.
pub fn runs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("runs")
}

/// A fresh run folder name under [`runs_dir`]: `<role>-<pid>-<unix nanos>`.
pub fn new_run_dir(state_dir: &Path, role: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    runs_dir(state_dir).join(format!("{role}-{}-{nanos}", std::process::id()))
}

/// An argos process, named for good by its pid and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub pid: u32,
    pub start: u64,
}

impl Owner {
    pub fn current() -> Owner {
        Owner {
            pid: std::process::id(),
            start: procfs::self_start(),
        }
    }

    /// The value of `ARGOS_RUN_OWNER`.
    pub fn marker(&self) -> String {
        format!("{}:{}", self.pid, self.start)
    }

    pub fn parse(marker: &str) -> Option<Owner> {
        let (pid, start) = marker.trim().split_once(':')?;
        Some(Owner {
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
        })
    }

    pub fn alive(&self) -> bool {
        procfs::alive(self.pid, self.start)
    }
}

/// Creates the run folder (mode 0700) with its owner file; returns its canonical path, the one
/// the processes' `ARGOS_RUN_DIR` names.
pub(crate) fn create_run_dir(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |e: std::io::Error| Error::Io(format!("cannot create {}: {e}", dir.display()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let dir = std::fs::canonicalize(dir).map_err(io)?;
    let owner = Owner::current();
    let text = format!(
        "pid={}\nstart={}\nhost={}\nboot={}\n",
        owner.pid,
        owner.start,
        host_name(),
        boot_id()
    );
    // Written aside and renamed, so a sweep never reads half a file (and misjudges the owner).
    let aside = dir.join(format!("{OWNER_FILE}.new"));
    let written = std::fs::write(&aside, text).and_then(|()| std::fs::rename(&aside, dir.join(OWNER_FILE)));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(io(e));
    }
    Ok(dir)
}

fn host_name() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
}

fn boot_id() -> String {
    read_trimmed("/proc/sys/kernel/random/boot_id")
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether the argos process that owns a run folder is gone: `Some(true)` dead, `Some(false)`
/// alive, `None` when that cannot be told (another host's folder, no owner file and a name not
/// of the `<role>-<pid>-<nanos>` form).
fn folder_owner_dead(dir: &Path) -> Option<bool> {
    let Ok(text) = std::fs::read_to_string(dir.join(OWNER_FILE)) else {
        return legacy_owner_dead(dir);
    };
    let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('='));
    let (pid, start, host, boot) = (field("pid")?, field("start")?, field("host")?, field("boot")?);
    let owner = Owner::parse(&format!("{pid}:{start}"))?;
    if host != host_name() {
        return None; // a state folder shared between machines: not ours to judge
    }
    if boot != boot_id() {
        return Some(true); // this machine rebooted since
    }
    Some(!owner.alive())
}

/// Run folders made before owner files existed are named `<role>-<pid>-<unix nanos>`: their
/// owner is gone if no process has that pid or the one that has it started after the folder.
fn legacy_owner_dead(dir: &Path) -> Option<bool> {
    let name = dir.file_name()?.to_str()?;
    let mut parts = name.rsplitn(3, '-');
    let nanos: u128 = parts.next()?.parse().ok()?;
    let pid: u32 = parts.next()?.parse().ok()?;
    parts.next()?;
    let Some(stat) = procfs::stat(pid).filter(|s| !s.exited()) else {
        return Some(true);
    };
    let started = boot_time_secs()? as f64 + stat.start as f64 / clock_ticks()?;
    // Boot time has whole seconds only: allow some slack.
    Some(started > nanos as f64 / 1e9 + 2.0)
}

fn boot_time_secs() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

/// A process the sweep killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptProcess {
    pub pid: u32,
    /// Its command line.
    pub command: String,
    /// The run folder its environment names.
    pub run_dir: Option<PathBuf>,
    /// The dead owner, as `ARGOS_RUN_OWNER` names it (`pid:start`).
    pub owner: String,
}

/// What [`sweep_orphans`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Processes of runs whose owner is gone, killed with SIGKILL.
    pub killed: Vec<SweptProcess>,
    /// Pids among `killed` still running when the bounded wait ended (normally none).
    pub survivors: Vec<u32>,
    /// Run folders of dead owners that were removed.
    pub removed_dirs: Vec<PathBuf>,
    /// What could not be done (a folder that could not be removed...).
    pub errors: Vec<String>,
}

impl SweepReport {
    /// Nothing found, nothing done.
    pub fn is_empty(&self) -> bool {
        self.killed.is_empty() && self.removed_dirs.is_empty() && self.errors.is_empty()
    }
}

impl fmt::Display for SweepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "killed {} orphaned playbook process(es), removed {} run folder(s)",
            self.killed.len(),
            self.removed_dirs.len()
        )?;
        if !self.survivors.is_empty() {
            write!(f, "; still running after SIGKILL: {:?}", self.survivors)?;
        }
        for e in &self.errors {
            write!(f, "; {e}")?;
        }
        Ok(())
    }
}

/// Kills, with SIGKILL, every process on this machine (in this pid namespace) whose
/// `ARGOS_RUN_OWNER` names an argos process that is gone (no such pid, or the pid now belongs to
/// a process with another start time), waits up to 5 s until they are gone, and removes their run
/// folders. Then removes every folder under `runs_dir` (normally [`runs_dir`]`(<state>)`) whose
/// owner is gone. Processes and folders of live owners, this process included, are left alone.
///
/// A folder is removed only if its owner file (or, for folders made before owner files, its
/// `<role>-<pid>-<nanos>` name) says its owner is gone; a folder named only by a process's
/// environment is not trusted on its own. Blocking (reads `/proc`, may wait): call it from
/// `spawn_blocking` or before the runtime starts. Cheap when there is nothing to do.
pub fn sweep_orphans(runs_dir: Option<&Path>) -> SweepReport {
    let mut report = SweepReport::default();
    let me = std::process::id();
    let my_ns = procfs::pid_namespace(me);
    let mut targets: Vec<(u32, u64)> = Vec::new();
    for pid in procfs::pids() {
        if pid == me {
            continue;
        }
        let Some(env) = procfs::environ(pid) else { continue };
        let Some(marker) = procfs::env_var(&env, super::ENV_RUN_OWNER) else {
            continue;
        };
        // A pid in the marker means something only in the namespace it was taken in.
        if procfs::pid_namespace(pid) != my_ns {
            continue;
        }
        let Some(owner) = Owner::parse(&marker) else { continue };
        if owner.alive() {
            continue;
        }
        let Some(stat) = procfs::stat(pid).filter(|s| !s.exited()) else {
            continue;
        };
        targets.push((pid, stat.start));
        report.killed.push(SweptProcess {
            pid,
            command: procfs::cmdline(pid),
            run_dir: procfs::env_var(&env, super::ENV_RUN_DIR).map(PathBuf::from),
            owner: marker,
        });
    }
    procfs::kill_all(&targets);
    report.survivors = procfs::wait_gone(&targets, SWEEP_WAIT)
        .into_iter()
        .map(|(p, _)| p)
        .collect();

    let mut dirs: Vec<PathBuf> = report.killed.iter().filter_map(|k| k.run_dir.clone()).collect();
    if let Some(parent) = runs_dir {
        if let Ok(entries) = std::fs::read_dir(parent) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        if !dir.is_dir() || folder_owner_dead(&dir) != Some(true) {
            continue;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => report.removed_dirs.push(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report.errors.push(format!("cannot remove {}: {e}", dir.display())),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_marker_round_trips() {
        let o = Owner { pid: 42, start: 123456 };
        assert_eq!(o.marker(), "42:123456");
        assert_eq!(Owner::parse("42:123456"), Some(o));
        assert_eq!(Owner::parse("42"), None);
        assert_eq!(Owner::parse("x:1"), None);
        assert!(Owner::current().alive());
    }

    #[test]
    fn a_run_folder_names_its_owner_and_judges_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = create_run_dir(&tmp.path().join("runs/web-1-2")).unwrap();
        assert_eq!(folder_owner_dead(&dir), Some(false), "this process owns it");
        let text = std::fs::read_to_string(dir.join(OWNER_FILE)).unwrap();
        let me = Owner::current();
        let dead = text.replace(&format!("start={}", me.start), &format!("start={}", me.start + 1));
        std::fs::write(dir.join(OWNER_FILE), dead).unwrap();
        assert_eq!(folder_owner_dead(&dir), Some(true), "same pid, other start time");
        let elsewhere = text.replace(&format!("host={}", host_name()), "host=another-machine");
        std::fs::write(dir.join(OWNER_FILE), elsewhere).unwrap();
        assert_eq!(folder_owner_dead(&dir), None, "another machine's folder");
    }

    #[test]
    fn legacy_folders_are_judged_by_their_name() {
        let tmp = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let mine = tmp.path().join(format!("web-{}-{now}", std::process::id()));
        assert_eq!(legacy_owner_dead(&mine), Some(false));
        // This process started long after 2001.
        let old = tmp
            .path()
            .join(format!("web-{}-1000000000000000000", std::process::id()));
        assert_eq!(legacy_owner_dead(&old), Some(true));
        assert_eq!(legacy_owner_dead(&tmp.path().join("notes")), None);
    }

    #[test]
    fn new_run_dirs_live_under_runs() {
        let d = new_run_dir(Path::new("/state"), "api");
        assert_eq!(d.parent(), Some(Path::new("/state/runs")));
        let name = d.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(&format!("api-{}-", std::process::id())), "{name}");
        assert_eq!(legacy_owner_dead(&d), Some(false), "the name alone names a live owner");
    }
}
