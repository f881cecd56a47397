"""Hostile field values in real records: one changed field must never size an allocation or invent a zone.

The damaged files are made from the real v6 fixture: `trace-cmd dump --flyrecord` gives the CPU buffers,
a small walk over the ring-buffer pages (written here, sharing no code with zlperf) finds the records,
and one field of one record is overwritten in place.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import FULL_V6_DAT, requires_trace_cmd
from hostile import assert_handled, run_zlperf

pytestmark = requires_trace_cmd

PAGE = 4096


def _buffers(path: Path) -> list[tuple[int, int]]:
    out = subprocess.run(["trace-cmd", "dump", "--flyrecord", "-i", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return [(int(a), int(b)) for a, b in re.findall(r"^\s*(\d+)\s+(\d+)\s+\[offset, size of cpu", out, re.M)]


def _event_id(path: Path, name: str) -> int:
    out = subprocess.run(["trace-cmd", "report", "--events", str(path)], capture_output=True, text=True).stdout
    return int(re.search(rf"name: {name}\nID: (\d+)", out).group(1))


def record_payloads(path: Path, event_id: int) -> list[int]:
    """File offsets of the payloads of every record with ``event_id`` (little-endian, 8-byte longs)."""
    data = path.read_bytes()
    found = []
    for offset, size in _buffers(path):
        for page in range(offset, offset + size, PAGE):
            commit = struct.unpack_from("<Q", data, page + 8)[0] & ((1 << 27) - 1)
            pos, end = page + 16, page + 16 + commit
            while pos + 4 <= end:
                header = struct.unpack_from("<I", data, pos)[0]
                type_len, delta = header & 31, header >> 5
                if type_len == 0:
                    length = struct.unpack_from("<I", data, pos + 4)[0]
                    payload, pos = pos + 8, pos + 4 + length
                elif type_len <= 28:
                    payload, pos = pos + 4, pos + 4 + 4 * type_len
                elif type_len == 29:
                    if delta == 0:
                        break
                    pos += 4 + struct.unpack_from("<I", data, pos + 4)[0]
                    continue
                else:  # time extend / absolute timestamp
                    pos += 8
                    continue
                if struct.unpack_from("<H", data, payload)[0] == event_id:
                    found.append(payload)
    return found


@pytest.fixture(scope="module")
def locked_payloads() -> list[int]:
    payloads = record_payloads(FULL_V6_DAT, _event_id(FULL_V6_DAT, "mm_zone_locked"))
    assert len(payloads) > 20000  # the fixture's 26874 locked events, found independently
    return payloads


@pytest.mark.parametrize("node", [2 ** 31 - 1, -(2 ** 31), 1024, -1])
def test_implausible_node_id_is_left_out_with_a_warning(tmp_path, locked_payloads, node):
    data = bytearray(FULL_V6_DAT.read_bytes())
    struct.pack_into("<i", data, locked_payloads[len(locked_payloads) // 2] + 8, node)
    bad = tmp_path / "node.dat"
    bad.write_bytes(bytes(data))
    out = run_zlperf(["report", str(bad), "--json"])
    assert assert_handled(out) == "partial"
    doc = json.loads(out.stdout)
    assert sorted(z["label"] for z in doc["zones"]) == ["0:Normal", "1:Normal"]
    assert any("1 kmem:mm_zone_lock_* events left out" in w for w in doc["warnings"])
    good = json.loads(run_zlperf(["report", str(FULL_V6_DAT), "--json"]).stdout)
    assert doc["totals"]["acquisitions"] == good["totals"]["acquisitions"] - 1


def test_every_record_with_a_different_huge_node_stays_bounded(tmp_path, locked_payloads):
    """Thousands of distinct impossible nodes and names: still one warning, bounded memory, no invented zones."""
    data = bytearray(FULL_V6_DAT.read_bytes())
    for i, payload in enumerate(locked_payloads[::3]):
        struct.pack_into("<i", data, payload + 8, 2 ** 30 + i * 7919)
    bad = tmp_path / "nodes.dat"
    bad.write_bytes(bytes(data))
    out = run_zlperf(["report", str(bad), "--json"])
    assert assert_handled(out) == "partial"
    doc = json.loads(out.stdout)
    assert sorted(z["label"] for z in doc["zones"]) == ["0:Normal", "1:Normal"]


def test_a_damaged_zone_name_is_not_a_zone(tmp_path, locked_payloads):
    data = bytearray(FULL_V6_DAT.read_bytes())
    payload = locked_payloads[100]
    loc = struct.unpack_from("<I", data, payload + 12)[0]
    start, length = loc & 0xFFFF, loc >> 16
    data[payload + start:payload + start + length - 1] = b"\xff" * (length - 1)
    bad = tmp_path / "name.dat"
    bad.write_bytes(bytes(data))
    out = run_zlperf(["report", str(bad), "--json"])
    assert assert_handled(out) == "partial"
    assert sorted(z["label"] for z in json.loads(out.stdout)["zones"]) == ["0:Normal", "1:Normal"]


def test_impossible_durations_are_said_not_printed_as_facts(tmp_path, locked_payloads):
    """A wait_ns of 2^62 in one record: the report warns that waits add up to more CPUs than exist."""
    data = bytearray(FULL_V6_DAT.read_bytes())
    for payload in locked_payloads:
        if data[payload + 20]:  # a contended acquisition
            struct.pack_into("<Q", data, payload + 32, 2 ** 62)
            break
    bad = tmp_path / "wait.dat"
    bad.write_bytes(bytes(data))
    out = run_zlperf(["report", str(bad)])
    assert assert_handled(out) == "partial"
    assert "wait times are suspect" in out.stderr
