"""The trace.dat container (trace-cmd file versions 6 and 7): header, sections, options, buffers.

Parses everything except the ring-buffer pages (see :mod:`zlperf.readers.ringbuffer`) and hands
out each CPU's pages as runs of uncompressed bytes (zstd or zlib chunks are inflated here).
"""

from __future__ import annotations

__all__ = ["TraceDatFile", "BufferInfo", "CpuData", "PageRun", "LazyFormats", "MAGIC"]

import ctypes
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np

from zlperf.errors import TraceFormatError
from zlperf.events import CpuStats
from zlperf.formats import EventFormat, HeaderPage, parse_event_format, parse_header_page
from zlperf.kallsyms import Kallsyms

MAGIC = b"\x17\x08\x44tracing"

# Option ids (trace-cmd.dat.v7(5); v6 files use the same numbers).
_OPT_DONE, _OPT_DATE, _OPT_CPUSTAT, _OPT_BUFFER, _OPT_TRACECLOCK, _OPT_UNAME = 0, 1, 2, 3, 4, 5
_OPT_OFFSET, _OPT_CPUCOUNT, _OPT_VERSION, _OPT_TIME_SHIFT, _OPT_TSC2NSEC = 7, 8, 9, 12, 14
_OPT_HEADER_INFO, _OPT_FTRACE_EVENTS, _OPT_EVENT_FORMATS = 16, 17, 18
_OPT_KALLSYMS, _OPT_PRINTK, _OPT_CMDLINES, _OPT_BUFFER_TEXT = 19, 20, 21, 22
_SECTION_OPTIONS = 0
_SEC_FL_COMPRESS = 1

#: Bytes of uncompressed page data handed to the decoder at once (bounded memory).
RUN_BYTES = 16 << 20
#: Sanity bound for metadata sizes (kallsyms of a big kernel is ~15 MB).
_MAX_META = 1 << 30


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
class PageRun:
    """Consecutive ring-buffer pages of one CPU, uncompressed."""

    data: np.ndarray  #: uint8, a whole number of pages (plus nothing else)
    file_offset: int  #: where the run starts in the file (chunk offset when compressed)
    first_page: int  #: index of the run's first page in this CPU's stream
    gap_before: bool = False  #: pages before this run could not be read (events lost)


_NAME_RE = re.compile(r"^name:\s*(\S+)\s*$", re.M)
_ID_RE = re.compile(r"^ID:\s*(\d+)\s*$", re.M)


