"""The lab's live task (lab/lab_live.py, lab/guest/peers.py --live): zlperf top and zlperf exporter as peers.

Parsing is checked on text in the formats zlperf top and the exporter print; the installed fixture of a real
live run (tests/data/lab/live*) is re-counted by today's zlperf and checked against the stored peers.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from conftest import DATA, REPO, have_tool

sys.path.insert(0, str(REPO / "lab"))
import lab_live  # noqa: E402
import lab_peers  # noqa: E402

LAB_DATA = DATA / "lab"

# Two blocks of `zlperf top --plain` (zlperf/live/screen.py), the second cut from a lab run.
TOP = """zlperf top  17:36:09  interval 1  1.02s  none (mono clock)  0 events/s  lost 0

ZONE  (no zone-lock events this interval)

CALLER  (none)

zlperf top  17:36:52  interval 32  12.29s  hold-time (mono clock)  73 events/s  lost 2 events

ZONE      CONT/s  ACQ/s  CONT%  WAITS  WAIT p50     p99     max  HOLD p99
0:Normal     0.7   26.3   2.79      9    3.54ms  27.6ms  27.6ms     7.3ms
1:Normal     0.0    9.8   0.00      0         -       -       -    3.19ms

CALLER                   ZONE      CONT/s  ACQ/s  CONT%  WAITS  WAIT p50     p99     max  HOLD p99
free_one_page+0x49       0:Normal     0.4   11.3   3.60      5    5.39ms  27.6ms  27.6ms    10.2ms

HOLDER                   WAITS     %  WAIT avg
free_one_page+0x49           5  55.6    12.3ms
(not traced)                 3  33.3    1.35ms
3 of 9 waits behind a holder without tracepoints (not traced); 0 handed off by a holder that had waited itself

