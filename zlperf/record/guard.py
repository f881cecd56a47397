"""What a recorder changes outside its own files, serialised between recorders and repaired after a kill.

zlperf never writes the top-level tracefs files (extract runs with ``-k``, see :mod:`zlperf.record.instance`).
The one machine-wide value left is ``kernel.kptr_restrict``: zlperf lowers it from 2 to 1 for an instant
to copy /proc/kallsyms (:mod:`zlperf.record.isolation`), and an extract run without that isolation sets it
to 0 while it copies (lib/trace-cmd/trace-output.c: set_proc_kptr_restrict). A recorder killed in between,
or two recorders interleaving their save/restore, would leave it lowered. So:

- one lock (``flock`` on /run/zlperf/record.lock) serialises those steps between zlperf processes;
- each recorder keeps a state file (/run/zlperf/record-PID.json) naming its instance, its private output
  folder and, while it may have lowered kptr_restrict, the value to put back;
- the next recorder repairs what a dead one left (its instance, its partial files, a lowered value, only
  ever raised back) and says so in one line.
"""

from __future__ import annotations

__all__ = ["STATE_DIR", "KPTR_RESTRICT", "RecorderLock", "RecorderState", "repair_leftovers", "dead_instances",
           "read_value"]

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

from zlperf.errors import RecordError, ZlperfError
from zlperf.record.outputs import is_workdir_name
from zlperf.record.tracefs import write_kernel_file
from zlperf.safeio import atomic_write, read_text_limited

#: Where recorders keep their lock and state files (root only; cleared at boot, as is the kernel state).
STATE_DIR = Path("/run/zlperf")
KPTR_RESTRICT = Path("/proc/sys/kernel/kptr_restrict")
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_STATE_RE = re.compile(r"record-(\d+)\.json")


def read_value(path: Path) -> Optional[str]:
    """The stripped text of a small kernel file, or None when it cannot be read."""
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _write_value(path: Path, value: str) -> bool:
    try:
        write_kernel_file(path, value)
        return True
    except OSError:
        return False


def _start_time(pid: int) -> Optional[str]:
    """Field 22 of /proc/PID/stat (start time since boot): tells a live process from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _state_dir() -> Optional[Path]:
    """STATE_DIR, created 0700 if needed; None when this process cannot use it (not root)."""
    try:
        STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return None
    if STATE_DIR.is_symlink() or not os.access(STATE_DIR, os.W_OK | os.X_OK):
        return None
    return STATE_DIR


class RecorderLock:
    """The machine-wide lock of zlperf recorders (``flock``: released by the kernel when its holder dies)."""

    def __init__(self) -> None:
        self._fd: Optional[int] = None

    @contextlib.contextmanager
    def held(self, say: Callable[[str], None], what: str) -> Iterator[None]:
        """Hold the lock for the block (``what`` it protects, for the message saying once, with the holder's
        pid, that another recorder has it)."""
        folder = _state_dir()
        if folder is None:
            yield  # not root: nothing machine-wide to protect (perf as a user)
            return
        fd = os.open(folder / "record.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            waited = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise RecordError(f"{folder}/record.lock: cannot lock ({exc.strerror})") from None
                if not waited:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    say(f"waiting for zlperf record pid {holder} (one recorder at a time may {what})")
                    waited = True
                time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the flock


class RecorderState:
    """This recorder's state file: what a later run needs to repair if this one is killed."""

    def __init__(self) -> None:
        folder = _state_dir()
        self.path: Optional[Path] = folder / f"record-{os.getpid()}.json" if folder else None
        self.doc: Dict[str, object] = {
            "pid": os.getpid(), "start": _start_time(os.getpid()), "boot": read_value(_BOOT_ID),
        }

    def update(self, **values: object) -> None:
        """Record ``values`` (atomically: a kill mid-write leaves the previous state)."""
        self.doc.update(values)
        if self.path is not None:
            atomic_write(self.path, json.dumps(self.doc) + "\n", "recorder state", mode=0o600)

    def remove(self) -> None:
        """The recording ended (well or not) and cleaned up after itself: nothing to repair."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


def _alive(doc: dict) -> bool:
    pid = doc.get("pid")
    if not isinstance(pid, int) or doc.get("boot") != read_value(_BOOT_ID):
        return False
    return _start_time(pid) == doc.get("start")


def repair_leftovers(tracefs_root: Path, say: Callable[[str], None]) -> None:
    """Undo what killed recorders left (call with the lock held): instances, partial files, changed values.

    Each repaired recorder gets one line. Instances named zlperf-PID of a dead PID without a state file
    (left by an older zlperf) are removed too.
    """
    folder = _state_dir()
    handled: List[str] = []
    for path in sorted(folder.glob("record-*.json")) if folder else []:
        if not _STATE_RE.fullmatch(path.name):
            continue
        try:
            doc = json.loads(read_text_limited(path, 1 << 16, "recorder state"))
        except (ValueError, RecursionError, ZlperfError):  # a damaged state file: nothing to trust in it
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        if doc and _alive(doc):
            continue
        done = _repair_one(doc, tracefs_root)
        if doc.get("instance"):
            handled.append(str(doc["instance"]))
        with contextlib.suppress(OSError):
            path.unlink()
        if done:
            say(f"repaired what a killed zlperf record (pid {doc.get('pid', '?')}) left: {'; '.join(done)}")
    for name in dead_instances(tracefs_root):
        if name not in handled and _rmdir_instance(tracefs_root / "instances" / name):
            say(f"removed the tracefs instance {name} of a killed zlperf record (its buffers were held)")


def _repair_one(doc: dict, tracefs_root: Path) -> List[str]:
    done: List[str] = []
    same_boot = doc.get("boot") == read_value(_BOOT_ID)
    name = doc.get("instance")
    if same_boot and isinstance(name, str) and re.fullmatch(r"zlperf-\d+", name):
        if _rmdir_instance(tracefs_root / "instances" / name):
            done.append(f"removed tracefs instance {name}")
    workdir = doc.get("workdir")
    if isinstance(workdir, str):
        wd = Path(workdir)
        if is_workdir_name(wd.name) and wd.is_dir() and not wd.is_symlink():
            shutil.rmtree(wd, ignore_errors=True)
            done.append(f"removed its partial files ({wd})")
    saved, now = doc.get("kptr_restrict_restore"), read_value(KPTR_RESTRICT)
    # Only ever raised back: a value someone lowered on purpose since is never lowered further by this.
    if (same_boot and isinstance(saved, str) and saved.isdigit() and now is not None and now.isdigit()
            and int(now) < int(saved) and _write_value(KPTR_RESTRICT, saved)):
        done.append(f"{KPTR_RESTRICT} back to {saved} (it was {now})")
    return done


def dead_instances(tracefs_root: Path) -> List[str]:
    """Instances named zlperf-PID whose process is gone."""
    try:
        names = sorted(p.name for p in (tracefs_root / "instances").iterdir())
    except OSError:
        return []
    dead = []
    for name in names:
        m = re.fullmatch(r"zlperf-(\d+)", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            dead.append(name)
    return dead


def _rmdir_instance(path: Path) -> bool:
    for _ in range(20):
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return False
            time.sleep(0.1)  # a reader of its per-CPU files is still exiting
    return False
