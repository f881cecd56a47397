"""zlperf diff and zlperf merge on real recordings."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np

from conftest import FULL_DAT, FULL_V6_DAT, MINIMAL_DAT, WAIT_DAT
from zlperf.analysis import Analyzer, analyze
from zlperf.report import build_document, diff_documents, merge_results, result_from_document
from zlperf.events import EventBatch
from zlperf.readers import open_trace


def report(path) -> dict:
    with open_trace(str(path)) as reader:
        return build_document(analyze(reader))


def merge_docs(docs: list[dict], names: list[str]) -> dict:
    """Merge documents as `zlperf merge` does: each read back (checked), merged, written."""
    return build_document(merge_results([result_from_document(d, n, n) for d, n in zip(docs, names)], names))


def test_diff_of_a_recording_with_itself_changes_nothing():
    doc = report(FULL_DAT)
    d = diff_documents(doc, doc)
    metrics = [m for g in d["groups"] for m in g["metrics"]]
    assert metrics
    assert all(m["change"] in (0.0, None) for m in metrics)
    assert not any(m["significant"] for m in metrics)


def thinned(path=FULL_DAT) -> tuple[dict, str]:
    """The report of ``path`` with the busiest caller's contended events thinned to a tenth, and that caller."""
    with open_trace(str(path)) as reader:
        an = Analyzer(reader.info)
        target = None
        for chunk in reader.chunks():
            c = chunk.batches.get("kmem:mm_zone_lock_contended")
            if c is not None and len(c):
                if target is None:
                    target = int(np.bincount(np.unique(c.fields["caller"], return_inverse=True)[1]).argmax())
                    target = int(np.unique(c.fields["caller"])[target])
                drop = (c.fields["caller"] == target) & (np.arange(len(c)) % 10 != 0)
                keep = ~drop
                chunk.batches[c.name] = EventBatch(c.name, c.ts[keep], c.cpu[keep], c.pid[keep], c.seq[keep],
                                                   {k: v[keep] for k, v in c.fields.items()})
            an.feed(chunk)
        return build_document(an.result()), reader.info.symbols.symbolize(target)


def test_diff_flags_a_change_beyond_the_noise():
    """Thin one caller's contended events to a tenth: its rate change must be flagged, others not."""
    base = report(FULL_DAT)
    changed, name = thinned()
    d = diff_documents(base, changed)
    group = next(g for g in d["groups"] if g["dimension"] == "caller" and g["name"] == name)
    rate = next(m for m in group["metrics"] if m["metric"] == "contended_per_sec")
    assert rate["change"] < -0.8 and rate["significant"] is True
    unchanged = [g for g in d["groups"] if g["dimension"] == "caller" and g["name"] != name]
    for g in unchanged:
        m = next(m for m in g["metrics"] if m["metric"] == "contended_per_sec")
        assert m["change"] == 0.0 and not m["significant"]


def test_merge_counts_and_histograms_are_exact(tmp_path):
    a, b = report(FULL_DAT), report(FULL_V6_DAT)
    m = merge_docs([a, b], ["a", "b"])
    assert m["schema"] == "zlperf.report/1"
    for k, v in m["events"].items():
        assert v == a["events"].get(k, 0) + b["events"].get(k, 0)
    za = {z["label"]: z for z in a["zones"]}
    zb = {z["label"]: z for z in b["zones"]}
    for z in m["zones"]:
        x, y = za[z["label"]], zb[z["label"]]
        for key in ("contended_events", "acquisitions", "contended", "unmatched_unlocks"):
            assert z[key] == x[key] + y[key]
        for s in ("wait_ns", "hold_ns"):
            width = max(len(x[s]["hist_log2"]), len(y[s]["hist_log2"]))
            pad = lambda h: h + [0] * (width - len(h))
            assert z[s]["hist_log2"] == [p + q for p, q in zip(pad(x[s]["hist_log2"]), pad(y[s]["hist_log2"]))]
            assert z[s]["count"] == x[s]["count"] + y[s]["count"] and z[s]["sum"] == x[s]["sum"] + y[s]["sum"]
            assert z[s]["min"] == min(x[s]["min"], y[s]["min"]) and z[s]["max"] == max(x[s]["max"], y[s]["max"])
            assert z[s]["percentiles_from"].startswith("log-linear")
    assert "percentiles" in m["percentiles_note"]


