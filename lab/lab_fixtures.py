"""lab/fixtures: test fixtures from a lab run, every one recorded in the guest by the real `zlperf record`.

The lab's fixtures live in tests/data/lab/ under their own names; the shared fixtures (tests/data/*.dat,
full.perf.data, zlperf/data/full.dat) are never touched, since tests and docs rely on them. Provenance
goes to tests/data/PROVENANCE.md, in a section between two markers that each --install rewrites.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from lab import ALL_TASKS, CACHE, REPO, LabError, _log, _sha256, common_args, run_lab

__all__ = ["FIXTURES", "fixtures_main", "provenance_section", "BEGIN", "END"]

#: run file -> fixture name in tests/data/lab/ (".gz": compressed on the way). Each .dat carries the guest's
#: kallsyms (~0.85 MB), so only recordings a peer table vouches for are kept (a few MB in all); the other
#: profiles' recordings stay in the run folder (tests/data/minimal.dat, wait.dat, full.v6.dat cover them).
#: The stock recording is left out too: in this guest no contended lock is a zone lock.
FIXTURES = {
    "full.perf.data": "hold-time.perf.data",
    "full.perf.kallsyms": "hold-time.perf.kallsyms.gz",
    # The peer task's recording (hold-time on the mono clock) and its peer table: a default-run test recomputes
    # zlperf's rows of that window and checks them against the bpftrace and hist-trigger counts stored here.
    "peers-hold-time/hold-time.dat": "peers-hold-time.dat",
    "peers-hold-time.json": "peers-hold-time.json",
    # The live task: the workload's tasks only, with zlperf top's blocks and the exporter's scrape beside it.
    "live/hold-time.dat": "live-hold-time.dat",
    "live.json": "live.json",
    "live/top.txt": "live-top.txt",
    "live/exporter.prom": "live-exporter.prom",
}
#: What the guest's peers.py wrote as each task's recipe (named in the provenance rows).
RECIPES = {"peers-": "peers.yaml: `extends: hold-time`, `clock: mono`; the selftest's bpftrace and hist triggers "
                     "counted beside it",
           "live/": "live.yaml: peers.yaml plus `filters:` `comm == \"zl-workload\"` on each event; zlperf top, "
                    "zlperf exporter, the selftest and hist triggers (filtered alike) counted beside it"}
BEGIN = "<!-- lab/fixtures --install: begin (generated; edit lab/lab_fixtures.py instead) -->"
END = "<!-- lab/fixtures --install: end -->"


def _trace_counts(path: Path, kallsyms: Optional[Path] = None) -> Dict[str, int]:
    """Event counts from the host's own tools (trace-cmd report / perf script), independent of zlperf."""
    if path.suffix == ".data":
        r = subprocess.run(["perf", "script", "-i", str(path), "-F", "event", "--kallsyms", "/dev/null"],
                           capture_output=True, text=True)
        names = [ln.strip().rstrip(":").split(":")[-1] for ln in r.stdout.splitlines() if ln.strip()]
    else:
        r = subprocess.run(["trace-cmd", "report", "-i", str(path)], capture_output=True, text=True)
        names = [m.group(1) for m in re.finditer(r"^\s*\S.*?\[\d+\]\s+[\d.]+:\s+(\w+):", r.stdout, re.M)]
    counts: Dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return counts


