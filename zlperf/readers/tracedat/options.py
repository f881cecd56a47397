"""trace.dat options (clock, uname, CPU stats, CPU count, time offsets) and the buffers they describe.

Option ids and layouts as in trace-cmd's Documentation/trace-cmd/trace-cmd.dat.v7.5.txt; v6 files
use the same ids in their options block (lib/trace-cmd/trace-input.c reads both).
"""

from __future__ import annotations

__all__ = ["Options", "BufferInfo", "CpuData", "check_cpu_table", "SECTION_IDS"]

import re
import struct
from dataclasses import dataclass, field
from typing import Optional

from zlperf.errors import TraceFormatError
from zlperf.events import CpuStats
from zlperf.readers.cursor import ByteCursor
from zlperf.readers.metadata import MAX_CPUS, parse_cpustats, plausible_cpu_count

# Option ids.
OPT_DONE, OPT_DATE, OPT_CPUSTAT, OPT_BUFFER, OPT_TRACECLOCK, OPT_UNAME = 0, 1, 2, 3, 4, 5
OPT_OFFSET, OPT_CPUCOUNT, OPT_TIME_SHIFT, OPT_TSC2NSEC = 7, 8, 12, 14
OPT_HEADER_INFO, OPT_FTRACE_EVENTS, OPT_EVENT_FORMATS = 16, 17, 18
OPT_KALLSYMS, OPT_PRINTK, OPT_CMDLINES, OPT_BUFFER_TEXT = 19, 20, 21, 22
#: v7 options that point at a metadata section: option id -> what the section holds.
SECTION_IDS = {OPT_HEADER_INFO: "header info", OPT_FTRACE_EVENTS: "event formats",
               OPT_EVENT_FORMATS: "event formats", OPT_KALLSYMS: "kallsyms", OPT_PRINTK: "printk formats",
               OPT_CMDLINES: "saved cmdlines"}

#: Bytes per CPU in a v7 BUFFER option: u32 id, u64 offset, u64 size.
_BUFFER_CPU = 20


@dataclass
class CpuData:
    """Where one CPU's ring-buffer pages are in the file."""

    cpu: int
    offset: int
    size: int


@dataclass
class BufferInfo:
    """One trace instance's data (``""`` = the top instance)."""

    name: str
    offset: int  #: the flyrecord section (v7) or block (v6)
    clock: Optional[str] = None
    page_size: int = 4096
    cpus: list[CpuData] = field(default_factory=list)
    compressed: bool = False
    latency: bool = False


