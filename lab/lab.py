"""The zlperf kernel lab, host side: kernel, initramfs, QEMU guest, and lab/run (recordings and the peer table).

Used by the lab/run, lab/fixtures (lab_fixtures.py) and lab/overhead (lab_overhead.py) commands; the peer
table is lab_peers.py. Standard library only (plus the host's tools).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

__all__ = [
    "LAB", "REPO", "CACHE", "LabError", "kernel_dir", "build_kernel", "build_initramfs", "qemu_command",
    "boot", "run_main", "run_lab", "common_args", "PROFILE_EVENTS", "ALL_TASKS", "PEER_TASKS",
]

LAB = Path(__file__).resolve().parent
REPO = LAB.parent
CACHE = Path(os.environ.get("ZLPERF_LAB_CACHE", LAB / "cache"))
GUEST = LAB / "guest"

#: The events each profile enables; used inside the guest when `zlperf record` is missing, and in docs.
PROFILE_EVENTS: Dict[str, List[str]] = {
    "minimal": ["kmem:mm_zone_lock_contended"],
    "wait-time": ["kmem:mm_zone_lock_contended", "kmem:mm_zone_locked"],
    "hold-time": ["kmem:mm_zone_lock_contended", "kmem:mm_zone_locked", "kmem:mm_zone_lock_unlock"],
    "stock": ["lock:contention_begin", "lock:contention_end"],
}
#: The patch's selftest beside `zlperf record`, one task per kmem profile (lab/guest/peers.py, lab_peers.py).
PEER_TASKS = ["peers-minimal", "peers-wait-time", "peers-hold-time"]
#: "live": `zlperf top` and `zlperf exporter` as peers too, every peer counting the workload's tasks only.
ALL_TASKS = ["minimal", "wait-time", "hold-time", "stock", "perf", "v6"] + PEER_TASKS + ["live"]
SERIES_TASKS = ["series"]  # only on a --variant series kernel

# Host files the guest needs. Python packages come from Debian's dist-packages (the guest runs /usr/bin/python3).
_BINARIES = ["/usr/bin/trace-cmd", "/usr/bin/perf", "/usr/bin/python3.11", "/usr/bin/bpftrace"]
_EXTRA_LIBS = ["/usr/lib/x86_64-linux-gnu/libtracecmd.so.1", "/usr/lib/x86_64-linux-gnu/libtraceevent.so.1",
               "/usr/lib/x86_64-linux-gnu/libtracefs.so.1"]
_PLUGIN_DIRS = ["/usr/lib/x86_64-linux-gnu/traceevent", "/usr/lib/x86_64-linux-gnu/trace-cmd"]
# prometheus_client (+ decorator, which Debian's build imports): zlperf exporter (apt: python3-prometheus-client)
_DIST_PACKAGES = ["numpy", "yaml", "_yaml", "zstandard", "prometheus_client", "decorator.py",
                  "perf.cpython-311-x86_64-linux-gnu.so"]
_STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "unittest"}


class LabError(Exception):
    """A lab step failed; the message says which and what to do."""


def _log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- kernel

def kernel_dir(variant: str = "zone-lock") -> Path:
    """The cached build of ``variant`` (lab/cache/kernels/VARIANT, a link to VARIANT-KEY)."""
    return CACHE / "kernels" / variant


def build_kernel(variant: str = "zone-lock") -> Path:
    """Run lab/build-kernel (a no-op when cached) and return the kernel's cache folder."""
    cmd = [str(LAB / "build-kernel")] + (["--series"] if variant == "series" else [])
    if subprocess.call(cmd) != 0:
        raise LabError(f"lab/build-kernel failed for variant {variant}; see its log in {CACHE}/kernels/")
    return kernel_dir(variant).resolve()


# ---------------------------------------------------------------- initramfs

