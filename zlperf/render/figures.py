"""The report's figures as plain data, read from the ``zlperf.report/1`` document only: what ``--html`` (plotly)
and ``--plot`` (matplotlib) draw, so both show the same numbers and neither computes anything of its own.

Figures: the timeline (contended events and wait per bin), the latency heatmap (time x log2 wait), wait and
hold log2 histograms per zone, and the waiter x holder matrix (from ``handoffs``).
"""

from __future__ import annotations

__all__ = ["Timeline", "Heatmap", "Histograms", "Matrix", "timeline", "heatmap", "histograms", "matrix",
           "bucket_label", "seconds"]

from dataclasses import dataclass
from typing import Optional

from zlperf.render.text import format_ns

#: Callers kept on each axis of the waiter x holder matrix (the rest are summed into one row/column).
MATRIX_CALLERS = 12
OTHERS = "(others)"


def seconds(ns: int) -> float:
    """A trace timestamp in seconds, as trace-cmd prints them."""
    return ns / 1e9


def bucket_label(i: int) -> str:
    """The range of log2 bucket ``i`` (index 0 is the value 0, i is [2^(i-1), 2^i - 1] ns) by its low end."""
    return "0" if i == 0 else format_ns(1 << (i - 1))


@dataclass
class Timeline:
    """Per-bin counters: ``x`` the bins' start (trace seconds; merged documents: seconds since start)."""

    x: list[float]
    bin_ns: int
    contended: list[int]  #: contended events per bin (acquisitions that waited when the ABI has no such event)
    contended_label: str
    wait_ms: Optional[list[float]]  #: wait total per bin in ms (None: the recording cannot tell)
    hold_ms: Optional[list[float]]
    merged: bool


def timeline(doc: dict) -> Timeline:
    """The document's timeline as series."""
    tl, can = doc["timeline"], doc["can_show"]
    bins = tl["bins"]
    use_events = any(b["contended_events"] for b in bins) or not can["acquisitions"]
    key = "contended_events" if use_events else "waits"
    return Timeline(
        x=[seconds(b["t_ns"]) for b in bins], bin_ns=tl["bin_ns"], contended=[b[key] for b in bins],
        contended_label="contended events" if use_events else "waits",
        wait_ms=[b["wait_sum_ns"] / 1e6 for b in bins] if can["waits"] else None,
        hold_ms=[b["hold_sum_ns"] / 1e6 for b in bins] if can["holds"] else None,
        merged=bool(doc.get("merged_from")))


@dataclass
class Heatmap:
    """Waits per (timeline bin, log2 bucket): ``z[bucket][bin]``, buckets from the first to the last non-empty."""

    x: list[float]
    buckets: list[int]
    labels: list[str]
    z: list[list[int]]


def heatmap(doc: dict) -> Optional[Heatmap]:
    """The latency heatmap, or None when the document has none (no waits, or written before it existed)."""
    bins = doc["timeline"]["bins"]
    if not bins or not doc["can_show"]["waits"] or any("wait_hist_log2" not in b for b in bins):
        return None
    hists = [b["wait_hist_log2"] for b in bins]
    used = [i for i in range(max((len(h) for h in hists), default=0)) if any(i < len(h) and h[i] for h in hists)]
    if not used:
        return None
    buckets = list(range(used[0], used[-1] + 1))
    z = [[h[i] if i < len(h) else 0 for h in hists] for i in buckets]
    return Heatmap(x=[seconds(b["t_ns"]) for b in bins], buckets=buckets, labels=[bucket_label(i) for i in buckets], z=z)


@dataclass
class Histograms:
    """Log2 histograms of one distribution (``what``: wait or hold) per zone, on common buckets."""

    what: str
    buckets: list[int]
    labels: list[str]
    zones: list[tuple[str, list[int]]]  #: (zone label, counts per bucket)


def histograms(doc: dict, what: str) -> Optional[Histograms]:
    """``what`` = "wait" or "hold": each zone's hist_log2, or None when the recording cannot tell."""
    key = f"{what}_ns"
    if not doc["can_show"][f"{what}s"]:
        return None
    zones = [(z["label"], z[key]["hist_log2"]) for z in doc["zones"] if z.get(key) and z[key]["count"]]
    used = [i for i in range(max((len(h) for _, h in zones), default=0)) if any(i < len(h) and h[i] for _, h in zones)]
    if not used:
        return None
    buckets = list(range(used[0], used[-1] + 1))
    return Histograms(what=what, buckets=buckets, labels=[bucket_label(i) for i in buckets],
                      zones=[(label, [h[i] if i < len(h) else 0 for i in buckets]) for label, h in zones])


@dataclass
class Matrix:
    """Wait (ns) and waits of each waiter caller (rows) behind each holder caller (columns)."""

    waiters: list[str]
    holders: list[str]
    wait_ns: list[list[int]]
    waits: list[list[int]]


def matrix(doc: dict) -> Optional[Matrix]:
    """The waiter x holder matrix of the document's ``handoffs`` (the callers with the most wait; the rest summed
    into OTHERS), or None when the recording cannot tell who held the lock."""
    pairs = doc.get("handoffs") or []
    if not doc.get("holders") or not pairs:
        return None

    def top(side: str) -> list[str]:
        total: dict[str, int] = {}
        for p in pairs:
            total[p[side]] = total.get(p[side], 0) + p["wait_ns_sum"]
        names = sorted(total, key=lambda k: (-total[k], k))
        return names[:MATRIX_CALLERS] + ([OTHERS] if len(names) > MATRIX_CALLERS else [])

    waiters, holders = top("waiter_caller"), top("holder_caller")
    wi, hi = {n: i for i, n in enumerate(waiters)}, {n: i for i, n in enumerate(holders)}
    wait = [[0] * len(holders) for _ in waiters]
    count = [[0] * len(holders) for _ in waiters]
    for p in pairs:
        r = wi.get(p["waiter_caller"], wi.get(OTHERS))
        c = hi.get(p["holder_caller"], hi.get(OTHERS))
        wait[r][c] += p["wait_ns_sum"]  # type: ignore[index]
        count[r][c] += p["waits"]  # type: ignore[index]
    return Matrix(waiters=waiters, holders=holders, wait_ns=wait, waits=count)
