#!/usr/bin/env python3
"""Finds the lines of a pip requirements file that cannot install on this host, so a deploy
stops with the reason instead of failing deep inside pip (or hanging on a dead git:// host).

Usage: check_requirements.py REQUIREMENTS
Exit 0: nothing known to fail. Exit 3: the first line of stdout is one sentence for the job's
first line; the following lines list every problem. Any other exit is an error of this script.
"""
import re
import shutil
import sys

# Sources that no longer answer, or that need what a build host does not have.
SOURCES = [
    (r"^git\+git://", "the git:// protocol, which GitHub turned off in 2022"),
    (r"code\.google\.com", "Google Code, shut down in 2016"),
    (r"^git\+ssh://|^git\+git@", "an SSH-only source, which needs a key for it on the host"),
]

# Pins that cannot build or import on a newer Python: (package, below this version,
# from this Python on, why).
PINS = [
    ("kombu", (4,), (3, 7), "imports uuid._uuid_generate_random, removed in Python 3.7"),
    ("numpy", (1, 26), (3, 12), "has no build for Python 3.12 (distutils was removed)"),
    ("scipy", (1, 11), (3, 12), "has no build for Python 3.12"),
    ("scikit-learn", (1, 3), (3, 12), "has no build for Python 3.12"),
    ("pycrypto", (99,), (3, 12), "is unmaintained since 2013 and does not build on Python 3.12"),
]


def version(text):
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def problems(lines, python):
    found = []
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        for pattern, why in SOURCES:
            if re.search(pattern, line):
                found.append(f"{line} ({why})")
        if line.startswith("bzr+") and shutil.which("bzr") is None:
            found.append(f"{line} (Bazaar, which this host does not have)")
        pin = re.match(r"^([A-Za-z0-9_.-]+)\s*==\s*([0-9][^\s;]*)", line)
        if pin:
            name = pin.group(1).lower().replace("_", "-")
            for package, below, since, why in PINS:
                if name == package and version(pin.group(2)) < below and python >= since:
                    found.append(f"{line} ({why})")
    return found


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    python = sys.version_info[:2]
    found = problems(lines, python)
    if not found:
        return 0
    shown = "; ".join(found[:2]) + (f"; and {len(found) - 2} more" if len(found) > 2 else "")
    print(
        f"the app's requirements.txt cannot install with Python {python[0]}.{python[1]} on this "
        f"host: {shown}. Pin app_version to a ref whose requirements install (README: What a "
        f"team must decide before the app installs)"
    )
    for p in found:
        print(f"- {p}")
    return 3


if __name__ == "__main__":
    sys.exit(main())
