"""Tests only: a bytecode cache for the Python that Ansible's modules run from their zip.

Ansible sends each module as an AnsiballZ zip of source files, which Python's zipimport
compiles again in every module process (about 0.12 of its 0.22 CPU-seconds here; the suite
runs several hundred). The tests' hosts run modules through `python` beside this file, which
puts this folder first on PYTHONPATH, so every module process imports this: it keeps each
compiled source in ARGOS_TEST_PYC_CACHE, keyed by the source's SHA-256 and the interpreter's
magic number, and gives later processes that code with their own file names (tracebacks read
as before). Same source, same code: what a module does is unchanged. Without zipimport's
private `_compile_source` (another Python), or without the variable, this does nothing.
"""

import hashlib
import importlib.util
import marshal
import os
import types
import zipimport

_CACHE = os.environ.get("ARGOS_TEST_PYC_CACHE")
_compile = getattr(zipimport, "_compile_source", None)


def _renamed(code, filename):
    """The code object, and every code object inside it, with `filename` as its file name."""
    consts = tuple(_renamed(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _cached_compile(pathname, source):
    key = hashlib.sha256(importlib.util.MAGIC_NUMBER + source).hexdigest()
    path = os.path.join(_CACHE, key[:2], key + ".code")
    try:
        with open(path, "rb") as f:
            return _renamed(marshal.load(f), pathname)
    except (OSError, EOFError, ValueError, TypeError):
        pass
    code = _compile(pathname, source)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "wb") as f:
            marshal.dump(code, f)
        os.replace(tmp, path)
    except OSError:
        pass
    return code


if _CACHE and _compile is not None:
    zipimport._compile_source = _cached_compile
