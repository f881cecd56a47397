"""Tracepoint samples of a perf.data decoded into columns: raw-data fields, call chains, strings.

A PERF_RECORD_SAMPLE holds the fields its attr's sample_type selects (include/uapi/linux/perf_event.h),
then the tracepoint's raw data laid out as its event format says. Strings go through the one interner.
"""

from __future__ import annotations

__all__ = ["DataViews", "decode_samples"]

import numpy as np

from zlperf.events import EventBatch
from zlperf.readers.perfdata.layout import PerfAttr, SampleLayout
from zlperf.readers.strings import Interner, expand

# Callchain context markers (PERF_CONTEXT_*): values >= 2**64 - 4095.
_CONTEXT_MAX = np.uint64(2**64 - 4095)
_CONTEXT_KERNEL = np.uint64(2**64 - 128)
_KERNEL_HALF = np.uint64(1 << 63)  # x86-64/arm64 kernel text lives in the upper half


class DataViews:
    """The data section as u8/u16/u32/u64 arrays, for reads at naturally aligned offsets."""

    def __init__(self, buf, offset: int, size: int):
        self.u8 = np.frombuffer(buf, dtype=np.uint8, count=size, offset=offset) if size else np.empty(0, np.uint8)
        self.by_size = {1: self.u8}
        for width, dt in ((2, "<u2"), (4, "<u4"), (8, "<u8")):
            self.by_size[width] = np.frombuffer(buf, dtype=dt, count=size // width, offset=offset) \
                if size >= width else np.empty(0, dt)

    @property
    def words(self) -> np.ndarray:
        """The section as little-endian u64 words (records are 8-byte aligned)."""
        return self.by_size[8]


def _gather(views: DataViews, start: np.ndarray, size: int, dtype: np.dtype, count: int = 1) -> np.ndarray:
    """``count`` values of ``dtype`` at byte offsets ``start`` (vectorised, any alignment; zeros past the end).

    Hot path, open-coded: samples of one event share their layout, so a field is usually at
    the same alignment in every record and is read with one gather from the typed view.
    """
    n = len(start)
    if n == 0:
        return np.empty((0, count) if count > 1 else 0, dtype=dtype)
    width = size * count
    if size in (1, 2, 4, 8) and not (start % size).any():
        idx = start // size
        if count > 1:
            idx = idx[:, None] + np.arange(count, dtype=np.int64)
        view = views.by_size[size]
        if int(idx.max()) < len(view):
            return view[idx].view(dtype)
    if size == 8 and count == 1 and not (start % 4).any():
        v32 = views.by_size[4]
        idx = start // 4
        if int(idx.max()) + 1 < len(v32):
            lo = v32[idx].astype(np.uint64)
            hi = v32[idx + 1].astype(np.uint64)
            return (lo | (hi << np.uint64(32))).view(dtype)
    u8 = views.u8
    idx = start[:, None] + np.arange(width, dtype=np.int64)
    inside = idx < len(u8)
    block = np.where(inside, u8[np.minimum(idx, max(len(u8) - 1, 0))] if len(u8) else 0, 0).astype(np.uint8)
    out = np.ascontiguousarray(block).view(dtype)
    return out.reshape(n, count) if count > 1 else out.reshape(n)


def _strings(views: DataViews, start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int32 codes, distinct texts) of the NUL-terminated text at each (start, length)."""
    n = len(start)
    interner = Interner()
    codes = np.zeros(n, np.int32)
    if n == 0:
        return codes, interner.values()
    u64 = views.by_size[8]
    length = np.clip(length, 0, None)
    lengths = np.flatnonzero(np.bincount(length))
    for ln in lengths.tolist():
        rows = np.flatnonzero(length == ln) if len(lengths) > 1 else np.arange(n)
        if ln <= 0:
            codes[rows] = interner.add("")
            continue
        s = start[rows]
        mis = s % 8
        for m in np.flatnonzero(np.bincount(mis, minlength=8)).tolist():
            sub = rows[mis == m]
            st = start[sub]
            nwords = (m + ln + 7) // 8
            widx = (st // 8)[:, None] + np.arange(nwords, dtype=np.int64)
            mask_bytes = np.zeros(nwords * 8, np.uint8)
            mask_bytes[m:m + ln] = 0xFF
            past = widx >= len(u64)  # a string at the very end of the section: zeros past it
            keys = np.where(past, np.uint64(0), u64[np.minimum(widx, max(len(u64) - 1, 0))]) \
                & mask_bytes.view("<u8")
            codes[sub] = interner.rows(keys, skip=m)
    return codes, interner.values()


#: Samples whose chains are taken apart at once: the work arrays are a few per frame (8 bytes each),
#: so memory follows this, not the chunk (tens of frames a sample with -g).
_CHAIN_SAMPLES = 1 << 15


def _kernel_frames(words: np.ndarray, cc_at: np.ndarray, nr: np.ndarray) -> np.ndarray:
    """Object array: per sample, np.uint64 kernel frames innermost first, PERF_CONTEXT_* markers removed."""
    if len(cc_at) <= _CHAIN_SAMPLES:
        return _kernel_frames_of(words, cc_at, nr)
    out = np.empty(len(cc_at), dtype=object)
    for lo in range(0, len(cc_at), _CHAIN_SAMPLES):
        hi = lo + _CHAIN_SAMPLES
        out[lo:hi] = _kernel_frames_of(words, cc_at[lo:hi], nr[lo:hi])
    return out


def _kernel_frames_of(words: np.ndarray, cc_at: np.ndarray, nr: np.ndarray) -> np.ndarray:
    n = len(cc_at)
    out = np.empty(n, dtype=object)
    total = int(nr.sum())
    if total == 0:
        for i in range(n):
            out[i] = np.empty(0, np.uint64)
        return out
    seg = np.repeat(np.arange(n), nr)
    starts = np.cumsum(nr) - nr
    within = np.arange(total) - np.repeat(starts, nr)
    flat = words[np.repeat(cc_at + 1, nr) + within]
    is_marker = flat >= _CONTEXT_MAX
    # The context each frame belongs to: the last marker before it in its own chain.
    marker_pos = np.where(is_marker, np.arange(total), -1)
    last = np.maximum.accumulate(marker_pos)
    seg_first = np.repeat(starts, nr)
    in_seg = last >= seg_first
    ctx = np.where(in_seg, flat[np.maximum(last, 0)], np.uint64(0))
    keep = ~is_marker & ((ctx == _CONTEXT_KERNEL) | (~in_seg & (flat >= _KERNEL_HALF)))
    kept = flat[keep]
    cnt = np.bincount(seg[keep], minlength=n)
    shared = _shared_chains(kept, cnt)
    if shared is not None:
        return shared
    begin = 0
    for i, end in enumerate(np.cumsum(cnt).tolist()):  # one view per sample (np.split costs ~10x more per piece)
        out[i] = kept[begin:end]
        begin = end
    return out


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constants (golden ratio, splitmix64): frame hashing
_POS = np.uint64(0xBF58476D1CE4E5B9)


def _shared_chains(kept: np.ndarray, cnt: np.ndarray) -> "np.ndarray | None":
    """Per sample, one array per distinct chain (samples with the same frames share it): the Python
    step runs once per distinct chain, not per sample. Chains are grouped by a hash of their frames
    and positions, then every sample is compared frame by frame with its group's first; None (the
    caller makes one array per sample) if a hash ever collided."""
    n = len(cnt)
    ends = np.cumsum(cnt)
    begins = ends - cnt
    within = np.arange(len(kept), dtype=np.int64) - np.repeat(begins, cnt)
    with np.errstate(over="ignore"):
        mixed = (kept ^ (within.astype(np.uint64) * _POS)) * _MIX  # modulo 2^64
        h = np.zeros(n, dtype=np.uint64)
        nonempty = cnt > 0
        if len(kept):
            h[nonempty] = np.add.reduceat(mixed, begins[nonempty])
        key = h ^ (cnt.astype(np.uint64) * _POS * _MIX)
    _uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    rep = first[inverse]  # each sample's group representative
    if not (cnt[rep] == cnt).all() or not (kept[np.repeat(begins[rep], cnt) + within] == kept).all():
        return None
    chains = np.empty(len(first), dtype=object)
    for j, (b, e) in enumerate(zip(begins[first].tolist(), ends[first].tolist())):
        chains[j] = kept[b:e]
    return chains[inverse]


def decode_samples(views: DataViews, attr: PerfAttr, pos: np.ndarray, ts: np.ndarray, cpu: np.ndarray,
                   seq: np.ndarray) -> EventBatch:
    """One event's columns for the sample records at word positions ``pos`` (all of ``attr``)."""
    words = views.words
    lay = SampleLayout(attr)
    n = len(pos)
    last_word = len(words) - 1
    # Counts inside a record (group values, call-chain depth) are kept inside that record.
    rec_end = pos + (words[pos] >> np.uint64(48)).astype(np.int64) // 8 if n else pos
    w = pos + lay.after_fixed
    if lay.read_words:
        if lay.read_group:
            nr = np.minimum(words[np.minimum(w, last_word)], np.uint64(1 << 16)).astype(np.int64)
            w = np.minimum(w + 1 + lay.read_extra + nr * lay.read_per_value, rec_end)
        else:
            w = w + lay.read_words
    fields: dict[str, np.ndarray] = {}
    dictionary: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # strings as decoded: codes + values
    if lay.callchain:
        room = np.maximum(rec_end - w - 1, 0)
        nr = np.minimum(words[np.minimum(w, last_word)], room.astype(np.uint64)).astype(np.int64)
        fields["common_callchain"] = _kernel_frames(words, w, nr)
        w = w + 1 + nr
    fmt = attr.format
    assert fmt is not None
    raw_start = w * 8 + 4  # after the u32 raw size
    fixed = not lay.callchain and not lay.read_group and n > 0
    rel = int(raw_start[0] - pos[0] * 8) if fixed else 0
    columns: dict[int, np.ndarray] = {}
    if fixed:
        # The words every fixed field touches, gathered row by row in one go: a record's
        # words sit together, so this reads each record's cache lines once.
        needed = sorted({j for f in fmt.fields if not f.is_string or f.data_loc or f.rel_loc
                         for j in range((rel + f.offset) // 8,
                                        (rel + f.offset + (4 if f.data_loc or f.rel_loc else f.size) - 1) // 8 + 1)})
        if needed:
            grid = words[np.minimum(pos[:, None] + np.array(needed, dtype=np.int64), last_word)]
            for i, j in enumerate(needed):
                columns[j] = grid[:, i]

    def word(j: int) -> np.ndarray:
        """Word j of every record (gathered once): records are read a word column at a time."""
        col = columns.get(j)
        if col is None:
            col = columns[j] = words[np.minimum(pos + j, last_word)]
        return col

    def span(offset: int, nbytes: int) -> np.ndarray:
        """(n, nbytes) uint8: the bytes at raw offset ``offset`` of every record."""
        if nbytes <= 0:
            return np.zeros((n, 0), np.uint8)
        b = rel + offset
        j0, j1 = b // 8, (b + nbytes - 1) // 8
        stacked = np.stack([word(j) for j in range(j0, j1 + 1)], axis=1)
        return stacked.view(np.uint8)[:, b % 8:b % 8 + nbytes]

    def read(offset: int, size: int, dtype: np.dtype, count: int = 1) -> np.ndarray:
        """Hot path, open-coded: every record of this event has its raw data at the same place
        (no call chain), so a field is a shift of one or two word columns."""
        if not fixed:
            return _gather(views, raw_start + offset, size, dtype, count)
        if count == 1 and size in (1, 2, 4, 8):
            b = rel + offset
            shift = np.uint64((b % 8) * 8)
            v = word(b // 8) >> shift if shift else word(b // 8)
            if (b % 8) + size > 8:
                v = v | (word(b // 8 + 1) << np.uint64(64 - (b % 8) * 8))
            return v.astype(f"<u{size}").view(dtype)
        col = np.ascontiguousarray(span(offset, size * count)).view(dtype)
        return col.reshape(n, count) if count > 1 else col.reshape(n)

    for f in fmt.fields:
        if f.data_loc or f.rel_loc:
            loc = read(f.offset, 4, np.dtype("<u4")).astype(np.int64)
            off, length = loc & 0xFFFF, loc >> 16
            if f.rel_loc:
                off = off + f.offset + f.size
            if f.is_string and fixed and off.min() == off.max() and length.min() == length.max():
                interner = Interner()
                codes = interner.byte_rows(np.ascontiguousarray(span(int(off[0]), int(length[0]))))
            elif f.is_string:
                interner = None
                codes, values = _strings(views, raw_start + off, length)
            else:
                blobs = np.empty(n, dtype=object)
                raw = views.u8
                start = raw_start + off
                for i in range(n):
                    blobs[i] = bytes(raw[start[i]:start[i] + length[i]])
                fields[f.name] = blobs
                continue
            if interner is not None:
                values = interner.values()
            dictionary[f.name] = (codes, values)
            fields[f.name] = expand(codes, values)
        elif f.is_string:
            if fixed:
                interner = Interner()
                codes = interner.byte_rows(np.ascontiguousarray(span(f.offset, f.size)))
                values = interner.values()
            else:
                codes, values = _strings(views, raw_start + f.offset, np.full(n, f.size, np.int64))
            dictionary[f.name] = (codes, values)
            fields[f.name] = expand(codes, values)
        else:
            dt = f.dtype(True)
            count = f.array_len or 1
            if dt.kind == "V":
                fields[f.name] = read(f.offset, f.size, np.dtype(f"V{f.size}"))
            else:
                fields[f.name] = read(f.offset, dt.itemsize, dt, count if f.array_len else 1)
    if "common_pid" in fields:
        pid = fields["common_pid"].astype(np.int32)
    elif lay.tid is not None:
        pid = (words[np.minimum(pos + lay.tid, last_word)] >> np.uint64(32)).astype(np.int32)
    else:
        pid = np.full(n, -1, np.int32)
    return EventBatch(name=attr.name, ts=ts, cpu=cpu.astype(np.int32), pid=pid, seq=seq.astype(np.int64),
                      fields=fields, dictionary=dictionary)
