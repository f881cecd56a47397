"""Event fields out of ring-buffer records: numpy gathers at the offsets the file's event format gives.

Integers keep their size and signedness, strings are interned (:mod:`zlperf.readers.strings`), the
ftrace ``kernel_stack`` caller array is read to each record's end as trace-cmd does.
"""

from __future__ import annotations

__all__ = ["gather_fields", "read_type_ids"]

import sys
from typing import Optional

import numpy as np

from zlperf.formats import EventFormat, FieldFormat
from zlperf.readers.metadata import STACK_CELLS
from zlperf.readers.strings import Interner, expand
from zlperf.readers.tracedat.native import Gathered, Slot


def read_type_ids(data: np.ndarray, off: np.ndarray, type_field: FieldFormat, big: bool) -> np.ndarray:
    """The ``common_type`` of each record (int64); 0 for bytes past the run (a hostile empty record can end it)."""
    reach = type_field.offset + max(type_field.size, 1)
    if off.shape[0] and int(off.max()) + reach > len(data):
        data = np.concatenate([data, np.zeros(reach, np.uint8)])
    return _scalar(data, {}, off, type_field.offset, type_field.size, False, big).astype(np.int64)


def _view(data: np.ndarray, views: dict, dt: np.dtype) -> np.ndarray:
    """``data`` seen as overlapping values of ``dt`` starting at every byte (cached per dtype)."""
    v = views.get(dt)
    if v is None:
        v = views[dt] = np.ndarray((max(len(data) - dt.itemsize + 1, 0),), dtype=dt, buffer=data, strides=(1,))
    return v


def _scalar(data: np.ndarray, views: dict, off: np.ndarray, at: int, size: int, signed: bool,
            big: bool) -> np.ndarray:
    """``size``-byte integers at ``off + at`` in their own dtype (in bounds).

    Hot path, open-coded: one gather from a byte-strided view of the run typed as the field, so
    any offset, size, signedness and byte order is a single pass.
    """
    if size in (1, 2, 4, 8):
        dt = np.dtype(("i" if signed else "u") + str(size)).newbyteorder(">" if big else "<")
        col = _view(data, views, dt)[off + at if at else off]
        return col.astype(dt.newbyteorder("=")) if big else col
    # Odd sizes: assemble byte by byte (unsigned).
    pos = np.minimum(off + at, max(len(data) - size, 0))
    out = np.zeros(off.shape[0], np.uint64)
    for j in range(size):
        byte = data[pos + j].astype(np.uint64)
        out |= byte << np.uint64(8 * (size - 1 - j) if big else 8 * j)
    return out


#: uint64 masks keeping the low 0..8 bytes of a little-endian word.
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)


def _near(rows: Optional[np.ndarray], rel: np.ndarray, length: np.ndarray) -> Optional[np.ndarray]:
    """Each record's string word (8 bytes from ``rel``) out of the gathered ``rows``, when every record's
    string is at the same place, within them, and at most 8 bytes long; else None."""
    if rows is None or not rel.shape[0]:
        return None
    at, most = int(rel[0]), int(length.max())
    if not (0 <= at and at + 8 <= rows.dtype.itemsize and most <= 8 and sys.byteorder == "little"):
        return None
    if not (rel == at).all():
        return None
    word = np.dtype({"names": ["w"], "formats": ["<u8"], "offsets": [at], "itemsize": rows.dtype.itemsize})
    return rows.view(word)["w"].copy()


