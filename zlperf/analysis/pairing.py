"""Per-CPU pairing of "open" and "close" events: lock -> unlock (hold), begin -> end (wait).

The lock is held with IRQs off (the patch's __zone_lock() does local_irq_save() before the trylock,
__zone_unlock() spin_unlock_irqrestore() after the event), so on one CPU an acquisition is followed
by its own release with nothing of the same lock in between. A close therefore pairs with the event
just before it on its CPU, when that is an open of the same key. Anything else is counted,
never guessed: a close with no open before it is *unmatched* (trylock paths release through
the traced unlock), an open followed by another open or by the end is *unreleased*, and either
side of a ring-buffer gap is *broken by missed events*.

Streaming: an open still waiting at the end of a chunk is carried into the next one.
"""

from __future__ import annotations

__all__ = ["OPEN", "CLOSE", "GAP", "PairResult", "Alternating", "PerCpuPairer"]

from dataclasses import dataclass
from typing import Optional

import numpy as np

OPEN, CLOSE, GAP = 1, 2, 3


@dataclass
class PairResult:
    """Row indices into the table given to :meth:`PerCpuPairer.feed` (carried rows included)."""

    table: dict[str, np.ndarray]  #: the columns actually paired: carried rows + this chunk (as given)
    open_idx: np.ndarray  #: opens that were closed... (rows in stream order, per CPU)
    close_idx: np.ndarray  #: ...by these closes (same length)
    unmatched_close: np.ndarray  #: closes with no open before them
    unreleased_open: np.ndarray  #: opens followed by another open (or, at finish, the end)
    broken_close: np.ndarray  #: closes right after a gap (their open may have been lost)
    broken_open: np.ndarray  #: opens right before a gap (their close may have been lost)


@dataclass
class Alternating:
    """A chunk of one CPU whose opens and closes alternate, open first (every acquisition released before
    the next): close ``first + k`` pairs with open ``k`` for k < ``pairs``; the opens after those wait for
    the next chunk (at most one). Nothing is unmatched, unreleased or broken."""

    carried: Optional[dict[str, np.ndarray]]  #: the open carried in from the last chunk (one row), or None
    first: int  #: 1 when ``carried`` pairs with close 0, else 0
    pairs: int  #: opens paired within the chunk


class PerCpuPairer:
    """Pairs OPEN/CLOSE rows per CPU and key across a stream of chunks.

    Each table fed is a dict of equal-length columns with at least ``kind`` (OPEN, CLOSE,
    GAP), ``cpu``, ``seq`` and ``key`` (GAP rows: any key). Other columns ride along so that
    results can be read from ``PairResult.table``.
    """

    def __init__(self) -> None:
        self._carry: dict[str, np.ndarray] | None = None  # pending opens, one row per CPU at most

    def feed_alternating(self, opens: dict[str, np.ndarray], closes: dict[str, np.ndarray],
                         pending: dict[str, np.ndarray]) -> Optional[Alternating]:
        """Pair one CPU's chunk without a table of both sides, when it is the usual strict alternation
        (what :meth:`feed` would find, found with a few compares); None otherwise (nothing is changed: call
        :meth:`feed`). ``opens``/``closes``: columns ``cpu``, ``seq``, ``key`` in stream order, one CPU, no
        gap between them; ``pending``: ``opens``' last row as a :meth:`feed` table row, carried when unpaired.
        """
        o_seq, c_seq = opens["seq"], closes["seq"]
        n_o, n_c = len(o_seq), len(c_seq)
        if not n_o or not n_c:
            return None
        cpu = opens["cpu"][0]
        if (opens["cpu"] != cpu).any() or (closes["cpu"] != cpu).any():
            return None
        carry, carried = self._carry, None
        if carry is not None and len(carry["kind"]):
            mine = carry["cpu"] == cpu
            if mine.any():
                row = int(np.flatnonzero(mine)[0])
                carried = {k: v[row:row + 1] for k, v in carry.items()}
        first = 1 if carried is not None else 0
        pairs = n_c - first
        if pairs not in (n_o, n_o - 1):  # one open left waiting at most
            return None
        if carried is not None:  # close 0 releases the carried open, before this chunk's first open
            if not (carried["seq"][0] < c_seq[0] < o_seq[0] and carried["key"][0] == closes["key"][0]):
                return None
        cs = c_seq[first:]
        if not ((o_seq[:pairs] < cs).all() and (cs[: n_o - 1] < o_seq[1:pairs + 1]).all()
                and (opens["key"][:pairs] == closes["key"][first:]).all()):
            return None
        if carry is not None and carried is not None:
            keep = carry["cpu"] != cpu
            carry = {k: v[keep] for k, v in carry.items()}
        if pairs < n_o:  # the last open waits for the next chunk
            carry = pending if carry is None else {k: np.concatenate([carry[k], pending[k]]) for k in carry}
        self._carry = carry
        return Alternating(carried, first, pairs)

    def feed(self, table: dict[str, np.ndarray], final: bool = False) -> PairResult:
        """Pair one chunk's rows; with ``final`` the still-open rows count as unreleased."""
        if self._carry is not None and len(self._carry["kind"]):
            table = {k: np.concatenate([self._carry[k], table[k]]) for k in table}
        cpu_col = table["cpu"]
        if len(cpu_col) and (cpu_col == cpu_col[0]).all():
            # One CPU (the fast reader's chunks): merging its few already-sorted runs is cheap.
            order = np.argsort(table["seq"], kind="stable")
        else:
            order = np.lexsort((table["seq"], cpu_col))
        # Only the columns the pairing reads are put in order; results index the table as given.
        kind, cpu, key = table["kind"][order], table["cpu"][order], table["key"][order]
        n = len(kind)

        same_cpu_prev = np.zeros(n, dtype=bool)
        same_cpu_prev[1:] = cpu[1:] == cpu[:-1]
        prev_kind = np.zeros(n, dtype=kind.dtype)
        prev_kind[1:] = kind[:-1]
        prev_kind[~same_cpu_prev] = 0
        same_key_prev = np.zeros(n, dtype=bool)
        same_key_prev[1:] = key[1:] == key[:-1]

        is_close = kind == CLOSE
        paired_close = is_close & (prev_kind == OPEN) & same_key_prev
        broken_close = is_close & (prev_kind == GAP)
        unmatched_close = is_close & ~paired_close & ~broken_close

        next_kind = np.zeros(n, dtype=kind.dtype)
        next_kind[:-1] = np.where(same_cpu_prev[1:], kind[1:], 0)
        is_open = kind == OPEN
        paired_open = np.zeros(n, dtype=bool)
        paired_open[:-1] = paired_close[1:]
        broken_open = is_open & (next_kind == GAP)
        last_of_cpu = next_kind == 0  # nothing after it on this CPU in this chunk
        pending = is_open & last_of_cpu & ~paired_open
        unreleased = is_open & ~paired_open & ~broken_open & ~pending

        if final:
            unreleased |= pending
            self._carry = None
        else:
            keep = order[pending]
            self._carry = {k: v[keep] for k, v in table.items()}

        close_idx = np.flatnonzero(paired_close)
        return PairResult(
            table=table,
            open_idx=order[close_idx - 1],
            close_idx=order[close_idx],
            unmatched_close=order[np.flatnonzero(unmatched_close)],
            unreleased_open=order[np.flatnonzero(unreleased)],
            broken_close=order[np.flatnonzero(broken_close)],
            broken_open=order[np.flatnonzero(broken_open)],
        )
