"""The trace.dat container (trace-cmd file versions 6 and 7): header, sections, options, buffers, CPU tables.

Layouts: trace-cmd's Documentation/trace-cmd/trace-cmd.dat.v6.5.txt and trace-cmd.dat.v7.5.txt, read
as lib/trace-cmd/trace-input.c reads them. Every size and count is checked against the file first.
"""

from __future__ import annotations

__all__ = ["TraceDatFile", "MAGIC"]

import mmap
import os
import struct
from typing import Callable, Iterator, Optional

from zlperf.errors import TraceFormatError
from zlperf.events import CpuStats
from zlperf.formats import HeaderPage, parse_header_page
from zlperf.kallsyms import MAX_KALLSYMS_BYTES
from zlperf.readers.compression import Inflater
from zlperf.readers.cursor import ByteCursor
from zlperf.readers.metadata import MAX_CPUS
from zlperf.readers.tracedat.options import (OPT_CMDLINES, OPT_DONE, OPT_EVENT_FORMATS, OPT_FTRACE_EVENTS,
                                             OPT_HEADER_INFO, OPT_KALLSYMS, SECTION_IDS, BufferInfo, CpuData,
                                             Options, check_cpu_table)
from zlperf.readers.tracedat.pages import RUN_BYTES, PageRun, page_runs
from zlperf.readers.tracingdata import (MAGIC, EventFormats, read_cmdlines, read_event_systems,
                                        read_ftrace_formats, read_header_info, read_kallsyms, read_tracing_data,
                                        read_tracing_header)

_SECTION_OPTIONS = 0
_SEC_FL_COMPRESS = 1
_SECTION_HEADER = 16  # u16 id, u16 flags, u32 description, u64 size

#: Largest (uncompressed) size accepted per section kind: far above any real file, far below a bomb.
SECTION_LIMITS = {
    "options": 16 << 20,  # a few hundred bytes per option, 20 bytes per CPU in a BUFFER option
    "header info": 1 << 20,  # two short format texts
    "event formats": 64 << 20,  # ~2,000 events x ~1 KiB on a distribution kernel
    "kallsyms": MAX_KALLSYMS_BYTES + 4,
    "printk formats": 64 << 20,
    "saved cmdlines": 16 << 20,  # the kernel keeps at most PID_MAX_DEFAULT (32768) entries
}


