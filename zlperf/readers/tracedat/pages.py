"""One CPU's ring-buffer pages out of a trace.dat, in bounded runs of uncompressed bytes.

v6 and uncompressed v7 data are whole pages in a row; compressed v7 data is a u32 chunk count, then
per chunk u32 compressed size, u32 uncompressed size and the frame (trace-cmd.dat.v7.5.txt).
A damaged chunk costs its own pages only: its sizes say where the next one starts.
"""

from __future__ import annotations

__all__ = ["PageRun", "page_runs", "RUN_BYTES", "CHUNK_LIMIT"]

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Optional

import numpy as np

from zlperf.errors import TraceFormatError
from zlperf.readers.compression import ZstdInto
from zlperf.readers.tracedat.options import BufferInfo, CpuData

if TYPE_CHECKING:
    from zlperf.readers.tracedat.container import TraceDatFile

#: Bytes of uncompressed page data handed to the decoder at once (bounded memory). Measured on 5.4 M events
#: (bench/README.md): 4 MB runs decode as fast as 16 MB ones (the working set stays in the caches) and hold
#: a quarter of the memory; 2 MB runs are slower (numpy's per-call cost shows).
RUN_BYTES = 4 << 20
#: Largest uncompressed chunk accepted (trace-cmd writes chunks of a few pages).
CHUNK_LIMIT = 16 << 20


@dataclass
class PageRun:
    """Consecutive ring-buffer pages of one CPU, uncompressed."""

    data: np.ndarray  #: uint8, a whole number of pages (plus nothing else)
    file_offset: int  #: where the run starts in the file (chunk offset when compressed)
    first_page: int  #: index of the run's first page in this CPU's stream
    gap_before: bool = False  #: pages before this run could not be read (events lost)


def page_runs(f: "TraceDatFile", buf: BufferInfo, cd: CpuData, warn: Callable[[str], None],
              run_bytes: int = RUN_BYTES) -> Iterator[PageRun]:
    """Yield one CPU's pages in runs of about ``run_bytes``; problems go to ``warn``, then stop."""
    psize = buf.page_size
    run_bytes = max(psize, run_bytes - run_bytes % psize)
    if cd.size == 0:
        return
    if buf.compressed:
        yield from _Chunks(f, buf, cd, warn, run_bytes).runs()
        return
    whole = cd.size - cd.size % psize
    if whole != cd.size:
        warn(f"cpu {cd.cpu}: {cd.size % psize} bytes after offset {cd.offset + whole:#x} are not a "
             "whole page, ignored")
    page = 0
    for start in range(0, whole, run_bytes):
        n = min(run_bytes, whole - start)
        try:
            raw = f.pread(cd.offset + start, n, f"cpu {cd.cpu} pages")
        except TraceFormatError as exc:
            warn(f"cpu {cd.cpu}: {(whole - start) // psize} pages after offset {cd.offset + start:#x} "
                 f"unreadable: {exc.problem}")
            return
        yield PageRun(np.frombuffer(raw, np.uint8), cd.offset + start, page)
        page += n // psize


def _chunk_sizes(csize: int, usize: int, page_size: int, room: int) -> Optional[str]:
    """What is wrong with a chunk header's sizes, or None."""
    if csize > room:
        return f"compressed size {csize} runs past the CPU's data ({room} bytes left)"
    if usize == 0 or usize > CHUNK_LIMIT or usize % page_size:
        return f"uncompressed size {usize} is not 1 to {CHUNK_LIMIT // page_size} whole pages"
    return None


