"""Recipes: loading, extends, the search path and every validation error, checked against the files'
own markers, PyYAML's own verdicts and (live) the kernel's own filter parser and formats."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DATA, REPO, is_root
from zlperf import recipes
from zlperf.errors import RecipeError
from zlperf.formats import parse_event_format
from zlperf.recipes.known_events import KNOWN_EVENTS, known_format
from zlperf.recipes import check_filter, find_recipe, list_recipes, load_recipe, validate_file
from zlperf.record.tracefs import Instance, Tracefs, find_tracefs

RECIPES = DATA / "recipes"
GOOD = RECIPES / "good"
BAD = RECIPES / "bad"
BUILTIN_DIR = REPO / "recipes"
BUILTINS = sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))
_MARKER = re.compile(r"#\s*expect@(?P<token>\S+):\s*(?P<text>.+?)\s*$")


def table_only(event: str):
    """Formats from zlperf's table only, so offline results do not depend on this kernel."""
    return known_format(event)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Run in an empty directory with a private HOME and no $ZLPERF_RECIPES."""
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ZLPERF_RECIPES", raising=False)
    monkeypatch.chdir(work)
    return tmp_path


def _expectations(path: Path):
    """(line, column, text) from the `# expect@TOKEN: TEXT` comments of a bad recipe (1-based)."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m = _MARKER.search(line)
        if m:
            code = line[: m.start()]
            col = code.index(m.group("token")) + 1
            out.append((n, col, m.group("text")))
    return out


def _where(message: str):
    m = re.match(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): ", message)
    assert m, f"error does not start with file:line:column: {message}"
    return m.group("file"), int(m.group("line")), int(m.group("col"))


# ---------------------------------------------------------------------------------------------
# Built-ins


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_recipes_load_and_name_known_events(name):
    r = load_recipe(name, lookup=table_only)
    assert r.origin == "built-in" and r.events and r.description
    for ev in r.events:
        assert known_format(ev) is not None, f"{name}: {ev} is not in zlperf's event table"
    errors, _ = validate_file(BUILTIN_DIR / f"{name}.yaml", lookup=table_only)
    assert errors == []


def test_builtins_record_the_events_of_their_abi():
    # Each built-in records the events of one ABI: the seed patch (minimal < wait-time < hold-time), stock
    # kernels' lock:contention_*, and the rival zone_lock:* series.
    want = {
        "minimal": {"kmem:mm_zone_lock_contended"},
        "wait-time": {"kmem:mm_zone_lock_contended", "kmem:mm_zone_locked"},
        "hold-time": {"kmem:mm_zone_lock_contended", "kmem:mm_zone_locked", "kmem:mm_zone_lock_unlock"},
        "stock": {"lock:contention_begin", "lock:contention_end"},
        "zone-lock-series": {e for e in KNOWN_EVENTS if e.startswith("zone_lock:")},
    }
    for name, events in want.items():
        assert set(load_recipe(name, lookup=table_only).events) == events
    assert load_recipe("stock", lookup=table_only).stacks is True
    assert load_recipe("zone-lock-series", lookup=table_only).stacks is True


def test_builtins_listed_once_from_a_source_checkout(monkeypatch):
    # In the repository ./recipes IS the built-in folder: it must not show up twice.
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("ZLPERF_RECIPES", raising=False)
    names = [e.name for e in list_recipes() if e.origin in ("built-in", "./recipes")]
    assert sorted(names) == BUILTINS
    assert {e.origin for e in list_recipes() if e.name in BUILTINS} == {"built-in"}


def test_known_table_matches_this_kernel_where_it_has_the_event():
    root = find_tracefs()
    if root is None or not Tracefs(root).readable():
        pytest.skip("tracefs not mounted or not readable")
    tfs = Tracefs(root)
    compared = 0
    for ev in KNOWN_EVENTS:
        live = tfs.event_format(ev)
        if live is None:
            continue
        table = known_format(ev)
        assert [(f.name, f.type, f.size, f.signed) for f in table.fields] == [
            (f.name, f.type, f.size, f.signed) for f in live.fields
        ], ev
        compared += 1
    assert compared >= 2  # lock:contention_* exist on every kernel since 5.19


