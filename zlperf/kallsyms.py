"""Kernel symbols: turn a code address into ``func+0xoff`` as trace-cmd prints ``%pS``.

The table comes from the kallsyms saved in a trace.dat, a file the user gives, or
/proc/kallsyms on the recording host. It is parsed on the first lookup, not when the trace is
opened, and built once; lookups are vectorised with numpy. The parse reads the usual layout
(``%016lx %c %s``, what the kernel's kallsyms show prints on 64-bit) with a few numpy passes over
the bytes and decodes a name only when a lookup lands on it; anything else goes through a regex.
"""

from __future__ import annotations

__all__ = ["Kallsyms", "MAX_KALLSYMS_BYTES"]

import re
from typing import Iterable, Optional, Sequence, Union

import numpy as np

# "ffffffff81000000 T _stext" or "... t name\t[module]": text symbols only.
_TEXT_SYMBOL = re.compile(r"^([0-9a-fA-F]+) [tTwW] (\S+)", re.MULTILINE)

#: Largest kallsyms text accepted. /proc/kallsyms of a distribution kernel with its modules
#: is 10-20 MB; anything far beyond is not a kallsyms file (or is a decompression bomb).
MAX_KALLSYMS_BYTES = 128 << 20

_HEX = np.full(256, 255, np.uint8)  #: byte -> hex digit value (255: not a hex digit)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i
_TEXT_TYPES = np.zeros(256, bool)
_TEXT_TYPES[list(b"tTwW")] = True


class _Names(Sequence[str]):
    """Symbol names as (start, end) byte offsets into the text, decoded when asked for."""

    def __init__(self, raw: bytes, start: np.ndarray, end: np.ndarray):
        self._raw, self._start, self._end = raw, start, end

    def __len__(self) -> int:
        return len(self._start)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._raw[int(self._start[i]):int(self._end[i])].decode("utf-8", "replace")


