"""The policy diff for auditors: what changed between two git revisions of policy/, and its effect.

The effect is projected like a plan: the latest stored results re-scored under both revisions,
per host, with the hosts that cross a gate named.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opsrunner.policy import Policy, load_policy
from opsrunner.scoring import score
from opsrunner.store import ResultRecord


class DiffError(RuntimeError):
    """A revision cannot be read."""


def policy_at(policy_dir: Path, revision: str) -> Policy:
    """The policy directory as it was at a git revision."""
    policy_dir = policy_dir.resolve()
    top = subprocess.run(
        ["git", "-C", str(policy_dir), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        check=False,
    )
    if top.returncode != 0:
        raise DiffError(f"{policy_dir}: not in a git checkout")
    root = Path(top.stdout.strip()).resolve()
    relative = policy_dir.relative_to(root)
    with tempfile.TemporaryDirectory(prefix="opsrunner-diff-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", "--format=tar", revision, "--", str(relative)],
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            raise DiffError(f"git archive {revision}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        return load_policy(Path(tmp) / relative)


@dataclasses.dataclass(frozen=True)
class Change:
    """One line of the diff: `+` added, `-` removed, `~` changed."""

    kind: str  # control, parameter, waiver, attestation, clause
    op: str  # + - ~
    key: str
    field: str = ""
    old: Any = None
    new: Any = None

    def text(self) -> str:
        """The line as an auditor reads it."""
        if self.op == "~" and self.field == "expired":
            return f"~ {self.kind} {self.key}: expired {_show(self.new)}"
        if self.op == "~" and self.field:
            return f"~ {self.kind} {self.key}: {self.field} {_show(self.old)} → {_show(self.new)}"
        if self.op == "~":
            return f"~ {self.kind} {self.key}: {_show(self.old)} → {_show(self.new)}"
        detail = (
            f" ({_show(self.new if self.op == '+' else self.old)})"
            if (self.new is not None or self.old is not None)
            else ""
        )
        return f"{self.op} {self.kind} {self.key}{detail}"


def _show(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in sorted(value.items())) + "}"
    if value is None:
        return "(none)"
    return str(value)


_CONTROL_FIELDS = (
    ("title", "title"),
    ("description", "description"),
    ("severity", "severity"),
    ("weight", "weight"),
    ("frequency", "frequency"),
    ("kind", "kind"),
    ("owner", "owner"),
    ("role", "role"),
    ("applies_to", "applies_to"),
    ("source", "clauses"),
)


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, str | int | float | bool | dt.datetime) or value is None:
        return value
    return str(value)


def changes(old: Policy, new: Policy, at: dt.datetime) -> list[Change]:
    """Every change from `old` to `new`, controls first, in a stable order."""
    out: list[Change] = []
    old_c = {c.id: c for c in old.controls}
    new_c = {c.id: c for c in new.controls}
    for cid in sorted(old_c.keys() | new_c.keys()):
        a, b = old_c.get(cid), new_c.get(cid)
        if a is None and b is not None:
            out.append(Change("control", "+", cid, new=b.title))
        elif b is None and a is not None:
            out.append(Change("control", "-", cid, old=a.title))
        elif a is not None and b is not None:
            for attr, label in _CONTROL_FIELDS:
                va, vb = _plain(getattr(a, attr)), _plain(getattr(b, attr))
                if va != vb:
                    name = {"title": "renamed", "description": "re-worded"}.get(attr, label)
                    out.append(Change("control", "~", cid, name, va, vb))
    old_p, new_p = dict(old.parameters), dict(new.parameters)
    for name in sorted(old_p.keys() | new_p.keys()):
        pa, pb = old_p.get(name), new_p.get(name)
        if pa is None and pb is not None:
            out.append(Change("parameter", "+", name, new=_plain(pb.default)))
        elif pb is None and pa is not None:
            out.append(Change("parameter", "-", name, old=_plain(pa.default)))
        elif pa is not None and pb is not None:
            if pa.default != pb.default:
                out.append(Change("parameter", "~", name, "default", pa.default, pb.default))
            for table in ("tiers", "groups"):
                ta, tb = dict(getattr(pa, table)), dict(getattr(pb, table))
                for key in sorted(ta.keys() | tb.keys()):
                    if ta.get(key) != tb.get(key):
                        out.append(
                            Change(
                                "parameter", "~", name, f"{table}.{key}", ta.get(key), tb.get(key)
                            )
                        )
    out += _records(
        "waiver",
        {w.id: w for w in old.waivers},
        {w.id: w for w in new.waivers},
        at,
        ("control", "scope", "approver", "approved_at", "ticket", "expires_at", "justification"),
        "expires_at",
    )
    out += _records(
        "attestation",
        {f"{a.control}@{_show(a.attested_at)}": a for a in old.attestations},
        {f"{a.control}@{_show(a.attested_at)}": a for a in new.attestations},
        at,
        ("attested_by", "valid_until", "evidence", "note"),
        "valid_until",
    )
    old_cov = _coverage(old)
    new_cov = _coverage(new)
    for number in sorted(old_cov.keys() | new_cov.keys(), key=_clause_key):
        ca, cb = old_cov.get(number, []), new_cov.get(number, [])
        if ca != cb:
            out.append(Change("clause", "~", number, "covered by", ca, cb))
    return out


def _records(
    kind: str,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    at: dt.datetime,
    fields: Sequence[str],
    expiry: str,
) -> list[Change]:
    out = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if a is None:
            out.append(Change(kind, "+", key, new=_plain(getattr(b, fields[0]))))
        elif b is None:
            out.append(Change(kind, "-", key, old=_plain(getattr(a, fields[0]))))
        else:
            for name in fields:
                va, vb = _plain(getattr(a, name)), _plain(getattr(b, name))
                if va != vb:
                    out.append(Change(kind, "~", key, name, va, vb))
        if b is not None and getattr(b, expiry) <= at:
            out.append(Change(kind, "~", key, "expired", None, _plain(getattr(b, expiry))))
    return out


def _coverage(policy: Policy) -> dict[str, list[str]]:
    cov: dict[str, list[str]] = {}
    for control in policy.controls:
        for clause in control.source:
            cov.setdefault(clause, []).append(control.id)
    return {k: sorted(v) for k, v in cov.items()}


def _clause_key(number: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in number.split("."))


@dataclasses.dataclass(frozen=True)
class Effect:
    """One host's effective score (all controls) under the old and the new revision."""

    host: str
    old: float | None
    new: float | None

    @property
    def delta(self) -> float | None:
        """new - old, or None when either is missing."""
        if self.old is None or self.new is None:
            return None
        return round(self.new - self.old, 2)


