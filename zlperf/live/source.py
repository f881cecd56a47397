"""Events read live: a tracefs instance of zlperf's own, configured from a recipe, read from per_cpu/cpuN/trace_pipe_raw.

Each read takes the whole pages the kernel has for a CPU (non-blocking, partial pages included) and decodes
them with the fast reader's page->chunk path, so the analysis sees the same chunks as from a trace.dat.
"""

from __future__ import annotations

__all__ = ["LiveSource", "SourceStats", "live_tracefs", "stale_instances", "default_profile"]

import errno
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from zlperf.arrays import distinct
from zlperf.errors import RecordError, ZlperfError
from zlperf.events import MISSED_EVENTS, Chunk, TraceInfo
from zlperf.formats import EventFormat, parse_header_page
from zlperf.kallsyms import Kallsyms
from zlperf.readers.tracedat.runs import RunDecoder
from zlperf.recipes import Recipe
from zlperf.record.preflight import check_kernel
from zlperf.record.tracefs import DEFAULT_MOUNT, Instance, Tracefs, find_tracefs

#: The ftrace event a kernel stack arrives as (tracefs options/stacktrace).
KERNEL_STACK = "ftrace:kernel_stack"
#: Most pages read from one CPU per call, so one busy CPU cannot starve the others (the rest waits in the
#: ring buffer for the next call).
MAX_PAGES_PER_READ = 4096


def live_tracefs() -> Tracefs:
    """The mounted tracefs, checked readable and writable; RecordError (one line) otherwise."""
    root = find_tracefs()
    if root is None:
        raise RecordError(f"tracefs is not mounted (no tracefs in /proc/mounts): sudo mount -t tracefs nodev {DEFAULT_MOUNT}")
    tfs = Tracefs(root)
    if not tfs.readable() or not tfs.writable():
        raise RecordError(f"tracefs at {root} is not usable by uid {os.geteuid()}: live tracing needs root (sudo zlperf ...)")
    return tfs


def default_profile(tfs: Tracefs) -> str:
    """The recipe a live command uses when none is given: the richest this kernel's events allow.

    Kernels with the zone-lock patch: hold-time (waits, holds and who held the lock); the zone_lock:* series:
    its recipe; any other kernel since 5.19: stock (lock:contention_* with stacks).
    """
    if tfs.has_event("kmem:mm_zone_lock_unlock"):
        return "hold-time"
    if tfs.has_event("zone_lock:zone_lock_released"):
        return "zone-lock-series"
    return "stock"


