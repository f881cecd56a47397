"""What ``zlperf top`` prints each interval: zones and top callers as rates, wait and hold percentiles, holders, losses.

:func:`render_tick` is the plain interval block (logs, pipes, tests); :class:`FullScreen` redraws the same text
in place on a terminal with ANSI escapes (alternate screen, no curses needed) and restores the terminal.
"""

from __future__ import annotations

__all__ = ["render_tick", "FullScreen", "TABLES"]

import shutil
import time
from typing import Optional, TextIO

from zlperf.analysis.result import Group, Stats
from zlperf.live.session import Tick
from zlperf.render.text import format_ns

#: Tables ``--by`` may ask for.
TABLES = ("zone", "caller", "cpu", "task", "holder")


def _pct(stats: Stats, label: str) -> Optional[int]:
    s = stats.summary()
    return None if s is None else s[label]


def _rate(n: Optional[int], seconds: float) -> str:
    if n is None:
        return "-"
    return f"{n / seconds:.1f}" if seconds > 0 else str(n)


def _table(rows: list[list[str]], header: list[str], left: int = 1) -> list[str]:
    """Columns padded to their widest cell; the first ``left`` columns left-aligned, the rest right."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(header)] + [line(r) for r in rows]


def _cells(g: Group, seconds: float, caps) -> list[str]:
    """CONT/s ACQ/s CONT% WAITS p50 p99 max HOLD-p99 of one group (``-`` where the ABI cannot tell)."""
    c = g.counts
    acq = c.acquisitions if caps.acquisitions else None
    cont_pct = (f"{100 * c.contended / c.acquisitions:.2f}" if caps.acquisitions and caps.contended_flag
                and c.acquisitions else "-")
    waits = caps.waits and g.wait.count
    return [
        _rate(c.contended_events if caps.contended_events else None, seconds),
        _rate(acq, seconds),
        cont_pct,
        str(g.wait.count) if caps.waits else "-",
        format_ns(_pct(g.wait, "p50")) if waits else "-",
        format_ns(_pct(g.wait, "p99")) if waits else "-",
        format_ns(_pct(g.wait, "max")) if waits else "-",
        format_ns(_pct(g.hold, "p99")) if caps.holds and g.hold.count else "-",
    ]


_STAT_HEADER = ["CONT/s", "ACQ/s", "CONT%", "WAITS", "WAIT p50", "p99", "max", "HOLD p99"]


def render_tick(tick: Tick, by: tuple[str, ...] = ("zone", "caller"), top: int = 5) -> str:
    """The interval block: a header line, then one table per ``by`` entry (zone, caller, cpu, task, holder)."""
    r = tick.interval.result
    caps = r.capabilities
    secs = tick.seconds
    lost = r.missed.events + r.missed.unknown_gaps
    lost_text = (f"lost {r.missed.events} events" + (f" (+{r.missed.unknown_gaps} gaps of unknown size)"
                                                     if r.missed.unknown_gaps else "")) if lost else "lost 0"
    head = (f"zlperf top  {time.strftime('%H:%M:%S', time.localtime(tick.ended))}  interval {tick.number}  "
            f"{secs:.2f}s  {caps.profile} ({r.source.clock} clock)  {tick.interval.events / secs if secs else 0:,.0f} "
            f"events/s  {lost_text}")
    out = [head]
    for dim in by:
        out.append("")
        if dim == "zone":
            rows = [[z.key.label, *_cells(z, secs, caps)] for z in r.zones]  # type: ignore[union-attr]
            out += _table(rows, ["ZONE", *_STAT_HEADER]) if rows else ["ZONE  (no zone-lock events this interval)"]
        elif dim == "caller":
            rows = [[zc.group.key.symbol, zc.zone.label, *_cells(zc.group, secs, caps)]  # type: ignore[union-attr]
                    for zc in tick.interval.zone_callers[:top]]
            out += _table(rows, ["CALLER", "ZONE", *_STAT_HEADER], left=2) if rows else ["CALLER  (none)"]
        elif dim == "cpu":
            rows = [[f"cpu{g.key.cpu}", *_cells(g, secs, caps)] for g in r.cpus]  # type: ignore[union-attr]
            out += _table(rows, ["CPU", *_STAT_HEADER]) if rows else ["CPU  (none)"]
        elif dim == "task":
            rows = [[f"{g.key.comm}-{g.key.pid}", *_cells(g, secs, caps)]  # type: ignore[union-attr]
                    for g in r.tasks[:top]]
            out += _table(rows, ["TASK", *_STAT_HEADER]) if rows else ["TASK  (none)"]
        elif dim == "holder":
            out += _holders(tick, top)
    return "\n".join(out) + "\n"


def _holders(tick: Tick, top: int) -> list[str]:
    """Who held zone->lock behind the interval's waits (hold-time recordings only)."""
    h = tick.interval.result.holders
    if h is None:
        return ["HOLDER  (not recorded: needs the lock and unlock events, e.g. --profile hold-time)"]
    if not h.waits:
        return ["HOLDER  (no waits this interval)"]
    rows = [[caller, str(n), f"{100 * n / h.waits:.1f}", format_ns(w / n if n else None)]
            for caller, n, w in h.by_caller[:top]]
    lines = _table(rows, ["HOLDER", "WAITS", "%", "WAIT avg"])
    lines.append(f"{h.not_traced} of {h.waits} waits behind a holder without tracepoints (not traced); "
                 f"{h.handed_off} handed off by a holder that had waited itself")
    return lines


class FullScreen:
    """Redraw whole screens in place on a terminal: the alternate screen while running, the cursor hidden."""

    def __init__(self, out: TextIO):
        self.out = out
        self.active = False

    def __enter__(self) -> "FullScreen":
        self.out.write("\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J")  # alternate screen, hide cursor, clear
        self.out.flush()
        self.active = True
        return self

    def draw(self, text: str, footer: str = "") -> None:
        """Replace the screen with ``text`` (cut to the terminal's size) and a footer line."""
        cols, lines = shutil.get_terminal_size((100, 30))
        rows = [ln[:cols] for ln in text.rstrip("\n").split("\n")][: max(1, lines - 2)]
        body = "\x1b[H" + "".join(f"{row}\x1b[K\n" for row in rows)
        if footer:
            body += f"\n{footer[:cols]}\x1b[K"
        self.out.write(body + "\x1b[J")
        self.out.flush()

    def __exit__(self, *exc: object) -> None:
        if self.active:
            self.out.write("\x1b[?25h\x1b[?1049l")  # show cursor, back to the normal screen
            self.out.flush()
            self.active = False
