"""Budgets and `zlperf check` on the real recordings, against tests/truth.py (`trace-cmd report` text, no zlperf
code): every budget passes just above the measured value and fails just below it, overall, per zone and per
caller; what a recording cannot show is an error; the JUnit file is what a JUnit reader expects."""

from __future__ import annotations

import json
import math
import re
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import truth
from conftest import FULL_DAT, FULL_V6_DAT, MINIMAL_DAT, REPO, WAIT_DAT, requires_trace_cmd
from zlperf.analysis import AnalysisOptions, analyze
from zlperf.check import check_document, exit_status, junit_xml
from zlperf.errors import RecipeError
from zlperf.readers import open_trace
from zlperf.recipes import METRICS, budget_list, load_recipe, validate_file
from zlperf.report import build_document

pytestmark = requires_trace_cmd
FIXTURES = [FULL_V6_DAT, WAIT_DAT, FULL_DAT]


def zlperf(*args, cwd=None):
    """This checkout's zlperf in a subprocess."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "zlperf", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def document(path) -> dict:
    with open_trace(str(path)) as reader:
        return build_document(analyze(reader, AnalysisOptions()))


def nudge(value, up: bool):
    """Just above / just below ``value``: 1 ns (or count) for whole numbers, a relative 1e-9 for shares and rates."""
    if isinstance(value, int):
        return value + 1 if up else value - 1
    return value * (1 + 1e-9) if up else value * (1 - 1e-9)


def write_recipe(path: Path, budgets: dict, extends: str = "hold-time") -> Path:
    path.write_text(yaml.safe_dump({"extends": extends, "budgets": budgets}, sort_keys=False))
    return path


def truth_budgets(metrics: dict, up: bool) -> tuple[dict, dict]:
    """(budgets just above/below every value the truth has, {(scope, label, metric): truth value})."""
    budgets: dict = {}
    want: dict = {}

    def put(target: dict, scope: str, label: str, values: dict) -> None:
        for metric, v in values.items():
            if v is None or (not up and v == 0):
                continue  # the recording cannot tell (checked apart) / nothing is below 0
            target[metric] = nudge(v, up)
            want[(scope, label, metric)] = v

    put(budgets, "total", "", metrics["overall"])
    for scope in ("zones", "callers"):
        budgets[scope] = {}
        for label, values in metrics[scope].items():
            budgets[scope][label] = {}
            put(budgets[scope][label], scope, label, values)
            if scope == "zones":  # not_traced_share has no per-zone value in the report
                budgets[scope][label].pop("not_traced_share", None)
                want.pop((scope, label, "not_traced_share"), None)
    return budgets, want


@pytest.fixture(scope="module", params=FIXTURES, ids=lambda p: p.name)
def measured(request):
    """(fixture, zlperf's document, truth's budget metrics)."""
    return request.param, document(request.param), truth.budget_metrics(request.param)


def _label(o) -> tuple:
    return (o.budget.scope, o.group.split(" ", 1)[1] if o.budget.scope != "total" else "", o.budget.metric)


def test_budgets_pass_just_above_and_fail_just_below(measured, tmp_path):
    path, doc, metrics = measured
    for up in (True, False):
        budgets, want = truth_budgets(metrics, up)
        recipe_file = write_recipe(tmp_path / f"{'above' if up else 'below'}.yaml", budgets)
        recipe = load_recipe(recipe_file)
        outcomes = check_document(doc, recipe)
        got = {_label(o): o for o in outcomes}
        assert set(got) == set(want), set(got) ^ set(want)
        for key, value in want.items():
            o = got[key]
            assert o.status == ("within" if up else "over"), o.line
            assert o.measured == pytest.approx(value, rel=1e-12, abs=0), key  # the truth, not zlperf's number
        # Every group kind is covered: overall, per zone and per caller.
        assert {k[0] for k in want} == {"total", "zones", "callers"}
        # The command line agrees: exit status, one line per violation, file:line:column of each budget.
        res = zlperf("check", path, "--recipe", recipe_file)
        over = [ln for ln in res.stdout.splitlines() if ln.startswith("over budget: ")]
        assert res.returncode == (0 if up else 1), res.stderr
        assert len(over) == (0 if up else len(want))
        assert "Traceback" not in res.stderr
        for ln in over:
            assert f"({recipe_file}:" in ln and " > budget " in ln and ": measured " in ln


def test_equal_to_the_budget_is_within(tmp_path):
    metrics = truth.budget_metrics(FULL_DAT)
    o = metrics["overall"]
    r = load_recipe(write_recipe(tmp_path / "eq.yaml", {"wait_ns.p99": o["wait_ns.p99"],
                                                        "contention_ratio": o["contention_ratio"]}))
    outcomes = check_document(document(FULL_DAT), r)
    assert [x.status for x in outcomes] == ["within", "within"] and exit_status(outcomes) == 0


def test_a_report_document_checks_like_the_recording(tmp_path):
    doc_file = tmp_path / "full.json"
    res = zlperf("report", FULL_DAT, "--json")
    doc_file.write_text(res.stdout)
    budgets, want = truth_budgets(truth.budget_metrics(FULL_DAT), up=False)
    recipe_file = write_recipe(tmp_path / "below.yaml", budgets)
    a, b = zlperf("check", FULL_DAT, "--recipe", recipe_file), zlperf("check", doc_file, "--recipe", recipe_file)
    assert a.returncode == b.returncode == 1
    strip = lambda out: [ln for ln in out.splitlines() if ln.startswith("over budget")]  # noqa: E731
    assert strip(a.stdout) == strip(b.stdout) and len(strip(a.stdout)) == len(want)


@pytest.mark.parametrize("path,budgets,cannot", [
    (WAIT_DAT, {"hold_ns.p99": 100000, "wait_ns.p99": 10**12}, ["hold_ns.p99"]),
    (WAIT_DAT, {"not_traced_share": 0.5, "zones": {"*": {"hold_ns.max": "1s"}}}, ["not_traced_share", "hold_ns.max"]),
    (MINIMAL_DAT, {"contended_per_sec": 10**9, "wait_ns.p99": "1s", "contention_ratio": 1}, ["wait_ns.p99",
                                                                                         "contention_ratio"]),
], ids=["hold-on-wait", "holders-on-wait", "waits-on-minimal"])
def test_a_budget_the_recording_cannot_show_is_an_error_not_a_pass(path, budgets, cannot, tmp_path):
    recipe_file = write_recipe(tmp_path / "r.yaml", budgets)
    res = zlperf("check", path, "--recipe", recipe_file, "--junit", tmp_path / "j.xml")
    assert res.returncode == 2, res.stdout + res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("zlperf: cannot check ")]
    assert {ln.split()[3].rstrip(",") for ln in errors} == set(cannot)
    assert all(f"({recipe_file}:" in ln and "cannot show" in ln for ln in errors)
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert int(suite.get("errors")) == len(errors) == len(suite.findall("testcase/error"))


def test_star_covers_the_zones_and_callers_not_named(tmp_path):
    metrics = truth.budget_metrics(FULL_DAT)
    zones = sorted(metrics["zones"])
    first = zones[0]
    budgets = {"zones": {"*": {"hold_ns.p99": 10**12}, first: {"hold_ns.p99": metrics["zones"][first]["hold_ns.p99"] - 1}},
               "callers": {"free_one_page": {"wait_ns.max": "1s"}, "*": {"contended_per_sec": 0}}}
    outcomes = check_document(document(FULL_DAT), load_recipe(write_recipe(tmp_path / "s.yaml", budgets)))
    by = {(o.budget.selector, o.group): o for o in outcomes}
    # The named zone overrides '*' for its metric; the others get '*'.
    assert by[(first, f"zone {first}")].status == "over"
    assert [g for s, g in by if s == "*" and g.startswith("zone")] == [f"zone {z}" for z in zones[1:]]
    # A function name matches every offset of it; '*' reaches every caller that locks.
    fop = [o for o in outcomes if o.budget.selector == "free_one_page"]
    assert [o.group for o in fop] == ["caller free_one_page+0x4e"] and fop[0].status == "within"
    star = {o.group for o in outcomes if o.budget.selector == "*" and o.budget.scope == "callers"}
    assert star == {f"caller {c}" for c, m in metrics["callers"].items() if m["contended_events"] is not None}
    assert all(o.status == "over" for o in outcomes if o.budget.metric == "contended_per_sec" and o.measured > 0)


def test_a_named_zone_or_caller_missing_from_the_recording_is_an_error(tmp_path):
    budgets = {"zones": {"7:Movable": {"wait_ns.p99": "1s"}}, "callers": {"no_such_function": {"wait_ns.p99": "1s"}}}
    res = zlperf("check", FULL_DAT, "--recipe", write_recipe(tmp_path / "m.yaml", budgets))
    assert res.returncode == 2
    assert "no zone '7:Movable' in this recording (zones: 0:Normal, 1:Normal)" in res.stderr
    assert "no caller 'no_such_function'" in res.stderr


def test_a_recipe_without_budgets_is_an_error(tmp_path):
    res = zlperf("check", FULL_DAT, "--profile", "hold-time")
    assert res.returncode == 2 and "has no budgets" in res.stderr and len(res.stderr.splitlines()) == 1


def test_junit_file_has_one_testcase_per_budget_and_group(tmp_path):
    budgets, want = truth_budgets(truth.budget_metrics(FULL_DAT), up=False)
    budgets["missed_events"] = 0  # within
    recipe_file = write_recipe(tmp_path / "j.yaml", budgets)
    out = tmp_path / "out.xml"
    res = zlperf("check", FULL_DAT, "--recipe", recipe_file, "--junit", out)
    assert res.returncode == 1
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    cases = suite.findall("testcase")
    assert int(root.get("tests")) == int(suite.get("tests")) == len(cases) == len(want) + 1
    assert int(suite.get("failures")) == len(want) == len(suite.findall("testcase/failure"))
    assert int(suite.get("errors")) == 0 and int(suite.get("skipped")) == 0
    assert len({(c.get("classname"), c.get("name")) for c in cases}) == len(cases)  # unique
    for c in cases:
        assert c.get("name") and c.get("classname").startswith("zlperf.check.j.") and float(c.get("time")) >= 0
        assert c.get("file") == str(recipe_file) and int(c.get("line")) > 0
        failure = c.find("failure")
        if failure is not None:
            assert failure.get("type") == "OverBudget" and failure.get("message").startswith("over budget: ")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["input"] == str(FULL_DAT) and props["recipe"] == "j"


def test_junit_of_hostile_names_is_valid_xml(tmp_path):
    doc = document(FULL_DAT)
    doc["zones"][0]["label"] = "0:\x1b[2J\x00\ud800<&>\"Normal"
    budgets = {"zones": {"*": {"hold_ns.p99": 1}}}
    outcomes = check_document(doc, load_recipe(write_recipe(tmp_path / "h.yaml", budgets)))
    text = junit_xml(outcomes, suite="h\x07", properties={"k\x01": "v\x02"})
    root = ET.fromstring(text.encode("utf-8"))
    names = [c.get("name") for c in root.iter("testcase")]
    assert any("\\x1b[2J\\x00\\xd800<&>\"Normal" in n for n in names), names


def test_budgets_merge_through_extends(tmp_path):
    base = write_recipe(tmp_path / "base.yaml", {"wait_ns.p99": "50us", "contention_ratio": "2%",
                                                 "zones": {"*": {"hold_ns.p99": "100us"}, "1:Normal": {"hold_ns.max": "1ms"}}})
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nbudgets:\n  wait_ns.p99: 80us\n  contention_ratio: null\n"
                     "  zones:\n    '1:Normal': null\n    '*': {hold_ns.max: 2ms}\n")
    r = load_recipe(child)
    assert r.budgets == {"total": {"wait_ns.p99": 80000}, "zones": {"*": {"hold_ns.p99": 100000, "hold_ns.max": 2000000}}}
    marks = {b.key: b.mark for b in budget_list(r)}
    assert marks["budgets.wait_ns.p99"] == (str(child), 3, 16)
    assert marks["budgets.zones.*.hold_ns.p99"][0] == str(base)
    # `recipes show --resolved` prints a recipe that loads to the same budgets.
    shown = zlperf("recipes", "show", child, "--resolved")
    copy = tmp_path / "flat.yaml"
    copy.write_text(shown.stdout)
    assert load_recipe(copy).budgets == r.budgets


def test_limits_in_units(tmp_path):
    r = load_recipe(write_recipe(tmp_path / "u.yaml", {"wait_ns.p99": "1.5ms", "hold_ns.max": "2 s",
                                                       "hold_ns.p50": "700ns", "not_traced_share": "30%",
                                                       "contention_ratio": 0.02}))
    assert r.budgets["total"] == {"wait_ns.p99": 1500000, "hold_ns.max": 2000000000, "hold_ns.p50": 700,
                                  "not_traced_share": 0.3, "contention_ratio": 0.02}


@pytest.mark.parametrize("budgets,problem", [
    ({"wait_ns.p98": 1}, "unknown metric (did you mean 'wait_ns.p99'?)"),
    ({"contention_ratio": 2}, "a share is from 0 to 1"),
    ({"zones": {"*": {"not_traced_share": 0.1}}}, "measured overall and per caller only"),
    ({"wait_ns.p99": "fast"}, "must be a number of nanoseconds"),
    ({"wait_ns.p99": True}, "must be a number"),
    ({"wait_ns.p99": float("inf")}, "is not a limit"),
    ({"wait_ns.p99": 10**30}, "larger than any measured value"),
    ({"zones": ["1:Normal"]}, "must be a mapping of zone name"),
    ({"zones": {"1:Normal": 5}}, "must be a mapping of METRIC: LIMIT"),
    ({"zones": {"wait_ns.p99": 5}}, "name the zone first, e.g. zones: {'*': {wait_ns.p99: ...}}"),
    ({"zones": {"a b": {"wait_ns.p99": 1}}}, "is not a zone name"),
    ({"callers": {"\x1b[2J": {"wait_ns.p99": 1}}}, "is not a caller name"),
    ({f"wait_ns.p{i}": 1 for i in range(3)}, "unknown metric"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_bad_budgets_are_one_line_each_with_their_place(budgets, problem, tmp_path):
    path = write_recipe(tmp_path / "bad.yaml", budgets)
    errors, _ = validate_file(path)
    hits = [e for e in errors if problem in e]
    assert hits, errors
    for e in errors:
        assert e.startswith(f"{path}:") and "\n" not in e and "\x1b" not in e
    with pytest.raises(RecipeError):
        load_recipe(path)


_metric_keys = st.sampled_from(sorted(METRICS) + ["zones", "callers", "*", "1:Normal", "free_one_page"])
_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                  st.sampled_from(["50us", "2%", "1 s", "-1ms", "1e400", "nan%"]))
_budget_values = st.recursive(_leaf, lambda kids: st.dictionaries(st.one_of(_metric_keys, st.text(max_size=8)), kids,
                                                                  max_size=4), max_leaves=20)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budgets=st.dictionaries(_metric_keys, _budget_values, max_size=6))
def test_fuzz_budgets_give_problems_or_budgets_never_a_traceback(budgets, tmp_path):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump({"extends": "hold-time", "budgets": budgets}, allow_unicode=True))
    errors, warnings = validate_file(path)
    for line in [*errors, *warnings]:
        assert line.startswith(f"{path}:") and "\n" not in line, line
    if not errors:
        for b in budget_list(load_recipe(path)):
            assert b.metric in METRICS and 0 <= b.limit < 2**63 and b.scope in ("total", "zones", "callers")


def test_too_many_budgets_is_one_error(tmp_path):
    callers = {f"fn_{i}": {"wait_ns.p99": 1} for i in range(1100)}
    errors, _ = validate_file(write_recipe(tmp_path / "many.yaml", {"callers": callers}))
    assert len(errors) == 1 and "more than 1000 budgets" in errors[0]


def test_record_dry_run_names_the_check_it_will_run(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", {"wait_ns.p99": "1ms"}, extends="stock")
    res = zlperf("record", "--recipe", recipe, "--dry-run", "-o", tmp_path / "o.dat", "--", "true")
    if res.returncode != 0:
        pytest.skip("record --dry-run cannot run here: " + res.stderr.strip()[-200:])
    assert f"# then: zlperf check {tmp_path / 'o.dat'} --recipe {recipe}" in res.stdout
    assert not (tmp_path / "o.dat").exists()


def test_report_takes_its_defaults_from_the_recipe(tmp_path):
    recipe = tmp_path / "d.yaml"
    recipe.write_text("extends: hold-time\nreport: {by: 'zone,holder', top: 1, zone: '1:Normal'}\n")
    res = zlperf("report", FULL_DAT, "--recipe", recipe)
    assert res.returncode == 0
    assert "== by holder" in res.stdout and "== by caller" not in res.stdout and "zone 1:Normal" in res.stdout
    assert "== worst 1 waits" in res.stdout
    given = zlperf("report", FULL_DAT, "--recipe", recipe, "--by", "caller", "--top", "2")
    assert "== by caller" in given.stdout and "== by holder" not in given.stdout and "== worst 2 waits" in given.stdout


def test_measured_values_are_the_truth_not_rounded(tmp_path):
    """The numbers a violation line prints are exact for nanoseconds (the p99 of trace-cmd's own text)."""
    m = truth.budget_metrics(FULL_V6_DAT)["overall"]
    res = zlperf("check", FULL_V6_DAT, "--recipe", write_recipe(tmp_path / "x.yaml", {"wait_ns.p99": 1}))
    assert f"measured {m['wait_ns.p99']} ns" in res.stdout and res.returncode == 1
    assert math.isfinite(m["contended_per_sec"])
    assert json.loads(zlperf("report", FULL_V6_DAT, "--json").stdout)["totals"]["wait_ns"]["p99"] == m["wait_ns.p99"]


_DOC = REPO / "docs" / "check_example.txt"
_BLOCK = re.compile(r"^--- output: zlperf (?P<args>[^\n]+) ---\n(?P<body>.*?)^--- end of output ---$", re.M | re.S)


def _doc_output(args: str) -> str:
    """What `zlperf ARGS` prints from the repository's top folder, stderr merged in order, and its exit status."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    res = subprocess.run([sys.executable, "-m", "zlperf", *args.split()], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env, timeout=300)
    return res.stdout + f"(exit status {res.returncode})\n"


def test_check_example_is_what_the_code_prints():
    text = _DOC.read_text()
    blocks = list(_BLOCK.finditer(text))
    assert len(blocks) == 3
    new, last = [], 0
    for m in blocks:
        body = _doc_output(m.group("args"))
        new += [text[last:m.start("body")], body]
        last = m.end("body")
        if not os.environ.get("ZLPERF_UPDATE_DOCS") == "1":
            assert m.group("body") == body, (f"docs/check_example.txt no longer shows what `zlperf {m.group('args')}` "
                                             "prints; rerun with ZLPERF_UPDATE_DOCS=1 after checking the change")
    if os.environ.get("ZLPERF_UPDATE_DOCS") == "1":
        _DOC.write_text("".join(new) + text[last:])
