"""Compliance scores as pure functions of (policy, results, fleet, now): no I/O here.

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

import contextlib
import dataclasses
import datetime as dt
import gc
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

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


class Item(NamedTuple):
    """One scored target x control: the evidence behind every figure.

    A named tuple, not a dataclass: a fleet report holds millions of them.
    """

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
    columns: _Columns | None = dataclasses.field(default=None, compare=False, repr=False)

    def failed(self, view: str = "effective") -> dict[str, int]:
        """Counted, not-passing items per severity."""
        counts: dict[str, int] = {}
        for item in self.items:
            status = item.status(view)
            if status not in EXCLUDED and status not in PASSING:
                counts[item.severity] = counts.get(item.severity, 0) + 1
        return counts

    def _cols(self) -> _Columns:
        return self.columns if self.columns is not None else _Columns.of(self.items)

    def by_targets(self, groups_of: Mapping[str, Iterable[str]]) -> dict[str, ScoreSet]:
        """Figures per group of targets (e.g. inventory groups): each target's items count in
        every group `groups_of` names for it."""
        cols = self._cols()
        return cols.grouped(lambda t: groups_of.get(cols.targets[t], ()), cols.target, self.model)

    def by_controls(self, groups_of: Mapping[str, Iterable[str]]) -> dict[str, ScoreSet]:
        """Figures per group of controls (e.g. owners): each control's items count in every
        group `groups_of` names for it."""
        cols = self._cols()
        return cols.grouped(lambda c: groups_of.get(cols.controls[c], ()), cols.control, self.model)


def _chapter(clause: str) -> str:
    return clause.split(".", 1)[0] if clause else ""


def _max_age(control: _Control) -> dt.timedelta | None:
    age = getattr(control.frequency, "max_age", None)
    return age if isinstance(age, dt.timedelta) else None


def _stale(control: _Control, at: dt.datetime | None, now: dt.datetime) -> bool:
    age = _max_age(control)
    return at is not None and age is not None and now - at > age


def _waiver_for(
    waivers: Iterable[_Waiver],
    host: str,
    groups: Sequence[str],
    checked_at: dt.datetime,
    now: dt.datetime,
) -> str:
    """The id of the waiver (of this control) that accepts this finding, or "".

    A waiver holds from its approval to its expiry, and only for results checked in that time:
    a finding checked before the approval stays a finding until the next check.
    """
    for waiver in waivers:
        approved = waiver.approved_at
        if (
            approved is not None
            and checked_at >= approved
            and waiver.applies(host, list(groups), now)
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
    with _gc_paused():
        return _evaluate(policy, results, hosts, now, controls, keep_filtered).items


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Scoring a fleet makes millions of small objects without cycles; the cyclic collector
    would rescan all of them again and again while they are built (a third of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _latest(
    results: Iterable[ResultRecord],
    hosts: Mapping[str, Sequence[str]],
    now: dt.datetime,
    keep_filtered: bool,
) -> dict[str, dict[str, ResultRecord]]:
    """The result that counts per control and host (control first: one lookup per control)."""
    latest: dict[str, dict[str, ResultRecord]] = {}
    for result in results:
        if result.host not in hosts or result.checked_at > now:
            continue
        real = result.status != "notchecked"
        if not real and not keep_filtered:
            continue
        of_control = latest.get(result.control_id)
        if of_control is None:
            of_control = latest[result.control_id] = {}
        held = of_control.get(result.host)
        # A real result beats any notchecked one; among equals the newest wins.
        if held is None or (real, result.checked_at) >= (
            held.status != "notchecked",
            held.checked_at,
        ):
            of_control[result.host] = result
    return latest


def _evaluate(
    policy: PolicyLike,
    results: Iterable[ResultRecord],
    hosts: Mapping[str, Sequence[str]],
    now: dt.datetime,
    controls: Iterable[str] | None,
    keep_filtered: bool,
) -> _Columns:
    if now.tzinfo is None:
        raise ValueError("now must be an aware UTC time")
    wanted = set(controls) if controls is not None else None
    weights = policy.settings.severity_weights
    latest = _latest(results, hosts, now, keep_filtered)
    fleet = sorted(hosts)
    group_sets = {host: set(hosts[host]) for host in fleet}
    waivers: dict[str, list[_Waiver]] = {}
    for w in policy.waivers:
        waivers.setdefault(w.control, []).append(w)

    cols = _Columns.empty()
    items = cols.items
    for control in policy.controls:
        if wanted is not None and control.id not in wanted:
            continue
        cid = control.id
        clauses = tuple(control.source)
        first = clauses[0] if clauses else ""
        weight = float(weights.get(control.severity, 1.0)) * float(control.weight)
        common = Item(
            "",
            cid,
            control.kind,
            control.severity,
            weight,
            first,
            clauses,
            _chapter(first),
            "unknown",
            "unknown",
        )
        if control.kind == "manual":
            items.append(_manual(policy, control, now, common))
            continue
        scope = set(control.applies_to)
        applies = fleet if "all" in scope else [h for h in fleet if scope & group_sets[h]]
        age = _max_age(control)
        cutoff = now - age if age is not None else None
        mine = waivers.get(cid, ())
        found_of = latest.get(cid, {})
        kind, severity, chapter = control.kind, control.severity, _chapter(first)
        for host in applies:
            found = found_of.get(host)
            if found is None:
                items.append(common._replace(target=host, reason="no evidence recorded"))
                continue
            raw, reason, at = found.status, found.reason, found.checked_at
            if cutoff is not None and at < cutoff and raw not in EXCLUDED:
                raw = "stale"
                reason = f"evidence from {at.isoformat()} is older than {control.frequency}"
            waiver = ""
            if raw in WAIVABLE and mine:
                waiver = _waiver_for(mine, host, hosts[host], at, now)
            items.append(
                Item(
                    host,
                    cid,
                    kind,
                    severity,
                    weight,
                    first,
                    clauses,
                    chapter,
                    raw,
                    "waived" if waiver else raw,
                    reason,
                    found.evidence,
                    at,
                    waiver,
                    found.run_id,
                )
            )
    cols.index()
    return cols


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
    return common._replace(
        target=ORG,
        raw=status,
        effective=status,
        reason=reason,
        evidence=evidence,
        evidence_at=at,
    )


# -- columns: every figure from one set of arrays ------------------------------------------------
#
# Items stay the readable record; the figures are computed from numpy columns built from them
# once (target, control, clause, chapter, kind, weight, counted, passing per view), so a fleet of
# 10,000 hosts x 200 controls is scored in seconds: every grouping is one sort and a few
# bincounts, never a Python loop per group.


@dataclasses.dataclass
class _Columns:
    items: list[Item]
    targets: list[str] = dataclasses.field(default_factory=list)
    controls: list[str] = dataclasses.field(default_factory=list)
    clauses: list[str] = dataclasses.field(default_factory=list)
    chapters: list[str] = dataclasses.field(default_factory=list)
    target: Any = None  # int64[n]: index into targets (targets sorted by name)
    control: Any = None  # int64[n]: index into controls
    clause: Any = None  # int64[n]: index into clauses (the primary clause)
    chapter_of_clause: Any = None  # int64[len(clauses)]
    manual: Any = None  # bool[n]
    weight: Any = None  # float64[n]
    counted: Any = None  # bool[n]: not notapplicable / notchecked (the same in both views)
    passed: dict[str, Any] = dataclasses.field(default_factory=dict)  # view -> bool[n]

    @classmethod
    def empty(cls) -> _Columns:
        return cls(items=[])

    @classmethod
    def of(cls, items: Iterable[Item]) -> _Columns:
        cols = cls(items=list(items))
        cols.index()
        return cols

    def index(self) -> None:
        items = self.items
        n = len(items)

        def column(field: int) -> list[Any]:
            return list(map(operator.itemgetter(field), items))

        def indexed(values: list[str], names: list[str] | None = None) -> tuple[list[str], Any]:
            names = names if names is not None else sorted(set(values))
            where = {name: k for k, name in enumerate(names)}
            return names, np.fromiter(map(where.__getitem__, values), np.int64, n)

        self.targets, self.target = indexed(column(0))
        controls = column(1)
        self.controls, self.control = indexed(controls, list(dict.fromkeys(controls)))
        self.clauses, self.clause = indexed(column(5))
        self.chapters = sorted({_chapter(c) for c in self.clauses})
        where = {name: k for k, name in enumerate(self.chapters)}
        self.chapter_of_clause = np.array(
            [where[_chapter(c)] for c in self.clauses], dtype=np.int64
        )
        kinds, kind = indexed(column(2))
        self.manual = np.array([k == "manual" for k in kinds], dtype=bool)[kind]
        self.weight = np.fromiter(column(4), np.float64, n)
        statuses, raw = indexed(column(8))
        self.counted = np.array([s not in EXCLUDED for s in statuses], dtype=bool)[raw]
        self.passed = {"raw": np.array([s in PASSING for s in statuses], dtype=bool)[raw]}
        statuses, effective = indexed(column(9))
        self.passed["effective"] = np.array([s in PASSING for s in statuses], dtype=bool)[effective]

    def groups(
        self, member: Any, group: Any, names: Sequence[str], model: str
    ) -> dict[str, ScoreSet]:
        """ScoreSets of the groups `names`: item `member[k]` belongs to group `group[k]`."""
        per_kind = {}
        for kind, manual in (("automated", False), ("manual", True)):
            keep = self.counted[member] & (self.manual[member] == manual)
            per_kind[kind] = _Stats(self, member[keep], group[keep], len(names), model)
        out = {}
        for g, name in enumerate(names):
            figures = {}
            for view in VIEWS:
                a = per_kind["automated"].figure(g, view)
                m = per_kind["manual"].figure(g, view)
                figures[(view, "automated")] = a
                figures[(view, "manual")] = m
                weights = (
                    float(per_kind["automated"].control_weight[g]),
                    float(per_kind["manual"].control_weight[g]),
                )
                figures[(view, "all")] = combine(a, m, weights, model)
            out[name] = ScoreSet(figures)
        return out

    def grouped_one(self, by: Any, names: Sequence[str], model: str) -> dict[str, ScoreSet]:
        """Group items by one key each: item k is in group `names[by[k]]`."""
        used = np.unique(by)
        ordered = sorted(names[v] for v in used.tolist())
        rank = np.zeros(len(names), dtype=np.int64)
        position = {name: k for k, name in enumerate(ordered)}
        for v in used.tolist():
            rank[v] = position[names[v]]
        member = np.arange(len(by), dtype=np.int64)
        return self.groups(member, rank[by], ordered, model)

    def grouped(
        self, keys_of: Callable[[int], Iterable[str]], by: Any, model: str
    ) -> dict[str, ScoreSet]:
        """Group items by keys of one of their index columns: every item whose `by` value is v
        is in each of the groups `keys_of(v)` (none, one or several)."""
        order = np.argsort(by, kind="stable")
        values = by[order]
        members, groups = [], []
        names: dict[str, int] = {}
        for value in np.unique(values).tolist():
            start, stop = np.searchsorted(values, [value, value + 1])
            for key in keys_of(value):
                members.append(order[start:stop])
                groups.append(np.full(stop - start, names.setdefault(key, len(names))))
        if not members:
            return {}
        ordered = sorted(names)
        position = {name: k for k, name in enumerate(ordered)}
        rank = np.array([position[name] for name in names], dtype=np.int64)
        return self.groups(np.concatenate(members), rank[np.concatenate(groups)], ordered, model)


class _Stats:
    """Sums per group of one kind's counted items, for both views and any model."""

    def __init__(self, cols: _Columns, member: Any, group: Any, n: int, model: str) -> None:
        self.model, self.n_groups = model, n
        weight = cols.weight[member]
        self.counted = np.bincount(group, minlength=n)
        self.passed = {v: np.bincount(group[cols.passed[v][member]], minlength=n) for v in VIEWS}
        self.points = {
            v: np.bincount(group, weights=weight * cols.passed[v][member], minlength=n)
            for v in VIEWS
        }
        self.maximum = np.bincount(group, weights=weight, minlength=n)
        # Each control once, however many targets it is counted on.
        n_controls = max(len(cols.controls), 1)
        pairs, first = np.unique(group * n_controls + cols.control[member], return_index=True)
        once = np.ones(len(pairs)) if model == "flat_unweighted" else weight[first]
        self.control_weight = np.bincount(pairs // n_controls, weights=once, minlength=n)
        self.targets: dict[str, tuple[Any, Any, Any]] = {}
        if model == "xccdf":
            self._xccdf(cols, member, group, weight)

    def _xccdf(self, cols: _Columns, member: Any, group: Any, weight: Any) -> None:
        # group -> target -> chapter -> clause -> rule; a group's weight is 1, a rule's its own.
        n_t, n_cl, n_ch = len(cols.targets), max(len(cols.clauses), 1), max(len(cols.chapters), 1)
        cells, cell_of = np.unique(
            (group * n_t + cols.target[member]) * n_cl + cols.clause[member], return_inverse=True
        )
        cell_weight = np.bincount(cell_of, weights=weight, minlength=len(cells))
        gt = cells // n_cl
        chapters, chapter_of = np.unique(
            gt * n_ch + cols.chapter_of_clause[cells % n_cl], return_inverse=True
        )
        clauses_in = np.bincount(chapter_of, minlength=len(chapters))
        targets, target_of = np.unique(chapters // n_ch, return_inverse=True)
        chapters_in = np.bincount(target_of, minlength=len(targets))
        group_of_target = targets // n_t
        starts = np.searchsorted(group_of_target, np.arange(self.n_groups + 1))
        for view in VIEWS:
            good = np.bincount(
                cell_of, weights=weight * cols.passed[view][member], minlength=len(cells)
            )
            clause_score = np.divide(
                100.0 * good, cell_weight, out=np.zeros(len(cells)), where=cell_weight > 0
            )
            chapter_score = np.bincount(chapter_of, weights=clause_score) / clauses_in
            target_score = np.bincount(target_of, weights=chapter_score) / chapters_in
            self.targets[view] = (target_score, starts, group_of_target)

    def figure(self, g: int, view: str) -> Figure:
        model, n = self.model, int(self.counted[g])
        if not n:
            return Figure(model, 0.0, 0.0, None, 0, 0, "nothing counted")
        k = int(self.passed[view][g])
        if model in ("flat", "flat_unweighted"):
            if model == "flat":
                points, maximum = float(self.points[view][g]), float(self.maximum[g])
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
                f"100 when every counted result passes, else 0: {k} of {n} pass → "
                f"{100 if ok else 0}%"
            )
            return Figure(model, 1.0 if ok else 0.0, 1.0, 100.0 if ok else 0.0, n, k, formula)
        scores, starts, _ = self.targets[view]
        these = scores[starts[g] : starts[g + 1]]
        percent = float(these.sum()) / len(these)
        formula = (
            f"mean over {len(these)} target(s) of their XCCDF default score "
            f"(chapters' mean of clauses' mean of Σ weight x 0|100 / Σ weight of rules) = "
            f"({_listed(these[:6].tolist(), len(these))}) / {len(these)} = {_pct(percent)}"
        )
        return Figure(model, percent, 100.0, percent, n, k, formula)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}%"