def _parse_fixed(raw: bytes) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(addresses, name starts, name ends) of the text symbols of a 64-bit kallsyms text, in file order;
    None when the text is not laid out as ``%016lx %c %s`` line by line (the regex reads it then).

    Hot path, open-coded: ~100k lines in a few passes instead of a regex match and an int() per line.
    Only tab and newline may be control bytes, and nothing may be past ASCII, so that where \\S+ stops
    is plain: at a space, a tab or a newline.
    """
    buf = np.frombuffer(raw, np.uint8)
    if not len(buf) or (buf >= 0x80).any():
        return None
    ctrl = np.flatnonzero(buf < 0x20)
    kind = buf[ctrl]
    if ((kind != 0x0A) & (kind != 0x09)).any():
        return None
    nl, tabs = ctrl[kind == 0x0A], ctrl[kind == 0x09]
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [len(buf)]))
    starts, ends = starts[ends > starts], ends[ends > starts]  # empty lines (the last one) match nothing
    if not len(starts) or int((ends - starts).min()) < 19:
        return None
    if (buf[starts + 16] != 0x20).any() or (buf[starts + 18] != 0x20).any():
        return None
    lines = len(starts)
    keep = _TEXT_TYPES[buf[starts + 17]] & (ends > starts + 19)
    starts, ends = starts[keep], ends[keep]
    # Each line's 16 address characters as one 16-byte item: a gather of whole items, no index matrix.
    heads = np.ndarray((len(buf) - 15,), np.dtype((np.void, 16)), buffer=buf, strides=(1,))[starts]
    digits = _HEX[heads.view(np.uint8).reshape(-1, 16)]
    if (digits == 255).any():
        return None
    addrs = np.zeros(len(starts), np.uint64)
    for j in range(16):
        addrs |= digits[:, j].astype(np.uint64) << np.uint64(4 * (15 - j))
    # A name runs to the first space, tab or newline after it.
    name_start = starts + 19
    if np.count_nonzero(buf == 0x20) > 2 * lines:  # spaces past the two of some line: a slower search
        stops = np.flatnonzero((buf == 0x20) | (buf == 0x09) | (buf == 0x0A))
    else:
        stops = tabs
    at = np.searchsorted(stops, name_start)
    name_end = np.minimum(np.where(at < len(stops), stops[np.minimum(at, max(len(stops) - 1, 0))], len(buf)), ends) \
        if len(stops) else ends
    ok = name_end > name_start  # "addr T " then a space or tab: the regex finds no name there
    return addrs[ok], name_start[ok], name_end[ok]


class Kallsyms:
    """A sorted table of text symbols with vectorised address lookup."""

    def __init__(self, addrs: np.ndarray, names: list[str], source: str = ""):
        order = np.argsort(addrs, kind="stable")
        self._addrs: Optional[np.ndarray] = np.ascontiguousarray(addrs[order], dtype=np.uint64)
        self._names: Optional[Sequence[str]] = [names[i] for i in order]
        self._text: Optional[Union[str, bytes]] = None
        self.source = source  #: where the table came from, for the report header

    @classmethod
    def from_text(cls, text: Union[str, bytes], source: str = "") -> "Kallsyms":
        """A table over ``/proc/kallsyms`` text (``addr type name [module]``), parsed on first use."""
        table = cls.__new__(cls)
        table._addrs, table._names, table._text, table.source = None, None, text, source
        return table

    @classmethod
    def from_file(cls, path: str) -> "Kallsyms":
        """A table over a kallsyms file, plain or gzip-compressed (read now, bounded; parsed on use)."""
        from zlperf.safeio import read_text_limited

        text = read_text_limited(path, MAX_KALLSYMS_BYTES, "kallsyms file", gunzip=True)
        return cls.from_text(text, source=str(path))

    def parse(self) -> None:
        """Parse the table now (it is otherwise parsed on first use): for a process with time to spare."""
        if self._addrs is None:
            self._parse()

    def _parse(self) -> None:
        """Build the sorted table from the text (once); keeps text symbols."""
        text, self._text = self._text or "", None
        raw = text.encode("utf-8") if isinstance(text, str) else text
        fixed = _parse_fixed(raw)
        if fixed is not None:
            addrs, name_start, name_end = fixed
            keep = addrs != 0  # unprivileged reads show zeros: useless for lookup
            addrs, name_start, name_end = addrs[keep], name_start[keep], name_end[keep]
            order = np.argsort(addrs, kind="stable")
            self._addrs = np.ascontiguousarray(addrs[order])
            self._names = _Names(raw, name_start[order], name_end[order])
            return
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        # One regex pass over the whole text: several times faster than splitting ~100k lines.
        found = _TEXT_SYMBOL.findall(text)
        addrs = np.array([int(a, 16) for a, _ in found], dtype=np.uint64)
        names = [n for _, n in found]
        keep = addrs != 0
        if not keep.all():
            names = [n for n, k in zip(names, keep.tolist()) if k]
            addrs = addrs[keep]
        order = np.argsort(addrs, kind="stable")
        self._addrs = np.ascontiguousarray(addrs[order], dtype=np.uint64)
        self._names = [names[i] for i in order]

    @property
    def addrs(self) -> np.ndarray:
        """Symbol start addresses, sorted (uint64)."""
        if self._addrs is None:
            self._parse()
        return self._addrs  # type: ignore[return-value]

    @property
    def names(self) -> Sequence[str]:
        """Symbol names in the order of :attr:`addrs`."""
        if self._names is None:
            self._parse()
        return self._names  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.addrs)

    def lookup(self, addr: int) -> Optional[tuple[str, int]]:
        """``(name, offset)`` of the symbol containing ``addr``, or None below the first."""
        addrs = self.addrs
        if not len(addrs):
            return None
        i = int(np.searchsorted(addrs, np.uint64(addr), side="right")) - 1
        if i < 0:
            return None
        return self.names[i], int(addr) - int(addrs[i])

    def symbolize(self, addr: int) -> str:
        """``func+0xoff`` like trace-cmd's ``%pS``; a hex address when unknown."""
        hit = self.lookup(addr)
        if hit is None:
            return f"{int(addr):#x}"
        name, off = hit
        return f"{name}+{off:#x}"

    def function(self, addr: int) -> Optional[str]:
        """The containing function's name, or None."""
        hit = self.lookup(addr)
        return hit[0] if hit else None

    def symbolize_many(self, addrs: Iterable[int] | np.ndarray) -> list[str]:
        """Vectorised :meth:`symbolize` (unique addresses are looked up once)."""
        arr = np.asarray(addrs, dtype=np.uint64)
        if arr.size == 0:
            return []
        uniq, inverse = np.unique(arr, return_inverse=True)
        texts = [self.symbolize(int(a)) for a in uniq]
        return [texts[i] for i in inverse.ravel()]