def _ldd(paths: Iterable[str]) -> List[str]:
    """Every shared library the ELF files in ``paths`` load, as ldd resolves them on this host."""
    libs = set()
    for p in paths:
        out = subprocess.run(["ldd", p], capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if m:
                libs.add(m.group(1))
    return sorted(libs)


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _copy(src: str, root: Path) -> None:
    """Copy host file ``src`` to the same path under ``root``, following symlinks."""
    dst = root / src.lstrip("/")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        shutil.copy2(src, dst, follow_symlinks=True)


def _install_zlperf(site: Path) -> None:
    """Install THIS checkout into the guest's dist-packages the way pyproject.toml lays it out.

    Reads [tool.setuptools] packages / package-dir (recipes/ -> zlperf/builtin_recipes, ...) instead of
    running pip, which would need the network (build isolation) or the wheel package on the host.
    """
    import tomllib

    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = conf.get("package-dir", {})
    packages = list(conf["packages"])
    # A subpackage on disk that pyproject.toml forgets would be missing from a real install: say so, ship it.
    for init in sorted((REPO / "zlperf").rglob("__init__.py")):
        pkg = ".".join(init.parent.relative_to(REPO).parts)
        if pkg not in packages:
            _log(f"warning: {pkg} is not in pyproject.toml [tool.setuptools] packages (a pip install misses it);"
                 " the lab ships it anyway")
            packages.append(pkg)
    for pkg in packages:
        src = REPO / mapping[pkg] if pkg in mapping else REPO / pkg.replace(".", "/")
        if not src.is_dir():
            continue  # listed but not written yet by its owner
        dst = site / pkg.replace(".", "/")
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():  # subpackages are listed on their own
            if f.is_file() and f.suffix != ".pyc":
                shutil.copy2(f, dst / f.name)
    version = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    info = site / f"zlperf-{version.group(1) if version else '0'}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: zlperf\nVersion: {version.group(1) if version else '0'}\n")
    (info / "entry_points.txt").write_text("[console_scripts]\nzlperf = zlperf.cli:main\n")


def _zlperf_fingerprint() -> str:
    """Hash of the checkout's package sources, so a changed zlperf rebuilds the initramfs."""
    h = hashlib.sha256()
    for top in ("zlperf", "recipes", "plugins"):
        for p in sorted((REPO / top).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(REPO)).encode())
                h.update(p.read_bytes())
    for p in [REPO / "pyproject.toml", LAB / "workload.c", Path(__file__)] + sorted(GUEST.rglob("*")):
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def build_initramfs(force: bool = False) -> Path:
    """Build (or reuse) lab/cache/initramfs-HASH.cpio: busybox, trace-cmd, perf, bpftrace, python3 and this zlperf."""
    key = _zlperf_fingerprint()
    out = CACHE / f"initramfs-{key}.cpio"
    if out.exists() and not force:
        return out
    t0 = time.monotonic()
    _log(f"building initramfs {out.name}")
    CACHE.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="initramfs-", dir=CACHE))
    try:
        # Debian 12's merged /usr, so that host library paths from ldd are valid in the guest as they are.
        for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "proc", "sys", "dev", "tmp", "out", "run", "etc",
                  "root", "lab"):
            (root / d).mkdir(parents=True, exist_ok=True)
        for link in ("bin", "sbin", "lib", "lib64"):
            os.symlink(f"usr/{link}", root / link)
        shutil.copy2("/bin/busybox", root / "usr/bin/busybox")
        os.symlink("busybox", root / "usr/bin/sh")
        elves = list(_BINARIES) + list(_EXTRA_LIBS)
        for b in _BINARIES + _EXTRA_LIBS:
            _copy(b, root)
        os.symlink("python3.11", root / "usr/bin/python3")
        # Python: the stdlib without tests/GUI, and the Debian packages zlperf needs.
        stdlib = Path("/usr/lib/python3.11")
        shutil.copytree(stdlib, root / "usr/lib/python3.11", symlinks=True,
                        ignore=lambda d, names: [n for n in names if Path(d) == stdlib and n in _STDLIB_SKIP]
                        + [n for n in names if n == "__pycache__"])
        site = root / "usr/lib/python3/dist-packages"
        site.mkdir(parents=True)
        for name in _DIST_PACKAGES:
            src = Path("/usr/lib/python3/dist-packages") / name
            if src.is_dir():
                shutil.copytree(src, site / name, ignore=shutil.ignore_patterns("__pycache__", "tests"))
            elif src.exists():
                shutil.copy2(src, site / name)
        for d in _PLUGIN_DIRS:
            if Path(d).is_dir():
                shutil.copytree(d, root / d.lstrip("/"), dirs_exist_ok=True)
        for base in (root / "usr/lib/python3.11", site, root / "usr/lib/x86_64-linux-gnu"):
            for p in base.rglob("*.so*"):
                if p.is_file() and _is_elf(p):
                    elves.append(str(p))
        # ldd resolves on the host; the guest has the same merged-/usr layout, so the same paths work there.
        for lib in _ldd(elves):
            if not lib.startswith(str(root) + "/"):  # libraries found beside others already in the tree
                _copy(lib, root)
        _copy("/lib64/ld-linux-x86-64.so.2", root)
        _install_zlperf(site)
        (root / "usr/bin/zlperf").write_text(
            "#!/usr/bin/python3\nimport sys\nfrom zlperf.cli import main\nsys.exit(main())\n")
        (root / "usr/bin/zlperf").chmod(0o755)
        r = subprocess.run(["gcc", "-O2", "-static", "-pthread", "-o", str(root / "usr/bin/zl-workload"),
                            str(LAB / "workload.c")], capture_output=True, text=True)
        if r.returncode != 0:
            raise LabError(f"cannot build lab/workload.c (apt-get install build-essential):\n{r.stderr}")
        shutil.copy2(GUEST / "init", root / "init")
        (root / "init").chmod(0o755)
        for f in ("job.sh", "peers.py", "selftest.bt"):
            shutil.copy2(GUEST / f, root / "lab" / f)
        shutil.copytree(GUEST / "recipes", root / "lab/recipes")
        (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc/group").write_text("root:x:0:\n")
        tmp_out = out.with_suffix(".tmp")
        with open(tmp_out, "wb") as f:
            find = subprocess.Popen(["find", "."], cwd=root, stdout=subprocess.PIPE)
            cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, stdin=find.stdout, stdout=f)
            find.wait()
        if cpio.returncode != 0:
            raise LabError("cpio failed building the initramfs (apt-get install cpio)")
        tmp_out.rename(out)
        for old in CACHE.glob("initramfs-*.cpio"):  # one is enough: they are 100+ MiB each
            if old != out:
                old.unlink()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _log(f"initramfs {out.name}: {out.stat().st_size >> 20} MiB in {time.monotonic() - t0:.0f} s")
    return out


