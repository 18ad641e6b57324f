"""SARIF 2.1.0 for code scanning: a rule per control, a result per failing host and control."""

from __future__ import annotations

import json
from typing import Any

from opsrunner.reports.document import Report, failing
from opsrunner.reports.safe import one_line

SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
_SECURITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}


def render(report: Report) -> str:
    """Every counted, not-passing result (effective view); waived ones as suppressed results."""
    controls = report["controls"]
    index = {c["id"]: n for n, c in enumerate(controls)}
    rules = [
        {
            "id": c["id"],
            "name": c["id"].replace("-", ""),
            "shortDescription": {"text": one_line(c["title"])},
            "fullDescription": {"text": one_line(c["description"])},
            "help": {
                "text": one_line(
                    f"Clauses {', '.join(c['clauses'])}; owner {c['owner']}; "
                    f"checked {c['frequency']}" + (f" by role {c['role']}" if c["role"] else "")
                )
            },
            "defaultConfiguration": {"level": _LEVEL.get(c["severity"], "warning")},
            "properties": {
                "tags": ["compliance", c["kind"], *[f"clause-{s}" for s in c["clauses"]]],
                "security-severity": _SECURITY.get(c["severity"], "5.0"),
                "severity": c["severity"],
                "clauses": c["clauses"],
            },
        }
        for c in controls
    ]
    results: list[dict[str, Any]] = []
    for row in report["results"]:
        waived = row["effective"] == "waived"
        if not (failing(row["effective"]) or waived):
            continue
        control = controls[index[row["control"]]] if row["control"] in index else None
        level = _LEVEL.get(row["severity"], "warning")
        text = one_line(f"{row['host']}: {row['control']} {row['raw']}", 200)
        if row["reason"]:
            text += ": " + one_line(row["reason"], 800)
        result: dict[str, Any] = {
            "ruleId": row["control"],
            "level": level,
            "kind": "fail",
            "message": {"text": text},
            "locations": [
                {
                    "logicalLocations": [
                        {
                            "name": one_line(row["host"]),
                            "fullyQualifiedName": one_line(f"{row['host']}/{row['control']}"),
                            "kind": "resource",
                        }
                    ]
                }
            ],
            "partialFingerprints": {
                "opsrunnerHostControl/v1": one_line(f"{row['host']}|{row['control']}")
            },
            "properties": {
                "host": one_line(row["host"]),
                "raw": row["raw"],
                "effective": row["effective"],
                "evidence_sha256": row["evidence_sha256"],
                "evidence_at": row["evidence_at"],
            },
        }
        if control is not None:
            result["ruleIndex"] = index[row["control"]]
        if waived:
            result["suppressions"] = [
                {
                    "kind": "external",
                    "status": "accepted",
                    "justification": f"waiver {row['waiver']}",
                }
            ]
        results.append(result)
    run = report["run"]
    doc = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "opsrunner",
                        "version": report["generator"].split(" ", 1)[-1],
                        "rules": rules,
                    }
                },
                "automationDetails": {"id": one_line(f"opsrunner/{run['mode']}/{run['ident']}")},
                "invocations": [
                    {
                        "executionSuccessful": run["status"] == "successful",
                        "startTimeUtc": run["started_at"],
                        "endTimeUtc": run["ended_at"] or run["started_at"],
                    }
                ],
                "results": results,
                "properties": {
                    "grade": report["grade"],
                    "policy_commit": run["policy_commit"],
                    "policy_digest": run["policy_digest"],
                    "effective_all": report["scores"]["effective"]["all"]["percent"],
                    "raw_all": report["scores"]["raw"]["all"]["percent"],
                },
            }
        ],
    }
    return json.dumps(doc, sort_keys=True, ensure_ascii=True, separators=(",", ":")) + "\n"
