"""Ring-buffer pages to numpy columns: event headers walked for all pages at once, fields gathered.

The page and event header layout is the kernel's (kernel/trace/ring_buffer.c), read the way
libtraceevent's kbuffer-parse.c reads it; field offsets come from the file's event formats.
"""

from __future__ import annotations

__all__ = ["DecodedRun", "decode_pages", "gather_fields", "read_type_ids"]

from dataclasses import dataclass, field

import sys
from typing import Optional

import numpy as np

from zlperf.formats import EventFormat, FieldFormat, HeaderPage

TS_SHIFT = 27
COMMIT_MASK = (1 << 27) - 1
MISSING_EVENTS = 1 << 31  # page flag: events were lost before this page
MISSING_STORED = 1 << 30  # page flag: the lost count is stored after the page data
TS_MSB = np.uint64(0xF8 << 56)  # absolute time stamps lack these bits (kbuffer-parse.c)
TYPE_PADDING, TYPE_TIME_EXTEND, TYPE_TIME_STAMP = 29, 30, 31


@dataclass
class DecodedRun:
    """The data events of a run of pages, in ring-buffer order.

    ``index`` is each event's position in the run's stream, where gaps take slots too.
    """

    off: np.ndarray  #: int64, payload offset in the run's bytes
    length: np.ndarray  #: int32, payload length
    ts: np.ndarray  #: uint64, trace-clock timestamp
    index: np.ndarray  #: int64, position in the run's stream
    missed_index: np.ndarray  #: int64, stream position of each gap (just before the page's first event)
    missed_count: np.ndarray  #: int64, events lost (-1 unknown)
    missed_ts: np.ndarray  #: uint64, time of the first event after the gap (page time if none)
    problems: list[tuple[int, str]] = field(default_factory=list)  #: (page, what was wrong)


def _u64_at(words: np.ndarray, widx: np.ndarray, big: bool) -> np.ndarray:
    """64-bit values at 4-byte-aligned word indices."""
    a = words[widx].astype(np.uint64)
    b = words[widx + 1].astype(np.uint64)
    return (a << np.uint64(32)) | b if big else a | (b << np.uint64(32))


def _long_at(words: np.ndarray, widx: np.ndarray, size: int, big: bool) -> np.ndarray:
    if size == 8:
        return _u64_at(words, widx, big)
    return words[widx].astype(np.uint64)


