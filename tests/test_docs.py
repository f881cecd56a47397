"""docs/report_example.txt and README's sample are what the code prints, and every document key is explained.

Run with ZLPERF_UPDATE_DOCS=1 to rewrite the example output in both files after a deliberate change.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "report_example.txt"
README = REPO / "README.md"
EXAMPLE_ARGS = ["report", "--example", "--top", "5"]
BEGIN, END = "--- output: zlperf report --example --top 5 ---", "--- end of output ---"
README_BEGIN, README_END = "<!-- report_example: begin -->", "<!-- report_example: end -->"
UPDATE = os.environ.get("ZLPERF_UPDATE_DOCS") == "1"


def zlperf(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "zlperf", *args], capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout


def example_output() -> str:
    """`zlperf report --example --top 5`, with the checkout's path shown as the package-relative one."""
    from zlperf.commands.report import example_path

    return zlperf(*EXAMPLE_ARGS).replace(str(example_path()), "zlperf/data/full.dat")


def _between(text: str, begin: str, end: str) -> tuple[int, int]:
    i = text.index(begin) + len(begin)
    return i, text.index(end, i)


def _check_block(path: Path, begin: str, end: str, block: str) -> None:
    text = path.read_text()
    i, j = _between(text, begin, end)
    if UPDATE:
        path.write_text(text[:i] + block + text[j:])
        return
    assert text[i:j] == block, (f"{path.name} no longer shows what `zlperf {' '.join(EXAMPLE_ARGS)}` prints; "
                                "rerun with ZLPERF_UPDATE_DOCS=1 after checking the change")


def test_report_example_is_what_the_code_prints():
    _check_block(DOC, BEGIN, END, "\n" + example_output())


def test_readme_sample_is_what_the_code_prints():
    _check_block(README, README_BEGIN, README_END, "\n```\n" + example_output() + "```\n")


def _keys(value, out: set) -> set:
    if isinstance(value, dict):
        for k, v in value.items():
            if not re.fullmatch(r"[a-z_]+:[a-z_]+|\d+", k):  # event names and CPU numbers are data, not keys
                out.add(k)
            _keys(v, out)
    elif isinstance(value, list):
        for v in value:
            _keys(v, out)
    return out


def test_every_document_key_is_explained():
    docs = [json.loads(zlperf("report", "--example", "--json")),
            json.loads(zlperf("report", str(REPO / "tests" / "data" / "stock-threads.dat"), "--json"))]
    keys = set()
    for d in docs:
        _keys(d, keys)
    text = DOC.read_text()
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"document keys not explained in {DOC.name}: {missing}"


def test_merged_document_keys_are_explained(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(zlperf("report", "--example", "--json"))
    merged = json.loads(zlperf("merge", str(a), str(a)))
    text = DOC.read_text()
    missing = sorted(k for k in _keys(merged, set()) if f"`{k}`" not in text)
    assert not missing, f"merged document keys not explained in {DOC.name}: {missing}"
