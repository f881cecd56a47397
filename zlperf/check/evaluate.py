"""Budgets against a ``zlperf.report/1`` document: one outcome per budget and group (overall, zone, caller).

A measured value above its limit is over budget; equal is within. A value the recording cannot show (hold
times of a wait-time recording) is an error, never a pass; a group with nothing to measure (no waits) is 0.
"""

from __future__ import annotations

__all__ = ["Outcome", "evaluate", "measure", "STATUSES"]

from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

from zlperf.recipes.budgets import METRICS, Budget, format_value
from zlperf.recipes.yamldoc import one_line

#: An outcome's status: within budget, over it, or not evaluable on this recording.
STATUSES = ("within", "over", "error")

#: What each capability is, and the words the document's ``cannot_show`` line about it starts with.
_CAPABILITY = {
    "contended_events": ("contended events", ("contended events",)),
    "acquisitions": ("acquisitions", ("acquisitions", "uncontended acquisitions")),
    "contended": ("which acquisitions were contended", ("acquisitions", "uncontended acquisitions")),
    "waits": ("wait times", ("acquisitions and wait times", "wait")),
    "holds": ("hold times", ("hold times", "uncontended acquisitions and hold times")),
    "holders": ("who held the lock (it needs hold times)", ("hold times", "uncontended acquisitions and hold times")),
}


@dataclass(frozen=True)
class Outcome:
    """One budget evaluated on one group."""

    budget: Budget
    group: str  #: "overall", "zone 1:Normal", "caller free_one_page+0x4e"
    status: str  #: one of STATUSES
    measured: Optional[float] = None  #: None for errors
    detail: str = ""  #: errors: why it cannot be evaluated; others: a note such as "no waits"

    @property
    def line(self) -> str:
        """The one-line statement: what, where, measured, budget, and where the recipe sets it."""
        b = self.budget
        f, line, col = b.mark
        at = f"({f}:{line}:{col})"
        if self.status == "error":
            return f"cannot check {b.metric}, {self.group}: {self.detail} {at}"
        assert self.measured is not None
        sign = ">" if self.status == "over" else "<="
        note = f" [{self.detail}]" if self.detail else ""
        word = "over budget" if self.status == "over" else "within budget"
        return (f"{word}: {b.metric}, {self.group}: measured {format_value(b.metric, self.measured)} {sign} "
                f"budget {format_value(b.metric, b.limit)}{note} {at}")


def _cannot(doc: dict, needs: str) -> str:
    """Why the recording cannot show what ``needs`` names, with the document's own reason when it has one."""
    what, starts = _CAPABILITY.get(needs, (needs, ()))
    said = next((c for c in doc.get("cannot_show") or [] if isinstance(c, str) and c.startswith(starts)), None)
    reason = f" ({one_line(said.split(': ', 1)[-1])})" if said else ""
    return f"a {one_line(str(doc.get('profile') or 'unknown-profile'))} recording cannot show {what}{reason}"


def _can(doc: dict, needs: str, entry: dict) -> bool:
    can = doc.get("can_show") or {}
    if needs == "contended":
        return bool(can.get("acquisitions")) and entry.get("contended") is not None
    return bool(can.get(needs)) if needs else True


def measure(doc: dict, entry: dict, scope: str, label: str, metric: str) -> Tuple[Optional[float], str]:
    """(value, note) of ``metric`` for one group entry; (None, why) when the recording cannot tell."""
    spec = METRICS[metric]
    if metric == "missed_events":
        return float(doc.get("missed_events") or 0), ""
    if metric == "not_traced_share":
        return _not_traced_share(doc, scope, label)
    if not _can(doc, spec.needs, entry):
        return None, _cannot(doc, spec.needs)
    if "." in metric:
        name, stat = metric.split(".", 1)
        st = entry.get(name)
        if not isinstance(st, dict):
            return None, _cannot(doc, spec.needs)
        if not st.get("count"):
            return 0.0, f"no {'waits' if name == 'wait_ns' else 'holds'}"
        value = st.get(stat)
        return (None, f"the document has no {metric}") if value is None else (float(value), "")
    value = entry.get(metric)
    if value is not None:
        return float(value), ""
    if metric == "contention_ratio" and entry.get("acquisitions") == 0:
        return 0.0, "no acquisitions"
    if metric in ("contended_per_sec", "spinning_cpus", "held_fraction"):
        return None, "the window is 0 s long (fewer than two events): no rate or share of time"
    return None, _cannot(doc, spec.needs)