def decode_pages(data: np.ndarray, page_size: int, hp: HeaderPage, big: bool = False,
                 gap_before: bool = False) -> DecodedRun:
    """Walk every page of ``data`` (uint8, whole pages) and return its data events.

    Hot loop, open-coded: all pages advance in lockstep, one record header per page per step,
    so the number of numpy passes is the largest number of records on one page; each page's
    clock runs along (kbuffer-parse.c semantics: every record's delta counts, extends and
    padding included; an absolute stamp replaces the time but keeps its top 5 bits).
    Unreadable pages or page tails become gaps (count -1), as does ``gap_before`` (pages lost
    before this run).
    """
    n_pages = len(data) // page_size
    words = data[: n_pages * page_size].view(">u4" if big else "<u4")
    nw = words.shape[0]
    problems: list[tuple[int, str]] = []
    empty_i = np.zeros(0, np.int64)
    if n_pages == 0:
        return DecodedRun(empty_i, empty_i, np.zeros(0, np.uint64), empty_i, empty_i, empty_i,
                          np.zeros(0, np.uint64), problems)
    wpp = page_size // 4
    base_w = np.arange(n_pages, dtype=np.int64) * wpp
    ts0 = _u64_at(words, base_w + hp.timestamp_offset // 4, big)
    commit = _long_at(words, base_w + hp.commit_offset // 4, hp.commit_size, big)
    size = (commit & np.uint64(COMMIT_MASK)).astype(np.int64)
    dstart = hp.data_offset
    cap = page_size - dstart
    bad = size > cap
    for p in np.flatnonzero(bad).tolist():
        problems.append((p, f"page header says {int(size[p])} data bytes, a page holds {cap}"))
    size[bad] = 0
    missing = (commit & np.uint64(MISSING_EVENTS)) != 0
    stored = missing & ((commit & np.uint64(MISSING_STORED)) != 0)
    lost = np.where(missing, -1, 0).astype(np.int64)
    sp = np.flatnonzero(stored & (size + dstart + hp.commit_size <= page_size))
    if sp.size:
        lost[sp] = _long_at(words, base_w[sp] + (dstart + size[sp]) // 4, hp.commit_size, big).astype(np.int64)

    # Lockstep walk. Positions are byte offsets into the run; records are 4-byte aligned.
    # Step s of the page in slot j (its index among the pages with data) fills cell [s, j] of
    # the matrices below; reading them transposed gives ring-buffer order, page by page.
    ap = np.flatnonzero(size > 0)
    n_slots = ap.size
    slot = np.arange(n_slots)
    full = True  # every slot still active: rows are written whole
    pos = ap * page_size + dstart
    end = pos + size[ap]
    cap_end = ap * page_size + page_size
    now = ts0[ap].copy()  # each active page's clock
    rows = 160 if n_slots else 0  # grows as needed; ~150 records fit a 4 KB page of kmem events
    m_off = np.empty((rows, n_slots), np.int64)
    m_len = np.empty((rows, n_slots), np.uint32)
    m_ts = np.empty((rows, n_slots), np.uint64)
    m_ok = np.zeros((rows, n_slots), bool)
    sh5, m27, m5 = np.uint32(5), np.uint32(COMMIT_MASK), np.uint32(31)
    step = 0
    while ap.size:
        if step == rows:
            grow = rows
            m_off = np.concatenate([m_off, np.empty((grow, n_slots), np.int64)])
            m_len = np.concatenate([m_len, np.empty((grow, n_slots), np.uint32)])
            m_ts = np.concatenate([m_ts, np.empty((grow, n_slots), np.uint64)])
            m_ok = np.concatenate([m_ok, np.zeros((grow, n_slots), bool)])
            rows += grow
        wi = pos >> 2
        hdr = words[wi]
        if big:
            tl = hdr >> np.uint32(27)
            d = hdr & m27
        else:
            tl = hdr & m5
            d = hdr >> sh5
        if int(tl.min()) > 0 and int(tl.max()) <= 28:
            # Fast path: every page is at a small data record (the common case). A record
            # running off its page ends the page (end <= cap_end); it is dropped below.
            plen = tl << np.uint32(2)
            nxt = pos + 4
            now += d
            if full:
                m_off[step] = nxt
                m_len[step] = plen
                m_ts[step] = now
                m_ok[step] = True
            else:
                m_off[step, slot] = nxt
                m_len[step, slot] = plen
                m_ts[step, slot] = now
                m_ok[step, slot] = True
            nxt += plen
        else:
            tl = tl.astype(np.int64)
            d = d.astype(np.uint64)
            a0 = words[np.minimum(wi + 1, nw - 1)].astype(np.int64)
            is_data = tl <= 28
            hlen = np.where(tl == 0, 8, 4)
            plen = np.where(tl == 0, (a0 - 4 + 3) & ~3, tl * 4)
            nxt = np.where(is_data, pos + hlen + plen, pos + 8)
            pad = tl == TYPE_PADDING
            if pad.any():
                # Padding: delta 0 = the rest of the page is empty; else a discarded event of a0 bytes.
                nxt = np.where(pad, np.where(d == 0, end, pos + 4 + a0), nxt)
            is_ext = tl >= TYPE_TIME_EXTEND
            if is_ext.any():
                d = np.where(is_ext, (a0.astype(np.uint64) << np.uint64(TS_SHIFT)) + d, d)
            ts_abs = tl == TYPE_TIME_STAMP
            if ts_abs.any():
                now = np.where(ts_abs, d | (now & TS_MSB), now + d)
            else:
                now += d
            broken = ((nxt & 3) != 0) | (is_data & (plen < 0)) | (nxt <= pos) | (~is_data & (nxt > cap_end))
            if broken.any():
                for i in np.flatnonzero(broken).tolist():
                    problems.append((int(ap[i]), f"record header at page offset {int(pos[i] - ap[i] * page_size)} "
                                     f"(type {int(tl[i])}) is invalid"))
                is_data = is_data & ~broken
                nxt = np.where(broken, end, nxt)
            sel = np.flatnonzero(is_data)
            if sel.size:
                cells = slot[sel]
                m_off[step, cells] = pos[sel] + hlen[sel]
                m_len[step, cells] = plen[sel]
                m_ts[step, cells] = now[sel]
                m_ok[step, cells] = True
        keep = nxt < end
        if keep.all():
            pos = nxt
            step += 1
            continue
        # Pages ending here: an event whose record runs off its page is dropped (checked only
        # for the finishing pages, the only place it can happen since end <= cap_end).
        ovr = ~keep & (nxt > cap_end)
        if ovr.any():
            for i in np.flatnonzero(ovr).tolist():
                if m_ok[step, slot[i]]:
                    m_ok[step, slot[i]] = False
                    problems.append((int(ap[i]), f"event at page offset {int(pos[i] - ap[i] * page_size)} "
                                     "runs off the page"))
        ap, pos, end, cap_end, now, slot = ap[keep], nxt[keep], end[keep], cap_end[keep], now[keep], slot[keep]
        full = False
        step += 1

    if n_slots and step:
        ok_t = m_ok[:step].T
        off = m_off[:step].T[ok_t]
        length = m_len[:step].T[ok_t].view(np.int32)  # int32: a record is at most a page
        ts = m_ts[:step].T[ok_t]
        del m_off, m_len, m_ts
        cnt = np.zeros(n_pages, np.int64)
        cnt[np.flatnonzero(size > 0)] = ok_t.sum(axis=1)
        del m_ok, ok_t
    else:
        off = length = empty_i
        ts = np.zeros(0, np.uint64)
        cnt = np.zeros(n_pages, np.int64)
    # Lost data is a gap in the stream: before the page that follows it.
    if gap_before and lost[0] == 0:
        lost[0] = -1
    for p, _what in problems:
        target = p if bad[p] else p + 1
        if target < n_pages and lost[target] == 0:
            lost[target] = -1
    flagged = (lost != 0).astype(np.int64)
    total = off.shape[0]
    start = np.cumsum(cnt) - cnt
    # Stream positions: a flagged page's gap takes the slot before the page's first event.
    cumflag = np.cumsum(flagged)
    if total and cumflag[-1]:
        index = np.arange(total, dtype=np.int64) + np.repeat(cumflag, cnt)
    else:
        index = np.arange(total, dtype=np.int64)
    mp = np.flatnonzero(flagged)
    has = cnt[mp] > 0
    missed_ts = np.where(has, ts[np.minimum(start[mp], max(total - 1, 0))] if total else ts0[mp], ts0[mp])
    return DecodedRun(off, length, ts, index, (start[mp] + cumflag[mp] - 1).astype(np.int64), lost[mp],
                      np.asarray(missed_ts, np.uint64), problems)


def read_type_ids(data: np.ndarray, off: np.ndarray, type_field: FieldFormat, big: bool) -> np.ndarray:
    """The ``common_type`` of each record (int64)."""
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


def _strings(data: np.ndarray, start: np.ndarray, length: np.ndarray,
             dictionary: Optional[dict] = None, name: str = "") -> np.ndarray:
    """Object array of str: bytes ``[start, start+length)`` cut at the first NUL, interned.

    With ``dictionary``, its ``(codes, values)`` encoding goes there too (EventBatch.dictionary).
    """
    n = start.shape[0]
    out = np.empty(n, dtype=object)
    codes = np.zeros(n, dtype=np.int32)
    values: list[str] = []
    code_of: dict[str, int] = {}  # one code per distinct text (bytes after a NUL do not count)
    if n:
        length = np.clip(length, 0, None)
        length = np.minimum(length, np.maximum(len(data) - start, 0))
    width = int(length.max()) if n else 0
    if width and sys.byteorder == "little" and len(data) >= 4 and not (start % 4).any():
        # Records are 4-byte aligned and so, in practice, are their strings: gather whole
        # 32-bit words (a few per string) instead of a byte matrix, mask bytes past the length.
        nwords = -(-width // 4)
        w32 = data[: len(data) // 4 * 4].view(np.uint32)
        idx = np.minimum((start // 4)[:, None] + np.arange(nwords), len(w32) - 1)
        valid = np.clip(length[:, None] - 4 * np.arange(nwords), 0, 4)
        masks = np.array([0, 0xFF, 0xFFFF, 0xFFFFFF, 0xFFFFFFFF], dtype=np.uint32)
        words = w32[idx] & masks[valid]
        codes[:] = _intern_rows(words, code_of, values)
    elif width:
        width8 = -(-width // 8) * 8  # whole uint64 words, so rows compare as integers
        # Wide strings are rare: gather them in slices so the byte matrix stays small.
        step = max(1, (8 << 20) // width8)
        cols = np.arange(width8, dtype=np.int64)
        for s in range(0, n, step):
            st, ln = start[s:s + step], length[s:s + step]
            idx = st[:, None] + cols[None, :]
            valid = cols[None, :] < ln[:, None]
            mat = np.where(valid, data[np.minimum(idx, len(data) - 1)], 0).astype(np.uint8)
            codes[s:s + step] = _intern_rows(np.ascontiguousarray(mat).view(np.uint64), code_of, values)
    elif n:
        values.append("")
    texts = np.empty(len(values), dtype=object)
    texts[:] = values
    out[:] = texts[codes] if n else out
    if dictionary is not None and n:
        dictionary[name] = (codes, texts)
    return out


def _intern_rows(words: np.ndarray, code_of: dict[str, int], values: list[str]) -> np.ndarray:
    """Column codes of string rows (their bytes as integer words), adding new texts to ``values``."""
    local, firsts = _group_rows(words)
    remap = np.empty(len(firsts), dtype=np.int32)  # these rows' codes -> the column's codes
    for i, first in enumerate(firsts):
        text = words[first].tobytes().split(b"\0", 1)[0].decode("utf-8", "replace")
        code = code_of.get(text)
        if code is None:
            code = code_of[text] = len(values)
            values.append(text)
        remap[i] = code
    return remap[local]


def _group_rows(words: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """(local code per row, first row of each code) for rows of integer words.

    Event strings have few distinct values: peel them off with vectorised compares (of one
    integer per row when a row fits in 8 bytes), and sort only if there turn out to be many.
    """
    n, w = words.shape
    row_bytes = w * words.itemsize
    if row_bytes <= 8:
        padded = np.zeros((n, 8), dtype=np.uint8)
        padded[:, :row_bytes] = np.ascontiguousarray(words).view(np.uint8).reshape(n, row_bytes)
        keys = padded.view(np.uint64).ravel()

        def same_as(rows: np.ndarray, first: int) -> np.ndarray:
            return keys[rows] == keys[first]
    else:
        def same_as(rows: np.ndarray, first: int) -> np.ndarray:
            return (words[rows] == words[first]).all(axis=1)
    local = np.full(n, -1, dtype=np.int64)
    firsts: list[int] = []
    todo = np.arange(n)
    while len(todo) and len(firsts) < 16:
        first = int(todo[0])
        same = same_as(todo, first)
        local[todo[same]] = len(firsts)
        firsts.append(first)
        todo = todo[~same]
    if len(todo):
        rest = np.ascontiguousarray(words[todo]).view(f"V{row_bytes}").ravel()
        _, first_idx, inverse = np.unique(rest, return_index=True, return_inverse=True)
        local[todo] = len(firsts) + inverse.ravel()
        firsts.extend(int(todo[i]) for i in first_idx)
    return local, firsts


def gather_fields(data: np.ndarray, off: np.ndarray, length: np.ndarray, fmt: EventFormat, big: bool,
                  long_size: int = 8, dictionary: Optional[dict] = None) -> dict[str, np.ndarray]:
    """Decode every field of ``fmt`` for the records at ``off`` (payload offsets, 4-byte aligned).

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
    table = _records(data, off, fmt, big, stack)
    for f in fmt.fields:
        if f.name in table:
            cols[f.name] = table[f.name]
            continue
        if stack and f.name == "caller":
            cols[f.name] = _stack(data, off, length, f, big, long_size)
            continue
        if f.data_loc or f.rel_loc:
            loc_col = table.get(_LOC + f.name)
            if loc_col is None:
                loc_col = _scalar(data, views, off, f.offset, 4, False, big)
            loc = loc_col.astype(np.int64)
            rel = (loc & 0xFFFF) + ((f.offset + f.size) if f.rel_loc else 0)
            ln = loc >> 16
            # Keep the dynamic area inside the record.
            ln = np.minimum(ln, np.maximum(length - rel, 0))
            if f.is_string:
                cols[f.name] = _strings(data, off + rel, ln, dictionary, f.name)
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


def _records(data: np.ndarray, off: np.ndarray, fmt: EventFormat, big: bool, stack: bool) -> dict[str, np.ndarray]:
    """Every fixed-size numeric field (and each __data_loc location word) of the records at ``off``.

    Hot path, open-coded: one fancy-index copy of each record's fixed part (a byte-strided 2-D
    view of the run), then each field is a strided view of those rows, typed by a structured
    dtype built from the format; a contiguous copy per field. Empty when the layout is odd.
    """
    n = off.shape[0]
    bo = ">" if big else "<"
    names: list[str] = []
    formats: list = []
    offsets: list[int] = []
    for f in fmt.fields:
        kind = "i" if f.signed else "u"
        if f.data_loc or f.rel_loc:
            names.append(_LOC + f.name)
            formats.append(bo + "u4")
            offsets.append(f.offset)
        elif stack and f.name == "caller" or f.is_string:
            continue
        elif f.array_len is None and f.size in (1, 2, 4, 8):
            names.append(f.name)
            formats.append(f"{bo}{kind}{f.size}")
            offsets.append(f.offset)
        elif f.array_len and f.elem_size in (1, 2, 4, 8) and f.elem_size * f.array_len == f.size:
            names.append(f.name)
            formats.append((f"{bo}{kind}{f.elem_size}", (f.array_len,)))
            offsets.append(f.offset)
    if not names or n == 0:
        return {}
    width = max(o + np.dtype(fm).itemsize for o, fm in zip(offsets, formats))
    if len(data) < width or int(off.max()) + width > len(data):
        return {}
    try:
        sd = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": width})
    except (ValueError, TypeError):  # overlapping or duplicate fields in a damaged format
        return {}
    rows = np.ndarray((len(data) - width + 1, width), np.uint8, buffer=data, strides=(1, 1))[off]
    recs = rows.view(sd).reshape(n)
    out = {}
    for name in names:
        col = recs[name]
        out[name] = col.astype(col.dtype.newbyteorder("="))  # contiguous, native order
    return out


def _stack(data: np.ndarray, off: np.ndarray, length: np.ndarray, f: FieldFormat, big: bool,
           long_size: int) -> np.ndarray:
    """ftrace kernel_stack ``caller``: the record holds as many addresses as fit (the format's [8]
    is nominal); trace-cmd stops at the record end or at an all-ones entry. Zero-padded, 2-D."""
    n = off.shape[0]
    depth = np.maximum((length - f.offset) // long_size, 0)
    width = int(depth.max()) if n else 0
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
