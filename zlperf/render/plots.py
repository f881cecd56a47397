"""The report's figures as PNG and SVG files (matplotlib, Agg backend), for mails and papers.

Reads only the ``zlperf.report/1`` document, through :mod:`zlperf.render.figures` (the same data as the HTML
page). No pyplot: each figure is a ``matplotlib.figure.Figure`` on its own Agg canvas, written via safeio.
"""

from __future__ import annotations

__all__ = ["check_plot_dir", "write_plots", "FILES"]

import io
import os
from pathlib import Path
from typing import Any, Callable

from zlperf.errors import ZlperfError
from zlperf.extras import require
from zlperf.render import figures
from zlperf.render.text import format_ns

#: Figure file stems, in the order they are written (each as .png and .svg when the document has the data).
FILES = ("timeline", "heatmap", "wait_hist", "hold_hist", "holders")


def check_plot_dir(path: str) -> Path:
    """The --plot folder, checked before any work: matplotlib importable, not a link, a folder (made if missing)."""
    require("matplotlib", "plots")
    p = Path(path)
    if p.is_symlink():
        raise ZlperfError(f"{p}: is a symbolic link; zlperf does not write figures through links "
                          "(remove it or choose another folder)")
    if p.exists() and not p.is_dir():
        raise ZlperfError(f"{p}: exists and is not a folder; give a folder for the figures")
    if not p.exists():
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise ZlperfError(f"{p}: folder {parent} does not exist (create it or choose another folder)")
        try:
            os.mkdir(p, 0o755)
        except OSError as exc:
            raise ZlperfError(f"{p}: cannot create the figures folder ({exc.strerror})") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise ZlperfError(f"{p}: cannot write figures into it (permission denied or read-only)")
    return p


def _xlabel(doc: dict) -> str:
    return "time since start of each recording (s)" if doc.get("merged_from") else "trace time (s)"


def _timeline(fig: Any, doc: dict) -> bool:
    tl = figures.timeline(doc)
    if not tl.x:
        return False
    ax = fig.add_subplot()
    width = tl.bin_ns / 1e9 * 0.9
    ax.bar(tl.x, tl.contended, width=width, align="edge", color="#4c78a8", label=tl.contended_label)
    ax.set_xlabel(_xlabel(doc))
    ax.set_ylabel(f"{tl.contended_label} per bin")
    ax.set_title(f"zone->lock timeline (bins of {format_ns(tl.bin_ns)})")
    if tl.wait_ms is not None:
        ax2 = ax.twinx()
        ax2.plot([x + tl.bin_ns / 2e9 for x in tl.x], tl.wait_ms, color="#e45756", marker=".", label="wait total (ms)")
        ax2.set_ylabel("wait per bin (ms)")
        ax2.set_ylim(bottom=0)
        fig.legend(loc="upper left", bbox_to_anchor=(0.07, 0.92))
    return True


def _heatmap(fig: Any, doc: dict) -> bool:
    hm = figures.heatmap(doc)
    if hm is None:
        return False
    ax = fig.add_subplot()
    step = hm.x[1] - hm.x[0] if len(hm.x) > 1 else doc["timeline"]["bin_ns"] / 1e9
    edges = hm.x + [hm.x[-1] + step]
    mesh = ax.pcolormesh(edges, list(range(len(hm.buckets) + 1)), hm.z, cmap="YlOrRd", shading="flat")
    ax.set_yticks([i + 0.5 for i in range(len(hm.labels))], hm.labels, fontsize=7)
    ax.set_xlabel(_xlabel(doc))
    ax.set_ylabel("wait (log2 bucket, low end)")
    ax.set_title("latency heatmap: waits per time bin and log2 wait")
    fig.colorbar(mesh, ax=ax, label="waits")
    return True


def _histogram(what: str) -> Callable[[Any, dict], bool]:
    def draw(fig: Any, doc: dict) -> bool:
        hs = figures.histograms(doc, what)
        if hs is None:
            return False
        ax = fig.add_subplot()
        n = len(hs.zones)
        width = 0.8 / max(n, 1)
        for k, (label, counts) in enumerate(hs.zones):
            ax.bar([i + k * width for i in range(len(hs.labels))], counts, width=width, label=label)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(hs.labels))], hs.labels, rotation=60, fontsize=7)
        ax.set_xlabel(f"{what} (log2 bucket, low end)")
        ax.set_ylabel("count")
        ax.set_title(f"{what} time per zone (log2 histogram)")
        ax.legend()
        return True
    return draw


def _holders(fig: Any, doc: dict) -> bool:
    mx = figures.matrix(doc)
    if mx is None:
        return False
    ax = fig.add_subplot()
    image = ax.imshow([[w / 1e6 for w in row] for row in mx.wait_ns], cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(mx.holders)), mx.holders, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(mx.waiters)), mx.waiters, fontsize=7)
    peak = max((w for row in mx.wait_ns for w in row), default=0)
    for r, row in enumerate(mx.waits):
        for c, n in enumerate(row):
            if n:
                dark = mx.wait_ns[r][c] > peak / 2
                ax.text(c, r, str(n), ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_xlabel("holder caller")
    ax.set_ylabel("waiter caller")
    ax.set_title("who made them wait: wait (ms; numbers: waits)")
    fig.colorbar(image, ax=ax, label="wait (ms)")
    return True


_DRAW: dict[str, Callable[[Any, dict], bool]] = {
    "timeline": _timeline, "heatmap": _heatmap, "wait_hist": _histogram("wait"), "hold_hist": _histogram("hold"),
    "holders": _holders,
}


def write_plots(doc: dict, folder: Path, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Draw every figure the document can show into ``folder`` (checked by :func:`check_plot_dir`)."""
    matplotlib = require("matplotlib", "plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from zlperf.safeio import atomic_write

    written = []
    # SVG text stays text (searchable, and the tests read the numbers back), not glyph outlines; a fixed salt
    # makes the SVG element ids, and so the files, the same for the same document.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "zlperf"}):
        for stem in FILES:
            fig = Figure(figsize=(11, 6.5 if stem == "holders" else 4.5), layout="constrained")
            FigureCanvasAgg(fig)
            if not _DRAW[stem](fig, doc):
                continue
            for fmt in formats:
                buf = io.BytesIO()
                # No dates or versions in the files: the same document draws the same bytes.
                fig.savefig(buf, format=fmt, dpi=120, metadata={"Date": None} if fmt == "svg" else {"Software": None})
                path = folder / f"{stem}.{fmt}"
                atomic_write(path, buf.getvalue(), f"{stem} figure")
                written.append(path)
    return written