def _strings(data: np.ndarray, start: np.ndarray, length: np.ndarray,
             dictionary: Optional[dict] = None, name: str = "", words: Optional[np.ndarray] = None) -> np.ndarray:
    """Object array of str: bytes ``[start, start+length)`` cut at the first NUL, interned.

    With ``dictionary``, its ``(codes, values)`` encoding goes there too (EventBatch.dictionary).
    ``words``: each string's first 8 bytes (little-endian), already gathered (strings of at most 8 bytes).
    Rows equal before masking are equal after: when all are, one row is masked and decoded.
    """
    n = start.shape[0]
    interner = Interner()
    shortest = width = last = 0
    if n:
        shortest, width, last = int(length.min()), int(length.max()), int(start.max())
        if shortest < 0 or last + width > len(data):  # damaged lengths: keep every string inside the run
            length = np.clip(length, 0, None)
            length = np.minimum(length, np.maximum(len(data) - start, 0))
            shortest, width = int(length.min()), int(length.max())
    if 0 < width <= 8 and sys.byteorder == "little" and (words is not None or last + 8 <= len(data)):
        # Short strings (zone names, "Normal\0" is 7 bytes): one 64-bit word per string from a
        # byte-strided view of the run (any alignment), the bytes past its length masked off.
        if words is None:
            words = _view(data, {}, np.dtype("<u8"))[start]
        if shortest == width and (words == words[0]).all():  # one text (a run's zone name): no mask pass
            codes = interner.rows(words[:1] & _LOW_BYTES[width])
            codes = np.full(n, codes[0], np.int32)
        else:
            codes = interner.rows(words & (_LOW_BYTES[width] if shortest == width else _LOW_BYTES[length]))
    elif width and sys.byteorder == "little" and len(data) >= 4 and not (start % 4).any():
        # Records are 4-byte aligned and so, in practice, are their strings: gather whole
        # 32-bit words (a few per string) instead of a byte matrix, mask bytes past the length.
        # Slices keep the index matrix small for wide strings.
        nwords = -(-width // 4)
        w32 = data[: len(data) // 4 * 4].view(np.uint32)
        masks = np.array([0, 0xFF, 0xFFFF, 0xFFFFFF, 0xFFFFFFFF], dtype=np.uint32)
        cols = np.arange(nwords)
        step = max(1, (4 << 20) // nwords)
        codes = np.empty(n, np.int32)
        for s in range(0, n, step):
            st, ln = start[s:s + step], length[s:s + step]
            idx = np.minimum((st // 4)[:, None] + cols, len(w32) - 1)
            valid = np.clip(ln[:, None] - 4 * cols, 0, 4)
            codes[s:s + step] = interner.rows(w32[idx] & masks[valid])
    elif width:
        width8 = -(-width // 8) * 8  # whole uint64 words, so rows compare as integers
        # Wide strings are rare: gather them in slices so the byte matrix stays small.
        step = max(1, (8 << 20) // width8)
        cols = np.arange(width8, dtype=np.int64)
        codes = np.empty(n, np.int32)
        for s in range(0, n, step):
            st, ln = start[s:s + step], length[s:s + step]
            idx = st[:, None] + cols[None, :]
            valid = cols[None, :] < ln[:, None]
            mat = np.where(valid, data[np.minimum(idx, len(data) - 1)], 0).astype(np.uint8)
            codes[s:s + step] = interner.rows(np.ascontiguousarray(mat).view(np.uint64))
    else:
        codes = np.zeros(n, np.int32)
        if n:
            interner.add("")
    return _column(interner, codes, dictionary, name)


def _column(interner: Interner, codes: np.ndarray, dictionary: Optional[dict], name: str) -> np.ndarray:
    """The object column of ``codes`` (and its encoding into ``dictionary``, when given)."""
    texts = interner.values()
    n = codes.shape[0]
    out = expand(codes, texts) if n else np.empty(0, dtype=object)
    if dictionary is not None and n:
        dictionary[name] = (codes, texts)
    return out


def _word_strings(words: np.ndarray, same: bool, dictionary: Optional[dict], name: str) -> np.ndarray:
    """The string column of ``words`` (each string's bytes in a little-endian u64, zeros after them), as
    :func:`_strings` makes it; ``same``: all words are equal (one text: decoded once, no grouping)."""
    interner = Interner()
    if same and words.shape[0]:
        codes = np.full(words.shape[0], interner.rows(words[:1])[0], np.int32)
    else:
        codes = interner.rows(words)
    return _column(interner, codes, dictionary, name)


def gather_fields(data: np.ndarray, off: np.ndarray, length: np.ndarray, fmt: EventFormat, big: bool,
                  long_size: int = 8, dictionary: Optional[dict] = None,
                  notes: Optional[list] = None, gathered: Optional[Gathered] = None) -> dict[str, np.ndarray]:
    """Decode every field of ``fmt`` for the records at ``off`` (payload offsets, 4-byte aligned).

    What had to be cut goes to ``notes``. ``gathered``: what the native walk already read of these records.

    String fields' dictionary encodings go into ``dictionary`` when given.
    """
    cols: dict[str, np.ndarray] = {}
    n = off.shape[0]
    stack = fmt.system == "ftrace" and fmt.name == "kernel_stack"
    reach = max((f.offset + f.size for f in fmt.fields), default=0) + 8
    if n and int(off.max()) + reach > len(data) // 4 * 4:
        # A format reaching past the run's end (corrupt file): read zeros there, not out of bounds.
        data = np.concatenate([data, np.zeros(reach + 8, np.uint8)])
    views: dict = {}
    table, rows = (gathered_table(gathered, fmt, big), None) if gathered is not None else _records(data, off, fmt, big, stack)
    for f in fmt.fields:
        if f.name in table:
            cols[f.name] = table[f.name]
            continue
        if stack and f.name == "caller":
            cols[f.name] = _stack(data, off, length, f, big, long_size, notes)
            continue
        if f.data_loc or f.rel_loc:
            base = (f.offset + f.size) if f.rel_loc else 0
            short = gathered.strings.get(f.name) if gathered is not None and f.is_string else None
            if short is not None:
                cols[f.name] = _word_strings(short[0], short[1], dictionary, f.name)
                continue
            loc_col = table.get(_LOC + f.name)
            if loc_col is None:
                loc_col = _scalar(data, views, off, f.offset, 4, False, big)
            loc = loc_col.astype(np.int64)
            rel = (loc & 0xFFFF) + base
            ln = loc >> 16
            # Keep the dynamic area inside the record.
            ln = np.minimum(ln, np.maximum(length - rel, 0))
            if f.is_string:
                cols[f.name] = _strings(data, off + rel, ln, dictionary, f.name, _near(rows, rel, ln))
            else:
                es = max(1, f.elem_size)
                dt = f.dtype(not big)
                col = np.empty(n, dtype=object)
                for i in range(n):
                    s = int(off[i] + rel[i])
                    cnt = int(ln[i]) // es
                    col[i] = np.frombuffer(data[s:s + cnt * es].tobytes(), dtype=dt).astype(dt.newbyteorder("="))
                cols[f.name] = col
            continue
        if f.array_len is not None:
            if f.is_string:
                cols[f.name] = _strings(data, off + f.offset, np.full(n, f.size, np.int64), dictionary, f.name)
                continue
            count = f.array_len or 0
            es = f.elem_size
            if count == 0 or es not in (1, 2, 4, 8):
                cols[f.name] = np.zeros((n, 0), np.uint8)
                continue
            mat = np.empty((n, count), dtype=np.dtype(("i" if f.signed else "u") + str(es)))
            for j in range(count):
                mat[:, j] = _scalar(data, views, off, f.offset + j * es, es, f.signed, big)
            cols[f.name] = mat
            continue
        if f.size not in (1, 2, 4, 8):
            cols[f.name] = _strings(data, off + f.offset, np.full(n, f.size, np.int64))  # odd size: raw bytes
            continue
        cols[f.name] = _scalar(data, views, off, f.offset, f.size, f.signed, big)
    return cols


_LOC = "\0loc:"  # table key of a __data_loc field's location word
_DYNAMIC_REACH = 16  #: bytes past a record's fixed part gathered with it (see _records)


def _fixed_layout(fmt: EventFormat, stack: bool) -> list[tuple[str, int, int, int, str]]:
    """The fields gathered with each record's fixed part: ``(table key, payload offset, item size, items,
    "i" or "u")`` of every fixed-size number (arrays of them too) and of each ``__data_loc`` location word."""
    layout = []
    for f in fmt.fields:
        kind = "i" if f.signed else "u"
        if f.data_loc or f.rel_loc:
            layout.append((_LOC + f.name, f.offset, 4, 1, "u"))
        elif stack and f.name == "caller" or f.is_string:
            continue
        elif f.array_len is None and f.size in (1, 2, 4, 8):
            layout.append((f.name, f.offset, f.size, 1, kind))
        elif f.array_len and f.elem_size in (1, 2, 4, 8) and f.elem_size * f.array_len == f.size:
            layout.append((f.name, f.offset, f.elem_size, f.array_len, kind))
    return layout


def walk_slot(fmt: EventFormat, event_id: Optional[int] = None) -> Slot:
    """What the native walk gathers of ``fmt``'s records as it meets them (see :func:`gathered_columns`), for
    the records whose 16-bit id is ``event_id`` (the format's own by default)."""
    layout = _fixed_layout(fmt, fmt.system == "ftrace" and fmt.name == "kernel_stack")
    reach = max((at + size * items for _key, at, size, items, _kind in layout), default=1)
    reach = -(-reach // 8) * 8  # whole words: the walk copies them without a call
    strings = [(f.name, f.offset, (f.offset + f.size) if f.rel_loc else 0)
               for f in fmt.fields if (f.data_loc or f.rel_loc) and f.is_string]
    return Slot(fmt.id if event_id is None else event_id, reach, strings)


def gathered_table(gathered: Gathered, fmt: EventFormat, big: bool) -> dict[str, np.ndarray]:
    """:func:`_records`'s table out of the rows the native walk gathered (a :func:`walk_slot`'s)."""
    rows = gathered.rows
    raw = rows.view(np.dtype((np.void, rows.shape[1]))).reshape(rows.shape[0])
    return _typed(raw, fmt, big, fmt.system == "ftrace" and fmt.name == "kernel_stack") or {}


def gathered_columns(gathered: Gathered, fmt: EventFormat, big: bool,
                     dictionary: dict) -> Optional[dict[str, np.ndarray]]:
    """The columns of :func:`gather_fields` out of what the walk gathered of ``fmt``'s records (a
    :func:`walk_slot`'s), or None when some field needs :func:`gather_fields` (given ``gathered`` too: kernel
    stacks, strings longer than 8 bytes, char arrays, odd sizes)."""
    table = gathered_table(gathered, fmt, big)
    cols: dict[str, np.ndarray] = {}
    for f in fmt.fields:
        if f.name in table:
            cols[f.name] = table[f.name]
        elif f.is_string and (f.data_loc or f.rel_loc) and (short := gathered.strings.get(f.name)) is not None:
            cols[f.name] = _word_strings(short[0], short[1], dictionary, f.name)
        else:
            return None
    return cols


def _records(data: np.ndarray, off: np.ndarray, fmt: EventFormat, big: bool,
             stack: bool) -> tuple[dict[str, np.ndarray], Optional[np.ndarray]]:
    """Every fixed-size numeric field (and each __data_loc location word) of the records at ``off``, and
    the bytes gathered: each record's fixed part and up to :data:`_DYNAMIC_REACH` bytes after it (fewer at
    the run's end), where a short __data_loc string usually is (``None`` when there are none).

    Hot path, open-coded: one fancy-index copy of each record's fixed part (a byte-strided 2-D
    view of the run), then each field is a strided view of those rows, typed by a structured
    dtype built from the format; a contiguous copy per field. Empty when the layout is odd.
    """
    n = off.shape[0]
    layout = _fixed_layout(fmt, stack)
    if not layout or n == 0:
        return {}, None
    width = max(at + size * items for _key, at, size, items, _kind in layout)
    last = int(off.max())
    if len(data) < width or last + width > len(data):
        return {}, None
    # The bytes just past the fixed part come in the same cache lines: gathered now, a string there needs
    # no second pass over the run's records.
    reach = max(width, min(width + _DYNAMIC_REACH, len(data) - last))
    # Each record's fixed part as one opaque item: a gather of whole items (a copy of `reach` bytes
    # each), not of `reach` one-byte elements.
    raw = np.ndarray((len(data) - reach + 1,), np.dtype((np.void, reach)), buffer=data, strides=(1,))[off]
    table = _typed(raw, fmt, big, stack)
    if table is None:
        return {}, None
    return table, (raw if reach > width else None)


def _typed(raw: np.ndarray, fmt: EventFormat, big: bool, stack: bool) -> Optional[dict[str, np.ndarray]]:
    """The :func:`_fixed_layout` fields of records' fixed parts (``raw``: one opaque item a record, at least
    as wide as the layout), each a contiguous column in host order; None when the layout is odd.

    Hot path, open-coded: each field is a strided view of the items, typed by a structured dtype built from
    the format; a contiguous copy per field.
    """
    bo = ">" if big else "<"
    layout = _fixed_layout(fmt, stack)
    names = [key for key, _at, _size, _items, _kind in layout]
    formats = [f"{bo}{kind}{size}" if items == 1 else (f"{bo}{kind}{size}", (items,))
               for _key, _at, size, items, kind in layout]
    offsets = [at for _key, at, _size, _items, _kind in layout]
    try:
        sd = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": raw.dtype.itemsize})
    except (ValueError, TypeError):  # overlapping or duplicate fields in a damaged format
        return None
    recs = raw.view(sd)
    out = {}
    for name in names:
        col = recs[name]
        out[name] = col.astype(col.dtype.newbyteorder("="))  # contiguous, native order
    return out


def _stack(data: np.ndarray, off: np.ndarray, length: np.ndarray, f: FieldFormat, big: bool,
           long_size: int, notes: Optional[list] = None) -> np.ndarray:
    """ftrace kernel_stack ``caller``: the record holds as many addresses as fit (the format's [8]
    is nominal); trace-cmd stops at the record end or at an all-ones entry. Zero-padded, 2-D.

    The matrix is as wide as the deepest stack: should a few damaged record lengths make it
    larger than :data:`STACK_CELLS`, those stacks are cut (said in ``notes``).
    """
    n = off.shape[0]
    depth = np.maximum((length - f.offset) // long_size, 0)
    width = int(depth.max()) if n else 0
    if n * width > STACK_CELLS:
        cap = max(STACK_CELLS // n, 1)
        if notes is not None:
            notes.append(f"{int((depth > cap).sum())} kernel stack(s) of one run claim more than {cap} frames "
                         f"(a damaged record length?): cut to {cap}")
        depth = np.minimum(depth, cap)
        width = cap
    if n and int(off.max()) + f.offset + (width + 1) * long_size > len(data) // 4 * 4:
        data = np.concatenate([data, np.zeros(f.offset + (width + 2) * long_size, np.uint8)])
    views: dict = {}
    mat = np.zeros((n, width), np.uint64)
    alive = np.ones(n, bool)
    ones = np.uint64(0xFFFFFFFFFFFFFFFF) if long_size == 8 else np.uint64(0xFFFFFFFF)
    for j in range(width):
        v = _scalar(data, views, off, f.offset + j * long_size, long_size, False, big).astype(np.uint64)
        alive &= (j < depth) & (v != ones)
        mat[:, j] = np.where(alive, v, 0)
    return mat
