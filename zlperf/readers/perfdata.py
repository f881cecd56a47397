"""Native perf.data (PERFILE2) reader: tracepoint samples as zlperf.events Chunks, with numpy.

Specs: the kernel's tools/perf/Documentation/perf.data-file-format.txt (file header, attrs,
feature sections) and include/uapi/linux/perf_event.h (records, sample layout).

Ordering. perf.data is not globally time-sorted: ``perf record -a`` drains one ring buffer
per CPU (every event of a CPU is redirected into it) round after round, so the records of
one CPU appear in the file in the order that CPU's buffer received them, and
FINISHED_ROUND only bounds reordering *between* buffers. The reader checks this on every
file (per-CPU sample times never decrease in file order); then ``seq`` is the record's byte
position and chunks follow the file. If a file breaks it (``--per-thread`` buffers, files
rewritten by tools), the samples are sorted by (time, file position) first, which is what
perf script's ordered-events queue does, and ``seq`` is the rank in that order.

Symbols: perf.data carries no kallsyms. :func:`find_kallsyms` picks, in this order, the file
the caller names (``--kallsyms``), the copy ``zlperf record`` saves beside the recording
(``FILE.kallsyms[.gz]``, or ``STEM.kallsyms[.gz]`` for ``STEM.data``), or /proc/kallsyms when
the recording's hostname and kernel release are this host's. The kernel's base address
recorded by perf (the ``[kernel.kallsyms]_text`` mmap) is checked against the table; a
mismatch (another boot, KASLR) becomes a warning.
"""

from __future__ import annotations

__all__ = [
    "PERF_MAGIC",
    "PerfDataReader",
    "PerfAttr",
    "PerfHeaderInfo",
    "PerfTraceInfo",
    "perf_trace_info",
    "check_kernel_base",
    "open_perf_data",
    "read_header",
    "find_kallsyms",
    "kallsyms_candidates",
]

import mmap
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterator, Optional

import numpy as np

from zlperf.errors import TraceFormatError
from zlperf.events import MISSED_EVENTS, Chunk, EventBatch, TraceInfo
from zlperf.formats import EventFormat, parse_event_format
from zlperf.kallsyms import Kallsyms

PERF_MAGIC = b"PERFILE2"
_MAGIC_SWAPPED = PERF_MAGIC[::-1]

# perf_event_header.type values used here (uapi perf_event.h and perf's user types >= 64).
_MMAP, _LOST, _COMM, _FORK, _SAMPLE, _LOST_SAMPLES = 1, 2, 3, 7, 9, 13
_ID_INDEX, _COMPRESSED, _COMPRESSED2 = 69, 81, 83

# perf_event_attr.type for tracepoints.
_TYPE_TRACEPOINT = 2

# sample_type bits, in the order the fields appear in a PERF_RECORD_SAMPLE.
_S_IP, _S_TID, _S_TIME, _S_ADDR, _S_READ = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4
_S_CALLCHAIN, _S_ID, _S_CPU, _S_PERIOD, _S_STREAM_ID = 1 << 5, 1 << 6, 1 << 7, 1 << 8, 1 << 9
_S_RAW, _S_IDENTIFIER = 1 << 10, 1 << 16

# read_format bits.
_R_TOTAL_TIME_ENABLED, _R_TOTAL_TIME_RUNNING, _R_ID, _R_GROUP, _R_LOST = 1, 2, 4, 8, 16

# Feature bits (perf's HEADER_* ids) read here.
_F_TRACING_DATA, _F_HOSTNAME, _F_OSRELEASE, _F_VERSION, _F_ARCH, _F_NRCPUS = 1, 3, 4, 5, 6, 7
_F_CMDLINE, _F_DIR_FORMAT, _F_COMPRESSED = 11, 24, 27

# Callchain context markers (PERF_CONTEXT_*): values >= 2**64 - 4095.
_CONTEXT_MAX = np.uint64(2**64 - 4095)
_CONTEXT_KERNEL = np.uint64(2**64 - 128)
_KERNEL_HALF = np.uint64(1 << 63)  # x86-64/arm64 kernel text lives in the upper half

#: Samples decoded per chunk: bounds the temporary index arrays (n x field size bytes).
CHUNK_SAMPLES = 1 << 18
#: Words examined per window of the record walk (bounds its temporaries to ~100 MB).
_WALK_WINDOW = 1 << 22

_HEADER = struct.Struct("<8sQQQQQQQQ4Q")


@dataclass
class PerfAttr:
    """One perf_event_attr of the file and what decoding its samples needs."""

    index: int
    type: int
    config: int
    sample_type: int
    read_format: int
    sample_id_all: bool
    ids: list[int] = field(default_factory=list)
    name: str = ""  #: "kmem:mm_zone_locked" for tracepoints (from the stored format)
    format: Optional[EventFormat] = None

    @property
    def has_callchain(self) -> bool:
        """Samples carry a call chain (``perf record -g``)."""
        return bool(self.sample_type & _S_CALLCHAIN)


