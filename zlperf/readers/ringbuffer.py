"""Ring-buffer pages to numpy columns: event headers walked for all pages at once, fields gathered.

The page and event header layout is the kernel's (kernel/trace/ring_buffer.c), read the way
libtraceevent's kbuffer-parse.c reads it; field offsets come from the file's event formats.
"""

from __future__ import annotations

__all__ = ["DecodedRun", "decode_pages", "gather_fields", "read_type_ids"]

from dataclasses import dataclass, field
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
    """The data events of a run of pages, in ring-buffer order."""

    off: np.ndarray  #: int64, payload offset in the run's bytes
    length: np.ndarray  #: int64, payload length
    ts: np.ndarray  #: uint64, trace-clock timestamp
    page: np.ndarray  #: int64, page index in the run
    missed_before: np.ndarray  #: int64, event index the gap precedes (sorted)
    missed_count: np.ndarray  #: int64, events lost (-1 unknown)
    missed_ts: np.ndarray  #: uint64
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


def decode_pages(data: np.ndarray, page_size: int, hp: HeaderPage, big: bool = False) -> DecodedRun:
    """Walk every page of ``data`` (uint8, whole pages) and return its data events.

    Hot loop, open-coded: all pages advance in lockstep, one event header per page per step,
    so the number of numpy passes is the largest number of records on one page.
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
    ap = np.flatnonzero(size > 0)
    pos = ap * page_size + dstart
    end = pos + size[ap]
    cap_end = ap * page_size + page_size
    acc = np.zeros(ap.size, np.uint64)  # time deltas since the page's previous data event
    nev = np.zeros(ap.size, np.int64)
    o_page, o_k, o_off, o_len, o_delta = [], [], [], [], []
    abs_pages: list[np.ndarray] = []
    sh5, m27 = np.uint32(5), np.uint32(COMMIT_MASK)
    while ap.size:
        wi = pos >> 2
        hdr = words[wi]
        a0 = words[np.minimum(wi + 1, nw - 1)].astype(np.int64)
        if big:
            tl = (hdr >> np.uint32(27)).astype(np.int64)
            d = (hdr & m27).astype(np.uint64)
        else:
            tl = (hdr & np.uint32(31)).astype(np.int64)
            d = (hdr >> sh5).astype(np.uint64)
        is_data = tl <= 28
        is_ext = tl >= TYPE_TIME_EXTEND
        hlen = np.where(tl == 0, 8, 4)
        plen = np.where(tl == 0, (a0 - 4 + 3) & ~3, tl * 4)
        nxt = np.where(is_data, pos + hlen + plen, pos + 8)
        pad = tl == TYPE_PADDING
        if pad.any():
            # Padding: delta 0 = rest of the page is empty; else a discarded event of a0 bytes.
            nxt = np.where(pad, np.where(d == 0, end, pos + 4 + a0), nxt)
        if is_ext.any():
            d = np.where(is_ext, (a0.astype(np.uint64) << np.uint64(TS_SHIFT)) + d, d)
            ts_abs = tl == TYPE_TIME_STAMP
            if ts_abs.any():
                abs_pages.append(ap[ts_abs])
        acc += d
        broken = (nxt > cap_end) | ((nxt & 3) != 0) | (is_data & (plen < 0))
        if broken.any():
            for i in np.flatnonzero(broken).tolist():
                problems.append((int(ap[i]), f"event header at page offset {int(pos[i] - ap[i] * page_size)} "
                                 f"(type {int(tl[i])}) runs off the page"))
            is_data = is_data & ~broken
        if is_data.all():
            sel = None
            o_page.append(ap)
            o_k.append(nev.copy())
            o_off.append(pos + hlen)
            o_len.append(plen)
            o_delta.append(acc.copy())
            acc[:] = 0
            nev += 1
        else:
            sel = np.flatnonzero(is_data)
            if sel.size:
                o_page.append(ap[sel])
                o_k.append(nev[sel])
                o_off.append(pos[sel] + hlen[sel])
                o_len.append(plen[sel])
                o_delta.append(acc[sel])
                acc[sel] = 0
                nev[sel] += 1
        keep = (nxt < end) & ~broken
        if keep.all():
            pos = nxt
            continue
        ap, pos, end, cap_end, acc, nev = ap[keep], nxt[keep], end[keep], cap_end[keep], acc[keep], nev[keep]

    if o_page:
        pg = np.concatenate(o_page)
        k = np.concatenate(o_k)
        cnt = np.bincount(pg, minlength=n_pages)
        start = np.cumsum(cnt) - cnt
        dest = start[pg] + k
        total = int(cnt.sum())
        off = np.empty(total, np.int64)
        off[dest] = np.concatenate(o_off)
        length = np.empty(total, np.int64)
        length[dest] = np.concatenate(o_len)
        delta = np.empty(total, np.uint64)
        delta[dest] = np.concatenate(o_delta)
        page = np.repeat(np.arange(n_pages, dtype=np.int64), cnt)
        # Per-page running sum of deltas (uint64 wrap-around is harmless: differences cancel).
        csum = np.cumsum(delta)
        before = np.concatenate(([np.uint64(0)], csum))[start]
        ts = ts0[page] + csum - before[page]
    else:
        cnt = np.zeros(n_pages, np.int64)
        start = cnt.copy()
        off = length = page = empty_i
        ts = np.zeros(0, np.uint64)
    if abs_pages:
        for p in np.unique(np.concatenate(abs_pages)).tolist():
            _replay_page(words, p, page_size, dstart, int(size[p]), int(ts0[p]), big,
                         ts[start[p]:start[p] + cnt[p]])
    mp = np.flatnonzero(lost != 0)
    first_ts = np.where(cnt[mp] > 0, ts[np.minimum(start[mp], max(len(ts) - 1, 0))] if len(ts) else ts0[mp],
                        ts0[mp]) if mp.size else np.zeros(0, np.uint64)
    return DecodedRun(off, length, ts, page, start[mp].astype(np.int64), lost[mp],
                      np.asarray(first_ts, np.uint64), problems)


def _replay_page(words: np.ndarray, p: int, page_size: int, dstart: int, size: int, ts: int, big: bool,
                 out: np.ndarray) -> None:
    """Recompute one page's timestamps record by record (pages holding absolute time stamps)."""
    pos = p * page_size + dstart
    end = pos + size
    i = 0
    msb = int(TS_MSB)
    while pos < end and i < len(out):
        hdr = int(words[pos >> 2])
        a0 = int(words[(pos >> 2) + 1]) if (pos >> 2) + 1 < len(words) else 0
        tl, d = (hdr >> 27, hdr & COMMIT_MASK) if big else (hdr & 31, hdr >> 5)
        if tl == TYPE_TIME_STAMP:
            ts = ((a0 << TS_SHIFT) + d) | (ts & msb)
            pos += 8
            continue
        if tl == TYPE_TIME_EXTEND:
            ts += (a0 << TS_SHIFT) + d
            pos += 8
            continue
        ts += d
        if tl == TYPE_PADDING:
            if d == 0:
                break
            pos += 4 + a0
            continue
        out[i] = ts & 0xFFFFFFFFFFFFFFFF
        i += 1
        pos += 8 + (((a0 - 4) + 3) & ~3) if tl == 0 else 4 + tl * 4


