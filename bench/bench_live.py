"""What live tracing costs: events decoded per CPU-second without loss, and the CPU share of `zlperf top`.

1. decode: a LiveSource (tracefs instance, per-CPU trace_pipe_raw) on the page-churn recipe (every page
   allocation and free) while the page-churn workload runs on every CPU, read every 0.2 s and fed to the
   interval analyzer, an interval taken every second, as `zlperf top` does. Reports the sustained event rate,
   events lost (pages flagged by the kernel, and its overrun counter), and this process's CPU time: events
   per CPU-second is what one CPU decodes. Run it in a process of its own (this script).
2. share: `zlperf top --profile stock -n N -i 1` (and `zlperf exporter --profile stock` scraped every second)
   while `python3 -m zlperf.workload` runs: CPU seconds of zlperf and its bpftrace (wait4 rusage of the child)
   over wall seconds.

Usage: sudo python3 bench/bench_live.py [--seconds S] [--only decode|share]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from zlperf.analysis.live import IntervalAnalyzer  # noqa: E402
from zlperf.live.source import LiveSource, live_tracefs  # noqa: E402
from zlperf.recipes import load_recipe  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
WORKLOAD = [sys.executable, "-m", "zlperf.workload"]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def decode(seconds: float) -> dict:
    """Trace the page-churn recipe live while the workload churns; what was decoded, lost, and at what CPU cost."""
    recipe = load_recipe("page-churn")
    recipe.buffer_size_kb = 16384  # what the stock recipe uses: a reader that keeps up needs no more
    source = LiveSource(recipe, live_tracefs(), f"zlperf-bench-{os.getpid()}")
    work = subprocess.Popen([*WORKLOAD, "--seconds", str(seconds + 2)], cwd=REPO, env=ENV, stderr=subprocess.PIPE,
                            text=True)
    with source:
        analyzer = IntervalAnalyzer(source.info)
        time.sleep(1)  # the workload is churning
        list(source.read())  # what piled up before the measured window
        events0, cpu0, t0 = source.stats.events, _cpu(), time.monotonic()
        lost = gaps = 0
        next_take = t0 + 1
        while time.monotonic() - t0 < seconds:
            for chunk in source.read():
                analyzer.feed(chunk)
            if time.monotonic() >= next_take:
                r = analyzer.take().result
                lost, gaps = lost + r.missed.events, gaps + r.missed.unknown_gaps
                next_take += 1
            time.sleep(0.2)
        for chunk in source.read():
            analyzer.feed(chunk)
        r = analyzer.take().result
        lost, gaps = lost + r.missed.events, gaps + r.missed.unknown_gaps
        wall, cpu = time.monotonic() - t0, _cpu() - cpu0
        events = source.stats.events - events0
        overrun = source.kernel_overrun()
    work.wait()
    return {"events": events, "wall_s": wall, "cpu_s": cpu, "rate": events / wall, "per_cpu_s": events / cpu,
            "share": cpu / wall, "lost": lost, "gaps": gaps, "overrun": overrun, "workload": work.stderr.read().strip()}


def _proc_cpu(pid: int) -> float:
    """utime + stime of a process and of the children it reaped, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _bpftrace_cpu(pid: int) -> float:
    """CPU of the bpftrace children of ``pid`` (still running)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text.split("(", 1)[1].rsplit(")", 1)
        fields = rest.split()
        if comm == "bpftrace" and int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def share_top(seconds: float) -> dict:
    """`zlperf top --profile stock` beside the workload: CPU share from the first interval to the last
    (start-up apart), and for the whole run from wait4's rusage (start-up included)."""
    n = int(seconds) + 1
    work = subprocess.Popen([*WORKLOAD, "--seconds", str(seconds + 30)], cwd=REPO, env=ENV, stderr=subprocess.PIPE,
                            text=True)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "zlperf", "top", "--profile", "stock", "-n", str(n), "-i", "1"],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = None
    rates = []
    for line in proc.stdout:
        m = re.search(r"interval (\d+) .* ([\d,]+) events/s", line)
        if not m:
            continue
        rates.append(float(m.group(2).replace(",", "")))
        now = time.monotonic(), _proc_cpu(proc.pid) + _bpftrace_cpu(proc.pid)
        if first is None:
            first = now
        last = now
    _pid, _status, ru = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    work.terminate()
    work.wait()
    steady = (last[1] - first[1]) / (last[0] - first[0])
    total = ru.ru_utime + ru.ru_stime
    return {"steady": steady, "total_cpu": total, "wall": wall, "share": total / wall,
            "rate": sum(rates[1:]) / max(1, len(rates) - 1), "n": n}