# ---------------------------------------------------------------- QEMU

def qemu_command(kernel: Path, initrd: Path, share: Path, cpus: int = 4, mem_mb: int = 2048,
                 tcg_thread: str = "multi", console: Optional[Path] = None) -> List[str]:
    """The QEMU TCG command line: ``cpus`` vCPUs as 2 sockets = 2 NUMA nodes, results shared over 9p."""
    if cpus < 2 or cpus % 2:
        raise LabError(f"--cpus {cpus}: need an even number >= 2 (two NUMA nodes)")
    half_cpus, half_mem = cpus // 2, mem_mb // 2
    cmd = ["qemu-system-x86_64", "-accel", f"tcg,thread={tcg_thread}", "-cpu", "max",
           "-smp", f"{cpus},sockets=2,cores={half_cpus},threads=1", "-m", f"{mem_mb}M",
           "-object", f"memory-backend-ram,id=m0,size={half_mem}M",
           "-object", f"memory-backend-ram,id=m1,size={mem_mb - half_mem}M",
           "-numa", f"node,nodeid=0,cpus=0-{half_cpus - 1},memdev=m0",
           "-numa", f"node,nodeid=1,cpus={half_cpus}-{cpus - 1},memdev=m1",
           "-kernel", str(kernel), "-initrd", str(initrd),
           "-append", "tsc=reliable console=ttyS0 panic=-1 quiet",
           "-fsdev", f"local,id=out,path={share},security_model=none",
           "-device", "virtio-9p-pci,fsdev=out,mount_tag=out",
           "-display", "none", "-monitor", "none", "-no-reboot", "-nic", "none"]
    cmd += ["-serial", f"file:{console}" if console else "stdio"]
    return cmd