def test_known_table_matches_the_patched_kernels_format_files():
    # tests/data/formats holds the lab kernel's own format files for the seed patch.
    for path in sorted((DATA / "formats").glob("*.format")):
        fmt = parse_event_format(path.read_text())
        system = path.name.split("_", 1)[0]
        table = known_format(f"{system}:{fmt.name}")
        assert table is not None, path.name
        assert [(f.name, f.type, f.size, f.signed, f.data_loc) for f in table.fields] == [
            (f.name, f.type, f.size, f.signed, f.data_loc) for f in fmt.fields
        ], path.name


# ---------------------------------------------------------------------------------------------
# Extends


def test_extends_overrides_parts_of_the_base():
    base_raw = yaml.safe_load((GOOD / "base.yaml").read_text())
    child_raw = yaml.safe_load((GOOD / "child.yaml").read_text())
    r = load_recipe(GOOD / "child.yaml", lookup=table_only)
    assert r.chain == [str(GOOD / "base.yaml"), str(GOOD / "child.yaml")]
    # Scalars the child sets win; the others come from the base.
    for key in ("description", "stacks", "buffer_size_kb"):
        assert getattr(r, key) == child_raw[key]
    for key in ("clock", "output"):
        assert getattr(r, key) == base_raw[key]
    assert r.duration == float(base_raw["duration"])
    assert r.events == base_raw["events"]
    # Filters merge per event; null removes the inherited one.
    removed = [ev for ev, expr in child_raw["filters"].items() if expr is None]
    assert removed and all(ev not in r.filters for ev in removed)
    for ev, expr in child_raw["filters"].items():
        if expr is not None:
            assert r.filters[ev] == expr
    # backend_options merge per backend and option.
    for backend, opts in base_raw["backend_options"].items():
        for k, v in opts.items():
            assert r.backend_options[backend][k] == child_raw.get("backend_options", {}).get(backend, {}).get(k, v)
    for backend, opts in child_raw["backend_options"].items():
        for k, v in opts.items():
            assert r.backend_options[backend][k] == v


def test_extends_a_builtin_of_the_same_name_from_the_search_path(isolated):
    folder = Path("recipes")
    folder.mkdir()
    (folder / "stock.yaml").write_text("extends: stock\nbuffer_size_kb: 1024\ndescription: my stock\n")
    r = load_recipe("stock", lookup=table_only)
    builtin = yaml.safe_load((BUILTIN_DIR / "stock.yaml").read_text())
    assert r.origin == "./recipes" and r.buffer_size_kb == 1024 and r.description == "my stock"
    assert r.events == builtin["events"] and r.stacks == builtin["stacks"]
    assert r.chain[0] == str(BUILTIN_DIR / "stock.yaml") or Path(r.chain[0]).resolve() == (BUILTIN_DIR / "stock.yaml")


# ---------------------------------------------------------------------------------------------
# Search path


def test_search_path_order_and_shadowing(isolated, monkeypatch):
    tmp = isolated
    env1, env2 = tmp / "env1", tmp / "env2"
    home_dir = tmp / "home" / ".config" / "zlperf" / "recipes"
    local = Path("recipes")
    for d in (env1, env2, home_dir, local):
        d.mkdir(parents=True)
    monkeypatch.setenv("ZLPERF_RECIPES", f"{env1}:{env2}")

    def put(folder: Path, name: str, desc: str) -> None:
        (folder / f"{name}.yaml").write_text(f"description: {desc}\nevents: [lock:contention_begin]\n")

    put(home_dir, "shared", "from home")
    put(env2, "shared", "from env2")
    put(env1, "shared", "from env1")
    put(local, "shared", "from ./recipes")
    put(home_dir, "homeonly", "from home")
    put(env2, "env2only", "from env2")
    put(home_dir, "minimal", "shadows the built-in")
    # First on the path wins, in the documented order.
    assert load_recipe("shared", lookup=table_only).description == "from ./recipes"
    (local / "shared.yaml").unlink()
    assert load_recipe("shared", lookup=table_only).description == "from env1"
    assert load_recipe("env2only", lookup=table_only).origin == "$ZLPERF_RECIPES"
    assert load_recipe("homeonly", lookup=table_only).origin == "~/.config/zlperf/recipes"
    assert load_recipe("minimal", lookup=table_only).description == "shadows the built-in"
    # list: every file, in search order, later ones of a name marked as shadowed.
    entries = list_recipes()
    shared = [e for e in entries if e.name == "shared"]
    assert [e.description for e in shared] == ["from env1", "from env2", "from home"]
    assert shared[0].shadowed_by is None and all(e.shadowed_by == shared[0].path for e in shared[1:])
    builtin_minimal = [e for e in entries if e.name == "minimal" and e.origin == "built-in"]
    assert builtin_minimal and builtin_minimal[0].shadowed_by == str(home_dir / "minimal.yaml")


