"""Keeping libtracecmd's crashes out of the interpreter: zlperf's own checks first, then a probe in a child.

libtracecmd 3.1.6's tracecmd_open segfaults, aborts or divides by zero on some damaged files (a v6
file cut in its data, a v7 file cut in its header, page size 0) and loops on others (a section
size near 2^64). A file reaches the library only after the fast reader's container parse finds
nothing wrong with it, and after tracecmd_open survived it in a forked child.
"""

from __future__ import annotations

__all__ = ["check_file", "probe_open", "open_checked", "PROBE_SECONDS"]

import ctypes
import os
import signal
import time
from typing import Optional

from zlperf.errors import TraceFormatError
from zlperf.readers.libtracecmd.bindings import OPEN_FLAGS, TraceCmdLib, load_library

#: How long tracecmd_open may take in the probe before the file is called a hang.
PROBE_SECONDS = 60.0

_USE_FAST = "the fast reader (the default, without --reader libtracecmd) reads what is intact"
_REFUSED = "libtracecmd cannot read this trace.dat (truncated or damaged headers, sections or CPU data)"


def check_file(path: str, name: Optional[str] = None) -> list[str]:
    """zlperf's own container checks; a :class:`TraceFormatError` for a file libtracecmd must not see.

    A file the fast reader can only read around (CPU data cut short, an unreadable section or
    buffer, an implausible CPU count, a bad chunk header) is refused too: libtracecmd does not
    survive such damage. Returns the notes the checks made (what is assumed, what is cut that
    nothing reads), for the caller's warnings.
    """
    from zlperf.readers.tracedat.container import TraceDatFile
    from zlperf.readers.tracedat.pages import chunk_problem

    f = TraceDatFile(path, name)
    try:
        damage = list(f.damage)
        for buf in f.buffers:
            for cd in buf.cpus if buf.compressed else ():
                problem = cd.size and chunk_problem(f, buf, cd)
                if problem:
                    damage.append(f"buffer {buf.name!r}: {problem}")
        notes = list(f.warnings)
    finally:
        f.close()
    if damage:
        more = f" (and {len(damage) - 1} more problem(s))" if len(damage) > 1 else ""
        raise TraceFormatError(name or path, None, f"damaged: {damage[0]}{more}; libtracecmd does not read damaged "
                               "files safely", _USE_FAST)
    return notes


def probe_open(path: str, flags: int = OPEN_FLAGS, timeout: float = PROBE_SECONDS, name: Optional[str] = None) -> None:
    """Run tracecmd_open on ``path`` in a forked child; a crash, a hang or a refusal there is one error.

    The child opens the file, peeks at the first record (which maps the first pages) and exits;
    only its exit status comes back.
    """
    load_library()  # load before forking: a missing library is the parent's error line
    pid = os.fork()
    if pid == 0:  # the child: nothing Python-level may run after this (no flush, no atexit)
        code = 4
        try:
            null = os.open(os.devnull, os.O_WRONLY)  # libtracecmd prints its own complaints ("mmap: ...")
            os.dup2(null, 2)
            lib = load_library()
            handle = lib.tracecmd_open(path.encode(), flags)
            code = 3
            if handle:
                cpu = ctypes.c_int()
                lib.tracecmd_peek_next_data(handle, ctypes.byref(cpu))
                lib.tracecmd_close(handle)
                code = 0
        finally:
            os._exit(code)
    name = name or path
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TraceFormatError(name, None, f"libtracecmd did not finish opening this file in {timeout:.0f} s "
                                   "(a damaged size makes it loop)", _USE_FAST)
        time.sleep(0.005)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            signame = signal.Signals(sig).name
        except ValueError:
            signame = f"signal {sig}"
        raise TraceFormatError(name, None, f"libtracecmd crashes on this file ({signame} while opening it)",
                               _USE_FAST)
    code = os.WEXITSTATUS(status)
    if code == 3:
        raise TraceFormatError(name, None, _REFUSED, "check it with `trace-cmd dump --summary`; " + _USE_FAST)
    if code != 0:
        raise TraceFormatError(name, None, f"libtracecmd could not be probed (exit {code})", _USE_FAST)


def open_checked(lib: TraceCmdLib, path: str, flags: int = OPEN_FLAGS,
                 name: Optional[str] = None) -> tuple[int, list[str]]:
    """A tracecmd_open handle of ``path`` after :func:`check_file` and :func:`probe_open`, and the
    notes of the checks (``name``: the path to show in messages)."""
    name = name or path
    if not os.path.isfile(path):
        raise TraceFormatError(name, None, "no such file", "give the path of a trace.dat")
    notes = check_file(path, name)
    probe_open(path, flags, name=name)
    handle = lib.tracecmd_open(path.encode(), flags)
    if not handle:
        raise TraceFormatError(name, None, _REFUSED, "check it with `trace-cmd dump --summary`; " + _USE_FAST)
    return handle, notes
