"""perf.data outside its data section: file header, event attributes, feature sections, sample layout.

Specs: the kernel's tools/perf/Documentation/perf.data-file-format.txt (header, attrs, features, as
tools/perf/util/header.c writes them) and include/uapi/linux/perf_event.h (sample_type bits).
"""

from __future__ import annotations

__all__ = ["PERF_MAGIC", "TYPE_TRACEPOINT", "PerfAttr", "PerfHeaderInfo", "SampleLayout", "read_header"]

import os
import struct
from dataclasses import dataclass, field
from typing import Optional

from zlperf.errors import TraceFormatError
from zlperf.formats import EventFormat, format_problem
from zlperf.readers.cursor import ByteCursor
from zlperf.readers.metadata import MAX_CPUS
from zlperf.readers.tracingdata import EventFormats, read_tracing_data, read_tracing_header

PERF_MAGIC = b"PERFILE2"
_MAGIC_SWAPPED = PERF_MAGIC[::-1]

#: perf_event_attr.type of tracepoints.
TYPE_TRACEPOINT = 2

# sample_type bits, in the order the fields appear in a PERF_RECORD_SAMPLE.
S_IP, S_TID, S_TIME, S_ADDR, S_READ = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4
S_CALLCHAIN, S_ID, S_CPU, S_PERIOD, S_STREAM_ID = 1 << 5, 1 << 6, 1 << 7, 1 << 8, 1 << 9
S_RAW, S_IDENTIFIER = 1 << 10, 1 << 16

# read_format bits.
_R_TOTAL_TIME_ENABLED, _R_TOTAL_TIME_RUNNING, _R_ID, _R_GROUP, _R_LOST = 1, 2, 4, 8, 16

# Feature bits (perf's HEADER_* ids) read here.
_F_TRACING_DATA, _F_HOSTNAME, _F_OSRELEASE, _F_ARCH, _F_NRCPUS = 1, 3, 4, 6, 7
_F_DIR_FORMAT, _F_COMPRESSED = 24, 27