def boot(kernel: Path, initrd: Path, share: Path, job: str, timeout: float, cpus: int = 4, mem_mb: int = 2048,
         tcg_thread: str = "multi") -> Dict[str, object]:
    """Boot the guest once with ``job`` as /out/job.sh; returns timings, exit state and the QEMU command."""
    share.mkdir(parents=True, exist_ok=True)
    (share / "job.sh").write_text(job)
    console = share / "console.log"
    cmd = qemu_command(kernel, initrd, share, cpus, mem_mb, tcg_thread, console)
    _log("booting: " + " ".join(shlex.quote(c) for c in cmd))
    t0 = time.monotonic()
    # Under nice: the 2 development cores are shared with other people's jobs.
    with open(share / "qemu.log", "ab") as qlog:  # QEMU's own messages (a pipe nobody reads could fill up)
        proc = subprocess.Popen(["nice", "-n", "10", *cmd], stdin=subprocess.DEVNULL, stdout=qlog,
                                stderr=subprocess.STDOUT)
    boot_s = None
    timed_out = False
    while proc.poll() is None:
        if boot_s is None and console.exists() and "ZLPERF-LAB: boot-done" in console.read_text(errors="replace"):
            boot_s = time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            timed_out = True
            proc.kill()
            break
        time.sleep(0.5)
    proc.wait()
    took = time.monotonic() - t0
    text = console.read_text(errors="replace") if console.exists() else ""
    if boot_s is None and "ZLPERF-LAB: boot-done" in text:
        boot_s = took
    m = re.search(r"ZLPERF-LAB: job-exit (\d+)", text)
    return {
        "qemu": cmd, "boot_s": boot_s, "total_s": took, "timed_out": timed_out,
        "job_exit": int(m.group(1)) if m else None,
        "oops": bool(re.search(r"Oops|Kernel panic|BUG:", text)),
        "int3": "Oops: int3" in text,
    }


def _job_script(env: Dict[str, str]) -> str:
    lines = ["#!/bin/sh"] + [f"export {k}={shlex.quote(str(v))}" for k, v in env.items()] + [". /lab/job.sh"]
    return "\n".join(lines) + "\n"


def _boot_with_retry(kernel: Path, initrd: Path, share: Path, env: Dict[str, str], timeout: float, cpus: int,
                     mem_mb: int, tcg_thread: str, retries: int) -> Dict[str, object]:
    """Boot; when the guest dies (e.g. "Oops: int3" under multi-threaded TCG) boot again, resuming the tasks
    not yet done (the guest skips tasks whose results are already in /out)."""
    attempts = []
    thread = tcg_thread
    for attempt in range(retries + 1):
        res = boot(kernel, initrd, share, _job_script(env), timeout, cpus, mem_mb, thread)
        attempts.append({k: res[k] for k in ("boot_s", "total_s", "timed_out", "job_exit", "oops", "int3")}
                        | {"tcg_thread": thread})
        shutil.copy2(share / "console.log", share / f"console.{attempt}.log")
        if res["job_exit"] == 0:
            break
        if res["int3"] and thread == "multi":
            _log("guest died with 'Oops: int3' (multi-threaded TCG): retrying with -accel tcg,thread=single")
            thread = "single"
        else:
            _log(f"guest attempt {attempt} ended without success (job_exit={res['job_exit']}); retrying")
    res["attempts"] = attempts
    res["tcg_thread"] = thread
    return res


# ---------------------------------------------------------------- lab/run

def common_args(p: argparse.ArgumentParser) -> None:
    """The options lab/run, lab/fixtures and lab/overhead share (guest shape, workload, retries)."""
    p.add_argument("--variant", choices=["zone-lock", "series"], default="zone-lock",
                   help="kernel: the seed ABI only, or also the rival zone_lock:* series (default zone-lock)")
    p.add_argument("--cpus", type=int, default=4, help="vCPUs, split over 2 NUMA nodes (default 4)")
    p.add_argument("--mem", type=int, default=8192,
                   help="guest memory in MiB, split over the nodes (default 8192: zone Normal on both nodes)")
    p.add_argument("--tcg-thread", choices=["multi", "single"], default="multi",
                   help="QEMU TCG threading (default multi; 'single' avoids the occasional 'Oops: int3')")
    p.add_argument("--seconds", type=float, default=4.0, help="workload seconds per recording (default 4)")
    p.add_argument("--procs", type=int, default=0, help="workload processes (default: one per vCPU)")
    p.add_argument("--mb", type=int, default=2, help="workload region size in MiB (default 2)")
    p.add_argument("--pipers", type=int, default=2,
                   help="pipe-resizing processes beside the churn (high-order allocations and frees; default 2)")
    p.add_argument("--lead", type=float, default=1.0,
                   help="peer tasks: idle seconds before and after the workload, where the window's edges go (default 1)")
    p.add_argument("--slot-ms", type=int, default=50,
                   help="peer tasks: time slot of the bpftrace and hist-trigger counts, ms (default 50)")
    p.add_argument("--pcp-fraction", type=int, default=100000,
                   help="vm.percpu_pagelist_high_fraction in the guest (default 100000: small pcp lists)")
    p.add_argument("--timeout", type=float, default=1500, help="seconds before the guest is killed (default 1500)")
    p.add_argument("--retries", type=int, default=2, help="reboots after a guest death (default 2)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the QEMU command; run nothing")


