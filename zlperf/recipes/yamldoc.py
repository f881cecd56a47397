"""One recipe file read as YAML with the position of every key and value, for file:line:column messages.

Only plain data is built (SafeLoader's scalars, mappings and lists): no tag can construct an object or run
code, and nesting and alias expansion are bounded (a recipe is a few dozen values; an alias bomb or a
recursive alias is one error line, not gigabytes). :class:`Problems` gathers every problem of a load.
"""

from __future__ import annotations

__all__ = ["MAX_DEPTH", "MAX_VALUES", "Problems", "YamlDoc", "mark_of", "one_line"]

from typing import Any, Dict, List, Optional, Set, Tuple

import yaml

from zlperf.recipes.model import Mark

#: Deepest nesting of mappings and lists a recipe may have (the real ones have 3 levels).
MAX_DEPTH = 32
#: Most values (keys, items, scalars) a recipe may expand to, aliases included (the real ones have < 100).
#: Each use of an alias is walked again to record positions: 9 nested 10x aliases would be 10^9 values.
MAX_VALUES = 10_000


# Characters that would break a message into lines or move the terminal's cursor.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127, 0x85]} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


def one_line(text: str) -> str:
    """``text`` with control characters and line breaks escaped (keys and values come from the file)."""
    return text.translate(_CONTROL)


class Problems:
    """Every problem of one load (``validate`` shows all; ``load`` raises the first)."""

    def __init__(self) -> None:
        self.errors: List[str] = []
        self.warnings: List[str] = []

    def error(self, mark: Mark, key: str, problem: str) -> None:
        """Record ``FILE:LINE:COL: KEY: PROBLEM``."""
        f, line, col = mark
        self.errors.append(one_line(f"{f}:{line}:{col}: {key}: {problem}" if key else f"{f}:{line}:{col}: {problem}"))

    def warn(self, mark: Mark, key: str, problem: str) -> None:
        """Record a warning in the same form."""
        f, line, col = mark
        self.warnings.append(one_line(f"{f}:{line}:{col}: {key}: {problem}"))


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class _TooBig(Exception):
    """A recipe past MAX_DEPTH or MAX_VALUES, at ``node``."""

    def __init__(self, node: yaml.Node, problem: str):
        super().__init__(problem)
        self.node = node
        self.problem = problem


def _nesting_problem(text: str) -> Optional[Tuple[yaml.Event, int]]:
    """The first collection nested deeper than MAX_DEPTH, from the parser's events (which do not recurse,
    unlike the composer: a few thousand '[' would exhaust Python's stack before anything is checked)."""
    depth = 0
    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                return ev, depth
        elif isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
    return None


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
        self._left = MAX_VALUES  # values still allowed
        self._aliased = 0  # collections walked more than once (alias uses)
        self._walked: Set[int] = set()
        try:
            deep = _nesting_problem(text)
            if deep is not None:
                ev, _depth = deep
                errs.error((fname, ev.start_mark.line + 1, ev.start_mark.column + 1), "",
                           f"nested more than {MAX_DEPTH} levels deep (a recipe is a mapping of short lists and "
                           "mappings): not a recipe")
                self.ok = False
                return
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
            self.values = self._mapping(node, "", errs, 1)
        except yaml.YAMLError as exc:  # e.g. a bad !!int scalar
            mark = getattr(exc, "problem_mark", None)
            pos = (fname, mark.line + 1, mark.column + 1) if mark else (fname, 1, 1)
            errs.error(pos, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")
            self.ok = False
        except _TooBig as exc:
            errs.error(mark_of(fname, exc.node), "", exc.problem)
            self.ok = False

    def _count(self, node: yaml.Node, depth: int) -> None:
        """Charge one value to the budget; _TooBig past MAX_VALUES or MAX_DEPTH (recursive aliases too)."""
        if depth > MAX_DEPTH:
            raise _TooBig(node, f"nested more than {MAX_DEPTH} levels deep through aliases (a recursive alias?): "
                                "not a recipe")
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if id(node) in self._walked:
                self._aliased += 1
            self._walked.add(id(node))
        self._left -= 1
        if self._left < 0:
            why = (f"YAML aliases expand to more than {MAX_VALUES} values (an alias bomb?)" if self._aliased
                   else f"more than {MAX_VALUES} values")
            raise _TooBig(node, f"{why}; a recipe has a few dozen: not a recipe")

    def _mapping(self, node: yaml.MappingNode, prefix: str, errs: Problems, depth: int) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for knode, vnode in node.value:
            key = self._value(knode, prefix + "?", errs, depth + 1)
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
            out[key] = self._value(vnode, kpath + ".", errs, depth + 1)
        return out

    def _value(self, node: yaml.Node, prefix: str, errs: Problems, depth: int) -> Any:
        self._count(node, depth)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            # Scalars go through SafeConstructor, which refuses such tags; collections are built here.
            raise yaml.constructor.ConstructorError(
                None, None, f"tag {node.tag!r} is not allowed (recipes are plain data)", node.start_mark
            )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, prefix, errs, depth)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                ipath = f"{prefix.rstrip('.')}[{i}]"
                self.value_marks[ipath] = mark_of(self.fname, item)
                items.append(self._value(item, ipath + ".", errs, depth + 1))
            return items
        try:
            return self._constructor.construct_object(node, deep=True)
        except (ValueError, OverflowError):
            # int() of more than sys.get_int_max_str_digits() digits (4300) refuses to convert.
            raise _TooBig(node, f"a number of {len(str(node.value))} digits is too long for any recipe key") from None

    def kmark(self, path: str) -> Mark:
        """Where the key at ``path`` is (else its value, else the file's start)."""
        return self.key_marks.get(path) or self.value_marks.get(path) or (self.fname, 1, 1)

    def vmark(self, path: str) -> Mark:
        """Where the value at ``path`` is (else its key, else the file's start)."""
        return self.value_marks.get(path) or self.key_marks.get(path) or (self.fname, 1, 1)
