"""The reference for test_scoring_columnar: the scoring engine as it was before it moved to
numpy columns (one Python loop per group; slow, plain to read). Do not import it elsewhere.

Compliance scores as pure functions of (policy, results, fleet, now): no I/O here.

docs/scoring.md states every rule below with worked numbers. In short:

- Statuses per host x control come from the store; scoring adds `stale` (evidence older than
  the control's frequency allows) and, in the effective view, `waived`.
- `pass` (and `waived` in the effective view) passes; `fail`, `error`, `unknown`, `stale`
  count and do not pass; `notapplicable` and `notchecked` are left out.
- A waiver accepts a known finding: it turns `fail` into `waived` and nothing else, and only
  for results checked between its approval and its expiry.
- The fleet is the hosts given (the inventory); results of other hosts are `retired`.
- Manual controls are scored once for the organisation (target `ORG`): they pass only with
  an attestation valid at `now` and not older than their frequency allows.
- A control is filed under its primary clause (the first it cites) in every figure: the
  XCCDF tree, the chapter and the clause tables. Chapter counts add up to the total.
- "all" combines the automated and the manual figure weighted by the summed weights of the
  counted controls of each kind, each control once however many hosts it runs on, so the
  share of manual controls does not shrink as the fleet grows.

Models (a rule's weight: the policy's severity weight x the control's weight):
- `xccdf` — XCCDF 1.2 default model: a rule scores 100 or 0; a clause scores the weighted
  mean of its rules, a chapter the mean of its clauses, a target the mean of its chapters;
  the figure is the mean over targets.
- `flat` — XCCDF flat model: sum of the weights of passing results / sum of the weights of
  counted results.
- `flat_unweighted` — XCCDF flat-unweighted model: passing results / counted results.
- `absolute` — XCCDF absolute model: 100 when every counted result passes, else 0.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from opsrunner.store.records import ResultRecord

MODELS = ("xccdf", "flat", "flat_unweighted", "absolute")
KINDS = ("automated", "manual", "all")
VIEWS = ("raw", "effective")
ORG = "(organisation)"
PASSING = frozenset({"pass", "waived"})
EXCLUDED = frozenset({"notapplicable", "notchecked"})
# A waiver accepts a known finding. A broken check (`error`), missing evidence (`unknown`) or
# old evidence (`stale`) is no finding to accept: they stay what they are in every view.
WAIVABLE = frozenset({"fail"})


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
    @property
    def approved_at(self) -> dt.datetime | None: ...
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
    """One score: points of a maximum, as a percent (None when nothing counted), and how."""

    model: str
    points: float
    maximum: float
    percent: float | None
    counted: int
    passed: int
    formula: str = ""

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
    """Every figure of one scoring, plus the items they were computed from.

    `retired` names hosts that have results but are not in the scored fleet (no longer in the
    inventory): they are listed, never scored.
    """

    model: str
    as_of: dt.datetime
    items: tuple[Item, ...]
    overall: ScoreSet
    by_host: Mapping[str, ScoreSet]
    by_chapter: Mapping[str, ScoreSet]
    by_clause: Mapping[str, ScoreSet]
    by_control: Mapping[str, ScoreSet]
    retired: tuple[str, ...] = ()

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


def _waiver_for(
    policy: PolicyLike,
    control_id: str,
    host: str,
    groups: list[str],
    checked_at: dt.datetime | None,
    now: dt.datetime,
) -> str:
    """The id of the waiver that accepts this finding, or "".

    A waiver holds from its approval to its expiry, and only for results checked in that time:
    a finding checked before the approval stays a finding until the next check.
    """
    if checked_at is None:
        return ""
    for waiver in policy.waivers:
        approved = waiver.approved_at
        if (
            waiver.control == control_id
            and approved is not None
            and checked_at >= approved
            and waiver.applies(host, groups, now)
        ):
            return waiver.id
    return ""


def retired_hosts(results: Iterable[ResultRecord], hosts: Mapping[str, Sequence[str]]) -> list[str]:
    """Hosts with results that are not in the fleet (removed from the inventory)."""
    return sorted({r.host for r in results} - set(hosts))


def evaluate(
    policy: PolicyLike,
    results: Iterable[ResultRecord],
    hosts: Mapping[str, Sequence[str]],
    now: dt.datetime,
    *,
    controls: Iterable[str] | None = None,
    keep_filtered: bool = False,
) -> list[Item]:
    """One item per fleet host x automated control in scope and one per manual control.

    `hosts` is the fleet: each host with its inventory groups. Results of other hosts are not
    scored (see `retired_hosts`), nor are results checked after `now`. A control in scope
    without any result is `unknown`.

    `notchecked` (filtered out of a run by --controls/--tags) says nothing about a host, so it
    never hides an earlier result, and alone it is no evidence (`unknown`) — unless
    `keep_filtered`, when one run is scored and its filtered-out controls are left out.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware UTC time")
    wanted = set(controls) if controls is not None else None
    weights = policy.settings.severity_weights
    latest: dict[tuple[str, str], ResultRecord] = {}
    for result in results:
        if result.host not in hosts or result.checked_at > now:
            continue
        if result.status == "notchecked" and not keep_filtered:
            continue
        key = (result.host, result.control_id)
        held = latest.get(key)
        # A real result beats any notchecked one; among equals the newest wins.
        if held is None or (result.status != "notchecked", result.checked_at) >= (
            held.status != "notchecked",
            held.checked_at,
        ):
            latest[key] = result
    groups_of = {host: list(groups) for host, groups in hosts.items()}

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
                waiver = _waiver_for(policy, control.id, host, groups, at, now)
                if waiver:
                    effective = "waived"
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
        revoked_at = getattr(newest, "revoked_at", None)
        if revoked_at is not None and now >= revoked_at:
            # A revoked record is withdrawn evidence: the control fails, older records or not.
            status, reason = "fail", f"attestation revoked {revoked_at.isoformat()}"
        elif now >= newest.valid_until:
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


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}%"


