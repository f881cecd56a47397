"""Names of zone locks on stock kernels: lock:contention_* carry only &zone->lock, this maps it to node:zone.

The BTF reader (:mod:`zlperf.record.btf`) finds struct zone's layout on the recording host; a bpftrace side
program run alongside the recording reads each zone's node and name; the sidecar OUT.zones.json keeps them.
"""

from __future__ import annotations

__all__ = ["ZoneLayout", "zone_layout", "bpftrace_program", "side_channel_unavailable", "ZoneLockWatcher"]

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from zlperf.errors import ZlperfError
from zlperf.record.btf import BTF_PATH, Btf
from zlperf.record.signals import die_with_parent

#: What a zone name looks like (the kernel's are DMA, DMA32, Normal, HighMem, Movable, Device).
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,15}")

@dataclass(frozen=True)
class ZoneLayout:
    """What the side program needs to know about struct zone and struct pglist_data on this kernel."""

    lock_offset: int  #: offsetof(struct zone, lock), bytes
    zone_size: int  #: sizeof(struct zone)
    node_member: str  #: how to read the node: "node" (zone->node), "pgdat" (zone->zone_pgdat->node_id) or "" (node 0)
    pgdat_size: int  #: sizeof(struct pglist_data), 0 when unknown
    node_zones_offset: int  #: offsetof(struct pglist_data, node_zones)
    node_zones_count: int  #: MAX_NR_ZONES

    def zone_index(self, pgdat_delta: int) -> Optional[int]:
        """Which node_zones[] entry a zone is, from (zone - zone->zone_pgdat) in bytes; None if it is none."""
        rel = pgdat_delta - self.node_zones_offset
        if rel < 0 or rel % self.zone_size or rel // self.zone_size >= self.node_zones_count:
            return None
        return rel // self.zone_size


def zone_layout(btf: Union[Btf, str, Path, None] = None) -> ZoneLayout:
    """Read struct zone's layout from BTF (default: the running kernel's); ZlperfError when it lacks a piece."""
    if not isinstance(btf, Btf):
        btf = Btf.load(btf or BTF_PATH)
    zone = btf.find("zone")
    if zone is None:
        raise ZlperfError(f"{btf.path}: no struct zone in this BTF (not a vmlinux BTF?)")
    lock = btf.member(zone, "lock")
    if lock is None or lock.bit_offset % 8:
        raise ZlperfError(f"{btf.path}: struct zone has no byte-aligned member 'lock'")
    for needed in ("name", "zone_pgdat"):
        if btf.member(zone, needed) is None:
            raise ZlperfError(f"{btf.path}: struct zone has no member '{needed}'")
    pgdat = btf.find("pglist_data")
    node_zones = btf.member(pgdat, "node_zones") if pgdat else None
    if pgdat is None or node_zones is None:
        raise ZlperfError(f"{btf.path}: no struct pglist_data with node_zones in this BTF")
    # CONFIG_NUMA kernels have zone->node; pgdat->node_id exists on others too (always node 0 there).
    if btf.member(zone, "node") is not None:
        node = "node"
    elif btf.member(pgdat, "node_id") is not None:
        node = "pgdat"
    else:
        node = ""
    return ZoneLayout(
        lock_offset=lock.bit_offset // 8, zone_size=btf.size(zone), node_member=node,
        pgdat_size=btf.size(pgdat), node_zones_offset=node_zones.bit_offset // 8,
        node_zones_count=btf.array_len(node_zones.type_id),
    )


_READY = "zlperf-zones: ready"
_LINE_RE = re.compile(r"^zlperf-zone ([0-9a-f]+) (\d+) (-?\d+) (.*)$")