class _Chunks:
    """The compressed chunks of one CPU, inflated a run at a time."""

    def __init__(self, f: "TraceDatFile", buf: BufferInfo, cd: CpuData, warn: Callable[[str], None],
                 run_bytes: int):
        self.f, self.cd, self.warn, self.run_bytes = f, cd, warn, run_bytes
        self.psize = buf.page_size
        self.order = ">" if f.big_endian else "<"
        self.gap = False  # chunks were lost before the next run

    def runs(self) -> Iterator[PageRun]:
        f, cd, psize, run_bytes = self.f, self.cd, self.psize, self.run_bytes
        end = cd.offset + 4 + cd.size  # the size counts the chunks, not the chunk count before them
        try:
            count = struct.unpack(self.order + "I", f.pread(cd.offset, 4, f"cpu {cd.cpu} chunk count"))[0]
        except TraceFormatError as exc:
            self.warn(f"cpu {cd.cpu}: no page readable: {exc.problem}")
            return
        if count * 8 > cd.size:
            self.warn(f"cpu {cd.cpu}: implausible chunk count {count} for {cd.size} bytes of data; "
                      "reading the chunks that fit")
            count = cd.size // 8
        pos = cd.offset + 4
        zs = ZstdInto.load() if f.compression == "zstd" else None
        win, win_at = b"", pos  # compressed bytes are read in large windows, not chunk by chunk
        frames: list[memoryview] = []
        sizes: list[int] = []
        offsets: list[int] = []
        have = 0
        page = 0
        lost = None
        for i in range(count + 1):
            if i < count:
                try:
                    if pos + 8 > end:
                        raise TraceFormatError(f.path, pos, "chunk header past the CPU's data", "")
                    if pos + 8 > win_at + len(win):
                        win_at = pos
                        win = f.pread(pos, min(end - pos, max(run_bytes // 4, 8)), "compressed pages")
                    csize, usize = struct.unpack_from(self.order + "II", win, pos - win_at)
                    problem = _chunk_sizes(csize, usize, psize, end - pos - 8)
                    if problem:
                        raise TraceFormatError(f.path, pos, f"chunk header: {problem}", "")
                    if pos + 8 + csize > win_at + len(win):
                        win_at = pos
                        win = f.pread(pos, min(end - pos, max(run_bytes // 4, 8 + csize)), "compressed pages")
                    rel = pos - win_at + 8
                    frames.append(memoryview(win)[rel:rel + csize])
                    sizes.append(usize)
                    offsets.append(pos)
                    have += usize
                    pos += 8 + csize
                except TraceFormatError as exc:
                    lost = (count - i, exc.offset if exc.offset is not None else pos, exc.problem)
            if frames and (have >= run_bytes or i == count or lost):
                whole = _zstd_into(zs, frames, sizes) if zs is not None else None
                if whole is not None:  # the common case: every chunk inflated straight into one array
                    yield PageRun(whole, offsets[0], page, self.gap)
                    self.gap = False
                    page += len(whole) // psize
                else:
                    yield from self._one_by_one(frames, sizes, offsets, page)
                    page += sum(sizes) // psize
                frames, sizes, offsets, have = [], [], [], 0
            if lost:
                n, at, problem = lost
                self.warn(f"cpu {cd.cpu}: {n} compressed chunk(s) after offset {at:#x} unreadable ({problem}); "
                          "their events are lost")
                return

    def _one_by_one(self, frames: list[memoryview], sizes: list[int], offsets: list[int],
                    page: int) -> Iterator[PageRun]:
        """Chunks inflated with python-zstandard or zlib: a damaged chunk is skipped (its size is
        known) and the run after it starts with a gap."""
        for data, at, usize, problem in self._inflate(frames, sizes, offsets):
            if problem is not None:
                self.warn(f"cpu {self.cd.cpu}: compressed chunk at offset {at:#x} does not decompress "
                          f"({problem}); its {usize // self.psize} page(s) are lost")
                self.gap = True
                page += usize // self.psize
                continue
            yield PageRun(np.frombuffer(data, np.uint8), at, page, self.gap)
            self.gap = False
            page += len(data) // self.psize

    def _inflate(self, frames: list[memoryview], sizes: list[int],
                 offsets: list[int]) -> list[tuple[bytes, int, int, Optional[str]]]:
        """Inflate consecutive chunks: (data, file offset, size, None) for each stretch that
        inflates, (b"", offset, size, problem) for each damaged chunk."""
        inflater = self.f.inflater
        assert inflater is not None
        if inflater.multi is not None:
            try:  # many chunks in one call, each into exactly its stated size
                out = inflater.multi(frames, decompressed_sizes=struct.pack(f"={len(sizes)}Q", *sizes), threads=1)
                data = b"".join(out[j] for j in range(len(out)))
                if len(data) == sum(sizes):
                    return [(data, offsets[0], len(data), None)]
            except Exception:  # zstd.ZstdError: find the damaged chunk(s) one by one below
                pass
        result: list[tuple[bytes, int, int, Optional[str]]] = []
        parts: list[bytes] = []
        first = offsets[0]
        for frame, usize, at in zip(frames, sizes, offsets):
            try:
                piece = inflater.inflate(frame, usize)
            except ValueError as exc:
                if parts:
                    joined = b"".join(parts)
                    result.append((joined, first, len(joined), None))
                    parts = []
                result.append((b"", at, usize, str(exc) or "damaged"))
                continue
            if not parts:
                first = at
            parts.append(piece)
        if parts:
            joined = b"".join(parts)
            result.append((joined, first, len(joined), None))
        return result


def _zstd_into(zs: ZstdInto, frames: list[memoryview], sizes: list[int]) -> Optional[np.ndarray]:
    """All chunks inflated by libzstd straight into one new array, or None if any fails."""
    out = np.empty(sum(sizes), np.uint8)
    at = 0
    for frame, usize in zip(frames, sizes):
        if not zs.into(frame, out, at, usize):
            return None
        at += usize
    return out
