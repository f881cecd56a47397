"""Checking a recording against a recipe's budgets: ``evaluate`` (the outcomes), ``junit`` (CI), ``inputs``.

``zlperf check`` and ``zlperf record`` (after recording) use :func:`check_document`; the exit status is
:func:`exit_status`: 0 within every budget, 1 over at least one, 2 when one cannot be evaluated.
"""

from __future__ import annotations

__all__ = ["Outcome", "evaluate", "check_document", "exit_status", "summary_line", "write_junit", "junit_xml",
           "document_of", "NO_BUDGETS"]

from typing import List

from zlperf.check.evaluate import Outcome, evaluate
from zlperf.check.inputs import document_of
from zlperf.check.junit import junit_xml, write_junit
from zlperf.errors import ZlperfError
from zlperf.recipes import Recipe
from zlperf.recipes.budgets import budget_list

#: Exit statuses of a check.
WITHIN, OVER, ERROR = 0, 1, 2
NO_BUDGETS = "has no budgets: add `budgets:` (METRIC: LIMIT, zones:, callers:), see `zlperf recipes -h`"


def check_document(doc: dict, recipe: Recipe) -> List[Outcome]:
    """Every budget of ``recipe`` on the document ``doc``; ZlperfError when the recipe has none."""
    budgets = budget_list(recipe)
    if not budgets:
        raise ZlperfError(f"{recipe.path}: recipe {recipe.name} {NO_BUDGETS}")
    return evaluate(doc, budgets)


def exit_status(outcomes: List[Outcome]) -> int:
    """2 if any budget could not be evaluated, else 1 if any is over, else 0."""
    if any(o.status == "error" for o in outcomes):
        return ERROR
    return OVER if any(o.status == "over" for o in outcomes) else WITHIN


def summary_line(outcomes: List[Outcome], recipe: Recipe, path: str) -> str:
    """``zlperf check: FILE against RECIPE: N checks: W within, O over budget, E cannot be checked``."""
    n = {s: sum(o.status == s for o in outcomes) for s in ("within", "over", "error")}
    verdict = {WITHIN: "within budget", OVER: "OVER BUDGET", ERROR: "NOT CHECKED"}[exit_status(outcomes)]
    version = f" {recipe.version}" if recipe.version else ""
    return (f"zlperf check: {path} against {recipe.name}{version} ({recipe.origin}): {verdict}: "
            f"{len(outcomes)} checks, {n['within']} within, {n['over']} over budget, {n['error']} cannot be checked")
