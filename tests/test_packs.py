"""Recipe packs: entry-point packs found without importing them, qualified names, shadowing, the system folder;
the example pack built and installed into a fresh venv, listed with its origin, checked, and recorded live."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import FULL_DAT, REPO, have_tool, is_root
from recording import assert_no_instance_left
from zlperf.errors import RecipeError
from zlperf.recipes import find_recipe, installed_packs, list_recipes, load_recipe
from zlperf.recipes import search as search_mod
from zlperf.record.tracefs import find_tracefs

EXAMPLE = REPO / "examples" / "recipe-pack"
ACME_ORIGIN = "pack acme (acme-zlperf-recipes 1.0.0)"


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty working directory, a private HOME, no $ZLPERF_RECIPES, an empty system folder."""
    for d in ("home", "work", "etc"):
        (tmp_path / d).mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ZLPERF_RECIPES", raising=False)
    monkeypatch.setattr(search_mod, "SYSTEM_DIR", tmp_path / "etc")
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


def fake_pack(site: Path, recipes: dict, *, dist: str = "fake-pack", version: str = "2.0", name: str = "fake",
              module: str = "fake_pack.recipes", folder_module: str = "") -> Path:
    """An installed distribution (a .dist-info with entry points) whose package would leave a file if imported.

    The recipes go into ``folder_module`` (default: the entry point's ``module``)."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[zlperf.recipes]\n{name} = {module}\n")
    top = (folder_module or module).split(":")[0].split(".")
    folder = site.joinpath(*top)
    folder.mkdir(parents=True, exist_ok=True)
    init = site / top[0] / "__init__.py"
    init.write_text(f"open({str(site / ('IMPORTED-' + top[0]))!r}, 'w').close()\n")
    for n, text in recipes.items():
        (folder / f"{n}.yaml").write_text(text)
    return site


RECIPE = "description: {d}\nversion: '{v}'\nowner: team@example.org\nextends: builtin:stock\n"


def test_a_pack_is_listed_with_its_origin_and_found_by_name_without_being_imported(isolated, monkeypatch):
    site = fake_pack(isolated / "site", {"ci": RECIPE.format(d="ci gate", v="1.2.0")})
    monkeypatch.syspath_prepend(str(site))
    [pack] = [p for p in installed_packs() if p.name == "fake"]
    assert pack.problem is None and pack.folder == site / "fake_pack" / "recipes" and pack.dist == "fake-pack"
    [entry] = [e for e in list_recipes() if e.name == "ci"]
    assert (entry.origin, entry.qualified, entry.version, entry.owner) == (
        "pack fake (fake-pack 2.0)", "fake:ci", "1.2.0", "team@example.org")
    for ref in ("ci", "fake:ci"):
        r = load_recipe(ref)
        assert r.origin == "pack fake (fake-pack 2.0)" and r.version == "1.2.0"
        assert Path(r.chain[0]).name == "stock.yaml" and r.events == ["lock:contention_begin", "lock:contention_end"]
    assert not (site / "IMPORTED-fake_pack").exists() and "fake_pack" not in sys.modules


def test_packs_extend_builtins_and_each_other_by_qualified_name_and_shadowing_is_said(isolated, monkeypatch):
    site = isolated / "site"
    fake_pack(site, {"stock": "extends: builtin:stock\nbuffer_size_kb: 1024\nversion: '3'\n"})
    fake_pack(site, {"strict": "extends: fake:stock\nbudgets: {wait_ns.p99: 1ms}\n"}, dist="other-pack",
              version="0.1", name="other", module="other_pack.recipes")
    monkeypatch.syspath_prepend(str(site))
    r = load_recipe("other:strict")
    assert [Path(p).parent.parent.name + "/" + Path(p).name for p in r.chain[1:]] == [
        "fake_pack/stock.yaml", "other_pack/strict.yaml"]
    assert r.buffer_size_kb == 1024 and r.budgets == {"total": {"wait_ns.p99": 1000000}} and r.version is None
    entries = {(e.name, e.origin): e for e in list_recipes()}
    mine, builtin = entries[("stock", "pack fake (fake-pack 2.0)")], entries[("stock", "built-in")]
    assert builtin.shadowed_by == mine.path and mine.shadows == ("built-in",)
    warnings: list = []
    load_recipe("stock", warn=warnings.append)
    assert any("shadows the built-in recipe 'stock'" in w and "(builtin:stock names that one)" in w for w in warnings)
    # A local recipe shadows the pack's in turn, and says which one it hides and how to name it.
    Path("recipes").mkdir()
    Path("recipes/stock.yaml").write_text("extends: fake:stock\nclock: mono\n")
    warnings.clear()
    assert load_recipe("stock", warn=warnings.append).origin == "./recipes"
    assert any("shadows the recipe of pack fake (fake-pack 2.0) 'stock'" in w and "fake:stock names that one" in w
               for w in warnings), warnings
    entries = {(e.name, e.origin): e for e in list_recipes()}
    assert entries[("stock", "./recipes")].shadows == ("pack fake (fake-pack 2.0)", "built-in")
    assert entries[("stock", "pack fake (fake-pack 2.0)")].shadowed_by == str(Path.cwd() / "recipes" / "stock.yaml")


def test_the_cli_lists_origins_and_shadowing(isolated, monkeypatch):
    site = fake_pack(isolated / "site", {"minimal": RECIPE.format(d="pack minimal", v="9")})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(site)]), "HOME": str(isolated / "home")}
    env.pop("ZLPERF_RECIPES", None)
    res = subprocess.run([sys.executable, "-m", "zlperf", "recipes", "list"], capture_output=True, text=True,
                         env=env, cwd=isolated / "work", timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    pack_line = next(ln for ln in lines if "pack fake (fake-pack 2.0)" in ln)
    assert pack_line.split()[:3] == ["minimal", "9", "team@example.org"] and "[shadows built-in]" in pack_line
    builtin_line = next(ln for ln in lines if ln.split()[0] == "minimal" and ln.split()[3] == "built-in")
    assert "[shadowed by pack fake (fake-pack 2.0): " in builtin_line
    res = subprocess.run([sys.executable, "-m", "zlperf", "recipes", "list", "--json"], capture_output=True,
                         text=True, env=env, cwd=isolated / "work", timeout=60)
    listed = json.loads(res.stdout)
    assert {e["qualified"] for e in listed if e["name"] == "minimal"} == {"fake:minimal", "builtin:minimal"}


@pytest.mark.parametrize("name,module,problem", [
    ("fake", "fake_pack.recipes:load", "must name the package folder"),
    ("builtin", "fake_pack.recipes", "reserved for zlperf's built-in recipes"),
    ("fake", "fake_pack.missing", "is not installed as a folder"),
    ("bad name!", "fake_pack.recipes", "is not a pack name"),
], ids=["attribute", "reserved", "missing-folder", "bad-name"])
def test_a_bad_pack_is_left_out_with_its_reason(isolated, monkeypatch, name, module, problem):
    site = fake_pack(isolated / "site", {"x": RECIPE.format(d="x", v="1")}, name=name, module=module,
                     folder_module="fake_pack.recipes")
    monkeypatch.syspath_prepend(str(site))
    [pack] = [p for p in installed_packs() if p.dist == "fake-pack"]
    assert pack.problem and problem in pack.problem and pack.folder is None
    assert "x" not in {e.name for e in list_recipes()}
    assert not (site / "IMPORTED-fake_pack").exists()


def test_two_packs_of_one_name_the_first_by_distribution_wins(isolated, monkeypatch):
    site = isolated / "site"
    fake_pack(site, {"a": RECIPE.format(d="from a", v="1")}, dist="a-pack", module="a_pack.recipes")
    fake_pack(site, {"a": RECIPE.format(d="from b", v="1")}, dist="b-pack", module="b_pack.recipes")
    monkeypatch.syspath_prepend(str(site))
    packs = {p.dist: p for p in installed_packs() if p.name == "fake"}
    assert packs["a-pack"].problem is None and "another pack is also named 'fake'" in packs["b-pack"].problem
    assert load_recipe("fake:a").description == "from a"


def test_system_folder_after_home_before_packs(isolated, monkeypatch):
    site = fake_pack(isolated / "site", {"gate": RECIPE.format(d="pack", v="1")})
    monkeypatch.syspath_prepend(str(site))
    (isolated / "etc" / "gate.yaml").write_text(RECIPE.format(d="system", v="1"))
    assert load_recipe("gate").description == "system" and load_recipe("gate").origin == str(isolated / "etc")
    home = isolated / "home" / ".config" / "zlperf" / "recipes"
    home.mkdir(parents=True)
    (home / "gate.yaml").write_text(RECIPE.format(d="home", v="1"))
    assert load_recipe("gate").description == "home"
    assert load_recipe("fake:gate").description == "pack"
    order = [e.origin for e in list_recipes() if e.name == "gate"]
    assert order == ["~/.config/zlperf/recipes", str(isolated / "etc"), "pack fake (fake-pack 2.0)"]


def test_unknown_pack_or_recipe_in_a_pack(isolated, monkeypatch):
    monkeypatch.syspath_prepend(str(fake_pack(isolated / "site", {"gate": RECIPE.format(d="p", v="1")})))
    with pytest.raises(RecipeError, match=r"no recipe pack named 'nope' is installed \(installed packs: .*fake"):
        find_recipe("nope:gate")
    with pytest.raises(RecipeError, match=r"no recipe named 'gat' in pack fake \(fake-pack 2.0\); did you mean gate\?"):
        find_recipe("fake:gat")
    assert find_recipe("builtin:stock")[1] == "built-in"


def test_files_in_a_pack_that_are_not_regular_are_not_recipes(isolated, monkeypatch):
    site = fake_pack(isolated / "site", {"ok": RECIPE.format(d="ok", v="1")})
    folder = site / "fake_pack" / "recipes"
    (folder / "zero.yaml").symlink_to("/dev/zero")
    os.mkfifo(folder / "fifo.yaml")
    monkeypatch.syspath_prepend(str(site))
    assert {e.name for e in list_recipes() if e.origin.startswith("pack ")} == {"ok"}


# ---------------------------------------------------------------------------------------------
# requires: checked first, before anything is touched


def test_kernel_versions_compare_as_numbers():
    from zlperf.record.requires import _compare, kernel_version

    assert kernel_version("6.18.44-fc-v1045") == (6, 18, 44) and kernel_version("5.19") == (5, 19)
    assert _compare((6, 18, 44), ">=", (5, 19)) and not _compare((5, 4), ">=", (5, 19))
    assert _compare((5, 19, 0), "==", (5, 19)) and _compare((6, 1), "<", (6, 10))


@pytest.mark.skipif(not (is_root() and find_tracefs()), reason="needs root and tracefs")
def test_record_says_every_missing_requirement_first_and_touches_nothing(tmp_path):
    recipe = tmp_path / "gate.yaml"
    recipe.write_text("extends: stock\nrequires:\n  - lock:contention_begin\n  - kernel >= 99.1\n"
                      "  - nosys:noevent\n  - config:CONFIG_ZLPERF_NO_SUCH_OPTION\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "zlperf", "record", "--recipe", str(recipe), "--dry-run",
                          "-o", str(tmp_path / "o.dat"), "--", "true"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 2 and res.stdout == ""  # nothing planned, nothing run
    [line] = res.stderr.splitlines()
    assert line.startswith(f"zlperf: {recipe}:3:3: requires: recipe gate needs what this machine lacks: ")
    assert f"kernel >= 99.1 (this is {os.uname().release})" in line and "event nosys:noevent (no " in line
    assert "lock:contention_begin" not in line  # present here
    assert "CONFIG_ZLPERF_NO_SUCH_OPTION (not set in " in line or "CONFIG_ZLPERF_NO_SUCH_OPTION" not in line


# ---------------------------------------------------------------------------------------------
# The example pack in a fresh venv


def _pip_install(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv (seeing the system's numpy and friends) with examples/recipe-pack built and installed."""
    root = tmp_path_factory.mktemp("packvenv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root / "venv")], check=True,
                   timeout=300)
    python = root / "venv" / "bin" / "python"
    src = root / "recipe-pack"
    shutil.copytree(EXAMPLE, src)  # pip builds in the tree: keep the checkout clean
    res = _pip_install(python, "--no-build-isolation", str(src))
    if res.returncode != 0:  # the venv's setuptools may lack bdist_wheel: build it isolated (from the registry)
        res = _pip_install(python, str(src))
    if res.returncode != 0:
        pytest.fail(f"cannot build and install {EXAMPLE}: {res.stderr[-1500:]}")
    home = root / "home"
    home.mkdir()
    return python, home


