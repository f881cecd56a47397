"""What libtraceevent hands back, in zlperf's event model: formats from its parse, columns from payloads.

Record payloads are copied out of libtracecmd one by one; here they become one padded byte matrix
and every field a numpy column of it, strings through the one interner (:mod:`zlperf.readers.strings`).
"""

from __future__ import annotations

__all__ = ["event_format", "decode_fields", "SYNTHESIZED"]

from typing import Optional, Sequence

import numpy as np

from zlperf.formats import EventFormat, FieldFormat
from zlperf.readers.libtracecmd.bindings import TepEvent, TepFormatField
from zlperf.readers.metadata import STACK_CELLS
from zlperf.readers.strings import Interner, expand

# enum tep_format_flags (event-parse.h)
_IS_ARRAY, _IS_SIGNED, _IS_DYNAMIC, _IS_RELATIVE = 1, 4, 16, 256

#: Formats libtracecmd makes up rather than reads from the file (trace-blk-hack.c).
SYNTHESIZED = frozenset({"ftrace:blktrace"})

#: Cells of the byte matrix gathered at once for dynamic strings (bounds its temporaries).
_STRING_CELLS = 8 << 20


def _s(b: Optional[bytes]) -> str:
    return b.decode("utf-8", "replace") if b else ""


def _field_format(f: TepFormatField) -> FieldFormat:
    """The zlperf field model from libtraceevent's parse of the same format text."""
    flags = int(f.flags)
    ctype = _s(f.type)
    dynamic = bool(flags & _IS_DYNAMIC)
    rel = bool(flags & _IS_RELATIVE)
    array_len: Optional[int] = None
    if not dynamic and flags & _IS_ARRAY:
        # libtraceevent keeps "[N]" in the type; zlperf's type is the element type.
        bracket = ctype.find("[")
        if bracket >= 0:
            ctype = ctype[:bracket].strip()
        array_len = int(f.arraylen)
    # "__data_loc char[]" in both models; rel_loc is flagged, its type says "__rel_loc".
    return FieldFormat(_s(f.name), ctype, int(f.offset), int(f.size), bool(flags & _IS_SIGNED),
                       None if dynamic else array_len, dynamic and not rel, rel)


def event_format(ev: TepEvent) -> EventFormat:
    """The :class:`EventFormat` of a ``struct tep_event`` (common fields first)."""
    fields: list[FieldFormat] = []
    for head in (ev.format.common_fields, ev.format.fields):
        p = head
        while p:
            fields.append(_field_format(p.contents))
            p = p.contents.next
    return EventFormat(_s(ev.system), _s(ev.name), int(ev.id), fields, _s(ev.print_fmt_format))


def decode_fields(ef: EventFormat, datas: Sequence[bytes], big_endian: bool = False,
                  dictionary: Optional[dict] = None, notes: Optional[list] = None) -> dict[str, np.ndarray]:
    """Columns of every field of ``ef`` from raw record payloads (EventBatch type conventions).

    String fields are interned; with ``dictionary`` given, their (codes, values) go there
    (the :attr:`EventBatch.dictionary` encoding). What had to be cut goes to ``notes``.
    """
    n = len(datas)
    lengths = np.fromiter((len(d) for d in datas), dtype=np.int64, count=n)
    width = max(int(lengths.max()) if n else 0, max((f.offset + f.size for f in ef.fields), default=0))
    # One padded byte matrix: fixed-offset fields become numpy column views.
    raw = np.frombuffer(b"".join(d.ljust(width, b"\0") for d in datas), dtype=np.uint8).reshape(n, width)
    cols: dict[str, np.ndarray] = {}
    for f in ef.fields:
        col = _decode_field(ef, f, raw, lengths, datas, big_endian, notes)
        if isinstance(col, tuple):
            codes, values = col
            if dictionary is not None:
                dictionary[f.name] = (codes, values)
            col = expand(codes, values)
        cols[f.name] = col
    return cols


def _native(arr: np.ndarray) -> np.ndarray:
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