def _listed(values: Sequence[float], limit: int = 6) -> str:
    shown = " + ".join(f"{v:.4g}" for v in values[:limit])
    return shown + (f" + … ({len(values) - limit} more)" if len(values) > limit else "")


def figure(items: Sequence[Item], model: str, view: str) -> Figure:
    """Score a set of items of one kind (or any set, ignoring kinds) with one model, one view."""
    if model not in MODELS:
        raise ValueError(f"unknown scoring model {model!r} (choose {', '.join(MODELS)})")
    counted = [i for i in items if i.status(view) not in EXCLUDED]
    passed = [i for i in counted if i.status(view) in PASSING]
    if not counted:
        return Figure(model, 0.0, 0.0, None, 0, 0, "nothing counted")
    n, k = len(counted), len(passed)
    if model in ("flat", "flat_unweighted"):
        if model == "flat":
            points = sum(i.weight for i in passed)
            maximum = sum(i.weight for i in counted)
            text = "Σ weight of passing / Σ weight of counted results"
        else:
            points, maximum = float(k), float(n)
            text = "passing / counted results"
        percent = 100.0 * points / maximum if maximum else None
        formula = f"{text} = {points:g} / {maximum:g} = {_pct(percent)}"
        return Figure(model, points, maximum, percent, n, k, formula)
    if model == "absolute":
        ok = k == n
        formula = (
            f"100 when every counted result passes, else 0: {k} of {n} pass → {100 if ok else 0}%"
        )
        return Figure(model, 1.0 if ok else 0.0, 1.0, 100.0 if ok else 0.0, n, k, formula)
    targets = _xccdf(counted, view)
    percent = sum(targets) / len(targets)
    formula = (
        f"mean over {len(targets)} target(s) of their XCCDF default score "
        f"(chapters' mean of clauses' mean of Σ weight x 0|100 / Σ weight of rules) = "
        f"({_listed(targets)}) / {len(targets)} = {_pct(percent)}"
    )
    return Figure(model, percent, 100.0, percent, n, k, formula)


def _weighted_mean(pairs: Sequence[tuple[float, float]]) -> float:
    total = sum(weight for _score, weight in pairs)
    return sum(score * weight for score, weight in pairs) / total if total else 0.0


def _xccdf(items: Sequence[Item], view: str) -> list[float]:
    """Each target's XCCDF default score, in target order."""
    # target -> chapter -> clause -> rule; a group's weight is 1, a rule's is its weight.
    tree: dict[str, dict[str, dict[str, list[Item]]]] = {}
    for item in items:
        tree.setdefault(item.target, {}).setdefault(item.chapter, {}).setdefault(
            item.clause, []
        ).append(item)
    target_scores = []
    for _target, chapters in sorted(tree.items()):
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
        target_scores.append(_weighted_mean(chapter_scores))
    return target_scores


def _control_weight(items: Sequence[Item], model: str, view: str) -> float:
    """Σ weight of the distinct controls counted at least once (each control once)."""
    seen: dict[str, float] = {}
    for item in items:
        if item.status(view) not in EXCLUDED:
            seen[item.control_id] = 1.0 if model == "flat_unweighted" else item.weight
    return sum(seen.values())


