"""Independent truth for perf.data tests, computed from `perf script` TEXT (no zlperf code).

The perf equivalent of tests/truth.py: /usr/bin/perf prints the samples (time-sorted, as
perf's ordered-events queue delivers them), this module parses the lines, symbolizes
callers with a plain bisect over the kallsyms file, and computes the report's numbers with
the obvious loops (per-CPU pairing, nearest-rank percentiles from tests/truth.py).
"""

from __future__ import annotations

import bisect
import gzip
import re
import struct
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from truth import stats

PERF = "/usr/bin/perf"

_LINE = re.compile(
    r"^\s*(?P<comm>.*?)\s+(?P<tid>-?\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<ts>\d+\.\d+):\s+"
    r"(?P<event>[\w-]+:[\w-]+):\s*(?P<rest>.*)$"
)
_KV = re.compile(r"(\w+)=(\S+)")


@dataclass
class Sample:
    ts: int  # ns
    cpu: int
    tid: int
    comm: str
    event: str  # "kmem:mm_zone_locked"
    f: dict  # print-format key -> text value
    rest: str = ""
    frames: list = field(default_factory=list)  # (address, dso) of the call chain as printed (-g recordings)


def script_text(path, *extra: str) -> str:
    """`perf script` of ``path`` with one line per sample: comm tid [cpu] secs.ns: event: trace."""
    cmd = [PERF, "script", "-i", str(path), "-F", "comm,tid,cpu,time,event,trace", "--ns", *extra]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def parse(path, callchains: bool = False) -> list[Sample]:
    """Every sample of ``path`` in perf script's order (with -F ip when ``callchains``)."""
    extra = ("-F", "comm,tid,cpu,time,event,trace,ip,dso") if callchains else ()
    out: list[Sample] = []
    for line in script_text(path, *extra).splitlines():
        m = _LINE.match(line)
        if m:
            sec, frac = m.group("ts").split(".")
            out.append(Sample(int(sec) * 10**9 + int(frac.ljust(9, "0")), int(m.group("cpu")), int(m.group("tid")),
                              m.group("comm").strip(), m.group("event"), dict(_KV.findall(m.group("rest"))),
                              m.group("rest")))
        elif out and line.strip() and callchains:
            addr, _, dso = line.strip().partition(" ")
            out[-1].frames.append((int(addr, 16), dso.strip().strip("()")))
    return out


def _is_kernel_dso(dso: str) -> bool:
    """perf names kernel maps in brackets ([kernel.kallsyms], [module]); user ones are paths or these."""
    return dso.startswith("[") and dso not in ("[unknown]", "[vdso]", "[vsyscall]", "[heap]", "[stack]", "[anon]")


def kernel_frames(frames: list) -> list[tuple]:
    """The kernel part of a printed call chain, as the candidates it can be.

    perf prints kernel frames first, in a bracketed kernel map. A kernel address perf could
    not map prints as [unknown], like a garbage user frame: both readings are returned.
    """
    strict = tuple(a for a, dso in frames if _is_kernel_dso(dso) and a >= 1 << 63)
    lead = []
    for a, dso in frames:
        if a < 1 << 63 or not (_is_kernel_dso(dso) or dso == "[unknown]"):
            break
        lead.append(a)
    return [strict, tuple(lead)]


class Symbols:
    """kallsyms text symbols, looked up by bisection: name+0xoff as trace-cmd prints %pS."""

    def __init__(self, path):
        opener = gzip.open if str(path).endswith(".gz") else open
        rows = []
        with opener(path, "rt") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "tTwW" and int(parts[0], 16):
                    rows.append((int(parts[0], 16), parts[2]))
        rows.sort(key=lambda r: r[0])
        self.addrs = [r[0] for r in rows]
        self.names = [r[1] for r in rows]

    def __call__(self, addr: int) -> str:
        i = bisect.bisect_right(self.addrs, addr) - 1
        return f"{self.names[i]}+{addr - self.addrs[i]:#x}" if i >= 0 else f"{addr:#x}"


