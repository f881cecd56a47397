"""Names of zone locks on stock kernels: lock:contention_* carry only &zone->lock, this maps it to node:zone.

A small BTF reader finds offsetof(struct zone, lock) on the recording host; a bpftrace side program run
alongside the recording reads each zone's node and name; a sidecar OUT.zones.json keeps them for the report.
"""

from __future__ import annotations

__all__ = [
    "BTF_PATH", "Btf", "BtfMember", "ZoneLayout", "zone_layout", "bpftrace_program",
    "side_channel_unavailable", "ZoneLockWatcher",
]

import os
import re
import shutil
import signal
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from zlperf.errors import ZlperfError

#: The running kernel's own type information.
BTF_PATH = Path("/sys/kernel/btf/vmlinux")
#: What a zone name looks like (the kernel's are DMA, DMA32, Normal, HighMem, Movable, Device).
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,15}")

# BTF kinds (Documentation/bpf/btf.rst) and the bytes that follow each struct btf_type:
# a fixed part, plus vlen times a per-item size.
_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT = range(1, 12)
_FUNC, _FUNC_PROTO, _VAR, _DATASEC, _FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64 = range(12, 20)
_TRAILER: Dict[int, Tuple[int, int]] = {
    _INT: (4, 0), _PTR: (0, 0), _ARRAY: (12, 0), _STRUCT: (0, 12), _UNION: (0, 12), _ENUM: (0, 8),
    _FWD: (0, 0), _TYPEDEF: (0, 0), _VOLATILE: (0, 0), _CONST: (0, 0), _RESTRICT: (0, 0), _FUNC: (0, 0),
    _FUNC_PROTO: (0, 8), _VAR: (4, 0), _DATASEC: (0, 12), _FLOAT: (0, 0), _DECL_TAG: (4, 0),
    _TYPE_TAG: (0, 0), _ENUM64: (0, 12),
}
_MODIFIERS = (_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG)


