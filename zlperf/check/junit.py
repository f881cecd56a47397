"""JUnit XML of a check, for CI systems: one testsuite per recipe, one testcase per budget and group.

Over budget is a ``<failure>``, a budget the recording cannot evaluate an ``<error>``; the file is written
atomically and every text from the trace or the recipe is made valid XML 1.0 (no control characters).
"""

from __future__ import annotations

__all__ = ["junit_xml", "write_junit"]

import re
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional

from zlperf.check.evaluate import Outcome
from zlperf.safeio import open_atomic

# Characters XML 1.0 does not allow even escaped (C0 controls but tab/newline/CR, surrogates, U+FFFE/FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _x(text: object) -> str:
    """``text`` as valid XML 1.0 character data (forbidden characters written as \\xNN)."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def _case_name(o: Outcome) -> str:
    b = o.budget
    label = o.group.split(" ", 1)[1] if " " in o.group else o.group
    extra = f" [{b.scope}: {b.selector}]" if b.selector not in ("", "*") and b.selector != label else ""
    return f"{b.metric}, {o.group}{extra}"


def junit_xml(outcomes: List[Outcome], *, suite: str, properties: Dict[str, str], time_s: float = 0.0,
              timestamp: Optional[str] = None, hostname: Optional[str] = None) -> str:
    """The JUnit XML document of ``outcomes`` (one ``<testsuite>`` named ``suite``)."""
    failures = sum(o.status == "over" for o in outcomes)
    errors = sum(o.status == "error" for o in outcomes)
    counts = {"tests": str(len(outcomes)), "failures": str(failures), "errors": str(errors), "skipped": "0",
              "time": f"{time_s:.3f}"}
    root = ET.Element("testsuites", {"name": "zlperf check", **counts})
    attrs = {"name": _x(suite), **counts}
    if timestamp:
        attrs["timestamp"] = timestamp
    if hostname:
        attrs["hostname"] = _x(hostname)
    ts = ET.SubElement(root, "testsuite", attrs)
    props = ET.SubElement(ts, "properties")
    for k, v in properties.items():
        ET.SubElement(props, "property", {"name": _x(k), "value": _x(v)})
    for o in outcomes:
        b = o.budget
        f, line, _col = b.mark
        case = ET.SubElement(ts, "testcase", {
            "name": _x(_case_name(o)), "classname": _x(f"zlperf.check.{suite}.{b.scope}"), "time": "0",
            "file": _x(f), "line": str(line)})
        if o.status == "over":
            ET.SubElement(case, "failure", {"message": _x(o.line), "type": "OverBudget"}).text = _x(o.line)
        elif o.status == "error":
            ET.SubElement(case, "error", {"message": _x(o.line), "type": "NotEvaluable"}).text = _x(o.line)
        else:
            ET.SubElement(case, "system-out").text = _x(o.line)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str, outcomes: List[Outcome], **kw: object) -> None:
    """Write :func:`junit_xml` to ``path`` atomically (a planted symlink is refused, not followed)."""
    text = junit_xml(outcomes, **kw)  # type: ignore[arg-type]
    with open_atomic(path, "JUnit report") as fh:
        fh.write(text)