_HEADER = struct.Struct("<8sQQQQQQQQ4Q")
#: perf_event_attr as of PERF_ATTR_SIZE_VER0 (64 bytes) plus the ids' file section (16 bytes).
_MIN_ATTR = 64 + 16
#: Largest attribute perf writes (PERF_ATTR_SIZE_VER8 is 136 bytes): more is a damaged header.
_MAX_ATTR = 4096
#: Largest number of events (attrs) in one file; perf records a few, `perf record -e '*:*'` ~2,000.
_MAX_ATTRS = 1 << 16


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
    format: Optional[EventFormat] = None  #: None when the file has none, or a damaged one
    problem: Optional[str] = None  #: what is wrong with the stored format


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
    nr_cpus: int = 0
    clockid: Optional[int] = None  #: the attrs' clockid when recorded with perf record -k
    compressed_mmap_len: int = 0  #: HEADER_COMPRESSED: the largest output of one compressed record
    long_size: int = 8
    page_size: int = 4096
    formats: EventFormats = field(default_factory=EventFormats)
    saved_cmdlines: dict[int, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class SampleLayout:
    """Word offsets of the fixed-position fields of a PERF_RECORD_SAMPLE for one sample_type.

    Fields follow perf_event.h's order: IDENTIFIER, IP, TID, TIME, ADDR, ID, STREAM_ID, CPU,
    PERIOD, READ, CALLCHAIN, RAW; each present one takes 8 bytes up to READ.
    """

    def __init__(self, attr: PerfAttr):
        st = attr.sample_type
        w = 1  # after perf_event_header
        self.identifier = self.ip = self.tid = self.time = self.id = self.cpu = self.period = None
        for bit, name in ((S_IDENTIFIER, "identifier"), (S_IP, "ip"), (S_TID, "tid"), (S_TIME, "time"),
                          (S_ADDR, None), (S_ID, "id"), (S_STREAM_ID, None), (S_CPU, "cpu"), (S_PERIOD, "period")):
            if st & bit:
                if name:
                    setattr(self, name, w)
                w += 1
        self.read_words = 0
        self.read_extra = self.read_per_value = 0
        self.read_group = bool(st & S_READ and attr.read_format & _R_GROUP)
        rf = attr.read_format
        if st & S_READ:
            self.read_extra = bool(rf & _R_TOTAL_TIME_ENABLED) + bool(rf & _R_TOTAL_TIME_RUNNING)
            self.read_per_value = 1 + bool(rf & _R_ID) + bool(rf & _R_LOST)
            self.read_words = self.read_extra + self.read_per_value  # non-group: value + extras
        self.after_fixed = w  # READ (if any) starts here
        self.callchain = bool(st & S_CALLCHAIN)
        self.raw = bool(st & S_RAW)


def _parse_tracing_data(buf, start: int, size: int, hdr: PerfHeaderInfo) -> None:
    """HEADER_TRACING_DATA: the trace.dat v6 tracing-data layout (see :mod:`zlperf.readers.tracingdata`)."""
    cur = ByteCursor(buf, hdr.path, "tracing data (event formats)", start=start, end=start + size)
    head = read_tracing_header(cur, "tracing data section is not trace-cmd's",
                               "the file was not recorded with tracepoints, or is damaged")
    if head.big_endian:
        raise cur.error("big-endian tracing data is not supported", "read it with perf script on its host",
                        at=start)
    hdr.long_size, hdr.page_size = head.long_size, head.page_size
    try:  # perf's writer adds the saved cmdlines since its tracing-data version 0.6 (trace-event-read.c)
        has_cmdlines = float(head.version) >= 0.6
    except ValueError:
        has_cmdlines = False
    data = read_tracing_data(cur, head, hdr.warnings, cmdlines=has_cmdlines)
    hdr.formats, hdr.saved_cmdlines = data.formats, data.cmdlines


def _parse_features(buf, file_size: int, feat_bits: list[int], hdr: PerfHeaderInfo) -> None:
    table = ByteCursor(buf, hdr.path, "feature section table", start=hdr.data_offset + hdr.data_size)
    for bit in feat_bits:
        at = table.offset
        if table.left < 16:
            raise table.error(f"feature section table is cut off (file is {file_size} bytes)",
                              "the perf.data was truncated; copy it again from the recording host")
        off, size = table.u64(), table.u64()
        if off + size > file_size:
            raise TraceFormatError(hdr.path, at, f"feature {bit} lies past the end of the file ({file_size} bytes)",
                                   "the perf.data was truncated; copy it again from the recording host")
        c = ByteCursor(buf, hdr.path, f"feature {bit}", start=off, end=off + size)
        if bit == _F_TRACING_DATA:
            _parse_tracing_data(buf, off, size, hdr)
        elif bit == _F_HOSTNAME:
            hdr.hostname = c.perf_string()
        elif bit == _F_OSRELEASE:
            hdr.osrelease = c.perf_string()
        elif bit == _F_ARCH:
            hdr.arch = c.perf_string()
        elif bit == _F_NRCPUS:
            first, second = c.u32(), c.u32()  # the doc and perf's writer disagree on the order:
            n = max(first, second)  # CPUs the recording could see, like trace.dat's count
            if 0 < n <= MAX_CPUS:
                hdr.nr_cpus = n
            else:
                hdr.warnings.append(f"implausible CPU count {n} in the NRCPUS feature (Linux runs on 1 to "
                                    f"{MAX_CPUS}), ignored")
        elif bit == _F_COMPRESSED:
            # struct { u32 version, type, level, ratio, mmap_len } (header.c write_compressed)
            c.skip(16)
            hdr.compressed_mmap_len = c.u32()
        elif bit == _F_DIR_FORMAT:
            hdr.warnings.append("directory-format perf.data (perf record --threads): only the main data file is read")


def read_header(path: str, buf) -> PerfHeaderInfo:
    """Parse the file header, attrs and feature sections of a perf.data held in ``buf`` (not the data)."""
    path = str(path)
    if os.path.isdir(path):
        raise TraceFormatError(path, None, "is a directory (perf record --threads writes one)",
                               "record without --threads, or merge it with `perf inject -i DIR -o FILE`")
    file_size = len(buf)
    magic = bytes(buf[:8])
    if magic == PERF_MAGIC and file_size < _HEADER.size:
        raise TraceFormatError(path, file_size, "the file header is cut off", "the perf.data was truncated")
    if file_size < 16 or magic not in (PERF_MAGIC, _MAGIC_SWAPPED):
        raise TraceFormatError(path, 0, "not a perf.data file (no PERFILE2 magic)",
                               "give a file written by `perf record`")
    if magic == _MAGIC_SWAPPED:
        raise TraceFormatError(path, 0, "big-endian perf.data is not supported",
                               "read it on a big-endian host with perf script")
    header_size = struct.unpack_from("<Q", buf, 8)[0]
    if header_size == 16:
        raise TraceFormatError(path, 0, "pipe-mode perf.data (perf record -o -) is not supported",
                               "convert it with `perf inject -i FILE -o FILE2`")
    (_, header_size, attr_size, a_off, a_size, d_off, d_size, _e_off, _e_size, *flags) = _HEADER.unpack_from(buf, 0)
    hdr = PerfHeaderInfo(path, d_off, d_size, [])
    if d_size == 0 and file_size > d_off:
        # perf record writes the final header at exit: 0 means it never finished.
        raise TraceFormatError(path, 8, "perf record did not finish this file: the header has no data size and no "
                               "event formats", "re-record and let perf record exit normally (Ctrl-C once)")
    if d_off + d_size > file_size:
        raise TraceFormatError(path, file_size, f"data section ends at {d_off + d_size:#x}, past the end of the "
                               "file", "the perf.data was truncated; copy it again from the recording host")
    if not _MIN_ATTR <= attr_size <= _MAX_ATTR or a_size % attr_size or a_off + a_size > file_size \
            or a_size // attr_size > _MAX_ATTRS:
        raise TraceFormatError(path, 24, f"attribute section is malformed (attr size {attr_size}, section "
                               f"{a_size} bytes)", "the perf.data is damaged")
    for i in range(a_size // attr_size):
        pos = a_off + i * attr_size
        a_type, _a_sz, config, _period, sample_type, read_format, bits = struct.unpack_from("<IIQQQQQ", buf, pos)
        ids_off, ids_size = struct.unpack_from("<QQ", buf, pos + attr_size - 16)
        if ids_off + ids_size > file_size:
            raise TraceFormatError(path, pos, "attribute ids lie past the end of the file",
                                   "the perf.data was truncated")
        ids = list(struct.unpack_from(f"<{ids_size // 8}Q", buf, ids_off)) if ids_size else []
        hdr.attrs.append(PerfAttr(i, a_type, config, sample_type, read_format, bool(bits >> 18 & 1), ids))
        if bits >> 25 & 1 and attr_size - 16 >= 96 and hdr.clockid is None:  # use_clockid: perf record -k
            hdr.clockid = struct.unpack_from("<i", buf, pos + 92)[0]
    feat_bits = [b for b in range(256) if flags[b // 64] >> (b % 64) & 1]
    _parse_features(buf, file_size, feat_bits, hdr)
    for a in hdr.attrs:
        if a.type == TYPE_TRACEPOINT:
            a.format = hdr.formats.by_id(a.config)
            a.name = a.format.full_name if a.format else f"tracepoint#{a.config}"
            a.problem = format_problem(a.format, hdr.page_size) if a.format else None
            if a.problem:
                hdr.warnings.append(f"{a.name}: its format is damaged ({a.problem}); its samples are skipped")
                a.format = None
    return hdr
