"""Packaging: what a non-editable install ships."""

from __future__ import annotations


def test_every_package_folder_is_listed_in_pyproject():
    """A folder of zlperf/ missing from pyproject's packages would be missing from a (non-editable) install."""
    import tomllib

    from conftest import REPO

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {"zlperf." + p.parent.relative_to(REPO / "zlperf").as_posix().replace("/", ".")
               for p in (REPO / "zlperf").rglob("__init__.py") if p.parent != REPO / "zlperf"}
    assert folders <= listed, folders - listed
