"""lab/guest/peers.py: the zone-lock patch's selftest running beside `zlperf record`, inside the lab guest.

For one kmem profile, three in-kernel counters watch the same events as the recording:
  1. hist triggers (``hist:keys=...:vals=hitcount``) on the three kmem events in a tracefs instance of
     their own, with the instance's trace clock set to ``mono``;
  2. the selftest's bpftrace one-liners (/lab/selftest.bt: count each event, ``hist(wait_ns)``);
  3. ``zlperf record`` itself, with the profile's recipe and the ``mono`` trace clock, running the workload
     with an idle lead-in and lead-out (``zl-workload -l``).
Peers 1 and 2 key every count by the slot of CLOCK_MONOTONIC the event fell in (``--slot-ns``); the
recording carries each event's timestamp on the same clock. The host (lab/lab_peers.py) then picks a
window of whole slots inside the recording whose edges fall in the idle lead-in and lead-out, and sums
exactly that window for every peer. Peers are live before the recording starts and stop after it ends.

With --live (the lab's live task) two more peers run from before the recording to after it: ``zlperf top``
(plain interval blocks) and ``zlperf exporter``, scraped once when the workload is gone. Their counts span
their own lifetime, not a window, so with --comm every peer (the recording's recipe, the hist triggers, the
selftest) counts only the workload's tasks: all of them run inside every peer's lifetime, and the host
compares whole-run totals.

Writes to --out: PROFILE.dat, bpftrace.json, hist-EVENT.txt, workload.json, recipe.yaml, commands.txt,
record.log, bpftrace.err (--live: top.txt, top.err, exporter.prom, exporter.err). Python standard library
only (the guest's /usr/bin/python3).
"""

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request

TRACEFS = "/sys/kernel/tracing"
INSTANCE = TRACEFS + "/instances/zlperf-lab-peers"
EVENTS = ("mm_zone_lock_contended", "mm_zone_locked", "mm_zone_lock_unlock")
SELFTEST = "/lab/selftest.bt"


def hist_triggers(slot_ns, comm=None):
    """event -> the hist trigger commands on it (keys: time slot, node, zone; one per contended state).

    ``clock=mono`` on every one: a hist trigger sets its instance's trace clock to its own ``clock=``
    attribute, "global" when none is given (kernel/trace/trace_events_hist.c), which would put the
    timestamps on another clock than bpftrace's and the recording's."""
    keys = f"common_timestamp.buckets={slot_ns},node_id,name"
    only = f' && comm == "{comm}"' if comm else ""
    every = f' if comm == "{comm}"' if comm else ""
    return {
        "mm_zone_lock_contended": [f"hist:keys={keys}:vals=hitcount:size=16384:clock=mono{every}"],
        "mm_zone_locked": [f"hist:keys={keys}:vals=hitcount:size=16384:clock=mono if contended == 0{only}",
                           f"hist:keys={keys}:vals=hitcount:size=16384:clock=mono if contended == 1{only}",
                           # exact wait values: the host buckets them (the kernel's .log2 rounds up)
                           f"hist:keys=common_timestamp.buckets={slot_ns},wait_ns:vals=hitcount:size=32768"
                           f":clock=mono if contended == 1{only}"],
        "mm_zone_lock_unlock": [f"hist:keys={keys}:vals=hitcount:size=16384:clock=mono{every}"],
    }


def log(msg):
    print(f"peers: {msg}", file=sys.stderr, flush=True)


def write(path, text, append=False):
    with open(path, "a" if append else "w") as f:
        f.write(text)


