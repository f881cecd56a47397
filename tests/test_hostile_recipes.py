"""Hostile recipes through the real CLI: each ends in one `zlperf: FILE:LINE:COL: problem` line, fast and small.

Every case is generated here (alias bombs, deep nesting, values of the wrong shape, huge numbers, YAML tags,
filter injection, long extends chains, recipes that are FIFOs or devices) and run as `zlperf recipes validate`
and `zlperf record --dry-run --recipe` in a child whose peak memory is measured (tests/hostile.py).
Hypothesis then throws random documents and filters at the loader in-process: never anything but problems.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path
from typing import Callable, Dict

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile import assert_handled, run_zlperf
from zlperf.recipes import KEYS, check_filter, known_format, validate_file
from zlperf.recipes.filters import max_filter_bytes
from zlperf.recipes.load import MAX_EXTENDS
from zlperf.recipes.yamldoc import MAX_DEPTH, MAX_VALUES

OK_EVENTS = "events: [lock:contention_begin, lock:contention_end]\n"


# ---------------------------------------------------------------------------------------------
# Generators: each writes one hostile recipe into a folder and returns its path


def billion_laughs(d: Path, levels: int = 9, fanout: int = 10) -> Path:
    """9 nested 10x aliases: 10^9 strings if every alias use is walked again."""
    lines = ['l0: &l0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fanout) + "]")
    p = d / "laughs.yaml"
    p.write_text("\n".join(lines) + f"\nevents: *l{levels}\n")
    return p


def laughs_in_events(d: Path, levels: int = 9) -> Path:
    """The bomb inside one known key: each item of events is ten of the one before."""
    items = ["&l0 [" + ", ".join(["lol"] * 10) + "]"]
    items += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels)]
    p = d / "laughs-events.yaml"
    p.write_text("events: [" + ", ".join(items) + "]\n")
    return p


def recursive_alias(d: Path) -> Path:
    p = d / "recursive.yaml"
    p.write_text("events: &x [lock:contention_begin, *x]\n")
    return p


def deep_lists(d: Path, depth: int = 5000) -> Path:
    p = d / "deep-lists.yaml"
    p.write_text("events: " + "[" * depth + "]" * depth + "\n")
    return p


def deep_mappings(d: Path, depth: int = 3000) -> Path:
    p = d / "deep-maps.yaml"
    p.write_text(OK_EVENTS + "backend_options: " + "{a: " * depth + "1" + "}" * depth + "\n")
    return p


def _shape(name: str, body: str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = d / f"{name}.yaml"
        p.write_text(body)
        return p
    make.__name__ = name
    return make


WRONG_SHAPES = [
    _shape("mapping-in-events", "events:\n  - {a: b}\n  - lock:contention_begin\n"),
    _shape("list-in-events", "events: [[lock:contention_begin]]\n"),
    _shape("events-mapping", "events: {lock:contention_begin: 1}\n"),
    _shape("filters-list", OK_EVENTS + "filters: [a, b]\n"),
    _shape("filter-mapping", OK_EVENTS + "filters: {lock:contention_begin: {a: 1}}\n"),
    _shape("frames-mapping", OK_EVENTS + "zone_lock_frames: [{a: 1}]\n"),
    _shape("backend-options-list", OK_EVENTS + "backend_options: {perf: [1, 2]}\n"),
    _shape("option-mapping", OK_EVENTS + "backend_options: {perf: {mmap_pages: {a: 1}}}\n"),
    _shape("description-mapping", OK_EVENTS + "description: {a: b}\n"),
    _shape("extends-list", "extends: [stock]\n"),
    _shape("key-list", OK_EVENTS + "? [a, b]\n: c\n"),
    _shape("key-null", OK_EVENTS + "~: 1\n"),
    _shape("top-list", "- events\n- lock:contention_begin\n"),
    _shape("top-scalar", "just text\n"),
    _shape("only-comment", "# nothing\n"),
]

HUGE_NUMBERS = [
    _shape("buffer-5000-digits", OK_EVENTS + "buffer_size_kb: " + "9" * 5000 + "\n"),
    _shape("buffer-1e30", OK_EVENTS + "buffer_size_kb: " + str(10 ** 30) + "\n"),
    _shape("duration-inf", OK_EVENTS + "duration: .inf\n"),
    _shape("duration-nan", OK_EVENTS + "duration: .nan\n"),
    _shape("duration-1e400", OK_EVENTS + "duration: 1e400\n"),
    _shape("duration-negative", OK_EVENTS + "duration: -.inf\n"),
    _shape("mmap-pages-2-80", OK_EVENTS + f"backend_options: {{perf: {{mmap_pages: {2 ** 80}}}}}\n"),
    _shape("file-version-huge", OK_EVENTS + f"backend_options: {{trace-cmd: {{file_version: {10 ** 50}}}}}\n"),
    _shape("hex-huge", OK_EVENTS + "buffer_size_kb: 0x" + "f" * 4000 + "\n"),
]

TAGS = [
    _shape("python-apply", OK_EVENTS + "description: !!python/object/apply:os.system ['touch /tmp/zlperf-pwned']\n"),
    _shape("python-name", OK_EVENTS + "description: !!python/name:os.system\n"),
    _shape("binary", OK_EVENTS + "description: !!binary aGVsbG8=\n"),
    _shape("set", "events: !!set {lock:contention_begin}\n"),
    _shape("omap", "events: !!omap [a: 1]\n"),
    _shape("timestamp", OK_EVENTS + "duration: 2001-12-14t21:59:43.10-05:00\n"),
    _shape("custom-tag", OK_EVENTS + "clock: !local local\n"),
    _shape("merge-key", "base: &b {stacks: true}\n<<: *b\n" + OK_EVENTS),
]

FILTERS = [
    _shape("filter-5000-parens", OK_EVENTS + "filters:\n  lock:contention_begin: '"
           + "(" * 5000 + "flags == 1" + ")" * 5000 + "'\n"),
    _shape("filter-5000-nots", OK_EVENTS + "filters:\n  lock:contention_begin: '" + "!" * 5000 + "flags == 1'\n"),
    _shape("filter-3000-nots-bad", OK_EVENTS + "filters:\n  lock:contention_begin: '" + "!" * 3000 + "flags ~ 1'\n"),
    _shape("filter-unbalanced", OK_EVENTS + "filters:\n  lock:contention_begin: '" + "(" * 1500 + "flags == 1'\n"),
    _shape("filter-newline", OK_EVENTS + 'filters:\n  lock:contention_begin: "flags == 1\\nenable"\n'),
    _shape("filter-shell", OK_EVENTS + "filters:\n  lock:contention_begin: 'flags == 1; rm -rf /tmp/x'\n"),
    _shape("filter-nul", OK_EVENTS + 'filters:\n  lock:contention_begin: "flags == 1\\0"\n'),
    _shape("filter-long", OK_EVENTS + "filters:\n  lock:contention_begin: '"
           + " || ".join(["flags == 1"] * 2000) + "'\n"),
]


def extends_chain(d: Path, length: int = 1500) -> Path:
    for i in range(length):
        body = f"extends: ./c{i + 1}.yaml\n" if i < length - 1 else OK_EVENTS
        (d / f"c{i}.yaml").write_text(body)
    return d / "c0.yaml"


def extends_cycle(d: Path) -> Path:
    (d / "a.yaml").write_text("extends: ./b.yaml\n")
    (d / "b.yaml").write_text("extends: ./a.yaml\n")
    return d / "a.yaml"


def fifo(d: Path) -> Path:
    p = d / "fifo.yaml"
    os.mkfifo(p)
    return p


def dev_zero(d: Path) -> Path:
    return Path("/dev/zero")


def link_to_dev_zero(d: Path) -> Path:
    p = d / "zero.yaml"
    p.symlink_to("/dev/zero")
    return p


def directory(d: Path) -> Path:
    p = d / "dir.yaml"
    p.mkdir()
    return p


def two_megabytes(d: Path) -> Path:
    p = d / "big.yaml"
    with open(p, "w") as fh:
        fh.write(OK_EVENTS)
        fh.write("description: '" + "x" * (2 << 20) + "'\n")
    return p


def binary_garbage(d: Path) -> Path:
    p = d / "garbage.yaml"
    p.write_bytes(bytes(range(256)) * 64)
    return p


def latin1(d: Path) -> Path:
    p = d / "latin1.yaml"
    p.write_bytes(OK_EVENTS.encode() + "description: caf\xe9\n".encode("latin-1"))
    return p


CASES: Dict[str, Callable[[Path], Path]] = {
    f.__name__: f
    for f in [billion_laughs, laughs_in_events, recursive_alias, deep_lists, deep_mappings, *WRONG_SHAPES,
              *HUGE_NUMBERS, *TAGS, *FILTERS, extends_chain, extends_cycle, fifo, dev_zero, link_to_dev_zero,
              directory, two_megabytes, binary_garbage, latin1]
}


# ---------------------------------------------------------------------------------------------
# Through the CLI


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_recipe_is_one_line_through_validate(name, tmp_path):
    path = CASES[name](tmp_path)
    o = run_zlperf(["recipes", "validate", path], timeout=60, cwd=str(tmp_path))
    assert assert_handled(o, allow_partial=False) == "error"
    line = [ln for ln in o.stderr.splitlines() if not ln.startswith("zlperf: warning:")][0]
    # Problems inside a file name their place in it; a file that cannot be read names the file.
    assert line.startswith(f"zlperf: {path}") or line.startswith("zlperf: ") and ".yaml:" in line, line
    assert not Path("/tmp/zlperf-pwned").exists()  # (time and memory are bounded by assert_handled)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_recipe_is_one_line_through_record_dry_run(name, tmp_path):
    path = CASES[name](tmp_path)
    out = tmp_path / "out" / "o.dat"
    out.parent.mkdir()
    o = run_zlperf(["record", "--dry-run", "--recipe", path, "-o", out, "--", "true"], timeout=60,
                   cwd=str(tmp_path))
    assert assert_handled(o, allow_partial=False) == "error"
    assert list(out.parent.iterdir()) == []


def test_limits_are_what_the_messages_say(tmp_path):
    # The generators above exceed every limit by far; these sit just inside them and load.
    inside = tmp_path / "inside.yaml"
    nested = "[" * (MAX_DEPTH - 2) + "1" + "]" * (MAX_DEPTH - 2)
    inside.write_text(OK_EVENTS + f"backend_options: {{}}\ndescription: ok\nx_unused: {nested}\n")
    errors, _ = validate_file(inside, lookup=known_format)
    assert errors and all("unknown key" in e for e in errors), errors  # only the unknown key: nesting is fine
    chain = tmp_path / "chain"
    chain.mkdir()
    errors, _ = validate_file(extends_chain(chain, MAX_EXTENDS), lookup=known_format)
    assert errors == []
    errors, _ = validate_file(extends_chain(chain, MAX_EXTENDS + 1), lookup=known_format)
    assert len(errors) == 1 and f"more than {MAX_EXTENDS} recipes" in errors[0]
    many = tmp_path / "many.yaml"
    many.write_text(OK_EVENTS + "description: x\nx_list: [" + ", ".join(["1"] * (MAX_VALUES + 10)) + "]\n")
    errors, _ = validate_file(many, lookup=known_format)
    assert len(errors) == 1 and f"more than {MAX_VALUES} values" in errors[0]
    # The kernel's own limit: a filter of max_filter_bytes() passes the length check, one more byte does not.
    at_limit = "flags == 1" + " " * (max_filter_bytes() - 10)
    assert check_filter(at_limit, known_format("lock:contention_begin")) == []
    assert "at most" in check_filter(at_limit + " ", known_format("lock:contention_begin"))[0][1]


def test_a_filter_with_shell_characters_is_passed_as_one_argument(tmp_path):
    # Valid for the kernel (a quoted string), so it is recorded as written: the plan quotes it for a shell.
    expr = 'comm == "a;b $(touch /tmp/zlperf-pwned) `x` \' \\"'
    recipe = tmp_path / "quoted.yaml"
    recipe.write_text(yaml.safe_dump({"events": ["lock:contention_begin"], "filters": {"lock:contention_begin": expr}}))
    o = run_zlperf(["record", "--dry-run", "--recipe", recipe, "-o", tmp_path / "q.dat", "--", "true"], timeout=60)
    if o.returncode != 0:
        pytest.skip("record --dry-run cannot run here: " + o.stderr.strip()[-200:])
    writes = [ln for ln in o.stdout.splitlines() if ln.endswith("/events/lock/contention_begin/filter")]
    assert len(writes) == 1
    argv = shlex.split(writes[0])
    assert argv[:2] == ["echo", expr] and argv[2] == ">"
    assert not Path("/tmp/zlperf-pwned").exists()


def test_a_local_recipe_shadowing_a_builtin_says_so(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "stock.yaml").write_text("extends: stock\nbuffer_size_kb: 1024\n")
    o = run_zlperf(["record", "--dry-run", "--profile", "stock", "-o", tmp_path / "s.dat", "--", "true"],
                   timeout=60, cwd=str(tmp_path))
    shadow = [ln for ln in o.stderr.splitlines() if "shadows the built-in recipe 'stock'" in ln]
    assert len(shadow) == 1 and shadow[0].startswith("zlperf: warning: "), o.stderr


# ---------------------------------------------------------------------------------------------
# Hypothesis: random documents and filters, in-process


def _assert_problems(errors, warnings, path: Path) -> None:
    for line in [*errors, *warnings]:
        assert isinstance(line, str) and "\n" not in line, line
        assert line.startswith(str(path)) or "recipe" in line, line


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30))
_values = st.recursive(_scalars, lambda kids: st.one_of(st.lists(kids, max_size=5),
                                                         st.dictionaries(st.text(max_size=10), kids, max_size=5)),
                       max_leaves=30)
_keys = st.one_of(st.sampled_from(sorted(KEYS)), st.text(max_size=12))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(_keys, _values, max_size=8))
def test_fuzz_random_documents_give_only_problems(doc, tmp_path):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    errors, warnings = validate_file(path, lookup=known_format)
    _assert_problems(errors, warnings, path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=400))
def test_fuzz_random_text_gives_only_problems(text, tmp_path):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    errors, warnings = validate_file(path, lookup=known_format)
    _assert_problems(errors, warnings, path)


_filter_tokens = st.sampled_from(["flags", "lock_addr", "ret", "comm", "CPU", "nosuch", "==", "!=", "<", ">=", "&",
                                  "~", "&&", "||", "!", "(", ")", "1", "0x10", "-1", '"x*"', "'y'", "abc", " "])


@settings(max_examples=500, deadline=None)
@given(expr=st.one_of(st.text(max_size=200), st.lists(_filter_tokens, max_size=40).map(" ".join)))
def test_fuzz_filters_give_offsets_inside_the_text(expr):
    for fmt in (None, known_format("lock:contention_begin")):
        for offset, problem in check_filter(expr, fmt):
            assert 0 <= offset <= len(expr) and problem and "\n" not in problem


def test_generators_make_what_they_say(tmp_path):
    # The special files really are special (a case that silently became a regular file would prove nothing).
    assert stat.S_ISFIFO(os.stat(fifo(tmp_path)).st_mode)
    assert stat.S_ISCHR(os.stat(link_to_dev_zero(tmp_path)).st_mode)
    laughs = yaml.compose(billion_laughs(tmp_path).read_text(), Loader=yaml.SafeLoader)
    assert laughs is not None