def expected(path, kallsyms) -> dict:
    """The numbers zlperf's JSON must show for a kmem:mm_zone_lock_* perf.data, by zone and caller."""
    samples = parse(path)
    sym = Symbols(kallsyms)
    events = Counter(s.event for s in samples)
    zones: dict = defaultdict(lambda: {"contended_events": 0, "acquisitions": 0, "contended": 0,
                                        "wait": [], "hold": [], "unmatched_unlocks": 0})
    callers: dict = defaultdict(lambda: {"contended_events": 0, "acquisitions": 0, "wait": [], "hold": []})
    last_on_cpu: dict = {}
    unreleased = 0
    for s in samples:
        if not s.event.startswith("kmem:mm_zone_lock"):
            continue
        zone = f"{s.f['node']}:{s.f['zone']}"
        caller = sym(int(s.f["caller"], 16))
        if s.event == "kmem:mm_zone_lock_contended":
            zones[zone]["contended_events"] += 1
            callers[caller]["contended_events"] += 1
        elif s.event == "kmem:mm_zone_locked":
            zones[zone]["acquisitions"] += 1
            callers[caller]["acquisitions"] += 1
            if s.f["contended"] == "1":
                zones[zone]["contended"] += 1
                zones[zone]["wait"].append(int(s.f["wait"]))
                callers[caller]["wait"].append(int(s.f["wait"]))
            prev = last_on_cpu.get(s.cpu)
            if prev is not None and prev[0].event == "kmem:mm_zone_locked":
                unreleased += 1
            last_on_cpu[s.cpu] = (s, zone, caller)
        elif s.event == "kmem:mm_zone_lock_unlock":
            prev = last_on_cpu.get(s.cpu)
            if prev is not None and prev[0].event == "kmem:mm_zone_locked" and prev[1] == zone:
                hold = s.ts - prev[0].ts
                zones[zone]["hold"].append(hold)
                callers[prev[2]]["hold"].append(hold)
            else:
                zones[zone]["unmatched_unlocks"] += 1
            last_on_cpu[s.cpu] = (s, zone, caller)
    prev_lock = [v for v in last_on_cpu.values() if v[0].event == "kmem:mm_zone_locked"]
    out_zones = {z: {"contended_events": v["contended_events"], "acquisitions": v["acquisitions"],
                     "contended": v["contended"], "wait_ns": stats(v["wait"]), "hold_ns": stats(v["hold"]),
                     "unmatched_unlocks": v["unmatched_unlocks"]} for z, v in zones.items()}
    out_callers = {c: {"contended_events": v["contended_events"], "acquisitions": v["acquisitions"],
                       "wait_ns": stats(v["wait"]), "hold_ns": stats(v["hold"])}
                   for c, v in callers.items() if v["contended_events"] or v["acquisitions"]}
    times = [s.ts for s in samples]
    last_comm = {s.tid: s.comm for s in samples}  # a task renamed by exec is shown by its last name
    per_task = Counter((s.tid, last_comm[s.tid]) for s in samples if s.event == "kmem:mm_zone_locked")
    return {"events": dict(events), "duration_ns": max(times) - min(times) if times else 0,
            "zones": out_zones, "callers": out_callers, "unreleased": unreleased + len(prev_lock),
            "acquisitions_by_task": dict(per_task)}


def sample_records(buf: bytes, data_off: int, data_size: int):
    """(offset, size, cpu, time) of each PERF_RECORD_SAMPLE, by a plain walk of the data section.

    For files with the fixture's sample_type (IDENTIFIER|IP|TID|TIME|CPU|PERIOD|RAW): time is
    word 4 of the record, cpu word 5.
    """
    pos, end, out = data_off, data_off + data_size, []
    while pos < end:
        rtype, _misc, size = struct.unpack_from("<IHH", buf, pos)
        if rtype == 9:
            t, = struct.unpack_from("<Q", buf, pos + 32)
            cpu, = struct.unpack_from("<I", buf, pos + 40)
            out.append((pos, size, cpu, t))
        pos += size
    return out


def write_with_lost(src, dst, lost: int) -> tuple[list, int]:
    """Copy ``src`` to ``dst`` with its middle sample overwritten by a PERF_RECORD_LOST of ``lost``.

    That is how the kernel reports a ring-buffer overrun on that CPU. Returns (the original
    sample records, the CPU of the gap).
    """
    buf = bytearray(open(src, "rb").read())
    d_off, d_size = struct.unpack_from("<QQ", buf, 40)
    recs = sample_records(bytes(buf), d_off, d_size)
    pos, size, cpu, t = recs[len(recs) // 2]
    # LOST: header, u64 id, u64 lost; sample_id_all trailer (TID, TIME, CPU, IDENTIFIER) at the end.
    rec = bytearray(size)
    struct.pack_into("<IHH", rec, 0, 2, 0, size)
    struct.pack_into("<QQ", rec, 8, 0, lost)
    struct.pack_into("<IIQIIQ", rec, size - 32, 0, 0, t, cpu, 0, 0)
    buf[pos:pos + size] = rec
    with open(dst, "wb") as fh:
        fh.write(bytes(buf))
    return recs, cpu


def write_with_idle_samples(src, dst, every: int = 50) -> int:
    """Copy ``src`` to ``dst`` with every ``every``-th sample's pid, tid and common_pid set to 0, as samples taken in an
    interrupt on an idle CPU are. Returns how many were changed."""
    buf = bytearray(open(src, "rb").read())
    d_off, d_size = struct.unpack_from("<QQ", buf, 40)
    recs = sample_records(bytes(buf), d_off, d_size)
    for pos, _size, _cpu, _t in recs[::every]:
        struct.pack_into("<II", buf, pos + 24, 0, 0)  # TID follows IDENTIFIER and IP
        # RAW follows TIME, CPU and PERIOD: u32 size, then the record (common_type u16, flags u8,
        # preempt_count u8, common_pid s32).
        struct.pack_into("<i", buf, pos + 64, 0)
    with open(dst, "wb") as fh:
        fh.write(bytes(buf))
    return len(recs[::every])