class TraceDatFile:
    """A trace.dat opened for reading: metadata parsed at open, pages read on demand."""

    def __init__(self, path: str, name: Optional[str] = None):
        """Open ``path`` and parse its metadata; ``name``: the path to name in messages, when ``path``
        is a temporary copy (of a pipe)."""
        self.path = str(name or path)
        try:
            self._fh = open(path, "rb")
        except OSError as exc:
            raise TraceFormatError(self.path, None, f"cannot open ({exc.strerror})", "check the path") from None
        self.file_size = os.fstat(self._fh.fileno()).st_size
        self.warnings: list[str] = []  #: notes: what is assumed or not applied
        self.damage: list[str] = []  #: what is wrong with the file: read around it, said as warnings
        self.compression: Optional[str] = None
        self.inflater: Optional[Inflater] = None
        self.header_page = HeaderPage()
        self.formats = EventFormats()
        self.kallsyms = b""
        self.cmdlines: dict[int, str] = {}
        self.cpus = 0
        self._section_end = 0  # v7: where the last section read ends
        self._map: Optional[mmap.mmap] = None
        try:
            if self.file_size:
                self._map = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
            self._parse(self._map if self._map is not None else b"")
        except BaseException:
            self.close()
            raise
        finally:
            if self._map is not None:  # metadata is read: the pages are read with pread
                try:
                    self._map.close()
                except BufferError:
                    pass
                self._map = None

    # -- what the options said ----------------------------------------------------------------
    @property
    def clock(self) -> Optional[str]:
        """The trace clock (TRACECLOCK option), e.g. "local"."""
        return self._opts.clock

    @property
    def uname(self) -> Optional[str]:
        """The recording host's ``uname -a`` (UNAME option)."""
        return self._opts.uname

    @property
    def cpu_stats(self) -> dict[int, CpuStats]:
        """Ring-buffer statistics per CPU (CPUSTAT options)."""
        return self._opts.cpu_stats

    @property
    def ts_offset(self) -> int:
        """Nanoseconds added to every timestamp (DATE and OFFSET options)."""
        return self._opts.ts_offset

    @property
    def buffers(self) -> list[BufferInfo]:
        """Every buffer of the file, the top one (``""``) first when it has one."""
        return self._opts.buffers

    # -- low level ----------------------------------------------------------------------------
    def pread(self, offset: int, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes at ``offset`` or a TraceFormatError naming ``what``."""
        if offset < 0 or n < 0 or offset + n > self.file_size:
            raise TraceFormatError(self.path, offset,
                                   f"{what} runs past the end of the file ({n} bytes wanted, "
                                   f"file is {self.file_size} bytes)",
                                   "the file is cut short; copy or record it again")
        data = os.pread(self._fh.fileno(), n, offset)
        if len(data) != n:
            raise TraceFormatError(self.path, offset, f"{what}: short read", "the file changed while reading")
        return data

    def close(self) -> None:
        """Close the file."""
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a view into it is still alive (an exception's frame): GC closes it
                pass
            self._map = None
        self._fh.close()

    @property
    def big_endian(self) -> bool:
        """Byte order of the file's numbers and pages."""
        return self._opts.big_endian

    def page_runs(self, buf: BufferInfo, cd: CpuData, warn: Callable[[str], None],
                  run_bytes: int = RUN_BYTES) -> Iterator[PageRun]:
        """Yield one CPU's pages in runs of about ``run_bytes``; problems go to ``warn``, then stop."""
        return page_runs(self, buf, cd, warn, run_bytes)

    # -- header ---------------------------------------------------------------------------------
    def _parse(self, buf) -> None:
        cur = ByteCursor(buf, self.path, "file header")
        head = read_tracing_header(cur)
        if not head.version.isdigit():
            raise TraceFormatError(self.path, len(MAGIC), f"bad version string {head.version[:20]!r}",
                                   "the file is damaged")
        self.version = int(head.version)
        if self.version not in (6, 7):
            raise TraceFormatError(self.path, len(MAGIC), f"trace.dat version {self.version} is not supported "
                                   "(6 and 7 are)", "convert it with `trace-cmd convert --file-version 7`")
        self.long_size, self.page_size = head.long_size, head.page_size
        self._opts = Options(self.path, self.version, head.big_endian, head.page_size, self.warnings, self.damage)
        if self.version >= 7:
            self.compression = cur.cstr(64)
            cur.cstr(64)  # the compression library's version
            if self.compression == "none":
                self.compression = None
            else:
                try:
                    self.inflater = Inflater(self.compression)
                except ValueError:
                    raise TraceFormatError(self.path, None, f"compression {self.compression[:20]!r} is not "
                                           "supported (zstd, zlib or none)",
                                           "convert it with `trace-cmd convert --compression zstd`") from None
            self._parse_v7(buf, cur.u64())
        else:
            self._parse_v6(buf, cur, head)
        if not self.formats:
            self.warnings.append("the file holds no event formats: no event can be decoded")

    def _set_header_page(self, text: str, at: int) -> None:
        hp = parse_header_page(text)
        if hp.commit_size not in (4, 8) or hp.timestamp_size != 8 or hp.data_offset >= self.page_size \
                or hp.timestamp_offset % 4 or hp.commit_offset % 4 or hp.data_offset % 4 \
                or max(hp.timestamp_offset + 8, hp.commit_offset + hp.commit_size) > hp.data_offset:
            raise TraceFormatError(self.path, at, "header_page describes an unsupported page layout "
                                   f"(commit size {hp.commit_size}, data at {hp.data_offset})",
                                   "the file is damaged")
        self.header_page = hp

    # -- v6: one sequential layout ------------------------------------------------------------
    def _parse_v6(self, buf, cur: ByteCursor, head) -> None:
        at = cur.offset
        data = read_tracing_data(cur, head, self.warnings)
        self._set_header_page(data.header_page, at)
        self.formats, self.kallsyms, self.cmdlines = data.formats, data.kallsyms, data.cmdlines
        at = cur.offset
        self.cpus = cur.u32()
        if not 0 < self.cpus <= MAX_CPUS:
            raise cur.error(f"implausible CPU count {self.cpus} (Linux runs on 1 to {MAX_CPUS})",
                            "the file is damaged", at=at)
        tag = cur.raw(10, "options/flyrecord tag")
        if tag.startswith(b"options"):
            self._read_options(cur)
            tag = cur.raw(10, "flyrecord tag")
        if tag.startswith(b"latency"):
            self.buffers.insert(0, BufferInfo("", cur.offset, self.clock, self.page_size, latency=True))
            self.warnings.append("latency-format data (trace-cmd record without -e) is not decoded")
            return
        if not tag.startswith(b"flyrecord"):
            raise cur.error(f"expected 'flyrecord', found {tag!r}", "the file is damaged", at=cur.pos - 10)
        top = BufferInfo("", cur.offset - 10, self.clock, self.page_size)
        top.cpus = self._v6_cpu_table(cur, "")
        self.buffers.insert(0, top)
        # Other instances point at their own "flyrecord\0" block (trace-input.c).
        for b in self.buffers[1:]:
            try:
                c = ByteCursor(buf, self.path, f"buffer {b.name!r}", start=b.offset, big_endian=head.big_endian)
                if c.left < 10 or not c.raw(10).startswith(b"flyrecord"):
                    raise c.error(f"buffer {b.name!r}: no 'flyrecord' tag", "the file is damaged", at=b.offset)
                b.cpus = self._v6_cpu_table(c, b.name)
            except TraceFormatError as exc:
                self.damage.append(f"buffer {b.name!r} unreadable: {exc}")
                b.cpus = []

    def _v6_cpu_table(self, cur: ByteCursor, name: str) -> list[CpuData]:
        at = cur.offset
        cur.need(16 * self.cpus, f"CPU table ({self.cpus} CPUs)")
        table = [CpuData(cpu, cur.u64(), cur.u64()) for cpu in range(self.cpus)]
        return check_cpu_table(self.path, table, cur.offset, self.file_size, at, self.damage,
                               f"buffer {name!r}" if name else "")

    def _read_options(self, cur: ByteCursor) -> int:
        """Options until the DONE id: u16 id, u32 size, data (v6 block or v7 section payload).

        Returns the offset of the next options section (v7's DONE option carries it), or 0.
        """
        while cur.left:
            oid = cur.u16()
            if oid == OPT_DONE and self.version < 7:
                return 0
            data = cur.sized(4, f"option {oid}")
            if oid == OPT_DONE:
                return struct.unpack_from((">" if self.big_endian else "<") + "Q", data)[0] if len(data) >= 8 else 0
            self._opts.add(oid, data, cur.offset - len(data))
        return 0

    # -- v7: sections reached through option sections --------------------------------------
    def _section(self, buf, offset: int, kind: str, want_id: Optional[int]) -> bytes:
        """The payload of the section at ``offset``, inflated (bounded) when compressed."""
        cur = ByteCursor(buf, self.path, f"{kind} section", start=offset, big_endian=self.big_endian)
        if offset >= self.file_size:
            raise cur.error(f"the file is cut short: its {kind} section at {offset:#x} is past its end "
                            f"({self.file_size} bytes)", at=offset)
        sid, flags = cur.u16(), cur.u16()
        cur.skip(4)  # the description: an offset into the STRINGS section
        if want_id is not None and sid != want_id:
            raise cur.error(f"{kind}: section id {sid}, expected {want_id}", "the file is damaged", at=offset)
        size = cur.u64()
        if size > cur.left:
            raise cur.error(f"{kind} section size {size} runs past the end of the file ({cur.left} bytes left; "
                            "cut short?)", at=offset + 8)
        self._section_end = max(self._section_end, cur.pos + size)
        limit = SECTION_LIMITS[kind]
        if not flags & _SEC_FL_COMPRESS:
            if size > limit:
                raise cur.error(f"{kind} section of {size} bytes is larger than any can be ({limit >> 20} MiB)",
                                "the file is damaged", at=offset + 8)
            return cur.raw(size)
        if self.inflater is None:
            raise cur.error(f"{kind} section is marked compressed in an uncompressed file", "the file is damaged",
                            at=offset)
        body = ByteCursor(buf, self.path, f"{kind} section", start=cur.pos, end=cur.pos + size,
                          big_endian=self.big_endian)
        csize, usize = body.u32(), body.u32()
        if csize > body.left:
            raise body.error(f"{kind}: compressed size {csize} does not fit the section ({body.left} bytes)",
                             at=body.pos - 8)
        if usize > limit:
            raise body.error(f"{kind} section claims {usize} bytes uncompressed, more than any can be "
                             f"({limit >> 20} MiB)", "the file is damaged (or a decompression bomb)", at=body.pos - 8)
        try:
            return self.inflater.inflate(buf[body.pos:body.pos + csize], usize)
        except ValueError as exc:
            raise body.error(f"{kind} section does not decompress ({exc})", "the file is damaged") from None

    def _parse_v7(self, buf, first_options: int) -> None:
        seen: set[int] = set()
        offset = first_options
        while offset:
            if offset in seen:
                raise TraceFormatError(self.path, offset, "options sections form a loop", "the file is damaged")
            seen.add(offset)
            payload = self._section(buf, offset, "options", _SECTION_OPTIONS)
            offset = self._read_options(ByteCursor(payload, self.path, "options section",
                                                   base=offset + _SECTION_HEADER, big_endian=self.big_endian))
        sections = self._opts.sections
        if OPT_HEADER_INFO not in sections:
            raise TraceFormatError(self.path, first_options, "no HEADER_INFO section (page layout unknown)",
                                   "the file is cut short or damaged")
        at = sections[OPT_HEADER_INFO]
        head = self._section_cursor(buf, OPT_HEADER_INFO)
        self._set_header_page(read_header_info(head), at)
        texts: list[tuple[str, str]] = []
        for sid, read in ((OPT_FTRACE_EVENTS, read_ftrace_formats), (OPT_EVENT_FORMATS, read_event_systems)):
            if sid in sections:
                try:
                    read(self._section_cursor(buf, sid), texts)
                except TraceFormatError as exc:
                    self.damage.append(f"event formats partly unreadable: {exc}")
        self.formats = EventFormats(texts, self.warnings)
        if OPT_KALLSYMS in sections:
            try:
                self.kallsyms = read_kallsyms(self._section_cursor(buf, OPT_KALLSYMS), self.warnings)
            except TraceFormatError as exc:
                self.damage.append(f"kallsyms unreadable, addresses stay numeric: {exc}")
        if OPT_CMDLINES in sections:
            try:
                self.cmdlines = read_cmdlines(self._section_cursor(buf, OPT_CMDLINES))
            except TraceFormatError as exc:
                self.damage.append(f"saved cmdlines unreadable, tasks shown by pid: {exc}")
        self._v7_buffers(buf)

    def _check_tail(self, buf) -> None:
        """What follows the last section read: trace-cmd ends a file with its STRINGS section (the
        section descriptions, not needed here); one cut short says the file was truncated."""
        end = self._section_end
        if end >= self.file_size:
            return
        cur = ByteCursor(buf, self.path, "last section", start=end, big_endian=self.big_endian)
        if cur.left < _SECTION_HEADER:
            self.warnings.append(f"offset {end:#x}: {cur.left} byte(s) after the last section are no section "
                                 "(the file is cut short?)")
            return
        sid = cur.u16()
        cur.skip(6)
        size = cur.u64()
        if size > cur.left:
            self.warnings.append(f"offset {end:#x}: the file is cut short: its last section (id {sid}) needs {size} "
                                 f"bytes, {cur.left} are there; nothing zlperf reads was in it")

    def _section_cursor(self, buf, sid: int) -> ByteCursor:
        at = self._opts.sections[sid]
        payload = self._section(buf, at, SECTION_IDS[sid], sid)
        return ByteCursor(payload, self.path, SECTION_IDS[sid], base=at + _SECTION_HEADER, big_endian=self.big_endian)

    def _v7_buffers(self, buf) -> None:
        """Flyrecord sections: whether their chunks are compressed; CPU tables checked."""
        for b in self.buffers:
            if b.latency:
                self.warnings.append(f"buffer {b.name!r}: latency-format data is not decoded")
                continue
            try:
                cur = ByteCursor(buf, self.path, f"buffer {b.name!r} section header", start=b.offset,
                                 big_endian=self.big_endian)
                cur.need(_SECTION_HEADER)
                cur.skip(2)  # the section id
                flags = cur.u16()
                cur.skip(4)
                self._section_end = max(self._section_end, min(cur.pos + 8 + cur.u64(), self.file_size + 1))
                b.compressed = bool(flags & _SEC_FL_COMPRESS)
                if b.compressed and self.inflater is None:
                    raise cur.error("compressed data in an uncompressed file", "the file is damaged", at=b.offset)
                b.cpus = check_cpu_table(self.path, b.cpus, b.offset + _SECTION_HEADER, self.file_size, b.offset,
                                         self.damage, f"buffer {b.name!r}")
            except TraceFormatError as exc:
                self.damage.append(f"buffer {b.name!r} unreadable: {exc}")
                b.cpus = []
        if not self.cpus:
            self.cpus = self._opts.cpus or max((len(b.cpus) for b in self.buffers), default=0)
        self._check_tail(buf)
        if self.buffers and self.buffers[0].name != "":
            top = [b for b in self.buffers if b.name == ""]
            if top:  # the top buffer first, as in v6
                self.buffers.remove(top[0])
                self.buffers.insert(0, top[0])