def _commands(src: Path) -> Dict[str, str]:
    """Run file -> the command line that made it (commands.log of the guest, peers-*/commands.txt)."""
    cmds = {}
    log = src / "commands.log"
    for line in log.read_text().splitlines() if log.exists() else []:
        name, _, cmd = line.partition("\t")
        cmds[name] = cmd
    for task, recipe in (("peers-hold-time", "peers.yaml"), ("live", "live.yaml")):
        ptxt = src / task / "commands.txt"
        for line in ptxt.read_text().splitlines() if ptxt.exists() else []:
            kind, _, cmd = line.partition("\t")
            cmd = cmd.replace(f"/tmp/{task}/recipe.yaml", recipe).replace(f"/tmp/{task}/", "")
            if kind == "zlperf":  # the recipe is written by lab/guest/peers.py: the profile on the mono clock
                cmds[f"{task}/hold-time.dat"] = cmd
            elif kind in ("top", "exporter"):
                cmds[f"{task}/{'top.txt' if kind == 'top' else 'exporter.prom'}"] = (
                    f"`{cmd}`" + (" (its stdout)" if kind == "top" else ", scraped once after the workload"))
    cmds["full.perf.kallsyms"] = "saved by that `zlperf record --backend perf` (the guest's /proc/kallsyms)"
    return cmds


def provenance_section(info: dict, run_name: str, rows: List[str], peers_line: str) -> str:
    """The tests/data/PROVENANCE.md section (between BEGIN and END) for fixtures made from one lab run."""
    wl = info["workload"]
    return f"""{BEGIN}
## tests/data/lab/: recorded by the project's lab with `zlperf record`

Made by `lab/fixtures --install` from the lab run `{run_name}` (lab/README.md). Each file was recorded inside
a QEMU guest (TCG, no KVM) by this checkout's `zlperf record` (driving the guest's Debian trace-cmd 3.1.6 /
perf 6.1); event counts are from the host's `trace-cmd report` / `perf script`, not from zlperf.

- Kernel `{info['kernel']}` (Debian linux-source-6.12 + lab/patches), variant `{info['variant']}`, built by
  `lab/build-kernel` in {info.get('kernel_build_s')} s; patches (sha256): {'; '.join(f'`{k}` {v[:16]}' for k, v in info['patches'].items())}
- Kernel .config sha256 {info['config_sha256'][:16]} (fragment lab/config/zlperf.config {info['fragment_sha256'][:16]})
- QEMU ({info['tcg_thread']}-threaded TCG), {info['cpus']} vCPUs in 2 NUMA nodes, {info['mem_mb']} MiB:
  `{info['qemu']}`
- Workload `{wl['cmd']}` (lab/workload.c: pinned processes mmap {wl['mb']} MiB with MAP_POPULATE, touch, munmap;
  {wl.get('pipers', 0)} pipe resizers cycling F_SETPIPE_SZ 16 MiB / 1 MiB / 64 KiB), `vm.percpu_pagelist_high_fraction={wl['pcp_fraction']}`, THP off
- {info['zlperf_version']} (git {info['zlperf_git']}); boot attempts: {json.dumps(info['attempts'])}
- {peers_line}

| file | made with (inside the guest) | sha256 (16) | events (host tools) |
| --- | --- | --- | --- |
""" + "\n".join(rows) + f"\n{END}\n"


def fixtures_main(argv: Optional[Sequence[str]] = None) -> int:
    """lab/fixtures: fixtures from a lab run, with their provenance."""
    p = argparse.ArgumentParser(prog="lab/fixtures", description=(
        f"Write the lab's fixtures ({', '.join(FIXTURES.values())}) and PROVENANCE.md to --dest. Without --from "
        "it first runs the lab (lab/run). --install also copies them into tests/data/lab/ and rewrites the lab "
        "section of tests/data/PROVENANCE.md; the shared fixtures are never replaced."))
    common_args(p)
    p.add_argument("--from", dest="src", type=Path, help="use this finished lab/run output folder")
    p.add_argument("--dest", type=Path, default=CACHE / "fixtures", help="where to write (default lab/cache/fixtures)")
    p.add_argument("--install", action="store_true",
                   help="also copy them into tests/data/lab/ and update tests/data/PROVENANCE.md")
    args = p.parse_args(argv)
    try:
        if args.src is None:
            args.src = CACHE / "runs" / ("fixtures-" + time.strftime("%Y%m%d-%H%M%S"))
            if not run_lab(args, ALL_TASKS, args.src):
                return 0  # dry run
            from lab import write_peer_tables
            write_peer_tables(args.src, ["peers-hold-time", "live"], args.slot_ms * 1_000_000)
        elif args.dry_run:
            print(f"from {args.src} to {args.dest}" + (" and tests/data/lab/" if args.install else ""))
            return 0
        info = json.loads((args.src / "lab.json").read_text())
        return _write(args, info)
    except (LabError, OSError, ValueError, KeyError) as e:
        print(f"lab/fixtures: {e}", file=sys.stderr)
        return 1


