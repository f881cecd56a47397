"""Work in forked worker processes: independent parts of a file (per-CPU buffers) decoded on other cores
while the caller analyses (the reader's chunks), or analysed there whole (:mod:`zlperf.analysis.parallel`),
what they send delivered in exactly the order one process would give it.

numpy's small per-page steps hold the GIL, so threads cannot share the decode; processes can. Each
worker is forked after the file is open (it inherits the reader and its mmap) and decodes the parts
given to it, in order; part ``i`` goes to worker ``i % jobs``. Messages are pickled (protocol 5) with
numpy columns sent out of band through a slot of shared memory (a pipe for larger messages), so a
column is copied once in and once out, never re-encoded. A worker that runs ahead waits until the reader
has copied its last message: memory stays at about one run per worker whatever the file size.
"""

from __future__ import annotations

__all__ = ["default_jobs", "run_in_workers", "Workers", "WorkerError"]

import fcntl
import gc
import mmap
import os
import pickle
import select
import signal
import struct
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from zlperf.errors import ZlperfError

_HEAD = struct.Struct("<QI?")  # pickle length, number of out-of-band buffers, whether they are in the slot
_LEN = struct.Struct("<Q")
#: Largest out-of-band buffer or pickle a worker may announce (a run's columns are tens of MB): a
#: damaged or foreign stream cannot make the reader allocate more.
_MAX_MESSAGE = 1 << 31
#: Pipe capacity asked for (Linux's default 64 KB costs a context switch per 64 KB of columns); the
#: kernel's limit for unprivileged users is 1 MB.
_PIPE_BYTES = 1 << 20
#: Shared memory per worker for one message's columns (a run of pages decodes to a little less than its
#: size; see RUN_BYTES in zlperf.readers.tracedat.pages); larger messages go through the pipe.
_SLOT_BYTES = 8 << 20

#: ``emit(message)`` sends one picklable message from a worker to the reader.
Emit = Callable[[Any], None]


class WorkerError(ZlperfError):
    """A worker process failed without saying why (killed, or its pipe broke)."""


def default_jobs(limit: int = 8) -> int:
    """Processes to work with when the caller gave none: ``ZLPERF_JOBS`` from the environment, else this
    one plus one per core the other programs leave idle (the cores this process may run on, less the
    1-minute load average, as ``make -l`` judges it), at most ``limit``. A worker on a core that is busy
    anyway only adds the cost of handing columns over."""
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
    try:
        idle = cores - os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average here
        idle = cores
    return max(1, min(limit, cores, 1 + int(idle + 0.5)))


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view.nbytes:
        n = os.write(fd, view)
        view = view[n:]


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


class _Channel:
    """One worker's way to the reader: a pipe for messages, and a shared slot for their columns.

    Columns go through the slot (one copy in, one copy out, no system call) when they fit; the
    worker reuses it once the reader says (a byte on the ack pipe) that it copied them out. Larger
    messages go whole through the pipe.
    """

    def __init__(self) -> None:
        self.rfd, self.wfd = os.pipe()
        self.ack_r, self.ack_w = os.pipe()
        try:
            fcntl.fcntl(self.wfd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)
        except OSError:  # a lower limit: the default size works, slower
            pass
        self.slot = mmap.mmap(-1, _SLOT_BYTES)  # shared and anonymous: the forked worker writes, we read
        self.pending = False  # worker side: the reader has not yet copied the slot's last message

    def worker_side(self) -> None:
        os.close(self.rfd)
        os.close(self.ack_w)

    def reader_side(self) -> None:
        os.close(self.wfd)
        os.close(self.ack_r)

    def close(self) -> None:
        os.close(self.rfd)
        os.close(self.ack_w)
        self.slot.close()

    # -- in the worker --------------------------------------------------------------------------
    def send(self, message: Any) -> None:
        buffers: list[pickle.PickleBuffer] = []
        body = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
        raws = [b.raw() for b in buffers]
        sizes = [r.nbytes for r in raws]
        total = sum(_aligned(n) for n in sizes)
        in_slot = 0 < total <= _SLOT_BYTES
        if in_slot:
            if self.pending and os.read(self.ack_r, 1) != b"\x01":  # the reader still copies the last one
                raise WorkerError("the reader went away")
            at = 0
            for r in raws:
                self.slot[at:at + r.nbytes] = r
                at += _aligned(r.nbytes)
            self.pending = True
        head = _HEAD.pack(len(body), len(raws), in_slot) + b"".join(_LEN.pack(n) for n in sizes)
        _write_all(self.wfd, head + body)
        if not in_slot:
            for r in raws:
                _write_all(self.wfd, r)

    # -- in the reader --------------------------------------------------------------------------
    def receive(self) -> Any:
        fd = self.rfd
        head = bytearray(_HEAD.size)
        if not _read_into(fd, memoryview(head)):
            raise WorkerError("a decoding worker ended without finishing (killed, or out of memory?)")
        size, count, in_slot = _HEAD.unpack(head)
        if size > _MAX_MESSAGE or count > 1 << 20:
            raise WorkerError(f"a decoding worker sent a malformed message ({size} bytes, {count} buffers)")
        lens = bytearray(_LEN.size * count)
        _read_into(fd, memoryview(lens))
        sizes = [n for (n,) in _LEN.iter_unpack(lens)]
        if in_slot and sum(_aligned(n) for n in sizes) > _SLOT_BYTES or any(n > _MAX_MESSAGE for n in sizes):
            raise WorkerError("a decoding worker sent a malformed message (buffers too large)")
        body = bytearray(size)
        _read_into(fd, memoryview(body))
        buffers = []
        at = 0
        for n in sizes:
            # Not zeroed first (bytearray would be); writable: the reader shifts positions in place.
            buf = np.empty(n, np.uint8)
            if in_slot:
                buf[:] = np.frombuffer(self.slot, np.uint8, n, at)
                at += _aligned(n)
            else:
                _read_into(fd, memoryview(buf))
            buffers.append(buf)
        if in_slot:
            # Our mapping of the slot's pages is dropped (the worker's copy stays): they do not count
            # in this process's memory between messages.
            self.slot.madvise(mmap.MADV_DONTNEED, 0, _SLOT_BYTES)
            try:
                _write_all(self.ack_w, b"\x01")
            except BrokenPipeError:  # the worker already ended: it needs the slot no more
                pass
        return pickle.loads(body, buffers=buffers)


