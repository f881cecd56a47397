"""Event formats as tracefs prints them (``events/SYS/EVENT/format``) and trace.dat stores them.

Every offset, size and signedness the readers use comes from here, parsed from the file
being read, so a later version of an event that adds or moves fields is still read right.
"""

from __future__ import annotations

__all__ = ["FieldFormat", "EventFormat", "format_identity", "parse_event_format", "format_problem", "parse_header_page",
           "HeaderPage", "MAX_RECORD"]

import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

_FIELD_RE = re.compile(
    r"^\s*field:(?P<decl>[^;]*);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);"
    r"(?:\s*signed:(?P<signed>-?\d+);)?"
)
_ARRAY_RE = re.compile(r"^(?P<type>.*?)\s*(?P<name>[A-Za-z_]\w*)\s*\[(?P<len>[^\]]*)\]$")
_SCALAR_RE = re.compile(r"^(?P<type>.*?)\s*\b(?P<name>[A-Za-z_]\w*)$")
_NAME_LINE = re.compile(r"^[ \t]*name:[ \t]*(\S+)[ \t]*$", re.M)
_ID_LINE = re.compile(r"^[ \t]*ID:[ \t]*(\d{1,9})[ \t]*$", re.M)


@dataclass(frozen=True)
class FieldFormat:
    """One field of an event record: where it is and how to decode it."""

    name: str
    type: str  #: C type as declared, e.g. "unsigned long", "__data_loc char[]"
    offset: int
    size: int
    signed: bool
    array_len: Optional[int] = None  #: N for "type name[N]"; 0 for a dynamic "[]" array
    data_loc: bool = False  #: __data_loc: u32 at offset = (len << 16) | offset-in-record
    rel_loc: bool = False  #: __rel_loc (since v5.19): offset relative to the end of this field

    @property
    def is_string(self) -> bool:
        """A char array or dynamic char string: decoded up to its first NUL."""
        base = self.type.replace("__data_loc", "").replace("__rel_loc", "").strip()
        return base.startswith("char") and (self.array_len is not None or self.data_loc or self.rel_loc)

    @property
    def elem_size(self) -> int:
        """Size of one element (the whole field for scalars)."""
        if self.data_loc or self.rel_loc:
            return 1 if self.is_string else _elem_size_of(self.type)
        if self.array_len:
            return self.size // self.array_len
        return self.size

    def dtype(self, little_endian: bool = True) -> np.dtype:
        """numpy dtype of one element (scalars: the field itself)."""
        size = self.elem_size
        if size not in (1, 2, 4, 8):
            return np.dtype(f"V{size}")
        kind = "i" if self.signed else "u"
        return np.dtype(kind + str(size)).newbyteorder("<" if little_endian else ">")


@dataclass
class EventFormat:
    """An event's id, name and fields, as in its format file."""

    system: str
    name: str
    id: int
    fields: list[FieldFormat] = field(default_factory=list)  #: common fields first
    print_fmt: str = ""

    @property
    def full_name(self) -> str:
        """``system:name`` as trace-cmd and perf spell it."""
        return f"{self.system}:{self.name}"

    def field(self, name: str) -> Optional[FieldFormat]:
        """The field called ``name``, or None."""
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @property
    def field_names(self) -> list[str]:
        """All field names, common ones included, in format order."""
        return [f.name for f in self.fields]


def _elem_size_of(ctype: str) -> int:
    t = ctype.replace("__data_loc", "").replace("__rel_loc", "").replace("[]", "").strip()
    t = t.replace("unsigned", "").replace("signed", "").replace("const", "").strip()
    if "*" in t or t in ("long", "u64", "s64", "long long", "size_t", "ssize_t"):
        return 8
    return {"char": 1, "u8": 1, "s8": 1, "bool": 1, "short": 2, "u16": 2, "s16": 2}.get(t, 4)