class Hist:
    """The hist-trigger peer: an instance with the mono clock and one trigger set per event."""

    def __init__(self, slot_ns, comm=None):
        self.triggers = hist_triggers(slot_ns, comm)

    def start(self):
        if os.path.isdir(INSTANCE):
            self.stop()
        os.mkdir(INSTANCE)
        write(INSTANCE + "/trace_clock", "mono")
        write(INSTANCE + "/buffer_size_kb", "64")  # events are only reserved there (for the timestamp), then discarded
        write(INSTANCE + "/tracing_on", "1")  # with tracing off, triggers would see temp-buffer (local clock) stamps
        for ev, cmds in self.triggers.items():
            for cmd in cmds:
                write(f"{INSTANCE}/events/kmem/{ev}/trigger", cmd, append=True)
        with open(INSTANCE + "/trace_clock") as f:
            clocks = f.read()
        if "[mono]" not in clocks:
            raise SystemExit(f"peers: the hist instance's trace clock is not mono: {clocks.strip()}")

    def read(self, out):
        for ev in self.triggers:
            with open(f"{INSTANCE}/events/kmem/{ev}/hist") as f:
                write(f"{out}/hist-{ev}.txt", f.read())

    def stop(self):
        for ev, cmds in self.triggers.items():
            for cmd in cmds:
                try:
                    write(f"{INSTANCE}/events/kmem/{ev}/trigger", "!" + cmd, append=True)
                except OSError:
                    pass
        try:
            os.rmdir(INSTANCE)
        except OSError as exc:
            log(f"could not remove {INSTANCE}: {exc}")


def start_bpftrace(out, slot_ns, timeout, comm=None):
    """bpftrace with the selftest, JSON output to OUT/bpftrace.json; returns once its probes are attached."""
    env = dict(os.environ, BPFTRACE_MAP_KEYS_MAX="65536", BPFTRACE_STRLEN="16")
    argv = ["bpftrace", "-f", "json", "-o", f"{out}/bpftrace.json", SELFTEST, str(slot_ns), comm or "*"]
    write(f"{out}/commands.txt", "bpftrace\t" + shlex.join(argv) + "\n", append=True)
    err = open(f"{out}/bpftrace.err", "w")
    proc = subprocess.Popen(argv, env=env, stdout=err, stderr=err)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"peers: bpftrace exited with {proc.returncode} before attaching; see bpftrace.err")
        try:
            with open(f"{out}/bpftrace.json") as f:
                if '"attached_probes"' in f.read():
                    log(f"bpftrace attached after {time.monotonic() - t0:.1f} s")
                    return proc
        except FileNotFoundError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"peers: bpftrace did not attach in {timeout} s")


def stop_bpftrace(proc, timeout):
    proc.send_signal(signal.SIGINT)  # bpftrace prints every map at exit
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise SystemExit(f"peers: bpftrace did not finish in {timeout} s after SIGINT")
    if rc != 0:
        raise SystemExit(f"peers: bpftrace exited with {rc}; see bpftrace.err")


