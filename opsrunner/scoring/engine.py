"""Compliance scores as pure functions of (policy, results, host groups, now): no I/O here.

Statuses per host x control come from the store; scoring adds `stale` (evidence older than the
control's frequency allows) and, for the effective view, `waived`. What counts:

- `pass` (and `waived` in the effective view) passes;
- `fail`, `error`, `unknown`, `stale` count and do not pass: unknown and stale never pass;
- `notapplicable` and `notchecked` are left out of numerator and denominator.

Manual controls are scored once for the organisation (target `ORG`): they pass only with an
attestation valid at `now` and not older than their frequency allows.

Models (weights: the policy's severity weight x the control's weight):
- `xccdf` — XCCDF 1.2 default model: a rule scores 100 or 0; each group (target, chapter,
  clause) scores the weighted mean of its children, groups weigh 1; the overall figure is the
  mean over targets. A control sits under the first clause it cites.
- `flat` — XCCDF flat model: points = sum of the weights of passing results, maximum = sum of
  the weights of counted results; percent = points / maximum.
- `absolute` — XCCDF absolute model: 100 when every counted result passes, else 0.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from opsrunner.store.records import ResultRecord

MODELS = ("xccdf", "flat", "absolute")
KINDS = ("automated", "manual", "all")
VIEWS = ("raw", "effective")
ORG = "(organisation)"
PASSING = frozenset({"pass", "waived"})
EXCLUDED = frozenset({"notapplicable", "notchecked"})
# Waivers excuse a known shortfall; they cannot turn missing evidence into compliance.
WAIVABLE = frozenset({"fail", "error", "stale"})


class _Frequency(Protocol):
    @property
    def max_age(self) -> dt.timedelta: ...


class _Control(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def source(self) -> Sequence[str]: ...
    @property
    def severity(self) -> str: ...
    @property
    def weight(self) -> float: ...
    @property
    def kind(self) -> str: ...
    @property
    def applies_to(self) -> Sequence[str]: ...
    @property
    def frequency(self) -> Any: ...


class _Waiver(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def control(self) -> str: ...
    def applies(self, host: str, groups: list[str], now: dt.datetime) -> bool: ...


class _Attestation(Protocol):
    @property
    def control(self) -> str: ...
    @property
    def attested_at(self) -> dt.datetime: ...
    @property
    def valid_until(self) -> dt.datetime: ...
    @property
    def attested_by(self) -> str: ...
    @property
    def evidence(self) -> Any: ...


class _Settings(Protocol):
    @property
    def severity_weights(self) -> Mapping[Any, float]: ...
    @property
    def scoring_model(self) -> str: ...


class PolicyLike(Protocol):
    """What scoring reads of a policy (opsrunner.policy.Policy fits)."""

    @property
    def settings(self) -> _Settings: ...
    @property
    def controls(self) -> Sequence[_Control]: ...
    @property
    def waivers(self) -> Sequence[_Waiver]: ...
    @property
    def attestations(self) -> Sequence[_Attestation]: ...


@dataclasses.dataclass(frozen=True)
class Item:
    """One scored target x control: the evidence behind every figure."""

    target: str
    control_id: str
    kind: str
    severity: str
    weight: float
    clause: str
    clauses: tuple[str, ...]
    chapter: str
    raw: str
    effective: str
    reason: str = ""
    evidence: str = ""
    evidence_at: dt.datetime | None = None
    waiver: str = ""
    run_id: int | None = None

    def status(self, view: str) -> str:
        """The status in the raw or the effective view."""
        return self.raw if view == "raw" else self.effective


@dataclasses.dataclass(frozen=True)
class Figure:
    """One score: points of a maximum, as a percent; None when nothing counted."""

    model: str
    points: float
    maximum: float
    percent: float | None
    counted: int
    passed: int

    def __str__(self) -> str:
        if self.percent is None:
            return "n/a"
        return f"{self.percent:.1f}%"


@dataclasses.dataclass(frozen=True)
class ScoreSet:
    """raw and effective figures, each for automated, manual and all controls."""

    figures: Mapping[tuple[str, str], Figure]

    def get(self, view: str = "effective", kind: str = "all") -> Figure:
        """One figure."""
        return self.figures[(view, kind)]


@dataclasses.dataclass(frozen=True)
class Scores:
    """Every figure of one scoring, plus the items they were computed from."""

    model: str
    as_of: dt.datetime
    items: tuple[Item, ...]
    overall: ScoreSet
    by_host: Mapping[str, ScoreSet]
    by_chapter: Mapping[str, ScoreSet]
    by_clause: Mapping[str, ScoreSet]
    by_control: Mapping[str, ScoreSet]

    def failed(self, view: str = "effective") -> dict[str, int]:
        """Counted, not-passing items per severity."""
        counts: dict[str, int] = {}
        for item in self.items:
            status = item.status(view)
            if status not in EXCLUDED and status not in PASSING:
                counts[item.severity] = counts.get(item.severity, 0) + 1
        return counts


def _chapter(clause: str) -> str:
    return clause.split(".", 1)[0] if clause else ""


def _applies(control: _Control, groups: Iterable[str]) -> bool:
    wanted = set(control.applies_to)
    return "all" in wanted or bool(wanted & set(groups))


def _max_age(control: _Control) -> dt.timedelta | None:
    age = getattr(control.frequency, "max_age", None)
    return age if isinstance(age, dt.timedelta) else None


def _stale(control: _Control, at: dt.datetime | None, now: dt.datetime) -> bool:
    age = _max_age(control)
    return at is not None and age is not None and now - at > age


def evaluate(
    policy: PolicyLike,
    results: Iterable[ResultRecord],
    hosts: Mapping[str, Sequence[str]],
    now: dt.datetime,
    *,
    controls: Iterable[str] | None = None,
) -> list[Item]:
    """One item per host x automated control in scope and one per manual control.

    `hosts` maps each host to its inventory groups; hosts seen only in results get no groups
    (so only `applies_to: [all]` controls). A control in scope without any result is `unknown`.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware UTC time")
    wanted = set(controls) if controls is not None else None
    weights = policy.settings.severity_weights
    latest: dict[tuple[str, str], ResultRecord] = {}
    for result in results:
        key = (result.host, result.control_id)
        if key not in latest or result.checked_at >= latest[key].checked_at:
            latest[key] = result
    groups_of = {host: list(groups) for host, groups in hosts.items()}
    for host, _control in latest:
        groups_of.setdefault(host, [])

    items: list[Item] = []
    for control in policy.controls:
        if wanted is not None and control.id not in wanted:
            continue
        clauses = tuple(control.source)
        first = clauses[0] if clauses else ""
        common = Item(
            target="",
            control_id=control.id,
            kind=control.kind,
            severity=control.severity,
            weight=float(weights.get(control.severity, 1.0)) * float(control.weight),
            clause=first,
            clauses=clauses,
            chapter=_chapter(first),
            raw="unknown",
            effective="unknown",
        )
        if control.kind == "manual":
            items.append(_manual(policy, control, now, common))
            continue
        for host in sorted(groups_of):
            groups = groups_of[host]
            if not _applies(control, groups):
                continue
            found = latest.get((host, control.id))
            if found is None:
                raw, reason, evidence, at, run_id = (
                    "unknown",
                    "no evidence recorded",
                    "",
                    None,
                    None,
                )
            else:
                raw, reason, evidence = found.status, found.reason, found.evidence
                at, run_id = found.checked_at, found.run_id
                if raw not in EXCLUDED and _stale(control, at, now):
                    raw, reason = (
                        "stale",
                        f"evidence from {at.isoformat()} is older than {control.frequency}",
                    )
            effective, waiver = raw, ""
            if raw in WAIVABLE:
                hit = next(
                    (
                        w
                        for w in policy.waivers
                        if w.control == control.id and w.applies(host, groups, now)
                    ),
                    None,
                )
                if hit is not None:
                    effective, waiver = "waived", hit.id
            items.append(
                dataclasses.replace(
                    common,
                    target=host,
                    raw=raw,
                    effective=effective,
                    reason=reason,
                    evidence=evidence,
                    evidence_at=at,
                    waiver=waiver,
                    run_id=run_id,
                )
            )
    return items