def effects(
    old: Policy,
    new: Policy,
    results: Sequence[ResultRecord],
    hosts: Mapping[str, Sequence[str]],
    at: dt.datetime,
) -> list[Effect]:
    """Re-score the same results under both revisions; every host, worst change first."""
    a = score(old, results, hosts, at)
    b = score(new, results, hosts, at)
    names = sorted(a.by_host.keys() | b.by_host.keys())
    rows = []
    for name in names:
        fa = a.by_host[name].get("effective", "all").percent if name in a.by_host else None
        fb = b.by_host[name].get("effective", "all").percent if name in b.by_host else None
        rows.append(
            Effect(name, None if fa is None else round(fa, 2), None if fb is None else round(fb, 2))
        )
    rows.sort(key=lambda e: (e.delta if e.delta is not None else 0.0, e.host))
    return rows


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def effect_line(effect: Effect, gate: float | None) -> str:
    """'host2: 91.0 → 84.0 (-7.0), falls below the 90 gate'."""
    delta = effect.delta
    sign = "" if delta is None else f" ({delta:+.1f})"
    text = f"{effect.host}: {_pct(effect.old)} → {_pct(effect.new)}{sign}"
    if gate is not None and effect.old is not None and effect.new is not None:
        if effect.old >= gate > effect.new:
            text += f", falls below the {gate:g} gate"
        elif effect.new >= gate > effect.old:
            text += f", rises to the {gate:g} gate"
    return text


def render(
    rev1: str,
    rev2: str,
    found: Sequence[Change],
    projected: Sequence[Effect],
    *,
    fmt: str = "text",
    gate: float | None = None,
) -> str:
    """The diff as a plan: what changes, then for whom and by how much."""
    moved = [e for e in projected if e.delta]
    if fmt == "json":
        return (
            json.dumps(
                {
                    "from": rev1,
                    "to": rev2,
                    "changes": [
                        {
                            "kind": c.kind,
                            "op": c.op,
                            "key": c.key,
                            "field": c.field,
                            "old": _jsonable(c.old),
                            "new": _jsonable(c.new),
                            "text": c.text(),
                        }
                        for c in found
                    ],
                    "effect": [
                        {
                            "host": e.host,
                            "old": e.old,
                            "new": e.new,
                            "delta": e.delta,
                            "text": effect_line(e, gate),
                        }
                        for e in projected
                    ],
                    "gate": gate,
                },
                indent=1,
                sort_keys=True,
                ensure_ascii=True,
            )
            + "\n"
        )
    lines: list[str] = []
    if fmt == "md":
        lines += [f"# Policy diff {rev1}..{rev2}", "", "## Changes", "", "```diff"]
        lines += [c.text() for c in found] or ["(no change)"]
        lines += ["```", "", "## Projected effect (effective score, all controls)", ""]
        lines += [f"- {effect_line(e, gate)}" for e in moved] or ["- no host's score changes"]
        return "\n".join(lines) + "\n"
    lines += [f"Policy diff {rev1}..{rev2}", ""]
    lines += [c.text() for c in found] or ["(no change)"]
    lines += ["", "Projected effect on the latest results (effective, all controls):"]
    lines += [f"  {effect_line(e, gate)}" for e in moved] or ["  no host's score changes"]
    unchanged = len(projected) - len(moved)
    if unchanged and moved:
        lines.append(f"  {unchanged} other hosts unchanged")
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return _show(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
