"""Reading and writing files that may be hostile: bounded reads, no hangs, no writes through symlinks.

Every input zlperf opens (traces, kallsyms, sidecars, report documents, recipes) may be a FIFO,
a device, a directory, unreadable, or far larger than its format allows; every output may have
a symlink planted at its name. These helpers turn each case into one :class:`ZlperfError` line
that names the file, and write outputs through a temporary file renamed into place.
"""

from __future__ import annotations

__all__ = [
    "check_input",
    "read_limited",
    "read_text_limited",
    "spool_stream",
    "check_output",
    "atomic_write",
    "open_atomic",
]

import contextlib
import gzip
import os
import shutil
import stat
import tempfile
import zlib
from pathlib import Path
from typing import IO, Iterator, Optional, Union

from zlperf.errors import ZlperfError

PathLike = Union[str, "os.PathLike[str]"]

_GZIP_MAGIC = b"\x1f\x8b"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_input(path: PathLike, what: str) -> os.stat_result:
    """Stat ``path`` and require a readable regular file; one-line :class:`ZlperfError` otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ZlperfError(f"{path}: no such file ({what})") from None
    except OSError as exc:
        raise ZlperfError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ZlperfError(f"{path}: is {_kind(st.st_mode)}, not a {what} (give a regular file)")
    if not os.access(path, os.R_OK):
        raise ZlperfError(f"{path}: cannot read {what} (permission denied)")
    return st


def read_limited(path: PathLike, limit: int, what: str, *, gunzip: bool = False) -> bytes:
    """The whole of regular file ``path``, refusing more than ``limit`` bytes (after gunzip).

    Special files are refused before they are opened (a FIFO would block, /dev/zero never
    ends); a gzip file is inflated in bounded steps, so a compression bomb stops at ``limit``.
    """
    check_input(path, what)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise ZlperfError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if gunzip and raw[:2] == _GZIP_MAGIC:
        try:
            with gzip.GzipFile(fileobj=_BytesReader(raw)) as gz:
                raw = gz.read(limit + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise ZlperfError(f"{path}: damaged gzip data in {what} ({exc}); give the file uncompressed "
                              "or copy it again") from None
    if len(raw) > limit:
        raise ZlperfError(f"{path}: larger than any {what} can be ({limit >> 20} MiB); is it the right file?")
    return raw


def read_text_limited(path: PathLike, limit: int, what: str, *, gunzip: bool = False) -> str:
    """:func:`read_limited` decoded as UTF-8 (undecodable bytes replaced)."""
    return read_limited(path, limit, what, gunzip=gunzip).decode("utf-8", "replace")


class _BytesReader:
    """A minimal file object over bytes for GzipFile (io.BytesIO would copy the buffer)."""

    def __init__(self, data: bytes):
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._view) if n is None or n < 0 else min(len(self._view), self._pos + n)
        out = bytes(self._view[self._pos:end])
        self._pos = end
        return out

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass


def spool_stream(path: PathLike, what: str, tmpdir: Optional[str] = None) -> Optional[str]:
    """A regular-file path for ``path``: None when it already is one, else a temporary copy.

    Pipes (``<(cat f)``, ``/dev/stdin`` fed by a pipe) cannot be seeked, so they are copied to
    a temporary file the caller must delete. A FIFO with no writer reads as empty instead of
    hanging. Directories, devices other than stdin pipes and sockets are refused.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ZlperfError(f"{path}: no such file ({what})") from None
    except OSError as exc:
        raise ZlperfError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if stat.S_ISREG(st.st_mode):
        if not os.access(path, os.R_OK):
            raise ZlperfError(f"{path}: cannot read {what} (permission denied)")
        return None
    if not stat.S_ISFIFO(st.st_mode):
        raise ZlperfError(f"{path}: is {_kind(st.st_mode)}, not a {what} (give a regular file)")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ZlperfError(f"{path}: cannot read {what} ({exc.strerror})") from None
    fd_out, tmp = tempfile.mkstemp(prefix="zlperf-input-", dir=tmpdir)
    try:
        # Opened without blocking (open() of a FIFO would wait for a writer); reads then block,
        # and with no writer connected the first read is end-of-file (POSIX read(2)).
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as src, os.fdopen(fd_out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except OSError as exc:
        os.unlink(tmp)
        raise ZlperfError(f"{path}: cannot copy the pipe to a temporary file ({exc.strerror})") from None
    except BaseException:
        os.unlink(tmp)
        raise
    if os.path.getsize(tmp) == 0:
        os.unlink(tmp)
        raise ZlperfError(f"{path}: empty: nothing was written into this pipe (give the {what} itself)")
    return tmp


# -- outputs ---------------------------------------------------------------------------------------

def check_output(path: PathLike, what: str, *, overwrite_symlink: bool = False) -> Path:
    """Check before any work that ``path`` can be written: its folder exists and is writable,
    and it is not a symlink (a planted link would redirect the write) nor a directory."""
    p = Path(path)
    if p.is_symlink() and not overwrite_symlink:
        raise ZlperfError(f"{p}: is a symbolic link; zlperf does not write {what} through links "
                          "(remove it or choose another name)")
    if p.is_dir():
        raise ZlperfError(f"{p}: is a directory; give a file name for the {what}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ZlperfError(f"{p}: folder {parent} does not exist (create it or choose another output)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ZlperfError(f"{p}: cannot write the {what} into {parent} (permission denied or read-only)")
    return p


@contextlib.contextmanager
def open_atomic(path: PathLike, what: str, *, mode: int = 0o644, text: bool = True,
                overwrite_symlink: bool = False) -> Iterator[IO]:
    """A file object whose content replaces ``path`` only when the block ends without error.

    Written to a new temporary file in the destination folder (created with ``mode``, O_EXCL, so
    no link is followed), flushed, then renamed over ``path``; on any error the temporary file
    is removed and ``path`` is left as it was.
    """
    p = check_output(path, what, overwrite_symlink=overwrite_symlink)
    parent = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise ZlperfError(f"{p}: cannot create the {what} ({exc.strerror})") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w" if text else "wb", **({"encoding": "utf-8"} if text else {})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if p.is_symlink() and not overwrite_symlink:  # planted while we wrote
            raise ZlperfError(f"{p}: became a symbolic link while writing; not replaced")
        os.replace(tmp, p)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ZlperfError(f"{p}: cannot write the {what} ({exc.strerror})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: PathLike, data: Union[str, bytes], what: str, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through :func:`open_atomic`."""
    with open_atomic(path, what, mode=mode, text=isinstance(data, str)) as fh:
        fh.write(data)