def _dynamic_strings(raw: np.ndarray, start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, values) of the strings at per-row ``start``/``length`` of the byte matrix, cut at NUL."""
    n, width = raw.shape
    length = np.clip(np.minimum(length, width - start), 0, None)
    interner = Interner()
    span = int(length.max()) if n else 0
    if span == 0:
        codes = np.zeros(n, np.int32)
        if n:
            interner.add("")
        return codes, interner.values()
    cols = np.arange(span, dtype=np.int64)
    step = max(1, _STRING_CELLS // span)
    codes = np.empty(n, np.int32)
    for s in range(0, n, step):
        rows = np.arange(s, min(n, s + step))
        idx = start[rows, None] + cols
        valid = cols < length[rows, None]
        block = np.where(valid, raw[rows[:, None], np.minimum(idx, width - 1)], 0).astype(np.uint8)
        codes[s:s + step] = interner.byte_rows(block)
    return codes, interner.values()


def _decode_field(ef: EventFormat, f: FieldFormat, raw: np.ndarray, lengths: np.ndarray,
                  datas: Sequence[bytes], big: bool, notes: Optional[list]):
    """One column; string fields come as (codes, values)."""
    n = raw.shape[0]
    end = f.offset + f.size
    if f.data_loc or f.rel_loc:
        loc = _native(np.ascontiguousarray(raw[:, f.offset:f.offset + 4]).view(">u4" if big else "<u4")).reshape(n)
        loc = loc.astype(np.int64)
        start = (loc & 0xFFFF) + (end if f.rel_loc else 0)
        length = loc >> 16
        if f.is_string:
            # Bytes past the record's end are the matrix's zero padding, as a copy would end there.
            return _dynamic_strings(raw, start, np.minimum(length, np.maximum(lengths - start, 0)))
        out = np.empty(n, dtype=object)
        es = f.elem_size or 1
        for i, (a, ln) in enumerate(zip(start.tolist(), length.tolist())):
            chunk = datas[i][a:a + ln]
            out[i] = _native(np.frombuffer(chunk[: len(chunk) // es * es], dtype=f.dtype(not big)))
        return out
    if f.is_string:
        interner = Interner()
        return interner.byte_rows(np.ascontiguousarray(raw[:, f.offset:end])), interner.values()
    if ef.full_name == "ftrace:kernel_stack" and f.name == "caller":
        return _kernel_stack(ef, f, datas, big, notes)
    block = np.ascontiguousarray(raw[:, f.offset:end])
    dt = f.dtype(not big)
    if f.array_len:
        return _native(block.view(dt)).reshape(n, f.array_len)
    if f.array_len == 0:  # "type x[]" with no length: rest of the record
        out = np.empty(n, dtype=object)
        for i, d in enumerate(datas):
            tail = d[f.offset:]
            out[i] = _native(np.frombuffer(tail[: len(tail) // f.elem_size * f.elem_size], dtype=dt))
        return out
    return _native(block.view(dt)).reshape(n)


def _kernel_stack(ef: EventFormat, f: FieldFormat, datas: Sequence[bytes], big: bool,
                  notes: Optional[list]) -> np.ndarray:
    """ftrace ``kernel_stack``: ``caller`` runs past its declared [8] to the record's end.

    The kernel stores ``size`` entries (older kernels end the list with ULONG_MAX instead);
    returned 2-D uint64, innermost frame first, zero-padded, as wide as the deepest stack (cut
    when damaged lengths would make the matrix larger than :data:`STACK_CELLS`, said in ``notes``).
    """
    word = f.elem_size or 8
    size_f = ef.field("size")
    dt = np.dtype(f"{'>' if big else '<'}u{word}")
    stacks: list[np.ndarray] = []
    for d in datas:
        avail = max(0, (len(d) - f.offset) // word)
        count = avail
        if size_f is not None:
            nbytes = d[size_f.offset:size_f.offset + size_f.size]
            declared = int.from_bytes(nbytes, "big" if big else "little", signed=True)
            count = min(avail, declared) if declared >= 0 else avail
        vals = np.frombuffer(d[f.offset:f.offset + count * word], dtype=dt).astype(np.uint64)
        stop = np.nonzero(vals == np.uint64((1 << (8 * word)) - 1))[0]
        if stop.size:
            vals = vals[: stop[0]]
        stacks.append(vals)
    depth = max([f.array_len or 0] + [len(s) for s in stacks])
    if len(stacks) * depth > STACK_CELLS:
        cap = max(STACK_CELLS // len(stacks), 1)
        if notes is not None:
            notes.append(f"{sum(len(s) > cap for s in stacks)} kernel stack(s) claim more than {cap} frames "
                         f"(a damaged record length?): cut to {cap}")
        stacks = [s[:cap] for s in stacks]
        depth = cap
    out = np.zeros((len(stacks), depth), dtype=np.uint64)
    for i, s in enumerate(stacks):
        out[i, : len(s)] = s
    return out
