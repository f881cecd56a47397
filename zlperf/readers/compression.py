"""Bounded decompression (zstd, zlib) for trace.dat v7 sections and chunks and perf.data COMPRESSED records.

Every compressed block is inflated into a room of the size its format states (a v7 chunk's
uncompressed size, perf's HEADER_COMPRESSED mmap_len), checked against plausible limits by the
caller first, so a decompression bomb fails instead of growing.
"""

from __future__ import annotations

__all__ = ["Inflater", "ZstdInto", "ZstdStream"]

import ctypes
import zlib
from typing import Callable, Optional, Union

import numpy as np

Bytes = Union[bytes, memoryview]

#: Largest zstd window a frame may ask for (ZSTD_d_windowLogMax): 16 MiB, past what trace-cmd and
#: perf use (their levels pick windows of at most a few MiB), so a hostile frame cannot make
#: the decoder allocate libzstd's default 128 MiB.
_WINDOW_LOG_MAX = 24
_ZSTD_D_WINDOW_LOG_MAX = 100  # enum ZSTD_dParameter in zstd.h
#: Output handed on at a time by a stream.
_STEP = 1 << 20


class Inflater:
    """Inflates one compressed block into exactly the stated number of bytes, or fails."""

    def __init__(self, name: str):
        """``name``: the file's compression ("zstd" or "zlib"); ValueError for any other."""
        if name not in ("zstd", "zlib"):
            raise ValueError(name)
        self.name = name
        self._zstd = None
        self.multi = None  # python-zstandard's many-chunks-in-one-call (C backend only)
        if name == "zstd":
            import zstandard

            self._zstandard = zstandard
            self._zstd = zstandard.ZstdDecompressor(max_window_size=1 << _WINDOW_LOG_MAX)
            self.multi = getattr(self._zstd, "multi_decompress_to_buffer", None)

    def inflate(self, data: Bytes, usize: int) -> bytes:
        """``data`` inflated; ValueError unless it comes to exactly ``usize`` bytes.

        The output never exceeds ``usize``: zstd frames that declare another content size are
        refused before inflating (python-zstandard would allocate the declared size), zlib
        output is capped.
        """
        if self._zstd is not None:
            try:
                declared = self._zstandard.frame_content_size(bytes(data[:18]))
            except self._zstandard.ZstdError:
                declared = -1  # no readable frame header: decompress() says what is wrong
            if declared >= 0 and declared != usize:
                raise ValueError(f"the zstd frame declares {declared} bytes, the chunk header {usize}")
            try:
                out = self._zstd.decompress(data, max_output_size=max(usize, 1))
            except self._zstandard.ZstdError as exc:
                raise ValueError(str(exc)) from None
        else:
            d = zlib.decompressobj()
            try:
                out = d.decompress(data, max(usize, 1))
            except zlib.error as exc:
                raise ValueError(str(exc)) from None
            if d.unconsumed_tail:
                raise ValueError(f"inflates to more than the stated {usize} bytes")
        if len(out) != usize:
            raise ValueError(f"inflated to {len(out)} bytes, not {usize}")
        return out