def read_type_ids(data: np.ndarray, off: np.ndarray, type_field: FieldFormat, big: bool) -> np.ndarray:
    """The ``common_type`` of each record (int64)."""
    return _scalar(data, off, type_field.offset, type_field.size, big).astype(np.int64)


def _scalar(data: np.ndarray, off: np.ndarray, at: int, size: int, big: bool) -> np.ndarray:
    """Unsigned ``size``-byte values at ``off + at`` (uint64), payloads being 4-byte aligned."""
    words = data[: len(data) // 4 * 4].view(">u4" if big else "<u4")
    nw = words.shape[0]
    pos = off + at
    if not big and size in (1, 2, 4, 8) and (at % 4) + size <= 4:
        w = words[np.minimum(pos >> 2, nw - 1)]
        if size == 4:
            return w.astype(np.uint64)
        return ((w >> np.uint32((at % 4) * 8)) & np.uint32((1 << (8 * size)) - 1)).astype(np.uint64)
    if not big and size == 8 and at % 4 == 0:
        wi = np.minimum(pos >> 2, nw - 2)
        return words[wi].astype(np.uint64) | (words[wi + 1].astype(np.uint64) << np.uint64(32))
    # General case: assemble byte by byte.
    pos = np.minimum(pos, len(data) - size)
    out = np.zeros(off.shape[0], np.uint64)
    for j in range(size):
        byte = data[pos + j].astype(np.uint64)
        shift = np.uint64(8 * (size - 1 - j) if big else 8 * j)
        out |= byte << shift
    return out


def _typed(vals: np.ndarray, size: int, signed: bool) -> np.ndarray:
    if size not in (1, 2, 4, 8):
        return vals
    u = vals.astype(np.dtype(f"u{size}"))
    return u.view(np.dtype(f"i{size}")) if signed else u


def _strings(data: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Object array of str: bytes ``[start, start+length)`` cut at the first NUL, interned."""
    n = start.shape[0]
    out = np.empty(n, dtype=object)
    if n == 0:
        return out
    length = np.clip(length, 0, None)
    length = np.minimum(length, np.maximum(len(data) - start, 0))
    width = int(length.max()) if n else 0
    if width == 0:
        out[:] = ""
        return out
    # Wide strings are rare: gather them in slices so the byte matrix stays small.
    step = max(1, (8 << 20) // width)
    for s in range(0, n, step):
        st, ln = start[s:s + step], length[s:s + step]
        cols = np.arange(width, dtype=np.int64)
        idx = st[:, None] + cols[None, :]
        valid = cols[None, :] < ln[:, None]
        mat = np.where(valid, data[np.minimum(idx, len(data) - 1)], 0).astype(np.uint8)
        keys = np.ascontiguousarray(mat).view(f"S{width}").ravel()
        uniq, inv = np.unique(keys, return_inverse=True)
        texts = np.array([u.split(b"\0", 1)[0].decode("utf-8", "replace") for u in uniq.tolist()], dtype=object)
        out[s:s + step] = texts[inv.ravel()]
    return out


def gather_fields(data: np.ndarray, off: np.ndarray, length: np.ndarray, fmt: EventFormat, big: bool,
                  long_size: int = 8) -> dict[str, np.ndarray]:
    """Decode every field of ``fmt`` for the records at ``off`` (payload offsets, 4-byte aligned)."""
    cols: dict[str, np.ndarray] = {}
    n = off.shape[0]
    stack = fmt.system == "ftrace" and fmt.name == "kernel_stack"
    for f in fmt.fields:
        if stack and f.name == "caller":
            cols[f.name] = _stack(data, off, length, f, big, long_size)
            continue
        if f.data_loc or f.rel_loc:
            loc = _scalar(data, off, f.offset, 4, big).astype(np.int64)
            rel = (loc & 0xFFFF) + ((f.offset + f.size) if f.rel_loc else 0)
            ln = loc >> 16
            # Keep the dynamic area inside the record.
            ln = np.minimum(ln, np.maximum(length - rel, 0))
            if f.is_string:
                cols[f.name] = _strings(data, off + rel, ln)
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
                cols[f.name] = _strings(data, off + f.offset, np.full(n, f.size, np.int64))
                continue
            count = f.array_len or 0
            es = f.elem_size
            if count == 0 or es not in (1, 2, 4, 8):
                cols[f.name] = np.zeros((n, 0), np.uint8)
                continue
            mat = np.empty((n, count), dtype=np.dtype(("i" if f.signed else "u") + str(es)))
            for j in range(count):
                mat[:, j] = _typed(_scalar(data, off, f.offset + j * es, es, big), es, f.signed)
            cols[f.name] = mat
            continue
        if f.size not in (1, 2, 4, 8):
            cols[f.name] = _strings(data, off + f.offset, np.full(n, f.size, np.int64))  # odd size: raw bytes
            continue
        cols[f.name] = _typed(_scalar(data, off, f.offset, f.size, big), f.size, f.signed)
    return cols


def _stack(data: np.ndarray, off: np.ndarray, length: np.ndarray, f: FieldFormat, big: bool,
           long_size: int) -> np.ndarray:
    """ftrace kernel_stack ``caller``: the record holds as many addresses as fit (the format's [8]
    is nominal); trace-cmd stops at the record end or at an all-ones entry. Zero-padded, 2-D."""
    n = off.shape[0]
    depth = np.maximum((length - f.offset) // long_size, 0)
    width = int(depth.max()) if n else 0
    mat = np.zeros((n, width), np.uint64)
    alive = np.ones(n, bool)
    ones = np.uint64(0xFFFFFFFFFFFFFFFF) if long_size == 8 else np.uint64(0xFFFFFFFF)
    for j in range(width):
        v = _scalar(data, off, f.offset + j * long_size, long_size, big)
        alive &= (j < depth) & (v != ones)
        mat[:, j] = np.where(alive, v, 0)
    return mat