@dataclass(frozen=True)
class BtfMember:
    """A struct/union member: its name, type id and offset in bits from the start of the struct."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0


class Btf:
    """The types of a raw BTF blob (/sys/kernel/btf/vmlinux): enough to find members and sizes."""

    def __init__(self, data: bytes, path: str = "<btf>"):
        self.path = path
        self.data = data
        if len(data) < 24:
            raise ZlperfError(f"{path}: {len(data)} bytes, too short for a BTF header")
        magic = struct.unpack_from("<H", data, 0)[0]
        if magic == 0xEB9F:
            self.endian = "<"
        elif magic == 0x9FEB:
            self.endian = ">"
        else:
            raise ZlperfError(f"{path}: offset 0x0: magic {magic:#06x} is not BTF's 0xeb9f (is this a raw BTF file?)")
        _m, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(self.endian + "HBBIIIII", data, 0)
        self.types_start = hdr_len + type_off
        self.types_end = self.types_start + type_len
        self.str_start = hdr_len + str_off
        self.str_end = self.str_start + str_len
        if self.types_end > len(data) or self.str_end > len(data):
            raise ZlperfError(f"{path}: header says the type or string section runs past the end of the "
                              f"{len(data)}-byte file (truncated copy?)")
        #: byte offset of each type's struct btf_type, by type id (id 0 is void)
        self.offsets: List[int] = [0]
        self._index()

    @classmethod
    def load(cls, path: Union[str, Path] = BTF_PATH) -> "Btf":
        """Read a raw BTF file; ZlperfError (one line) when it cannot be read or is not BTF."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ZlperfError(f"{path}: cannot read BTF ({exc.strerror}); the kernel needs CONFIG_DEBUG_INFO_BTF")
        return cls(data, str(path))

    def _index(self) -> None:
        unpack = struct.Struct(self.endian + "III").unpack_from
        pos, end = self.types_start, self.types_end
        while pos < end:
            if pos + 12 > end:
                raise ZlperfError(f"{self.path}: offset {pos:#x}: type {len(self.offsets)} cut short by the end of the type section")
            _name, info, _size = unpack(self.data, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            if kind not in _TRAILER:
                raise ZlperfError(f"{self.path}: offset {pos:#x}: type {len(self.offsets)} has BTF kind {kind}, "
                                  "unknown to this reader (a newer kernel?)")
            fixed, per_item = _TRAILER[kind]
            if pos + 12 + fixed + per_item * vlen > end:
                raise ZlperfError(f"{self.path}: offset {pos:#x}: type {len(self.offsets)} runs past the end of the "
                                  "type section (truncated or corrupt BTF)")
            self.offsets.append(pos)
            pos += 12 + fixed + per_item * vlen

    # -- raw access
    def string(self, off: int) -> str:
        """The NUL-terminated string at ``off`` in the string section."""
        start = self.str_start + off
        if off < 0 or start >= self.str_end:
            raise ZlperfError(f"{self.path}: string offset {off} is outside the string section")
        stop = self.data.index(b"\0", start, self.str_end)
        return self.data[start:stop].decode("utf-8", "replace")

    def _header(self, type_id: int) -> Tuple[str, int, int, int, int]:
        """(name, kind, vlen, kind_flag, size_or_type) of ``type_id``."""
        if not 0 < type_id < len(self.offsets):
            raise ZlperfError(f"{self.path}: type id {type_id} does not exist (there are {len(self.offsets) - 1})")
        name_off, info, size = struct.unpack_from(self.endian + "III", self.data, self.offsets[type_id])
        return self.string(name_off), (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, size

    def kind(self, type_id: int) -> int:
        """The BTF kind number of ``type_id``."""
        return self._header(type_id)[1]

    def name(self, type_id: int) -> str:
        """The name of ``type_id`` ('' for anonymous types)."""
        return self._header(type_id)[0]

    # -- lookups
    def find(self, name: str, kinds: Tuple[int, ...] = (_STRUCT,)) -> Optional[int]:
        """The first type named ``name`` of one of ``kinds`` (default: struct), or None."""
        unpack = struct.Struct(self.endian + "II").unpack_from
        for tid in range(1, len(self.offsets)):
            name_off, info = unpack(self.data, self.offsets[tid])
            if name_off and (info >> 24) & 0x1F in kinds and self.string(name_off) == name:
                return tid
        return None

    def members(self, type_id: int) -> List[BtfMember]:
        """The members of a struct or union, in order."""
        _name, kind, vlen, kflag, _size = self._header(type_id)
        if kind not in (_STRUCT, _UNION):
            raise ZlperfError(f"{self.path}: type {type_id} is BTF kind {kind}, not a struct or union")
        base = self.offsets[type_id] + 12
        out = []
        for i in range(vlen):
            name_off, tid, off = struct.unpack_from(self.endian + "III", self.data, base + 12 * i)
            # With kind_flag set, the offset word packs the bitfield size above a 24-bit bit offset.
            bits, size = (off & 0xFFFFFF, off >> 24) if kflag else (off, 0)
            out.append(BtfMember(self.string(name_off), tid, bits, size))
        return out

    def resolve(self, type_id: int) -> int:
        """``type_id`` with typedefs, const, volatile, restrict and type tags taken off."""
        seen = 0
        while type_id and self.kind(type_id) in _MODIFIERS:
            type_id = self._header(type_id)[4]
            seen += 1
            if seen > 64:
                raise ZlperfError(f"{self.path}: type {type_id}: a loop of typedefs/modifiers")
        return type_id

    def size(self, type_id: int) -> int:
        """sizeof the type, in bytes."""
        type_id = self.resolve(type_id)
        _name, kind, _vlen, _kflag, size = self._header(type_id)
        if kind in (_INT, _STRUCT, _UNION, _ENUM, _ENUM64, _DATASEC, _FLOAT):
            return size
        if kind == _PTR:
            return 8 if self.size_of_long() == 8 else 4
        if kind == _ARRAY:
            elem, _index, nelems = struct.unpack_from(self.endian + "III", self.data, self.offsets[type_id] + 12)
            return self.size(elem) * nelems
        raise ZlperfError(f"{self.path}: type {type_id} (BTF kind {kind}) has no size")

    def size_of_long(self) -> int:
        """sizeof(long) on the kernel that made this BTF (8 unless a 32-bit kernel)."""
        tid = self.find("long int", (_INT,))
        return self._header(tid)[4] if tid else 8

    def array_len(self, type_id: int) -> int:
        """Number of elements of an array type."""
        type_id = self.resolve(type_id)
        if self.kind(type_id) != _ARRAY:
            raise ZlperfError(f"{self.path}: type {type_id} is not an array")
        return struct.unpack_from(self.endian + "III", self.data, self.offsets[type_id] + 12)[2]

    def member(self, type_id: int, name: str) -> Optional[BtfMember]:
        """Member ``name`` of a struct/union, looking inside anonymous members; its offset is from ``type_id``."""
        for m in self.members(type_id):
            if m.name == name:
                return m
            if not m.name:
                inner = self.resolve(m.type_id)
                if self.kind(inner) in (_STRUCT, _UNION):
                    found = self.member(inner, name)
                    if found is not None:
                        return BtfMember(found.name, found.type_id, m.bit_offset + found.bit_offset, found.bitfield_size)
        return None


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


def _parent_death_sigint() -> None:
    """In the child: get SIGINT if zlperf dies, so that bpftrace never outlives it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGINT))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class ZoneLockWatcher:
    """Runs the bpftrace side program and collects lock address -> (node, zone name)."""

    def __init__(self, layout: ZoneLayout, bpftrace: str = "bpftrace"):
        self.layout = layout
        self.argv = [bpftrace, "-e", bpftrace_program(layout)]
        self.proc: Optional[subprocess.Popen] = None
        self.locks: Dict[int, Tuple[int, str]] = {}
        self.rejected = 0  #: lines whose zone did not check out (a non-zone lock read through the cast)
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
                                         preexec_fn=_parent_death_sigint)
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
                self.rejected += 1
                continue
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