def stale_instances(tfs: Tracefs, prefix: str) -> list[str]:
    """Instances ``PREFIX-PID`` left by a killed zlperf (its pid no longer runs)."""
    out = []
    for name in tfs.instances():
        m = re.fullmatch(re.escape(prefix) + r"-(\d+)", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            out.append(name)
    return out


@dataclass
class SourceStats:
    """What the source read so far (whole run)."""

    pages: int = 0
    bytes: int = 0
    events: int = 0  #: events decoded (every name, kernel stacks included)
    flagged_pages: int = 0  #: pages the kernel flagged "events missed before this page"
    problems: int = 0  #: damaged records skipped (should stay 0)


class LiveSource:
    """A tracefs instance named ``name`` recording ``recipe``'s events, read as chunks.

    :meth:`start` sets it up (nothing is enabled before every write succeeded), :meth:`read` yields the
    chunks of what the kernel has now, :meth:`close` removes the instance (and with it every event enabled
    there); close runs on every exit path of the callers (a ``with`` block).
    """

    def __init__(self, recipe: Recipe, tfs: Tracefs, name: str, say: Callable[[str], None] = lambda _m: None):
        self.recipe = recipe
        self.tfs = tfs
        self.name = name
        self.say = say
        self.instance = Instance(tfs, name, say=say)
        self.stats = SourceStats()
        self._fds: dict[int, int] = {}
        self._buf = bytearray()
        self._saved: dict[int, str] = {}
        self._saved_at = -1e9
        self.buffer_bytes = (recipe.buffer_size_kb or 1408) * 1024  #: ring buffer per CPU (kernel default 1.4 MB)
        self.last_read_bytes = 0  #: most bytes one CPU had in the last :meth:`read`
        self._seq = 0
        self._comms: dict[int, str] = {0: "<idle>"}
        self._created = False
        check_kernel(recipe, tfs, "trace-cmd")  # events there, filters valid, clock offered: before touching anything
        events = list(recipe.events) + ([KERNEL_STACK] if recipe.stacks else [])
        self.formats: dict[str, EventFormat] = {}
        for ev in events:
            fmt = tfs.event_format(ev)
            if fmt is None:
                raise RecordError(f"cannot read the format of {ev} ({tfs.event_dir(ev)}/format)")
            self.formats[ev] = fmt
        try:
            self.header_page = parse_header_page((tfs.root / "events" / "header_page").read_text())
        except OSError as exc:
            raise RecordError(f"cannot read {tfs.root}/events/header_page: {exc.strerror}")
        self._by_id = by_id = {f.id: f for f in self.formats.values()}
        type_field = next((f.field("common_type") for f in self.formats.values() if f.field("common_type")), None)
        self.skipped: dict[int, int] = {}  #: event id without a format here -> records skipped
        self.decoder = RunDecoder(self.header_page, type_field, by_id.get, self._skipped)
        self.page_size = self.header_page.data_offset + self.header_page.data_size
        self.info = TraceInfo(
            path=f"{tfs.root}/instances/{name}", format="live tracefs instance (per_cpu/cpuN/trace_pipe_raw)",
            clock=recipe.clock or "local", long_size=self.header_page.commit_size, page_size=self.page_size,
            cpus=os.cpu_count() or 1, buffers=(name,), formats=dict(self.formats), symbols=_kallsyms(),
            cmdlines={0: "<idle>"}, uname=" ".join(os.uname()))

    def _skipped(self, ev_id: int, n: int) -> None:
        if ev_id not in self._by_id:
            self.skipped[ev_id] = self.skipped.get(ev_id, 0) + n

    # -- setting up and tearing down ---------------------------------------------------------------------
    def start(self) -> None:
        """Create and configure the instance, open every CPU's trace_pipe_raw, then turn tracing on."""
        r, inst = self.recipe, self.instance
        inst.create()
        self._created = True
        inst.configure(r)
        sub = inst.path / "buffer_subbuf_size_kb"  # Linux 6.8+: a sub-buffer may be larger than a page
        try:
            self.page_size = int(sub.read_text().strip()) * 1024
        except (OSError, ValueError):
            pass  # older kernels: one page, as header_page says
        for cpu_dir in sorted(inst.path.glob("per_cpu/cpu*"), key=lambda p: int(p.name[3:])):
            try:
                self._fds[int(cpu_dir.name[3:])] = os.open(cpu_dir / "trace_pipe_raw", os.O_RDONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno not in (errno.ENODEV, errno.ENOENT):  # offline CPU: nothing to read there
                    raise RecordError(f"cannot open {cpu_dir}/trace_pipe_raw: {exc.strerror}")
        if not self._fds:
            raise RecordError(f"no per_cpu/cpuN/trace_pipe_raw could be opened in {inst.path}")
        inst.write("tracing_on", "1")

    def close(self) -> None:
        """Stop tracing and remove the instance (the kernel disables its events with it); safe to call twice."""
        try:
            if self._created and self.instance.exists():
                try:
                    self.instance.write("tracing_on", "0")
                except RecordError:
                    pass
        finally:
            for fd in self._fds.values():
                os.close(fd)
            self._fds = {}
            if self._created:
                self._created = False
                self.instance.remove()

    def __enter__(self) -> "LiveSource":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------------------------------
    def read(self) -> Iterator[Chunk]:
        """A chunk per CPU of what its ring buffer holds now (CPUs with nothing new yield nothing)."""
        self.last_read_bytes = 0
        for cpu, fd in self._fds.items():
            data = self._pages(fd)
            if data is None:
                continue
            self.last_read_bytes = max(self.last_read_bytes, len(data))
            out = self.decoder.decode(data, self.page_size, cpu, self._seq)
            self._seq += out.used
            chunk = out.chunk
            self.stats.problems += len(out.problems)
            for name, batch in chunk.batches.items():
                if name == MISSED_EVENTS:
                    self.stats.flagged_pages += len(batch)
                else:
                    self.stats.events += len(batch)
            self._name_tasks(chunk)
            if chunk.batches:
                yield chunk

    def _pages(self, fd: int) -> Optional[np.ndarray]:
        """Whole pages of one CPU until the kernel has no more (EAGAIN), at most MAX_PAGES_PER_READ.

        The pages land in one buffer kept for the next call (decoding copies what it keeps out of it).
        """
        size = self.page_size
        got = 0
        for _ in range(MAX_PAGES_PER_READ):
            if got + size > len(self._buf):
                grown = bytearray(max(2 * len(self._buf), 64 * size))
                grown[:got] = self._buf[:got]
                self._buf = grown
            with memoryview(self._buf) as view:
                try:
                    n = os.readv(fd, [view[got:got + size]])
                except BlockingIOError:
                    break
                except InterruptedError:
                    continue
                except OSError as exc:
                    raise RecordError(f"reading {self.instance.path}/per_cpu: {exc.strerror}")
                if n <= 0:
                    break
                if n < size:  # not seen: the kernel hands out whole pages; keep the page layout anyway
                    view[got + n:got + size] = bytes(size - n)
            got += size
        if not got:
            return None
        self.stats.pages += got // size
        self.stats.bytes += got
        return np.frombuffer(self._buf, np.uint8, count=got)

    def _name_tasks(self, chunk: Chunk) -> None:
        """Task names of pids new to this source: /proc/PID/comm, else tracefs's saved_cmdlines (the names the
        kernel kept of tasks that already exited)."""
        pids = set()
        for batch in chunk.batches.values():
            if len(batch):
                pids.update(distinct(batch.pid).tolist())
        new = sorted(p for p in pids if p > 0 and p not in self._comms)
        if not new:
            return
        if len(self._comms) > 65536:  # pids are reused: forget old names rather than grow without bound
            self._comms = {0: "<idle>"}
        for pid in new:
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                name = self._saved_cmdlines().get(pid, "")
            self._comms[pid] = chunk.comms[pid] = name or "<...>"

    def _saved_cmdlines(self) -> dict[int, str]:
        """tracefs's saved_cmdlines (thousands of lines): read again at most once a second."""
        now = time.monotonic()
        if now - self._saved_at > 1.0:
            self._saved_at, self._saved = now, {}
            try:
                text = (self.tfs.root / "saved_cmdlines").read_text()
            except OSError:
                text = ""
            for line in text.splitlines():
                pid, _, comm = line.partition(" ")
                if pid.isdigit():
                    self._saved[int(pid)] = comm
        return self._saved

    def kernel_overrun(self) -> int:
        """Events the kernel overwrote before they were read (per_cpu/cpuN/stats ``overrun``), all CPUs."""
        total = 0
        for stats in self.instance.path.glob("per_cpu/cpu*/stats"):
            try:
                m = re.search(r"^overrun:\s*(\d+)", stats.read_text(), re.M)
            except OSError:
                continue
            total += int(m.group(1)) if m else 0
        return total


def _kallsyms() -> Optional[Kallsyms]:
    """The running kernel's symbols (root sees addresses), parsed on first use; None if unreadable."""
    try:
        return Kallsyms.from_file("/proc/kallsyms")
    except (OSError, ZlperfError):
        return None