def _write(args: argparse.Namespace, info: dict) -> int:
    src: Path = args.src
    dest: Path = args.dest
    dest.mkdir(parents=True, exist_ok=True)
    peers = json.loads((src / "peers.json").read_text()) if (src / "peers.json").exists() else []
    for task in ("peers-hold-time", "live"):
        doc = [d for d in peers if d.get("task", "peers-" + d.get("profile", "")) == task]
        if doc:
            (src / f"{task}.json").write_text(json.dumps(doc[0], indent=1) + "\n")
    cmds = _commands(src)
    rows, missing = [], []
    for run_name, fix_name in FIXTURES.items():
        f = src / run_name
        if not f.exists():
            missing.append(run_name)
            rows.append(f"| {fix_name} | (missing from this run: see {src.name}/job.log) | | |")
            continue
        if fix_name.endswith(".gz") and not run_name.endswith(".gz"):
            (dest / fix_name).write_bytes(gzip.compress(f.read_bytes(), mtime=0))
        else:
            shutil.copy2(f, dest / fix_name)
        sha = _sha256(dest / fix_name)[:16]
        if fix_name.endswith((".dat", ".data")):
            counts = _trace_counts(dest / fix_name)
            shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            note = "".join(f" ({v})" for k, v in RECIPES.items() if run_name.startswith(k))
            rows.append(f"| {fix_name} | `{cmds.get(run_name, '?')}`{note} | {sha} | {shown} |")
        elif fix_name.endswith(".json"):
            rec = fix_name.replace(".json", ".dat").replace("live.dat", "live-hold-time.dat")
            rows.append(f"| {fix_name} | the peer table of {rec} (lab/lab_peers.py) | {sha} | |")
        else:
            rows.append(f"| {fix_name} | {cmds.get(run_name, 'beside the recording above it')} | {sha} | |")
    verdicts = ", ".join(f"{d.get('task', d['profile'])} {'PASS' if d.get('ok') else 'FAIL'}" for d in peers) or "not run"
    peers_line = (f"Peer tables of the same boot (zlperf against trace-cmd, bpftrace, hist triggers; live: also zlperf "
                  f"top and zlperf exporter; lab/README.md): "
                  f"{verdicts}")
    section = provenance_section(info, src.name, rows, peers_line)
    (dest / "PROVENANCE.md").write_text(section)
    _log(f"fixtures written to {dest}" + (f" (missing: {', '.join(missing)})" if missing else ""))
    if args.install:
        if missing:
            raise LabError(f"not installing an incomplete set (missing {', '.join(missing)})")
        data = REPO / "tests" / "data"
        (data / "lab").mkdir(exist_ok=True)
        for old in (data / "lab").iterdir():  # an earlier set's files that this one no longer has
            if old.name not in FIXTURES.values():
                old.unlink()
        for fix_name in FIXTURES.values():
            shutil.copy2(dest / fix_name, data / "lab" / fix_name)
        prov = data / "PROVENANCE.md"
        text = prov.read_text()
        if BEGIN in text and END in text:
            text = text[:text.index(BEGIN)] + section.rstrip("\n") + text[text.index(END) + len(END):]
        else:
            text = text.rstrip("\n") + "\n\n" + section
        prov.write_text(text)
        _log("installed into tests/data/lab/ and the lab section of tests/data/PROVENANCE.md")
    return 0
