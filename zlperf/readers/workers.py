"""Decoding in forked worker processes: independent parts of a file (per-CPU buffers) decoded on other
cores while the caller analyses, delivered in exactly the order one process would give them.

numpy's small per-page steps hold the GIL, so threads cannot share the decode; processes can. Each
worker is forked after the file is open (it inherits the reader and its mmap) and decodes the parts
given to it, in order; part ``i`` goes to worker ``i % jobs``. Messages are pickled (protocol 5) with
numpy columns sent out of band over a pipe, so a column is copied once into the reader's memory and
never re-encoded. A worker that runs ahead blocks once its pipe is full, after one decoded run: memory
stays at about one run per worker (and a 1 MB pipe) whatever the file size.
"""

from __future__ import annotations

__all__ = ["default_jobs", "run_in_workers", "WorkerError"]

import fcntl
import os
import pickle
import signal
import struct
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from zlperf.errors import ZlperfError

_HEAD = struct.Struct("<QI")  # pickle length, number of out-of-band buffers
_LEN = struct.Struct("<Q")
#: Largest out-of-band buffer or pickle a worker may announce (a run's columns are tens of MB): a
#: damaged or foreign stream cannot make the reader allocate more.
_MAX_MESSAGE = 1 << 31
#: Pipe capacity asked for (Linux's default 64 KB costs a context switch per 64 KB of columns); the
#: kernel's limit for unprivileged users is 1 MB.
_PIPE_BYTES = 1 << 20

#: ``emit(message)`` sends one picklable message from a worker to the reader.
Emit = Callable[[Any], None]


class WorkerError(ZlperfError):
    """A worker process failed without saying why (killed, or its pipe broke)."""


def default_jobs(limit: int = 8) -> int:
    """Processes to decode with when the caller gave none: the cores this process may run on (at most
    ``limit``), or ``ZLPERF_JOBS`` from the environment."""
    env = os.environ.get("ZLPERF_JOBS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ZlperfError(f"ZLPERF_JOBS={env!r}: give a number of processes (1: no workers)") from None
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(limit, cores))


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view.nbytes:
        n = os.write(fd, view)
        view = view[n:]


def _send(fd: int, message: Any) -> None:
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    head = _HEAD.pack(len(body), len(raws)) + b"".join(_LEN.pack(r.nbytes) for r in raws)
    _write_all(fd, head + body)
    for r in raws:
        _write_all(fd, r)


def _read_into(fd: int, view: memoryview) -> bool:
    """Fill ``view`` from ``fd``; False on end of stream before the first byte, error after it."""
    got = 0
    while got < view.nbytes:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            if got == 0:
                return False
            raise WorkerError("a decoding worker stopped in the middle of a message (killed?)")
        got += n
    return True


def _receive(fd: int) -> Any:
    head = bytearray(_HEAD.size)
    if not _read_into(fd, memoryview(head)):
        raise WorkerError("a decoding worker ended without finishing (killed, or out of memory?)")
    size, count = _HEAD.unpack(head)
    if size > _MAX_MESSAGE or count > 1 << 20:
        raise WorkerError(f"a decoding worker sent a malformed message ({size} bytes, {count} buffers)")
    lens = bytearray(_LEN.size * count)
    _read_into(fd, memoryview(lens))
    body = bytearray(size)
    _read_into(fd, memoryview(body))
    buffers = []
    for (n,) in _LEN.iter_unpack(lens):
        if n > _MAX_MESSAGE:
            raise WorkerError(f"a decoding worker sent a malformed message (a {n}-byte buffer)")
        # Not zeroed first (bytearray would be); writable: the reader shifts positions in place.
        buf = np.empty(n, np.uint8)
        _read_into(fd, memoryview(buf))
        buffers.append(buf)
    return pickle.loads(body, buffers=buffers)


def _child(fd: int, work: Callable[[Sequence[Any], Emit], None], parts: Sequence[Any]) -> None:
    """The worker's whole life: decode its parts, say it ended (or how it failed), exit without cleanup."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C in the terminal: the reader handles it
        work(parts, lambda message: _send(fd, ("msg", message)))
        _send(fd, ("end", None))
    except BaseException as exc:  # handed to the reader, raised there
        try:
            try:
                pickle.dumps(exc)
            except Exception:
                exc = ZlperfError(f"decoding worker: {type(exc).__name__}: {exc}")
            _send(fd, ("error", exc))
        except BaseException:
            code = 1
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the parent's buffers


def run_in_workers(parts: Sequence[Any], jobs: int, work: Callable[[Sequence[Any], Emit], None],
                   done: Callable[[Any], bool]) -> Iterator[Any]:
    """Yield the messages of ``work`` over ``parts``, in the order ``work(parts, emit)`` would emit them
    in one process, with part ``i`` decoded in worker ``i % jobs``.

    ``work(my_parts, emit)`` runs in each worker on its parts, in their order, and must emit at least
    one message per part, the last of which ``done(message)`` is true for (that is how the reader knows
    to move on to the next part's worker). A worker's exception is raised here; closing the iterator
    early stops the workers.
    """
    jobs = max(1, min(jobs, len(parts)))
    pids: list[int] = []
    fds: list[int] = []
    try:
        for w in range(jobs):
            r, wfd = os.pipe()
            try:
                fcntl.fcntl(wfd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)
            except OSError:  # a lower limit: the default size works, slower
                pass
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child (coverage does not follow it)
                os.close(r)
                for other in fds:
                    os.close(other)
                _child(wfd, work, parts[w::jobs])
            os.close(wfd)
            pids.append(pid)
            fds.append(r)
        for i in range(len(parts)):
            fd = fds[i % jobs]
            while True:
                kind, message = _receive(fd)
                if kind == "error":
                    raise message
                if kind != "msg":
                    raise WorkerError("a decoding worker ended before finishing its part")
                yield message
                if done(message):
                    break
        for fd in fds:  # every worker says it ended (and hands over nothing more)
            kind, message = _receive(fd)
            if kind == "error":
                raise message
    finally:
        for fd in fds:
            os.close(fd)
        _reap(pids)


def _reap(pids: list[int]) -> None:
    """Stop (if still running) and wait for the workers this reader started."""
    for pid in pids:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done == 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except ChildProcessError:  # already reaped
            pass

