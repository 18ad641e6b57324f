"""JUnit XML for CI: one test suite per host, one test case per host x control."""

from __future__ import annotations

from typing import Any

from junitparser import Error, Failure, JUnitXml, Skipped, SystemOut, TestCase, TestSuite

from opsrunner.reports.document import Report
from opsrunner.reports.safe import one_line, visible

# effective status -> what CI makes of it; waived passes (its waiver is named in system-out).
_FAILURE = frozenset({"fail", "stale"})
_ERROR = frozenset({"error", "unknown"})
_SKIPPED = frozenset({"notapplicable", "notchecked"})


def _case(row: dict[str, Any], title: str) -> Any:
    case: Any = TestCase(
        f"{row['control']} {one_line(title)}", f"opsrunner.{one_line(row['host'])}"
    )
    status = row["effective"]
    message = one_line(f"{status}: {row['reason']}" if row["reason"] else status, 500)
    body = visible(row["evidence"]) if row["evidence"] else None
    if status in _FAILURE:
        result: Any = Failure(message, status)
    elif status in _ERROR:
        result = Error(message, status)
    elif status in _SKIPPED:
        result = Skipped(message, status)
    else:
        result = None
    if result is not None:
        if body:
            result.text = body
        case.result = [result]
    out = [f"status raw={row['raw']} effective={status}", f"severity {row['severity']}"]
    if row["waiver"]:
        out.append(f"waived by {row['waiver']}")
    if row["evidence_sha256"]:
        out.append(f"evidence sha256 {row['evidence_sha256']}")
    case.append(SystemOut("\n".join(out)))
    return case


def render(report: Report) -> str:
    """The whole run as <testsuites>; counts agree with the document's effective statuses."""
    titles = {c["id"]: c["title"] for c in report["controls"]}
    suites: dict[str, Any] = {}
    xml: Any = JUnitXml(f"opsrunner {one_line(report['run']['ident'])}")
    for row in report["results"]:
        suite: Any = suites.get(row["host"])
        if suite is None:
            suite = TestSuite(one_line(row["host"]))
            suite.hostname = one_line(row["host"])
            suite.timestamp = report["as_of"]
            suite.add_property("run", one_line(report["run"]["ident"]))
            suite.add_property("policy_digest", one_line(report["run"]["policy_digest"]))
            suites[row["host"]] = suite
            xml.add_testsuite(suite)
        suite.add_testcase(_case(row, titles.get(row["control"], "")))
    for suite in suites.values():
        suite.update_statistics()
        suite.time = 0
    xml.update_statistics()
    xml.time = 0
    # The JUnit schema CI tools validate against has no `skipped` on <testsuites>.
    xml._elem.attrib.pop("skipped", None)
    text: bytes = xml.tostring()
    head = '<?xml version="1.0" encoding="utf-8"?>\n'
    body = text.decode("utf-8")
    if body.startswith("<?xml"):
        return body if body.endswith("\n") else body + "\n"
    return head + body + "\n"
