"""The fast numpy reader and the libtracecmd reader agree on every event, field and timestamp.

Checked on every fixture and on a large trace recorded on this machine (kmem_trace); per-name
counts are also checked against `trace-cmd report` itself, so both readers cannot be wrong alike.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np

from conftest import requires_trace_cmd
from zlperf.events import MISSED_EVENTS
from zlperf.readers import open_trace

pytestmark = requires_trace_cmd


#: Fields holding code addresses (symbolized as func+0xoff by the analysis and by trace-cmd).
_CODE_FIELDS = {"caller", "ip", "parent_ip", "call_site", "func"}


def _norm(f):
    """A field with the blanks of its C type removed."""
    return dataclasses.replace(f, type="".join(f.type.split()))


def report_counts(path: Path, instances: list[str]) -> dict[str, tuple[Counter, Counter]]:
    """Per buffer: event counts and per-CPU dropped-event lines, from `trace-cmd report` text."""
    text = subprocess.run(["trace-cmd", "report", str(path)], check=True, capture_output=True,
                          text=True, errors="replace").stdout
    out: dict[str, tuple[Counter, Counter]] = {}
    after_drop = None  # report prints "BUF: CPU:N [..DROPPED]", then the next event without "BUF: "
    for line in text.splitlines()[1:]:
        if line.startswith("=>"):
            continue
        buf, head = "", line
        for name in instances:
            if line.startswith(name + ": "):
                buf, head = name, line[len(name) + 2:]
        events, drops = out.setdefault(buf, (Counter(), Counter()))
        if "EVENTS DROPPED]" in head:
            drops[int(head.split("CPU:", 1)[1].split()[0])] += 1
            after_drop = buf
            continue
        if "]" not in head:
            continue
        if not buf and after_drop:
            events, drops = out.setdefault(after_drop, (Counter(), Counter()))
        after_drop = None
        # "comm-pid [cpu] ts: event: ..." -> the word between the next two ':' after the "]".
        events[head.split("]", 1)[1].split(":")[1].strip()] += 1
    return out


def columns(reader, buffer: str, comms: dict | None = None) -> dict[str, dict]:
    """Every event of ``buffer``, per name, ordered by (cpu, position in that CPU's stream); the task
    names chunks carry go into ``comms``."""
    parts: dict[str, list] = {}
    for chunk in reader.chunks(buffer=buffer):
        if comms is not None:
            comms.update(chunk.comms)
        for name, b in chunk.batches.items():
            parts.setdefault(name, []).append(b)
    names = sorted(parts)
    cat = {n: {"ts": np.concatenate([b.ts for b in parts[n]]), "cpu": np.concatenate([b.cpu for b in parts[n]]),
               "pid": np.concatenate([b.pid for b in parts[n]]), "seq": np.concatenate([b.seq for b in parts[n]]),
               "fields": {f: [b.fields[f] for b in parts[n]] for f in parts[n][0].fields}} for n in names}
    # Rank of each event inside its CPU's stream: comparable between readers whatever their seq.
    all_cpu = np.concatenate([cat[n]["cpu"] for n in names]) if names else np.zeros(0, np.int32)
    all_seq = np.concatenate([cat[n]["seq"] for n in names]) if names else np.zeros(0, np.int64)
    order = np.lexsort((all_seq, all_cpu))
    rank = np.empty(len(order), dtype=np.int64)
    sorted_cpu = all_cpu[order]
    starts = np.searchsorted(sorted_cpu, sorted_cpu, side="left")
    rank[order] = np.arange(len(order)) - starts
    pos = 0
    for n in names:
        c = cat[n]
        k = len(c["ts"])
        c["rank"] = rank[pos:pos + k]
        pos += k
        o = np.lexsort((c["rank"], c["cpu"]))
        for key in ("ts", "cpu", "pid", "rank"):
            c[key] = c[key][o]
        for f, cols in c["fields"].items():
            c["fields"][f] = _concat(cols)[o]
    return cat


def _concat(cols: list[np.ndarray]) -> np.ndarray:
    """Join column pieces; 2-D pieces (stacks) are zero-padded to the widest."""
    if cols[0].ndim == 2:
        width = max(c.shape[1] for c in cols)
        cols = [np.pad(c, ((0, 0), (0, width - c.shape[1]))) for c in cols]
    return np.concatenate(cols)


def assert_same_column(name: str, field: str, a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype, (name, field, a.dtype, b.dtype)
    if a.dtype == object:
        bad = [i for i in range(len(a)) if not _same_obj(a[i], b[i])]
        assert not bad, (name, field, bad[:5], a[bad[0]], b[bad[0]])
        return
    if a.ndim == 2:
        # Stacks: zero padding past each stack's end may differ in width, never in content.
        width = max(a.shape[1], b.shape[1])
        a = np.pad(a, ((0, 0), (0, width - a.shape[1])))
        b = np.pad(b, ((0, 0), (0, width - b.shape[1])))
    assert a.shape == b.shape, (name, field)
    bad = np.nonzero((a != b).reshape(len(a), -1).any(axis=1))[0]
    assert bad.size == 0, (name, field, bad[:5], a[bad[:3]], b[bad[:3]])


def _same_obj(x, y) -> bool:
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.dtype == y.dtype and \
            np.array_equal(x, y)
    return type(x) is type(y) and x == y


def check_parity(path: Path) -> dict[str, float]:
    """Both readers on ``path``: same metadata, same events; returns events/s of each."""
    fast = open_trace(path, reader="fast")
    ref = open_trace(path, reader="libtracecmd")
    speed = {}
    try:
        fi, li = fast.info, ref.info
        for attr in ("format", "version", "compression", "clock", "long_size", "page_size", "cpus", "uname"):
            assert getattr(fi, attr) == getattr(li, attr), attr
        assert sorted(fi.buffers) == sorted(li.buffers)
        common = set(fi.formats) & set(li.formats)
        assert common == set(li.formats)  # every format libtraceevent parsed, the fast reader has
        for key in common:
            a, b = fi.formats[key], li.formats[key]
            assert (a.system, a.name, a.id) == (b.system, b.name, b.id), key
            # libtraceevent re-spaces C types ("char *const *" -> "char * const *"): compare sans blanks.
            assert [_norm(f) for f in a.fields] == [_norm(f) for f in b.fields], key
        per_buf = report_counts(path, [b for b in li.buffers if b])
        for buffer in li.buffers:
            t0 = time.perf_counter()
            fc = columns(fast, buffer)
            speed["fast"] = speed.get("fast", 0.0) + time.perf_counter() - t0
            t0 = time.perf_counter()
            comms: dict[int, str] = {}
            lc = columns(ref, buffer, comms)
            speed["libtracecmd"] = speed.get("libtracecmd", 0.0) + time.perf_counter() - t0
            assert sorted(fc) == sorted(lc), buffer
            read = buffer
            if buffer == "" and not per_buf.get("", (Counter(),))[0]:
                # Both readers read the one instance with data when the top buffer is empty.
                full = [b for b, (ev, _) in per_buf.items() if b and ev]
                read = full[0] if len(full) == 1 else ""
            want, drops = per_buf.get(read, (Counter(), Counter()))
            got = Counter({n.split(":", 1)[1]: len(c["ts"]) for n, c in lc.items() if n != MISSED_EVENTS})
            assert got == want, buffer
            if MISSED_EVENTS in lc:
                assert Counter(lc[MISSED_EVENTS]["cpu"].tolist()) == drops
            else:
                assert not drops
            addrs = set()
            for name in lc:
                f, l = fc[name], lc[name]
                for key in ("cpu", "rank", "ts", "pid"):
                    assert np.array_equal(f[key], l[key]), (name, key)
                    assert f[key].dtype == l[key].dtype, (name, key)
                assert sorted(f["fields"]) == sorted(l["fields"]), name
                for field in l["fields"]:
                    assert_same_column(name, field, f["fields"][field], l["fields"][field])
                    col = l["fields"][field]
                    if field in _CODE_FIELDS and col.dtype == np.uint64:
                        addrs.update(int(x) for x in np.unique(col) if x)
            # Code addresses in the events symbolize the same with either reader's table (data
            # pointers such as lock_addr are not compared: libtraceevent keeps data symbols too).
            if addrs and li.symbols is not None:
                ordered = sorted(addrs)
                assert fi.symbols.symbolize_many(ordered) == li.symbols.symbolize_many(ordered)
            # Saved cmdlines: the same comm for every pid the events show (libtracecmd names the
            # tasks of each chunk as it goes).
            assert comms or not any(len(c["pid"]) for n, c in lc.items() if n != MISSED_EVENTS)
            for n, c in lc.items():
                for pid in np.unique(c["pid"]).tolist():
                    if pid in comms:
                        assert fi.cmdlines.get(pid) == comms[pid], pid
        # Last, so that an event mismatch is reported first.
        assert {c: vars(s) for c, s in fi.cpu_stats.items()} == {c: vars(s) for c, s in li.cpu_stats.items()}
        total = sum(len(c["ts"]) for c in lc.values())
        return {k: total / v for k, v in speed.items()}
    finally:
        fast.close()
        ref.close()


def test_readers_agree_on_every_fixture(trace_dat):
    check_parity(trace_dat)


def test_readers_agree_on_a_large_recorded_trace(kmem_trace, capsys):
    speeds = check_parity(kmem_trace)
    with capsys.disabled():
        print("\nparity on %s: read + collated for comparison (wall clock) at %s" % (
            kmem_trace.name, ", ".join(f"{k} {v:,.0f} events/s" for k, v in speeds.items())))


def test_report_json_is_the_same_with_either_reader(trace_dat, capsys):
    """End to end: `zlperf report --json` gives the same document whichever reader decodes."""
    import json

    from zlperf.cli import main

    docs = {}
    for reader in ("fast", "libtracecmd"):
        assert main(["report", str(trace_dat), "--reader", reader, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        # Only where the symbol table came from may differ (the file's section vs libtraceevent).
        assert doc["source"].pop("kallsyms").startswith(str(trace_dat))
        docs[reader] = doc
    assert docs["fast"] == docs["libtracecmd"]