def in_venv(venv, *args, cwd=None, timeout=300) -> tuple[subprocess.CompletedProcess, int]:
    """Run this checkout's zlperf with the venv's Python (where the pack is installed); (result, pid)."""
    python, home = venv
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(home)}
    env.pop("ZLPERF_RECIPES", None)
    proc = subprocess.Popen([str(python), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=cwd or home)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def test_installed_example_pack_is_listed_with_its_origin(venv, tmp_path):
    res, _ = in_venv(venv, "-m", "zlperf", "recipes", "list", "--json")
    assert res.returncode == 0, res.stderr
    acme = {e["name"]: e for e in json.loads(res.stdout) if e["origin"] == ACME_ORIGIN}
    assert set(acme) == {"ci-stock", "ci-stock-strict", "hold-gate"}
    assert all(e["version"] == "1.0.0" and e["owner"] == "kernel-perf@acme.example" for e in acme.values())
    assert acme["ci-stock"]["qualified"] == "acme:ci-stock" and "site-packages" in acme["ci-stock"]["path"]
    text, _ = in_venv(venv, "-m", "zlperf", "recipes", "list")
    assert any(ln.split()[:3] == ["ci-stock", "1.0.0", "kernel-perf@acme.example"] and ACME_ORIGIN in ln
               for ln in text.stdout.splitlines())
    # A recipe of the same name in ./recipes shadows the pack's, and both listing and loading say so.
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "ci-stock.yaml").write_text("extends: acme:ci-stock\nbuffer_size_kb: 2048\n")
    text, _ = in_venv(venv, "-m", "zlperf", "recipes", "list", cwd=tmp_path)
    shadowed = next(ln for ln in text.stdout.splitlines() if ln.startswith("ci-stock  ") and "[shadowed by" in ln)
    assert ACME_ORIGIN in shadowed.split("[shadowed by")[0]
    assert f"[shadowed by ./recipes: {tmp_path / 'recipes' / 'ci-stock.yaml'}]" in shadowed
    show, _ = in_venv(venv, "-m", "zlperf", "recipes", "show", "ci-stock", "--resolved", cwd=tmp_path)
    assert "shadows the recipe of pack acme (acme-zlperf-recipes 1.0.0) 'ci-stock'" in show.stderr
    assert "buffer_size_kb: 2048" in show.stdout and "wait_ns.p99: 20000000" in show.stdout