def _all_keys(doc: dict) -> set[str]:
    """Key paths of a document: top level, and each group list's entry keys."""
    keys = {f".{k}" for k in doc}
    for dim in ("zones", "callers", "cpus", "tasks", "hold_by_batch", "top_waits", "top_holds", "contended_stacks"):
        for e in doc[dim]:
            keys |= {f".{dim}[].{k}" for k in e}
    keys |= {f".totals.{k}" for k in doc["totals"]}
    return keys


def test_merged_document_carries_every_key_of_a_single_report():
    a = report(FULL_DAT)
    m = merge_docs([a, report(FULL_V6_DAT)], ["a", "b"])
    missing = _all_keys(a) - _all_keys(m)
    assert not missing, missing
    assert m["cpus"] and m["tasks"] and m["timeline"]["bins"] and m["notes"] == [] and m["wait_is"] == a["wait_is"]
    assert all(z["slices"] is not None for z in m["zones"])
    assert sum(len(d["cpus"]) for d in (a, report(FULL_V6_DAT))) == len(m["cpus"])  # per host, not pooled
    assert {c["host"] for c in m["cpus"]} == {"a", "b"}


def test_diff_of_two_merged_documents_flags_the_real_change():
    """Fleet A = two hosts; fleet B = the same hosts with one caller thinned on the first: flagged, others not."""
    v6 = report(FULL_V6_DAT)
    changed, name = thinned()
    fleet_a = merge_docs([report(FULL_DAT), v6], ["h1", "h2"])
    fleet_b = merge_docs([changed, v6], ["h1", "h2"])
    d = diff_documents(fleet_a, fleet_b)
    rate = {g["name"]: next(m for m in g["metrics"] if m["metric"] == "contended_per_sec")
            for g in d["groups"] if g["dimension"] == "caller"}
    assert rate[name]["change"] < -0.3 and rate[name]["significant"] is True
    assert not any(m["significant"] for caller, m in rate.items() if caller != name)
    assert not any(m["significant"] for g in diff_documents(fleet_a, fleet_a)["groups"] for m in g["metrics"])


def test_merge_keeps_the_share_of_cpus():
    """Two identical hosts: the same share of their CPUs spinning, not half of it."""
    a = report(FULL_DAT)
    m = merge_docs([a, a], ["a", "b"])
    assert m["cpu_time_ns"] == 2 * a["cpu_time_ns"] and m["source"]["cpus"] == 2 * a["source"]["cpus"]
    share = lambda d: d["totals"]["wait_ns"]["sum"] / d["cpu_time_ns"]
    assert share(m) == share(a)
    from zlperf.render.text import render_text

    pct = lambda d: re.search(r"(\d+\.\d+)% of \d+ CPUs", render_text(d)).group(1)
    assert pct(m) == pct(a) == "3.72"


def test_diff_says_when_abis_or_profiles_differ_and_never_invents_zeros():
    full, minimal = report(FULL_DAT), report(MINIMAL_DAT)
    d = diff_documents(minimal, full)
    assert any("different profiles: A is minimal, B is hold-time" in x for x in d["differences"])
    for g in d["groups"]:
        for m in g["metrics"]:
            if m["metric"].startswith(("wait", "hold", "acquisitions", "contention")):
                assert m["a"] is None and m["change"] is None  # minimal cannot measure them: not 0, not "new"


def test_merge_of_mixed_profiles_keeps_unknowns_null():
    m = merge_docs([report(FULL_DAT), report(WAIT_DAT)], ["full", "wait"])
    for z in m["zones"]:
        assert z["hold_ns"] is None  # the wait-time recording cannot tell holds
        assert z["acquisitions"] is not None


def test_cli_diff_and_merge(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "zlperf", *a], capture_output=True, text=True)
    for src, name in ((FULL_DAT, "a.json"), (FULL_V6_DAT, "b.json")):
        out = run("report", str(src), "--json")
        assert out.returncode == 0, out.stderr
        (tmp_path / name).write_text(out.stdout)
    diff = run("diff", str(tmp_path / "a.json"), str(FULL_V6_DAT))
    assert diff.returncode == 0, diff.stderr
    assert "== zone 0:Normal" in diff.stdout and "contended_per_sec" in diff.stdout
    merged = run("merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert merged.returncode == 0, merged.stderr
    doc = json.loads(merged.stdout)
    assert [s["name"] for s in doc["merged_from"]] == ["a", "b"]
    text = run("merge", "--text", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert "merge of 2 reports" in text.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    err = run("merge", str(bad))
    assert err.returncode != 0 and "bad.json:1:2" in err.stderr and "Traceback" not in err.stderr