def _listed(values: Sequence[float], total: int, limit: int = 6) -> str:
    shown = " + ".join(f"{v:.4g}" for v in values[:limit])
    return shown + (f" + … ({total - limit} more)" if total > limit else "")


def figure(items: Sequence[Item], model: str, view: str) -> Figure:
    """Score a set of items of one kind (or any set, ignoring kinds) with one model, one view."""
    if model not in MODELS:
        raise ValueError(f"unknown scoring model {model!r} (choose {', '.join(MODELS)})")
    cols = _Columns.of(items)
    member = np.flatnonzero(cols.counted)
    stats = _Stats(cols, member, np.zeros(len(member), dtype=np.int64), 1, model)
    return stats.figure(0, view)


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
    cols = _Columns.of(items)
    member = np.arange(len(cols.items), dtype=np.int64)
    return cols.groups(member, np.zeros(len(member), dtype=np.int64), ["*"], model)["*"]


def _model_name(policy: PolicyLike, model: str | None) -> str:
    name = model or policy.settings.scoring_model
    if name == "default":
        name = "xccdf"
    if name not in MODELS:
        raise ValueError(f"unknown scoring model {name!r} (choose {', '.join(MODELS)})")
    return name


def _clause_keys(clause: str) -> list[str]:
    # The primary clause and its parents (4.2.1 -> 4.2, 4.2.1); the chapter is its own table.
    parts = clause.split(".") if clause else []
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
    with _gc_paused():
        cols = _evaluate(policy, results, hosts, now, controls, keep_filtered)
    everything = np.arange(len(cols.items), dtype=np.int64)
    return Scores(
        model=name,
        as_of=now,
        items=tuple(cols.items),
        overall=cols.groups(everything, np.zeros_like(everything), ["*"], name)["*"],
        by_host=cols.grouped_one(cols.target, cols.targets, name),
        by_chapter=cols.grouped_one(cols.chapter_of_clause[cols.clause], cols.chapters, name),
        by_clause=cols.grouped(lambda c: _clause_keys(cols.clauses[c]), cols.clause, name),
        by_control=cols.grouped_one(cols.control, cols.controls, name),
        retired=tuple(retired_hosts(results, hosts)),
        columns=cols,
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
        ("clause", scores.by_clause, lambda i: key in _clause_keys(i.clause)),
        ("chapter", scores.by_chapter, lambda i: i.chapter == key),
    ):
        if key in table:
            return label, table[key], [i for i in scores.items if match(i)]
    raise KeyError(f"{key!r} is no control, host, clause or chapter in these scores")