def wait_for(path, pattern, proc, what, timeout):
    """Poll the log ``path`` until a line matches ``pattern`` (the match), or fail when ``proc`` exits first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        with open(path) as f:
            m = re.search(pattern, f.read(), re.M)
        if m:
            log(f"{what} live after {time.monotonic() - t0:.1f} s")
            return m
        if proc.poll() is not None:
            raise SystemExit(f"peers: {what} exited with {proc.returncode} before tracing; see {path}")
        time.sleep(0.5)
    raise SystemExit(f"peers: {what} did not start tracing in {timeout} s; see {path}")


class Live:
    """``zlperf top`` and ``zlperf exporter`` on the same recipe, from before the recording to after it."""

    def __init__(self, out, recipe, timeout):
        self.out, self.recipe, self.timeout = out, recipe, timeout
        self.top = self.exporter = None
        self.url = None

    def start(self):
        top = ["zlperf", "top", "--recipe", self.recipe, "--plain", "-i", "1", "-n", "3600"]
        exp = ["zlperf", "exporter", "--recipe", self.recipe, "--listen", "127.0.0.1:0"]
        for kind, argv in (("top", top), ("exporter", exp)):
            write(f"{self.out}/commands.txt", f"{kind}\t" + shlex.join(argv) + "\n", append=True)
        # started together: each Python start takes about 20 s under TCG
        self.top = subprocess.Popen(top, stdout=open(f"{self.out}/top.txt", "w"),
                                    stderr=open(f"{self.out}/top.err", "w"))
        self.exporter = subprocess.Popen(exp, stdout=subprocess.DEVNULL, stderr=open(f"{self.out}/exporter.err", "w"))
        wait_for(f"{self.out}/top.err", r"^zlperf: tracing ", self.top, "zlperf top", self.timeout)
        m = wait_for(f"{self.out}/exporter.err", r"serving metrics on (\S+)", self.exporter, "zlperf exporter",
                     self.timeout)
        self.url = m.group(1)

    def blocks(self):
        with open(f"{self.out}/top.txt") as f:
            return len(re.findall(r"^zlperf top ", f.read(), re.M))

    def finish(self):
        """After the workload: scrape the exporter once, stop it; stop top once two more blocks came (the
        second began after the workload was gone, so every interval with its events is printed)."""
        seen = self.blocks()
        with urllib.request.urlopen(self.url, timeout=self.timeout) as r:
            write(f"{self.out}/exporter.prom", r.read().decode())
        self.exporter.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        while self.blocks() < seen + 2:
            if self.top.poll() is not None or time.monotonic() - t0 > self.timeout:
                raise SystemExit(f"peers: zlperf top stopped printing (exit {self.top.returncode}); see top.err")
            time.sleep(0.5)
        self.top.send_signal(signal.SIGINT)
        for what, proc in (("zlperf exporter", self.exporter), ("zlperf top", self.top)):
            try:
                rc = proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise SystemExit(f"peers: {what} did not stop")
            if rc != 0:
                raise SystemExit(f"peers: {what} exited with {rc}")

    def kill(self):
        for proc in (self.top, self.exporter):
            if proc is not None and proc.poll() is None:
                proc.kill()


def main():
    p = argparse.ArgumentParser(prog="peers.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", required=True, choices=["minimal", "wait-time", "hold-time"])
    p.add_argument("--out", required=True)
    p.add_argument("--slot-ns", type=int, default=50_000_000)
    p.add_argument("--timeout", type=float, default=600, help="seconds bpftrace may take to attach or to exit")
    p.add_argument("--comm", help="every peer counts only tasks of this comm (the workload's: zl-workload)")
    p.add_argument("--live", action="store_true", help="zlperf top and zlperf exporter as peers too")
    p.add_argument("workload", nargs=argparse.REMAINDER, help="-- zl-workload ARGS (it must take -l and -o)")
    args = p.parse_args()
    work = args.workload[1:] if args.workload[:1] == ["--"] else args.workload
    out = args.out
    os.makedirs(out, exist_ok=True)
    recipe = f"{out}/recipe.yaml"
    text = (f"# lab peers: the {args.profile} profile on the mono trace clock (CLOCK_MONOTONIC, bpftrace's"
            f" nsecs)\nextends: {args.profile}\nclock: mono\n")
    if args.comm:  # the kernel drops other tasks' events, as the hist triggers' and bpftrace's filters do
        text += "filters:\n" + "".join(f"  kmem:{ev}: comm == \"{args.comm}\"\n" for ev in EVENTS)
    write(recipe, text)
    hist = Hist(args.slot_ns, args.comm)
    hist.start()
    write(f"{out}/commands.txt", "".join(f"hist\t{ev}\t{c}\n" for ev, cs in hist.triggers.items() for c in cs),
          append=True)
    bt = None
    live = Live(out, recipe, args.timeout) if args.live else None
    try:
        bt = start_bpftrace(out, args.slot_ns, args.timeout, args.comm)
        if live is not None:
            live.start()
        argv = ["zlperf", "record", "--recipe", recipe, "-o", f"{out}/{args.profile}.dat", "--",
                *work, "-o", f"{out}/workload.json"]
        write(f"{out}/commands.txt", "zlperf\t" + shlex.join(argv) + "\n", append=True)
        log("+ " + shlex.join(argv))
        with open(f"{out}/record.log", "w") as rec_log:
            rc = subprocess.call(argv, stdout=rec_log, stderr=subprocess.STDOUT)
        if rc != 0:
            raise SystemExit(f"peers: zlperf record exited with {rc}; see record.log")
        if live is not None:
            live.finish()
        stop_bpftrace(bt, args.timeout)
        bt = None
        hist.read(out)
    finally:
        if live is not None:
            live.kill()
        if bt is not None and bt.poll() is None:
            bt.kill()
        hist.stop()
    log(f"done {args.profile}")


if __name__ == "__main__":
    main()
