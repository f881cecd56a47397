"""Text rendering of a report document: tables, bcc-style log2 histograms, timeline, worst cases.

Reads only the ``zlperf.report/1`` document, so a report from a file, a merge or a live
analysis print the same way.
"""

from __future__ import annotations

__all__ = ["render_text", "render_diff", "render_folded", "format_ns", "log2_hist_lines"]

from typing import Any, Optional

#: Report dimension -> the document's list of its groups.
DIM_KEYS = {"zone": "zones", "caller": "callers", "cpu": "cpus", "task": "tasks"}


def format_ns(ns: Optional[float]) -> str:
    """A duration for people: 812ns, 22.0us, 9.08ms, 1.20s; '-' when unknown."""
    if ns is None:
        return "-"
    ns = float(ns)
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            v = ns / scale
            return f"{v:.3g}{unit}" if v < 100 else f"{v:.0f}{unit}"
    return f"{ns:.0f}ns"


def _num(v: Any) -> str:
    return "-" if v is None else str(v)


def _ts(ns: int) -> str:
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def log2_hist_lines(hist: list[int], unit: str = "ns", width: int = 40) -> list[str]:
    """bcc's log2 histogram: ``low -> high : count |****|``."""
    if not hist:
        return []
    peak = max(hist) or 1
    lines = [f"{unit:>23} : count     distribution"]
    first = next((i for i, c in enumerate(hist) if c), 0)
    for i in range(first, len(hist)):
        lo = 0 if i == 0 else 1 << (i - 1)
        hi = 0 if i == 0 else (1 << i) - 1
        stars = "*" * (hist[i] * width // peak) if hist[i] else ""
        lines.append(f"{lo:>10} -> {hi:<10}: {hist[i]:<9} |{stars:<{width}}|")
    return lines


def _table(rows: list[list[str]], header: list[str], left: frozenset = frozenset({0})) -> list[str]:
    """Columns padded to their widest cell; columns in ``left`` are left-aligned (text), others right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [line(header).rstrip()] + [line(r).rstrip() for r in rows]


def _label(dim: str, e: dict) -> str:
    if dim == "zone":
        return e["label"]
    if dim == "caller":
        return e["caller"] + ("  (unlock)" if e.get("role") == "unlock" else "")
    host = f"{e['host']}:" if e.get("host") else ""  # merged documents keep each CPU's and task's host
    if dim == "cpu":
        return f"{host}cpu{e['cpu']}"
    return f"{host}{e['comm']}-{e['pid']}"


def _holder_rows(doc: dict, top: Optional[int]) -> list[str]:
    """--by holder: the wait each holder caller caused, over every waiter."""
    h = doc.get("holders")
    if not h:
        return ["  (this recording cannot tell who held the lock: record with --profile hold-time)"]
    rows = [[x["holder_caller"], str(x["waits"]), format_ns(x["wait_ns_sum"]), _pct(x["wait_ns_sum"], h["wait_ns_sum"])]
            for x in h["by_caller"][: top or None]]
    return _table(rows, ["holder caller", "waits", "wait total", "share"]) if rows else ["  (no contended waits)"]


def _host_rows(doc: dict, top: Optional[int]) -> list[str]:
    """--by host (fleet reports): each host's contention, most contended first."""
    hosts = doc.get("hosts")
    if not hosts:
        return ["  (one recording: zlperf fleet reports on hosts)"]
    rows = []
    for h in hosts[: top or None]:
        ratio, rate = h["contention_ratio"], h["contended_per_sec"]
        rows.append([h["host"], h["kernel"] or "-", h["profile"], _num(h["contended_events"]),
                     "-" if rate is None else f"{rate:.1f}", "-" if ratio is None else f"{100 * ratio:.2f}",
                     format_ns(h["wait_p99_ns"]), format_ns(h["hold_p99_ns"])])
    return _table(rows, ["host", "kernel", "profile", "contended", "/s", "cont%", "wait p99", "hold p99"],
                  left=frozenset({0, 1, 2}))


def _group_rows(doc: dict, dim: str, top: Optional[int]) -> list[str]:
    if dim == "holder":
        return _holder_rows(doc, top)
    if dim == "host":
        return _host_rows(doc, top)
    can = doc["can_show"]
    entries = doc[DIM_KEYS[dim]]
    if top:
        entries = entries[:top]
    header = [dim, "contended", "/s"]
    if can["acquisitions"]:
        header += ["acquired", "cont%"]
    if can["waits"]:
        header += ["wait p50", "p99", "max", "total"]
    if can["holds"]:
        header += ["hold p50", "p99", "max", "unmatched"]
    if not entries:
        return ["  (none: no zone-lock contention in this recording)"]
    rows = []
    for e in entries:
        r = [_label(dim, e), _num(e["contended_events"]),
             "-" if e["contended_per_sec"] is None else f"{e['contended_per_sec']:.1f}"]
        if can["acquisitions"]:
            ratio = e["contention_ratio"]
            r += [_num(e["acquisitions"]), "-" if ratio is None else f"{100 * ratio:.2f}"]
        if can["waits"]:
            w = e["wait_ns"] or {}
            r += [format_ns(w.get("p50")), format_ns(w.get("p99")), format_ns(w.get("max")), format_ns(w.get("sum"))]
        if can["holds"]:
            h = e["hold_ns"] or {}
            r += [format_ns(h.get("p50")), format_ns(h.get("p99")), format_ns(h.get("max")),
                  _num(e["unmatched_unlocks"])]
        rows.append(r)
    return _table(rows, header)


def _timeline_lines(doc: dict, width: int = 40) -> list[str]:
    tl = doc["timeline"]
    bins = tl["bins"]
    can = doc["can_show"]
    key = "contended_events" if any(b["contended_events"] for b in bins) or not can["acquisitions"] else "waits"
    peak = max((b[key] for b in bins), default=0) or 1
    lines = [f"{'time (s)':>16}  {key:>10}  {'wait total':>10}  distribution  (bin {format_ns(tl['bin_ns'])})"]
    for b in bins:
        bar = "#" * (b[key] * width // peak) if b[key] else ""
        wait = format_ns(b["wait_sum_ns"]) if can["waits"] else "-"
        lines.append(f"{_ts(b['t_ns'])[:-6]:>16}  {b[key]:>10}  {wait:>10}  |{bar:<{width}}|")
    return lines


def _worst_lines(rows: list[dict], col: str) -> list[str]:
    table = [[format_ns(r[col]), _ts(r["ts_ns"]), str(r["cpu"]), f"{r['comm']}-{r['pid']}", r["zone"] or "-",
              r["caller"]] for r in rows]
    return _table(table, [col.replace("_ns", ""), "timestamp", "cpu", "task", "zone", "caller"],
                  left=frozenset({3, 4, 5}))


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _holder_lines(doc: dict, top: Optional[int]) -> list[str]:
    """== who made them wait: the holder behind each wait, by caller pair, by holder, convoys, worst waits."""
    h = doc["holders"]
    n, total = h["waits"], h["wait_ns_sum"]
    out = [f"== who made them wait: {n} waits, each behind the last release of its zone on another CPU before "
           "it ended"]
    if h.get("uncontended"):
        out.append(f"   {h['uncontended']} acquisitions had no release of their zone on another CPU inside their "
                   "wait: uncontended, left out (zone_lock:* events say nothing of contention)")
    if not n:
        return out + ["   (no contended acquisitions)"]
    traced = n - h["not_traced"]
    out.append(f"   {traced} waits ({_pct(traced, n)}) behind traced holders; {h['not_traced']} "
               f"({_pct(h['not_traced'], n)}, {format_ns(h['not_traced_wait_ns_sum'])} of wait) behind "
               "(not traced) holders: zone->lock held by a path without tracepoints (rmqueue_buddy, compaction, "
               "isolation, hotplug, vmstat) or since before the recording began")
    if h["no_acquisition_seen"]:
        out.append(f"   {h['no_acquisition_seen']} waits behind a release whose acquisition was not seen "
                   "(no acquisition seen: a trylock path, or a ring-buffer gap)")
    chains = ", ".join(f"{c['chains']} of {c['length']}" for c in h["convoys"] if c["length"] > 1)
    out.append(f"   {h['handed_off']} waits ({_pct(h['handed_off'], n)}) were handed off by a holder that had waited "
               f"itself" + (f"; convoys (back-to-back contended acquisitions): {chains}" if chains else ""))
    rows = [[x["waiter_caller"], x["holder_caller"], str(x["waits"]), format_ns(x["wait_ns_sum"]),
             _pct(x["wait_ns_sum"], total)] for x in doc["handoffs"][: top or None]]
    out.append("")
    out.extend(_table(rows, ["waiter caller", "holder caller", "waits", "wait total", "share"],
                      left=frozenset({0, 1})))
    if h["top"]:
        out.append("")
        out.append("holders that cost the most wait:")
        rows = [[x["caller"], (f"{x['host']}:" if x.get("host") else "") + f"{x['comm']}-{x['pid']}", str(x["cpu"]),
                 str(x["waits"]), format_ns(x["wait_ns_sum"]), _pct(x["wait_ns_sum"], total)]
                for x in h["top"][: top or None]]
        out.extend(_table(rows, ["holder caller", "task", "cpu", "waits", "wait total", "share"],
                          left=frozenset({0, 1})))
    held = [w for w in doc["top_waits"] if w.get("holder")]
    if held:
        out.append("")
        out.append(f"holders of the worst {len(held)} waits:")
        rows = []
        for w in held:
            x = w["holder"]
            who = f"{x['comm']}-{x['pid']}" if x.get("pid") is not None else "-"
            rows.append([format_ns(w["wait_ns"]), _ts(w["ts_ns"]), f"{w['comm']}-{w['pid']}", who,
                         "-" if x.get("cpu") is None else str(x["cpu"]), x["caller"], format_ns(x.get("hold_ns")),
                         _num(x.get("count")), "yes" if x.get("waited") else ""])
        out.extend(_table(rows, ["wait", "timestamp", "waiter", "holder", "cpu", "holder caller", "hold", "batch",
                                 "it waited"], left=frozenset({2, 3, 5})))
    return out


def _verdict(doc: dict) -> list[str]:
    """Two or three lines that answer "is zone->lock hurting?" before any table."""
    t, can = doc["totals"], doc["can_show"]
    secs = doc["duration_ns"] / 1e9
    lines = []
    if can["waits"] and t["wait_ns"] and t["wait_ns"]["count"] and t.get("spinning_cpus") is not None:
        cpus = doc["source"].get("cpus") or 0
        # Share of the CPU time there was: duration x CPUs, summed over hosts in a merged document.
        cpu_time = doc.get("cpu_time_ns") or doc["duration_ns"] * cpus
        share = f", {100 * t['wait_ns']['sum'] / cpu_time:.2f}% of {cpus} CPUs" if cpu_time else ""
        per = " per recording" if doc.get("merged_from") else ""
        lines.append(f"verdict:   CPUs spent {format_ns(t['wait_ns']['sum'])} waiting for zone->lock in {secs:.3f} s "
                     f"(on average {t['spinning_cpus']:.3f} CPUs{per}{share})")
    elif t["contended_events"]:
        lines.append(f"verdict:   {t['contended_events']} contended acquisitions in {secs:.3f} s "
                     f"({t['contended_per_sec']:.1f}/s); record with --profile wait-time to see how long they spin")
    else:
        lines.append(f"verdict:   no zone->lock contention seen in {secs:.3f} s")
    zones = [z for z in doc["zones"] if z.get("held_fraction") is not None]
    if zones:
        z = max(zones, key=lambda z: z["held_fraction"])
        lines.append(f"           busiest zone {z['label']}: held {100 * z['held_fraction']:.2f}% of the time "
                     f"(hold p99 {format_ns((z['hold_ns'] or {}).get('p99'))})")
    callers = [c for c in doc["callers"] if c.get("role") == "lock" and c["contended_events"]]
    if callers and t["contended_events"]:
        c = callers[0]
        lines.append(f"           most contention from {c['caller']}: "
                     f"{100 * c['contended_events'] / t['contended_events']:.0f}% of contended events")
    h = doc.get("holders")
    if h and h["waits"]:
        if doc["handoffs"] and doc["handoffs"][0]["holder_caller"] not in ("(not traced)", "(no acquisition seen)"):
            x = doc["handoffs"][0]
            lines.append(f"           most wait: {x['waiter_caller']} waiting behind {x['holder_caller']} holding it "
                         f"({_pct(x['wait_ns_sum'], h['wait_ns_sum'])} of all wait)")
        if h["handed_off"] * 2 >= h["waits"]:
            longest = max((c["length"] for c in h["convoys"]), default=1)
            lines.append(f"           convoys dominate: {_pct(h['handed_off'], h['waits'])} of waits were handed "
                         f"from one waiter to the next (chains up to {longest} long)")
        if h["not_traced"] * 2 >= h["waits"]:
            lines.append(f"           most waits ({_pct(h['not_traced'], h['waits'])}) are behind holders without "
                         "tracepoints: record the zone_lock:* series or stacks to see them")
    return lines


def render_text(doc: dict, by: Optional[list[str]] = None, top: Optional[int] = 10) -> str:
    """The full text report; ``by`` picks the group tables (default zone and caller)."""
    by = by or ["zone", "caller"]
    can = doc["can_show"]
    src = doc["source"]
    out: list[str] = []
    out.append(f"zlperf report: {src['path']}  [{src['format']}, clock {src['clock'] or '?'}, {src['cpus']} cpus]")
    out.append(f"ABI read:  {doc['abi']}")
    out.append(f"profile:   {doc['profile']}")
    w = doc["window"]
    out.append(f"window:    {_ts(w['first_ts_ns'])} .. {_ts(w['last_ts_ns'])}  ({doc['duration_ns'] / 1e9:.3f} s)"
               + (f"  zone {w['zone']}" if w.get("zone") else ""))
    out.append("events:    " + ", ".join(f"{k} {v}" for k, v in doc["events"].items()) if doc["events"] else
               "events:    none")
    missed = doc["missed_events"]
    gaps = doc.get("missed_events_unknown_gaps", 0)
    line = f"missed:    {missed} events lost in ring-buffer overruns"
    if gaps:
        line += f" (+{gaps} gaps of unknown size)"
    if doc.get("kernel_overrun"):
        line += f"; kernel overrun counter {doc['kernel_overrun']}"
    out.append(line)
    if doc.get("source", {}).get("kallsyms"):
        out.append(f"symbols:   {doc['source']['kallsyms']}")
    for note in ("duration_note", "percentiles_note", "timeline_note"):
        if doc.get(note):
            out.append(f"note:      {doc[note]}")
    for warning in doc.get("warnings", []):
        out.append(f"WARNING:   {warning}")

    t = doc["totals"]
    out.append("")
    out.extend(_verdict(doc))
    out.append("")
    summary = f"contended events: {_num(t['contended_events'])}"
    if t["contended_per_sec"] is not None:
        summary += f" ({t['contended_per_sec']:.1f}/s)"
    if can["acquisitions"] and t["acquisitions"]:
        summary += f"; acquisitions: {t['acquisitions']}"
        if t["contention_ratio"] is not None:
            summary += f", contended {t['contended']} ({100 * t['contention_ratio']:.2f}%)"
    out.append(summary)
    if can["holds"]:
        out.append(f"pairing: {t['hold_ns']['count'] if t['hold_ns'] else 0} holds, "
                   f"{t['unmatched_unlocks']} unmatched unlocks (trylock paths), {t['unreleased']} unreleased, "
                   f"{t['broken_by_missed']} broken by missed events")

    for dim in by:
        out.append("")
        out.append(f"== by {dim}" + {"caller": " (waits and holds attributed to the locked caller)",
                                      "holder": " (the wait each holder caused)",
                                      "host": f" ({len(doc.get('hosts') or [])} hosts, most contended first)",
                                      }.get(dim, ""))
        out.extend(_group_rows(doc, dim, top))

    if can["waits"] and t["wait_ns"]:
        out.append("")
        out.append(f"== wait time, {doc.get('wait_is', 'contended acquisitions')} (all zones): "
                   f"count {t['wait_ns']['count']}, "
                   f"p50 {format_ns(t['wait_ns']['p50'])}, p99 {format_ns(t['wait_ns']['p99'])}, "
                   f"max {format_ns(t['wait_ns']['max'])}")
        out.extend(log2_hist_lines(t["wait_ns"]["hist_log2"], "nsecs"))
    if can["holds"] and t["hold_ns"]:
        out.append("")
        out.append(f"== hold time (all zones): count {t['hold_ns']['count']}, p50 {format_ns(t['hold_ns']['p50'])}, "
                   f"p99 {format_ns(t['hold_ns']['p99'])}, max {format_ns(t['hold_ns']['max'])}")
        out.extend(log2_hist_lines(t["hold_ns"]["hist_log2"], "nsecs"))
        if doc["hold_by_batch"]:
            out.append("")
            out.append("== hold time by batch size (pages in the locked event's count)")
            rows = [[f"{b['batch_min']}-{b['batch_max']}", str(b["hold_ns"]["count"]), format_ns(b["hold_ns"]["p50"]),
                     format_ns(b["hold_ns"]["p99"]), format_ns(b["hold_ns"]["max"]), format_ns(b["hold_ns"]["mean"])]
                    for b in doc["hold_by_batch"]]
            out.extend(_table(rows, ["batch", "holds", "p50", "p99", "max", "mean"]))

    if doc["timeline"]["bins"] and (t["contended_events"] or t.get("acquisitions")):
        out.append("")
        out.append("== timeline")
        out.extend(_timeline_lines(doc))
    if doc["top_waits"]:
        out.append("")
        out.append(f"== worst {len(doc['top_waits'])} waits")
        out.extend(_worst_lines(doc["top_waits"], "wait_ns"))
    if doc["top_holds"]:
        out.append("")
        out.append(f"== worst {len(doc['top_holds'])} holds")
        out.extend(_worst_lines(doc["top_holds"], "hold_ns"))
    if doc.get("holders"):
        out.append("")
        out.extend(_holder_lines(doc, top))
    if doc.get("contended_stacks"):
        shown = doc["contended_stacks"][: min(top or 3, 3)]  # each stack is many lines: --json has them all
        total = sum(st["count"] for st in doc["contended_stacks"])
        out.append("")
        out.append(f"== contended stacks: {len(shown)} of {len(doc['contended_stacks'])} distinct, "
                   f"{total} contended events with a stack")
        for st in shown:
            out.append(f"  {st['count']} ({100 * st['count'] / total:.1f}%)")
            out.extend(f"      {frame}" for frame in st["frames"])
    if doc.get("notes"):
        out.append("")
        out.append("notes:")
        out.extend(f"  - {n}" for n in doc["notes"])
    if doc["cannot_show"]:
        out.append("")
        out.append("not shown by this recording:")
        out.extend(f"  - {c}" for c in doc["cannot_show"])
    return "\n".join(out) + "\n"


def _fmt_metric(metric: str, v: Optional[float]) -> str:
    if v is None:
        return "-"
    if metric.endswith("_ns"):
        return format_ns(v)
    if metric == "contention_ratio":
        return f"{100 * v:.2f}%"
    return f"{v:.1f}"


def render_diff(diff: dict) -> str:
    """Side-by-side table of ``zlperf diff``: A, B, change, and whether it beats the noise."""
    out = [f"zlperf diff:  A = {diff['a']}", f"              B = {diff['b']}",
           f"'!' marks a change larger than {diff['noise_sigmas']:g} standard errors of the runs' own noise "
           "(spread across time slices); '?' = no noise estimate for this metric; '-' = not measured"]
    out += [f"NOTE:         {d}" for d in diff.get("differences", [])]
    out.append("")
    for g in diff["groups"]:
        where = "" if g["in_a"] and g["in_b"] else ("  (only in A)" if g["in_a"] else "  (only in B)")
        out.append(f"== {g['dimension']} {g['name']}{where}")
        rows = []
        for m in g["metrics"]:
            change = "-" if m["change"] is None else ("new" if m["change"] == float("inf") else f"{100 * m['change']:+.1f}%")
            flag = "?" if m["significant"] is None else ("!" if m["significant"] else "")
            rows.append([m["metric"], _fmt_metric(m["metric"], m["a"]), _fmt_metric(m["metric"], m["b"]), change, flag])
        out.extend("  " + line for line in _table(rows, ["metric", "A", "B", "change", ""]))
        out.append("")
    return "\n".join(out)


def render_folded(doc: dict) -> str:
    """Contended stacks as folded lines for flamegraph.pl / speedscope: ``root;...;leaf count``."""
    lines = []
    for st in doc.get("contended_stacks", []):
        names = [frame.split("+0x", 1)[0] for frame in reversed(st["frames"])]
        lines.append(f"{';'.join(names)} {st['count']}")
    return "\n".join(lines) + ("\n" if lines else "")