def _parse_field(line: str) -> Optional[FieldFormat]:
    m = _FIELD_RE.match(line)
    if not m:
        return None
    decl = m.group("decl").strip()
    offset, size = int(m.group("offset")), int(m.group("size"))
    signed_txt = m.group("signed")
    data_loc = decl.startswith("__data_loc")
    rel_loc = decl.startswith("__rel_loc")
    array_len: Optional[int] = None
    am = _ARRAY_RE.match(decl)
    if am and not (data_loc or rel_loc):
        name, ctype = am.group("name"), am.group("type")
        length = am.group("len").strip()
        try:  # "[8]", "[0x10]"; a symbolic or empty length ("[]", "[TASK_COMM_LEN]") is dynamic
            array_len = max(int(length, 0), 0)
        except ValueError:
            array_len = 0
    elif data_loc or rel_loc:
        # "__data_loc char[] name": the name is the last word.
        name = decl.split()[-1]
        ctype = decl[: -len(name)].strip()
    else:
        sm = _SCALAR_RE.match(decl)
        if not sm:
            return None
        name, ctype = sm.group("name"), sm.group("type")
    if signed_txt is None:
        signed = not ctype.startswith("unsigned") and not ctype.startswith("u")
    else:
        signed = signed_txt == "1"
    return FieldFormat(name, ctype, offset, size, signed, array_len, data_loc, rel_loc)


def format_identity(text: str) -> Optional[tuple[str, int]]:
    """``(name, id)`` from a format text's ``name:`` and ``ID:`` lines, or None when either is missing.

    Cheap (two regex searches): a trace.dat holds thousands of formats and few are used, so
    readers index formats by this and parse them on first use; :func:`parse_event_format`
    succeeds exactly when this does.
    """
    name = _NAME_LINE.search(text)
    ev_id = _ID_LINE.search(text)
    if name is None or ev_id is None:
        return None
    return name.group(1), int(ev_id.group(1))


def parse_event_format(text: str, system: str = "") -> EventFormat:
    """Parse one format file's text. ``system`` is used when the text has none.

    Raises ValueError when the text has no ``name:`` or ``ID:`` line (see :func:`format_identity`);
    field lines that do not parse are left out.
    """
    ident = format_identity(text)
    if ident is None:
        raise ValueError("event format has no 'name:' or 'ID:' line")
    fields: list[FieldFormat] = []
    print_fmt = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("field:"):
            f = _parse_field(stripped)
            if f is not None:
                fields.append(f)
        elif stripped.startswith("print fmt:"):
            print_fmt = stripped[len("print fmt:"):].strip()
    return EventFormat(system, ident[0], ident[1], fields, print_fmt)


#: Largest extent of a record's fixed fields: a record lives in one ring-buffer page, and the
#: u16 offsets of __data_loc fields cannot reach past 64 KiB.
MAX_RECORD = 1 << 16


def format_problem(fmt: EventFormat, max_record: int = MAX_RECORD) -> Optional[str]:
    """Why ``fmt`` cannot describe real records (a damaged format), or None when it can.

    A field must lie inside a record, which lies inside one ring-buffer page (``max_record``: the
    file's page size); an integer (not a struct, union or char array) must be 1, 2, 4 or 8 bytes;
    a ``__data_loc``/``__rel_loc`` field is its u32 location word.
    """
    for f in fmt.fields:
        where = f"field {f.name!r} (offset {f.offset}, size {f.size})"
        if f.offset + f.size > min(max_record, MAX_RECORD):
            return f"{where} lies past any record"
        if f.data_loc or f.rel_loc:
            if f.size != 4:
                return f"{where} is a dynamic field whose location word is not 4 bytes"
            continue
        base = f.type.replace("const", "").replace("volatile", "").strip()
        if f.is_string or base.startswith(("struct ", "union ")) or "*" in base and f.size in (4, 8):
            continue
        if f.array_len:
            if f.size % f.array_len or f.elem_size not in (1, 2, 4, 8):
                return f"{where} is an array of {f.array_len} elements no integer size divides"
        elif f.array_len is None and f.size not in (1, 2, 4, 8):
            return f"{where} is an integer of a size no integer has"
    return None


@dataclass(frozen=True)
class HeaderPage:
    """Ring-buffer page header layout, from the ``header_page`` text."""

    timestamp_offset: int = 0
    timestamp_size: int = 8
    commit_offset: int = 8
    commit_size: int = 8  #: kernel long size
    data_offset: int = 16
    data_size: int = 4080


def parse_header_page(text: str) -> HeaderPage:
    """Parse ``header_page`` (fields timestamp, commit, overwrite, data)."""
    found: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        m = re.match(r"\s*field:\s*(?P<decl>[^;]*);\s*offset:(\d+);\s*size:(\d+);", line)
        if m:
            fname = m.group("decl").split()[-1]
            found.setdefault(fname, (int(m.group(2)), int(m.group(3))))
    ts = found.get("timestamp", (0, 8))
    commit = found.get("commit", (8, 8))
    data = found.get("data", (commit[0] + commit[1], 4080))
    return HeaderPage(ts[0], ts[1], commit[0], commit[1], data[0], data[1])