def test_installed_pack_recipe_extends_another_by_qualified_name(venv):
    res, _ = in_venv(venv, "-m", "zlperf", "recipes", "show", "acme:ci-stock-strict", "--resolved")
    assert res.returncode == 0, res.stderr
    import yaml

    shown = yaml.safe_load(res.stdout)
    assert shown["budgets"] == {"contended_per_sec": 5000, "spinning_cpus": 0.5, "wait_ns.p99": 2000000,
                                "zones": {"*": {"wait_ns.max": 2000000000}}}
    assert shown["events"] == ["lock:contention_begin", "lock:contention_end"] and shown["stacks"] is True


def test_installed_pack_gates_a_recording_and_a_junit_reader_reads_the_result(venv, tmp_path):
    out = tmp_path / "check.xml"
    res, _ = in_venv(venv, "-m", "zlperf", "check", FULL_DAT, "--profile", "acme:hold-gate", "--junit", out)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"against hold-gate 1.0.0 ({ACME_ORIGIN}): within budget" in res.stdout
    python, _home = venv
    if _pip_install(python, "junitparser").returncode != 0:
        pytest.skip("junitparser cannot be installed here (no package index); xml.etree checks are in test_budgets")
    script = ("import sys, junitparser\n"
              "xml = junitparser.JUnitXml.fromfile(sys.argv[1])\n"
              "suites = list(xml) if isinstance(xml, junitparser.JUnitXml) else [xml]\n"
              "cases = [c for s in suites for c in s]\n"
              "print(len(suites), len(cases), sum(1 for c in cases if c.is_passed), suites[0].name)\n")
    parsed = subprocess.run([str(python), "-c", script, str(out)], capture_output=True, text=True, timeout=120)
    assert parsed.returncode == 0, parsed.stderr
    suites, cases, passed, name = parsed.stdout.split()
    n_budgets = int(ET.parse(out).getroot().get("tests"))
    assert (int(suites), int(cases), int(passed), name) == (1, n_budgets, n_budgets, "hold-gate")