def test_a_path_works_too(isolated):
    r = load_recipe(str(GOOD / "base.yaml"), lookup=table_only)
    assert r.origin == "path" and r.path == str(GOOD / "base.yaml")
    rel = os.path.relpath(GOOD / "base.yaml")
    assert load_recipe(rel, lookup=table_only).events == r.events


def test_unknown_name_suggests_close_ones(isolated):
    with pytest.raises(RecipeError) as exc:
        find_recipe("hold-tim")
    assert "hold-time" in str(exc.value) and "search path" in str(exc.value)


# ---------------------------------------------------------------------------------------------
# Validation errors: each bad file's marker says where and what


MARKED = sorted(p for p in BAD.glob("*.yaml") if _expectations(p))


@pytest.mark.parametrize("path", MARKED, ids=lambda p: p.stem)
def test_validation_error_names_file_line_column_and_key(path, monkeypatch):
    monkeypatch.chdir(BAD.parent)
    errors, _ = validate_file(path, lookup=table_only)
    assert errors, f"{path.name} validated"
    expected = _expectations(path)
    for line, col, text in expected:
        hits = [e for e in errors if text in e]
        assert hits, f"{path.name}: no error says {text!r}: {errors}"
        f, got_line, got_col = _where(hits[0])
        if Path(f).resolve() == path.resolve():
            assert (got_line, got_col) == (line, col), hits[0]
        else:
            # An extends cycle is reported where the loop closes: that file's marker must match.
            other = Path(f).resolve()
            assert any((got_line, got_col) == (l2, c2) for l2, c2, _t in _expectations(other)), hits[0]
    # load_recipe raises the first one as a single line.
    with pytest.raises(RecipeError) as exc:
        load_recipe(path, lookup=table_only)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("name", ["not-yaml.yaml", "python-tag.yaml"])
def test_yaml_errors_are_where_pyyaml_says(name):
    path = BAD / name
    with pytest.raises(yaml.YAMLError) as exc:
        yaml.safe_load(path.read_text())
    mark = exc.value.problem_mark
    errors, _ = validate_file(path, lookup=table_only)
    assert len(errors) == 1
    assert _where(errors[0]) == (str(path), mark.line + 1, mark.column + 1)


def test_python_tag_runs_nothing(tmp_path):
    flag = Path("/tmp/zlperf-recipe-ran")
    assert not flag.exists()
    with pytest.raises(RecipeError):
        load_recipe(BAD / "python-tag.yaml", lookup=table_only)
    assert not flag.exists()


def test_empty_recipe():
    errors, _ = validate_file(BAD / "empty.yaml", lookup=table_only)
    assert len(errors) == 1 and _where(errors[0])[1:] == (1, 1) and "empty" in errors[0]


def test_every_bad_file_is_checked():
    unmarked = {p.name for p in BAD.glob("*.yaml")} - {p.name for p in MARKED}
    assert unmarked == {"not-yaml.yaml", "python-tag.yaml", "empty.yaml"}


def test_good_files_validate():
    for path in sorted(GOOD.glob("*.yaml")):
        errors, warnings = validate_file(path, lookup=table_only)
        assert errors == [] and warnings == [], path.name


def test_filter_on_event_unknown_everywhere_is_a_warning_not_an_error(tmp_path):
    p = tmp_path / "custom.yaml"
    p.write_text("events: [mysys:myevent]\nfilters:\n  mysys:myevent: x == 1\n")
    errors, warnings = validate_file(p, lookup=lambda e: None)
    assert errors == [] and len(warnings) == 1 and "not checked" in warnings[0]


# ---------------------------------------------------------------------------------------------
# Filters: zlperf's checker against the kernel's own parser


