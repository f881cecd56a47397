"""Ring-buffer pages to event positions and times: page headers in numpy, the records walked natively or in numpy.

The page and event header layout is the kernel's (kernel/trace/ring_buffer.c), read the way
libtraceevent's src/kbuffer-parse.c reads it; the fields are gathered by :mod:`.fields`.
"""

from __future__ import annotations

__all__ = ["DecodedRun", "decode_pages"]

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from zlperf.formats import HeaderPage
from zlperf.readers.tracedat.native import Gathered, Slot, Walked, bad_record, runs_off, walk_pages

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
    types: Optional[np.ndarray] = None  #: uint16 event id of each event, when the walk read them
    #: the fields of each slot's events, when the walk gathered them (None for a slot it gave up)
    gathered: Optional[list[Optional[Gathered]]] = None


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
                 gap_before: bool = False, native: bool = True, type_off: int = -1,
                 slots: Optional[list[Slot]] = None) -> DecodedRun:
    """Walk every page of ``data`` (uint8, whole pages) and return its data events.

    The record walk is native when zlperf's page walker is built (:mod:`.native`), else numpy
    (:func:`_walk_lockstep`, or with ``native=False``); both give the same records and problems. Each page's
    clock runs along (kbuffer-parse.c semantics: every record's delta counts, extends and
    padding included; an absolute stamp replaces the time but keeps its top 5 bits).
    Unreadable pages or page tails become gaps (count -1), as does ``gap_before`` (pages lost
    before this run). With ``type_off`` (>= 0), the native walk also reads each event's 16-bit id there
    (``types``; None from the numpy walk: the caller reads them), and with ``slots`` the fields of those
    event ids' records (``gathered``; None from the numpy walk).
    """
    n_pages = len(data) // page_size
    words = data[: n_pages * page_size].view(">u4" if big else "<u4")
    problems: list[tuple[int, str]] = []
    empty_i = np.zeros(0, np.int64)
    if n_pages == 0:
        return DecodedRun(empty_i, np.zeros(0, np.int32), np.zeros(0, np.uint64), empty_i, empty_i, empty_i,
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

    walked = walk_pages(words, page_size, hp.data_offset, big, size, ts0, type_off, slots, data) if native else None
    if walked is None:
        walked = _walk_lockstep(words, page_size, hp.data_offset, big, size, ts0)
    off, length, ts, cnt, walk_problems, types, gathered = walked
    # At most one problem per page (a page ends at its first); page order whatever the walk.
    problems = sorted(problems + walk_problems, key=lambda pw: pw[0])
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
                      np.asarray(missed_ts, np.uint64), problems, types, gathered)


def _walk_lockstep(words: np.ndarray, page_size: int, dstart: int, big: bool, size: np.ndarray,
                   ts0: np.ndarray) -> Walked:
    """The record walk in numpy (no native walker): see :func:`decode_pages`.

    Hot loop, open-coded: all pages advance in lockstep, one record header per page per step,
    so the number of numpy passes is the largest number of records on one page.
    """
    n_pages = size.shape[0]
    nw = words.shape[0]
    problems: list[tuple[int, str]] = []
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
                    problems.append((int(ap[i]), bad_record(int(pos[i] - ap[i] * page_size), int(tl[i]))))
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
                    problems.append((int(ap[i]), runs_off(int(pos[i] - ap[i] * page_size))))
        ap, pos, end, cap_end, now, slot = ap[keep], nxt[keep], end[keep], cap_end[keep], now[keep], slot[keep]
        full = False
        step += 1

    empty_i = np.zeros(0, np.int64)
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
        off, length = empty_i, np.zeros(0, np.int32)
        ts = np.zeros(0, np.uint64)
        cnt = np.zeros(n_pages, np.int64)
    return off, length, ts, cnt, problems, None, None