def combine(
    automated: Figure,
    manual: Figure,
    weights: tuple[float, float],
    model: str,
) -> Figure:
    """The "all" figure: automated and manual weighted by their controls' summed weights.

    Each control weighs once however many hosts it is checked on, so the manual share of "all"
    does not depend on the size of the fleet.
    """
    w_auto, w_manual = weights
    counted = automated.counted + manual.counted
    passed = automated.passed + manual.passed
    if automated.percent is None or manual.percent is None:
        only = manual if automated.percent is None else automated
        name = "manual" if automated.percent is None else "automated"
        return dataclasses.replace(
            only, formula=f"{name} only ({only.formula})" if counted else "nothing counted"
        )
    if model == "absolute":
        ok = automated.percent == 100.0 and manual.percent == 100.0
        return Figure(
            model,
            1.0 if ok else 0.0,
            1.0,
            100.0 if ok else 0.0,
            counted,
            passed,
            f"100 when automated and manual are both 100, else 0 → {100 if ok else 0}%",
        )
    total = w_auto + w_manual
    percent = (automated.percent * w_auto + manual.percent * w_manual) / total if total else None
    formula = (
        f"(automated {_pct(automated.percent)} x {w_auto:g} + manual {_pct(manual.percent)} x "
        f"{w_manual:g}) / {total:g} = {_pct(percent)}; {w_auto:g} and {w_manual:g} are the "
        f"summed weights of the counted automated and manual controls, each control once"
    )
    if model == "xccdf":
        points, maximum = percent or 0.0, 100.0
    else:
        points, maximum = (percent or 0.0) * total / 100.0, total
    return Figure(model, points, maximum, percent, counted, passed, formula)


def score_set(items: Sequence[Item], model: str) -> ScoreSet:
    """raw/effective x automated/manual/all figures of a set of items."""
    figures = {}
    automated = [i for i in items if i.kind == "automated"]
    manual = [i for i in items if i.kind == "manual"]
    for view in VIEWS:
        a = figure(automated, model, view)
        m = figure(manual, model, view)
        figures[(view, "automated")] = a
        figures[(view, "manual")] = m
        weights = (_control_weight(automated, model, view), _control_weight(manual, model, view))
        figures[(view, "all")] = combine(a, m, weights, model)
    return ScoreSet(figures)


def _model_name(policy: PolicyLike, model: str | None) -> str:
    name = model or policy.settings.scoring_model
    if name == "default":
        name = "xccdf"
    if name not in MODELS:
        raise ValueError(f"unknown scoring model {name!r} (choose {', '.join(MODELS)})")
    return name


def _clause_keys(item: Item) -> list[str]:
    # The primary clause and its parents (4.2.1 -> 4.2, 4.2.1); the chapter is its own table.
    parts = item.clause.split(".") if item.clause else []
    return [".".join(parts[:n]) for n in range(2, len(parts) + 1)]


def score(
    policy: PolicyLike,
    results: Iterable[ResultRecord],
    hosts: Mapping[str, Sequence[str]],
    now: dt.datetime,
    *,
    model: str | None = None,
    controls: Iterable[str] | None = None,
    keep_filtered: bool = False,
) -> Scores:
    """Every figure: overall, per host, chapter, clause and control; hosts not in the fleet
    are listed as retired."""
    name = _model_name(policy, model)
    results = list(results)
    items = evaluate(policy, results, hosts, now, controls=controls, keep_filtered=keep_filtered)

    def grouped(key: Any) -> dict[str, ScoreSet]:
        buckets: dict[str, list[Item]] = {}
        for item in items:
            for value in key(item):
                buckets.setdefault(value, []).append(item)
        return {k: score_set(v, name) for k, v in sorted(buckets.items())}

    return Scores(
        model=name,
        as_of=now,
        items=tuple(items),
        overall=score_set(items, name),
        by_host=grouped(lambda i: [i.target]),
        by_chapter=grouped(lambda i: [i.chapter]),
        by_clause=grouped(_clause_keys),
        by_control=grouped(lambda i: [i.control_id]),
        retired=tuple(retired_hosts(results, hosts)),
    )


def going_stale(now_scores: Scores, later: Scores) -> list[Item]:
    """Items with current evidence now (passing or not) that are stale at the later time."""
    before = {(i.target, i.control_id): i for i in now_scores.items}
    out = []
    for item in later.items:
        earlier = before.get((item.target, item.control_id))
        if item.raw == "stale" and earlier is not None and earlier.raw != "stale":
            out.append(item)
    return sorted(out, key=lambda i: (i.target, i.control_id))


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
    """The figures behind a control id, clause number, chapter or host, and their items.

    Clause and chapter use the same rule as their figures: a control under its primary clause.
    """
    for label, table, match in (
        ("control", scores.by_control, lambda i: i.control_id == key),
        ("host", scores.by_host, lambda i: i.target == key),
        ("clause", scores.by_clause, lambda i: key in _clause_keys(i)),
        ("chapter", scores.by_chapter, lambda i: i.chapter == key),
    ):
        if key in table:
            return label, table[key], [i for i in scores.items if match(i)]
    raise KeyError(f"{key!r} is no control, host, clause or chapter in these scores")
