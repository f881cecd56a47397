"""Hostile trace files through the real CLI: every damaged file ends in one line, or a partial report with a
warning; no hang, no native crash, no traceback, peak RSS under 512 MB.

Each case is made by a generator from a real fixture (tests/data, zlperf/data): cut at many offsets,
header fields set to huge, zero or negative values, counts, page sizes, section and compressed sizes,
decompression bombs (zeros, compressed), random bytes in pages. Offsets come from a small layout walker
written here from the format specs (trace-cmd's trace-cmd.dat.v6.5/v7.5 docs, perf.data-file-format.txt),
sharing no code with zlperf. Files are generated once per session; the runs go two at a time.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import pytest
import zstandard

from conftest import FULL_PERF_DATA, FULL_PERF_KALLSYMS, FULL_V6_DAT, MINIMAL_DAT
from hostile import Outcome, assert_handled, run_zlperf

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1


# ----- an independent layout walker ------------------------------------------------------------
def _u16(b, p): return struct.unpack_from("<H", b, p)[0]  # noqa: E704
def _u32(b, p): return struct.unpack_from("<I", b, p)[0]  # noqa: E704
def _u64(b, p): return struct.unpack_from("<Q", b, p)[0]  # noqa: E704


def _cstr_end(b: bytes, p: int) -> int:
    return b.index(b"\0", p) + 1


def v6_layout(raw: bytes) -> dict:
    """Offsets of a trace.dat v6's fields (trace-cmd.dat.v6.5.txt), for patching."""
    o: dict = {"formats": [], "options": []}
    p = _cstr_end(raw, 10)
    o["endian"], o["long_size"], o["page_size"] = p, p + 1, p + 2
    p += 6 + 12
    o["header_page_size"] = p
    p += 8 + _u64(raw, p) + 13
    o["header_event_size"] = p
    p += 8 + _u64(raw, p)
    o["ftrace_count"] = p
    n = _u32(raw, p)
    p += 4
    for _ in range(n):
        o["formats"].append(("ftrace", p, _u64(raw, p)))
        p += 8 + _u64(raw, p)
    o["system_count"] = p
    n = _u32(raw, p)
    p += 4
    for _ in range(n):
        end = _cstr_end(raw, p)
        system = raw[p:end - 1].decode()
        o.setdefault("event_counts", []).append(end)
        p = end + 4
        for _ in range(_u32(raw, end)):
            o["formats"].append((system, p, _u64(raw, p)))
            p += 8 + _u64(raw, p)
    o["kallsyms_size"] = p
    p += 4 + _u32(raw, p)
    o["printk_size"] = p
    p += 4 + _u32(raw, p)
    o["cmdlines_size"] = p
    p += 8 + _u64(raw, p)
    o["cpus"] = p
    ncpu = _u32(raw, p)
    p += 4
    if raw[p:p + 7] == b"options":
        p += 10
        while _u16(raw, p):  # (id, offset of its u32 size, size)
            o["options"].append((_u16(raw, p), p + 2, _u32(raw, p + 2)))
            p += 6 + _u32(raw, p + 2)
        p += 2
    assert raw[p:p + 9] == b"flyrecord"
    o["cpu_table"] = p + 10
    o["cpu_data"] = [(_u64(raw, p + 10 + 16 * i), _u64(raw, p + 18 + 16 * i)) for i in range(ncpu)]
    return o


