"""The one bounds-checked byte cursor every container parser reads through (trace.dat, perf.data).

Each read checks the bytes are there before taking them, so a size field read from a damaged file
can never make a read (or an allocation) larger than what is left; a failure names the file offset.
"""

from __future__ import annotations

__all__ = ["ByteCursor", "CUT_SHORT_HINT"]

import mmap
import struct
from typing import Optional, Union

from zlperf.errors import TraceFormatError

#: What to do about a file that ends or breaks where its layout says more follows.
CUT_SHORT_HINT = "the file is truncated or damaged; copy or record it again"

#: What a cursor reads: bytes, or a read-only mmap.mmap of the file (anything with find() and slicing).
Buffer = Union[bytes, bytearray, memoryview, mmap.mmap]


class ByteCursor:
    """Sequential reads of little- or big-endian numbers and strings from ``buf[start:end]``.

    ``base`` is the file offset of ``buf[0]``, so errors say where in the file the problem is;
    ``what`` names the structure being read ("options section", "feature 3", ...).
    """

    __slots__ = ("buf", "pos", "end", "base", "path", "what", "_e")

    def __init__(self, buf: Buffer, path: str, what: str, *, start: int = 0, end: Optional[int] = None,
                 base: int = 0, big_endian: bool = False):
        self.buf = buf
        self.pos = start
        self.end = len(buf) if end is None else min(end, len(buf))
        self.base = base
        self.path = path
        self.what = what
        self._e = ">" if big_endian else "<"

    # -- positions and errors ---------------------------------------------------------------
    @property
    def big_endian(self) -> bool:
        """Byte order of the numbers read (a file states its own)."""
        return self._e == ">"

    @big_endian.setter
    def big_endian(self, value: bool) -> None:
        self._e = ">" if value else "<"

    @property
    def left(self) -> int:
        """Bytes left before the end."""
        return self.end - self.pos

    @property
    def offset(self) -> int:
        """File offset of the next byte."""
        return self.base + self.pos

    def error(self, problem: str, hint: str = CUT_SHORT_HINT, at: Optional[int] = None) -> TraceFormatError:
        """A :class:`TraceFormatError` at the cursor (or at buffer position ``at``)."""
        return TraceFormatError(self.path, self.base + (self.pos if at is None else at), problem, hint)

    def need(self, n: int, what: str = "") -> None:
        """Fail unless ``n`` more bytes are there."""
        if n < 0 or n > self.end - self.pos:
            raise self.error(f"{what or self.what} is cut short (needs {n} bytes, {max(self.left, 0)} left)")

    # -- numbers ----------------------------------------------------------------------------
    def _num(self, fmt: str, size: int) -> int:
        self.need(size)
        (v,) = struct.unpack_from(self._e + fmt, self.buf, self.pos)
        self.pos += size
        return v

    def u8(self) -> int:
        """One byte."""
        return self._num("B", 1)

    def u16(self) -> int:
        """An unsigned 16-bit number."""
        return self._num("H", 2)

    def u32(self) -> int:
        """An unsigned 32-bit number."""
        return self._num("I", 4)

    def u64(self) -> int:
        """An unsigned 64-bit number."""
        return self._num("Q", 8)

    def count(self, width: int, per_item: int, what: str) -> int:
        """A count of items of at least ``per_item`` bytes each, checked against the bytes left.

        The check is what keeps a damaged count (2^31 CPUs, 10^9 formats) from driving a loop or
        an allocation: every item must still fit in what the file holds.
        """
        at = self.pos
        n = self.u32() if width == 4 else self.u64() if width == 8 else self.u16()
        if n * per_item > self.left:
            raise self.error(f"implausible {what} {n}: {n} x {per_item} bytes do not fit in the "
                             f"{self.left} bytes left", at=at)
        return n

    # -- bytes and strings ------------------------------------------------------------------
    def raw(self, n: int, what: str = "") -> bytes:
        """The next ``n`` bytes (a copy)."""
        self.need(n, what)
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out

    def skip(self, n: int, what: str = "") -> None:
        """Step over ``n`` bytes."""
        self.need(n, what)
        self.pos += n

    def sized(self, width: int, what: str) -> bytes:
        """A block preceded by its size (a ``width``-byte number), size checked before reading."""
        at = self.pos
        n = self.u32() if width == 4 else self.u64()
        if n > self.left:
            raise self.error(f"{what}: size {n} runs past the end ({self.left} bytes left)", at=at)
        return self.raw(n, what)

    def cstr(self, limit: int = 4096) -> str:
        """A NUL-terminated string of at most ``limit`` bytes (UTF-8, bad bytes replaced)."""
        stop = min(self.end, self.pos + limit + 1)
        find = getattr(self.buf, "find", None)
        end = find(b"\0", self.pos, stop) if find is not None else bytes(self.buf[self.pos:stop]).find(b"\0")
        if end >= 0 and find is None:
            end += self.pos
        if end < 0:
            raise self.error(f"{self.what}: string without its NUL end")
        out = bytes(self.buf[self.pos:end]).decode("utf-8", "replace")
        self.pos = end + 1
        return out

    def tag(self, expected: bytes, what: str) -> None:
        """Require the literal bytes ``expected`` next (a section tag such as ``header_page\\0``)."""
        at = self.pos
        got = self.raw(len(expected), what)
        if got != expected:
            raise self.error(f"no {what} where expected (found {got[:16]!r})", "the file is damaged", at=at)

    def perf_string(self) -> str:
        """perf's ``perf_header_string``: u32 length, then that many bytes, NUL-padded."""
        return self.sized(4, f"{self.what} string").split(b"\0", 1)[0].decode("utf-8", "replace")