def _manual(policy: PolicyLike, control: _Control, now: dt.datetime, common: Item) -> Item:
    records = sorted(
        (a for a in policy.attestations if a.control == control.id and a.attested_at <= now),
        key=lambda a: a.attested_at,
        reverse=True,
    )
    if not records:
        status, reason, evidence, at = "fail", "no attestation on record", "", None
    else:
        newest = records[0]
        at = newest.attested_at
        sha = getattr(newest.evidence, "sha256", "")
        evidence = f"attested by {newest.attested_by}, evidence sha256 {sha}"
        if now >= newest.valid_until:
            status, reason = "fail", f"attestation expired {newest.valid_until.isoformat()}"
        elif _stale(control, at, now):
            status, reason = (
                "stale",
                f"attestation from {at.isoformat()} is older than {control.frequency}",
            )
        else:
            status, reason = "pass", ""
    # Waivers are scoped to hosts and groups; a manual control has no host, so none applies.
    return dataclasses.replace(
        common,
        target=ORG,
        raw=status,
        effective=status,
        reason=reason,
        evidence=evidence,
        evidence_at=at,
    )


# -- models ------------------------------------------------------------------------------------


def figure(items: Sequence[Item], model: str, view: str) -> Figure:
    """Score a set of items with one model in one view."""
    if model not in MODELS:
        raise ValueError(f"unknown scoring model {model!r} (choose {', '.join(MODELS)})")
    counted = [i for i in items if i.status(view) not in EXCLUDED]
    passed = [i for i in counted if i.status(view) in PASSING]
    if not counted:
        return Figure(model, 0.0, 0.0, None, 0, 0)
    if model == "flat":
        points = sum(i.weight for i in passed)
        maximum = sum(i.weight for i in counted)
        percent = 100.0 * points / maximum if maximum else None
        return Figure(model, points, maximum, percent, len(counted), len(passed))
    if model == "absolute":
        ok = len(passed) == len(counted)
        return Figure(
            model, 1.0 if ok else 0.0, 1.0, 100.0 if ok else 0.0, len(counted), len(passed)
        )
    percent = _xccdf(counted, view)
    return Figure(model, percent, 100.0, percent, len(counted), len(passed))