def v7_layout(raw: bytes) -> dict:
    """Offsets of a trace.dat v7's sections and options (trace-cmd.dat.v7.5.txt), for patching."""
    o: dict = {"options": [], "sections": {}}
    p = _cstr_end(raw, 10)
    o["page_size"] = p + 2
    p += 6
    o["compression"] = p
    p = _cstr_end(raw, _cstr_end(raw, p))
    o["first_options"] = p
    off = _u64(raw, p)
    o["options_sections"] = []
    while off:
        o["options_sections"].append(off)
        assert _u16(raw, off + 2) & 1 == 0, "options sections are stored uncompressed"
        q, end, nxt = off + 16, off + 16 + _u64(raw, off + 8), 0
        while q < end:
            oid, size = _u16(raw, q), _u32(raw, q + 2)
            o["options"].append((oid, q + 6, size))
            if oid == 0:
                nxt = _u64(raw, q + 6)
                break
            if 16 <= oid <= 21:
                o["sections"][oid] = _u64(raw, q + 6)
            q += 6 + size
        off = nxt
    for oid, at, size in o["options"]:
        if oid == 3:  # BUFFER: u64 offset, name, clock, u32 page size, u32 cpus, cpus x (u32, u64, u64)
            q = _cstr_end(raw, _cstr_end(raw, at + 8))
            o["buffer"] = at
            o["buffer_page_size"], o["buffer_ncpu"] = q, q + 4
            n = _u32(raw, q + 4)
            o["buffer_cpus"] = [(q + 8 + 20 * i, _u32(raw, q + 8 + 20 * i), _u64(raw, q + 12 + 20 * i),
                                 _u64(raw, q + 20 + 20 * i)) for i in range(n)]
        elif oid == 8:
            o["cpucount"] = at
    return o


def _patch(raw: bytes, at: int, fmt: str, value) -> bytes:
    b = bytearray(raw)
    struct.pack_into(fmt, b, at, value)
    return bytes(b)


def _v7_section(raw: bytes, at: int) -> tuple[int, int, bytes]:
    """(id, flags, payload inflated) of the v7 section at ``at``."""
    sid, flags, _d, size = struct.unpack_from("<HHIQ", raw, at)
    body = raw[at + 16:at + 16 + size]
    if flags & 1:
        csize, usize = struct.unpack_from("<II", body)
        body = zstandard.ZstdDecompressor().decompress(body[8:8 + csize], max_output_size=usize)
    return sid, flags, body


def _v7_replace_section(raw: bytes, oid: int, payload: bytes, *, usize: int | None = None,
                        compressed: bytes | None = None) -> bytes:
    """The file with section ``oid`` replaced by a new one appended at the end (its option repointed).

    ``compressed``/``usize`` give the stored frame and the stated uncompressed size (for bombs)."""
    lay = v7_layout(raw)
    old = lay["sections"][oid]
    sid, flags, _ = _v7_section(raw, old)
    if compressed is None:
        compressed = zstandard.ZstdCompressor().compress(payload)
    body = struct.pack("<II", len(compressed), len(payload) if usize is None else usize) + compressed
    new_at = len(raw)
    section = struct.pack("<HHIQ", sid, 1, 0, len(body)) + body
    out = bytearray(raw + section)
    opt = next(at for o, at, _ in lay["options"] if o == oid)
    struct.pack_into("<Q", out, opt, new_at)
    return bytes(out)


def _edit_format(text: bytes, field: bytes, old: bytes, new: bytes) -> bytes:
    """``text`` with ``old`` replaced by ``new`` on the line of ``field``."""
    lines = text.split(b"\n")
    for i, line in enumerate(lines):
        if field in line and old in line:
            lines[i] = line.replace(old, new, 1)
            return b"\n".join(lines)
    raise AssertionError(f"no {field!r} line with {old!r}")


Cases = dict[str, Callable[[], bytes]]


def _format_at(lay: dict, raw: bytes, system: str, name: bytes) -> tuple[int, int]:
    """(offset of the text, its size) of event ``name``'s format in a v6 layout."""
    for sys_, at, size in lay["formats"]:
        if sys_ == system and b"name: " + name + b"\n" in raw[at + 8:at + 8 + size]:
            return at + 8, size
    raise AssertionError(name)


# ----- trace.dat v6 cases ------------------------------------------------------------------------
def first_pages(raw: bytes, pages: int, page_size: int = 4096) -> bytes:
    """A v6 file keeping only the first ``pages`` ring-buffer pages of each CPU (a valid, smaller file:
    pages stand alone), the CPU table rewritten to the new offsets and sizes."""
    lay = v6_layout(raw)
    start = min(off for off, size in lay["cpu_data"] if size)
    out = bytearray(raw[:start])
    for cpu, (off, size) in enumerate(lay["cpu_data"]):
        keep = min(size, pages * page_size)
        struct.pack_into("<QQ", out, lay["cpu_table"] + 16 * cpu, len(out), keep)
        out += raw[off:off + keep]
    return bytes(out)


