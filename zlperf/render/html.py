"""The report as one self-contained HTML page: the text report plus interactive plotly figures and sortable tables.

Reads only the ``zlperf.report/1`` document (a recording's, a perf.data's or a merged fleet's). plotly.js,
the styles and the few lines of page script are inlined, so the page opens offline and loads nothing.
"""

from __future__ import annotations

__all__ = ["render_html"]

import html
import json
from typing import Any, Optional

from zlperf.extras import require
from zlperf.render import figures
from zlperf.render.text import format_ns, render_text

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1280px; padding: 0 1.2em 3em; color: #222; }
h1 { font-size: 1.5em; margin: 0.8em 0 0.2em; } h2 { font-size: 1.2em; margin: 1.6em 0 0.4em;
  border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #555; margin: 0 0 1em; } .meta code { color: #222; }
.cards { display: flex; flex-wrap: wrap; gap: 0.6em; margin: 0.8em 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.4em 0.8em; min-width: 9em; background: #fafafa; }
.card .v { font-size: 1.3em; font-weight: 600; } .card .k { color: #666; font-size: 0.85em; }
.verdict { background: #fff8e6; border-left: 4px solid #f0b429; padding: 0.5em 0.8em; white-space: pre-wrap;
  font-family: ui-monospace, monospace; font-size: 0.9em; }
.plot { width: 100%; height: 420px; } .wide { overflow-x: auto; max-width: 100%; } .note { color: #666; font-style: italic; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.4em 0; }
th, td { border-bottom: 1px solid #eee; padding: 0.2em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; position: sticky; top: 0; } td.t, th.t { text-align: left; }
table.sortable th { cursor: pointer; user-select: none; } table.sortable th:after { content: " \\2195"; color: #aaa; }
a.ts { color: #0b5fff; cursor: pointer; text-decoration: underline dotted; }
pre.report { background: #f7f7f7; border: 1px solid #e5e5e5; padding: 0.8em; overflow-x: auto; font-size: 12px; }
"""

# Sorting the tables, and "show this timestamp" from the worst cases: a dashed line on the time axes.
_JS = """
function zlSort(th) {
  var table = th.closest('table'), body = table.tBodies[0], col = th.cellIndex;
  var asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  var rows = Array.prototype.slice.call(body.rows);
  function key(r) { var c = r.cells[col], v = c.dataset.value; return v === undefined ? c.textContent : v; }
  rows.sort(function (a, b) {
    var x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
    var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
    return asc ? c : -c;
  });
  rows.forEach(function (r) { body.appendChild(r); });
}
function zlMark(seconds) {
  ['zl-timeline', 'zl-heatmap'].forEach(function (id) {
    var gd = document.getElementById(id);
    if (!gd || !gd.layout) return;
    Plotly.relayout(gd, {shapes: [{type: 'line', xref: 'x', yref: 'paper', x0: seconds, x1: seconds, y0: 0, y1: 1,
                                   line: {color: '#d62728', width: 2, dash: 'dash'}}]});
  });
  document.getElementById('zl-timeline').scrollIntoView({behavior: 'smooth'});
}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _json(value: Any) -> str:
    """JSON safe inside a <script> element (no "</script>" or "<!--" from a caller or task name)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _cell(value: Any, key: Optional[str] = None, ns: bool = False, text: bool = False, pct: bool = False) -> str:
    """A table cell that shows ``value`` (durations formatted, ratios as %) and keeps the raw value for sorting
    and checking."""
    if value is None:
        shown = "-"
    else:
        shown = format_ns(value) if ns else (f"{100 * value:.2f}%" if pct else str(value))
    attrs = "" if key is None else f' data-key="{_e(key)}"'
    if value is not None and not text:
        attrs += f' data-value="{_e(value)}"'
    return f'<td{" class=t" if text else ""}{attrs}>{_e(shown)}</td>'


def _ts(ns: int) -> str:
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def _cards(doc: dict) -> str:
    t, h = doc["totals"], doc.get("holders")
    items: list[tuple[str, Any, str, bool]] = [("duration", doc["duration_ns"], "duration_ns", True)]
    for label, key in (("contended events", "contended_events"), ("acquisitions", "acquisitions"),
                       ("contended", "contended")):
        if t.get(key) is not None:
            items.append((label, t[key], f"totals.{key}", False))
    for what in ("wait", "hold"):
        st = t.get(f"{what}_ns")
        if st and st["count"]:
            items.append((f"{what}s", st["count"], f"totals.{what}_ns.count", False))
            for p in ("sum", "p50", "p99", "max"):
                items.append((f"{what} {'total' if p == 'sum' else p}", st[p], f"totals.{what}_ns.{p}", True))
    if h:
        items.append(("waits behind (not traced)", h["not_traced"], "holders.not_traced", False))
    cards = "".join(f'<div class="card"><div class="v" data-key="{_e(k)}" data-value="{_e(v)}">'
                    f'{_e(format_ns(v) if ns else v)}</div><div class="k">{_e(label)}</div></div>'
                    for label, v, k, ns in items)
    return f'<div class="cards">{cards}</div>'


def _table(head: list[tuple[str, bool]], rows: list[str], sortable: bool = False, id_: str = "") -> str:
    """A table; ``head``: (column name, is text); sortable tables sort on a header click."""
    click = " onclick=zlSort(this)" if sortable else ""
    ths = "".join(f'<th{" class=t" if text else ""}{click}>{_e(name)}</th>' for name, text in head)
    return (f'<div class="wide"><table{" class=sortable" if sortable else ""}{f" id={id_}" if id_ else ""}><thead>'
            f'<tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _callers(doc: dict) -> str:
    can = doc["can_show"]
    head = [("caller", True), ("role", True), ("contended", False)]
    if can["acquisitions"]:
        head += [("acquired", False), ("contention ratio", False)]
    if can["waits"]:
        head += [("waits", False), ("wait p50", False), ("wait p99", False), ("wait max", False), ("wait total", False)]
    if can["holds"]:
        head += [("holds", False), ("hold p50", False), ("hold p99", False), ("hold max", False)]
    rows = []
    for i, c in enumerate(doc["callers"]):
        k = f"callers.{i}"
        r = [_cell(c["caller"], f"{k}.caller", text=True), _cell(c.get("role", ""), text=True),
             _cell(c["contended_events"], f"{k}.contended_events")]
        if can["acquisitions"]:
            r += [_cell(c["acquisitions"], f"{k}.acquisitions"), _cell(c["contention_ratio"], f"{k}.contention_ratio", pct=True)]
        for what, ps in (("wait", ("p50", "p99", "max", "sum")), ("hold", ("p50", "p99", "max"))):
            st = c.get(f"{what}_ns")
            if can[f"{what}s"]:
                r.append(_cell(st["count"] if st else None, f"{k}.{what}_ns.count"))
                r += [_cell(st[p] if st else None, f"{k}.{what}_ns.{p}", ns=True) for p in ps]
        rows.append(f"<tr>{''.join(r)}</tr>")
    return _table(head, rows, sortable=True, id_="zl-callers")


def _worst(doc: dict, key: str) -> str:
    col = "wait_ns" if key == "top_waits" else "hold_ns"
    with_holder = any(w.get("holder") for w in doc[key])
    head = [(col.replace("_ns", ""), False), ("timestamp", False), ("cpu", False), ("task", True), ("zone", True),
            ("caller", True)]
    if with_holder:
        head += [("holder caller", True), ("holder task", True), ("holder cpu", False), ("hold", False)]
    rows = []
    for i, w in enumerate(doc[key]):
        k = f"{key}.{i}"
        task = (f"{w['host']}:" if w.get("host") else "") + f"{w['comm']}-{w['pid']}"
        r = [_cell(w[col], f"{k}.{col}", ns=True),
             f'<td data-key="{k}.ts_ns" data-value="{w["ts_ns"]}"><a class="ts" onclick="zlMark({w["ts_ns"] / 1e9!r})">'
             f'{_ts(w["ts_ns"])}</a></td>',
             _cell(w["cpu"], f"{k}.cpu"), _cell(task, text=True), _cell(w["zone"] or "-", text=True),
             _cell(w["caller"], text=True)]
        if with_holder:
            x = w.get("holder") or {}
            who = f"{x['comm']}-{x['pid']}" if x.get("pid") is not None else "-"
            r += [_cell(x.get("caller", "-"), text=True), _cell(who, text=True), _cell(x.get("cpu")),
                  _cell(x.get("hold_ns"), f"{k}.holder.hold_ns", ns=True)]
        rows.append(f"<tr>{''.join(r)}</tr>")
    return _table(head, rows, sortable=True, id_=f"zl-{key.replace('_', '-')}")


def _plotly_figures(go: Any, doc: dict) -> list[tuple[str, str, Any, str]]:
    """(element id, title, plotly figure, note) of every figure the document can show."""
    out = []
    layout = dict(template="plotly_white", margin=dict(l=60, r=60, t=40, b=50), hovermode="closest")
    tl = figures.timeline(doc)
    xlabel = "time since start of each recording (s)" if tl.merged else "trace time (s)"
    if tl.x:
        fig = go.Figure()
        fig.add_bar(x=tl.x, y=tl.contended, name=tl.contended_label, marker_color="#4c78a8")
        if tl.wait_ms is not None:
            fig.add_scatter(x=tl.x, y=tl.wait_ms, name="wait total (ms)", yaxis="y2", mode="lines+markers",
                            line=dict(color="#e45756"))
        fig.update_layout(**layout, xaxis_title=xlabel, yaxis_title=f"{tl.contended_label} per bin",
                          yaxis2=dict(title="wait per bin (ms)", overlaying="y", side="right", rangemode="tozero"),
                          legend=dict(orientation="h", y=1.1), bargap=0.05)
        out.append(("zl-timeline", f"Timeline (bins of {format_ns(tl.bin_ns)})", fig, ""))
    hm = figures.heatmap(doc)
    if hm is not None:
        fig = go.Figure(go.Heatmap(x=hm.x, y=hm.labels, z=hm.z, colorscale="YlOrRd", colorbar=dict(title="waits"),
                                   hovertemplate="t=%{x:.3f}s<br>wait >= %{y}<br>%{z} waits<extra></extra>"))
        fig.update_layout(**layout, xaxis_title=xlabel, yaxis_title="wait (log2 bucket, low end)")
        out.append(("zl-heatmap", "Latency heatmap: waits per time bin and log2 wait", fig, ""))
    for what in ("wait", "hold"):
        hs = figures.histograms(doc, what)
        if hs is None:
            continue
        fig = go.Figure()
        for label, counts in hs.zones:
            fig.add_bar(x=hs.labels, y=counts, name=label)
        fig.update_layout(**layout, barmode="group", xaxis_title=f"{what} (log2 bucket, low end)",
                          yaxis_title="count", xaxis_type="category")
        out.append((f"zl-{what}-hist", f"{what.capitalize()} time per zone (log2 histogram)", fig, ""))
    mx = figures.matrix(doc)
    if mx is not None:
        text = [[f"{n} waits, {format_ns(w)}" if n else "" for n, w in zip(nr, wr)] for nr, wr in zip(mx.waits, mx.wait_ns)]
        fig = go.Figure(go.Heatmap(x=mx.holders, y=mx.waiters, z=[[w / 1e6 for w in r] for r in mx.wait_ns],
                                   text=text, colorscale="Blues", colorbar=dict(title="wait (ms)"),
                                   hovertemplate="waiter %{y}<br>holder %{x}<br>%{text}<extra></extra>"))
        fig.update_layout(**layout, xaxis_title="holder caller", yaxis_title="waiter caller", yaxis_autorange="reversed")
        fig.update_layout(margin=dict(l=220, r=60, t=40, b=160))
        out.append(("zl-matrix", "Who made them wait: waiter caller x holder caller (wait)", fig,
                    "Each cell: the wait of the row's callers behind a lock held by the column's callers "
                    "(the document's handoffs)."))
    return out


def render_html(doc: dict, top: Optional[int] = 10) -> str:
    """The whole page for a report document (``top``: rows of the text report's tables)."""
    require("plotly", "html")
    go = require("plotly.graph_objects", "html")
    pio = require("plotly.io", "html")
    offline = require("plotly.offline", "html")
    src = doc["source"]
    merged = doc.get("merged_from")
    title = f"zlperf report: {src['path']}"
    meta = (f"<code>{_e(src['format'])}</code>, {_e(src.get('cpus'))} CPUs, ABI <code>{_e(doc['abi'])}</code>, "
            f"profile <code>{_e(doc['profile'])}</code>")
    if merged:
        meta += f", merged from {len(merged)} recordings: " + ", ".join(_e(m["name"]) for m in merged)
    else:
        w = doc["window"]
        meta += f", window {_ts(w['first_ts_ns'])} .. {_ts(w['last_ts_ns'])}"
    text = render_text(doc, top=top)
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("verdict:")), len(lines))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    verdict = "\n".join(lines[start:end])
    body = [f"<h1>{_e(title)}</h1>", f'<p class="meta">{meta}</p>']
    if verdict:
        body.append(f'<div class="verdict">{_e(verdict)}</div>')
    body.append(_cards(doc))
    scripts = []
    config = _json({"displaylogo": False, "responsive": True})
    for id_, fig_title, fig, note in _plotly_figures(go, doc):
        body.append(f"<h2>{_e(fig_title)}</h2>" + (f'<p class="note">{_e(note)}</p>' if note else "") +
                    f'<div class="plot" id="{id_}"></div>')
        spec = json.loads(pio.to_json(fig, validate=False))
        scripts.append(f'Plotly.newPlot("{id_}", {_json(spec["data"])}, {_json(spec["layout"])}, {config});')
    if figures.heatmap(doc) is None and doc["can_show"]["waits"]:
        body.append('<p class="note">No latency heatmap: this document has no per-bin wait histograms (written by an '
                    'older zlperf, or no waits).</p>')
    body.append("<h2>Callers</h2><p class=note>Click a column to sort.</p>" + _callers(doc))
    for key, label in (("top_waits", "Longest waits"), ("top_holds", "Longest holds")):
        if doc[key]:
            body.append(f"<h2>{label}</h2><p class=note>Click a timestamp to mark it on the timeline.</p>" +
                        _worst(doc, key))
    body.append(f'<h2>Text report</h2><pre class="report" id="zl-text">{_e(text)}</pre>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style><script>{offline.get_plotlyjs()}</script><script>{_JS}</script></head>\n"
            f"<body>{''.join(body)}\n<script>{chr(10).join(scripts)}</script></body></html>\n")