def _not_traced_share(doc: dict, scope: str, label: str) -> Tuple[Optional[float], str]:
    """Waits behind a (not traced) holder / all waits: from ``holders`` overall, from ``handoffs`` per caller."""
    holders = doc.get("holders")
    if not isinstance(holders, dict):
        return None, _cannot(doc, "holders")
    if scope == "total":
        waits, hidden = holders.get("waits") or 0, holders.get("not_traced") or 0
    else:
        rows = [h for h in doc.get("handoffs") or [] if h.get("waiter_caller") == label]
        waits = sum(h.get("waits") or 0 for h in rows)
        hidden = sum(h.get("waits") or 0 for h in rows if h.get("holder_caller") == "(not traced)")
    if not waits:
        return 0.0, "no waits"
    return hidden / waits, f"{hidden} of {waits} waits"


def _zone_matches(selector: str, entry: dict) -> bool:
    if selector == "*":
        return True
    if ":" in selector or "@" in selector:
        return entry.get("label") == selector
    return entry.get("zone") == selector  # a zone name on every node


def _caller_matches(selector: str, entry: dict) -> bool:
    caller = entry.get("caller")
    if not isinstance(caller, str):
        return False
    if selector == "*":
        return entry.get("role") != "unlock"  # release-only addresses carry no waits of their own
    return caller == selector or caller.split("+", 1)[0] == selector


def _groups(doc: dict, b: Budget) -> List[Tuple[str, dict]]:
    """(label, entry) of every group ``b`` applies to."""
    if b.scope == "total":
        return [("", doc.get("totals") or {})]
    entries = [e for e in doc.get(b.scope) or [] if isinstance(e, dict)]
    if b.scope == "zones":
        return [(str(e.get("label")), e) for e in entries if _zone_matches(b.selector, e)]
    return [(str(e.get("caller")), e) for e in entries if _caller_matches(b.selector, e)]


def _where(scope: str, label: str) -> str:
    return "overall" if scope == "total" else f"{scope[:-1]} {one_line(label)}"


def evaluate(doc: dict, budgets: List[Budget]) -> List[Outcome]:
    """Every budget on every group it applies to, in the recipe's order.

    A '*' budget applies to every zone (caller) that no budget of the same metric names on its own: the named
    one overrides it. A named zone or caller missing from the recording is an error (a typo must not pass).
    """
    named: Dict[Tuple[str, str], Set[str]] = {}  # (scope, metric) -> labels some named budget covers
    for b in budgets:
        if b.scope != "total" and b.selector != "*":
            named.setdefault((b.scope, b.metric), set()).update(label for label, _ in _groups(doc, b))
    out: List[Outcome] = []
    for b in budgets:
        groups = _groups(doc, b)
        if b.selector == "*":
            groups = [(label, e) for label, e in groups if label not in named.get((b.scope, b.metric), set())]
            if not groups:
                out.append(Outcome(b, f"every {b.scope[:-1]}", "within", 0.0,
                                   f"no {b.scope} in this recording besides those named"))
                continue
        elif not groups:
            present = ", ".join(sorted({_label(b.scope, e) for e in doc.get(b.scope) or [] if isinstance(e, dict)}))
            out.append(Outcome(b, _where(b.scope, b.selector), "error", None,
                               f"no {b.scope[:-1]} {one_line(b.selector)!r} in this recording "
                               f"({b.scope}: {present[:300] or 'none'})"))
            continue
        for label, entry in groups:
            value, note = measure(doc, entry, b.scope, label, b.metric)
            where = _where(b.scope, label)
            if value is None:
                out.append(Outcome(b, where, "error", None, note))
            else:
                out.append(Outcome(b, where, "over" if value > b.limit else "within", value, note))
    return out


def _label(scope: str, entry: dict) -> str:
    return one_line(str(entry.get("label") if scope == "zones" else entry.get("caller")))