def v6_cases(raw: bytes) -> Cases:
    """Damaged copies of a v6 file, each made on demand."""
    raw = first_pages(raw, 6)
    lay = v6_layout(raw)
    cases: Cases = {}
    cpu0, cpu_last = lay["cpu_data"][0], lay["cpu_data"][-1]
    cuts = {"magic": 5, "version": 11, "page_size": lay["page_size"] + 2, "header_page": lay["header_page_size"] + 20,
            "formats": lay["formats"][len(lay["formats"]) // 2][1] + 30, "kallsyms": lay["kallsyms_size"] + 1000,
            "cmdlines": lay["cmdlines_size"] + 9, "cpus": lay["cpus"] + 2, "cpu_table": lay["cpu_table"] + 40,
            "first_page": cpu0[0] + 100, "mid_data": cpu0[0] + cpu0[1] + 3000, "last_cpu": cpu_last[0] + cpu_last[1] // 2,
            "last_byte": len(raw) - 1}
    for name, at in cuts.items():
        cases[f"cut-{name}"] = lambda at=at: raw[:at]

    def patch(name: str, at: int, fmt: str, value: int) -> None:
        cases[name] = lambda: _patch(raw, at, fmt, value)

    for value in (0, 1, 4095, U32):
        patch(f"page_size={value}", lay["page_size"], "<I", value)
    patch("long_size=3", lay["long_size"], "<B", 3)
    patch("endian=2", lay["endian"], "<B", 2)
    patch("header_page_size=2^64-1", lay["header_page_size"], "<Q", U64)
    patch("ftrace_count=2^32-1", lay["ftrace_count"], "<I", U32)
    patch("system_count=2^31", lay["system_count"], "<I", 1 << 31)
    patch("event_count=2^31", lay["event_counts"][0], "<I", 1 << 31)
    patch("format_size=2^64-16", lay["formats"][3][1], "<Q", U64 - 15)
    patch("kallsyms_size=2^32-1", lay["kallsyms_size"], "<I", U32)
    patch("cmdlines_size=2^64-1", lay["cmdlines_size"], "<Q", U64)
    for value in (0, 9, 65536, 1 << 31, U32):
        patch(f"cpus={value}", lay["cpus"], "<I", value)
    table = lay["cpu_table"]
    patch("cpu0_offset=2^64-1", table, "<Q", U64)
    patch("cpu0_size=2^64-1", table + 8, "<Q", U64)
    patch("cpu0_offset=0", table, "<Q", 0)
    patch("cpu3_size=whole_file", table + 16 * 3 + 8, "<Q", len(raw))
    assert lay["options"], "full.v6.dat has an options block"
    patch("option_size=2^32-1", lay["options"][0][1], "<I", U32)

    def random_bytes(seed: int) -> bytes:
        rng = random.Random(seed)
        b = bytearray(raw)
        start, size = cpu0[0], sum(s for _, s in lay["cpu_data"])
        for _ in range(2000):
            b[start + rng.randrange(size)] = rng.randrange(256)
        return bytes(b)

    def random_pages() -> bytes:  # whole pages of random bytes: commit words, lengths, types all garbage
        rng = random.Random(3)
        b = bytearray(raw)
        for page in range(cpu0[0], cpu0[0] + cpu0[1], 4096 * 3):
            b[page:page + 4096] = rng.randbytes(4096)
        return bytes(b)

    for seed in range(3):
        cases[f"random_page_bytes-{seed}"] = lambda seed=seed: random_bytes(seed)
    cases["random_pages"] = random_pages
    # Format damage, same length so every offset stays: a field of size 9, a field far past any record.
    at, size = _format_at(lay, raw, "kmem", b"mm_zone_locked")
    text = raw[at:at + size]
    cases["field_size=9"] = lambda: raw[:at] + _edit_format(text, b"node_id", b"size:4;", b"size:9;") + raw[at + size:]
    cases["field_offset=huge"] = lambda: raw[:at] + _edit_format(
        text, b"node_id", b"offset:8;\tsize:4;\tsigned:1;", b"offset:999999999;size:4;   ") + raw[at + size:]
    return cases


# ----- trace.dat v7 cases ------------------------------------------------------------------------
def _bomb(size: int, content_size: bool) -> bytes:
    """A zstd frame of ``size`` zero bytes (compressed in 1 MiB steps; a few KiB whatever the size)."""
    cobj = zstandard.ZstdCompressor(level=1, write_content_size=content_size).compressobj(
        size=size if content_size else -1)
    zeros = b"\0" * (1 << 20)
    return b"".join(cobj.compress(zeros) for _ in range(size >> 20)) + cobj.flush()


def v7_cases(raw: bytes) -> Cases:
    """Damaged copies of a v7 (zstd) file, each made on demand."""
    lay = v7_layout(raw)
    cases: Cases = {}
    first = _u64(raw, lay["first_options"])
    fly = lay["buffer_cpus"][0][2]
    for name, at in {"10": 10, "20": 20, "36": 36, "header_end": lay["first_options"] + 8,
                     "options": first + 40, "kallsyms": lay["sections"][19] + 5000,
                     "flyrecord": fly + 100, "last_byte": len(raw) - 1}.items():
        cases[f"cut-{name}"] = lambda at=at: raw[:at]

    def patch(name: str, at: int, fmt: str, value: int) -> None:
        cases[name] = lambda: _patch(raw, at, fmt, value)

    patch("page_size=0", lay["page_size"], "<I", 0)
    cases["compression=lzma"] = lambda: raw[:lay["compression"]] + b"lzma" + raw[lay["compression"] + 4:]
    patch("first_options=2^64-1", lay["first_options"], "<Q", U64)
    patch("options_loop", next(at for o, at, _ in lay["options"] if o == 0), "<Q", first)
    patch("options_size=2^64-16", first + 8, "<Q", U64 - 15)
    for oid, name in ((16, "header_info"), (19, "kallsyms"), (18, "event_formats")):
        patch(f"{name}_size=2^64-16", lay["sections"][oid] + 8, "<Q", U64 - 15)
    kall = lay["sections"][19]
    assert _u16(raw, kall + 2) & 1, "the kallsyms section is compressed"
    patch("kallsyms_csize=2^32-1", kall + 16, "<I", U32)
    patch("kallsyms_usize=2^32-1", kall + 20, "<I", U32)
    cases["kallsyms_bomb_1GiB_stated"] = lambda: _v7_replace_section(raw, 19, b"", usize=1 << 30,
                                                                     compressed=_bomb(1 << 30, True))
    cases["kallsyms_bomb_4KiB_stated"] = lambda: _v7_replace_section(raw, 19, b"", usize=4096,
                                                                     compressed=_bomb(1 << 30, True))
    cases["kallsyms_bomb_no_content_size"] = lambda: _v7_replace_section(raw, 19, b"", usize=60 << 20,
                                                                         compressed=_bomb(1 << 30, False))
    patch("cpucount=2^31", lay["cpucount"], "<I", 1 << 31)
    patch("buffer_page_size=0", lay["buffer_page_size"], "<I", 0)
    patch("buffer_ncpu=2^31", lay["buffer_ncpu"], "<I", 1 << 31)
    at0 = lay["buffer_cpus"][0][0]
    patch("buffer_cpu_id=2^31", at0, "<I", 1 << 31)
    patch("buffer_cpu_offset=2^64-1", at0 + 4, "<Q", U64)
    patch("buffer_cpu_size=2^64-1", at0 + 12, "<Q", U64)
    _at, _c, off, size = next(c for c in lay["buffer_cpus"] if c[3])
    patch("chunk_count=2^32-1", off, "<I", U32)
    patch("chunk_csize=2^32-1", off + 4, "<I", U32)
    patch("chunk_usize=2^31", off + 8, "<I", 1 << 31)
    patch("chunk_usize=0", off + 8, "<I", 0)

    def chunk_bomb() -> bytes:  # a chunk frame inflating to 4 MiB where the header says a few pages
        frame = _bomb(4 << 20, False)
        assert len(frame) <= _u32(raw, off + 4)
        b = bytearray(raw)
        b[off + 12:off + 12 + len(frame)] = frame
        return bytes(b)

    def random_chunk_bytes() -> bytes:
        rng = random.Random(7)
        b = bytearray(raw)
        for _ in range(300):
            b[off + 12 + rng.randrange(size - 12)] = rng.randrange(256)
        return bytes(b)

    def field_size_9() -> bytes:  # in the (compressed) event formats section
        _sid, _fl, formats = _v7_section(raw, lay["sections"][18])
        i = formats.index(b"name: mm_zone_lock_contended\n")
        j = formats.index(b"node_id;", i)
        k = formats.index(b"size:4;", j)
        return _v7_replace_section(raw, 18, formats[:k] + b"size:9;" + formats[k + 7:])

    cases["chunk_bomb"] = chunk_bomb
    cases["random_chunk_bytes"] = random_chunk_bytes
    cases["field_size=9"] = field_size_9
    return cases


# ----- perf.data cases ---------------------------------------------------------------------------
def perf_layout(raw: bytes) -> dict:
    """Offsets of a perf.data's header, features and records (perf.data-file-format.txt)."""
    o: dict = {}
    o["attr_size"], o["attrs"], o["data"] = 16, 24, 40
    d_off, d_size = _u64(raw, 40), _u64(raw, 48)
    o["data_off"], o["data_size"] = d_off, d_size
    flags = [_u64(raw, 72 + 8 * i) for i in range(4)]
    bits = [b for b in range(256) if flags[b // 64] >> (b % 64) & 1]
    o["features"] = {bit: (d_off + d_size + 16 * i, _u64(raw, d_off + d_size + 16 * i),
                           _u64(raw, d_off + d_size + 16 * i + 8)) for i, bit in enumerate(bits)}
    records, p = [], d_off
    while p + 8 <= d_off + d_size:
        rtype, size = _u32(raw, p), _u16(raw, p + 6)
        records.append((p, rtype, size))
        p += size
    o["records"] = records
    return o


def compress_perf(raw: bytes, chunk: int = 1 << 16) -> bytes:
    """``raw`` rewritten as ``perf record -z`` writes it: the data section's records in
    PERF_RECORD_COMPRESSED records of one zstd stream flushed per record, and a HEADER_COMPRESSED feature
    (tools/perf/util/header.c write_compressed: version, type, level, ratio, mmap_len)."""
    lay = perf_layout(raw)
    d_off, d_size = lay["data_off"], lay["data_size"]
    data = raw[d_off:d_off + d_size]
    recs = _compressed_records(zstandard.ZstdCompressor(level=1).compressobj(),
                               (data[s:s + chunk] for s in range(0, len(data), chunk)))
    sections = {bit: raw[off:off + size] for bit, (_at, off, size) in lay["features"].items()}
    sections[27] = struct.pack("<5I", 1, 1, 1, 10, 528384)
    head = bytearray(raw[:d_off])
    struct.pack_into("<Q", head, 48, len(recs))
    flags = [_u64(raw, 72 + 8 * i) for i in range(4)]
    flags[0] |= 1 << 27
    struct.pack_into("<4Q", head, 72, *flags)
    pos = d_off + len(recs) + 16 * len(sections)
    table, blobs = bytearray(), bytearray()
    for bit in sorted(sections):
        table += struct.pack("<QQ", pos + len(blobs), len(sections[bit]))
        blobs += sections[bit]
    return bytes(head) + recs + bytes(table) + bytes(blobs)


def _with_data(raw: bytes, data: bytes) -> bytes:
    """A perf.data with its data section replaced by ``data`` (feature sections moved after it)."""
    lay = perf_layout(raw)
    d_off, d_size = lay["data_off"], lay["data_size"]
    nfeat = len(lay["features"])
    shift = len(data) - d_size
    head = bytearray(raw[:d_off])
    struct.pack_into("<Q", head, 48, len(data))
    table = bytearray(raw[d_off + d_size:d_off + d_size + 16 * nfeat])
    for i in range(nfeat):
        struct.pack_into("<Q", table, 16 * i, _u64(table, 16 * i) + shift)
    return bytes(head) + data + bytes(table) + raw[d_off + d_size + 16 * nfeat:]


def _compressed_records(cobj, blocks) -> bytes:
    """PERF_RECORD_COMPRESSED records (type 81) of one zstd stream flushed after each block; unpadded,
    as perf writes them (the whole payload after the header is zstd input)."""
    out = bytearray()
    for block in blocks:
        payload = cobj.compress(block) + cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        for p in range(0, len(payload), 65000):  # a record's size is a u16
            piece = payload[p:p + 65000]
            out += struct.pack("<IHH", 81, 0, 8 + len(piece)) + piece
    return bytes(out)


def perf_cases(raw: bytes) -> Cases:
    """Damaged copies of a perf.data, each made on demand."""
    lay = perf_layout(raw)
    cases: Cases = {}
    d_off, d_size = lay["data_off"], lay["data_size"]
    trace_at = lay["features"][1][1]
    for name, at in {"8": 8, "50": 50, "104": 104, "attrs": _u64(raw, 24) + 20, "data": d_off + d_size // 3,
                     "feature_table": d_off + d_size + 8, "tracing_data": trace_at + 300,
                     "last_byte": len(raw) - 1}.items():
        cases[f"cut-{name}"] = lambda at=at: raw[:at]

    def patch(name: str, at: int, fmt: str, value: int) -> None:
        cases[name] = lambda: _patch(raw, at, fmt, value)

    patch("attr_size=0", 16, "<Q", 0)
    patch("attr_size=2^63", 16, "<Q", 1 << 63)
    patch("attrs_size=2^64-8", 32, "<Q", U64 - 7)
    patch("data_size=2^64-1", 48, "<Q", U64)
    patch("data_offset=2^63", 40, "<Q", 1 << 63)
    at = lay["features"][1][0]
    patch("tracing_data_offset=2^64-16", at, "<Q", U64 - 15)
    patch("tracing_data_size=2^63", at + 8, "<Q", 1 << 63)
    nrcpus = lay["features"][7][1]
    cases["nrcpus=2^31"] = lambda: _patch(_patch(raw, nrcpus, "<I", 1 << 31), nrcpus + 4, "<I", 1 << 31)
    p = _cstr_end(raw, trace_at + 10) + 6  # after the version: endian, long size, page size
    patch("tracing_page_size=0", p - 4, "<I", 0)
    p += 12
    p += 8 + _u64(raw, p) + 13
    p += 8 + _u64(raw, p)
    patch("ftrace_count=2^32-1", p, "<I", U32)
    patch("ftrace_format_size=2^64-1", p + 4, "<Q", U64)
    samples = [r for r in lay["records"] if r[1] == 9]
    mid = samples[len(samples) // 2][0]
    for value in (0, 8, 65535):
        patch(f"sample_size={value}", mid + 6, "<H", value)

    def random_data_bytes() -> bytes:
        rng = random.Random(9)
        b = bytearray(raw)
        for _ in range(3000):
            b[d_off + rng.randrange(d_size)] = rng.randrange(256)
        return bytes(b)

    def field_size_9() -> bytes:  # same length, in the tracing data
        i = raw.index(b"name: mm_zone_locked\n", trace_at)
        k = raw.index(b"size:4;", raw.index(b"node_id;", i))
        return raw[:k] + b"size:9;" + raw[k + 7:]

    def compressed_cut() -> bytes:
        z = compress_perf(raw)
        comp = [r for r in perf_layout(z)["records"] if r[1] == 81]
        return z[:comp[len(comp) // 2][0] + 500]

    def compressed_damaged() -> bytes:
        z = bytearray(compress_perf(raw))
        comp = [r for r in perf_layout(bytes(z))["records"] if r[1] == 81]
        at = comp[len(comp) // 3][0]
        z[at + 8:at + 40] = random.Random(5).randbytes(32)
        return bytes(z)

    def compressed_bomb() -> bytes:  # one stream of 4 GiB of zeros, 1 MiB per record: ~200 KiB on disk
        cobj = zstandard.ZstdCompressor(level=1).compressobj()
        zeros = b"\0" * (1 << 20)
        return _with_data(compress_perf(raw), _compressed_records(cobj, (zeros for _ in range(4096))))

    cases["random_data_bytes"] = random_data_bytes
    cases["field_size=9"] = field_size_9
    cases["compressed-ok"] = lambda: compress_perf(raw)
    cases["compressed-cut"] = compressed_cut
    cases["compressed-damaged_record"] = compressed_damaged
    cases["compressed-bomb_4GiB_of_zeros"] = compressed_bomb
    return cases


# ----- running them ------------------------------------------------------------------------------
SCRIPT = """import sys, tracecmd
t = tracecmd.Trace(sys.argv[1])
n = 0
while t.read_next_event() is not None:
    n += 1
print(n)
"""


SEEDS = (("v6", FULL_V6_DAT, v6_cases), ("v7", MINIMAL_DAT, v7_cases), ("perf", FULL_PERF_DATA, perf_cases))


#: Cases also run through ``zlperf tracecmd-script`` (its checks are the libtracecmd reader's: a sample).
SCRIPT_CASES = {"v6:cut-mid_data", "v6:cpus=65536", "v6:random_pages", "v6:field_size=9", "v6:cut-first_page",
                "v7:cut-36", "v7:page_size=0", "v7:buffer_cpu_id=2^31", "v7:chunk_bomb", "v7:random_chunk_bytes",
                "v7:kallsyms_bomb_4KiB_stated", "v7:field_size=9", "v7:cut-last_byte"}


def _runs(kind: str, name: str, path: str, script: str) -> list[tuple[str, list[str]]]:
    """(suffix, zlperf arguments) run for the file of case ``name``."""
    if kind == "perf":
        return [("report", ["report", path])]
    runs = [("report", ["report", path]), ("libtracecmd", ["report", "--reader", "libtracecmd", path])]
    if f"{kind}:{name}" in SCRIPT_CASES:
        runs.append(("tracecmd-script", ["tracecmd-script", script, path]))
    return runs


def _case_ids() -> list[str]:
    """Every case id (the files are made only when the cases run)."""
    return [f"{kind}:{name}:{suffix}" for kind, seed, make in SEEDS for name in make(seed.read_bytes())
            for suffix, _ in _runs(kind, name, "", "")]


@pytest.fixture(scope="session")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    """Every case's file made once and run, two at a time (each run measures its own peak RSS)."""
    root = tmp_path_factory.mktemp("hostile-readers")
    script = root / "count_events.py"
    script.write_text(SCRIPT)
    runs: list[tuple[str, list[str]]] = []
    for kind, seed, make in SEEDS:
        for name, build in make(seed.read_bytes()).items():
            path = root / f"{kind}-{name}.{'perf.data' if kind == 'perf' else 'dat'}"
            path.write_bytes(build())
            runs += [(f"{kind}:{name}:{suffix}", args) for suffix, args in _runs(kind, name, str(path), str(script))]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {cid: pool.submit(run_zlperf, args, timeout=120) for cid, args in runs}
        return {cid: f.result() for cid, f in futures.items()}


@pytest.mark.parametrize("case_id", _case_ids())
def test_hostile_file(case_id, outcomes):
    """One line and a non-zero exit, or a report with a warning; no hang, crash, traceback; RSS < 512 MB."""
    assert_handled(outcomes[case_id])


def test_compressed_perf_data_reads_like_the_original(tmp_path):
    """A ``perf record -z`` file (made by the generator above) gives the same report as the original."""
    z = tmp_path / "z.perf.data"
    z.write_bytes(compress_perf(FULL_PERF_DATA.read_bytes()))
    docs = []
    for path in (FULL_PERF_DATA, z):
        res = subprocess.run([sys.executable, "-m", "zlperf", "report", "--json", "--kallsyms",
                              str(FULL_PERF_KALLSYMS), str(path)], capture_output=True, text=True, check=True)
        doc = json.loads(res.stdout)
        doc.pop("source")
        docs.append(doc)
    assert docs[0] == docs[1]
    assert docs[0]["events"]
    if shutil.which("perf"):  # perf itself reads the generated file as it reads the original
        texts = [subprocess.run(["perf", "script", "-i", str(p)], capture_output=True, text=True).stdout
                 for p in (FULL_PERF_DATA, z)]
        assert texts[0] and texts[0] == texts[1]


def test_a_crash_while_reading_ends_the_stream_with_a_warning():
    """The libtracecmd reader's records are read in a forked child: a native crash there (here a real
    SIGSEGV raised in the child) leaves the interpreter running, with what came before and a warning."""
    import os
    import signal

    from zlperf.readers.libtracecmd.safety import in_child

    def produce():
        import faulthandler

        yield 1
        yield 2
        faulthandler.disable()  # pytest's handler would print the child's stack
        os.kill(os.getpid(), signal.SIGSEGV)
        yield 3

    warnings: list[str] = []
    assert list(in_child(produce, warnings, "t.dat")) == [1, 2]
    assert len(warnings) == 1 and "crashed (SIGSEGV)" in warnings[0] and "lost" in warnings[0]


# ----- side files and pipes ------------------------------------------------------------------------
def _kallsyms_cases(root) -> dict[str, str]:
    """Bad ``--kallsyms`` files: cut gzip, gzip bomb, a device, a FIFO, a directory."""
    import gzip
    import os

    good = FULL_PERF_KALLSYMS.read_bytes()
    cut = root / "cut.kallsyms.gz"
    cut.write_bytes(good[:len(good) // 2])
    bomb = root / "bomb.kallsyms.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as gz:
        for _ in range(1024):
            gz.write(b"0" * (1 << 20))  # 1 GiB of one character: ~1 MiB on disk
    fifo = root / "fifo.kallsyms"
    os.mkfifo(fifo)
    return {"cut_gzip": str(cut), "gzip_bomb_1GiB": str(bomb), "dev_zero": "/dev/zero", "fifo": str(fifo),
            "directory": str(root)}


@pytest.mark.parametrize("trace", [MINIMAL_DAT, FULL_PERF_DATA], ids=lambda p: p.name)
def test_bad_kallsyms_files_are_one_line(trace, tmp_path):
    """``--kallsyms`` given a cut .gz, a gzip bomb, /dev/zero, a FIFO or a directory: one line, bounded."""
    for name, path in _kallsyms_cases(tmp_path).items():
        o = run_zlperf(["report", "--kallsyms", path, str(trace)], timeout=60)
        assert assert_handled(o, allow_partial=False) == "error", name
        assert path in o.stderr, (name, o.stderr)


@pytest.mark.parametrize("reader", ["fast", "libtracecmd"])
def test_pipes_read_like_files_and_an_idle_fifo_does_not_hang(reader, tmp_path):
    """``report <(cat f)`` and ``cat f | report /dev/stdin`` give the file's report; a FIFO nobody
    writes to is one line, not a hang."""
    import os
    import shlex

    def doc(cmd: str) -> dict:
        o = run_zlperf([], argv0=["bash", "-c", cmd], timeout=120)
        assert o.returncode == 0, o.describe()
        d = json.loads(o.stdout)
        d.pop("source")
        return d

    zl = f"{shlex.quote(sys.executable)} -m zlperf report --json --reader {reader}"
    f = shlex.quote(str(MINIMAL_DAT))
    want = doc(f"{zl} {f}")
    assert doc(f"{zl} <(cat {f})") == want
    assert doc(f"cat {f} | {zl} /dev/stdin") == want
    fifo = tmp_path / "fifo.dat"
    os.mkfifo(fifo)
    o = run_zlperf(["report", "--reader", reader, str(fifo)], timeout=30)
    assert assert_handled(o, allow_partial=False) == "error" and str(fifo) in o.stderr
