"""OSCAL JSON: assessment-results of a run, the regulation as a catalog, the roles as components.

UUIDs are version 5, derived from the policy name and the object's identity (control, host,
clause, role), so the same observation keeps its UUID from run to run and exports diff cleanly.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from opsrunner.reports.document import Report
from opsrunner.reports.safe import one_line, visible

OSCAL_VERSION = "1.2.1"
NS = "urn:opsrunner:oscal"
_BASE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:opsrunner")


def stable_uuid(policy: str, *parts: str) -> str:
    """A UUIDv5 from the policy's name and the parts naming one object."""
    return str(uuid.uuid5(_BASE, "\x1f".join((policy, *parts))))


def _prop(name: str, value: object) -> dict[str, str]:
    text = one_line(value) or "-"
    return {"name": name, "ns": NS, "value": text}


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, ensure_ascii=True, separators=(",", ":")) + "\n"


def clause_id(number: str) -> str:
    """The catalog id of a clause (an OSCAL token must start with a letter)."""
    return f"clause-{number}"


def _metadata(d: dict[str, Any], title: str) -> dict[str, Any]:
    return {
        "title": title,
        "last-modified": d["as_of"],
        "version": str(d["policy"]["version"]),
        "oscal-version": OSCAL_VERSION,
    }


def render_assessment_results(report: Report) -> str:
    """One result for the run: observations per host x control, findings per control."""
    d: dict[str, Any] = report.data
    policy, run = d["policy"]["name"], d["run"]
    hosts = sorted({r["host"] for r in d["results"]})
    host_uuid = {h: stable_uuid(policy, "host", h) for h in hosts}
    observations = []
    by_control: dict[str, list[dict[str, Any]]] = {}
    for row in d["results"]:
        obs_uuid = stable_uuid(policy, "observation", row["control"], row["host"])
        evidence = {
            "description": visible(row["evidence"] or row["reason"] or row["effective"]),
            "props": [
                _prop("evidence-sha256", row["evidence_sha256"] or "none"),
                _prop("task", row["task"] or "none"),
            ],
        }
        observations.append(
            {
                "uuid": obs_uuid,
                "title": f"{row['control']} on {one_line(row['host'])}",
                "description": visible(
                    f"{row['control']} on {row['host']}: raw {row['raw']}, effective"
                    f" {row['effective']}" + (f" ({row['reason']})" if row["reason"] else "")
                ),
                "props": [
                    _prop("control", row["control"]),
                    _prop("raw-status", row["raw"]),
                    _prop("effective-status", row["effective"]),
                    *([_prop("waiver", row["waiver"])] if row["waiver"] else []),
                ],
                "methods": ["TEST" if row["kind"] == "automated" else "EXAMINE"],
                "subjects": [
                    {
                        "subject-uuid": host_uuid[row["host"]],
                        "type": "inventory-item",
                        "title": one_line(row["host"]),
                    }
                ],
                "collected": row["evidence_at"] or d["as_of"],
                "relevant-evidence": [evidence],
            }
        )
        by_control.setdefault(row["control"], []).append({"uuid": obs_uuid, "row": row})
    findings = []
    titles = {c["id"]: c for c in d["controls"]}
    for control_id, entries in sorted(by_control.items()):
        statuses = [e["row"]["effective"] for e in entries]
        counted = [s for s in statuses if s not in ("notapplicable", "notchecked")]
        satisfied = bool(counted) and all(s in ("pass", "waived") for s in counted)
        control = titles.get(control_id, {"title": control_id, "clauses": []})
        findings.append(
            {
                "uuid": stable_uuid(policy, "finding", control_id),
                "title": f"{control_id} {one_line(control['title'])}",
                "description": (
                    f"{sum(1 for s in counted if s in ('pass', 'waived'))} of {len(counted)}"
                    f" counted results pass (effective view)"
                ),
                "props": [_prop("clause", c) for c in control["clauses"]] or [_prop("clause", "-")],
                "target": {
                    "type": "objective-id",
                    "target-id": control_id,
                    "status": {"state": "satisfied" if satisfied else "not-satisfied"},
                },
                "related-observations": [{"observation-uuid": e["uuid"]} for e in entries],
            }
        )
    plan = stable_uuid(policy, "assessment-plan")
    doc: dict[str, Any] = {
        "assessment-results": {
            "uuid": stable_uuid(policy, "assessment-results", run["ident"]),
            "metadata": _metadata(d, f"{policy}: {run['mode']} run {run['ident']}"),
            "import-ap": {"href": f"#{plan}"},
            "results": [
                {
                    "uuid": stable_uuid(policy, "result", run["ident"]),
                    "title": f"{run['mode']} {run['ident']}",
                    "description": (
                        f"Run {run['ident']} ({run['status']}), policy commit"
                        f" {run['policy_commit'] or '(no git)'}, digest {run['policy_digest']},"
                        f" grade {d['grade']}"
                    ),
                    "start": run["started_at"],
                    "end": run["ended_at"] or run["started_at"],
                    "props": [
                        _prop("grade", d["grade"]),
                        _prop("effective-score", d["scores"]["effective"]["all"]["percent"]),
                        _prop("raw-score", d["scores"]["raw"]["all"]["percent"]),
                    ],
                    "local-definitions": {
                        "inventory-items": [
                            {
                                "uuid": host_uuid[h],
                                "description": visible(h),
                                "props": [_prop("hostname", h)],
                            }
                            for h in hosts
                        ]
                    }
                    if hosts
                    else {},
                    "reviewed-controls": {"control-selections": [{"include-all": {}}]},
                    **({"observations": observations} if observations else {}),
                    **({"findings": findings} if findings else {}),
                }
            ],
            "back-matter": {
                "resources": [
                    {
                        "uuid": plan,
                        "title": "The policy the run was assessed against",
                        "description": (
                            f"{policy} {d['policy']['version']}: commit"
                            f" {run['policy_commit'] or '(no git)'} digest {run['policy_digest']}"
                        ),
                    }
                ]
            },
        }
    }
    if not doc["assessment-results"]["results"][0]["local-definitions"]:
        del doc["assessment-results"]["results"][0]["local-definitions"]
    return _dump(doc)


