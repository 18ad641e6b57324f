"""XCCDF 1.2 results: a Benchmark generated from the policy plus one TestResult per host."""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from typing import Any

from opsrunner.reports.document import Report
from opsrunner.reports.safe import one_line, visible

NS = "http://checklists.nist.gov/xccdf/1.2"
PREFIX = "xccdf_com.opsrunner"
# Scoring's statuses in XCCDF's words: stale evidence is a failed check (the message says why).
RESULT = {
    "pass": "pass",
    "fail": "fail",
    "stale": "fail",
    "error": "error",
    "unknown": "unknown",
    "notapplicable": "notapplicable",
    "notchecked": "notchecked",
}
_SEVERITY = {"critical": "high", "high": "high", "medium": "medium", "low": "low"}
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")


def _slug(text: str) -> str:
    """An NCName-safe id part; a hash suffix keeps ids of mangled names unique."""
    clean = _UNSAFE.sub("-", text)
    if clean == text and clean:
        return clean
    return f"{clean[:40]}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    node = ET.SubElement(
        parent, f"{{{NS}}}{tag}", {k.replace("_", "-"): v for k, v in attrs.items()}
    )
    if text is not None:
        node.text = visible(text)
    return node


def rule_id(control: str) -> str:
    """The XCCDF id of a control's Rule."""
    return f"{PREFIX}_rule_{_slug(control)}"


def render(report: Report) -> str:
    """The XCCDF 1.2 document (oscap reads it: `oscap xccdf generate report FILE`)."""
    ET.register_namespace("", NS)
    d: dict[str, Any] = report.data
    pol, run = d["policy"], d["run"]
    bench = ET.Element(
        f"{{{NS}}}Benchmark",
        {
            "id": f"{PREFIX}_benchmark_{_slug(pol['name'])}",
            "resolved": "1",
            "style": "SCAP_1.2",
            "{http://www.w3.org/XML/1998/namespace}lang": "en",
        },
    )
    _el(bench, "status", "accepted", date=d["as_of"][:10])
    _el(bench, "title", f"{pol['name']} — {pol['regulation_title_zh']}")
    _el(
        bench,
        "description",
        f"{pol['regulation_title']} ({pol['regulation_title_zh']}),"
        f" policy {pol['commit'] or '(no git)'} digest {pol['digest']}",
    )
    _el(bench, "version", str(pol["version"]))
    _el(bench, "model", system="urn:xccdf:scoring:default")
    _el(bench, "model", system="urn:xccdf:scoring:flat")

    chapters = {c["number"]: c for c in d["clauses"] if "." not in c["number"]}
    by_chapter: dict[str, list[dict[str, Any]]] = {}
    for control in d["controls"]:
        first = control["clauses"][0] if control["clauses"] else "0"
        by_chapter.setdefault(first.split(".")[0], []).append(control)
    for number in sorted(by_chapter, key=lambda n: int(n) if n.isdigit() else 0):
        chapter = chapters.get(number, {"heading": "", "heading_zh": "", "text": ""})
        group = _el(bench, "Group", id=f"{PREFIX}_group_chapter-{_slug(number)}")
        _el(group, "title", f"{number} {chapter['heading']} {chapter['heading_zh']}".strip())
        _el(group, "description", chapter["text"] or number)
        for control in by_chapter[number]:
            rule = _el(
                group,
                "Rule",
                id=rule_id(control["id"]),
                selected="true",
                severity=_SEVERITY.get(control["severity"], "unknown"),
                weight=f"{control['weight']:g}",
            )
            _el(rule, "title", f"{control['id']} {one_line(control['title'])}")
            _el(rule, "description", control["description"])
            for clause in control["clauses"]:
                _el(rule, "reference", f"{pol['regulation_title_zh']} {clause}")
            _el(rule, "ident", control["id"], system="urn:opsrunner:control")

    titles = {c["id"]: c for c in d["controls"]}
    hosts: dict[str, list[dict[str, Any]]] = {}
    for row in d["results"]:
        hosts.setdefault(row["host"], []).append(row)
    host_scores = {h["host"]: h for h in d["hosts"]}
    for name, rows in hosts.items():
        test = _el(
            bench,
            "TestResult",
            id=f"{PREFIX}_testresult_{_slug(name)}",
            start_time=run["started_at"],
            end_time=run["ended_at"] or run["started_at"],
            version=str(pol["version"]),
        )
        _el(test, "title", f"{run['mode']} {run['ident']} on {one_line(name)}")
        if run["user"]:
            _el(test, "identity", run["user"], authenticated="false", privileged="false")
        _el(test, "target", one_line(name))
        for row in rows:
            control = titles.get(row["control"])
            result = _el(
                test,
                "rule-result",
                idref=rule_id(row["control"]),
                time=row["evidence_at"] or d["as_of"],
                severity=_SEVERITY.get(row["severity"], "unknown"),
                weight=f"{control['weight'] if control else 1:g}",
            )
            # XCCDF holds the checks' own (raw) results; a waiver is named in the message,
            # and the effective score sits beside the raw one (oscap rejects our overrides).
            _el(result, "result", RESULT.get(row["raw"], "unknown"))
            _el(result, "ident", row["control"], system="urn:opsrunner:control")
            message = row["reason"] or row["evidence"]
            if row["raw"] == "stale":
                message = f"stale: {message}"
            if row["waiver"]:
                message = f"waived by {row['waiver']}: {message}"
            if message:
                _el(result, "message", one_line(message, 1000), severity="info")
        summary = host_scores.get(name)
        for view, system in (
            ("raw", "urn:xccdf:scoring:default"),
            ("effective", "urn:opsrunner:scoring:effective"),
        ):
            percent = summary["scores"][view]["all"]["percent"] if summary else None
            _el(test, "score", f"{percent or 0.0:.2f}", system=system, maximum="100")
    ET.indent(bench, space=" ")
    body = ET.tostring(bench, encoding="unicode", short_empty_elements=True)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"