@dataclass
class PerfHeaderInfo:
    """Everything outside the data section: attrs, features, tracing data."""

    path: str
    data_offset: int
    data_size: int
    attrs: list[PerfAttr]
    hostname: Optional[str] = None
    osrelease: Optional[str] = None
    arch: Optional[str] = None
    perf_version: Optional[str] = None
    cmdline: Optional[str] = None
    nr_cpus: int = 0
    clockid: Optional[int] = None  #: the attrs' clockid when recorded with perf record -k
    compressed: bool = False
    long_size: int = 8
    page_size: int = 4096
    formats: dict[str, EventFormat] = field(default_factory=dict)
    saved_cmdlines: dict[int, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _err(path: str, offset: Optional[int], problem: str, hint: str = "") -> TraceFormatError:
    return TraceFormatError(path, offset, problem, hint)


# -- header and features -----------------------------------------------------------------------

class _Cursor:
    """Sequential little-endian reads over a bytes-like object, failing with a clear error."""

    def __init__(self, buf, pos: int, end: int, path: str, what: str):
        self.buf, self.pos, self.end, self.path, self.what = buf, pos, end, path, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise _err(self.path, self.pos, f"{self.what} ends early (wanted {n} bytes)",
                       "the file is truncated or not written by perf record")
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def cstr(self) -> str:
        end = self.buf.find(b"\0", self.pos, self.end) if hasattr(self.buf, "find") else -1
        if end < 0:
            raise _err(self.path, self.pos, f"{self.what}: unterminated string")
        s = bytes(self.buf[self.pos:end]).decode("utf-8", "replace")
        self.pos = end + 1
        return s

    def perf_string(self) -> str:
        """perf_header_string: u32 len, then len bytes, NUL-padded."""
        n = self.u32()
        return self.take(n).split(b"\0", 1)[0].decode("utf-8", "replace")


def _parse_tracing_data(buf, start: int, size: int, hdr: PerfHeaderInfo) -> None:
    """HEADER_TRACING_DATA: the same layout as a trace.dat v6 header (TRACEDAT.md §v6 1-5)."""
    c = _Cursor(buf, start, start + size, hdr.path, "tracing data (event formats)")
    if c.take(3) != b"\x17\x08\x44" or c.take(7) != b"tracing":
        raise _err(hdr.path, start, "tracing data section has no 'tracing' magic",
                   "the file was not recorded with tracepoints, or is damaged")
    version = c.cstr()
    if c.take(1) != b"\0":
        raise _err(hdr.path, c.pos - 1, "big-endian tracing data is not supported")
    hdr.long_size = c.take(1)[0]
    hdr.page_size = c.u32()
    for tag in (b"header_page\0", b"header_event\0"):
        if c.take(len(tag)) != tag:
            raise _err(hdr.path, c.pos - len(tag), f"tracing data: expected {tag[:-1].decode()!r}")
        c.take(c.u64())
    for _ in range(c.u32()):  # ftrace's own formats: not events perf records
        c.take(c.u64())
    for _ in range(c.u32()):
        system = c.cstr()
        for _ in range(c.u32()):
            text = c.take(c.u64()).decode("utf-8", "replace")
            try:
                fmt = parse_event_format(text, system)
            except ValueError as exc:
                hdr.warnings.append(f"an event format of {system} in the tracing data is unreadable ({exc})")
                continue
            fmt.system = fmt.system or system
            hdr.formats[fmt.full_name] = fmt
    c.take(c.u32())  # kallsyms: perf stores none
    c.take(c.u32())  # printk formats
    try:
        if float(version) >= 0.6:
            for line in c.take(c.u64()).decode("utf-8", "replace").splitlines():
                pid, _, comm = line.partition(" ")
                if pid.strip().isdigit() and comm:
                    hdr.saved_cmdlines[int(pid)] = comm.strip()
    except ValueError:
        pass


def _parse_features(buf, file_size: int, feat_bits: list[int], hdr: PerfHeaderInfo) -> None:
    base = hdr.data_offset + hdr.data_size
    for i, bit in enumerate(feat_bits):
        pos = base + 16 * i
        if pos + 16 > file_size:
            raise _err(hdr.path, pos, f"feature section table is cut off (file is {file_size} bytes)",
                       "the perf.data was truncated; copy it again from the recording host")
        off, size = struct.unpack_from("<QQ", buf, pos)
        if off + size > file_size:
            raise _err(hdr.path, off, f"feature {bit} lies past the end of the file ({file_size} bytes)",
                       "the perf.data was truncated; copy it again from the recording host")
        c = _Cursor(buf, off, off + size, hdr.path, f"feature {bit}")
        if bit == _F_TRACING_DATA:
            _parse_tracing_data(buf, off, size, hdr)
        elif bit == _F_HOSTNAME:
            hdr.hostname = c.perf_string()
        elif bit == _F_OSRELEASE:
            hdr.osrelease = c.perf_string()
        elif bit == _F_VERSION:
            hdr.perf_version = c.perf_string()
        elif bit == _F_ARCH:
            hdr.arch = c.perf_string()
        elif bit == _F_NRCPUS:
            first, second = c.u32(), c.u32()  # the doc and perf's writer disagree on the order:
            hdr.nr_cpus = max(first, second)  # CPUs the recording could see, like trace.dat's count
        elif bit == _F_CMDLINE:
            hdr.cmdline = " ".join(c.perf_string() for _ in range(c.u32()))
        elif bit == _F_COMPRESSED:
            hdr.compressed = True
        elif bit == _F_DIR_FORMAT:
            hdr.warnings.append("directory-format perf.data (perf record --threads): only the main data file is read")


def read_header(path: str, buf=None) -> PerfHeaderInfo:
    """Parse the file header, attrs and feature sections of a perf.data (not the data section)."""
    path = str(path)
    if os.path.isdir(path):
        raise _err(path, None, "is a directory (perf record --threads writes one)",
                   "record without --threads, or merge it with `perf inject -i DIR -o FILE`")
    own = buf is None
    if own:
        with open(path, "rb") as fh:
            buf = fh.read()
    file_size = len(buf)
    if bytes(buf[:8]) == PERF_MAGIC and file_size < _HEADER.size:
        raise _err(path, file_size, "the file header is cut off", "the perf.data was truncated")
    if file_size < 16 or bytes(buf[:8]) not in (PERF_MAGIC, _MAGIC_SWAPPED):
        raise _err(path, 0, "not a perf.data file (no PERFILE2 magic)",
                   "give a file written by `perf record`")
    if bytes(buf[:8]) == _MAGIC_SWAPPED:
        raise _err(path, 0, "big-endian perf.data is not supported", "read it on a big-endian host with perf script")
    header_size = struct.unpack_from("<Q", buf, 8)[0]
    if header_size == 16:
        raise _err(path, 0, "pipe-mode perf.data (perf record -o -) is not supported",
                   "convert it with `perf inject -i FILE -o FILE2`")
    if file_size < _HEADER.size:
        raise _err(path, file_size, "the file header is cut off", "the perf.data was truncated")
    (_, header_size, attr_size, a_off, a_size, d_off, d_size, _e_off, _e_size, *flags) = _HEADER.unpack_from(buf, 0)
    hdr = PerfHeaderInfo(path, d_off, d_size, [])
    if d_size == 0 and file_size > d_off:
        # perf record writes the final header at exit: 0 means it never finished.
        raise _err(path, 8, "perf record did not finish this file: the header has no data size and no "
                            "event formats", "re-record and let perf record exit normally (Ctrl-C once)")
    if d_off + d_size > file_size:
        raise _err(path, file_size, f"data section ends at {d_off + d_size:#x}, past the end of the file",
                   "the perf.data was truncated; copy it again from the recording host")
    if attr_size < 16 + 64 or a_size % attr_size or a_off + a_size > file_size:
        raise _err(path, 24, f"attribute section is malformed (attr size {attr_size}, section {a_size} bytes)")
    for i in range(a_size // attr_size):
        pos = a_off + i * attr_size
        a_type, _a_sz, config, _period, sample_type, read_format, bits = struct.unpack_from("<IIQQQQQ", buf, pos)
        ids_off, ids_size = struct.unpack_from("<QQ", buf, pos + attr_size - 16)
        if ids_off + ids_size > file_size:
            raise _err(path, pos, "attribute ids lie past the end of the file", "the perf.data was truncated")
        ids = list(struct.unpack_from(f"<{ids_size // 8}Q", buf, ids_off)) if ids_size else []
        hdr.attrs.append(PerfAttr(i, a_type, config, sample_type, read_format, bool(bits >> 18 & 1), ids))
        if bits >> 25 & 1 and attr_size - 16 >= 96 and hdr.clockid is None:  # use_clockid: perf record -k
            hdr.clockid = struct.unpack_from("<i", buf, pos + 92)[0]
    feat_bits = [b for b in range(256) if flags[b // 64] >> (b % 64) & 1]
    _parse_features(buf, file_size, feat_bits, hdr)
    by_id = {f.id: f for f in hdr.formats.values()}
    for a in hdr.attrs:
        if a.type == _TYPE_TRACEPOINT:
            a.format = by_id.get(a.config)
            a.name = a.format.full_name if a.format else f"tracepoint#{a.config}"
    return hdr


# -- symbols -----------------------------------------------------------------------------------

def kallsyms_candidates(path: str) -> list[Path]:
    """Where ``zlperf record`` may have saved the kallsyms of ``path`` (first existing wins)."""
    p = Path(path)
    stems = [p]
    if p.suffix == ".data":
        stems.append(p.with_suffix(""))  # perf.data -> perf.kallsyms, full.perf.data -> full.perf.kallsyms
    return [Path(f"{s}.kallsyms{gz}") for s in stems for gz in ("", ".gz")]


def _same_host(hdr: PerfHeaderInfo) -> bool:
    uname = os.uname()
    host_ok = hdr.hostname is None or hdr.hostname in (uname.nodename, socket.gethostname())
    return bool(hdr.osrelease) and hdr.osrelease == uname.release and host_ok


def find_kallsyms(path: str, hdr: PerfHeaderInfo, explicit: Optional[str] = None,
                  warnings: Optional[list[str]] = None) -> Optional[Kallsyms]:
    """The kallsyms table for a perf.data by the convention in the module docstring, or None.

    ``explicit`` (a ``--kallsyms`` file) wins. Problems (none found, host differs) are
    appended to ``warnings``; the table's ``source`` says which was used.
    """
    notes = warnings if warnings is not None else []
    if explicit:
        try:
            return Kallsyms.from_file(explicit)
        except OSError as exc:
            raise TraceFormatError(explicit, None, f"cannot read kallsyms ({exc.strerror})")
    for cand in kallsyms_candidates(path):
        if cand.is_file():
            try:
                return Kallsyms.from_file(str(cand))
            except OSError as exc:
                notes.append(f"cannot read {cand} ({exc.strerror})")
    where = " or ".join(str(c) for c in kallsyms_candidates(path)[::2])
    if _same_host(hdr):
        try:
            with open("/proc/kallsyms", "rb") as fh:
                syms = Kallsyms.from_text(fh.read().decode("utf-8", "replace"),
                                          source="/proc/kallsyms (this host: same hostname and kernel release)")
        except OSError as exc:
            notes.append(f"cannot read /proc/kallsyms ({exc.strerror}): callers shown as addresses")
            return None
        if len(syms):
            return syms
        notes.append("/proc/kallsyms shows no addresses (not root): callers shown as addresses")
        return None
    host = f"{hdr.hostname or '?'} {hdr.osrelease or '?'}"
    notes.append(f"no kallsyms for this perf.data (recorded on {host}, perf.data carries none; looked for "
                 f"{where}): callers shown as addresses; give --kallsyms FILE with the recording host's "
                 f"/proc/kallsyms")
    return None


def check_kernel_base(symbols: Optional[Kallsyms], ref: Optional[tuple[str, int]]) -> Optional[str]:
    """A warning when the recording's kernel base (from its kernel mmap) is not where ``symbols`` has it."""
    if symbols is None or not len(symbols) or ref is None:
        return None
    name, addr = ref
    try:
        idx = symbols.names.index(name)
    except ValueError:
        return None
    have = int(symbols.addrs[idx])
    if have != addr:
        return (f"kallsyms ({symbols.source}) may not match this recording: the recorded kernel had {name} at "
                f"{addr:#x}, the table has it at {have:#x} (another boot or kernel); callers may be wrong")
    return None


# -- data section ------------------------------------------------------------------------------

@dataclass
class _Other:
    pos: int  #: byte offset in the data section
    type: int
    size: int


def _walk(words: np.ndarray, nbytes: int, path: str, base: int, warnings: list[str]):
    """Record starts in the data section: (sample byte positions, other records).

    Records are variable length, so a plain walk is one Python step per record. Instead,
    every 8-byte word that *could* start a sample (type 9, sane size) is a candidate; a run
    of candidates each ending exactly where the next starts is a run of real records,
    taken whole. The Python loop only steps over the other records (COMM, FORK,
    FINISHED_ROUND, ...) and over false candidates inside payloads, which the walk skips
    because it never lands on them.
    """
    nwords = nbytes // 8
    samples: list[np.ndarray] = []
    others: list[_Other] = []
    pos = 0  # word index, always a real record start
    while pos < nwords:
        wend = min(pos + _WALK_WINDOW, nwords)
        w = words[pos:wend]
        # The low half of each little-endian word is a record type if a record starts there.
        cand = np.flatnonzero(w.view(np.uint32)[::2] == _SAMPLE)
        size = (w[cand] >> np.uint64(48)).astype(np.int64)
        ok = (size >= 16) & ((size & 7) == 0)
        cand, size = cand[ok] + pos, size[ok]
        nxt = cand + (size >> 3)
        breaks = np.flatnonzero(nxt[:-1] != cand[1:])
        ncand = len(cand)
        p = pos
        while p < wend:
            k = int(np.searchsorted(cand, p))
            if k < ncand and cand[k] == p:
                bi = int(np.searchsorted(breaks, k))
                last = int(breaks[bi]) if bi < len(breaks) else ncand - 1
                samples.append(cand[k:last + 1])
                p = int(nxt[last])
                continue
            hw = int(words[p])
            rtype, rsize = hw & 0xFFFFFFFF, hw >> 48
            if rtype in (_COMPRESSED, _COMPRESSED2):
                raise _Compressed()
            if rsize < 8 or rsize % 8:
                warnings.append(f"data section damaged at offset {base + 8 * p:#x} (record type {rtype}, size "
                                f"{rsize}): the rest of the file was not read")
                return samples, others, True
            others.append(_Other(8 * p, rtype, rsize))
            p += rsize >> 3
        pos = p
    if pos > nwords:
        warnings.append("the last record of the data section is cut off (file truncated)")
        if samples and len(samples[-1]) and samples[-1][-1] * 8 + 8 > nbytes:
            samples[-1] = samples[-1][:-1]
    return samples, others, False


class _Views:
    """The data section as u8/u16/u32/u64 arrays, for reads at naturally aligned offsets."""

    def __init__(self, buf, offset: int, size: int):
        self.u8 = np.frombuffer(buf, dtype=np.uint8, count=size, offset=offset) if size else np.empty(0, np.uint8)
        self.by_size = {1: self.u8}
        for width, dt in ((2, "<u2"), (4, "<u4"), (8, "<u8")):
            self.by_size[width] = np.frombuffer(buf, dtype=dt, count=size // width, offset=offset) \
                if size >= width else np.empty(0, dt)


class _Compressed(Exception):
    """The data section holds PERF_RECORD_COMPRESSED records (perf record -z)."""


def _inflate(buf, offset: int, size: int, path: str) -> bytes:
    """The data section of a ``perf record -z`` file with its compressed records expanded.

    perf compresses with one zstd stream, flushed (not ended) at each COMPRESSED record, so a
    record may be split across two of them: the payloads are fed in file order to one
    streaming decompressor and the output joined. Other records are kept as they are.
    """
    try:
        import zstandard
    except ImportError:
        raise _err(path, None, "compressed perf.data (perf record -z) needs the zstandard module",
                   "pip install zstandard, or decompress it with `perf inject -i FILE -o FILE2`")
    stream = zstandard.ZstdDecompressor().decompressobj()
    parts: list[bytes] = []
    pos, end = offset, offset + size
    while pos + 8 <= end:
        rtype, _misc, rsize = struct.unpack_from("<IHH", buf, pos)
        if rsize < 8 or pos + rsize > end:
            raise _err(path, pos, f"damaged record (type {rtype}, size {rsize}) in a compressed data section",
                       "the perf.data was truncated or damaged")
        try:
            if rtype == _COMPRESSED:
                parts.append(stream.decompress(bytes(buf[pos + 8:pos + rsize])))
            elif rtype == _COMPRESSED2:  # u64 data_size, then the payload padded to 8 bytes
                dsize, = struct.unpack_from("<Q", buf, pos + 8)
                parts.append(stream.decompress(bytes(buf[pos + 16:pos + 16 + dsize])))
            else:
                parts.append(bytes(buf[pos:pos + rsize]))
        except zstandard.ZstdError as exc:
            raise _err(path, pos, f"cannot decompress a compressed record ({exc})",
                       "decompress it with `perf inject -i FILE -o FILE2`")
        pos += rsize
    return b"".join(parts)


def _gather(views: _Views, start: np.ndarray, size: int, dtype: np.dtype, count: int = 1) -> np.ndarray:
    """``count`` values of ``dtype`` at byte offsets ``start`` (vectorised, any alignment).

    Hot path, open-coded: samples of one event share their layout, so a field is usually at
    the same alignment in every record and is read with one gather from the typed view.
    """
    n = len(start)
    if n == 0:
        return np.empty((0, count) if count > 1 else 0, dtype=dtype)
    width = size * count
    if size in (1, 2, 4, 8) and not (start % size).any():
        idx = start // size
        if count > 1:
            idx = idx[:, None] + np.arange(count, dtype=np.int64)
        view = views.by_size[size]
        if int(idx.max()) < len(view):
            return view[idx].view(dtype)
    if size == 8 and count == 1 and not (start % 4).any():
        v32 = views.by_size[4]
        idx = start // 4
        if int(idx.max()) + 1 < len(v32):
            lo = v32[idx].astype(np.uint64)
            hi = v32[idx + 1].astype(np.uint64)
            return (lo | (hi << np.uint64(32))).view(dtype)
    idx = start[:, None] + np.arange(width, dtype=np.int64)
    block = np.ascontiguousarray(views.u8[idx])
    out = block.view(dtype)
    return out.reshape(n, count) if count > 1 else out.reshape(n)


def _distinct_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of one row per distinct value, code per row) for a 2-D uint64 key array.

    Strings in these events take a handful of values (zone names): one vectorised
    comparison per distinct value beats sorting a million strings; many values fall back
    to np.unique.
    """
    n = len(keys)
    code = np.full(n, -1, dtype=np.int64)
    firsts: list[int] = []
    left = 0
    while left < n and len(firsts) < 32:
        todo = np.flatnonzero(code < 0)
        if not len(todo):
            break
        r0 = int(todo[0])
        same = (keys[todo] == keys[r0]).all(axis=1)
        code[todo[same]] = len(firsts)
        firsts.append(r0)
        left = n - int((code >= 0).sum())
        if left == 0:
            break
    if (code < 0).any():
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        return first, inverse.ravel()
    return np.array(firsts, dtype=np.int64), code


def _texts(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int32 codes, object array of distinct str) of an (n, length) uint8 block of NUL-padded strings."""
    n, ln = block.shape
    if n == 0 or ln == 0:
        return np.zeros(n, np.int32), np.array([""], dtype=object)
    padded = np.zeros((n, (ln + 7) // 8 * 8), dtype=np.uint8)
    padded[:, :ln] = block
    keys = padded.view("<u8")
    first, code = _distinct_rows(keys)
    # Rows that differ only after the NUL are the same text: one value each.
    index: dict[str, int] = {}
    remap = np.empty(len(first), dtype=np.int32)
    for i, f in enumerate(first.tolist()):
        text = padded[f, :ln].tobytes().split(b"\0", 1)[0].decode("utf-8", "replace")
        remap[i] = index.setdefault(text, len(index))
    values = np.empty(len(index), dtype=object)
    values[:] = list(index)
    return remap[code], values


def _strings(views: _Views, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Object array of str: NUL-terminated text at each (start, length); few distinct values expected."""
    n = len(start)
    out = np.empty(n, dtype=object)
    if n == 0:
        return out
    u8, u64 = views.u8, views.by_size[8]
    lengths = np.flatnonzero(np.bincount(length)) if length.min() >= 0 else np.unique(length)
    for ln in lengths:
        ln = int(ln)
        rows = np.flatnonzero(length == ln) if len(lengths) > 1 else np.arange(n)
        if ln <= 0:
            out[rows] = ""
            continue
        s = start[rows]
        mis = s % 8
        for m in np.flatnonzero(np.bincount(mis, minlength=8)):
            sub = rows[mis == m] if len(rows) != len(s) or (mis != m).any() else rows
            st = start[sub]
            nwords = (int(m) + ln + 7) // 8
            widx = (st // 8)[:, None] + np.arange(nwords, dtype=np.int64)
            if int(widx.max()) >= len(u64):  # string at the very end of the section: byte path
                texts = [bytes(u8[x:x + ln]).split(b"\0", 1)[0].decode("utf-8", "replace") for x in st.tolist()]
                out[sub] = texts
                continue
            mask_bytes = np.zeros(nwords * 8, np.uint8)
            mask_bytes[int(m):int(m) + ln] = 0xFF
            keys = u64[widx] & mask_bytes.view("<u8")
            first, code = _distinct_rows(keys)
            texts = np.empty(len(first), dtype=object)
            texts[:] = [keys[f].tobytes()[int(m):int(m) + ln].split(b"\0", 1)[0].decode("utf-8", "replace")
                        for f in first.tolist()]
            out[sub] = texts[code]
    return out


class _Layout:
    """Word offsets of the fixed-position sample fields for one sample_type."""

    def __init__(self, attr: PerfAttr):
        st = attr.sample_type
        w = 1  # after perf_event_header
        self.identifier = self.ip = self.tid = self.time = self.id = self.cpu = self.period = None
        if st & _S_IDENTIFIER:
            self.identifier = w
            w += 1
        if st & _S_IP:
            self.ip = w
            w += 1
        if st & _S_TID:
            self.tid = w
            w += 1
        if st & _S_TIME:
            self.time = w
            w += 1
        if st & _S_ADDR:
            w += 1
        if st & _S_ID:
            self.id = w
            w += 1
        if st & _S_STREAM_ID:
            w += 1
        if st & _S_CPU:
            self.cpu = w
            w += 1
        if st & _S_PERIOD:
            self.period = w
            w += 1
        self.read_words = 0
        self.read_group = bool(st & _S_READ and attr.read_format & _R_GROUP)
        rf = attr.read_format
        if st & _S_READ:
            extra = bool(rf & _R_TOTAL_TIME_ENABLED) + bool(rf & _R_TOTAL_TIME_RUNNING)
            per_value = 1 + bool(rf & _R_ID) + bool(rf & _R_LOST)
            self.read_extra, self.read_per_value = extra, per_value
            self.read_words = extra + per_value  # non-group: value + extras
        self.after_fixed = w  # READ (if any) starts here
        self.callchain = bool(st & _S_CALLCHAIN)
        self.raw = bool(st & _S_RAW)


def _kernel_frames(words: np.ndarray, cc_at: np.ndarray, nr: np.ndarray) -> np.ndarray:
    """Object array: per sample, np.uint64 kernel frames innermost first, PERF_CONTEXT_* markers removed."""
    n = len(cc_at)
    out = np.empty(n, dtype=object)
    total = int(nr.sum())
    if total == 0:
        for i in range(n):
            out[i] = np.empty(0, np.uint64)
        return out
    seg = np.repeat(np.arange(n), nr)
    starts = np.cumsum(nr) - nr
    within = np.arange(total) - np.repeat(starts, nr)
    flat = words[np.repeat(cc_at + 1, nr) + within]
    is_marker = flat >= _CONTEXT_MAX
    # The context each frame belongs to: the last marker before it in its own chain.
    marker_pos = np.where(is_marker, np.arange(total), -1)
    last = np.maximum.accumulate(marker_pos)
    seg_first = np.repeat(starts, nr)
    in_seg = last >= seg_first
    ctx = np.where(in_seg, flat[np.maximum(last, 0)], np.uint64(0))
    keep = ~is_marker & ((ctx == _CONTEXT_KERNEL) | (~in_seg & (flat >= _KERNEL_HALF)))
    kept = flat[keep]
    ends = np.cumsum(np.bincount(seg[keep], minlength=n)).tolist()
    begin = 0
    for i, end in enumerate(ends):  # one view per sample (np.split costs ~10x more per piece)
        out[i] = kept[begin:end]
        begin = end
    return out


class PerfTraceInfo(TraceInfo):
    """TraceInfo whose ``symbols`` are found on first use (module docstring's convention).

    Lazy so that a table set after opening (``zlperf report --kallsyms``) replaces the
    search instead of following it, and its warnings. Any table, found or set, is checked
    against the recorded kernel base address.
    """

    _resolve = None  # () -> Optional[Kallsyms], until first use
    _symbols: Optional[Kallsyms] = None
    kernel_ref: Optional[tuple[str, int]] = None  #: (symbol, address) of the recorded kernel mmap

    @property  # type: ignore[override]
    def symbols(self) -> Optional[Kallsyms]:
        resolve = self.__dict__.pop("_resolve", None)
        if resolve is not None:
            self._set_symbols(resolve())
        return self.__dict__.get("_symbols")

    @symbols.setter
    def symbols(self, value: Optional[Kallsyms]) -> None:
        self.__dict__.pop("_resolve", None)
        self._set_symbols(value)

    def _set_symbols(self, value: Optional[Kallsyms]) -> None:
        self.__dict__["_symbols"] = value
        note = check_kernel_base(value, self.kernel_ref)
        if note and note not in self.warnings:
            self.warnings.append(note)


def perf_trace_info(path: str, hdr: PerfHeaderInfo, kallsyms: Optional[str] = None) -> PerfTraceInfo:
    """The :class:`TraceInfo` of a perf.data from its header (cmdlines: the tracing data's only)."""
    uname = " ".join(x for x in (hdr.hostname, hdr.osrelease, hdr.arch) if x) or None
    info = PerfTraceInfo(
        path=str(path), format="perf.data", clock=_clock_name(hdr.clockid), long_size=hdr.long_size,
        page_size=hdr.page_size, cpus=hdr.nr_cpus, buffers=[""],
        formats={a.name: a.format for a in hdr.attrs if a.format is not None},
        cmdlines=dict(hdr.saved_cmdlines), uname=f"Linux {uname}" if uname else None, warnings=list(hdr.warnings),
    )
    if not any(a.type == _TYPE_TRACEPOINT for a in hdr.attrs):
        info.warnings.append("no tracepoint events in this perf.data (record with -e SYS:EVENT)")
    info.__dict__["_resolve"] = lambda: find_kallsyms(str(path), hdr, kallsyms, info.warnings)
    return info


def _kernel_mmap(rec: bytes) -> Optional[tuple[str, int]]:
    """PERF_RECORD_MMAP of the kernel: pid -1, file "[kernel.kallsyms]SYMBOL", pgoff = SYMBOL's address."""
    pid, = struct.unpack_from("<i", rec, 8)
    name = rec[40:].split(b"\0", 1)[0].decode("utf-8", "replace")
    prefix = "[kernel.kallsyms]"
    if pid == -1 and name.startswith(prefix) and len(name) > len(prefix):
        return name[len(prefix):], struct.unpack_from("<Q", rec, 32)[0]
    return None


class PerfDataReader:
    """:class:`~zlperf.events.TraceReader` over a perf.data file (tracepoint samples)."""

    def __init__(self, path: str, kallsyms: Optional[str] = None, chunk_samples: int = CHUNK_SAMPLES):
        self.path = str(path)
        self._fh = open(self.path, "rb")
        try:
            size = os.fstat(self._fh.fileno()).st_size
            self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            self.header = read_header(self.path, self._mm)
        except BaseException:
            self.close()
            raise
        self.chunk_samples = chunk_samples
        self.info = perf_trace_info(self.path, self.header, kallsyms)
        self._scan()

    # -- scanning ---------------------------------------------------------------------------
    def _scan(self) -> None:
        """Walk the data section once: sample positions, COMM/LOST/MMAP records, ordering."""
        h = self.header
        base = h.data_offset
        mm = self._mm
        self._views = _Views(mm, base, h.data_size)
        self._raw = self._views.u8
        self._words = self._views.by_size[8]
        try:
            runs, others, _damaged = _walk(self._words, h.data_size, self.path, base, self.info.warnings)
        except _Compressed:
            # perf record -z: expand in memory, then read it like any data section.
            self._inflated = _inflate(mm, base, h.data_size, self.path)
            self._views = _Views(self._inflated, 0, len(self._inflated))
            self._raw = self._views.u8
            self._words = self._views.by_size[8]
            runs, others, _damaged = _walk(self._words, len(self._inflated), self.path, 0, self.info.warnings)
        pos = np.concatenate(runs) if runs else np.empty(0, np.int64)  # word index of each sample
        self._sample_words = pos.astype(np.int64, copy=False)
        # The header words every later step reads (id, tid, time, cpu), in one row-wise gather.
        self._head_cols: dict[int, np.ndarray] = {}
        slots_used = sorted({j for a in h.attrs for lay in (_Layout(a),)
                             for j in (lay.identifier, lay.id, lay.tid, lay.time, lay.cpu) if j is not None})
        if slots_used and len(pos):
            grid = self._words[np.minimum(pos[:, None] + np.array(slots_used, dtype=np.int64), len(self._words) - 1)]
            self._head_cols = {j: grid[:, i] for i, j in enumerate(slots_used)}
        self._attr_of = self._attr_index(pos)
        lost_pos, lost_cpu, lost_count, lost_time = [], [], [], []
        self._id_cpu: dict[int, int] = {}
        trailer = self._trailer_layout()
        # Task names as perf keeps them: COMM sets a thread's, FORK copies the parent's; in time
        # order (their sample_id time), since buffers of different CPUs interleave in the file.
        tasks = [(self._trailer(r, trailer)[1] or 0, r) for r in others if r.type in (_COMM, _FORK)]
        tasks.sort(key=lambda tr: tr[0])
        cmdlines = self.info.cmdlines
        history: dict[int, list[tuple[int, str]]] = {}
        for when, rec in tasks:
            if rec.type == _COMM:
                _pid, tid = struct.unpack_from("<ii", self._raw, rec.pos + 8)
                comm = bytes(self._raw[rec.pos + 16:rec.pos + rec.size]).split(b"\0", 1)[0].decode("utf-8", "replace")
            else:
                _pid, _ppid, tid, ptid = struct.unpack_from("<iiii", self._raw, rec.pos + 8)
                if ptid not in cmdlines:
                    continue
                comm = cmdlines[ptid]
            if cmdlines.get(tid) != comm:
                cmdlines[tid] = comm
                history.setdefault(tid, []).append((when, comm))
        for rec in others:
            if rec.type in (_LOST, _LOST_SAMPLES):
                if rec.type == _LOST:
                    _id, count = struct.unpack_from("<QQ", self._raw, rec.pos + 8)
                else:
                    _id, count = None, struct.unpack_from("<Q", self._raw, rec.pos + 8)[0]
                cpu, ts = self._trailer(rec, trailer)
                if cpu is None and _id is not None:
                    cpu = self._id_cpu.get(_id)
                lost_pos.append(rec.pos // 8)
                lost_cpu.append(-1 if cpu is None else cpu)
                lost_count.append(count)
                lost_time.append(ts)
            elif rec.type == _MMAP and self.info.kernel_ref is None:
                self.info.kernel_ref = _kernel_mmap(bytes(self._raw[rec.pos:rec.pos + rec.size]))
            elif rec.type == _ID_INDEX:
                nr, = struct.unpack_from("<Q", self._raw, rec.pos + 8)
                for j in range(min(nr, (rec.size - 16) // 32)):
                    eid, _idx, ecpu, _tid = struct.unpack_from("<QQQQ", self._raw, rec.pos + 16 + 32 * j)
                    self._id_cpu[eid] = ecpu if ecpu < 2**31 else -1
        if any(c < 0 for c in lost_cpu):
            self.info.warnings.append("lost-event records without a CPU: counted in the total only")
        self._lost_pos = np.array(lost_pos, dtype=np.int64)
        self._lost_cpu = np.array(lost_cpu, dtype=np.int32)
        self._lost_count = np.array(lost_count, dtype=np.int64)

        # Per-sample time and cpu for the ordering check.
        n = len(pos)
        layouts = {ai: _Layout(a) for ai, a in enumerate(h.attrs)}
        slots = {(lay.time, lay.cpu) for lay in layouts.values()}
        if len(slots) == 1:  # the usual case: one gather each for all samples
            t_at, c_at = slots.pop()
            self._time = np.ascontiguousarray(self._head(pos, t_at)) if t_at is not None else np.zeros(n, np.uint64)
            self._cpu = (self._head(pos, c_at) & np.uint64(0xFFFFFFFF)).astype(np.int32) if c_at is not None \
                else np.zeros(n, np.int32)
        else:
            self._time = np.zeros(n, np.uint64)
            self._cpu = np.zeros(n, np.int32)
            for ai, lay in layouts.items():
                rows = np.flatnonzero(self._attr_of == ai)
                if len(rows) and lay.time is not None:
                    self._time[rows] = self._words[pos[rows] + lay.time]
                if len(rows) and lay.cpu is not None:
                    self._cpu[rows] = self._words.view(np.uint32)[2 * (pos[rows] + lay.cpu)].astype(np.int32)
        for ai, lay in layouts.items():
            attr = h.attrs[ai]
            if lay.cpu is None and attr.type == _TYPE_TRACEPOINT:
                self.info.warnings.append(f"{attr.name}: samples have no CPU (record with -a): all shown as cpu 0")
        self._name_tasks(pos, layouts, history)
        self._order = None  # None: file order is per-CPU time order
        if n:
            # Stable sort by CPU (radix sort for 16-bit keys) keeps file order within each CPU.
            cpu_key = self._cpu.astype(np.uint16) if self._cpu.max() < 1 << 16 and self._cpu.min() >= 0 \
                else self._cpu
            by_cpu = np.argsort(cpu_key, kind="stable")
            t, c = self._time[by_cpu], self._cpu[by_cpu]
            if np.any((c[1:] == c[:-1]) & (t[1:] < t[:-1])):
                self._order = np.lexsort((pos, self._time))
        # Each gap goes just before the first sample after it: that sample's rank decides its chunk.
        if self._order is None:
            self._lost_rank = np.searchsorted(pos, self._lost_pos)
            self._lost_seq = self._lost_pos.copy()
            prev = self._lost_rank - 1
        else:
            t_sorted = self._time[self._order]
            prev_file = np.searchsorted(pos, self._lost_pos) - 1
            fallback = np.where(prev_file >= 0, self._time[np.maximum(prev_file, 0)], 0) if n else \
                np.zeros(len(self._lost_pos), np.uint64)
            lt = np.array([(fallback[i] if x is None else x) for i, x in enumerate(lost_time)], dtype=np.uint64)
            self._lost_rank = np.searchsorted(t_sorted, lt, side="left")
            self._lost_seq = 2 * self._lost_rank.astype(np.int64) - 1  # samples are 2 * rank
            prev = self._lost_rank - 1
        lt_known = np.array([(-1 if x is None else x) for x in lost_time], dtype=np.int64)
        before = self._time[self._order[np.maximum(prev, 0)]] if (self._order is not None and n) else \
            (self._time[np.maximum(prev, 0)] if n else np.zeros(len(prev), np.uint64))
        self._lost_time = np.where(lt_known >= 0, lt_known.astype(np.uint64), before).astype(np.uint64)
        self._head_cols = {}  # the gather is large (samples x words): keep only what was copied out

    def gaps(self) -> list[tuple[int, int, int, Optional[int]]]:
        """The lost-event records as (cpu, time, count, time of the CPU's next sample or None).

        For front ends that see the samples but not the records (perf script -s): a gap belongs
        just before that next sample in the CPU's stream.
        """
        out = []
        n = len(self._sample_words)
        stream = np.arange(n) if self._order is None else self._order
        cpus = self._cpu[stream]
        for i in range(len(self._lost_pos)):
            cpu = int(self._lost_cpu[i])
            after = np.flatnonzero(cpus[int(self._lost_rank[i]):] == cpu)
            nxt = int(self._time[stream[int(self._lost_rank[i]) + int(after[0])]]) if len(after) else None
            out.append((cpu, int(self._lost_time[i]), int(self._lost_count[i]), nxt))
        return out

    def _name_tasks(self, pos: np.ndarray, layouts: dict, history: dict[int, list[tuple[int, str]]]) -> None:
        """A renamed task (exec) is shown by its name at its last sample, as perf script shows it then."""
        renamed = {tid: h for tid, h in history.items() if len(h) > 1}
        tid_slots = {lay.tid for lay in layouts.values()}
        if not renamed or not len(pos) or len(tid_slots) != 1 or None in tid_slots:
            return
        tids = (self._head(pos, tid_slots.pop()) >> np.uint64(32)).astype(np.uint32)
        # Renamed tids -> 1..k through a table (pids are small), then per rename level one
        # vectorised pass: does the task have a sample at or after that rename?
        order = sorted(renamed)
        top = max(order)
        if top >= 1 << 24:
            return
        lut = np.zeros(top + 1, dtype=np.int32)
        lut[order] = np.arange(1, len(order) + 1, dtype=np.int32)
        group = lut[np.minimum(tids, np.uint32(top))]
        group[tids > top] = 0
        rows = np.flatnonzero(group)
        group, when_sampled = group[rows], self._time[rows]
        names = {tid: renamed[tid][0][1] for tid in order}
        for level in range(1, max(len(h) for h in renamed.values())):
            since = np.full(len(order) + 1, np.iinfo(np.int64).max, dtype=np.int64)
            for g, tid in enumerate(order, 1):
                if level < len(renamed[tid]):
                    since[g] = renamed[tid][level][0]
            seen = np.bincount(group, weights=(when_sampled.astype(np.int64) >= since[group]),
                               minlength=len(order) + 1)
            for g, tid in enumerate(order, 1):
                if seen[g] > 0:
                    names[tid] = renamed[tid][level][1]
        has_samples = np.bincount(group, minlength=len(order) + 1)
        for g, tid in enumerate(order, 1):
            if has_samples[g]:  # a task never sampled keeps its final name
                self.info.cmdlines[tid] = names[tid]

    def _head(self, pos: np.ndarray, j: int) -> np.ndarray:
        """Word ``j`` of every sample record (from the scan's gather when it has it)."""
        col = self._head_cols.get(j)
        return col if col is not None else self._words[pos + j]

    def _attr_index(self, pos: np.ndarray) -> np.ndarray:
        attrs = self.header.attrs
        n = len(pos)
        if len(attrs) <= 1 or n == 0:
            return np.zeros(n, np.int32)
        lay = _Layout(attrs[0])
        same_type = len({a.sample_type for a in attrs}) == 1
        if lay.identifier is not None:
            ids = self._head(pos, lay.identifier)
        elif same_type and lay.id is not None:
            ids = self._head(pos, lay.id)
        else:
            raise _err(self.path, None, "samples of several events carry no event id (PERF_SAMPLE_IDENTIFIER)",
                       "re-record with a current perf")
        table_ids = np.array([i for a in attrs for i in a.ids], dtype=np.uint64)
        table_attr = np.array([a.index for a in attrs for _ in a.ids], dtype=np.int32)
        if len(table_ids) and int(table_ids.max()) < 1 << 20:
            # perf's ids are small numbers: a lookup table is one gather.
            lut = np.full(int(table_ids.max()) + 2, -1, dtype=np.int32)
            lut[table_ids.astype(np.int64)] = table_attr
            out = lut[np.minimum(ids, np.uint64(len(lut) - 1)).astype(np.int64)]
            if (out < 0).any():
                self.info.warnings.append(f"{int((out < 0).sum())} samples with an unknown event id were skipped")
            return out
        order = np.argsort(table_ids)
        table_ids, table_attr = table_ids[order], table_attr[order]
        k = np.clip(np.searchsorted(table_ids, ids), 0, len(table_ids) - 1)
        found = table_ids[k] == ids
        out = np.where(found, table_attr[k], -1).astype(np.int32)
        if not found.all():
            self.info.warnings.append(f"{int((~found).sum())} samples with an unknown event id were skipped")
        return out

    def _trailer_layout(self) -> Optional[list[str]]:
        attrs = self.header.attrs
        if not attrs or not attrs[0].sample_id_all:
            return None
        st = attrs[0].sample_type
        names = []
        for bit, name, words in ((_S_TID, "tid", 1), (_S_TIME, "time", 1), (_S_ID, "id", 1),
                                 (_S_STREAM_ID, "stream", 1), (_S_CPU, "cpu", 1), (_S_IDENTIFIER, "ident", 1)):
            if st & bit:
                names.append(name)
        return names

    def _trailer(self, rec: _Other, names: Optional[list[str]]) -> tuple[Optional[int], Optional[int]]:
        """(cpu, time) from a non-sample record's sample_id trailer (sample_id_all)."""
        if not names:
            return None, None
        start = rec.pos + rec.size - 8 * len(names)
        vals = struct.unpack_from(f"<{len(names)}Q", self._raw, start)
        d = dict(zip(names, vals))
        cpu = d["cpu"] & 0xFFFFFFFF if "cpu" in d else None
        return cpu, d.get("time")

    # -- decoding ---------------------------------------------------------------------------
    def chunks(self, events: Optional[Collection[str]] = None, buffer: str = "") -> Iterator[Chunk]:
        """Yield the samples (and lost-event gaps) in chunks of at most ``chunk_samples`` samples."""
        if buffer:
            return
        wanted = None if events is None else set(events)
        attrs = self.header.attrs
        decode = {a.index for a in attrs
                  if a.type == _TYPE_TRACEPOINT and a.format is not None and (wanted is None or a.name in wanted)}
        missing = {a.name for a in attrs if a.type == _TYPE_TRACEPOINT and a.format is None}
        for name in sorted(missing):
            note = f"{name}: no format in the file's tracing data; its samples were skipped"
            if note not in self.info.warnings:
                self.info.warnings.append(note)
        pos = self._sample_words
        n = len(pos)
        order = self._order
        step = max(1, self.chunk_samples)
        if n == 0:
            missed = self._lost_in(0, 0, 0)
            if missed is not None:
                yield Chunk({MISSED_EVENTS: missed})
            return
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            rows = np.arange(lo, hi) if order is None else order[lo:hi]
            seq = pos[rows] if order is None else 2 * np.arange(lo, hi, dtype=np.int64)
            chunk = Chunk()
            attr_of = self._attr_of[rows]
            for ai in np.unique(attr_of):
                ai = int(ai)
                if ai not in decode:
                    continue
                sel = np.flatnonzero(attr_of == ai)
                attr = attrs[ai]
                chunk.batches[attr.name] = self._decode(attr, rows[sel], seq[sel])
            missed = self._lost_in(lo, hi, n)
            if missed is not None:
                chunk.batches[MISSED_EVENTS] = missed
            if chunk.batches:
                yield chunk

    def _lost_in(self, lo: int, hi: int, n: int) -> Optional[EventBatch]:
        """The gaps whose next sample is in rows [lo, hi) (the last chunk also takes trailing gaps)."""
        if not len(self._lost_pos):
            return None
        r = self._lost_rank
        idx = np.flatnonzero((r >= lo) & ((r < hi) | (hi >= n)))
        if not len(idx):
            return None
        return EventBatch(
            name=MISSED_EVENTS, ts=self._lost_time[idx], cpu=self._lost_cpu[idx].copy(),
            pid=np.full(len(idx), -1, np.int32), seq=self._lost_seq[idx].astype(np.int64),
            fields={"count": self._lost_count[idx].copy()},
        )

    def _decode(self, attr: PerfAttr, rows: np.ndarray, seq: np.ndarray) -> EventBatch:
        """One event's columns for the samples ``rows`` (indices into the sample tables)."""
        words, raw, views = self._words, self._raw, self._views
        pos = self._sample_words[rows]
        lay = _Layout(attr)
        n = len(pos)
        w = pos + lay.after_fixed
        if lay.read_words:
            if lay.read_group:
                nr = words[w].astype(np.int64)
                w = w + 1 + lay.read_extra + nr * lay.read_per_value
            else:
                w = w + lay.read_words
        fields: dict[str, np.ndarray] = {}
        dictionary: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # strings as decoded: codes + values
        if lay.callchain:
            nr = words[w].astype(np.int64)
            fields["common_callchain"] = _kernel_frames(words, w, nr)
            w = w + 1 + nr
        fmt = attr.format
        assert fmt is not None
        raw_start = w * 8 + 4  # after the u32 raw size
        fixed = not lay.callchain and not lay.read_group and n > 0
        rel = int(raw_start[0] - pos[0] * 8) if fixed else 0
        last_word = len(words) - 1
        columns: dict[int, np.ndarray] = {}
        if fixed:
            # The words every fixed field touches, gathered row by row in one go: a record's
            # words sit together, so this reads each record's cache lines once.
            needed = sorted({j for f in fmt.fields if not f.is_string or f.data_loc or f.rel_loc
                             for j in range((rel + f.offset) // 8,
                                            (rel + f.offset + (4 if f.data_loc or f.rel_loc else f.size) - 1) // 8 + 1)})
            if needed:
                grid = words[np.minimum(pos[:, None] + np.array(needed, dtype=np.int64), last_word)]
                for i, j in enumerate(needed):
                    columns[j] = grid[:, i]

        def word(j: int) -> np.ndarray:
            """Word j of every record (gathered once): records are read a word column at a time."""
            col = columns.get(j)
            if col is None:
                col = columns[j] = words[np.minimum(pos + j, last_word)]
            return col

        def span(offset: int, nbytes: int) -> np.ndarray:
            """(n, nbytes) uint8: the bytes at raw offset ``offset`` of every record."""
            b = rel + offset
            j0, j1 = b // 8, (b + nbytes - 1) // 8
            stacked = np.stack([word(j) for j in range(j0, j1 + 1)], axis=1)
            return stacked.view(np.uint8)[:, b % 8:b % 8 + nbytes]

        def read(offset: int, size: int, dtype: np.dtype, count: int = 1) -> np.ndarray:
            """Hot path, open-coded: every record of this event has its raw data at the same place
            (no call chain), so a field is a shift of one or two word columns."""
            if not fixed:
                return _gather(views, raw_start + offset, size, dtype, count)
            if count == 1 and size in (1, 2, 4, 8):
                b = rel + offset
                shift = np.uint64((b % 8) * 8)
                v = word(b // 8) >> shift if shift else word(b // 8)
                if (b % 8) + size > 8:
                    v = v | (word(b // 8 + 1) << np.uint64(64 - (b % 8) * 8))
                return v.astype(f"<u{size}").view(dtype)
            col = np.ascontiguousarray(span(offset, size * count)).view(dtype)
            return col.reshape(n, count) if count > 1 else col.reshape(n)

        for f in fmt.fields:
            if f.data_loc or f.rel_loc:
                loc = read(f.offset, 4, np.dtype("<u4")).astype(np.int64)
                off, length = loc & 0xFFFF, loc >> 16
                if f.rel_loc:
                    off = off + f.offset + f.size
                if f.is_string and fixed and off.min() == off.max() and length.min() == length.max():
                    codes, values = dictionary[f.name] = _texts(span(int(off[0]), int(length[0])))
                    fields[f.name] = values[codes]
                    continue
                start = raw_start + off
                if f.is_string:
                    fields[f.name] = _strings(views, start, length)
                else:
                    blobs = np.empty(n, dtype=object)
                    for i in range(n):
                        blobs[i] = bytes(raw[start[i]:start[i] + length[i]])
                    fields[f.name] = blobs
            elif f.is_string:
                if fixed:
                    codes, values = dictionary[f.name] = _texts(span(f.offset, f.size))
                    fields[f.name] = values[codes]
                else:
                    fields[f.name] = _strings(views, raw_start + f.offset, np.full(n, f.size, np.int64))
            else:
                dt = f.dtype(True)
                count = f.array_len or 1
                if dt.kind == "V":
                    fields[f.name] = read(f.offset, f.size, np.dtype(f"V{f.size}"))
                else:
                    fields[f.name] = read(f.offset, dt.itemsize, dt, count if f.array_len else 1)
        ts = self._time[rows] if lay.time is not None else np.zeros(n, np.uint64)
        cpu = self._cpu[rows]
        if "common_pid" in fields:
            pid = fields["common_pid"].astype(np.int32)
        elif lay.tid is not None:
            pid = (words[pos + lay.tid] >> np.uint64(32)).astype(np.int32)
        else:
            pid = np.full(n, -1, np.int32)
        return EventBatch(name=attr.name, ts=ts, cpu=cpu.astype(np.int32), pid=pid, seq=seq.astype(np.int64),
                          fields=fields, dictionary=dictionary)

    def __enter__(self) -> "PerfDataReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the mapping and the file."""
        self._raw = self._words = self._views = None  # type: ignore[assignment]
        mm = getattr(self, "_mm", None)
        if isinstance(mm, mmap.mmap):
            try:
                mm.close()
            except BufferError:
                pass  # a caller still holds a view into a batch: the map closes with it
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()


def _clock_name(clockid: Optional[int]) -> str:
    if clockid is None:
        return "perf"  # perf's default: local_clock() (sched_clock), like trace-cmd's "local"
    return {0: "realtime", 1: "monotonic", 4: "monotonic_raw", 7: "boottime", 11: "tai"}.get(clockid,
                                                                                            f"clockid {clockid}")


def open_perf_data(path: str, kallsyms: Optional[str] = None) -> PerfDataReader:
    """Open a perf.data for reading; raises :class:`TraceFormatError` with one clear line."""
    return PerfDataReader(path, kallsyms)
