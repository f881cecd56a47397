"""The tracing-data layout trace-cmd and perf share: page/event headers, event formats, kallsyms, cmdlines.

A trace.dat v6 is this layout followed by CPU data (trace-cmd's Documentation/trace-cmd/trace-cmd.dat.v6.5.txt);
perf.data's HEADER_TRACING_DATA feature is the same bytes (the kernel's tools/perf/util/trace-event-info.c
writes it, trace-event-read.c reads it); a trace.dat v7 stores each piece in its own section.
"""

from __future__ import annotations

__all__ = ["MAGIC", "TracingHeader", "TracingData", "EventFormats", "read_tracing_header", "read_tracing_data",
           "read_header_info", "read_ftrace_formats", "read_event_systems", "read_kallsyms", "read_cmdlines",
           "parse_cmdlines"]

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple, Optional

from zlperf.formats import EventFormat, format_identity, parse_event_format
from zlperf.kallsyms import MAX_KALLSYMS_BYTES
from zlperf.readers.cursor import ByteCursor

#: The first bytes of a trace.dat and of perf's tracing data.
MAGIC = b"\x17\x08\x44tracing"

#: Smallest stored event format: its u64 size (the text may be empty).
_FORMAT_MIN = 8
#: Smallest event system entry: a NUL-terminated name and a u32 event count.
_SYSTEM_MIN = 5


class _FormatText(NamedTuple):
    system: str
    name: str
    text: str


class EventFormats(Mapping):
    """``system:event`` -> :class:`EventFormat`, read-only; each format is parsed on first use.

    Keys and ids are known at once (two regex searches per format); parsing waits for the few
    formats a trace's events use, as a file holds thousands. Also looks formats up by event id.
    """

    def __init__(self, texts: Iterable[tuple[str, str]] = (), warnings: Optional[list[str]] = None):
        self._by_id: dict[int, _FormatText] = {}
        self._ids: dict[str, int] = {}
        self._parsed: dict[int, EventFormat] = {}
        skipped = 0
        for system, text in texts:
            ident = format_identity(text)
            if ident is None:
                skipped += 1
                continue
            name, eid = ident
            self._by_id[eid] = _FormatText(system, name, text)
            self._ids[f"{system}:{name}"] = eid
        if skipped and warnings is not None:
            warnings.append(f"{skipped} event format(s) have no name or ID line; their events are skipped")

    def by_id(self, event_id: int) -> Optional[EventFormat]:
        """The format of event ``event_id`` (parsed once), or None when the file has none."""
        fmt = self._parsed.get(event_id)
        if fmt is None:
            entry = self._by_id.get(event_id)
            if entry is None:
                return None
            fmt = self._parsed[event_id] = parse_event_format(entry.text, entry.system)
        return fmt

    def name_of(self, event_id: int) -> Optional[str]:
        """``system:event`` of ``event_id`` without parsing its format."""
        entry = self._by_id.get(event_id)
        return None if entry is None else f"{entry.system}:{entry.name}"

    def ids(self) -> list[int]:
        """Every event id with a format."""
        return list(self._by_id)

    def __getitem__(self, key: str) -> EventFormat:
        fmt = self.by_id(self._ids[key])
        assert fmt is not None
        return fmt

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"EventFormats({len(self._ids)} formats, {len(self._parsed)} parsed)"


@dataclass(frozen=True)
class TracingHeader:
    """The opening of a trace.dat and of perf's tracing data: magic, version, byte order, sizes."""

    version: str  #: "6", "7" in a trace.dat; "0.6" in perf's tracing data
    big_endian: bool
    long_size: int
    page_size: int


@dataclass
class TracingData:
    """The v6 tracing-data pieces, as read by :func:`read_tracing_data`."""

    header: TracingHeader
    header_page: str = ""  #: text of the ring-buffer page header format
    formats: EventFormats = field(default_factory=EventFormats)
    kallsyms: bytes = b""  #: the text as saved (decoded only where a symbol name is read)
    cmdlines: dict[int, str] = field(default_factory=dict)


