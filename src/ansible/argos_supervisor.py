"""Argos run supervisor: the one process between argos and ansible-playbook.

Started by argos as ``python -S -E argos_supervisor.py COMMAND ARGS...`` with ``ARGOS_RUN_DIR``
and ``ARGOS_RUN_OWNER`` in its environment, ``PR_SET_PDEATHSIG(SIGTERM)`` armed and the stop
signals blocked (both survive exec). It

* makes itself a child subreaper, so every process of the run that loses its parent (the shell
  and module of a task whose worker died, a daemonized ssh master) is re-parented to it instead
  of init, and stays findable as its descendant;
* runs COMMAND as its child, with ``PR_SET_PDEATHSIG(SIGKILL)`` armed;
* waits with ``sigtimedwait`` for the child's exit, a stop signal (SIGTERM, SIGHUP, SIGINT: argos
  cancels, or argos died and the death signal arrived) or, once a second, a changed parent pid;
* then kills with SIGKILL every descendant and every process whose environment names this run
  (``ARGOS_RUN_DIR``), until none is left (at most GRACE seconds), removes the run folder and
  exits with the child's status.

Standard library only: it runs with ``-S`` (no site, so no sitecustomize) under whatever
Python runs ansible-playbook.
"""

import ctypes
import os
import shutil
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE = 5.0
STOP = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}


def reap(main, status):
    """Reaps every exited child; returns the main child's wait status once it has exited."""
    while True:
        try:
            pid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == main:
            status = st


def parents():
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields and fields[0] != b"Z":
            out[int(name)] = int(fields[1])
    return out


def members(me, marker):
    """Live (not zombie) processes of this run other than me: descendants and marked ones."""
    ppid = parents()
    children = {}
    for child, parent in ppid.items():
        children.setdefault(parent, []).append(child)
    found = set()
    frontier = [me]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    for pid in ppid:
        if pid == me or pid in found:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    found.add(pid)
        except OSError:
            pass
    return found


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("argos-supervisor: no command\n")
        return 2
    run_dir = os.environ.get("ARGOS_RUN_DIR", "")
    owner = os.environ.get("ARGOS_RUN_OWNER", "")
    marker = os.fsencode("ARGOS_RUN_DIR=" + run_dir)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    watched = STOP | {signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    me = os.getpid()
    parent = os.getppid()
    owner_pid = owner.split(":")[0]
    stop = owner_pid.isdigit() and int(owner_pid) != parent  # argos died before we started

    main_pid = None
    status = None
    if not stop:
        main_pid = os.fork()
        if main_pid == 0:
            try:
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if os.getppid() != me:
                    os._exit(1)
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                os.execvp(sys.argv[1], sys.argv[1:])
            except BaseException as e:
                try:
                    sys.stderr.write(f"argos-supervisor: cannot start {sys.argv[1]}: {e}\n")
                finally:
                    os._exit(127)

    while not stop and status is None:
        info = signal.sigtimedwait(watched, 1.0)
        if info is None:
            stop = os.getppid() != parent
        elif info.si_signo == signal.SIGCHLD:
            status = reap(main_pid, status)
        else:
            stop = True

    # The run is over, one way or another: nothing of it may outlive this process.
    deadline = time.monotonic() + GRACE
    while True:
        status = reap(main_pid, status)
        left = members(me, marker)
        if not left or time.monotonic() > deadline:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)
    if run_dir and os.path.isabs(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
    if left:
        sys.stderr.write(f"argos-supervisor: processes {sorted(left)} survived SIGKILL\n")

    if stop or status is None:
        return 128 + signal.SIGTERM
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        # Die the same way, so argos sees the same status as without a supervisor.
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(me, sig)
        return 128 + sig
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


if __name__ == "__main__":
    sys.exit(main())
