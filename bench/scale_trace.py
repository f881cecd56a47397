"""Make a long trace.dat from a real one: its ring-buffer pages repeated, each copy later in time.

The benchmarks need multi-million-event zone-lock traces, and the only zone-lock recordings
are short (a patched kernel under emulation). Repeating the real pages keeps every event
real; each copy's page timestamps are shifted past the previous copy, so per-CPU time order
holds. Input: a v6 file (e.g. tests/data/full.v6.dat); output v6, or v7 with --compression
(through `trace-cmd convert`, the reference writer).

Usage: python3 bench/scale_trace.py IN.v6.dat OUT.dat --copies N [--compression zstd|zlib|none]
"""

from __future__ import annotations

__all__ = ["scale_v6"]

import argparse
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from zlperf.readers.tracedat import TraceDatFile  # noqa: E402


def scale_v6(src: Path, dst: Path, copies: int) -> None:
    """Write ``dst``: ``src`` (v6, top buffer only) with each CPU's pages repeated ``copies`` times."""
    f = TraceDatFile(str(src))
    try:
        if f.version != 6:
            raise SystemExit(f"{src}: version {f.version}; give a v6 file (trace-cmd convert --file-version 6)")
        if len(f.buffers) != 1:
            raise SystemExit(f"{src}: {len(f.buffers)} buffers; only single-buffer files are scaled")
        top = f.buffers[0]
        page = top.page_size
        raw = src.read_bytes()
        table_at = top.offset + 10  # after "flyrecord\0"
        pages = {cd.cpu: raw[cd.offset:cd.offset + cd.size] for cd in top.cpus}
        first = min(struct.unpack_from("<Q", p, 0)[0] for p in pages.values() if p)
        last = max(struct.unpack_from("<Q", p, len(p) - page)[0] for p in pages.values() if p)
        # Shift each copy past the previous one (page stamps + a second of slack for the last events).
        span = last - first + 1_000_000_000
    finally:
        f.close()
    with open(dst, "wb") as out:
        out.write(raw[:table_at])
        data_at = table_at + 16 * len(pages)
        data_at += (-data_at) % page
        offsets, pos = [], data_at
        for cpu in sorted(pages):
            size = len(pages[cpu]) * copies
            offsets.append((pos, size))
            pos += size
        out.write(b"".join(struct.pack("<QQ", o, s) for o, s in offsets))
        out.write(b"\0" * (data_at - out.tell()))
        for cpu in sorted(pages):
            chunk = bytearray(pages[cpu])
            stamps = [struct.unpack_from("<Q", chunk, i)[0] for i in range(0, len(chunk), page)]
            for k in range(copies):
                for j, i in enumerate(range(0, len(chunk), page)):
                    struct.pack_into("<Q", chunk, i, stamps[j] + k * span)
                out.write(chunk)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--copies", type=int, default=100)
    ap.add_argument("--compression", default="none", help="zstd, zlib or none (v7 via trace-cmd convert)")
    args = ap.parse_args()
    if args.compression == "none":
        scale_v6(args.src, args.dst, args.copies)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        v6 = Path(tmp) / "scaled.v6.dat"
        scale_v6(args.src, v6, args.copies)
        subprocess.run(["trace-cmd", "convert", "--file-version", "7", "--compression", args.compression,
                        "-i", str(v6), "-o", str(args.dst)], check=True, stdout=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