def read_tracing_header(cur: ByteCursor, what: str = "not a trace.dat",
                        hint: str = "give a file written by trace-cmd record/extract") -> TracingHeader:
    """Magic, version string, endianness byte, long size and page size (sets the cursor's byte order).

    ``what`` and ``hint`` word the error for a wrong magic.
    """
    at = cur.pos
    if cur.left < 3 or cur.raw(3) != MAGIC[:3]:
        raise cur.error(f"{what} (wrong magic)", hint, at=at)
    if cur.left < 7 or cur.raw(7) != MAGIC[3:]:
        raise cur.error(f"{what} (no 'tracing' after the magic)", hint, at=at + 3)
    version = cur.cstr(32)
    endian = cur.u8()
    if endian not in (0, 1):
        raise cur.error(f"bad endianness byte {endian}", "the file is damaged", at=cur.pos - 1)
    cur.big_endian = bool(endian)
    long_size = cur.u8()
    if long_size not in (4, 8):
        raise cur.error(f"bad long size {long_size}", "the file is damaged", at=cur.pos - 1)
    page_size = cur.u32()
    # The kernel's ring-buffer pages are 4 KiB to 64 KiB (sub-buffers up to 2 MiB since Linux 6.8).
    if page_size < 64 or page_size > (1 << 24) or page_size % 4:
        raise cur.error(f"implausible page size {page_size}", "the file is damaged", at=cur.pos - 4)
    return TracingHeader(version, bool(endian), long_size, page_size)


def read_header_info(cur: ByteCursor) -> str:
    """``header_page`` and ``header_event``: returns the page header's format text."""
    cur.tag(b"header_page\0", "'header_page'")
    page = cur.sized(8, "header_page").decode("utf-8", "replace")
    cur.tag(b"header_event\0", "'header_event'")
    cur.sized(8, "header_event")
    return page


def read_ftrace_formats(cur: ByteCursor, out: list[tuple[str, str]]) -> None:
    """ftrace's own event formats (u32 count, each u64 size + text), system ``ftrace``."""
    for _ in range(cur.count(4, _FORMAT_MIN, "ftrace format count")):
        out.append(("ftrace", cur.sized(8, "ftrace event format").decode("utf-8", "replace")))


def read_event_systems(cur: ByteCursor, out: list[tuple[str, str]]) -> None:
    """Event formats by system: u32 systems; each a NUL-terminated name, u32 count, u64 size + text each."""
    for _ in range(cur.count(4, _SYSTEM_MIN, "event system count")):
        system = cur.cstr(256)
        for _ in range(cur.count(4, _FORMAT_MIN, f"event count of system {system!r}")):
            out.append((system, cur.sized(8, f"{system} event format").decode("utf-8", "replace")))


def read_kallsyms(cur: ByteCursor, warnings: list[str]) -> bytes:
    """The kallsyms block (u32 size + text); one larger than any kallsyms is skipped with a warning."""
    at = cur.offset
    size = cur.u32()
    if size > MAX_KALLSYMS_BYTES:
        cur.skip(size, "kallsyms")
        warnings.append(f"offset {at:#x}: the saved kallsyms claims {size} bytes, more than any kernel's "
                        f"({MAX_KALLSYMS_BYTES >> 20} MiB): ignored, kernel addresses stay numeric")
        return b""
    return cur.raw(size, "kallsyms")


def parse_cmdlines(text: str) -> dict[int, str]:
    """``PID COMM`` lines of the kernel's saved_cmdlines, as trace-cmd saves them."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        pid, _, comm = line.strip().partition(" ")
        comm = comm.strip()
        if pid.isdigit() and comm:
            out[int(pid)] = comm
    return out


def read_cmdlines(cur: ByteCursor) -> dict[int, str]:
    """The saved cmdlines block (u64 size + text)."""
    return parse_cmdlines(cur.sized(8, "saved cmdlines").decode("utf-8", "replace"))


def read_tracing_data(cur: ByteCursor, header: TracingHeader, warnings: list[str],
                      cmdlines: bool = True) -> TracingData:
    """Everything after :func:`read_tracing_header` up to the CPU data, in the v6 order.

    ``cmdlines``: whether the saved cmdlines block is there (trace.dat v6 always; perf's tracing
    data since its version 0.6).
    """
    data = TracingData(header)
    data.header_page = read_header_info(cur)
    texts: list[tuple[str, str]] = []
    read_ftrace_formats(cur, texts)
    read_event_systems(cur, texts)
    data.formats = EventFormats(texts, warnings)
    data.kallsyms = read_kallsyms(cur, warnings)
    cur.sized(4, "printk formats")
    if cmdlines:
        data.cmdlines = read_cmdlines(cur)
    return data