def share_exporter(seconds: float) -> dict:
    """`zlperf exporter --profile stock` beside the workload, scraped every second: CPU share between the first
    and the last scrape from its own zlperf_exporter_cpu_seconds_total (zlperf + bpftrace)."""
    work = subprocess.Popen([*WORKLOAD, "--seconds", str(seconds + 30)], cwd=REPO, env=ENV, stderr=subprocess.PIPE,
                            text=True)
    proc = subprocess.Popen([sys.executable, "-m", "zlperf", "exporter", "--profile", "stock", "--listen",
                             "127.0.0.1:0"], cwd=REPO, env=ENV, stderr=subprocess.PIPE, text=True)
    url = None
    while url is None:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit(f"exporter did not start: {proc.wait()}")
        m = re.search(r"(http://\S+/metrics)", line)
        url = m.group(1) if m else None
    samples = []
    end = time.monotonic() + seconds
    while True:
        with urllib.request.urlopen(url, timeout=30) as resp:
            text = resp.read().decode()
        cpu = sum(float(v) for v in re.findall(r"^zlperf_exporter_cpu_seconds_total\{.*\} (\S+)", text, re.M))
        decoded = float(re.search(r"^zlperf_exporter_events_decoded_total (\S+)", text, re.M).group(1))
        samples.append((time.monotonic(), cpu, decoded))
        if time.monotonic() >= end:
            break
        time.sleep(1)
    proc.terminate()
    proc.wait()
    work.terminate()
    work.wait()
    (t0, c0, e0), (t1, c1, e1) = samples[0], samples[-1]
    return {"steady": (c1 - c0) / (t1 - t0), "rate": (e1 - e0) / (t1 - t0), "scrapes": len(samples)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--only", choices=["decode", "share"])
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_live.py traces live: run it as root")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.only in (None, "decode"):
        d = decode(args.seconds)
        print(f"decode: {d['events']:,} page-churn events in {d['wall_s']:.1f} s = {d['rate']:,.0f} events/s "
              f"sustained; zlperf used {d['cpu_s']:.2f} CPU-s ({100 * d['share']:.1f}% of one CPU): "
              f"{d['per_cpu_s']:,.0f} events per CPU-second; lost {d['lost']} events, {d['gaps']} gaps, "
              f"kernel overrun {d['overrun']}")
        print(f"        {d['workload']}")
    if args.only in (None, "share"):
        top = share_top(args.seconds)
        print(f"share: zlperf top --profile stock -n {top['n']} -i 1 beside python3 -m zlperf.workload, "
              f"{top['rate']:,.0f} events/s traced: {100 * top['steady']:.1f}% of one CPU from the first interval "
              f"to the last (zlperf + bpftrace); whole run with start-up {top['total_cpu']:.2f} CPU-s in "
              f"{top['wall']:.1f} s ({100 * top['share']:.1f}%)")
        exp = share_exporter(args.seconds)
        print(f"share: zlperf exporter --profile stock scraped every second ({exp['scrapes']} scrapes) beside the "
              f"workload, {exp['rate']:,.0f} events/s decoded: {100 * exp['steady']:.1f}% of one CPU "
              f"(its own zlperf_exporter_cpu_seconds_total, zlperf + bpftrace)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