class LazyFormats(dict):
    """``system:event`` -> EventFormat for :class:`~zlperf.events.TraceInfo`, each parsed when first used.

    Keys are known at once; a value is parsed on access (``dict(x)``, ``items()`` etc. see every
    value parsed, because this class overrides ``__iter__``, which makes CPython use the slow path).
    """

    def __init__(self, file: "TraceDatFile"):
        super().__init__()
        self._file = file
        self._ids = {file.full_name(i): i for i in file.format_texts}

    def _load(self, key: str) -> None:
        if key in self._ids and not dict.__contains__(self, key):
            fmt = self._file.format(self._ids[key])
            if fmt is not None:
                dict.__setitem__(self, key, fmt)

    def _load_all(self) -> None:
        for key in list(self._ids):
            self._load(key)

    def __getitem__(self, key: str) -> EventFormat:
        self._load(key)
        return dict.__getitem__(self, key)

    def get(self, key, default=None):  # type: ignore[override]
        self._load(key)
        return dict.get(self, key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._ids or dict.__contains__(self, key)

    def __iter__(self):
        self._load_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._load_all()
        return dict.__len__(self)

    def keys(self):  # type: ignore[override]
        self._load_all()
        return dict.keys(self)

    def values(self):  # type: ignore[override]
        self._load_all()
        return dict.values(self)

    def items(self):  # type: ignore[override]
        self._load_all()
        return dict.items(self)

    def copy(self) -> dict:  # type: ignore[override]
        self._load_all()
        return dict(dict.items(self))

    def __eq__(self, other: object) -> bool:
        self._load_all()
        return dict.__eq__(self, other)

    def __repr__(self) -> str:
        return f"LazyFormats({len(self._ids)} formats)"


class _LazyKallsyms(Kallsyms):
    """A :class:`Kallsyms` built from the saved text on first lookup (building costs ~0.2 s)."""

    def __init__(self, text: str, source: str):  # noqa: D107 - deliberately no super().__init__
        self._text = text
        self._table: Optional[Kallsyms] = None
        self.source = source

    def _built(self) -> Kallsyms:
        if self._table is None:
            self._table = Kallsyms.from_text(self._text, self.source)
            self._text = ""
        return self._table

    @property  # type: ignore[override]
    def addrs(self) -> np.ndarray:
        return self._built().addrs

    @addrs.setter
    def addrs(self, value: np.ndarray) -> None:
        self._built().addrs = value

    @property  # type: ignore[override]
    def names(self) -> list[str]:
        return self._built().names

    @names.setter
    def names(self, value: list[str]) -> None:
        self._built().names = value


class _Blob:
    """Bounds-checked little/big-endian reads from bytes, naming the file offset on failure."""

    def __init__(self, data: bytes, base: int, path: str, what: str, endian: str = "<"):
        self.data = data
        self.base = base  # file offset of data[0] (or of the section holding it)
        self.path = path
        self.what = what
        self.pos = 0
        self.endian = endian

    def _need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise TraceFormatError(
                self.path, self.base + self.pos,
                f"{self.what} ends early (needs {n} more bytes, has {len(self.data) - self.pos})",
                "the file is cut short or corrupted; re-record or copy it again")

    def u16(self) -> int:
        self._need(2)
        (v,) = struct.unpack_from(self.endian + "H", self.data, self.pos)
        self.pos += 2
        return v

    def u32(self) -> int:
        self._need(4)
        (v,) = struct.unpack_from(self.endian + "I", self.data, self.pos)
        self.pos += 4
        return v

    def u64(self) -> int:
        self._need(8)
        (v,) = struct.unpack_from(self.endian + "Q", self.data, self.pos)
        self.pos += 8
        return v

    def raw(self, n: int) -> bytes:
        self._need(n)
        v = self.data[self.pos:self.pos + n]
        self.pos += n
        return v

    def cstr(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise TraceFormatError(self.path, self.base + self.pos, f"{self.what}: string without its NUL end",
                                   "the file is cut short or corrupted")
        v = self.data[self.pos:end].decode("utf-8", "replace")
        self.pos = end + 1
        return v

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _decompressor(name: str, path: str) -> Callable[[bytes, int], bytes]:
    """A function inflating one compressed block to exactly ``usize`` bytes."""
    if name == "zstd":
        import zstandard

        dctx = zstandard.ZstdDecompressor()

        def inflate(data: bytes, usize: int) -> bytes:
            return dctx.decompress(data, max_output_size=max(usize, 1))

        return inflate
    if name == "zlib":
        def inflate_z(data: bytes, usize: int) -> bytes:
            return zlib.decompress(data, bufsize=max(usize, 1))

        return inflate_z
    raise TraceFormatError(path, None, f"compression {name!r} is not supported (zstd, zlib or none)",
                           "convert it with `trace-cmd convert --compression zstd`")


class _ZstdInto:
    """libzstd's ZSTD_decompressDCtx through ctypes: inflates a chunk straight into a numpy array.

    python-zstandard returns a new bytes object per chunk, and joining them costs a second copy;
    this writes each chunk where it belongs (ctypes releases the GIL during the call).
    """

    _lib: "ctypes.CDLL | bool | None" = None  # loaded once per process

    def __init__(self, lib: ctypes.CDLL):
        self._dctx = lib.ZSTD_createDCtx()
        if not self._dctx:
            raise OSError("ZSTD_createDCtx failed")

    @classmethod
    def load(cls) -> Optional["_ZstdInto"]:
        """A decompressor with its own context (one per CPU stream, so threads never share one),
        or None when libzstd.so.1 is not there (python-zstandard is used then)."""
        if cls._lib is None:
            try:
                lib = ctypes.CDLL("libzstd.so.1")
                lib.ZSTD_createDCtx.restype = ctypes.c_void_p
                lib.ZSTD_freeDCtx.argtypes = [ctypes.c_void_p]
                lib.ZSTD_decompressDCtx.restype = ctypes.c_size_t
                lib.ZSTD_decompressDCtx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                                    ctypes.c_void_p, ctypes.c_size_t]
                lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
                lib.ZSTD_isError.restype = ctypes.c_uint
            except (OSError, AttributeError):
                cls._lib = False
                return None
            cls._lib = lib
        if cls._lib is False:
            return None
        try:
            return cls(cls._lib)
        except OSError:
            return None

    def into(self, frame: memoryview, out: np.ndarray, at: int, usize: int) -> bool:
        """Inflate ``frame`` into ``out[at:at+usize]``; False unless exactly ``usize`` bytes came out."""
        src = np.frombuffer(frame, np.uint8)
        if at + usize > out.shape[0] or src.shape[0] == 0:
            return False
        n = self._lib.ZSTD_decompressDCtx(self._dctx, out.ctypes.data + at, usize, src.ctypes.data, src.shape[0])
        return not self._lib.ZSTD_isError(n) and n == usize

    def __del__(self) -> None:
        if getattr(self, "_dctx", None):
            self._lib.ZSTD_freeDCtx(self._dctx)
            self._dctx = None


class TraceDatFile:
    """A trace.dat opened for reading: metadata parsed at open, pages read on demand."""

    def __init__(self, path: str):
        self.path = str(path)
        try:
            self._fh = open(self.path, "rb")
        except OSError as exc:
            raise TraceFormatError(self.path, None, f"cannot open ({exc.strerror})", "check the path") from None
        self.file_size = os.fstat(self._fh.fileno()).st_size
        self.warnings: list[str] = []
        self.version = 0
        self.endian = "<"
        self.long_size = 8
        self.page_size = 4096
        self.compression: Optional[str] = None
        self.compression_version: Optional[str] = None
        self._inflate: Optional[Callable[[bytes, int], bytes]] = None
        self._multi: Optional[Callable] = None
        self._zstd_ok = False  # libzstd loads through ctypes
        self._last_gap = False
        self.header_page: HeaderPage = HeaderPage()
        self.header_page_text = ""
        #: event id -> (system, name, format text); parsed on demand by :meth:`format`
        self.format_texts: dict[int, tuple[str, str, str]] = {}
        self._parsed: dict[int, Optional[EventFormat]] = {}
        self.kallsyms_text = ""
        self.cmdlines: dict[int, str] = {}
        self.clock: Optional[str] = None
        self.uname: Optional[str] = None
        self.cpu_stats: dict[int, CpuStats] = {}
        self.cpus = 0
        self.ts_offset = 0
        self.buffers: list[BufferInfo] = []
        try:
            self._parse()
        except Exception:
            self._fh.close()
            raise

    # ----- low level -------------------------------------------------------------------------
    def pread(self, offset: int, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes at ``offset`` or a TraceFormatError naming ``what``."""
        if offset < 0 or n < 0 or offset + n > self.file_size:
            raise TraceFormatError(self.path, offset,
                                   f"{what} runs past the end of the file ({n} bytes wanted, "
                                   f"file is {self.file_size} bytes)",
                                   "the file is cut short; re-record or copy it again")
        data = os.pread(self._fh.fileno(), n, offset)
        if len(data) != n:
            raise TraceFormatError(self.path, offset, f"{what}: short read", "the file changed while reading")
        return data

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    @property
    def big_endian(self) -> bool:
        return self.endian == ">"

    # ----- header ----------------------------------------------------------------------------
    def _parse(self) -> None:
        head = os.pread(self._fh.fileno(), 4096, 0)
        if len(head) < 3 or not head.startswith(MAGIC[:3]):
            raise TraceFormatError(self.path, 0, "not a trace.dat (wrong magic)",
                                   "give a file written by trace-cmd record/extract")
        if not head.startswith(MAGIC):
            raise TraceFormatError(self.path, 3, "not a trace.dat (no 'tracing' after the magic)",
                                   "give a file written by trace-cmd record/extract")
        b = _Blob(head, 0, self.path, "file header")
        b.pos = len(MAGIC)
        vtxt = b.cstr()
        if not vtxt.isdigit():
            raise TraceFormatError(self.path, len(MAGIC), f"bad version string {vtxt[:20]!r}",
                                   "the file is corrupted")
        self.version = int(vtxt)
        if self.version not in (6, 7):
            raise TraceFormatError(self.path, len(MAGIC), f"trace.dat version {self.version} is not supported "
                                   "(6 and 7 are)", "convert it with `trace-cmd convert --file-version 7`")
        endian = b.raw(1)[0]
        if endian not in (0, 1):
            raise TraceFormatError(self.path, b.pos - 1, f"bad endianness byte {endian}", "the file is corrupted")
        self.endian = ">" if endian else "<"
        b.endian = self.endian
        self.long_size = b.raw(1)[0]
        if self.long_size not in (4, 8):
            raise TraceFormatError(self.path, b.pos - 1, f"bad long size {self.long_size}", "the file is corrupted")
        self.page_size = b.u32()
        if self.page_size < 64 or self.page_size > (1 << 24) or self.page_size % 4:
            raise TraceFormatError(self.path, b.pos - 4, f"implausible page size {self.page_size}",
                                   "the file is corrupted")
        if self.version >= 7:
            self.compression = b.cstr()
            self.compression_version = b.cstr()
            if self.compression != "none":
                self._inflate = _decompressor(self.compression, self.path)
                if self.compression == "zstd":
                    import zstandard

                    # Many chunks in one call (C backend only); None falls back to one by one.
                    self._multi = getattr(zstandard.ZstdDecompressor(), "multi_decompress_to_buffer", None)
                    self._zstd_ok = _ZstdInto.load() is not None
            else:
                self.compression = None
            first_options = b.u64()
            self._parse_v7(first_options)
        else:
            self._parse_v6(b.pos)
        if not self.format_texts:
            self.warnings.append("the file holds no event formats: no event can be decoded")

    # ----- v6: one sequential layout ---------------------------------------------------------
    def _parse_v6(self, pos: int) -> None:
        # Metadata before the CPU data is small apart from kallsyms: read it piece by piece.
        def rd(n: int, what: str) -> bytes:
            nonlocal pos
            data = self.pread(pos, n, what)
            pos += n
            return data

        def num(n: int, what: str) -> int:
            return int.from_bytes(rd(n, what), "big" if self.big_endian else "little")

        def sized(nbytes: int, what: str) -> bytes:
            start = pos
            size = num(nbytes, f"{what} size")
            if size > _MAX_META or start + nbytes + size > self.file_size:
                raise TraceFormatError(self.path, start, f"{what}: size {size} runs past the end of the file",
                                       "the file is cut short or corrupted")
            return rd(size, what)

        tag = rd(12, "header_page tag")
        if tag != b"header_page\0":
            raise TraceFormatError(self.path, pos - 12, "no 'header_page' where expected", "the file is corrupted")
        self._set_header_page(sized(8, "header_page"), pos)
        tag = rd(13, "header_event tag")
        if tag != b"header_event\0":
            raise TraceFormatError(self.path, pos - 13, "no 'header_event' where expected", "the file is corrupted")
        sized(8, "header_event")
        start = pos
        n = num(4, "ftrace format count")
        self._check_count(n, start, "ftrace format count")
        for _ in range(n):
            at = pos
            self._add_format(sized(8, "ftrace event format"), "ftrace", at)
        start = pos
        nsys = num(4, "event system count")
        self._check_count(nsys, start, "event system count")
        for _ in range(nsys):
            # The system name is NUL-terminated; read ahead a little to find it.
            chunk = self.pread(pos, min(256, self.file_size - pos), "event system name")
            end = chunk.find(b"\0")
            if end < 0:
                raise TraceFormatError(self.path, pos, "event system name without its NUL end",
                                       "the file is cut short or corrupted")
            system = chunk[:end].decode("utf-8", "replace")
            pos += end + 1
            start = pos
            nev = num(4, f"event count of system {system}")
            self._check_count(nev, start, f"event count of system {system}")
            for _ in range(nev):
                at = pos
                self._add_format(sized(8, f"{system} event format"), system, at)
        at = pos
        self._set_kallsyms(sized(4, "kallsyms"), at)
        sized(4, "printk formats")
        at = pos
        self._set_cmdlines(sized(8, "saved cmdlines"), at)
        self.cpus = num(4, "CPU count")
        if self.cpus > 65536:
            raise TraceFormatError(self.path, pos - 4, f"implausible CPU count {self.cpus}", "the file is corrupted")
        tag = rd(10, "options/flyrecord tag")
        if tag.startswith(b"options"):
            pos = self._parse_options_v6(pos)
            tag = rd(10, "flyrecord tag")
        if tag.startswith(b"latency"):
            self.buffers.insert(0, BufferInfo("", pos, self.clock, self.page_size, latency=True))
            self.warnings.append("latency-format data (trace-cmd record without -e) is not decoded")
            return
        if not tag.startswith(b"flyrecord"):
            raise TraceFormatError(self.path, pos - 10, f"expected 'flyrecord', found {tag!r}",
                                   "the file is corrupted")
        top = BufferInfo("", pos - 10, self.clock, self.page_size)
        top.cpus = self._read_v6_cpu_table(pos, self.cpus)
        self.buffers.insert(0, top)
        # Other instances point at their own "flyrecord\0" block (trace-input.c).
        for buf in self.buffers[1:]:
            try:
                tag = self.pread(buf.offset, 10, f"buffer {buf.name!r} flyrecord tag")
                if not tag.startswith(b"flyrecord"):
                    raise TraceFormatError(self.path, buf.offset, f"buffer {buf.name!r}: no 'flyrecord' tag",
                                           "the file is corrupted")
                buf.cpus = self._read_v6_cpu_table(buf.offset + 10, self.cpus)
            except TraceFormatError as exc:
                self.warnings.append(f"buffer {buf.name!r} unreadable: {exc}")
                buf.cpus = []

    def _read_v6_cpu_table(self, pos: int, cpus: int) -> list[CpuData]:
        raw = self.pread(pos, 16 * cpus, "per-CPU data table")
        vals = struct.unpack(self.endian + "Q" * (2 * cpus), raw)
        out = []
        for cpu in range(cpus):
            off, size = vals[2 * cpu], vals[2 * cpu + 1]
            out.append(self._checked_cpu(CpuData(cpu, off, size), pos + 16 * cpu))
        return out

    def _checked_cpu(self, cd: CpuData, where: int) -> CpuData:
        if cd.size and cd.offset + cd.size > self.file_size:
            avail = max(0, self.file_size - cd.offset)
            self.warnings.append(f"cpu {cd.cpu}: data cut short: {cd.size - avail} of {cd.size} bytes after "
                                 f"offset {cd.offset:#x} are missing from the file (truncated?)")
            cd = CpuData(cd.cpu, cd.offset, avail)
        return cd

    def _parse_options_v6(self, pos: int) -> int:
        while True:
            oid = int.from_bytes(self.pread(pos, 2, "option id"), "big" if self.big_endian else "little")
            pos += 2
            if oid == _OPT_DONE:
                return pos
            size = int.from_bytes(self.pread(pos, 4, "option size"), "big" if self.big_endian else "little")
            pos += 4
            data = self.pread(pos, size, f"option {oid}")
            self._option(oid, data, pos)
            pos += size

    def _check_count(self, n: int, at: int, what: str) -> None:
        if n > 100000:
            raise TraceFormatError(self.path, at, f"implausible {what} {n}", "the file is corrupted")

    # ----- v7: sections reached through option sections --------------------------------------
    def _section(self, offset: int, what: str, want_id: Optional[int] = None) -> tuple[int, bytes]:
        """(id, payload) of the section at ``offset``, inflated when compressed."""
        hdr = self.pread(offset, 16, f"{what} section header")
        sid, flags, _desc, size = struct.unpack(self.endian + "HHIQ", hdr)
        if want_id is not None and sid != want_id:
            raise TraceFormatError(self.path, offset, f"{what}: section id {sid}, expected {want_id}",
                                   "the file is corrupted")
        if size > _MAX_META:
            raise TraceFormatError(self.path, offset, f"{what}: implausible section size {size}",
                                   "the file is corrupted")
        payload = self.pread(offset + 16, size, what)
        if flags & _SEC_FL_COMPRESS:
            payload = self._inflate_block(payload, offset + 16, what)
        return sid, payload

    def _inflate_block(self, payload: bytes, at: int, what: str) -> bytes:
        if self._inflate is None:
            raise TraceFormatError(self.path, at, f"{what} is marked compressed in an uncompressed file",
                                   "the file is corrupted")
        if len(payload) < 8:
            raise TraceFormatError(self.path, at, f"{what}: compression header cut short", "the file is corrupted")
        csize, usize = struct.unpack_from(self.endian + "II", payload, 0)
        if csize > len(payload) - 8 or usize > _MAX_META:
            raise TraceFormatError(self.path, at, f"{what}: compressed sizes {csize}/{usize} do not fit the section",
                                   "the file is corrupted")
        try:
            out = self._inflate(payload[8:8 + csize], usize)
        except Exception as exc:  # zstd.ZstdError / zlib.error: the block is damaged
            raise TraceFormatError(self.path, at, f"{what} does not decompress ({exc})",
                                   "the file is corrupted") from None
        if len(out) != usize:
            raise TraceFormatError(self.path, at, f"{what}: inflated to {len(out)} bytes, header says {usize}",
                                   "the file is corrupted")
        return out

    def _parse_v7(self, first_options: int) -> None:
        seen: set[int] = set()
        sections: dict[int, int] = {}
        offset = first_options
        while offset:
            if offset in seen:
                raise TraceFormatError(self.path, offset, "options sections form a loop", "the file is corrupted")
            seen.add(offset)
            _sid, payload = self._section(offset, "options", _SECTION_OPTIONS)
            b = _Blob(payload, offset + 16, self.path, "options section", self.endian)
            offset = 0
            while b.left:
                oid = b.u16()
                size = b.u32()
                at = b.base + b.pos
                data = b.raw(size)
                if oid == _OPT_DONE:
                    offset = struct.unpack(self.endian + "Q", data[:8])[0] if size >= 8 else 0
                    break
                if _OPT_HEADER_INFO <= oid <= _OPT_CMDLINES and size >= 8:
                    sections[oid] = struct.unpack(self.endian + "Q", data[:8])[0]
                else:
                    self._option(oid, data, at)
        if _OPT_HEADER_INFO not in sections:
            raise TraceFormatError(self.path, first_options, "no HEADER_INFO section (page layout unknown)",
                                   "the file is cut short or corrupted")
        at = sections[_OPT_HEADER_INFO]
        _sid, payload = self._section(at, "header info", _OPT_HEADER_INFO)
        b = _Blob(payload, at + 16, self.path, "header info", self.endian)
        if b.raw(12) != b"header_page\0":
            raise TraceFormatError(self.path, at + 16, "no 'header_page' in the header info section",
                                   "the file is corrupted")
        self._set_header_page(b.raw(b.u64()), at)
        for sid, name in ((_OPT_FTRACE_EVENTS, "ftrace"), (_OPT_EVENT_FORMATS, None)):
            if sid not in sections:
                continue
            at = sections[sid]
            try:
                _s, payload = self._section(at, "event formats", sid)
                b = _Blob(payload, at + 16, self.path, "event formats", self.endian)
                nsys = 1 if name else b.u32()
                self._check_count(nsys, at, "event system count")
                for _ in range(nsys):
                    system = name or b.cstr()
                    nev = b.u32()
                    self._check_count(nev, at, "event count")
                    for _ in range(nev):
                        fat = b.base + b.pos
                        self._add_format(b.raw(b.u64()), system, fat)
            except TraceFormatError as exc:
                self.warnings.append(f"event formats partly unreadable: {exc}")
        if _OPT_KALLSYMS in sections:
            at = sections[_OPT_KALLSYMS]
            try:
                _s, payload = self._section(at, "kallsyms", _OPT_KALLSYMS)
                b = _Blob(payload, at + 16, self.path, "kallsyms", self.endian)
                self._set_kallsyms(b.raw(b.u32()), at)
            except TraceFormatError as exc:
                self.warnings.append(f"kallsyms unreadable, addresses stay numeric: {exc}")
        if _OPT_CMDLINES in sections:
            at = sections[_OPT_CMDLINES]
            try:
                _s, payload = self._section(at, "saved cmdlines", _OPT_CMDLINES)
                b = _Blob(payload, at + 16, self.path, "saved cmdlines", self.endian)
                self._set_cmdlines(b.raw(b.u64()), at)
            except TraceFormatError as exc:
                self.warnings.append(f"saved cmdlines unreadable, tasks shown by pid: {exc}")
        # Flyrecord sections: the header says whether the chunks are compressed.
        for buf in self.buffers:
            if buf.latency:
                self.warnings.append(f"buffer {buf.name!r}: latency-format data is not decoded")
                continue
            try:
                hdr = self.pread(buf.offset, 16, f"buffer {buf.name!r} section header")
                _sid, flags, _d, _size = struct.unpack(self.endian + "HHIQ", hdr)
                buf.compressed = bool(flags & _SEC_FL_COMPRESS)
                if buf.compressed and self._inflate is None:
                    raise TraceFormatError(self.path, buf.offset, "compressed data in an uncompressed file",
                                           "the file is corrupted")
            except TraceFormatError as exc:
                self.warnings.append(f"buffer {buf.name!r} unreadable: {exc}")
                buf.cpus = []
        if not self.cpus:
            self.cpus = max((len(b.cpus) for b in self.buffers), default=0)

    # ----- pieces shared by v6 and v7 --------------------------------------------------------
    def _set_header_page(self, raw: bytes, at: int) -> None:
        text = raw.decode("utf-8", "replace")
        self.header_page_text = text
        hp = parse_header_page(text)
        if hp.commit_size not in (4, 8) or hp.timestamp_size != 8 or hp.data_offset >= self.page_size:
            raise TraceFormatError(self.path, at, "header_page describes an unsupported page layout "
                                   f"(commit size {hp.commit_size}, data at {hp.data_offset})",
                                   "the file is corrupted")
        self.header_page = hp

    def _add_format(self, raw: bytes, system: str, at: int) -> None:
        # Only name and id now: thousands of formats are saved, few are used (parse on demand).
        text = raw.decode("utf-8", "replace")
        name = _NAME_RE.search(text)
        ev_id = _ID_RE.search(text)
        if name is None or ev_id is None:
            self.warnings.append(f"offset {at:#x}: an event format of system {system!r} has no name or ID; "
                                 "its events are skipped")
            return
        self.format_texts[int(ev_id.group(1))] = (system, name.group(1), text)

    def format(self, ev_id: int) -> Optional[EventFormat]:
        """The parsed format of event ``ev_id`` (cached), or None when the file has none."""
        if ev_id in self._parsed:
            return self._parsed[ev_id]
        entry = self.format_texts.get(ev_id)
        fmt = None
        if entry is not None:
            try:
                fmt = parse_event_format(entry[2], entry[0])
            except ValueError:
                fmt = None
        self._parsed[ev_id] = fmt
        return fmt

    def full_name(self, ev_id: int) -> Optional[str]:
        """``system:name`` of event ``ev_id`` without parsing its format."""
        entry = self.format_texts.get(ev_id)
        return None if entry is None else f"{entry[0]}:{entry[1]}"

    def _set_kallsyms(self, raw: bytes, at: int) -> None:
        self.kallsyms_text = raw.decode("utf-8", "replace")

    def _set_cmdlines(self, raw: bytes, at: int) -> None:
        for line in raw.decode("utf-8", "replace").splitlines():
            pid, _, comm = line.strip().partition(" ")
            if pid.isdigit():
                self.cmdlines[int(pid)] = comm

    def _option(self, oid: int, data: bytes, at: int) -> None:
        text = data.split(b"\0", 1)[0].decode("utf-8", "replace")
        if oid == _OPT_TRACECLOCK:
            m = re.search(r"\[(\w[\w-]*)\]", text)
            if m:
                self.clock = m.group(1)
        elif oid == _OPT_UNAME:
            self.uname = text
        elif oid == _OPT_CPUSTAT:
            self._cpustat(text)
        elif oid == _OPT_CPUCOUNT and len(data) >= 4:
            self.cpus = struct.unpack_from(self.endian + "I", data)[0]
        elif oid == _OPT_DATE:
            try:  # microseconds between trace clock and wall clock (trace-input.c)
                self.ts_offset += int(text, 0) * 1000
            except ValueError:
                self.warnings.append(f"offset {at:#x}: DATE option {text!r} unreadable, ignored")
        elif oid == _OPT_OFFSET:
            try:
                self.ts_offset += int(text, 0)
            except ValueError:
                self.warnings.append(f"offset {at:#x}: OFFSET option {text!r} unreadable, ignored")
        elif oid in (_OPT_TSC2NSEC, _OPT_TIME_SHIFT):
            self.warnings.append("timestamps are raw: TSC-to-ns / host-guest time shift options are not applied")
        elif oid in (_OPT_BUFFER, _OPT_BUFFER_TEXT):
            try:
                self.buffers.append(self._buffer_option(oid, data, at))
            except TraceFormatError as exc:
                self.warnings.append(f"a BUFFER option is unreadable, its instance is skipped: {exc}")

    def _cpustat(self, text: str) -> None:
        vals: dict[str, int] = {}
        cpu = None
        for line in text.splitlines():
            key, _, val = line.partition(":")
            val = val.strip()
            if key.strip() == "CPU" and val.isdigit():
                cpu = int(val)
            elif val.isdigit():
                vals[key.strip()] = int(val)
        if cpu is None:
            return  # e.g. the "Buffer: NAME" line that starts an instance's blocks
        # An instance's block comes after the top buffer's: the later one (the recorded buffer) wins.
        self.cpu_stats[cpu] = CpuStats(cpu, vals.get("entries"), vals.get("overrun"), vals.get("commit overrun"),
                                       vals.get("dropped events"), vals.get("read events"))

    def _buffer_option(self, oid: int, data: bytes, at: int) -> BufferInfo:
        b = _Blob(data, at, self.path, "BUFFER option", self.endian)
        offset = b.u64()
        name = b.cstr()
        buf = BufferInfo(name, offset, page_size=self.page_size)
        if self.version < 7:
            return buf
        buf.clock = b.cstr()
        if oid == _OPT_BUFFER_TEXT:
            buf.latency = True
            return buf
        # trace-cmd 3.x stores the sub-buffer size before the CPU count; older v7 writers do not:
        # tell them apart by which layout fills the option exactly.
        if b.left >= 8 and (b.left - 8) == 20 * struct.unpack_from(self.endian + "I", data, b.pos + 4)[0]:
            buf.page_size = b.u32()
        ncpu = b.u32()
        if ncpu * 20 > b.left:
            raise TraceFormatError(self.path, at, f"BUFFER option for {name!r}: {ncpu} CPUs do not fit",
                                   "the file is corrupted")
        for _ in range(ncpu):
            cpu = b.u32()
            off = b.u64()
            size = b.u64()
            buf.cpus.append(self._checked_cpu(CpuData(cpu, off, size), at))
        if buf.page_size < 64 or buf.page_size % 4:
            raise TraceFormatError(self.path, at, f"buffer {name!r}: implausible page size {buf.page_size}",
                                   "the file is corrupted")
        return buf

    # ----- metadata for TraceInfo -------------------------------------------------------------
    def symbols(self) -> Optional[Kallsyms]:
        """The kallsyms table saved in the file, or None."""
        if not self.kallsyms_text:
            return None
        return _LazyKallsyms(self.kallsyms_text, source=f"{self.path} (saved kallsyms)")

    def buffer(self, name: str) -> BufferInfo:
        """The instance called ``name``."""
        for buf in self.buffers:
            if buf.name == name:
                return buf
        raise TraceFormatError(self.path, None, f"no buffer (instance) {name!r} in this file",
                               "buffers here: " + ", ".join(repr(b.name) for b in self.buffers))

    # ----- page data --------------------------------------------------------------------------
    def page_runs(self, buf: BufferInfo, cd: CpuData, warn: Callable[[str], None],
                  run_bytes: int = RUN_BYTES) -> Iterator[PageRun]:
        """Yield one CPU's pages in runs of about ``run_bytes``; problems go to ``warn``, then stop."""
        psize = buf.page_size
        run_bytes = max(psize, run_bytes - run_bytes % psize)
        if cd.size == 0:
            return
        if not buf.compressed:
            whole = cd.size - cd.size % psize
            if whole != cd.size:
                warn(f"cpu {cd.cpu}: {cd.size % psize} bytes after offset {cd.offset + whole:#x} are not a "
                     "whole page, ignored")
            page = 0
            for start in range(0, whole, run_bytes):
                n = min(run_bytes, whole - start)
                try:
                    raw = self.pread(cd.offset + start, n, f"cpu {cd.cpu} pages")
                except TraceFormatError as exc:
                    warn(f"cpu {cd.cpu}: {(whole - start) // psize} pages after offset {cd.offset + start:#x} "
                         f"unreadable: {exc.problem}")
                    return
                yield PageRun(np.frombuffer(raw, np.uint8), cd.offset + start, page)
                page += n // psize
            return
        yield from self._compressed_runs(buf, cd, warn, run_bytes)

    def _compressed_runs(self, buf: BufferInfo, cd: CpuData, warn: Callable[[str], None],
                         run_bytes: int) -> Iterator[PageRun]:
        psize = buf.page_size
        end = cd.offset + 4 + cd.size  # the size counts the chunks, not the chunk count before them
        try:
            count = struct.unpack(self.endian + "I", self.pread(cd.offset, 4, f"cpu {cd.cpu} chunk count"))[0]
        except TraceFormatError as exc:
            warn(f"cpu {cd.cpu}: no page readable: {exc.problem}")
            return
        pos = cd.offset + 4
        zs = _ZstdInto.load() if self._zstd_ok else None
        win, win_at = b"", pos  # compressed bytes are read in large windows, not chunk by chunk
        frames: list[memoryview] = []
        sizes: list[int] = []
        offsets: list[int] = []
        have = 0
        page = 0
        gap = False  # chunks were lost before the next run
        lost = None
        for i in range(count + 1):
            if i < count:
                try:
                    if pos + 8 > end:
                        raise TraceFormatError(self.path, pos, "chunk header past the CPU's data", "")
                    if pos + 8 > win_at + len(win):
                        win_at = pos
                        win = self.pread(pos, min(end - pos, max(run_bytes // 4, 8)), "compressed pages")
                    csize, usize = struct.unpack_from(self.endian + "II", win, pos - win_at)
                    if pos + 8 + csize > end or usize > (256 << 20) or usize % psize:
                        raise TraceFormatError(self.path, pos, f"chunk sizes {csize}/{usize} do not fit", "")
                    if pos + 8 + csize > win_at + len(win):
                        win_at = pos
                        win = self.pread(pos, min(end - pos, max(run_bytes // 4, 8 + csize)), "compressed pages")
                    rel = pos - win_at + 8
                    frames.append(memoryview(win)[rel:rel + csize])
                    sizes.append(usize)
                    offsets.append(pos)
                    have += usize
                    pos += 8 + csize
                except TraceFormatError as exc:
                    lost = (count - i, exc.offset if exc.offset is not None else pos, exc.problem)
            if frames and (have >= run_bytes or i == count or lost):
                whole = self._zstd_into(zs, frames, sizes) if zs is not None else None
                if whole is not None:  # the common case: every chunk inflated straight into one array
                    yield PageRun(whole, offsets[0], page, gap)
                    gap = False
                    page += len(whole) // psize
                    frames, sizes, offsets, have = [], [], [], 0
                else:
                    yield from self._batch_runs(frames, sizes, offsets, cd, psize, warn, page, gap)
                    page += sum(sizes) // psize
                    gap = self._last_gap
                    frames, sizes, offsets, have = [], [], [], 0
            if lost:
                n, at, problem = lost
                warn(f"cpu {cd.cpu}: {n} compressed chunk(s) after offset {at:#x} unreadable ({problem}); "
                     "their events are lost")
                return

    def _batch_runs(self, frames: list[memoryview], sizes: list[int], offsets: list[int], cd: CpuData,
                       psize: int, warn: Callable[[str], None], page: int, gap: bool) -> Iterator[PageRun]:
        """Chunks inflated with python-zstandard or zlib: a damaged chunk is skipped (its size is
        known) and the run after it starts with a gap (``self._last_gap``: one is pending)."""
        for data, at, usize, problem in self._inflate_frames(frames, sizes, offsets):
            if problem is not None:
                warn(f"cpu {cd.cpu}: compressed chunk at offset {at:#x} does not decompress "
                     f"({problem}); its {usize // psize} page(s) are lost")
                gap = True
                page += usize // psize
                continue
            yield PageRun(np.frombuffer(data, np.uint8), at, page, gap)
            gap = False
            page += len(data) // psize
        self._last_gap = gap

    @staticmethod
    def _zstd_into(zs: "_ZstdInto", frames: list[memoryview], sizes: list[int]) -> Optional[np.ndarray]:
        """All chunks inflated by libzstd straight into one new array, or None if any fails."""
        out = np.empty(sum(sizes), np.uint8)
        at = 0
        for frame, usize in zip(frames, sizes):
            if not zs.into(frame, out, at, usize):
                return None
            at += usize
        return out

    def _inflate_frames(self, frames: list[memoryview], sizes: list[int],
                        offsets: list[int]) -> list[tuple[bytes, int, int, Optional[str]]]:
        """Inflate consecutive chunks: (data, file offset, size, None) for each stretch that
        inflates, (b"", offset, size, problem) for each damaged chunk."""
        multi = self._multi
        if multi is not None:
            try:
                out = multi(frames, decompressed_sizes=struct.pack(f"={len(sizes)}Q", *sizes), threads=1)
                data = b"".join(out[j] for j in range(len(out)))
                if len(data) == sum(sizes):
                    return [(data, offsets[0], len(data), None)]
            except Exception:  # zstd.ZstdError: find the damaged chunk(s) one by one below
                pass
        result: list[tuple[bytes, int, int, Optional[str]]] = []
        parts: list[bytes] = []
        first = offsets[0]
        for frame, usize, at in zip(frames, sizes, offsets):
            problem = None
            try:
                piece = self._inflate(frame, usize)  # type: ignore[misc]
                if len(piece) != usize:
                    problem = f"inflated to {len(piece)} bytes, not {usize}"
            except Exception as exc:  # zstd.ZstdError / zlib.error: damaged compressed data
                problem = str(exc) or type(exc).__name__
            if problem is None:
                if not parts:
                    first = at
                parts.append(piece)
                continue
            if parts:
                joined = b"".join(parts)
                result.append((joined, first, len(joined), None))
                parts = []
            result.append((b"", at, usize, problem))
        if parts:
            joined = b"".join(parts)
            result.append((joined, first, len(joined), None))
        return result
