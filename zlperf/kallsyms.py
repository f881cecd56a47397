"""Kernel symbols: turn a code address into ``func+0xoff`` as trace-cmd prints ``%pS``.

The table comes from the kallsyms saved in a trace.dat, a file the user gives, or
/proc/kallsyms on the recording host. It is parsed on the first lookup, not when the trace is
opened (parsing ~200k symbols costs ~0.2 s that a report without symbols never needs), and
built once; lookups are vectorised with numpy.
"""

from __future__ import annotations

__all__ = ["Kallsyms", "MAX_KALLSYMS_BYTES"]

import re
from typing import Iterable, Optional

import numpy as np

# "ffffffff81000000 T _stext" or "... t name\t[module]": text symbols only.
_TEXT_SYMBOL = re.compile(r"^([0-9a-fA-F]+) [tTwW] (\S+)", re.MULTILINE)

#: Largest kallsyms text accepted. /proc/kallsyms of a distribution kernel with its modules
#: is 10-20 MB; anything far beyond is not a kallsyms file (or is a decompression bomb).
MAX_KALLSYMS_BYTES = 128 << 20


class Kallsyms:
    """A sorted table of text symbols with vectorised address lookup."""

    def __init__(self, addrs: np.ndarray, names: list[str], source: str = ""):
        order = np.argsort(addrs, kind="stable")
        self._addrs: Optional[np.ndarray] = np.ascontiguousarray(addrs[order], dtype=np.uint64)
        self._names: Optional[list[str]] = [names[i] for i in order]
        self._text: Optional[str] = None
        self.source = source  #: where the table came from, for the report header

    @classmethod
    def from_text(cls, text: str, source: str = "") -> "Kallsyms":
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

    def _parse(self) -> None:
        """Build the sorted table from the text (once); keeps text symbols."""
        text, self._text = self._text or "", None
        # One regex pass over the whole text: several times faster than splitting ~100k lines.
        found = _TEXT_SYMBOL.findall(text)
        addrs = np.array([int(a, 16) for a, _ in found], dtype=np.uint64)
        names = [n for _, n in found]
        keep = addrs != 0  # unprivileged reads show zeros: useless for lookup
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
    def names(self) -> list[str]:
        """Symbol names in the order of :attr:`addrs`."""
        if self._names is None:
            self._parse()
        return self._names  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.names)

    def lookup(self, addr: int) -> Optional[tuple[str, int]]:
        """``(name, offset)`` of the symbol containing ``addr``, or None below the first."""
        if not self.names:
            return None
        i = int(np.searchsorted(self.addrs, np.uint64(addr), side="right")) - 1
        if i < 0:
            return None
        return self.names[i], int(addr) - int(self.addrs[i])

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