def _weighted_mean(pairs: Sequence[tuple[float, float]]) -> float:
    total = sum(weight for _score, weight in pairs)
    return sum(score * weight for score, weight in pairs) / total if total else 0.0


def _xccdf(items: Sequence[Item], view: str) -> float:
    # target -> chapter -> clause -> rule; a group's weight is 1, a rule's is its weight.
    tree: dict[str, dict[str, dict[str, list[Item]]]] = {}
    for item in items:
        tree.setdefault(item.target, {}).setdefault(item.chapter, {}).setdefault(
            item.clause, []
        ).append(item)
    target_scores = []
    for chapters in tree.values():
        chapter_scores = []
        for clauses in chapters.values():
            clause_scores = [
                (
                    _weighted_mean(
                        [(100.0 if i.status(view) in PASSING else 0.0, i.weight) for i in rules]
                    ),
                    1.0,
                )
                for rules in clauses.values()
            ]
            chapter_scores.append((_weighted_mean(clause_scores), 1.0))
        target_scores.append((_weighted_mean(chapter_scores), 1.0))
    return _weighted_mean(target_scores)


def score_set(items: Sequence[Item], model: str) -> ScoreSet:
    """raw/effective x automated/manual/all figures of a set of items."""
    figures = {}
    for view in VIEWS:
        for kind in KINDS:
            subset = items if kind == "all" else [i for i in items if i.kind == kind]
            figures[(view, kind)] = figure(subset, model, view)
    return ScoreSet(figures)


def _model_name(policy: PolicyLike, model: str | None) -> str:
    name = model or policy.settings.scoring_model
    if name == "default":
        name = "xccdf"
    if name not in MODELS:
        raise ValueError(f"unknown scoring model {name!r} (choose {', '.join(MODELS)})")
    return name


def score(
    policy: PolicyLike,
    results: Iterable[ResultRecord],
    hosts: Mapping[str, Sequence[str]],
    now: dt.datetime,
    *,
    model: str | None = None,
    controls: Iterable[str] | None = None,
) -> Scores:
    """Every figure: overall, per host, chapter, clause and control."""
    name = _model_name(policy, model)
    items = evaluate(policy, results, hosts, now, controls=controls)

    def grouped(key: Any) -> dict[str, ScoreSet]:
        buckets: dict[str, list[Item]] = {}
        for item in items:
            for value in key(item):
                buckets.setdefault(value, []).append(item)
        return {k: score_set(v, name) for k, v in sorted(buckets.items())}

    def clause_keys(item: Item) -> list[str]:
        # A control counts for every clause it cites and for their parents.
        keys: set[str] = set()
        for clause in item.clauses:
            parts = clause.split(".")
            keys.update(".".join(parts[:n]) for n in range(2, len(parts) + 1))
        return sorted(keys)

    return Scores(
        model=name,
        as_of=now,
        items=tuple(items),
        overall=score_set(items, name),
        by_host=grouped(lambda i: [i.target]),
        by_chapter=grouped(lambda i: sorted({_chapter(c) for c in i.clauses})),
        by_clause=grouped(clause_keys),
        by_control=grouped(lambda i: [i.control_id]),
    )


# -- gates and explanations --------------------------------------------------------------------


def gate(
    scores: Scores,
    *,
    fail_under: float | None = None,
    max_failed: Mapping[str, int] | None = None,
    view: str = "effective",
    kind: str = "all",
) -> list[str]:
    """Why a CI gate fails (empty: it passes)."""
    problems = []
    overall = scores.overall.get(view, kind)
    if fail_under is not None and (overall.percent is None or overall.percent < fail_under):
        problems.append(f"{view} {kind} score {overall} is under {fail_under:g}%")
    failed = scores.failed(view)
    for severity, limit in (max_failed or {}).items():
        if failed.get(severity, 0) > limit:
            problems.append(
                f"{failed[severity]} {severity} results not passing ({view}), "
                f"at most {limit} allowed"
            )
    return problems


def explain(scores: Scores, key: str) -> tuple[str, ScoreSet, list[Item]]:
    """The figures behind a control id, clause number, chapter or host, and their items."""
    for label, table, match in (
        ("control", scores.by_control, lambda i: i.control_id == key),
        ("host", scores.by_host, lambda i: i.target == key),
        (
            "clause",
            scores.by_clause,
            lambda i: any(c == key or c.startswith(key + ".") for c in i.clauses),
        ),
        ("chapter", scores.by_chapter, lambda i: any(c.split(".")[0] == key for c in i.clauses)),
    ):
        if key in table:
            return label, table[key], [i for i in scores.items if match(i)]
    raise KeyError(f"{key!r} is no control, host, clause or chapter in these scores")
