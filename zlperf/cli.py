"""The ``zlperf`` command: a thin dispatcher over the subcommand modules in zlperf/commands/.

Each module there defines ``register(subparsers)``, which adds its parser and sets
``func(args) -> int``. Errors the user can act on (:class:`zlperf.errors.ZlperfError`)
become one line on stderr and exit status 2, as does an output that cannot be written;
nothing else is caught (a traceback is a bug to report).
"""

from __future__ import annotations

__all__ = ["main", "run", "build_parser"]

import argparse
import importlib
import os
import sys
from typing import Optional, Sequence

from zlperf import __version__
from zlperf.errors import ZlperfError

# Subcommand modules, in the order `zlperf -h` lists them.
_COMMANDS = ["record", "report", "top", "exporter", "check", "export", "fleet", "diff", "merge", "recipes",
             "tracecmd_script", "perf_script"]

_EPILOG = """examples:
  zlperf report --example                      # a real recording from a patched kernel, no root needed
  zlperf record --profile minimal -- CMD ARGS  # contended events only, lowest overhead
  zlperf record --profile stock -o s.dat -- python3 -m zlperf.workload --seconds 3   # kernels without the patch
  zlperf report trace.dat --by caller --top 10 # where the contention comes from
  zlperf check trace.dat --profile acme:ci     # exit 1 when over a recipe's budgets (CI gate)
  zlperf recipes list                          # built-in, pack and your own recipes
"""


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The argument parser with every available subcommand (``only``: with that one alone, which is
    all a command line naming it needs: the other modules are not imported)."""
    parser = argparse.ArgumentParser(
        prog="zlperf",
        description="Record and analyse page-allocator zone->lock contention.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"zlperf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [only] if only else _COMMANDS:
        # Every listed subcommand must import: a missing module is a packaging mistake, not a feature.
        importlib.import_module(f"zlperf.commands.{name}").register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``zlperf`` console script; returns the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    # Start-up: `zlperf report ...` needs the report parser only (module names use _, commands -).
    first = words[0].replace("-", "_") if words and not words[0].startswith("-") else None
    parser = build_parser(first if first in _COMMANDS else None)
    args = parser.parse_args(words)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "no_blas_threads", False) and "numpy" not in sys.modules:
        # zlperf calls no BLAS routine, yet OpenBLAS starts (and spins) a thread per core when numpy is
        # imported: ~1.5% of a report's instructions, on cores its workers need. Not for commands that
        # start the user's programs (they would inherit the setting).
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if getattr(args, "keep_freed_memory", False):
        keep_freed_memory()
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a full disk or /dev/full shows here, not in the interpreter's exit
        global _finished
        _finished = bool(getattr(args, "nothing_left_at_exit", False))
        return status
    except ZlperfError as exc:
        print(f"zlperf: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zlperf: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `zlperf report ... | head` closed the pipe: not an error worth a traceback.
        _drop_stdout()
        return 0
    except OSError as exc:
        if exc.filename is not None:
            raise  # a file operation that is not ours to explain: a bug
        _drop_stdout()
        print(f"zlperf: cannot write to standard output ({exc.strerror})", file=sys.stderr)
        return 2


_finished = False  # the command said it leaves nothing to clean up (see run)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> None:
    """Let glibc's malloc keep freed blocks for the next allocation instead of handing them back to the kernel.

    A chunk at a time, the analysis frees arrays of a few MB and allocates the same sizes again; glibc gives
    blocks over its mmap threshold (128 KB to 32 MB, adapting) back at once and trims its heap's top, so every
    next chunk faults its pages in again (zeroed by the kernel: ~40% of a report's page faults, and on a
    virtual machine each costs more). With the threshold at 32 MB and no trimming below 256 MB, freed blocks
    are reused; the peak stays what the analysis holds at once (``bench/tree_memory.py``). Nothing happens
    where the C library has no ``mallopt`` (musl, macOS).
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)


def run() -> None:
    """The ``zlperf`` console script (and ``python3 -m zlperf``): :func:`main`, then exit.

    A command that leaves nothing to clean up (``report``: its output is written and flushed, no temporary
    files, threads or child processes remain) exits without the interpreter's teardown: freeing a few hundred
    modules and the analysis's arrays one by one costs ~60 ms that the operating system does at once.
    """
    status = main()
    if _finished:
        sys.stderr.flush()
        os._exit(status)
    raise SystemExit(status)


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
