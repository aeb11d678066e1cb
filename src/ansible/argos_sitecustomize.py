"""Argos: the ansible-playbook controller's forked workers die with their parent.

Argos writes this file as ``sitecustomize.py`` into a run's private folder and puts that folder
first on PYTHONPATH, so every Python interpreter of the run imports it at start-up. It acts only
in the interpreter whose environment has ``ARGOS_PDEATHSIG=1`` (ansible-playbook itself): there
it registers an at-fork hook that arms ``PR_SET_PDEATHSIG(SIGKILL)`` in every child forked from
the main thread (Ansible's ``WorkerProcess`` uses ``os.fork`` through multiprocessing, and the
kernel clears the death signal on fork). It then removes ``ARGOS_PDEATHSIG`` and its own folder
from the environment, so the modules that tasks run do not see them. Module processes are left
alone on purpose: Python code that daemonizes by a double fork (``async`` tasks) would otherwise
be killed by its own intermediate child's exit. The run's supervisor kills those.

Forks from other threads are not armed: the kernel sends the death signal when the forking
*thread* ends, and a helper thread may end long before its child should. Another
``sitecustomize`` that this file shadows is still loaded.
"""

import os
import sys


def _argos_arm_pdeathsig():
    import _thread
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    sigkill = 9
    state = {"main": _thread.get_ident(), "parent": None}

    def before():
        # Runs in the parent: remember who forks, and whether from the main thread.
        if _thread.get_ident() == state["main"]:
            state["parent"] = os.getpid()
        else:
            state["parent"] = None

    def after_in_child():
        parent = state["parent"]
        state["main"] = _thread.get_ident()
        if parent is None:
            return
        libc.prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal will ever come.
        if os.getppid() != parent:
            os.kill(os.getpid(), sigkill)

    os.register_at_fork(before=before, after_in_child=after_in_child)


def _argos_forget_ourselves(here):
    os.environ.pop("ARGOS_PDEATHSIG", None)
    parts = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if parts and os.path.abspath(parts[0] or ".") == here:
        rest = os.pathsep.join(parts[1:])
        if rest:
            os.environ["PYTHONPATH"] = rest
        else:
            os.environ.pop("PYTHONPATH", None)


def _argos_chain_load(here):
    # Load the sitecustomize we shadow, if the interpreter has one.
    import importlib.machinery
    import importlib.util

    path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


def _argos_main():
    here = os.path.dirname(os.path.abspath(__file__))
    if os.environ.get("ARGOS_PDEATHSIG") == "1":
        try:
            _argos_arm_pdeathsig()
        except Exception as e:  # never break the playbook for this
            sys.stderr.write(f"argos sitecustomize: cannot arm PR_SET_PDEATHSIG: {e}\n")
        _argos_forget_ourselves(here)
    _argos_chain_load(here)


_argos_main()
