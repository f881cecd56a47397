"""The live features' columns of the lab's peer table: ``zlperf top`` blocks and one ``zlperf exporter`` scrape.

lab/guest/peers.py --live keeps both running from before the recording until the workload is gone, every
peer filtered on the workload's comm, so their totals cover every event the other peers counted. What each
can be compared on:

- top (plain blocks, one per interval): the WAITS column per zone, exact, summed over the blocks, and the
  holder line of each block (waits, not traced, handed off). CONT/s and ACQ/s are rates rounded to 0.1/s,
  which do not give the counts back exactly: they are not compared.
- exporter: contended events and acquisitions per zone, waits per zone (the wait histograms' _count), holds
  per zone (the hold histogram's _count: releases paired with their acquisition) and the wait buckets. Its
  buckets are Prometheus ``le`` bounds, (2^(k-1), 2^k]; the table's are [2^(k-1), 2^k): the same unless a
  wait is exactly a power of two, which :func:`power_of_two_waits` lets the table call out.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

__all__ = ["top_counts", "exporter_counts", "parse_prometheus", "power_of_two_waits", "borderline_waits",
           "STAMP_SLACK_NS", "LivePeerError"]

Row = Tuple[str, str]
#: How far apart two tracefs instances may stamp the same event under TCG: each instance reserves its own copy
#: in turn (a release 6 us from a wait's start flipped top's attribution in a lab run; shifting the recording's
#: releases by 7 us reproduces it). Waits with a release this close to their start or end are borderline.
STAMP_SLACK_NS = 20_000
CONTENDED, LOCKED, UNLOCK = "mm_zone_lock_contended", "mm_zone_locked", "mm_zone_lock_unlock"


class LivePeerError(Exception):
    """A live peer's output is missing or not what it prints; the message names the file."""


def _bucket_label(k: int) -> str:
    from lab_peers import bucket_label  # one labelling for every column

    return bucket_label(k)


_HOLDER_LINE = re.compile(r"^(\d+) of (\d+) waits behind a holder without tracepoints \(not traced\); "
                          r"(\d+) handed off")
_LOST = re.compile(r"\blost (\d+) events")


def top_counts(path: Path) -> Tuple[Dict[Row, int], int, List[str]]:
    """(rows, blocks, notes) from ``zlperf top --plain`` output: WAITS per zone and the holder lines summed."""
    if not path.exists():
        raise LivePeerError(f"{path}: missing (zlperf top did not run)")
    out: Counter = Counter()
    notes: List[str] = []
    blocks = 0
    section = None
    header: List[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("zlperf top "):
            blocks += 1
            section = None
            lost = _LOST.search(line)
            if lost and int(lost.group(1)):
                notes.append(f"zlperf top: interval {blocks} lost {lost.group(1)} events")
            continue
        if not line.strip():
            section = None
            continue
        cells = re.split(r"\s{2,}", line.strip())
        if section is None:
            section, header = cells[0], cells
            continue
        if section == "ZONE" and "WAITS" in header and len(cells) == len(header):
            waits = cells[header.index("WAITS")]
            if waits != "-":
                out[(f"{LOCKED} contended=1", cells[0])] += int(waits)
        m = _HOLDER_LINE.match(line.strip())
        if m:
            out[("holders: not traced", "all")] += int(m.group(1))
            out[("holders: waits", "all")] += int(m.group(2))
            out[("holders: handed off", "all")] += int(m.group(3))
    if not blocks:
        raise LivePeerError(f"{path}: no interval blocks")
    return dict(out), blocks, notes


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> List[Tuple[str, Dict[str, str], float]]:
    """Samples of a Prometheus text exposition: (name, labels, value); comments skipped."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line.strip())
        if not m:
            raise LivePeerError(f"not a Prometheus sample line: {line!r}")
        name, labels, value = m.groups()
        out.append((name, dict(_LABEL.findall(labels or "")), float(value)))
    return out


def exporter_counts(path: Path) -> Tuple[Dict[Row, int], List[str]]:
    """(rows, notes) from one scrape of ``zlperf exporter`` (exporter.prom)."""
    if not path.exists():
        raise LivePeerError(f"{path}: missing (the exporter was not scraped)")
    out: Counter = Counter()
    notes: List[str] = []
    cumulative: Dict[Tuple[str, str], List[Tuple[float, int]]] = {}
    for name, labels, value in parse_prometheus(path.read_text()):
        n = int(round(value))
        zone = labels.get("zone", "")
        if name == "zlperf_zone_lock_contended_events_total":
            out[(CONTENDED, zone)] += n
        elif name == "zlperf_zone_lock_acquisitions_total":
            out[("acquisitions", zone)] += n
        elif name == "zlperf_zone_lock_wait_seconds_count":
            out[(f"{LOCKED} contended=1", zone)] += n
            out[("holders: waits", "all")] += n
        elif name == "zlperf_zone_lock_hold_seconds_count":
            out[(UNLOCK, zone)] += n
        elif name == "zlperf_zone_lock_wait_seconds_bucket":
            le = math.inf if labels["le"] == "+Inf" else float(labels["le"])
            cumulative.setdefault((zone, labels.get("caller", "")), []).append((le, n))
        elif name == "zlperf_events_lost_total" and n:
            notes.append(f"zlperf exporter: the kernel lost {n} events before it read them")
    for series in cumulative.values():
        prev = 0
        for le, n in sorted(series):
            if n - prev and le != math.inf:
                k = int(round(math.log2(le * 1e9)))  # le = 2^k ns: (2^(k-1), 2^k]
                out[("wait_ns", _bucket_label(k))] += n - prev
            elif n - prev:
                out[("wait_ns", "+Inf")] += n - prev
            prev = n
    for (what, zone), n in list(out.items()):  # acquisitions = uncontended + contended
        if what == "acquisitions":
            out[(f"{LOCKED} contended=0", zone)] += n - out.get((f"{LOCKED} contended=1", zone), 0)
            del out[(what, zone)]
    return dict(out), notes


def power_of_two_waits(waits: Iterable[int]) -> int:
    """How many waits are exactly a power of two ns (the only values whose bucket differs between ``le``
    buckets and half-open ones)."""
    return sum(1 for w in waits if w > 0 and w & (w - 1) == 0)


def borderline_waits(events: Sequence, slack_ns: int = STAMP_SLACK_NS) -> int:
    """Contended acquisitions (lab_peers.Event) whose holder attribution can flip between separately stamped
    copies of the same events: another CPU's release of the zone within ``slack_ns`` of the wait's start
    (locked ts - wait_ns: holder or not traced) or of its end (locked ts: which release is the latest)."""
    releases: Dict[str, List[Tuple[int, int]]] = {}
    for e in events:
        if e.name == UNLOCK:
            releases.setdefault(e.zone, []).append((e.ts, e.cpu))
    times = {z: [t for t, _ in r] for z, r in releases.items()}
    n = 0
    for e in events:
        if e.name != LOCKED or not e.contended:
            continue
        rel, ts = releases.get(e.zone, []), times.get(e.zone, [])
        near = False
        for edge in (e.ts - e.wait, e.ts):
            i = bisect.bisect_left(ts, edge - slack_ns)
            while i < len(ts) and ts[i] <= edge + slack_ns and not near:
                near = rel[i][1] != e.cpu
                i += 1
        n += near
    return n
