"""`zlperf report --html` / `zlperf merge --html` in a real browser, and `--plot` files read back.

The page is opened in headless Chromium (Debian's `chromium`) through the DevTools protocol (tests/cdp.py) with
networking made impossible; the tests assert no console error or exception, no request beyond the file itself
(and the data: images plotly makes), rendered plots, and that every number the page shows (cards, tables, plot
data) is the JSON report's, which the same command printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import cdp
from conftest import FULL_PERF_DATA, FULL_PERF_KALLSYMS, REPO, STOCK_DAT

pytest.importorskip("plotly", reason="plotly is not installed (pip install 'zlperf[html]')")
needs_chromium = pytest.mark.skipif(not cdp.available(), reason="chromium is not installed (apt-get install chromium; "
                                                                 "setup.sh installs it)")
SCREENSHOT = REPO / "docs" / "report_html.png"
UPDATE = os.environ.get("ZLPERF_UPDATE_DOCS") == "1"


def zlperf(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "zlperf", *args], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def page_of(tmp_path: Path, *report_args: str) -> tuple[Path, dict]:
    """`zlperf report ARGS --json --html OUT`: the page and the document the same run printed."""
    out = tmp_path / "report.html"
    doc = json.loads(zlperf("report", *report_args, "--json", "--html", str(out)).stdout)
    return out, doc


def lookup(doc: dict, key: str):
    value = doc
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def check_static(html: str) -> None:
    """Nothing in the page refers to the network: no external scripts, styles, images or frames."""
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*[\"']?\s*(https?:)?//", html, re.I)
    assert not re.search(r"url\(\s*[\"']?https?:", html, re.I)
    assert "<link" not in html.lower()


def check_page(b: cdp.Browser, doc: dict) -> None:
    from zlperf.render.text import format_ns  # the report's formatting (tested with the text report)

    assert b.errors() == []
    assert all(u.startswith(("file:", "data:")) for u in b.requests()), b.requests()
    # Plots drawn: every plot element has plotly's SVG with content.
    plots = b.eval("Array.from(document.querySelectorAll('.plot')).map(d => [d.id, "
                   "d.querySelectorAll('.main-svg').length, d.querySelectorAll('svg *').length])")
    assert plots and all(n >= 1 and parts > 20 for _, n, parts in plots), plots
    # Cards and table cells: raw value = the document's; shown text = that value formatted.
    cells = b.eval("Array.from(document.querySelectorAll('[data-key]')).map(e => [e.dataset.key, "
                   "e.dataset.value === undefined ? null : e.dataset.value, e.textContent])")
    assert len(cells) > 10
    for key, raw, shown in cells:
        want = lookup(doc, key)
        if want is None:
            assert raw is None and shown == "-", key
            continue
        if isinstance(want, str):
            assert shown == want, key
            continue
        assert float(raw) == float(want), key
        forms = {str(want), format_ns(want)}  # a count, or a duration as the text report prints it
        if key.endswith("ts_ns"):
            forms.add(f"{want // 10**9}.{want % 10**9:09d}")  # a timestamp as trace-cmd prints it
        if key.endswith("ratio"):
            forms.add(f"{100 * want:.2f}%")
        assert shown in forms, (key, shown, forms)
    # Plot data: the timeline's bars are the bins' counters, the heatmap the bins' wait_hist_log2.
    bins = doc["timeline"]["bins"]
    tl = b.eval("(() => { const d = document.getElementById('zl-timeline').data; return [d[0].x, d[0].y, "
                "d.length > 1 ? d[1].y : null]; })()")
    key = "contended_events" if any(x["contended_events"] for x in bins) or not doc["can_show"]["acquisitions"] \
        else "waits"
    assert tl[0] == [x["t_ns"] / 1e9 for x in bins] and tl[1] == [x[key] for x in bins]
    if doc["can_show"]["waits"]:
        assert tl[2] == pytest.approx([x["wait_sum_ns"] / 1e6 for x in bins], rel=1e-12)
        z = b.eval("document.getElementById('zl-heatmap').data[0].z")
        counts = [0] * 65
        for row in z:
            for i, n in enumerate(row):
                counts[i] += n
        assert sum(counts) == doc["totals"]["wait_ns"]["count"]
        per_bin = [sum(row[i] for row in z) for i in range(len(bins))]
        assert per_bin == [x["waits"] for x in bins]
    for what in ("wait", "hold"):
        if doc["can_show"][f"{what}s"] and doc["totals"][f"{what}_ns"]["count"]:
            traces = b.eval(f"document.getElementById('zl-{what}-hist').data.map(t => [t.name, t.y])")
            for name, ys in traces:
                zone = next(z for z in doc["zones"] if z["label"] == name)
                assert sum(ys) == zone[f"{what}_ns"]["count"]
    if doc.get("holders") and doc["handoffs"]:
        text = b.eval("document.getElementById('zl-matrix').data[0].text")
        shown = sum(int(c.split()[0]) for row in text for c in row if c)
        assert shown == sum(x["waits"] for x in doc["handoffs"]) == doc["holders"]["waits"]


@needs_chromium
def test_example_page_in_a_browser(tmp_path):
    out, doc = page_of(tmp_path, "--example")
    html = out.read_text()
    check_static(html)
    with cdp.Browser(tmp_path / "profile", height=1500) as b:
        b.open(out.as_uri())
        check_page(b, doc)
        shot = tmp_path / "shot.png"
        b.screenshot(shot, full_page=False)
        # The whole text report is in the page, as `zlperf report` prints it.
        assert b.eval("document.getElementById('zl-text').textContent") == zlperf("report", "--example").stdout
        # Sorting the caller table by wait total, both ways.
        col = b.eval("Array.from(document.querySelectorAll('#zl-callers th')).findIndex(t => t.textContent == "
                     "'wait total')")
        read = f"Array.from(document.querySelectorAll('#zl-callers tbody tr')).map(r => r.cells[{col}].dataset.value)"
        b.eval(f"document.querySelectorAll('#zl-callers th')[{col}].click()")
        up = [float(v) for v in b.eval(read) if v is not None]
        b.eval(f"document.querySelectorAll('#zl-callers th')[{col}].click()")
        down = [float(v) for v in b.eval(read) if v is not None]
        assert up == sorted(up) and down == sorted(up, reverse=True) and len(up) >= 2
        # A worst case's timestamp marks that time on the timeline.
        b.eval("document.querySelector('#zl-top-waits a.ts').click()")
        x0 = b.eval("document.getElementById('zl-timeline').layout.shapes[0].x0")
        assert x0 == doc["top_waits"][0]["ts_ns"] / 1e9
        assert b.errors() == []
        if UPDATE:  # README's picture: the top of the example's page, with the path as the package has it
            from zlperf.commands.report import example_path
            from zlperf.render.html import render_html

            shown = tmp_path / "example.html"
            shown.write_text(render_html(json.loads(json.dumps(doc).replace(str(example_path()),
                                                                              "zlperf/data/full.dat"))))
            b.open(shown.as_uri())
            b.screenshot(SCREENSHOT, full_page=False)
            assert b.errors() == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    assert SCREENSHOT.exists(), "docs/report_html.png: rerun with ZLPERF_UPDATE_DOCS=1"


@needs_chromium
def test_perf_data_page(tmp_path):
    out, doc = page_of(tmp_path, str(FULL_PERF_DATA), "--kallsyms", str(FULL_PERF_KALLSYMS))
    check_static(out.read_text())
    with cdp.Browser(tmp_path / "profile") as b:
        b.open(out.as_uri())
        check_page(b, doc)


@needs_chromium
def test_merged_fleet_page(tmp_path):
    one = tmp_path / "host1.json"
    two = tmp_path / "host2.json"
    one.write_text(zlperf("report", "--example", "--json").stdout)
    two.write_text(zlperf("report", str(FULL_PERF_DATA), "--kallsyms", str(FULL_PERF_KALLSYMS), "--json").stdout)
    out = tmp_path / "fleet.html"
    doc = json.loads(zlperf("merge", str(one), str(two), "--html", str(out)).stdout)
    assert doc["merged_from"]
    check_static(out.read_text())
    with cdp.Browser(tmp_path / "profile") as b:
        b.open(out.as_uri())
        check_page(b, doc)
        assert "host1" in b.eval("document.querySelector('.meta').textContent")


@needs_chromium
def test_page_of_a_recording_without_zone_lock_waits(tmp_path):
    """The stock fixture has no zone->lock wait: the page still loads cleanly, with what it can show."""
    out, doc = page_of(tmp_path, str(STOCK_DAT))
    with cdp.Browser(tmp_path / "profile") as b:
        b.open(out.as_uri())
        assert b.errors() == [] and all(u.startswith(("file:", "data:")) for u in b.requests())
        assert b.eval("document.getElementById('zl-text').textContent") == zlperf("report", str(STOCK_DAT)).stdout


def test_missing_plotly_is_one_line(tmp_path):
    code = ("import sys; sys.modules['plotly'] = None; from zlperf.cli import main; "
            f"raise SystemExit(main(['report', '--example', '--html', {str(tmp_path / 'x.html')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "pip install 'zlperf[html]'" in proc.stderr


def test_hostile_names_cannot_break_out_of_the_page(tmp_path):
    """A caller or task name is data: it is escaped in the HTML and in the inline plot JSON."""
    doc = json.loads(zlperf("report", "--example", "--json").stdout)
    evil = "</script><script>alert(1)</script><!--"
    doc["callers"][0]["caller"] = evil
    doc["top_waits"][0]["comm"] = evil
    doc["handoffs"][0]["waiter_caller"] = evil
    from zlperf.render.html import render_html

    page = render_html(doc)
    assert evil not in page and page.count("</script>") == page.count("<script>") == 3  # plotly.js, ours, the plots


# -- --plot --------------------------------------------------------------------------------------------------
def test_plot_files_are_real_png_and_svg(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'zlperf[plots]')")
    import matplotlib.image

    figs = tmp_path / "figs"
    doc = json.loads(zlperf("report", "--example", "--json", "--plot", str(figs)).stdout)
    stems = {"timeline", "heatmap", "wait_hist", "hold_hist", "holders"}
    assert {p.name for p in figs.iterdir()} == {f"{s}.{e}" for s in stems for e in ("png", "svg")}
    for s in stems:
        assert matplotlib.image.imread(figs / f"{s}.png").shape[0] > 300
        ET.parse(figs / f"{s}.svg")
    # The matrix shows each (waiter, holder) pair's waits, as the document's handoffs count them.
    texts = [t.text for t in ET.parse(figs / "holders.svg").iter() if t.tag.endswith("text") and t.text]
    from collections import Counter

    shown = Counter(int(t) for t in texts if t.isdigit())
    want = Counter(x["waits"] for x in doc["handoffs"])
    assert all(shown[n] >= k for n, k in want.items()), (shown, want)
    # The same document draws the same files.
    again = tmp_path / "again"
    zlperf("report", "--example", "--plot", str(again))
    assert all((again / p.name).read_bytes() == p.read_bytes() for p in figs.iterdir() if p.suffix == ".svg")


def test_plot_folder_that_is_a_link_or_a_file_is_refused(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'zlperf[plots]')")
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    proc = zlperf("report", "--example", "--plot", str(link), check=False)
    assert proc.returncode == 2 and "symbolic link" in proc.stderr and not any(real.iterdir())
    afile = tmp_path / "file"
    afile.write_text("x")
    proc = zlperf("report", "--example", "--plot", str(afile), check=False)
    assert proc.returncode == 2 and "not a folder" in proc.stderr
