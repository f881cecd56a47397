"""The stock-kernel frame table: documented, consistent, overridable from a recipe."""

from __future__ import annotations

import subprocess
import sys

from conftest import STOCK_DAT, requires_trace_cmd
from zlperf.analysis.abi.stock_frames import ZONE_LOCK_FRAMES
from zlperf.analysis.stacks import CallerResolver, is_locking_frame, stacks_of
from zlperf.readers import open_trace


def test_every_zone_lock_frame_says_why_and_is_not_locking_code():
    for fn, why in ZONE_LOCK_FRAMES.items():
        assert why.strip(), fn
        assert not is_locking_frame(fn), fn


@requires_trace_cmd
def test_callers_of_the_stock_fixture_match_trace_cmd_stack_prints():
    """The caller zlperf resolves = the first non-locking frame trace-cmd prints for the same stack."""
    text = subprocess.run(["trace-cmd", "report", str(STOCK_DAT)], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    expected = []  # first non-locking frame of each contention_begin's stack, in file order per CPU
    i = 0
    while i < len(text):
        if "contention_begin:" in text[i]:
            cpu = text[i].split("[", 1)[1].split("]", 1)[0]
            j = i + 1
            while j < len(text) and f"[{cpu}]" not in text[j]:
                j += 1
            if j < len(text) and "kernel_stack:" in text[j]:
                frames = []
                k = j + 1
                while k < len(text) and text[k].startswith("=>"):
                    frames.append(text[k].split()[1])
                    k += 1
                expected.append((int(cpu), next((f for f in frames if not is_locking_frame(f)), None)))
        i += 1
    got = []
    with open_trace(str(STOCK_DAT)) as reader:
        resolver = CallerResolver(reader.info)
        for chunk in reader.chunks():
            b = chunk.batches.get("lock:contention_begin")
            if b is None:
                continue
            stacks = stacks_of(chunk, "lock:contention_begin")
            callers = resolver.callers(stacks, len(b))
            for cpu, seq, caller in sorted(zip(b.cpu.tolist(), b.seq.tolist(), callers.tolist())):
                got.append((cpu, resolver.function_of(caller) if caller else None))
    assert sorted(got, key=lambda x: x[0]) == sorted(expected, key=lambda x: x[0])
    assert len(got) == 55 and all(fn for _, fn in got)


def test_recipe_zone_lock_frames_are_validated(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\nextends: stock\nzone_lock_frames: [rmqueue_bulk, \"bad fn\"]\n")
    proc = subprocess.run([sys.executable, "-m", "zlperf", "recipes", "validate", str(bad)], capture_output=True,
                          text=True)
    assert proc.returncode != 0
    assert f"{bad}:3:" in proc.stderr and "zone_lock_frames[1]" in proc.stderr


def test_stacks_are_kept_when_a_chunk_ends_between_an_event_and_its_stack():
    """Readers cut chunks at page runs: a begin may close one chunk and its kernel_stack open the next."""
    from zlperf.analysis import Analyzer
    from zlperf.events import Chunk, EventBatch

    with open_trace(str(STOCK_DAT)) as reader:
        chunks = list(reader.chunks())
        info = reader.info
    split = []
    for c in chunks:
        b = c.batches.get("lock:contention_begin")
        if b is None or not len(b):
            split.append(c)
            continue
        cut = int(b.seq[0])  # cut right after the first begin: its stack lands in the second half
        for part in ((lambda s: s <= cut), (lambda s: s > cut)):
            split.append(Chunk({n: EventBatch(n, x.ts[part(x.seq)], x.cpu[part(x.seq)], x.pid[part(x.seq)],
                                              x.seq[part(x.seq)], {f: v[part(x.seq)] for f, v in x.fields.items()})
                                for n, x in c.batches.items()}))

    def stacks_seen(cs) -> int:
        an = Analyzer(info)
        for c in cs:
            an.feed(c)
        an.result()
        return next(a for a, _ in an.lanes if a.key == "stock").stacks_seen

    assert stacks_seen(split) == stacks_seen(chunks) == 54  # 55 begins, one never ended (no wait)
    assert len(split) > len(chunks)



def test_stacks_add_up_to_the_waits_with_a_no_stack_entry():
    """A wait whose kernel_stack is missing is attributed by its lock address but has no stack: it shows
    as one "(no stack)" entry, so the stacks always sum to the waits (and --folded sums the same)."""
    from zlperf.analysis import AnalysisOptions, Analyzer
    from zlperf.analysis.result import NO_STACK
    from zlperf.events import Chunk, EventBatch
    from zlperf.render.text import render_folded
    from zlperf.report import build_document

    with open_trace(str(STOCK_DAT)) as reader:
        chunks = list(reader.chunks())
        info = reader.info
    every_function = {name: "test: every wait counts as a zone-lock wait" for name in info.symbols.names}
    # Drop the kernel_stack that follows the first contention_begin (same CPU, next seq).
    begin = next(c.batches["lock:contention_begin"] for c in chunks if "lock:contention_begin" in c.batches)
    cpu, seq = int(begin.cpu[0]), int(begin.seq[0])
    dropped = 0
    for c in chunks:
        st = c.batches.get("ftrace:kernel_stack")
        if st is not None:
            keep = ~((st.cpu == cpu) & (st.seq == seq + 1))
            dropped += int((~keep).sum())
            c.batches["ftrace:kernel_stack"] = EventBatch(st.name, st.ts[keep], st.cpu[keep], st.pid[keep], st.seq[keep],
                                                          {k: v[keep] for k, v in st.fields.items()})
    assert dropped == 1
    an = Analyzer(info, AnalysisOptions(zone_lock_frames=every_function))
    for c in chunks:
        an.feed(Chunk(dict(c.batches)))
    doc = build_document(an.result())
    waits = doc["totals"]["wait_ns"]["count"]
    assert waits == doc["totals"]["contended_events"] == 54
    stacks = doc["contended_stacks"]
    assert sum(s["count"] for s in stacks) == waits
    assert [s for s in stacks if s["frames"] == [NO_STACK]] == [{"count": 1, "frames": [NO_STACK]}]
    assert sum(int(line.rsplit(" ", 1)[1]) for line in render_folded(doc).splitlines()) == waits