def render_catalog(report: Report) -> str:
    """The regulation as an OSCAL catalog: chapters as groups, clauses as (nested) controls."""
    d: dict[str, Any] = report.data
    policy = d["policy"]["name"]
    clauses = d["clauses"]
    children: dict[str | None, list[dict[str, Any]]] = {}
    for clause in clauses:
        number = clause["number"]
        parent = number.rsplit(".", 1)[0] if "." in number else None
        children.setdefault(parent, []).append(clause)

    def control(clause: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": clause_id(clause["number"]),
            "title": one_line(clause["heading_zh"] or clause["heading"] or clause["number"]),
            "props": [
                {"name": "label", "value": clause["number"]},
                *([_prop("heading-en", clause["heading"])] if clause["heading"] else []),
                *([_prop("implemented-by", c) for c in clause["controls"]]),
            ],
            "parts": [
                {
                    "id": f"{clause_id(clause['number'])}_smt",
                    "name": "statement",
                    "prose": visible(clause["text"]),
                }
            ],
        }
        if clause["not_applicable"]:
            out["parts"].append(
                {
                    "id": f"{clause_id(clause['number'])}_na",
                    "name": "guidance",
                    "prose": visible(f"Not applicable: {clause['not_applicable']}"),
                }
            )
        subs = [control(c) for c in children.get(clause["number"], [])]
        if subs:
            out["controls"] = subs
        return out

    groups = []
    for chapter in children.get(None, []):
        group: dict[str, Any] = {
            "id": f"chapter-{chapter['number']}",
            "title": one_line(chapter["heading_zh"] or chapter["heading"]),
            "props": [{"name": "label", "value": chapter["number"]}],
            "parts": [{"name": "overview", "prose": visible(chapter["text"])}],
        }
        subs = [control(c) for c in children.get(chapter["number"], [])]
        if subs:
            group["controls"] = subs
        groups.append(group)
    doc = {
        "catalog": {
            "uuid": stable_uuid(policy, "catalog", d["policy"]["digest"]),
            "metadata": _metadata(
                d, f"{d['policy']['regulation_title_zh']} — {d['policy']['regulation_title']}"
            ),
            "groups": groups,
        }
    }
    return _dump(doc)


def render_components(report: Report) -> str:
    """The roles as an OSCAL component-definition: which clauses each role's controls implement."""
    d: dict[str, Any] = report.data
    policy = d["policy"]["name"]
    catalog = stable_uuid(policy, "catalog", d["policy"]["digest"])
    roles: dict[str, list[dict[str, Any]]] = {}
    for control in d["controls"]:
        roles.setdefault(control["role"] or "manual-attestation", []).append(control)
    components = []
    for role, controls in sorted(roles.items()):
        requirements = [
            {
                "uuid": stable_uuid(policy, "implemented", role, control["id"], clause),
                "control-id": clause_id(clause),
                "description": visible(f"{control['id']} {control['title']}"),
                "props": [_prop("control", control["id"]), _prop("severity", control["severity"])],
            }
            for control in controls
            for clause in control["clauses"]
        ]
        components.append(
            {
                "uuid": stable_uuid(policy, "component", role),
                "type": "software" if role != "manual-attestation" else "process",
                "title": role,
                "description": (
                    f"Ansible role roles/{role}"
                    if role != "manual-attestation"
                    else "Manual controls met by attestations with evidence"
                ),
                "control-implementations": [
                    {
                        "uuid": stable_uuid(policy, "implementation", role),
                        "source": f"#{catalog}",
                        "description": f"{role}: {len(controls)} controls",
                        "implemented-requirements": requirements,
                    }
                ],
            }
        )
    doc = {
        "component-definition": {
            "uuid": stable_uuid(policy, "component-definition", d["policy"]["digest"]),
            "metadata": _metadata(d, f"{policy}: roles as components"),
            "components": components,
            "back-matter": {
                "resources": [
                    {
                        "uuid": catalog,
                        "title": "The regulation as an OSCAL catalog"
                        " (opsrunner report --format oscal-catalog)",
                    }
                ]
            },
        }
    }
    return _dump(doc)
