"""tracefs event filters (kernel/trace/trace_events_filter.c syntax), checked before the kernel sees them.

``FIELD OP VALUE`` predicates joined by && || ! and parentheses; each field must be in the event's format
and each value must fit the field's type, as the kernel's own parser requires.
"""

from __future__ import annotations

__all__ = ["FILTER_PSEUDO_FIELDS", "check_filter", "max_filter_bytes"]

import difflib
import os
import re
from typing import Dict, List, Optional, Tuple

from zlperf.formats import EventFormat

#: Names a tracefs filter accepts besides the event's fields (kernel/trace/trace_events_filter.c):
#: the CPU and the task's comm; common_* fields are in every format already.
FILTER_PSEUDO_FIELDS = {"CPU": "numeric", "cpu": "numeric", "COMM": "string", "comm": "string"}

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<op>==|!=|<=|>=|<|>|&&|\|\||&|~|!|\(|\))"
    r"|(?P<str>\"[^\"]*\"|'[^']*')"
    r"|(?P<word>[^\s()!=<>&|~\"']+))"
)
_CMP_OPS = {"==", "!=", "<", "<=", ">", ">=", "&", "~"}
_NUM_RE = re.compile(r"^-?(0x[0-9a-fA-F]+|[0-9]+)$")
_FIELD_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.function)?$")


def max_filter_bytes() -> int:
    """The longest filter the kernel takes: event_filter_write() in kernel/trace/trace_events.c refuses
    writes of PAGE_SIZE bytes or more (perf's PERF_EVENT_IOC_SET_FILTER copies at most PAGE_SIZE too)."""
    return os.sysconf("SC_PAGE_SIZE") - 1


def check_filter(expr: str, fmt: Optional[EventFormat]) -> List[Tuple[int, str]]:
    """Problems of a tracefs filter ``expr`` as (character offset, message); [] when it is fine.

    Checks the length the kernel accepts, the grammar (predicates ``FIELD OP VALUE`` joined by && || !
    and parentheses), that each FIELD is in ``fmt`` (skipped when ``fmt`` is None) and that the value
    fits the field's type.
    """
    limit = max_filter_bytes()
    if len(expr.encode("utf-8", "surrogateescape")) > limit:
        return [(0, f"{len(expr.encode('utf-8', 'surrogateescape'))} bytes long: the kernel takes filters "
                    f"of at most {limit} bytes")]
    tokens: List[Tuple[str, str, int]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if not m or m.end() == pos:
            if expr[pos:].strip() == "":
                break
            return [(pos, f"cannot read the filter at {expr[pos:][:40]!r}")]
        kind = m.lastgroup or ""
        text = m.group(kind)
        tokens.append((kind, text, m.start(kind)))
        pos = m.end()
    if not tokens:
        return [(0, "empty filter")]
    problems: List[Tuple[int, str]] = []
    try:
        _parse(tokens, len(expr), fmt, problems)
    except _FilterSyntax as exc:
        return [(exc.offset, exc.problem)]
    return problems


def _parse(tokens: List[Tuple[str, str, int]], end: int, fmt: Optional[EventFormat],
           problems: List[Tuple[int, str]]) -> None:
    """Walk ``EXPR := TERM (('&&' | '||') TERM)*; TERM := '!' TERM | '(' EXPR ')' | FIELD OP VALUE``.

    A loop with a stack of open parentheses, not recursive descent: the kernel's own parser nests
    as deep as the length limit allows (2000 parentheses), deeper than Python's stack.
    """
    opened: List[int] = []  # offsets of the '(' not closed yet, innermost last
    want_term = True
    i = 0

    def at(j: int) -> Tuple[str, str, int]:
        return tokens[j] if j < len(tokens) else ("end", "", end)

    while True:
        kind, text, off = at(i)
        if want_term:
            if kind == "op" and text in ("!", "("):
                if text == "(":
                    opened.append(off)
                i += 1
                continue
            if kind != "word" or not _FIELD_NAME_RE.match(text):
                raise _FilterSyntax(off, f"expected a field name, got {text or 'the end'!r}")
            kop, op, ooff = at(i + 1)
            if kop != "op" or op not in _CMP_OPS:
                raise _FilterSyntax(ooff, f"expected a comparison (== != < <= > >= & ~) after {text!r}")
            kval, val, voff = at(i + 2)
            if kval not in ("word", "str"):
                raise _FilterSyntax(voff, f"expected a value after {text} {op}")
            _check_predicate(text, off, op, ooff, kval, val, voff, fmt, problems)
            i += 3
            want_term = False
        elif text in ("&&", "||"):
            i += 1
            want_term = True
        elif text == ")" and opened:
            opened.pop()
            i += 1
        elif kind == "end":
            if opened:
                raise _FilterSyntax(opened[-1], "missing ')' for this '('")
            return
        else:
            raise _FilterSyntax(off, f"unexpected {text!r}")


class _FilterSyntax(Exception):
    def __init__(self, offset: int, problem: str):
        super().__init__(problem)
        self.offset = offset
        self.problem = problem


def _check_predicate(
    name: str, off: int, op: str, ooff: int, kval: str, val: str, voff: int,
    fmt: Optional[EventFormat], problems: List[Tuple[int, str]],
) -> None:
    """Field exists, operator and value fit its type: the checks the kernel's filter parser makes."""
    if fmt is None:
        return
    pseudo: Dict[str, str] = FILTER_PSEUDO_FIELDS
    base, _, suffix = name.partition(".")
    f = fmt.field(base)
    if f is None and base not in pseudo:
        own = [x for x in fmt.field_names if not x.startswith("common_")]
        close = difflib.get_close_matches(base, fmt.field_names + list(pseudo), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        problems.append((off, f"{fmt.full_name} has no field {base!r} ({hint}fields: {', '.join(own)})"))
        return
    is_string = pseudo.get(base) == "string" if f is None else (f.is_string or f.type.startswith("char"))
    if suffix and (is_string or f is None):
        problems.append((off, f"'.{suffix}' only applies to a numeric field holding an address"))
        return
    if is_string:
        if op not in ("==", "!=", "~"):
            problems.append((ooff, f"{base} is text: compare it with ==, != or ~ (glob)"))
        elif kval != "str":
            problems.append((voff, f"{base} is text: put {val!r} in quotes (the kernel requires them)"))
    elif suffix == "function":
        # Since v6.2 (commit 39b3ec14ffad) an address field may be compared as FIELD.function == SYMBOL.
        if op not in ("==", "!="):
            problems.append((ooff, f"{name} compares with == or != to a function name"))
        elif kval != "word":
            problems.append((voff, f"{name} takes a bare function name, not a quoted string"))
    else:
        if op == "~":
            problems.append((ooff, f"{base} is a number: '~' (glob) only works on text fields"))
        elif not (kval == "word" and _NUM_RE.match(val)):
            problems.append((voff, f"{base} is a number: {val!r} is not one (decimal or 0x hex)"))
        elif val.startswith("-") and f is not None and not f.signed:
            problems.append((voff, f"{base} is unsigned ({f.type}): {val} is out of range"))
