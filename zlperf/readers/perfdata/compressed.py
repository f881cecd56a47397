"""The data section of a ``perf record -z`` file, inflated to a temporary file with bounded memory.

perf compresses with one zstd stream, flushed (not ended) at each PERF_RECORD_COMPRESSED, so a
record may be split across two of them (tools/perf/util/zstd.c); each record inflates to at most
the mmap_len its HEADER_COMPRESSED feature states. Other records are copied as they are, in order.
"""

from __future__ import annotations

__all__ = ["inflate_data_section", "MIN_ROOM", "MAX_RATIO"]

import mmap
import struct
import tempfile
from typing import Callable

from zlperf.errors import TraceFormatError
from zlperf.readers.compression import ZstdStream
from zlperf.readers.perfdata.records import COMPRESSED_TYPES

#: Output room per compressed record when the file states none (perf's default mmap is 512 KiB + 1 page).
MIN_ROOM = 1 << 20
#: The whole inflated section may be this many times the compressed one (plus 64 MiB): tracepoint
#: samples compress 5-20x; past this it is a decompression bomb, and the rest is not read.
MAX_RATIO = 64

_COMPRESSED2 = COMPRESSED_TYPES[1]


def _stream() -> Callable[[bytes, int, Callable[[bytes], None]], int]:
    """``feed(data, room, sink)`` over one zstd stream: libzstd through ctypes, else python-zstandard."""
    zs = ZstdStream.load()
    if zs is not None:
        return zs.feed
    try:
        import zstandard
    except ImportError:
        raise TraceFormatError("", None, "compressed perf.data (perf record -z) needs libzstd or the zstandard "
                               "module", "decompress it with `perf inject -i FILE -o FILE2`") from None
    obj = zstandard.ZstdDecompressor(max_window_size=1 << 24).decompressobj()

    def feed(data: bytes, room: int, sink: Callable[[bytes], None]) -> int:
        try:
            out = obj.decompress(data)
        except zstandard.ZstdError as exc:
            raise ValueError(str(exc)) from None
        if len(out) > room:
            raise ValueError(f"inflates past the {room} bytes one record can hold")
        sink(out)
        return len(out)

    return feed


def inflate_data_section(buf, offset: int, size: int, path: str, mmap_len: int,
                         warnings: list[str]) -> tuple["mmap.mmap | bytes", int]:
    """The section's records with the compressed ones expanded, as a read-only map of a temporary
    file (gone when the map is closed), and its length. Damage ends the section with a warning."""
    room = max(mmap_len, MIN_ROOM)
    budget = MAX_RATIO * size + (64 << 20)
    feed = _stream()
    out = tempfile.TemporaryFile(prefix="zlperf-perf-")
    written = 0

    def sink(data: bytes) -> None:
        out.write(data)

    try:
        pos, end = offset, offset + size
        while pos + 8 <= end:
            rtype, _misc, rsize = struct.unpack_from("<IHH", buf, pos)
            if rsize < 8 or pos + rsize > end:
                warnings.append(f"damaged record at offset {pos:#x} (type {rtype}, size {rsize}) in the compressed "
                                "data section: the rest of the file was not read")
                break
            try:
                if rtype == COMPRESSED_TYPES[0]:
                    written += feed(bytes(buf[pos + 8:pos + rsize]), room, sink)
                elif rtype == _COMPRESSED2:  # u64 data_size, then the payload padded to 8 bytes
                    dsize, = struct.unpack_from("<Q", buf, pos + 8) if rsize >= 16 else (0,)
                    written += feed(bytes(buf[pos + 16:pos + 16 + min(dsize, rsize - 16)]), room, sink)
                else:
                    out.write(bytes(buf[pos:pos + rsize]))
                    written += rsize
            except ValueError as exc:
                warnings.append(f"compressed record at offset {pos:#x} does not decompress ({exc}): the rest of "
                                "the file was not read")
                break
            if written > budget:
                warnings.append(f"the compressed data section inflates past {budget >> 20} MiB "
                                f"({MAX_RATIO}x its {size} bytes): a decompression bomb? The rest was not read")
                break
            pos += rsize
        out.flush()
        length = out.tell()
        data = mmap.mmap(out.fileno(), 0, access=mmap.ACCESS_READ) if length else b""
        return data, length
    finally:
        out.close()  # the map keeps the (unlinked) file's pages
