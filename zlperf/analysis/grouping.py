"""Grouping rows by key without sorting every chunk: dense codes for keys, radix-sorted splits.

Keys (caller addresses, pids, zone codes, CPUs) have few distinct values next to the number
of events, so they are mapped to small dense codes with a binary search in a sorted table
of the keys seen so far (new keys are rare and are added as they come). Small codes then
group with bincount (counts) or a stable argsort that numpy does as a radix sort for
16-bit integers (row indices per group).
"""

from __future__ import annotations

__all__ = ["KeyCoder", "split_by_code"]

from typing import Iterator

import numpy as np

from zlperf.arrays import distinct


_DIRECT_LIMIT = 1 << 22  # keys below this (CPUs, pids up to pid_max, zone codes) use a direct table
_PEEL_KEYS = 8  # up to this many distinct keys (or groups), rows are matched by one compare per key


class KeyCoder:
    """Maps integer keys to dense codes 0..n-1, new keys numbered as they first appear."""

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype=np.int64)  # known keys, sorted (as int64 bit patterns)
        self._sorted_codes = np.empty(0, dtype=np.int64)
        self.keys: list[int] = []  #: code -> key, as Python ints
        self._direct: "np.ndarray | None" = None  # key -> code for small keys (see _encode_small)
        self._small = True  # until a key does not fit the direct table

    def __len__(self) -> int:
        return len(self.keys)

    def encode(self, keys: np.ndarray) -> np.ndarray:
        """Dense int64 codes of ``keys`` (any integer dtype; uint64 keys keep their value)."""
        if self._small and len(keys) and keys.dtype.itemsize <= 4 and keys.dtype.kind in "iu":
            lo, hi = int(keys.min()), int(keys.max())
            if lo >= 0 and hi < _DIRECT_LIMIT:
                if lo == hi and self._direct is not None and hi < len(self._direct) and self._direct[hi] >= 0:
                    return np.full(len(keys), self._direct[hi], dtype=np.int64)  # one CPU's chunk: no gather
                return self._encode_small(keys, hi)
        if self._small:
            self._leave_small_mode()
        unsigned = keys.dtype.kind == "u" and keys.dtype.itemsize == 8
        k = keys.view(np.int64) if unsigned else keys.astype(np.int64, copy=False)
        codes = self._lookup(k)
        missing = codes < 0
        if missing.any():
            new = distinct(k[missing])
            for value in new.tolist():
                self.keys.append(int(np.int64(value).view(np.uint64)) if unsigned else int(value))
            base = len(self.keys) - len(new)
            merged = np.concatenate([self._sorted, new])
            merged_codes = np.concatenate([self._sorted_codes, np.arange(base, base + len(new))])
            order = np.argsort(merged, kind="stable")
            self._sorted, self._sorted_codes = merged[order], merged_codes[order]
            codes = self._lookup(k)
        return codes

    def _leave_small_mode(self) -> None:
        """A key that does not fit the direct table: move what is known to the sorted table."""
        self._small = False
        self._direct = None
        if self.keys:
            known = np.array(self.keys, dtype=np.int64)
            order = np.argsort(known, kind="stable")
            self._sorted, self._sorted_codes = known[order], order.astype(np.int64)

    def _encode_small(self, keys: np.ndarray, hi: int) -> np.ndarray:
        """CPUs, pids and zone codes: small non-negative ints index a direct table (no search)."""
        if self._direct is None or hi >= len(self._direct):
            grown = np.full(max(hi + 1, 2 * (0 if self._direct is None else len(self._direct)), 64), -1, np.int64)
            if self._direct is not None:
                grown[: len(self._direct)] = self._direct
            self._direct = grown
        codes = self._direct[keys]
        missing = codes < 0
        if missing.any():
            for value in distinct(keys[missing]).tolist():
                self._direct[value] = len(self.keys)
                self.keys.append(int(value))
            codes = self._direct[keys]
        return codes

    def _lookup(self, k: np.ndarray) -> np.ndarray:
        if len(self._sorted) <= _PEEL_KEYS:  # a few callers: a compare per key beats a binary search per row
            codes = np.full(len(k), -1, dtype=np.int64)
            for key, code in zip(self._sorted.tolist(), self._sorted_codes.tolist()):
                codes[k == key] = code
            return codes
        pos = np.searchsorted(self._sorted, k)
        pos = np.minimum(pos, len(self._sorted) - 1)
        return np.where(self._sorted[pos] == k, self._sorted_codes[pos], -1)


def split_by_code(codes: np.ndarray, n_codes: int) -> Iterator[tuple[int, "np.ndarray | slice"]]:
    """(code, row indices) for each code present, rows in their original order (a slice of all rows when
    one code is present: indexing with it is a view, not a copy)."""
    if len(codes) == 0:
        return iter(())
    counts = np.bincount(codes, minlength=n_codes)
    present = np.flatnonzero(counts)
    if len(present) == 1:  # one group (a chunk is one CPU's): every row, no copy
        return iter([(int(present[0]), slice(None))])
    if len(present) <= _PEEL_KEYS:  # a few groups: one compare each beats a sort
        return ((int(c), np.flatnonzero(codes == c)) for c in present.tolist())
    small = codes.astype(np.int16) if n_codes < 32768 else codes
    order = np.argsort(small, kind="stable")  # radix sort for 16-bit keys
    ends = np.cumsum(counts[present])
    starts = ends - counts[present]
    return ((int(c), order[s:e]) for c, s, e in zip(present, starts, ends))