def _guest_env(args: argparse.Namespace, tasks: Sequence[str]) -> Dict[str, str]:
    return {
        "ZL_TASKS": " ".join(tasks), "ZL_SECONDS": str(args.seconds), "ZL_PROCS": str(args.procs or args.cpus),
        "ZL_MB": str(args.mb), "ZL_PCP_FRACTION": str(args.pcp_fraction), "ZL_PIPERS": str(args.pipers),
        "ZL_LEAD": str(args.lead), "ZL_SLOT_NS": str(args.slot_ms * 1_000_000),
        "ZL_RUNS": str(getattr(args, "runs", 0)), "ZL_OVERHEAD_PROFILES": " ".join(getattr(args, "profiles", [])),
    }


def _zlperf_version() -> str:
    r = subprocess.run([sys.executable, "-m", "zlperf", "--version"], capture_output=True, text=True, cwd=REPO)
    return (r.stdout or r.stderr).strip()


def _git_head() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "zlperf", "recipes", "plugins"],
                           capture_output=True, text=True, cwd=REPO).stdout.strip()
    return r.stdout.strip() + ("+uncommitted" if dirty else "")


def run_lab(args: argparse.Namespace, tasks: Sequence[str], out: Path) -> Dict[str, object]:
    """Build what is missing, boot the guest for ``tasks``, write out/lab.json; returns its content."""
    kdir = kernel_dir(args.variant)
    if args.dry_run:
        kernel = kdir / "bzImage"
        cmd = qemu_command(kernel, CACHE / "initramfs-HASH.cpio", out, args.cpus, args.mem, args.tcg_thread,
                           out / "console.log")
        print(f"kernel:  {kernel} ({'cached' if kernel.exists() else 'built first by lab/build-kernel'})")
        print(f"tasks:   {' '.join(tasks)}")
        print(f"guest:   {json.dumps(_guest_env(args, tasks))}")
        print(f"output:  {out}")
        print("qemu:    " + " ".join(shlex.quote(c) for c in cmd))
        return {}
    t0 = time.monotonic()
    kdir = build_kernel(args.variant)
    initrd = build_initramfs()
    out.mkdir(parents=True, exist_ok=True)
    res = _boot_with_retry(kdir / "bzImage", initrd, out, _guest_env(args, tasks), args.timeout, args.cpus,
                           args.mem, args.tcg_thread, args.retries)
    info = {
        "kernel": (kdir / "kernelrelease").read_text().strip(),
        "kernel_dir": str(kdir), "variant": args.variant,
        "kernel_build_s": int((kdir / "build-seconds").read_text()) if (kdir / "build-seconds").exists() else None,
        "patches": {p.name: _sha256(p) for p in sorted(kdir.glob("*.patch"))},
        "config_sha256": _sha256(kdir / "config"),
        "fragment_sha256": _sha256(LAB / "config" / "zlperf.config"),
        "initramfs": initrd.name, "qemu": " ".join(shlex.quote(c) for c in res["qemu"]),
        "tcg_thread": res["tcg_thread"], "attempts": res["attempts"], "cpus": args.cpus, "mem_mb": args.mem,
        "workload": {"cmd": f"zl-workload -p {args.procs or args.cpus} -P {args.pipers} -m {args.mb} -s {args.seconds}",
                     "peer_cmd": f"zl-workload -t -p {args.procs or args.cpus} -P {args.pipers} -m {args.mb} "
                                 f"-s {args.seconds} -l {args.lead}",
                     "pcp_fraction": args.pcp_fraction, "procs": args.procs or args.cpus, "mb": args.mb,
                     "pipers": args.pipers, "seconds": args.seconds, "lead": args.lead, "slot_ms": args.slot_ms},
        "zlperf_version": _zlperf_version(), "zlperf_git": _git_head(), "tasks": list(tasks),
        "wall_s": round(time.monotonic() - t0, 1),
    }
    (out / "lab.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def run_main(argv: Optional[Sequence[str]] = None) -> int:
    """lab/run: boot the patched kernel and record every profile with the real zlperf inside the guest."""
    p = argparse.ArgumentParser(prog="lab/run", description=(
        "Boot the lab kernel under QEMU TCG (2 NUMA nodes) with an initramfs holding this checkout's zlperf, "
        "trace-cmd, perf, bpftrace and python3; inside, run zl-workload under `zlperf record --profile P` for each "
        "task, the perf backend and a v6 trace.dat, then `zlperf report` on each; then the patch's selftest "
        "(bpftrace) and hist triggers beside `zlperf record` for each kmem profile, compared in the peer table "
        "(peers.md), and the live task: `zlperf top` and `zlperf exporter` beside them, every peer counting the "
        "workload's tasks only. Results land in --out; the exit status is 1 when a task failed or zlperf differs "
        "from a peer."))
    common_args(p)
    p.add_argument("--tasks", default=None,
                   help=f"comma list of {','.join(ALL_TASKS + SERIES_TASKS)} (default all; 'series' only and by "
                        "default with --variant series)")
    p.add_argument("--out", type=Path, default=CACHE / "runs" / time.strftime("%Y%m%d-%H%M%S"),
                   help="result folder (default lab/cache/runs/STAMP)")
    args = p.parse_args(argv)
    args.out = args.out.resolve()
    if args.tasks is None:
        args.tasks = ",".join(ALL_TASKS + (SERIES_TASKS if args.variant == "series" else []))
    tasks = [t for t in args.tasks.split(",") if t]
    bad = [t for t in tasks if t not in ALL_TASKS + SERIES_TASKS]
    if bad:
        p.error(f"unknown task(s) {','.join(bad)}; choose from {','.join(ALL_TASKS + SERIES_TASKS)}")
    if "series" in tasks and args.variant != "series":
        p.error("task 'series' needs --variant series (a kernel with the zone_lock:* events)")
    try:
        info = run_lab(args, tasks, args.out)
    except LabError as e:
        print(f"lab/run: {e}", file=sys.stderr)
        return 1
    if not info:
        return 0
    done = (args.out / "progress.log").read_text() if (args.out / "progress.log").exists() else ""
    print(done, end="")
    peers_ok = write_peer_tables(args.out, [t for t in tasks if t in PEER_TASKS + ["live"]], args.slot_ms * 1_000_000)
    print(f"lab/run: results in {args.out} (boot {info['attempts'][-1]['boot_s']} s, wall {info['wall_s']} s)")
    return 0 if info["attempts"][-1]["job_exit"] == 0 and peers_ok else 1


def write_peer_tables(out: Path, tasks: Sequence[str], slot_ns: int) -> bool:
    """The peer table of every peers-PROFILE folder of run ``out``: printed, and written to out/peers.md and
    out/peers.json. False when a table is missing or zlperf differs from a peer."""
    import lab_peers

    if not tasks:
        return True
    texts, docs, ok = [], [], True
    for task in tasks:
        profile = task[len("peers-"):] if task.startswith("peers-") else "hold-time"
        try:
            table = lab_peers.peer_table(out / task, profile, slot_ns, live=task == "live")
        except (lab_peers.PeerError, OSError, ValueError, KeyError) as e:
            texts.append(f"### {task}\n\nFAIL: no peer table: {e}\n")
            docs.append({"profile": profile, "task": task, "ok": False, "error": str(e)})
            ok = False
            continue
        texts.append(lab_peers.render(table))
        docs.append(lab_peers.as_json(table) | {"task": task})
        ok &= table.ok
    text = "\n".join(texts)
    (out / "peers.md").write_text(text)
    (out / "peers.json").write_text(json.dumps(docs, indent=1) + "\n")
    print(text, end="")
    return ok


