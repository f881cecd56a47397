"""The one string interner: event strings (zone names, comms) as int32 codes into their distinct texts.

Every reader gathers a string field as a matrix of integer words (one row per event, bytes past the
string zeroed) and hands it here; :func:`encode_column` does the same for an object column.
"""

from __future__ import annotations

__all__ = ["Interner", "group_rows", "encode_column", "object_array", "expand"]

from typing import Sequence

import numpy as np

#: Distinct values peeled off with one vectorised compare each before falling back to a sort.
_PEEL = 16


def group_rows(keys: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """``(code per row, first row of each code)`` grouping equal rows of ``keys``.

    ``keys`` is 1-D (any dtype, objects too) or 2-D integer words (one row per string).
    Event strings take few distinct values: peel them off one compare at a time (of one integer
    per row when a row fits in 8 bytes), and sort only if there turn out to be many.
    """
    n = keys.shape[0]
    if keys.ndim == 2:
        row_bytes = keys.shape[1] * keys.itemsize
        if row_bytes <= 8:
            padded = np.zeros((n, 8), dtype=np.uint8)
            padded[:, :row_bytes] = np.ascontiguousarray(keys).view(np.uint8).reshape(n, row_bytes)
            flat = padded.view(np.uint64).ravel()
        else:
            flat = None
    else:
        flat = keys
    if n and flat is not None and flat.dtype != object and (flat == flat[0]).all():
        return np.broadcast_to(np.int64(0), (n,)), [0]  # one value (a zone name in a one-zone run): one pass
    local = np.full(n, -1, dtype=np.int64)
    firsts: list[int] = []
    todo = np.arange(n)
    while len(todo) and len(firsts) < _PEEL:
        first = int(todo[0])
        same = flat[todo] == flat[first] if flat is not None else (keys[todo] == keys[first]).all(axis=1)
        local[todo[same]] = len(firsts)
        firsts.append(first)
        todo = todo[~same]
    if len(todo):
        if flat is not None and flat.dtype == object:
            rest = flat[todo].astype(str)
        elif flat is not None:
            rest = flat[todo]
        else:
            rest = np.ascontiguousarray(keys[todo]).view(f"V{keys.shape[1] * keys.itemsize}").ravel()
        _, first_idx, inverse = np.unique(rest, return_index=True, return_inverse=True)
        local[todo] = len(firsts) + inverse.ravel()
        firsts.extend(int(todo[i]) for i in first_idx)
    return local, firsts


def object_array(values: Sequence) -> np.ndarray:
    """A 1-D object array holding ``values`` (never a 2-D array of characters)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def expand(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The object column ``values[codes]``. When every row has one text (a run's zone name, a comm),
    a read-only view repeating it: no per-row work (gathering object pointers costs ~10 ns a row)."""
    n = codes.shape[0]
    if n and len(values) == 1:
        return np.broadcast_to(values, (n,))
    if n and codes[0] == codes[-1] and (codes == codes[0]).all():
        return np.broadcast_to(values[codes[:1]], (n,))
    return values[codes]


class Interner:
    """The distinct texts of one string column, each decoded once, and their codes.

    Rows that differ only after the first NUL are the same text and get the same code.
    """

    def __init__(self) -> None:
        self._code_of: dict[str, int] = {}
        self._values: list[str] = []

    def rows(self, words: np.ndarray, skip: int = 0) -> np.ndarray:
        """int32 codes of string rows given as integer words (bytes past each string zeroed).

        A row's text is its bytes from byte ``skip`` up to the first NUL, decoded as UTF-8
        (invalid bytes replaced).
        """
        if words.shape[0] == 0:
            return np.zeros(0, np.int32)
        local, firsts = group_rows(words)
        remap = np.empty(len(firsts), dtype=np.int32)  # these rows' codes -> the column's codes
        for i, first in enumerate(firsts):
            text = words[first].tobytes()[skip:].split(b"\0", 1)[0].decode("utf-8", "replace")
            code = self._code_of.get(text)
            if code is None:
                code = self._code_of[text] = len(self._values)
                self._values.append(text)
            remap[i] = code
        if len(firsts) == 1:  # one text (the usual zone name of a run): no gather
            return np.full(words.shape[0], remap[0], dtype=np.int32)
        return remap[local]

    def byte_rows(self, block: np.ndarray) -> np.ndarray:
        """int32 codes of an ``(n, width)`` uint8 block of NUL-padded strings."""
        n, width = block.shape
        padded = np.zeros((n, max(8, -(-width // 8) * 8)), dtype=np.uint8)
        padded[:, :width] = block
        return self.rows(padded.view(np.uint64))

    def add(self, text: str) -> int:
        """The code of ``text`` (added when new)."""
        code = self._code_of.get(text)
        if code is None:
            code = self._code_of[text] = len(self._values)
            self._values.append(text)
        return code

    def values(self) -> np.ndarray:
        """The distinct texts in code order, as an object array."""
        return object_array(self._values)


def encode_column(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(int32 codes, object array of distinct values)`` of an object column: ``values[codes] == column``."""
    if column.shape[0] == 0:
        return np.zeros(0, np.int32), object_array([])
    local, firsts = group_rows(column)
    return local.astype(np.int32), object_array([column[i] for i in firsts])
