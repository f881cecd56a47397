"""The lab's peer table: zlperf beside trace-cmd, bpftrace and hist triggers, over one window.

lab/guest/peers.py leaves one folder per kmem profile: the recording (`zlperf record`, the profile on the
mono trace clock), bpftrace's JSON maps and the hist triggers' text, both keyed by slots of CLOCK_MONOTONIC
(the clock of the recording's timestamps too). Here, on the host:

- The window: whole slots [since, until) inside the recording. Its edges are the slot boundaries of the
  workload's idle lead-in and lead-out farthest from any recorded event: each peer stamps an event on its
  own (bpftrace in its probe, the hist trigger in its instance's buffer, the recording in the top buffer),
  a little apart, so no event may lie near an edge. The distance is printed with the table.
- trace-cmd: the host's `trace-cmd report -t` of the recording, events in the window parsed here; the
  holder attribution recomputed from that text by the rules in zlperf/analysis/holders.py.
- zlperf: this checkout's `zlperf report --json --since S --until U` (U = until - 1 ns: --until is inclusive).
- bpftrace and the hist triggers: their slots inside the window, summed.

Rows: per event and zone (mm_zone_locked split by its contended flag), waits by log2 bucket, and the
holder attribution. A row is compared when the profile records its event; the table fails when zlperf
differs from any peer on any row.

The live task's folder (peers.py --live --comm zl-workload) adds ``zlperf top`` and ``zlperf exporter``
columns (lab_live.py). Every peer there counts only the workload's tasks, all of which run inside every
peer's lifetime, so that table compares whole-run totals instead of a window.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import lab_live

__all__ = ["SLOT_NS", "PEERS", "LIVE_PEERS", "PeerTable", "peer_table", "choose_window", "held_intervals",
           "bucket_label",
           "parse_trace_cmd", "parse_hist", "bpftrace_counts", "hist_counts", "trace_cmd_counts", "zlperf_counts",
           "render", "as_json", "PeerError"]

REPO = Path(__file__).resolve().parent.parent
SLOT_NS = 50_000_000  #: slot width of the peers' keys (lab/guest/peers.py --slot-ns)
QUIET_NS = 1_000_000  #: an edge nearer than this to a recorded event is called out
PEERS = ["trace-cmd", "zlperf", "bpftrace", "hist trigger"]
#: The live task's table: the live features beside the recording (lab_live.py parses their output).
LIVE_PEERS = ["trace-cmd", "zlperf", "zlperf top", "zlperf exporter", "bpftrace", "hist trigger"]

CONTENDED, LOCKED, UNLOCK = "mm_zone_lock_contended", "mm_zone_locked", "mm_zone_lock_unlock"
PROFILE_EVENTS = {"minimal": (CONTENDED,), "wait-time": (CONTENDED, LOCKED), "hold-time": (CONTENDED, LOCKED, UNLOCK)}
Row = Tuple[str, str]  # (what, zone label or bucket)


class PeerError(Exception):
    """A peer's output is missing or unreadable; the message names the file."""


@dataclass
class Event:
    ts: int
    cpu: int
    name: str
    zone: str
    contended: bool = False
    wait: int = 0


@dataclass
class Window:
    since: int  #: ns, inclusive
    until: int  #: ns, exclusive
    gap_since: int  #: distance from ``since`` to the nearest recorded event
    gap_until: int
    whole: bool = False  #: the whole run (the live task), not a window of it

    @classmethod
    def whole_run(cls) -> "Window":
        """Every event: the live task compares totals over each peer's lifetime."""
        return cls(0, 1 << 63, 1 << 62, 1 << 62, whole=True)


