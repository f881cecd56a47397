"""Small numpy helpers shared by readers and the analysis."""

from __future__ import annotations

__all__ = ["distinct"]

import numpy as np


def distinct(a: np.ndarray) -> np.ndarray:
    """The sorted distinct values of 1-D ``a``: ``np.unique(a)``, without its first call importing
    numpy.ma (it asks whether ``a`` is masked), which costs a report ~0.1 s of start-up."""
    s = np.sort(np.asarray(a).ravel())
    if len(s) < 2:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]