class _InBuffer(ctypes.Structure):
    _fields_ = [("src", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


class _OutBuffer(ctypes.Structure):
    _fields_ = [("dst", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


_LIBZSTD: "ctypes.CDLL | bool | None" = None


def _libzstd() -> Optional[ctypes.CDLL]:
    """libzstd.so.1 with the prototypes used here (loaded once), or None when it is not there."""
    global _LIBZSTD
    if _LIBZSTD is None:
        try:
            lib = ctypes.CDLL("libzstd.so.1")
            vp, sz = ctypes.c_void_p, ctypes.c_size_t
            for name, res, args in (
                    ("ZSTD_createDCtx", vp, []), ("ZSTD_freeDCtx", sz, [vp]),
                    ("ZSTD_decompressDCtx", sz, [vp, vp, sz, vp, sz]), ("ZSTD_isError", ctypes.c_uint, [sz]),
                    ("ZSTD_DCtx_setParameter", sz, [vp, ctypes.c_int, ctypes.c_int]),
                    ("ZSTD_decompressStream", sz, [vp, ctypes.POINTER(_OutBuffer), ctypes.POINTER(_InBuffer)])):
                fn = getattr(lib, name)
                fn.restype, fn.argtypes = res, args
        except (OSError, AttributeError):
            _LIBZSTD = False
            return None
        _LIBZSTD = lib
    return _LIBZSTD or None


class _Context:
    """One libzstd decompression context with the window bound set; freed with the object."""

    def __init__(self, lib: ctypes.CDLL):
        self._lib = lib
        self._dctx = lib.ZSTD_createDCtx()
        if not self._dctx:
            raise OSError("ZSTD_createDCtx failed")
        lib.ZSTD_DCtx_setParameter(self._dctx, _ZSTD_D_WINDOW_LOG_MAX, _WINDOW_LOG_MAX)

    @classmethod
    def load(cls):
        """A new context, or None when libzstd.so.1 is not there (python-zstandard is used then)."""
        lib = _libzstd()
        if lib is None:
            return None
        try:
            return cls(lib)
        except OSError:
            return None

    def __del__(self) -> None:
        if getattr(self, "_dctx", None):
            self._lib.ZSTD_freeDCtx(self._dctx)
            self._dctx = None


class ZstdInto(_Context):
    """libzstd's ZSTD_decompressDCtx through ctypes: inflates a chunk straight into a numpy array.

    python-zstandard returns a new bytes object per chunk, and joining them costs a second copy;
    this writes each chunk where it belongs (ctypes releases the GIL during the call). The
    destination has exactly the stated room, so a frame that would inflate further fails. Make
    one per CPU stream, so threads never share a context.
    """

    def into(self, frame: memoryview, out: np.ndarray, at: int, usize: int) -> bool:
        """Inflate ``frame`` into ``out[at:at+usize]``; False unless exactly ``usize`` bytes came out."""
        src = np.frombuffer(frame, np.uint8)
        if at + usize > out.shape[0] or src.shape[0] == 0:
            return False
        lib = self._lib
        n = lib.ZSTD_decompressDCtx(self._dctx, out.ctypes.data + at, usize, src.ctypes.data, src.shape[0])
        return not lib.ZSTD_isError(n) and n == usize


class ZstdStream(_Context):
    """One zstd stream fed piece by piece (perf record -z flushes, not ends, its stream per record).

    :meth:`feed` inflates one piece into a fixed room and hands the output to ``sink`` as it comes,
    so no piece can produce more than ``room`` bytes.
    """

    _dst: "ctypes.Array[ctypes.c_char] | None" = None

    def feed(self, data: bytes, room: int, sink: Callable[[bytes], None]) -> int:
        """Inflate ``data``; ValueError when it is damaged or its output passes ``room`` bytes.

        Returns the number of bytes handed to ``sink``.
        """
        lib = self._lib
        src = ctypes.create_string_buffer(data, len(data))
        step = min(room, _STEP) or 1
        dst = self._dst
        if dst is None:
            dst = self._dst = ctypes.create_string_buffer(_STEP)  # one output room per stream, reused
        inb = _InBuffer(ctypes.addressof(src), len(data), 0)
        total = 0
        while True:
            outb = _OutBuffer(ctypes.addressof(dst), step, 0)
            ret = lib.ZSTD_decompressStream(self._dctx, ctypes.byref(outb), ctypes.byref(inb))
            if lib.ZSTD_isError(ret):
                raise ValueError("damaged zstd data")
            if outb.pos:
                total += outb.pos
                if total > room:
                    raise ValueError(f"inflates past the {room} bytes one record can hold")
                sink(ctypes.string_at(dst, outb.pos))
            if inb.pos >= inb.size and outb.pos < step:
                return total
