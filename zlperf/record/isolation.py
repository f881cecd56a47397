"""Run ``trace-cmd extract`` where machine-wide files cannot change under it, nor it change them.

extract reads /proc/kallsyms twice, for its size and then its text (lib/trace-cmd/trace-output.c,
read_proc_kallsyms), and fails with "error in size of file '/proc/kallsyms'" whenever a BPF program is
loaded or unloaded in between: any bpftrace starting anywhere on the machine. It also sets
kernel.kptr_restrict to 0 while it copies (set_proc_kptr_restrict), a machine-wide value. So extract runs in
a private mount namespace where a snapshot of /proc/kallsyms and a private copy of kptr_restrict are bound
over the real files: it sees a stable table and its writes stay private.
"""

from __future__ import annotations

__all__ = ["Binds", "prepare", "isolated"]

import ctypes
import os
import signal
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from zlperf.record.guard import KPTR_RESTRICT, read_value
from zlperf.record.signals import die_with_parent
from zlperf.record.tracefs import write_kernel_file

KALLSYMS = Path("/proc/kallsyms")
#: (snapshot file, the file it is bound over) pairs.
Binds = List[Tuple[Path, Path]]

# include/uapi/linux/sched.h and include/uapi/linux/mount.h
_CLONE_NEWNS = 0x00020000
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _unshare, _mount = _libc.unshare, _libc.mount  # looked up here: the child only calls them
except (OSError, AttributeError):
    _unshare = _mount = None


def prepare(folder: Path, remember: Callable[..., None]) -> Binds:
    """Write the snapshots into ``folder`` (the recording's private folder); the binds for :func:`isolated`.

    With kernel.kptr_restrict at 2 even root reads zero addresses: then it is lowered to 1 (root may read)
    for the copy and put back at once. The caller holds the recorders' lock; ``remember`` notes the value
    to put back in the state file, so that a kill in between is repaired by the next recording.
    """
    text = KALLSYMS.read_text()
    found = read_value(KPTR_RESTRICT)
    if text.startswith("0000000000000000 ") and found == "2":
        remember(kptr_restrict_restore=found)
        try:
            write_kernel_file(KPTR_RESTRICT, "1")
            text = KALLSYMS.read_text()
        finally:
            write_kernel_file(KPTR_RESTRICT, found)
            remember(kptr_restrict_restore=None)
    own = folder / "isolation"  # apart from the recording's files, whatever OUT is called
    own.mkdir(exist_ok=True)
    snapshot, kptr = own / "kallsyms", own / "kptr_restrict"
    snapshot.write_text(text)
    kptr.write_text((found or "0") + "\n")
    return [(snapshot, KALLSYMS), (kptr, KPTR_RESTRICT)]


def isolated(binds: Optional[Binds], deathsig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn``: private mount namespace with ``binds`` in place, and ``deathsig`` when zlperf dies.

    A failure raises in the child; ``subprocess`` then raises SubprocessError in zlperf, which runs the
    step without isolation (and says so).
    """
    on_death = die_with_parent(deathsig)

    def setup() -> None:
        on_death()
        if not binds:
            return
        if _unshare is None or _mount is None:
            raise OSError("no unshare/mount in libc")
        if _unshare(_CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        # Private first: the binds below must not propagate back to the machine's mount namespace.
        if _mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
        for src, dst in binds:
            if _mount(os.fsencode(src), os.fsencode(dst), None, _MS_BIND, None) != 0:
                raise OSError(ctypes.get_errno(), f"mount --bind {src} {dst}")

    return setup