"""

# One scrape of `zlperf exporter` (zlperf/live/exporter.py), trimmed to a few buckets.
PROM = """# HELP zlperf_zone_lock_contended_events_total Contended zone->lock acquisitions traced.
# TYPE zlperf_zone_lock_contended_events_total counter
zlperf_zone_lock_contended_events_total{zone="0:Normal"} 3.0
zlperf_zone_lock_contended_events_total{zone="1:Normal"} 0.0
zlperf_zone_lock_acquisitions_total{zone="0:Normal"} 50.0
zlperf_zone_lock_acquisitions_total{zone="1:Normal"} 7.0
zlperf_zone_lock_wait_seconds_bucket{caller="a+0x1",le="6.5536e-05",zone="0:Normal"} 0.0
zlperf_zone_lock_wait_seconds_bucket{caller="a+0x1",le="0.000131072",zone="0:Normal"} 2.0
zlperf_zone_lock_wait_seconds_bucket{caller="a+0x1",le="0.000262144",zone="0:Normal"} 2.0
zlperf_zone_lock_wait_seconds_bucket{caller="a+0x1",le="+Inf",zone="0:Normal"} 2.0
zlperf_zone_lock_wait_seconds_count{caller="a+0x1",zone="0:Normal"} 2.0
zlperf_zone_lock_wait_seconds_sum{caller="a+0x1",zone="0:Normal"} 0.0002
zlperf_zone_lock_wait_seconds_bucket{caller="other",le="0.016777216",zone="0:Normal"} 0.0
zlperf_zone_lock_wait_seconds_bucket{caller="other",le="0.033554432",zone="0:Normal"} 1.0
zlperf_zone_lock_wait_seconds_bucket{caller="other",le="+Inf",zone="0:Normal"} 1.0
zlperf_zone_lock_wait_seconds_count{caller="other",zone="0:Normal"} 1.0
zlperf_zone_lock_hold_seconds_count{zone="0:Normal"} 49.0
zlperf_zone_lock_hold_seconds_count{zone="1:Normal"} 7.0
zlperf_events_lost_total 0.0
"""


def test_top_blocks_give_waits_per_zone_and_holder_lines(tmp_path):
    (tmp_path / "top.txt").write_text(TOP)
    rows, blocks, notes = lab_live.top_counts(tmp_path / "top.txt")
    assert blocks == 2
    # WAITS is exact; the caller table (same zone label) and the HOLDER rows are not counted twice
    assert rows == {("mm_zone_locked contended=1", "0:Normal"): 9, ("mm_zone_locked contended=1", "1:Normal"): 0,
                    ("holders: waits", "all"): 9, ("holders: not traced", "all"): 3,
                    ("holders: handed off", "all"): 0}
    assert notes == ["zlperf top: interval 2 lost 2 events"]
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(lab_live.LivePeerError, match="no interval blocks"):
        lab_live.top_counts(tmp_path / "empty.txt")


def test_exporter_scrape_gives_the_peer_rows(tmp_path):
    (tmp_path / "e.prom").write_text(PROM)
    rows, notes = lab_live.exporter_counts(tmp_path / "e.prom")
    assert notes == []
    # le=2^17 ns holds (2^16, 2^17]: the table's [64K, 128K); cumulative counts are differenced per series
    assert rows == {
        ("mm_zone_lock_contended", "0:Normal"): 3, ("mm_zone_lock_contended", "1:Normal"): 0,
        ("mm_zone_locked contended=1", "0:Normal"): 3, ("holders: waits", "all"): 3,
        ("mm_zone_locked contended=0", "0:Normal"): 47, ("mm_zone_locked contended=0", "1:Normal"): 7,
        ("mm_zone_lock_unlock", "0:Normal"): 49, ("mm_zone_lock_unlock", "1:Normal"): 7,
        ("wait_ns", "[64K, 128K)"): 2, ("wait_ns", "[16M, 32M)"): 1,
    }
    assert lab_live.power_of_two_waits([65536, 65537, 0, 3, 4]) == 2


def _guest_peers():
    spec = importlib.util.spec_from_file_location("guest_peers", REPO / "lab" / "guest" / "peers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_live_hist_triggers_filter_on_the_workloads_comm():
    peers = _guest_peers()
    plain, only = peers.hist_triggers(50_000_000), peers.hist_triggers(50_000_000, "zl-workload")
    for ev in plain:
        for a, b in zip(plain[ev], only[ev]):
            assert b.startswith(a) and b.endswith('comm == "zl-workload"') and ":clock=mono" in b
    # the host still reads the contended split of each trigger
    assert [c.split(" if ")[1] for c in only["mm_zone_locked"][:2]] == [
        'contended == 0 && comm == "zl-workload"', 'contended == 1 && comm == "zl-workload"']


@pytest.mark.skipif(not (LAB_DATA / "live.json").exists(), reason="no live lab fixture installed")
def test_live_fixture_zlperf_still_equals_top_exporter_and_the_peers():
    """A real live run (the workload's tasks only): today's zlperf report of its recording, and today's parsing
    of its zlperf top and exporter output, still give what bpftrace and the hist triggers counted."""
    table = json.loads((LAB_DATA / "live.json").read_text())
    assert table["ok"] and table["window_ns"] is None and "zlperf exporter" in table["peers"]
    whole = lab_peers.Window.whole_run()
    zl, _, _ = lab_peers.zlperf_counts(LAB_DATA / "live-hold-time.dat", whole, lab_peers.PROFILE_EVENTS["hold-time"])
    top, _, _ = lab_live.top_counts(LAB_DATA / "live-top.txt")
    exp, _ = lab_live.exporter_counts(LAB_DATA / "live-exporter.prom")
    compared = 0
    for row in table["rows"]:
        key = (row["row"], row["label"])
        for peer, mine in (("zlperf", zl), ("zlperf top", top), ("zlperf exporter", exp)):
            if row[peer] is not None:
                assert mine.get(key, 0) == row[peer], (key, peer)
        for peer in ("bpftrace", "hist trigger", "trace-cmd"):
            if row[peer] is not None:
                assert zl.get(key, 0) == row[peer], (key, peer)
                compared += 1
    assert compared > 20
    if have_tool("trace-cmd"):  # the recording holds only the workload's tasks, as its filters said
        events, _ = lab_peers.parse_trace_cmd(LAB_DATA / "live-hold-time.dat")
        assert lab_peers.trace_cmd_counts(events, whole) == {k: v for k, v in zl.items()
                                                              if v or k[0].startswith("holders")}


def test_borderline_waits_are_those_a_few_microseconds_can_flip():
    E = lab_peers.Event
    U, L = lab_peers.UNLOCK, lab_peers.LOCKED
    events = [
        E(1_000_000, 0, U, "0:Normal"),  # 5 us before wait A began (at 1_005_000): not traced, but borderline
        E(1_100_000, 1, L, "0:Normal", contended=True, wait=95_000),  # wait A
        E(2_000_000, 0, U, "0:Normal"),  # well inside wait B: its holder, far from both edges
        E(2_100_000, 1, L, "0:Normal", contended=True, wait=500_000),  # wait B
        E(3_095_000, 1, U, "0:Normal"),  # same CPU as wait C: never its holder, so no flip
        E(3_100_000, 1, L, "0:Normal", contended=True, wait=100_000),  # wait C
    ]
    assert lab_live.borderline_waits(events, slack_ns=20_000) == 1
    assert lab_live.borderline_waits(events, slack_ns=1_000) == 0
