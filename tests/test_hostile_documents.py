"""Hostile report documents and command lines for report/diff/merge: one line and a non-zero exit, never a
traceback, a hang or a runaway allocation. Damaged documents are generated from a real report."""

from __future__ import annotations

import copy
import json
import os
import pwd
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FULL_DAT, WAIT_DAT
from hostile import assert_handled, run_zlperf
from zlperf.errors import ZlperfError
from zlperf.report import build_document, merge_results, result_from_document


@pytest.fixture(scope="module")
def real_doc(tmp_path_factory) -> dict:
    out = run_zlperf(["report", str(FULL_DAT), "--json"])
    assert out.returncode == 0, out.describe()
    return json.loads(out.stdout)


def _write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    if isinstance(data, bytes):
        p.write_bytes(data)
    elif isinstance(data, str):
        p.write_text(data)
    else:
        p.write_text(json.dumps(data))
    return p


def _set(doc: dict, path: tuple, value) -> dict:
    d = copy.deepcopy(doc)
    target = d
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return d


# -- crafted documents -------------------------------------------------------------------------------

CRAFTED = {
    "null-zones": lambda d: _set(d, ("zones",), None),
    "zones-a-string": lambda d: _set(d, ("zones",), "zones"),
    "zone-entry-a-number": lambda d: _set(d, ("zones", 0), 7),
    "negative-count": lambda d: _set(d, ("totals", "contended_events"), -5),
    "huge-count": lambda d: _set(d, ("totals", "acquisitions"), 2 ** 80),
    "float-count": lambda d: _set(d, ("zones", 0, "acquisitions"), 1.5),
    "stats-not-object": lambda d: _set(d, ("zones", 0, "wait_ns"), [1, 2]),
    "hist-disagrees-with-count": lambda d: _set(d, ("totals", "hold_ns", "count"), 3),
    "hist-too-long": lambda d: _set(d, ("totals", "hold_ns", "hist_log2"), [0] * 100000),
    "slices-ragged": lambda d: _set(d, ("zones", 0, "slices", "waits"), [1]),
    "slices-nan": lambda d: _set(d, ("zones", 0, "slices", "waits"), [float("nan")] * 10),
    "bad-hex-address": lambda d: _set(d, ("callers", 0, "addr"), "0xZZ"),
    "address-too-wide": lambda d: _set(d, ("callers", 0, "addr"), "0x" + "f" * 40),
    "timeline-bins-object": lambda d: _set(d, ("timeline", "bins"), {"a": 1}),
    "events-value-string": lambda d: _set(d, ("events", "kmem:mm_zone_locked"), "many"),
    "can-show-not-bool": lambda d: _set(d, ("can_show", "holds"), "yes"),
    "source-missing": lambda d: {k: v for k, v in d.items() if k != "source"},
    "duration-negative": lambda d: _set(d, ("duration_ns",), -1),
    "worst-case-missing-field": lambda d: _set(d, ("top_waits", 0), {"wait_ns": 1}),
    "stack-frames-numbers": lambda d: _set(d, ("contended_stacks",), [{"count": 1, "frames": [1, 2]}]),
    "wrong-schema": lambda d: _set(d, ("schema",), "zlperf.report/9"),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_damaged_document_is_one_line(tmp_path, real_doc, name):
    bad = _write(tmp_path, f"{name}.json", CRAFTED[name](real_doc))
    good = _write(tmp_path, "good.json", real_doc)
    for args in (["merge", str(good), str(bad)], ["diff", str(good), str(bad)]):
        out = run_zlperf(args)
        assert assert_handled(out, allow_partial=False) == "error"
        assert str(bad) in out.stderr


RAW = {
    "deeply-nested-array": "[" * 200_000 + "]" * 200_000,
    "5000-digit-integer": '{"schema": "zlperf.report/1", "duration_ns": ' + "9" * 5000 + "}",
    "binary": bytes(range(256)) * 64,
    "nan-literal": '{"schema": "zlperf.report/1", "duration_ns": NaN}',
    "not-json": "{not json",
    "empty": "",
    "utf16": json.dumps({"schema": "zlperf.report/1"}).encode("utf-16"),
}


@pytest.mark.parametrize("name", sorted(RAW))
def test_raw_hostile_input_is_one_line(tmp_path, real_doc, name):
    bad = _write(tmp_path, f"{name}.json", RAW[name])
    out = run_zlperf(["merge", str(bad)])
    assert assert_handled(out, allow_partial=False) == "error"


def test_oversized_document_is_refused_before_parsing(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:  # 65 MiB of a list of zeros: past any report
        fh.write(b'{"schema": "zlperf.report/1", "pad": [')
        fh.write(b"0," * (33 << 20))
        fh.write(b"0]}")
    out = run_zlperf(["merge", str(big)])
    assert assert_handled(out, allow_partial=False) == "error"
    assert "larger than any" in out.stderr


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "fifo", "directory"])
def test_special_files_do_not_hang(tmp_path, special):
    if special == "fifo":
        path = tmp_path / "f.json"
        os.mkfifo(path)
    elif special == "directory":
        path = tmp_path
    else:
        path = Path(special)
    for args in (["merge", str(path)], ["diff", str(path), str(path)], ["report", str(path)]):
        out = run_zlperf(args, timeout=30)
        assert assert_handled(out, allow_partial=False) == "error", args


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as nobody")
def test_unreadable_file_as_nobody(tmp_path, real_doc):
    nobody = pwd.getpwnam("nobody")
    folder = tmp_path / "mine"
    folder.mkdir()
    os.chmod(tmp_path, 0o755)
    doc = _write(folder, "r.json", real_doc)
    os.chmod(doc, 0o600)  # root's, unreadable for nobody
    trace = folder / "t.dat"
    trace.write_bytes(FULL_DAT.read_bytes())
    os.chmod(trace, 0o600)

    def as_nobody() -> None:
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    repo = Path(__file__).resolve().parents[1]
    for args in (["merge", str(doc)], ["report", str(trace)], ["diff", str(trace), str(doc)]):
        res = subprocess.run(["python3", "-m", "zlperf", *args], capture_output=True, text=True, timeout=60,
                             preexec_fn=as_nobody, cwd="/", env=dict(os.environ, PYTHONPATH=str(repo), HOME="/"))
        if "No module named" in res.stderr:
            pytest.skip("the checkout is not readable by nobody")
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.count("\n") == 1 and "permission denied" in res.stderr.lower(), res.stderr


