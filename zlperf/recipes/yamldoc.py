"""One recipe file read as YAML with the position of every key and value, for file:line:column messages.

Only plain data is built (SafeLoader's scalars, mappings and lists): no tag can construct an object or run
code. :class:`Problems` gathers every problem of a load so that ``validate`` can show them all.
"""

from __future__ import annotations

__all__ = ["Problems", "YamlDoc", "mark_of"]

from typing import Any, Dict, List, Set

import yaml

from zlperf.recipes.model import Mark


class Problems:
    """Every problem of one load (``validate`` shows all; ``load`` raises the first)."""

    def __init__(self) -> None:
        self.errors: List[str] = []
        self.warnings: List[str] = []

    def error(self, mark: Mark, key: str, problem: str) -> None:
        """Record ``FILE:LINE:COL: KEY: PROBLEM``."""
        f, line, col = mark
        self.errors.append(f"{f}:{line}:{col}: {key}: {problem}" if key else f"{f}:{line}:{col}: {problem}")

    def warn(self, mark: Mark, key: str, problem: str) -> None:
        """Record a warning in the same form."""
        f, line, col = mark
        self.warnings.append(f"{f}:{line}:{col}: {key}: {problem}")


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def mark_of(fname: str, node: yaml.Node) -> Mark:
    """Where ``node`` starts in ``fname``, 1-based."""
    return (fname, node.start_mark.line + 1, node.start_mark.column + 1)


class YamlDoc:
    """One recipe file as plain values plus the position of every key and value."""

    def __init__(self, fname: str, text: str, errs: Problems):
        self.fname = fname
        self.values: Dict[str, Any] = {}
        self.key_marks: Dict[str, Mark] = {}  # path -> position of the key
        self.value_marks: Dict[str, Mark] = {}  # path -> position of the value
        self.quoted: Set[str] = set()  # paths of quoted scalars: their text starts one column after the mark
        self.ok = True
        try:
            # SafeLoader: plain data only; no tag in a recipe can construct an object or run code.
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            pos = (fname, mark.line + 1, mark.column + 1) if mark else (fname, 1, 1)
            errs.error(pos, "", f"not valid YAML: {problem}")
            self.ok = False
            return
        if node is None:
            errs.error((fname, 1, 1), "", "empty recipe (it needs at least `events:` or `extends:`)")
            self.ok = False
            return
        if not isinstance(node, yaml.MappingNode):
            errs.error(mark_of(fname, node), "", "a recipe is a mapping of keys (description:, events:, ...)")
            self.ok = False
            return
        self._constructor = yaml.constructor.SafeConstructor()
        try:
            self.values = self._mapping(node, "", errs)
        except yaml.YAMLError as exc:  # e.g. a bad !!int scalar
            mark = getattr(exc, "problem_mark", None)
            pos = (fname, mark.line + 1, mark.column + 1) if mark else (fname, 1, 1)
            errs.error(pos, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")
            self.ok = False

    def _mapping(self, node: yaml.MappingNode, prefix: str, errs: Problems) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for knode, vnode in node.value:
            key = self._value(knode, prefix + "?", errs)
            kpath = f"{prefix}{key}"
            if not isinstance(key, str):
                errs.error(mark_of(self.fname, knode), prefix.rstrip(".") or "", f"keys must be text, got {key!r}")
                continue
            if key in out:
                errs.error(mark_of(self.fname, knode), kpath, "key given twice")
                continue
            self.key_marks[kpath] = mark_of(self.fname, knode)
            self.value_marks[kpath] = mark_of(self.fname, vnode)
            if isinstance(vnode, yaml.ScalarNode) and vnode.style in ("'", '"'):
                self.quoted.add(kpath)
            out[key] = self._value(vnode, kpath + ".", errs)
        return out

    def _value(self, node: yaml.Node, prefix: str, errs: Problems) -> Any:
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            # Scalars go through SafeConstructor, which refuses such tags; collections are built here.
            raise yaml.constructor.ConstructorError(
                None, None, f"tag {node.tag!r} is not allowed (recipes are plain data)", node.start_mark
            )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, prefix, errs)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                ipath = f"{prefix.rstrip('.')}[{i}]"
                self.value_marks[ipath] = mark_of(self.fname, item)
                items.append(self._value(item, ipath + ".", errs))
            return items
        return self._constructor.construct_object(node, deep=True)

    def kmark(self, path: str) -> Mark:
        """Where the key at ``path`` is (else its value, else the file's start)."""
        return self.key_marks.get(path) or self.value_marks.get(path) or (self.fname, 1, 1)

    def vmark(self, path: str) -> Mark:
        """Where the value at ``path`` is (else its key, else the file's start)."""
        return self.value_marks.get(path) or self.key_marks.get(path) or (self.fname, 1, 1)