@dataclass
class Options:
    """What a file's options say; filled by :meth:`add` as the options are read."""

    path: str
    version: int
    big_endian: bool
    page_size: int
    warnings: list[str]  #: notes (what is assumed or not applied)
    damage: list[str]  #: what is wrong with the file (also shown as warnings)
    clock: Optional[str] = None
    uname: Optional[str] = None
    cpu_stats: dict[int, CpuStats] = field(default_factory=dict)
    cpus: int = 0  #: the CPUCOUNT option, 0 when absent or implausible
    ts_offset: int = 0  #: ns added to every timestamp (DATE and OFFSET options)
    buffers: list[BufferInfo] = field(default_factory=list)
    sections: dict[int, int] = field(default_factory=dict)  #: v7: section option id -> file offset

    def add(self, oid: int, data: bytes, at: int) -> None:
        """Take one option (``at``: file offset of its data)."""
        order = ">" if self.big_endian else "<"
        if self.version >= 7 and oid in SECTION_IDS and len(data) >= 8:
            self.sections[oid] = struct.unpack_from(order + "Q", data)[0]
            return
        text = data.split(b"\0", 1)[0].decode("utf-8", "replace")
        if oid == OPT_TRACECLOCK:
            m = re.search(r"\[(\w[\w-]*)\]", text)
            if m:
                self.clock = m.group(1)
        elif oid == OPT_UNAME:
            self.uname = text
        elif oid == OPT_CPUSTAT:
            self.cpu_stats.update(parse_cpustats(text))
        elif oid == OPT_CPUCOUNT and len(data) >= 4:
            n = struct.unpack_from(order + "I", data)[0]
            if plausible_cpu_count(n):
                self.cpus = n
            else:
                self.damage.append(f"offset {at:#x}: implausible CPU count {n} in the CPUCOUNT option "
                                     f"(Linux runs on 1 to {MAX_CPUS}), ignored")
        elif oid in (OPT_DATE, OPT_OFFSET):
            # DATE: microseconds between trace clock and wall clock; OFFSET: ns (trace-input.c).
            try:
                self.ts_offset += int(text, 0) * (1000 if oid == OPT_DATE else 1)
            except ValueError:
                self.warnings.append(f"offset {at:#x}: {'DATE' if oid == OPT_DATE else 'OFFSET'} option "
                                     f"{text[:40]!r} unreadable, ignored")
        elif oid in (OPT_TSC2NSEC, OPT_TIME_SHIFT):
            note = "timestamps are raw: TSC-to-ns / host-guest time shift options are not applied"
            if note not in self.warnings:
                self.warnings.append(note)
        elif oid in (OPT_BUFFER, OPT_BUFFER_TEXT):
            try:
                self.buffers.append(self._buffer(oid, data, at))
            except TraceFormatError as exc:
                self.damage.append(f"a BUFFER option is unreadable, its instance is skipped: {exc}")

    def _buffer(self, oid: int, data: bytes, at: int) -> BufferInfo:
        """A BUFFER option: u64 offset and name (v6); v7 adds clock, sub-buffer size and CPU table."""
        b = ByteCursor(data, self.path, "BUFFER option", base=at, big_endian=self.big_endian)
        offset = b.u64()
        name = b.cstr()
        buf = BufferInfo(name, offset, page_size=self.page_size)
        if self.version < 7:
            return buf
        buf.clock = b.cstr()
        if oid == OPT_BUFFER_TEXT:
            buf.latency = True
            return buf
        # trace-cmd 3.x stores the sub-buffer size before the CPU count; older v7 writers do not:
        # tell them apart by which layout fills the option exactly.
        if b.left >= 8 and (b.left - 8) == _BUFFER_CPU * struct.unpack_from(
                (">" if self.big_endian else "<") + "I", data, b.pos + 4)[0]:
            buf.page_size = b.u32()
            if buf.page_size < 64 or buf.page_size > (1 << 24) or buf.page_size % 4:
                raise b.error(f"buffer {name!r}: implausible page size {buf.page_size}", "the file is damaged")
        for _ in range(b.count(4, _BUFFER_CPU, f"CPU count of buffer {name!r}")):
            cpu, off, size = b.u32(), b.u64(), b.u64()
            buf.cpus.append(CpuData(cpu, off, size))
        return buf


def check_cpu_table(path: str, table: list[CpuData], data_start: int, file_size: int, where: int,
                    warnings: list[str], what: str = "") -> list[CpuData]:
    """The entries of a CPU table that can hold data, each checked against the file.

    An id that is not a CPU, a repeated id, data that starts before ``data_start`` (the end of
    the metadata) or inside the previous CPU's data is skipped with a warning; data running past
    the end of the file is cut to what is there (a truncated file). When most entries are
    impossible the table itself (or the CPU count that sized it) is damaged: one error.
    """
    out: list[CpuData] = []
    bad: list[str] = []
    seen: set[int] = set()
    prev_end = data_start
    label = f"{what} " if what else ""
    for cd in table:
        if cd.cpu >= MAX_CPUS or cd.cpu in seen:
            bad.append(f"cpu id {cd.cpu} is {'repeated' if cd.cpu in seen else 'not a CPU number'}")
            continue
        seen.add(cd.cpu)
        if cd.size == 0:
            out.append(cd)
            continue
        if cd.offset < prev_end:
            bad.append(f"cpu {cd.cpu}: data at offset {cd.offset:#x} overlaps the metadata or the previous CPU's data")
            continue
        if cd.offset >= file_size:
            warnings.append(f"{label}cpu {cd.cpu}: its {cd.size} bytes of data at offset {cd.offset:#x} are "
                            f"past the end of the file ({file_size} bytes; truncated?)")
            out.append(CpuData(cd.cpu, cd.offset, 0))
            continue
        if cd.offset + cd.size > file_size:
            avail = file_size - cd.offset
            warnings.append(f"{label}cpu {cd.cpu}: data cut short: {cd.size - avail} of {cd.size} bytes after "
                            f"offset {cd.offset:#x} are missing from the file (truncated?)")
            cd = CpuData(cd.cpu, cd.offset, avail)
        prev_end = cd.offset + cd.size
        out.append(cd)
    with_data = sum(1 for cd in table if cd.size)
    if bad and len(bad) * 2 >= max(with_data, 1) and len(bad) > 1:
        raise TraceFormatError(path, where, f"{label}CPU table of {len(table)} entries is implausible "
                               f"({len(bad)} impossible, first: {bad[0]})",
                               "the CPU count or table is damaged; copy or record the file again")
    for problem in bad:
        warnings.append(f"{label}{problem}: skipped, its events are lost")
    return out