# -- command-line values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--since", "nan"], ["--since", "Infinity"], ["--since", "1e400"], ["--since", "-1"], ["--until", "abc"],
    ["--since", "22", "--until", "20"], ["--top", "-1"], ["--top", "x"], ["--by", "zone,nothing"],
    ["--zone", "9:Nowhere"], ["--kallsyms", "/dev/zero"], ["--kallsyms", "/nonexistent"],
])
def test_bad_report_options_are_one_line(args):
    out = run_zlperf(["report", str(WAIT_DAT), *args])
    assert out.returncode != 0 and "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    # One error line; argparse puts its usage lines before it.
    assert lines[-1].startswith("zlperf") and all(ln.startswith(("usage:", " ")) for ln in lines[:-1]), lines


def test_output_to_a_full_device_is_one_line():
    with open("/dev/full", "w") as full:
        for args in (["report", "--example"], ["report", "--example", "--json"]):
            res = subprocess.run(["python3", "-m", "zlperf", *args], stdout=full, stderr=subprocess.PIPE, text=True,
                                 timeout=60, env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
            assert res.returncode == 2 and res.stderr == "zlperf: cannot write to standard output " \
                                                         "(No space left on device)\n", res.stderr


def test_folded_output_refuses_a_planted_symlink(tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me")
    link = tmp_path / "stacks.folded"
    link.symlink_to(target)
    out = run_zlperf(["report", "--example", "--folded", str(link)])
    assert assert_handled(out, allow_partial=False) == "error" and "symbolic link" in out.stderr
    assert target.read_text() == "keep me"


# -- fuzzing the document reader ----------------------------------------------------------------------------

_VALUES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _paths(value, prefix=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


@pytest.fixture(scope="module")
def doc_paths(real_doc) -> list:
    return list(_paths(real_doc))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_documents_load_or_fail_with_one_line(real_doc, doc_paths, data):
    doc = real_doc
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(doc_paths))
        try:
            doc = _set(doc, path, data.draw(_VALUES))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed the container
    try:
        result = result_from_document(doc, "fuzzed.json", "h")
        merged = build_document(merge_results([result, result], ["h", "g"]))
        json.dumps(merged)
    except ZlperfError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzzed.json: ")