FILTER_CASES = [
    ("kmem:mm_page_alloc", e)
    for e in [
        "order > 0", "order > abc", "orde > 1", "comm == bash", 'comm == "bash"', "comm == 'bash'",
        'comm ~ "py*"', "CPU == 1", "cpu != 0", "order ~ 3", "(order > 1", "order > 1 junk", "order > -1",
        "migratetype > -1", "order & 1", "gfp_flags & 0x400", "order == 0x1", "!(order == 0)",
        "order > 0 && (migratetype == 1 || CPU == 0)", "order >", "&& order == 1", "common_pid != 0",
        "pfn.function == get_page_from_freelist", 'order == "1"',
    ]
] + [
    ("lock:contention_begin", e)
    for e in ["flags == 1", "flags & 32", "lock_addr == 0xffff888000000000", "flags == SPIN", "ret == 0",
              # Deep and long: the kernel's parser nests as deep as its length limit (one page) allows.
              "(" * 2000 + "flags == 1" + ")" * 2000, "!" * 3000 + "flags == 1", "(" * 2000 + "flags == 1",
              "flags == 1" + " " * 4085, "flags == 1" + " " * 4086, " || ".join(["flags == 1"] * 290),
              " || ".join(["flags == 1"] * 300)]
]


@pytest.mark.live
@pytest.mark.skipif(not is_root(), reason="needs root")
def test_filter_checker_agrees_with_the_kernel():
    root = find_tracefs()
    if root is None:
        pytest.skip("tracefs not mounted")
    tfs = Tracefs(root)
    inst = Instance(tfs, f"zlperf-test-filters-{os.getpid()}")
    inst.create()
    try:
        for event, expr in FILTER_CASES:
            sysname, name = event.split(":")
            target = inst.path / "events" / sysname / name / "filter"
            try:
                target.write_text(expr)  # as zlperf writes it: no newline (it would count in the length)
                kernel_ok = True
            except OSError:
                kernel_ok = False
            ours = check_filter(expr, tfs.event_format(event))
            assert (ours == []) == kernel_ok, f"{event}: {expr!r}: kernel {'accepts' if kernel_ok else 'refuses'}, zlperf says {ours}"
    finally:
        inst.remove()
    assert not inst.exists()


# ---------------------------------------------------------------------------------------------
# The CLI


def _zlperf(*args, cwd=None, env=None):
    """Run this checkout's zlperf (PYTHONPATH), whatever `pip install -e` points at."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "zlperf", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=60)


def test_cli_list_show_validate(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("ZLPERF_RECIPES", None)
    res = _zlperf("recipes", "list", cwd=tmp_path, env=env)
    assert res.returncode == 0
    header, *rows = res.stdout.splitlines()
    assert header.split() == ["NAME", "VERSION", "OWNER", "ORIGIN", "DESCRIPTION"]
    listed = {line.split()[0]: line.split()[3] for line in rows}
    assert set(listed) == set(BUILTINS) and set(listed.values()) == {"built-in"}
    res = _zlperf("recipes", "show", "hold-time", "--resolved", cwd=tmp_path, env=env)
    assert res.returncode == 0
    shown = yaml.safe_load(res.stdout)
    assert shown["events"] == load_recipe("hold-time", lookup=table_only).events
    assert "merged from" in res.stdout  # hold-time extends wait-time
    res = _zlperf("recipes", "show", "hold-time", cwd=tmp_path, env=env)  # as written
    assert res.returncode == 0 and "extends: wait-time" in res.stdout
    assert yaml.safe_load(res.stdout) == yaml.safe_load((BUILTIN_DIR / "hold-time.yaml").read_text())
    res = _zlperf("recipes", "validate", str(GOOD / "base.yaml"), str(BAD / "unknown-key.yaml"), cwd=tmp_path, env=env)
    assert res.returncode == 1
    assert f"{GOOD / 'base.yaml'}: ok" in res.stdout
    line, col, text = _expectations(BAD / "unknown-key.yaml")[0]
    assert f"{BAD / 'unknown-key.yaml'}:{line}:{col}: stack: {text}" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_record_with_a_bad_recipe_is_one_line(tmp_path):
    res = _zlperf("record", "--recipe", str(BAD / "filter-unknown-field.yaml"), "--dry-run", cwd=tmp_path)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zlperf: ") and "filter-unknown-field.yaml:3:" in lines[0]


@pytest.mark.parametrize("path", sorted(BUILTIN_DIR.glob("*.yaml")) + sorted(GOOD.glob("*.yaml")), ids=lambda p: p.stem)
def test_show_output_is_itself_a_recipe_with_the_same_content(path, tmp_path):
    r = load_recipe(path, lookup=table_only)
    copy = tmp_path / f"{path.stem}.yaml"
    copy.write_text(recipes.recipe_yaml(r))
    again = load_recipe(copy, lookup=table_only)
    assert again.to_dict() == r.to_dict()
    assert again.chain == [str(copy)]  # flattened: no extends left