def bpftrace_program(layout: ZoneLayout) -> str:
    """The side program, on one line: each lock address once, printed when it sits inside a pglist_data.

    bpftrace 0.17 ignores `pointer - N` on args->lock_addr (void *): cast it to uint64 first. A non-zone lock
    reads garbage (or zeros) through the cast; the pglist_data bounds check drops nearly all of it in the
    kernel, and :class:`ZoneLockWatcher` keeps only lines whose offset in the pgdat is a node_zones[] entry.
    """
    node = {"node": "$z->node", "pgdat": "$z->zone_pgdat->node_id", "": "0"}[layout.node_member]
    return (
        f'BEGIN {{ printf("{_READY}\\n"); }} '
        "tracepoint:lock:contention_begin /@zlperf_seen[args->lock_addr] == 0/ { "
        "@zlperf_seen[args->lock_addr] = 1; "
        f"$z = (struct zone *)((uint64)args->lock_addr - {layout.lock_offset}); "
        "$d = (uint64)$z - (uint64)$z->zone_pgdat; "
        f"if ($d < {layout.pgdat_size}) {{ "
        f'printf("zlperf-zone %lx %lu %d %s\\n", (uint64)args->lock_addr, $d, {node}, str($z->name, 16)); }} }} '
        "END { clear(@zlperf_seen); }"
    )


def side_channel_unavailable(bpftrace: str = "bpftrace", btf_path: Path = BTF_PATH) -> Optional[str]:
    """Why the zone-naming side program cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "naming zone locks needs root (bpftrace)"
    if shutil.which(bpftrace) is None:
        return "bpftrace is not installed (apt install bpftrace)"
    if not btf_path.exists():
        return f"no {btf_path} (kernel without CONFIG_DEBUG_INFO_BTF)"
    return None


class ZoneLockWatcher:
    """Runs the bpftrace side program and collects lock address -> (node, zone name)."""

    def __init__(self, layout: ZoneLayout, bpftrace: str = "bpftrace"):
        self.layout = layout
        self.argv = [bpftrace, "-e", bpftrace_program(layout)]
        self.proc: Optional[subprocess.Popen] = None
        self.locks: Dict[int, Tuple[int, str]] = {}
        self._ready = threading.Event()
        self._err: List[str] = []
        self._threads: List[threading.Thread] = []

    @property
    def env(self) -> Dict[str, str]:
        """bpftrace's environment: room for many lock addresses in the seen-map."""
        return {**os.environ, "BPFTRACE_MAP_KEYS_MAX": "65536"}

    def start(self, timeout: float = 30.0) -> None:
        """Start bpftrace and wait until its probes are attached; ZlperfError (one line) if it does not."""
        try:
            # Own session: a Ctrl-C at the terminal must not stop it before the recording ends.
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         errors="replace", env=self.env, start_new_session=True,
                                         preexec_fn=die_with_parent(signal.SIGINT))
        except OSError as exc:
            raise ZlperfError(f"cannot run {self.argv[0]}: {exc.strerror}")
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                why = self._last_error() or (f"exited with status {self.proc.returncode}" if self.proc.poll() is not None
                                             else f"not attached after {timeout:g} s")
                self.stop()
                raise ZlperfError(f"bpftrace side program failed: {why}")

    def _read_out(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line == _READY:
                self._ready.set()
                continue
            m = _LINE_RE.match(line)
            if not m:
                continue
            addr, delta, node, name = int(m.group(1), 16), int(m.group(2)), int(m.group(3)), m.group(4)
            if self.layout.zone_index(delta) is None or not _NAME_RE.fullmatch(name) or node < 0:
                continue  # a non-zone lock read through the cast: its "zone" does not check out
            self.locks[addr] = (node, name)

    def _read_err(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.strip() and "RLIMIT_MEMLOCK" not in line:  # bpftrace 0.17 prints this on every start
                self._err.append(line.strip())
                del self._err[:-5]

    def _last_error(self) -> str:
        return self._err[-1] if self._err else ""

    def stop(self) -> Dict[int, Tuple[int, str]]:
        """Stop bpftrace (SIGINT, repeated: 0.17 can miss one sent right after it attached) and return the locks."""
        proc = self.proc
        if proc is not None:
            for sig in (signal.SIGINT, signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                if proc.poll() is not None:
                    break
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=1.5)
                except subprocess.TimeoutExpired:
                    continue
            proc.wait()
        for t in self._threads:
            t.join(timeout=5)
        return dict(self.locks)