def _aligned(n: int) -> int:
    return (n + 63) & ~63  # each column at a 64-byte boundary of the slot


def _child(ch: _Channel, work: Callable[[Sequence[Any], Emit], None], parts: Sequence[Any]) -> None:
    """The worker's whole life: decode its parts, say it ended (or how it failed), exit without cleanup."""
    code = 0
    try:
        # The objects inherited from the reader are left out of collections: walking them would write to
        # (and so copy) every page they sit on.
        gc.freeze()
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C in the terminal: the reader handles it
        work(parts, lambda message: ch.send(("msg", message)))
        ch.send(("end", None))
    except BaseException as exc:  # handed to the reader, raised there
        try:
            try:
                pickle.loads(pickle.dumps(exc))  # what the reader will do with it
            except Exception:
                exc = ZlperfError(f"decoding worker: {type(exc).__name__}: {exc}")
            ch.send(("error", exc))
        except BaseException:
            code = 1
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the parent's buffers


class Workers:
    """Worker processes forked now, one per ``jobs``, running ``work`` over ``parts`` (part ``i`` in worker
    ``i % jobs``); :meth:`messages` reads what they emit. A context manager: leaving it stops them."""

    def __init__(self, parts: Sequence[Any], jobs: int, work: Callable[[Sequence[Any], Emit], None]):
        self.parts = parts
        self.jobs = max(1, min(jobs, len(parts)))
        self.pids: list[int] = []
        self.chans: list[_Channel] = []
        try:
            for w in range(self.jobs):
                ch = _Channel()
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the child (coverage does not follow it)
                    try:
                        ch.worker_side()
                        for other in self.chans:
                            other.close()
                    finally:
                        _child(ch, work, parts[w::self.jobs])  # never returns: the child ends there
                ch.reader_side()
                self.pids.append(pid)
                self.chans.append(ch)
        except BaseException:
            self.close()
            raise

    def messages(self, done: Callable[[Any], bool]) -> Iterator[Any]:
        """Every message, in the order ``work(parts, emit)`` would emit them in one process; ``done(message)``
        is true for the last message of each part. A worker's exception is raised here."""
        chans = self.chans
        for i in range(len(self.parts)):
            ch = chans[i % self.jobs]
            while True:
                kind, message = ch.receive()
                if kind == "error":
                    raise message
                if kind != "msg":
                    raise WorkerError("a decoding worker ended before finishing its part")
                yield message
                if done(message):
                    break
        for ch in chans:  # every worker says it ended (and hands over nothing more)
            kind, message = ch.receive()
            if kind == "error":
                raise message

    def waiting(self) -> bool:
        """Whether reading the next message would wait: no worker has sent anything unread yet."""
        readable, _w, _x = select.select([ch.rfd for ch in self.chans], [], [], 0)
        return not readable

    def close(self) -> None:
        """Stop the workers still running and wait for them all."""
        for ch in self.chans:
            ch.close()
        self.chans = []
        _reap(self.pids)
        self.pids = []

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_in_workers(parts: Sequence[Any], jobs: int, work: Callable[[Sequence[Any], Emit], None],
                   done: Callable[[Any], bool]) -> Iterator[Any]:
    """Yield the messages of ``work`` over ``parts``, in the order ``work(parts, emit)`` would emit them
    in one process, with part ``i`` decoded in worker ``i % jobs`` (forked at the first message asked for).

    ``work(my_parts, emit)`` runs in each worker on its parts, in their order, and must emit at least
    one message per part, the last of which ``done(message)`` is true for (that is how the reader knows
    to move on to the next part's worker). A worker's exception is raised here; closing the iterator
    early stops the workers.
    """
    with Workers(parts, jobs, work) as workers:
        yield from workers.messages(done)


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

