"""Kernel symbols for a perf.data, which carries none: which kallsyms file to use, and whether it fits.

Picked in this order: the file the caller names (``--kallsyms``), the copy ``zlperf record`` saves
beside the recording (``FILE.kallsyms[.gz]``, or ``STEM.kallsyms[.gz]`` for ``STEM.data``), or
/proc/kallsyms when the recording's hostname and kernel release are this host's. The kernel base
perf recorded (its ``[kernel.kallsyms]_text`` mmap) is compared with the table: a mismatch (another
boot, KASLR) is a warning.
"""

from __future__ import annotations

__all__ = ["kallsyms_candidates", "find_kallsyms", "kernel_base_warning"]

import os
import re
import socket
from pathlib import Path
from typing import Optional

from zlperf.errors import ZlperfError
from zlperf.kallsyms import MAX_KALLSYMS_BYTES, Kallsyms
from zlperf.readers.perfdata.layout import PerfHeaderInfo
from zlperf.safeio import read_text_limited

_PROC = "/proc/kallsyms"


def kallsyms_candidates(path: str) -> list[Path]:
    """Where ``zlperf record`` may have saved the kallsyms of ``path`` (first existing wins)."""
    p = Path(path)
    stems = [p]
    if p.suffix == ".data":
        stems.append(p.with_suffix(""))  # perf.data -> perf.kallsyms, full.perf.data -> full.perf.kallsyms
    return [Path(f"{s}.kallsyms{gz}") for s in stems for gz in ("", ".gz")]


def _same_host(hdr: PerfHeaderInfo) -> bool:
    uname = os.uname()
    host_ok = hdr.hostname is None or hdr.hostname in (uname.nodename, socket.gethostname())
    return bool(hdr.osrelease) and hdr.osrelease == uname.release and host_ok


def kernel_base_warning(text: str, source: str, ref: Optional[tuple[str, int]]) -> Optional[str]:
    """A warning when the recorded kernel had symbol ``ref[0]`` elsewhere than kallsyms ``text`` says.

    One regex search for that one symbol, so the table itself is still parsed only when used.
    """
    if ref is None:
        return None
    name, addr = ref
    m = re.search(r"^([0-9a-fA-F]+) \w " + re.escape(name) + r"\s*$", text, re.M)
    if m is None:
        return None
    have = int(m.group(1), 16)
    if have == 0 or have == addr:  # zeros: an unprivileged read, nothing to compare
        return None
    return (f"kallsyms ({source}) may not match this recording: the recorded kernel had {name} at "
            f"{addr:#x}, the table has it at {have:#x} (another boot or kernel); callers may be wrong")


def find_kallsyms(path: str, hdr: PerfHeaderInfo, explicit: Optional[str], ref: Optional[tuple[str, int]],
                  warnings: list[str]) -> Optional[Kallsyms]:
    """The kallsyms table for a perf.data by the convention in the module docstring, or None.

    The chosen file is read now (bounded) and checked against ``ref``, the recorded kernel mmap's
    (symbol, address); the table is parsed on first lookup. What is missing or suspect is
    appended to ``warnings``. A named file that cannot be read is an error.
    """
    if explicit:
        text = read_text_limited(explicit, MAX_KALLSYMS_BYTES, "kallsyms file", gunzip=True)
        return _checked(text, str(explicit), ref, warnings)
    for cand in kallsyms_candidates(path):
        if cand.is_file():
            try:
                text = read_text_limited(cand, MAX_KALLSYMS_BYTES, "kallsyms file", gunzip=True)
            except ZlperfError as exc:
                warnings.append(f"{exc}; callers shown as addresses")
                return None
            return _checked(text, str(cand), ref, warnings)
    if _same_host(hdr):
        try:
            text = read_text_limited(_PROC, MAX_KALLSYMS_BYTES, "kallsyms file")
        except ZlperfError as exc:
            warnings.append(f"{exc}: callers shown as addresses")
            return None
        syms = _checked(text, f"{_PROC} (this host: same hostname and kernel release)", ref, warnings)
        if len(syms):
            return syms
        warnings.append(f"{_PROC} shows no addresses (not root): callers shown as addresses")
        return None
    where = " or ".join(str(c) for c in kallsyms_candidates(path)[::2])
    host = f"{hdr.hostname or '?'} {hdr.osrelease or '?'}"
    warnings.append(f"no kallsyms for this perf.data (recorded on {host}, perf.data carries none; looked for "
                    f"{where}): callers shown as addresses; give --kallsyms FILE with the recording host's "
                    f"/proc/kallsyms")
    return None


def _checked(text: str, source: str, ref: Optional[tuple[str, int]], warnings: list[str]) -> Kallsyms:
    note = kernel_base_warning(text, source, ref)
    if note:
        warnings.append(note)
    return Kallsyms.from_text(text, source=source)
