//! Reading `/proc` (Linux): process ids, parents, states, start times, environments and pid
//! namespaces, for finding and killing the processes of a playbook run.

use std::path::Path;
use std::time::{Duration, Instant};

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub ppid: u32,
    /// One letter: R, S, D, Z (zombie), T...
    pub state: char,
    /// Field 22: clock ticks after boot when the process started; with the pid it names a
    /// process for good (a reused pid has another start time).
    pub start: u64,
}

impl Stat {
    /// A zombie has exited; only its parent's `wait` is missing.
    pub fn exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Every process id in `/proc`.
pub(crate) fn pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

pub(crate) fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses a `stat` line. The command name is in parentheses and may contain anything, so the
/// fields are read after the last `)`: state is field 3, ppid 4, start time 22.
fn parse_stat(line: &str) -> Option<Stat> {
    let rest = line.get(line.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The start time of this process (see [`Stat::start`]).
pub(crate) fn self_start() -> u64 {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *START.get_or_init(|| stat(std::process::id()).map_or(0, |s| s.start))
}

/// Whether the process `pid` that started at `start` still runs (a zombie does not).
pub(crate) fn alive(pid: u32, start: u64) -> bool {
    stat(pid).is_some_and(|s| s.start == start && !s.exited())
}

/// The value of `name` in the environment a process was started with.
pub(crate) fn env_var(environ: &[u8], name: &str) -> Option<String> {
    environ.split(|b| *b == 0).find_map(|entry| {
        let rest = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(rest).into_owned())
    })
}

pub(crate) fn environ(pid: u32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ")).ok()
}

/// The pid namespace of a process, as the link text (`pid:[4026531836]`).
pub(crate) fn pid_namespace(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The command line, arguments joined by spaces (for reports).
pub(crate) fn cmdline(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let parts: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    parts.join(" ")
}

/// The live (not zombie) processes whose environment has `ARGOS_RUN_DIR=<run_dir>`.
pub(crate) fn run_members(run_dir: &Path) -> Vec<(u32, u64)> {
    let marker = format!("{}={}", super::ENV_RUN_DIR, run_dir.display());
    let me = std::process::id();
    pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|&pid| environ(pid).is_some_and(|env| env.split(|b| *b == 0).any(|e| e == marker.as_bytes())))
        .filter_map(|pid| stat(pid).filter(|s| !s.exited()).map(|s| (pid, s.start)))
        .collect()
}

/// Every live descendant of `root` (children, their children...), from the parent links.
pub(crate) fn descendants(root: u32) -> Vec<(u32, u64)> {
    let all: Vec<(u32, Stat)> = pids().into_iter().filter_map(|p| Some((p, stat(p)?))).collect();
    let mut found: Vec<(u32, u64)> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, s) in &all {
            if s.ppid == parent && !found.iter().any(|(p, _)| p == pid) {
                frontier.push(*pid);
                if !s.exited() {
                    found.push((*pid, s.start));
                }
            }
        }
    }
    found
}

/// Sends SIGKILL to each process that is still the one named (pid and start time).
pub(crate) fn kill_all(procs: &[(u32, u64)]) {
    for &(pid, start) in procs {
        if alive(pid, start) {
            // SAFETY: kill only sends a signal; the start time check makes sure the pid was
            // not reused since it was listed.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// Polls until none of `procs` runs any more or `limit` has passed; returns those still running.
pub(crate) fn wait_gone(procs: &[(u32, u64)], limit: Duration) -> Vec<(u32, u64)> {
    let deadline = Instant::now() + limit;
    loop {
        let left: Vec<(u32, u64)> = procs.iter().copied().filter(|&(p, s)| alive(p, s)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_is_read_after_the_command_name() {
        let line = "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 1";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 17,
                state: 'S',
                start: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        assert!(self_start() > 0);
        assert!(alive(me, self_start()));
        assert!(!alive(me, self_start() + 1), "a reused pid is another process");
    }

    #[test]
    fn an_environment_variable_is_found_exactly() {
        let env = b"A=1\0ARGOS_RUN_DIR_X=no\0ARGOS_RUN_DIR=/r/1\0";
        assert_eq!(env_var(env, "ARGOS_RUN_DIR").as_deref(), Some("/r/1"));
        assert_eq!(env_var(env, "B"), None);
    }
}
