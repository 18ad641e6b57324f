"""Walk from a clause to its controls, roles and tasks, or from a control back to its clauses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opsrunner.policy.checks import tasks_for_control
from opsrunner.policy.loader import Policy

# Evidence per host for one control, newest first: {"host", "status", "at", "evidence", "run"}.
EvidenceProvider = Callable[[str], Sequence[dict[str, Any]]]

_provider: EvidenceProvider | None = None


def register_evidence_provider(provider: EvidenceProvider | None) -> None:
    """Let a later stage (the runner's store) add the latest evidence per host to traces.

    The policy package sits upstream of the runner and never imports it; the runner calls
    this when its CLI is registered, so `opsrunner policy trace` shows evidence once results exist.
    """
    global _provider  # one process-wide hook, set once at start-up
    _provider = provider


def evidence_provider() -> EvidenceProvider | None:
    """The registered evidence provider, if any."""
    return _provider


def _control_entry(
    policy: Policy,
    control_id: str,
    roles_dir: Path,
    evidence: EvidenceProvider | None,
    now: dt.datetime,
) -> dict[str, Any]:
    control = policy.control(control_id)
    where = policy.location("control", control.id)
    entry: dict[str, Any] = {
        "id": control.id,
        "title": control.title,
        "kind": control.kind,
        "severity": control.severity,
        "owner": control.owner,
        "frequency": str(control.frequency),
        "source": list(control.source),
        "defined_at": str(where) if where else None,
    }
    if control.kind == "automated":
        entry["role"] = control.role
        entry["task_prefix"] = control.prefix
        entry["tasks"] = [
            {"file": t.file, "line": t.line, "name": t.name}
            for t in tasks_for_control(policy, control.id, roles_dir)
        ]
    else:
        entry["evidence_required"] = control.evidence_required
        entry["attestations"] = [
            {
                "attested_by": a.attested_by,
                "attested_at": a.attested_at.isoformat(),
                "valid_until": a.valid_until.isoformat(),
                "valid_now": a.valid_at(now),
                "evidence": a.evidence.model_dump(),
            }
            for a in policy.attestations_for(control.id)
        ]
    entry["waivers"] = [
        {
            "id": w.id,
            "status": w.status(now),
            "scope": w.scope.model_dump(),
            "expires_at": w.expires_at.isoformat(),
        }
        for w in policy.waivers
        if w.control == control.id
    ]
    if evidence is not None:
        entry["evidence"] = list(evidence(control.id))
    return entry


def trace(
    policy: Policy,
    key: str,
    roles_dir: Path,
    *,
    evidence: EvidenceProvider | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """A clause number or control id, traced both ways. KeyError when the key is unknown."""
    moment = now or dt.datetime.now(dt.UTC)
    provider = evidence if evidence is not None else _provider
    try:
        control = policy.control(key)
    except KeyError:
        control = None
    if control is not None:
        clauses = []
        for number in control.source:
            clause = policy.clause(number)
            clauses.append({"number": number, "heading_zh": clause.heading_zh, "text": clause.text})
        return {
            "kind": "control",
            "clauses": clauses,
            "control": _control_entry(policy, key, roles_dir, provider, moment),
        }
    clause = policy.clause(key)  # KeyError: neither a control nor a clause
    where = policy.location("clause", clause.number)
    return {
        "kind": "clause",
        "clause": {
            "number": clause.number,
            "heading_zh": clause.heading_zh,
            "heading": clause.heading,
            "text": clause.text,
            "not_applicable": clause.not_applicable,
            "leaf": policy.is_leaf(clause.number),
            "defined_at": str(where) if where else None,
        },
        "sub_clauses": [c.number for c in policy.clauses if c.parent == clause.number],
        "controls": [
            _control_entry(policy, c.id, roles_dir, provider, moment)
            for c in policy.controls_for_clause(clause.number)
        ],
        "parameters": sorted(
            name
            for name, p in policy.parameters.items()
            if any(s == clause.number or s.startswith(clause.number + ".") for s in p.source)
        ),
    }