@dataclass
class PeerTable:
    profile: str
    window: Window
    rows: List[Row]
    values: Dict[str, Dict[Row, int]]  #: peer -> row -> count (rows a peer cannot count are absent)
    compared: List[Row]
    mismatches: List[Tuple[Row, str, int, int]]  #: (row, peer, zlperf's, the peer's)
    notes: List[str]
    zlperf_cmd: str
    peers: List[str] = None  # type: ignore[assignment]  #: the columns (PEERS unless the live task)
    #: cells that differ from zlperf by no more than the waits a few microseconds can flip (see the notes)
    tolerated: List[Tuple[Row, str, int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.peers is None:
            self.peers = list(PEERS)

    @property
    def ok(self) -> bool:
        return not self.mismatches and bool(self.compared)


def bucket_label(k: int) -> str:
    """bcc/bpftrace-style label of log2 bucket ``k`` (0: the value 0; k: [2^(k-1), 2^k))."""
    if k == 0:
        return "[0]"

    def unit(v: int) -> str:
        for suffix, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
            if v >= size and v % size == 0:
                return f"{v // size}{suffix}"
        return str(v)
    return f"[{unit(1 << (k - 1))}]" if k == 1 else f"[{unit(1 << (k - 1))}, {unit(1 << k)})"


def _bucket(v: int) -> int:
    return int(v).bit_length()


# ---------------------------------------------------------------- trace-cmd (the host's report text)

_LINE = re.compile(r"^\s*.*?-\d+\s+\[(\d+)\]\s+(\d+)\.(\d+):\s+(mm_zone_lock_contended|mm_zone_locked|"
                   r"mm_zone_lock_unlock):\s+node=(\d+) zone=(\S+)\s+count=\s*-?\d+\s+(.*)$")
_LOST = re.compile(r"\[LOST (\d+|\?+) EVENTS?\]|CPU \d+ buffer overflow|lost events", re.I)


def parse_trace_cmd(path: Path) -> Tuple[List[Event], int]:
    """(every kmem zone-lock event of ``path`` in printed order, lines about lost events) from `trace-cmd report -t`."""
    r = subprocess.run(["trace-cmd", "report", "-t", "-i", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise PeerError(f"{path}: trace-cmd report failed: {r.stderr.strip()[-300:]}")
    events, lost = [], 0
    for line in r.stdout.splitlines():
        m = _LINE.match(line)
        if not m:
            lost += bool(_LOST.search(line))
            continue
        cpu, secs, frac, name, node, zone, rest = m.groups()
        if len(frac) != 9:
            raise PeerError(f"{path}: trace-cmd report -t printed {frac!r}: expected ns timestamps")
        ev = Event(int(secs) * 1_000_000_000 + int(frac), int(cpu), name, f"{node}:{zone}")
        if name == LOCKED:
            f = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
            ev.contended, ev.wait = f.get("contended") == "1", int(f.get("wait", 0))
        events.append(ev)
    return events, lost


def held_intervals(events: List[Event]) -> List[Tuple[int, int]]:
    """(locked ts, unlock ts) of every hold seen (the unlock pairs with the locked event before it on its CPU)."""
    last: Dict[int, Event] = {}
    out = []
    for e in events:
        if e.name == LOCKED:
            last[e.cpu] = e
        elif e.name == UNLOCK:
            prev = last.pop(e.cpu, None)
            if prev is not None and prev.zone == e.zone:
                out.append((prev.ts, e.ts))
    return sorted(out)


def choose_window(times: Sequence[int], workload: dict, slot_ns: int,
                  held: Sequence[Tuple[int, int]] = ()) -> Window:
    """The slot-aligned window whose edges lie in the idle lead-in / lead-out, each as far as possible from
    every recorded event (``times`` sorted) and never while a lock is held (``held``: sorted intervals), so
    that an acquisition and its release are on the same side."""
    mono = workload["mono_ns"]
    starts = [a for a, _ in held]
    reach, m = [], -1  # reach[i]: the latest release of the holds starting at or before starts[i]
    for _, b in held:
        m = max(m, b)
        reach.append(m)

    def boundaries(lo: int, hi: int) -> range:
        return range(-(-lo // slot_ns) * slot_ns, hi + 1, slot_ns)

    def gap(x: int) -> int:
        i = bisect.bisect_left(starts, x) - 1
        if i >= 0 and reach[i] > x:
            return -1  # a lock is held across x
        i = bisect.bisect_left(times, x)
        near = [abs(times[j] - x) for j in (i - 1, i) if 0 <= j < len(times)]
        return min(near) if near else 1 << 62

    starts_c, ends_c = boundaries(mono["start"], mono["work_start"]), boundaries(mono["work_end"], mono["end"])
    if not starts_c or not ends_c:
        raise PeerError(f"no {slot_ns / 1e6:g} ms slot boundary in the workload's lead-in or lead-out "
                        f"({(mono['work_start'] - mono['start']) / 1e9:.3f} s / {(mono['end'] - mono['work_end']) / 1e9:.3f} s):"
                        " give a longer --lead")
    since = max(starts_c, key=lambda x: (gap(x), x))
    until = max(ends_c, key=lambda x: (gap(x), -x))
    if gap(since) < 0 or gap(until) < 0:
        raise PeerError("a zone lock was held across every slot boundary of the lead-in or lead-out: rerun the task")
    return Window(since, until, gap(since), gap(until))


def trace_cmd_counts(events: List[Event], w: Window) -> Dict[Row, int]:
    """Rows from the report text: events in the window, waits, and the holder attribution recomputed."""
    out: Counter = Counter()
    for e in events:
        if not w.since <= e.ts < w.until:
            continue
        what = e.name if e.name != LOCKED else f"{LOCKED} contended={int(e.contended)}"
        out[(what, e.zone)] += 1
        if e.name == LOCKED and e.contended:
            out[("wait_ns", bucket_label(_bucket(e.wait)))] += 1
    if any(e.name == UNLOCK for e in events):
        out.update(_holders(events, w))
    return dict(out)


def _holders(events: List[Event], w: Window) -> Dict[Row, int]:
    """zlperf/analysis/holders.py's rules as plain loops: a release pairs with the locked event just before it
    on its CPU; a wait's holder is the latest release of its zone on another CPU at or before it, unless
    that release is older than the wait began (then: not traced). Releases from the whole recording."""
    last: Dict[int, Optional[Event]] = {}
    releases: Dict[str, List[Tuple[int, int, Optional[Event]]]] = defaultdict(list)  # zone -> (ts, cpu, acquisition)
    waits = []
    for e in events:  # printed order: by time, ties by CPU
        if e.name == LOCKED:
            if e.contended and w.since <= e.ts < w.until:
                waits.append(e)
            last[e.cpu] = e
        elif e.name == UNLOCK:
            prev = last.get(e.cpu)
            releases[e.zone].append((e.ts, e.cpu, prev if prev is not None and prev.zone == e.zone else None))
            last[e.cpu] = None
    times = {z: [r[0] for r in rel] for z, rel in releases.items()}
    not_traced = handed_off = 0
    for wt in waits:
        rel = releases.get(wt.zone, [])
        j = bisect.bisect_right(times.get(wt.zone, []), wt.ts) - 1
        while j >= 0 and rel[j][1] == wt.cpu:
            j -= 1
        if j < 0 or rel[j][0] < wt.ts - wt.wait:
            not_traced += 1
        elif rel[j][2] is not None and rel[j][2].contended:
            handed_off += 1
    return {("holders: waits", "all"): len(waits), ("holders: not traced", "all"): not_traced,
            ("holders: handed off", "all"): handed_off}


# ---------------------------------------------------------------- zlperf (this checkout)

def zlperf_counts(path: Path, w: Window, events: Sequence[str]) -> Tuple[Dict[Row, int], dict, str]:
    """Rows from `zlperf report --json` over the window (the document, and the command line)."""
    def secs(ns: int) -> str:
        return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"
    span = [] if w.whole else ["--since", secs(w.since), "--until", secs(w.until - 1)]
    argv = [sys.executable, "-m", "zlperf", "report", "--json", *span, str(path.resolve())]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env)
    if r.returncode != 0:
        raise PeerError(f"{path}: zlperf report failed: {r.stderr.strip()[-500:]}")
    doc = json.loads(r.stdout)
    out: Counter = Counter()
    for z in doc["zones"]:
        zone = f"{z['node']}:{z['zone']}"
        if CONTENDED in events:
            out[(CONTENDED, zone)] += z["contended_events"] or 0
        if LOCKED in events:
            out[(f"{LOCKED} contended=0", zone)] += (z["acquisitions"] or 0) - (z["contended"] or 0)
            out[(f"{LOCKED} contended=1", zone)] += z["contended"] or 0
        if UNLOCK in events:  # unlocks in the window: paired holds (by acquisition time) + unpaired unlocks
            out[(UNLOCK, zone)] += (z["hold_ns"] or {}).get("count", 0) + (z["unmatched_unlocks"] or 0)
    if LOCKED in events:
        for k, n in enumerate((doc["totals"]["wait_ns"] or {}).get("hist_log2", [])):
            if n:
                out[("wait_ns", bucket_label(k))] += n
    h = doc.get("holders")
    if h:
        out[("holders: waits", "all")] = h["waits"]
        out[("holders: not traced", "all")] = h["not_traced"]
        out[("holders: handed off", "all")] = h["handed_off"]
    cmd = " ".join(["zlperf", "report", "--json", *span, path.name])
    return dict(out), doc, cmd


# ---------------------------------------------------------------- bpftrace and the hist triggers

def _in(slot_start: int, w: Window) -> bool:
    return w.since <= slot_start < w.until


def bpftrace_counts(path: Path, w: Window, slot_ns: int) -> Dict[Row, int]:
    """Rows from bpftrace's JSON output (``-f json``): the selftest's maps, slots inside the window."""
    maps: dict = {}
    for line in path.read_text().splitlines():
        if line.strip():
            doc = json.loads(line)
            if doc.get("type") in ("map", "hist"):
                maps.update(doc["data"])
    if not any(m in maps for m in ("@contended", "@locked", "@unlock")):
        raise PeerError(f"{path}: no bpftrace maps (did bpftrace exit on SIGINT?)")
    out: Counter = Counter()
    for name, what in (("@contended", CONTENDED), ("@unlock", UNLOCK)):
        for key, n in maps.get(name, {}).items():
            node, zone, slot = key.split(",")
            if _in(int(slot) * slot_ns, w):
                out[(what, f"{node}:{zone}")] += n
    for key, n in maps.get("@locked", {}).items():
        node, zone, contended, slot = key.split(",")
        if _in(int(slot) * slot_ns, w):
            c = 1 if contended in ("1", "true") else 0
            out[(f"{LOCKED} contended={c}", f"{node}:{zone}")] += n
            if c:
                out[("holders: waits", "all")] += n
    for slot, buckets in maps.get("@wait_ns", {}).items():
        if _in(int(slot) * slot_ns, w):
            for b in buckets:
                out[("wait_ns", bucket_label(_bucket(b["min"])))] += b["count"]
    return dict(out)


_HIST_ENTRY = re.compile(r"^\{(.*)\}\s+hitcount:\s*(\d+)\s*$")


def parse_hist(text: str) -> List[Tuple[str, List[dict], int]]:
    """A tracefs ``hist`` file -> [(trigger, [{key: value}], dropped)], one per hist trigger on the event."""
    out: List[Tuple[str, List[dict], int]] = []
    for block in text.split("# event histogram")[1:]:
        m = re.search(r"^# trigger info: (.*?)(?: \[active\])?\s*$", block, re.M)
        if not m:
            continue
        entries = []
        for line in block.splitlines():
            e = _HIST_ENTRY.match(line.strip())
            if not e:
                continue
            keys = {}
            for k, v in re.findall(r"(\w+):\s*(~\s*\d+-\d+|\S+?)\s*(?:,|$)", e.group(1)):
                keys[k] = int(v.lstrip("~ ").split("-")[0]) if v.startswith("~") else v
            keys["hitcount"] = int(e.group(2))
            entries.append(keys)
        dropped = re.search(r"Dropped:\s*(\d+)", block)
        out.append((m.group(1), entries, int(dropped.group(1)) if dropped else 0))
    return out


def hist_counts(folder: Path, w: Window) -> Dict[Row, int]:
    """Rows from the hist triggers (hist-EVENT.txt): keys common_timestamp slot, node_id, name or wait_ns."""
    out: Counter = Counter()
    for event in (CONTENDED, LOCKED, UNLOCK):
        path = folder / f"hist-{event}.txt"
        if not path.exists():
            raise PeerError(f"{path}: missing (the hist-trigger peer did not finish)")
        for trigger, entries, dropped in parse_hist(path.read_text()):
            if dropped:
                raise PeerError(f"{path}: hist trigger {trigger!r} dropped {dropped} entries (raise its size=)")
            if ":clock=mono" not in trigger:  # a hist trigger stamps with its own clock= (default global)
                raise PeerError(f"{path}: hist trigger {trigger!r} is not on the mono clock")
            c = re.search(r"if contended == (\d)", trigger)
            for e in entries:
                if not _in(int(e["common_timestamp"]), w):
                    continue
                n = e["hitcount"]
                if "wait_ns" in e:
                    out[("wait_ns", bucket_label(_bucket(int(e["wait_ns"]))))] += n
                    continue
                zone = f"{e['node_id']}:{e['name']}"
                if event == LOCKED:
                    out[(f"{LOCKED} contended={c.group(1)}", zone)] += n
                    if c.group(1) == "1":
                        out[("holders: waits", "all")] += n
                else:
                    out[(event, zone)] += n
    return dict(out)


# ---------------------------------------------------------------- the table

_HOLDER_ONLY = ("holders: not traced", "holders: handed off")
#: The rows each peer can count (absent: every row). The in-kernel peers count waits but cannot attribute
#: holders; top's exact numbers are its WAITS column and holder lines; the exporter has no holder attribution.
_CAN = {
    "bpftrace": [k for k in (CONTENDED, f"{LOCKED} contended=0", f"{LOCKED} contended=1", UNLOCK, "wait_ns",
                             "holders: waits")],
    "zlperf top": [f"{LOCKED} contended=1", "holders: waits", *_HOLDER_ONLY],
    "zlperf exporter": [CONTENDED, f"{LOCKED} contended=0", f"{LOCKED} contended=1", UNLOCK, "wait_ns",
                        "holders: waits"],
}
_CAN["hist trigger"] = _CAN["bpftrace"]

def _row_order(row: Row) -> tuple:
    what, label = row
    order = [CONTENDED, f"{LOCKED} contended=0", f"{LOCKED} contended=1", UNLOCK, "wait_ns",
             "holders: waits", "holders: not traced", "holders: handed off"]
    bucket = 0
    if what == "wait_ns":
        bucket = -1 if label == "[0]" else _bucket(_parse_unit(label.strip("[)").split(",")[0]))
    return (order.index(what) if what in order else 99, bucket, label)


def _parse_unit(s: str) -> int:
    s = s.strip()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    return int(s[:-1] if mult > 1 else s) * mult


def peer_table(folder: Path, profile: str, slot_ns: int = SLOT_NS, live: bool = False) -> PeerTable:
    """Compare zlperf with every peer over one window of the peers-PROFILE ``folder`` (``live``: the live
    task's folder, whole-run totals, with the zlperf top and exporter columns)."""
    events_recorded = PROFILE_EVENTS[profile]
    rec = folder / f"{profile}.dat"
    for need in (rec, folder / "workload.json", folder / "bpftrace.json"):
        if not need.exists():
            raise PeerError(f"{need}: missing (see {folder}/peers.log)")
    workload = json.loads((folder / "workload.json").read_text())
    events, lost = parse_trace_cmd(rec)
    w = Window.whole_run() if live else choose_window(sorted(e.ts for e in events), workload, slot_ns,
                                                      held_intervals(events))
    zl, doc, cmd = zlperf_counts(rec, w, events_recorded)
    values = {"trace-cmd": trace_cmd_counts(events, w), "zlperf": zl,
              "bpftrace": bpftrace_counts(folder / "bpftrace.json", w, slot_ns), "hist trigger": hist_counts(folder, w)}
    peers, notes = list(PEERS), []
    slack: Dict[Tuple[str, str], Tuple[int, str]] = {}  # (row kind, peer) -> how far it may differ from zlperf, why
    if live:
        top, blocks, top_notes = lab_live.top_counts(folder / "top.txt")
        exp, exp_notes = lab_live.exporter_counts(folder / "exporter.prom")
        values.update({"zlperf top": top, "zlperf exporter": exp})
        peers = list(LIVE_PEERS)
        notes += top_notes + exp_notes + [f"zlperf top: {blocks} interval blocks summed; its CONT/s and ACQ/s are "
                                          "rounded rates, so only WAITS and the holder lines are compared"]
        border = (lab_live.borderline_waits(events), f"wait(s) with another CPU's release within "
                  f"{lab_live.STAMP_SLACK_NS // 1000} us of their start or end: its instance stamps its own copy of "
                  "each event microseconds apart, which can flip such a wait's attribution")
        for what in ("holders: not traced", "holders: handed off"):
            slack[(what, "zlperf top")] = border
        twos = lab_live.power_of_two_waits(e.wait for e in events if e.name == LOCKED and e.contended)
        slack[("wait_ns", "zlperf exporter")] = (twos, "wait(s) of exactly a power of two ns, which the exporter's "
                                                       "le buckets count one bucket lower")
    kinds = [CONTENDED] if CONTENDED in events_recorded else []
    if LOCKED in events_recorded:
        kinds += [f"{LOCKED} contended=0", f"{LOCKED} contended=1", "wait_ns"]
    if UNLOCK in events_recorded:
        kinds += [UNLOCK, "holders: waits", "holders: not traced", "holders: handed off"]
    rows = sorted({r for v in values.values() for r in v if r[0] in kinds}, key=_row_order)
    # bpftrace prints the empty buckets between its smallest and largest: no row where every peer has 0
    rows = [r for r in rows if r[0] != "wait_ns" or any(v.get(r) for v in values.values())]
    # Each peer counts the rows it can (a zone or bucket it saw nothing of is 0); the in-kernel peers
    # cannot attribute holders, only count the waits.
    for p, v in values.items():
        can = [k for k in kinds if k in _CAN.get(p, kinds)]
        values[p] = {r: v.get(r, 0) for r in rows if r[0] in can}
    mismatches, tolerated = [], []
    for r in rows:
        z = values["zlperf"].get(r)
        for p in peers:
            if p == "zlperf" or r not in values[p] or values[p][r] == z:
                continue
            n, why = slack.get((r[0], p), (0, ""))
            if z is not None and abs(values[p][r] - z) <= n:
                tolerated.append((r, p, z, values[p][r]))
                notes.append(f"{p} {r[0]} {r[1]}: {values[p][r]} against zlperf's {z}, within the {n} {why}")
            else:
                mismatches.append((r, p, z, values[p][r]))
    if lost or doc.get("missed_events"):
        notes.append(f"the ring buffer lost events ({lost} trace-cmd lines, zlperf missed_events "
                     f"{doc.get('missed_events')}): counts near the losses can differ")
    for edge, gap in (("start", w.gap_since), ("end", w.gap_until)):
        if gap < QUIET_NS:
            notes.append(f"the window's {edge} edge is {gap / 1e3:.0f} us from a recorded event: peers stamp events "
                         "apart, so that event may fall on different sides (rerun the task)")
    return PeerTable(profile, w, rows, values, rows, mismatches, notes, cmd, peers, tolerated)


def render(t: PeerTable) -> str:
    """The table as Markdown, with the window, the verdict and the reserved columns."""
    w = t.window

    def secs(ns: int) -> str:
        return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"
    if w.whole:
        head = [f"### live ({t.profile}, the workload's tasks only): zlperf, zlperf top and zlperf exporter beside "
                "their peers", "",
                "Whole-run totals: every peer filtered on comm zl-workload, whose tasks all ran inside every peer's "
                f"lifetime. zlperf: `{t.zlperf_cmd}`."]
    else:
        head = [f"### {t.profile}: zlperf and its peers over one window", "",
                f"Window {secs(w.since)} .. {secs(w.until)} s CLOCK_MONOTONIC ({(w.until - w.since) / 1e9:.2f} s); "
                f"nearest recorded event {w.gap_since / 1e6:.1f} ms from the start edge, {w.gap_until / 1e6:.1f} ms "
                f"from the end edge. zlperf: `{t.zlperf_cmd}`."]
    lines = head + ["",
                    "| row | zone / bucket | " + " | ".join(t.peers) + " |",
                    "| --- | --- |" + " ---: |" * len(t.peers)]
    waits = t.values["trace-cmd"].get(("holders: waits", "all"), 0)
    for r in t.rows:
        cells = []
        for p in t.peers:
            v = t.values[p].get(r)
            cell = "–" if v is None else str(v)
            if v is not None and r[0] in ("holders: not traced", "holders: handed off") and waits:
                cell += f" ({100 * v / waits:.1f}%)"
            if any(m[0] == r and m[1] == p for m in t.mismatches):
                cell = f"**{cell}**"
            elif any(m[0] == r and m[1] == p for m in t.tolerated):
                cell += " ≈"
            cells.append(cell)
        lines.append(f"| {r[0]} | {r[1]} | " + " | ".join(cells) + " |")
    lines.append("")
    if t.ok:
        others = [p for p in t.peers if p != "zlperf"]
        lines.append(f"PASS: zlperf equals {', '.join(others[:-1])} and {others[-1]} on all {len(t.rows)} rows"
                     + (f" ({len(t.tolerated)} cell(s) ≈: within the stamping slack, see the notes)." if t.tolerated
                        else "."))
    else:
        lines.append(f"FAIL: zlperf differs from a peer on {len(t.mismatches)} cell(s)"
                     + (": " + "; ".join(f"{r[0]} {r[1]}: zlperf {z}, {p} {v}" for r, p, z, v in t.mismatches[:8])
                        if t.mismatches else ": no rows to compare"))
    lines += [f"Note: {n}" for n in t.notes]
    return "\n".join(lines) + "\n"


def as_json(t: PeerTable) -> dict:
    """The table as plain data (peers.json in the run folder)."""
    return {"profile": t.profile, "ok": t.ok, "window_ns": None if t.window.whole else [t.window.since, t.window.until],
            "edge_gaps_ns": None if t.window.whole else [t.window.gap_since, t.window.gap_until],
            "zlperf_cmd": t.zlperf_cmd, "peers": t.peers,
            "rows": [{"row": r[0], "label": r[1], **{p: t.values[p].get(r) for p in t.peers}} for r in t.rows],
            "mismatches": [{"row": r[0], "label": r[1], "peer": p, "zlperf": z, "value": v}
                           for r, p, z, v in t.mismatches],
            "tolerated": [{"row": r[0], "label": r[1], "peer": p, "zlperf": z, "value": v}
                          for r, p, z, v in t.tolerated],
            "notes": t.notes}
