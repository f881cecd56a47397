"""Keeping libtracecmd's crashes out of the interpreter: zlperf's own checks first, then a probe in a child.

libtracecmd 3.1.6's tracecmd_open segfaults, aborts or divides by zero on some damaged files (a v6
file cut in its data, a v7 file cut in its header, page size 0) and loops on others (a section
size near 2^64). A file reaches the library only after the fast reader's container parse finds
nothing wrong with it, and after tracecmd_open survived it in a forked child.
"""

from __future__ import annotations

__all__ = ["check_file", "probe_open", "open_checked", "in_child", "PROBE_SECONDS"]

import ctypes
import os
import pickle
import signal
import time
from typing import Callable, Iterator, Optional, TypeVar

from zlperf.errors import TraceFormatError, ZlperfError
from zlperf.readers.libtracecmd.bindings import OPEN_FLAGS, TraceCmdLib, load_library

T = TypeVar("T")

#: How long tracecmd_open may take in the probe before the file is called a hang.
PROBE_SECONDS = 60.0

_USE_FAST = "the fast reader (the default, without --reader libtracecmd) reads what is intact"
_REFUSED = "libtracecmd cannot read this trace.dat (truncated or damaged headers, sections or CPU data)"


def _first_damage(f) -> Optional[str]:
    """The first thing wrong in the file's ring-buffer data, by the fast reader's own page walk
    (every chunk inflated, every page header and record header checked), or None."""
    from zlperf.readers.tracedat.ringbuffer import decode_pages

    for buf in f.buffers:
        if buf.latency:
            continue
        for cd in buf.cpus:
            found: list[str] = []
            for run in f.page_runs(buf, cd, found.append):
                if found:
                    break
                problems = decode_pages(run.data, buf.page_size, f.header_page, f.big_endian).problems
                if problems:
                    page, what = problems[0]
                    found.append(f"cpu {cd.cpu}: page {run.first_page + page}: {what}")
            if found:
                return f"buffer {buf.name!r}: {found[0]}" if buf.name else found[0]
    return None


def check_file(path: str, name: Optional[str] = None) -> list[str]:
    """zlperf's own checks of the whole file; a :class:`TraceFormatError` for one libtracecmd must not see.

    A file the fast reader can only read around (CPU data cut short, an unreadable section or
    buffer, an implausible CPU count, a chunk that does not inflate, a page or record header that
    cannot be) is refused: libtracecmd does not survive such damage. Returns the notes the checks
    made (what is assumed, what is cut that nothing reads), for the caller's warnings.
    """
    from zlperf.readers.tracedat.container import TraceDatFile

    f = TraceDatFile(path, name)
    try:
        damage = list(f.damage)
        if not damage:
            problem = _first_damage(f)
            damage += [problem] if problem else []
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
        raise TraceFormatError(name, None, f"libtracecmd crashes on this file ({_signal_name(os.WTERMSIG(status))} "
                               "while opening it)", _USE_FAST)
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


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def in_child(produce: Callable[[], Iterator[T]], warnings: list[str], name: str) -> Iterator[T]:
    """What ``produce()`` yields, made in a forked child and sent back pickled, in order.

    For the record reading no check can vouch for: libtracecmd runs in the child, so a crash
    there ends the stream with a warning saying what was lost, not the interpreter. Warnings the
    child adds to ``warnings`` come back; a :class:`ZlperfError` in the child is raised here (as
    its one line). Stopping the iteration early stops the child.
    """
    rfd, wfd = os.pipe()
    before = len(warnings)
    pid = os.fork()
    if pid == 0:  # the child: only os._exit leaves (no flush of the parent's buffers, no atexit)
        code = 0
        try:
            os.close(rfd)
            with os.fdopen(wfd, "wb") as out:
                try:
                    for item in produce():
                        pickle.dump((0, item), out, protocol=pickle.HIGHEST_PROTOCOL)
                        out.flush()  # what is made is the parent's, even if the next item crashes
                    pickle.dump((1, warnings[before:]), out, protocol=pickle.HIGHEST_PROTOCOL)
                except ZlperfError as exc:
                    pickle.dump((2, str(exc)), out, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:  # a broken pipe (the parent stopped reading) or a bug: just leave
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    done = False
    try:
        with os.fdopen(rfd, "rb") as src:
            while True:
                try:
                    kind, payload = pickle.load(src)
                except (EOFError, pickle.UnpicklingError):
                    break
                if kind == 0:
                    yield payload
                elif kind == 1:
                    warnings.extend(payload)
                    done = True
                    break
                else:
                    done = True
                    raise ZlperfError(payload)
    finally:
        if not done:
            try:
                os.kill(pid, signal.SIGKILL)  # stopped early, or the stream broke: the child is not needed
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
    if not done and os.WIFSIGNALED(status) and os.WTERMSIG(status) != signal.SIGKILL:
        warnings.append(f"{name}: libtracecmd crashed ({_signal_name(os.WTERMSIG(status))}) while reading the "
                        "events; the events after the last ones shown are lost (the fast reader reads around damage)")
    elif not done:
        warnings.append(f"{name}: libtracecmd's reading stopped early (exit status {os.WEXITSTATUS(status)}); "
                        "the events after the last ones shown are lost")