_LIVE = pytest.mark.skipif(not (is_root() and find_tracefs() and have_tool("trace-cmd")),
                           reason="needs root, tracefs and trace-cmd")


@pytest.mark.live
@_LIVE
def test_installed_pack_records_live_and_checks_its_budgets(venv, tmp_path, pcp_lists_shrunk):
    python, _home = venv
    dat, xml = tmp_path / "ci.dat", tmp_path / "ci.xml"
    res, pid = in_venv(venv, "-m", "zlperf", "record", "--profile", "acme:ci-stock", "-o", dat, "--junit", xml,
                       "--", python, "-m", "zlperf.workload", "--seconds", "2", timeout=300)
    assert_no_instance_left(pid)
    assert res.returncode in (0, 1), res.stderr[-2000:]
    summary = [ln for ln in res.stdout.splitlines() if ln.startswith("zlperf check: ")]
    assert len(summary) == 1 and f"against ci-stock 1.0.0 ({ACME_ORIGIN})" in summary[0]
    assert ("within budget:" in summary[0]) == (res.returncode == 0)
    # The recording holds the stock events (trace-cmd's own reading), and checking it again agrees.
    report = subprocess.run(["trace-cmd", "report", "-i", str(dat)], capture_output=True, text=True, timeout=300)
    assert report.returncode == 0 and " contention_begin:" in report.stdout
    again, _ = in_venv(venv, "-m", "zlperf", "check", dat, "--profile", "acme:ci-stock")
    assert again.returncode == res.returncode
    suite = ET.parse(xml).getroot().find("testsuite")
    assert int(suite.get("tests")) >= 4 and int(suite.get("errors")) == 0


@pytest.mark.live
@_LIVE
def test_record_exit_status_is_the_commands_when_it_failed(venv, tmp_path):
    recipe = tmp_path / "gate.yaml"
    recipe.write_text("extends: acme:ci-stock\nbudgets: {contended_per_sec: 0}\n")
    res, pid = in_venv(venv, "-m", "zlperf", "record", "--recipe", recipe, "-o", tmp_path / "f.dat",
                       "--", "sh", "-c", "exit 3")
    assert_no_instance_left(pid)
    assert res.returncode == 3, res.stderr[-2000:]
    assert any(ln.startswith("zlperf check: ") for ln in res.stdout.splitlines())
