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

Writes to --out: PROFILE.dat, bpftrace.json, hist-EVENT.txt, workload.json, recipe.yaml, commands.txt,
record.log, bpftrace.err. Python standard library only (the guest's /usr/bin/python3).
"""

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time

TRACEFS = "/sys/kernel/tracing"
INSTANCE = TRACEFS + "/instances/zlperf-lab-peers"
EVENTS = ("mm_zone_lock_contended", "mm_zone_locked", "mm_zone_lock_unlock")
SELFTEST = "/lab/selftest.bt"


def hist_triggers(slot_ns):
    """event -> the hist trigger commands on it (keys: time slot, node, zone; one per contended state).

    ``clock=mono`` on every one: a hist trigger sets its instance's trace clock to its own ``clock=``
    attribute, "global" when none is given (kernel/trace/trace_events_hist.c), which would put the
    timestamps on another clock than bpftrace's and the recording's."""
    keys = f"common_timestamp.buckets={slot_ns},node_id,name"
    return {
        "mm_zone_lock_contended": [f"hist:keys={keys}:vals=hitcount:size=16384:clock=mono"],
        "mm_zone_locked": [f"hist:keys={keys}:vals=hitcount:size=16384:clock=mono if contended == 0",
                           f"hist:keys={keys}:vals=hitcount:size=16384:clock=mono if contended == 1",
                           # exact wait values: the host buckets them (the kernel's .log2 rounds up)
                           f"hist:keys=common_timestamp.buckets={slot_ns},wait_ns:vals=hitcount:size=32768"
                           ":clock=mono if contended == 1"],
        "mm_zone_lock_unlock": [f"hist:keys={keys}:vals=hitcount:size=16384:clock=mono"],
    }


def log(msg):
    print(f"peers: {msg}", file=sys.stderr, flush=True)


def write(path, text, append=False):
    with open(path, "a" if append else "w") as f:
        f.write(text)


class Hist:
    """The hist-trigger peer: an instance with the mono clock and one trigger set per event."""

    def __init__(self, slot_ns):
        self.triggers = hist_triggers(slot_ns)

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


def start_bpftrace(out, slot_ns, timeout):
    """bpftrace with the selftest, JSON output to OUT/bpftrace.json; returns once its probes are attached."""
    env = dict(os.environ, BPFTRACE_MAP_KEYS_MAX="65536", BPFTRACE_STRLEN="16")
    argv = ["bpftrace", "-f", "json", "-o", f"{out}/bpftrace.json", SELFTEST, str(slot_ns)]
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


def main():
    p = argparse.ArgumentParser(prog="peers.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", required=True, choices=["minimal", "wait-time", "hold-time"])
    p.add_argument("--out", required=True)
    p.add_argument("--slot-ns", type=int, default=50_000_000)
    p.add_argument("--timeout", type=float, default=600, help="seconds bpftrace may take to attach or to exit")
    p.add_argument("workload", nargs=argparse.REMAINDER, help="-- zl-workload ARGS (it must take -l and -o)")
    args = p.parse_args()
    work = args.workload[1:] if args.workload[:1] == ["--"] else args.workload
    out = args.out
    os.makedirs(out, exist_ok=True)
    recipe = f"{out}/recipe.yaml"
    write(recipe, f"# lab peers: the {args.profile} profile on the mono trace clock (CLOCK_MONOTONIC, bpftrace's"
                  f" nsecs)\nextends: {args.profile}\nclock: mono\n")
    hist = Hist(args.slot_ns)
    hist.start()
    write(f"{out}/commands.txt", "".join(f"hist\t{ev}\t{c}\n" for ev, cs in hist.triggers.items() for c in cs),
          append=True)
    bt = None
    try:
        bt = start_bpftrace(out, args.slot_ns, args.timeout)
        argv = ["zlperf", "record", "--recipe", recipe, "-o", f"{out}/{args.profile}.dat", "--",
                *work, "-o", f"{out}/workload.json"]
        write(f"{out}/commands.txt", "zlperf\t" + shlex.join(argv) + "\n", append=True)
        log("+ " + shlex.join(argv))
        with open(f"{out}/record.log", "w") as rec_log:
            rc = subprocess.call(argv, stdout=rec_log, stderr=subprocess.STDOUT)
        if rc != 0:
            raise SystemExit(f"peers: zlperf record exited with {rc}; see record.log")
        stop_bpftrace(bt, args.timeout)
        bt = None
        hist.read(out)
    finally:
        if bt is not None and bt.poll() is None:
            bt.kill()
        hist.stop()
    log(f"done {args.profile}")


if __name__ == "__main__":
    main()
