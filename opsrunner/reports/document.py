"""The canonical report document of one stored run: every format is rendered from it."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import hashlib
import io
import itertools
import json
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO, overload

import numpy as np

from opsrunner import __version__, paths
from opsrunner.scoring import KINDS, VIEWS, Figure, Item, Scores, ScoreSet, run_scores
from opsrunner.store import HostRecord, ResultRecord, RunRecord, Store
from opsrunner.store.reading import report_results

SCHEMA_VERSION = "2.0"
PASSING = frozenset({"pass", "waived"})
EXCLUDED = frozenset({"notapplicable", "notchecked"})
# Worse statuses first: a list of problems reads from the gravest.
STATUS_ORDER = (
    "fail",
    "error",
    "unknown",
    "stale",
    "waived",
    "pass",
    "notapplicable",
    "notchecked",
)
DEFAULT_GRADES = (("A", 90.0), ("B", 80.0), ("C", 70.0), ("D", 60.0))
EXPIRING_DAYS = 30
TREND_RUNS = 12
FINISHED = ("successful", "failed", "timeout", "canceled", "interrupted")


@functools.lru_cache(maxsize=65536)
def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def failing(status: str) -> bool:
    """Counted and not passing."""
    return status not in PASSING and status not in EXCLUDED


def _formula(fig: Figure, view: str, kind: str) -> str:
    given = getattr(fig, "formula", None)
    if isinstance(given, str) and given:
        return given
    pct = "n/a" if fig.percent is None else f"{fig.percent:.2f}%"
    which = (
        "waivers ignored"
        if view == "raw"
        else "a valid waiver turns fail into waived, which passes"
    )
    scope = {"automated": "automated controls", "manual": "manual controls"}.get(kind, "all")
    head = f"{view} ({which}), {scope}: {fig.passed} of {fig.counted} counted results pass; "
    if fig.model == "flat":
        return head + (
            f"flat = Σ weight(passing) / Σ weight(counted) = {fig.points:g} / {fig.maximum:g}"
            f" = {pct}"
        )
    if fig.model == "flat_unweighted":
        return head + f"flat unweighted = passing / counted = {fig.passed} / {fig.counted} = {pct}"
    if fig.model == "absolute":
        return head + f"absolute = 100 when every counted result passes, else 0 = {pct}"
    return head + (
        "XCCDF default = mean over hosts (and the organisation for manual controls) of the mean"
        " of their chapters, each the mean of its clauses, each the weighted mean of its rules"
        f" (100 or 0; weight = severity weight \u00d7 control weight) = {pct}"
    )


def figures(table: ScoreSet) -> dict[str, dict[str, dict[str, Any]]]:
    """raw/effective x automated/manual/all as plain data, each with its formula."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for view in VIEWS:
        out[view] = {}
        for kind in KINDS:
            fig = table.get(view, kind)
            out[view][kind] = {
                "percent": _round(fig.percent),
                "points": _round(fig.points),
                "maximum": _round(fig.maximum),
                "counted": fig.counted,
                "passed": fig.passed,
                "formula": _formula(fig, view, kind),
            }
    return out


def grade_of(percent: float | None, grades: Sequence[tuple[str, float]]) -> str:
    """The letter of a percentage: the first threshold it reaches, else F."""
    if percent is None:
        return "-"
    for letter, minimum in grades:
        if percent >= minimum:
            return letter
    return "F"


def _grades(policy: Any) -> tuple[tuple[str, float], ...]:
    # The policy may name its own thresholds (settings.grades: {A: 90, …}); else the defaults.
    given = getattr(policy.settings, "grades", None) or getattr(
        policy.settings, "grade_thresholds", None
    )
    if isinstance(given, Mapping) and given:
        pairs = sorted(((str(k), float(v)) for k, v in given.items()), key=lambda p: -p[1])
        return tuple(pairs)
    return DEFAULT_GRADES


@dataclasses.dataclass
class Report:
    """The canonical document: plain data (JSON-ready), built once per run."""

    data: dict[str, Any]

    def to_json(self) -> str:
        """Reproducible JSON: sorted keys, ASCII only (bidi and control characters escaped).

        Compact, so that the C encoder writes a fleet's full matrix in seconds (pipe it through
        `python -m json.tool` to read it). See `write_json`.
        """
        out = io.StringIO()
        self.write_json(out)
        return out.getvalue()

    def write_json(self, out: TextIO) -> None:
        """Write the JSON of `to_json` to `out` a piece at a time, never as one string.

        The results matrix is written column by column (schema 2.0, see `RESULT_COLUMNS`), each
        column a slice at a time, so a fleet's two million rows never exist as dicts or text.
        """
        out.write("{")
        for n, key in enumerate(sorted(self.data)):
            value = self.data[key]
            out.write(("," if n else "") + _dumps(key) + ":")
            if isinstance(value, ResultRows):
                value.write_json(out)
            else:
                out.write(_dumps(value))
        out.write("}\n")

    # Convenience views used by the renderers.
    def __getitem__(self, key: str) -> Any:
        return self.data[key]


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


#: The columns of the JSON `results` (schema 2.0): what varies per host x control. What is
#: the same for every row of one control (kind, severity, rule weight, primary clause,
#: chapter) is said once, in that control's row of `controls`.
RESULT_COLUMNS = (
    "control",
    "effective",
    "evidence",
    "evidence_at",
    "evidence_sha256",
    "evidence_truncated",
    "host",
    "raw",
    "reason",
    "run",
    "task",
    "waiver",
)
#: The per-control fields of an in-memory result row, found in `controls` in the JSON.
CONTROL_FIELDS = {
    "kind": "kind",
    "severity": "severity",
    "weight": "rule_weight",
    "clause": "clause",
    "chapter": "chapter",
}


def rows_of(data: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The result rows (as `ResultRows` gives them) of a document loaded from its JSON.

    Schema 2.0 keeps the matrix as columns and each control's constants in `controls`; this
    joins them back into one dict per host x control.
    """
    results = data["results"]
    if isinstance(results, list):  # schema 1.x: rows already
        yield from results
        return
    columns = results["columns"]
    controls = {c["id"]: c for c in data["controls"]}
    for k in range(results["count"]):
        row = {name: columns[name][k] for name in RESULT_COLUMNS}
        control = controls[row["control"]]
        for field, source in CONTROL_FIELDS.items():
            row[field] = control[source]
        yield row


class ResultRows(Sequence[dict[str, Any]]):
    """The document's `results`: one row per scored host x control, made when read.

    A fleet of 10,000 hosts x 200 controls has two million rows; held as dicts they would take
    gigabytes. The rows are built from the scored items (and the stored results behind them)
    each time they are read, so a renderer that needs a few (the HTML matrix) pays for a few.
    `items` and `row` let a renderer choose items before it makes their rows.
    """

    CHUNK = 20_000
    #: Values per slice when a column is encoded (bounds the text held at once).
    JSON_SLICE = 250_000

    def __init__(
        self, items: Sequence[Item], results: Sequence[ResultRecord], columns: Any = None
    ) -> None:
        self.items = items
        self._results = results
        self._index: Any = None
        self._coded: dict[int, tuple[list[str], Any]] = {}
        if columns is not None and len(columns.items) == len(items):
            # Scoring's columns already index targets and controls (same items, same order).
            self._coded[0] = (columns.targets, columns.target)
            self._coded[1] = (columns.controls, columns.control)

    def coded(self, field: int) -> tuple[list[str], Any]:
        """`_coded(items, field)`, computed once per field."""
        if field not in self._coded:
            self._coded[field] = _coded(self.items, field)
        return self._coded[field]

    def _found(self) -> Any:
        """Per item, the index of its stored result (-1: none), as an int64 array.

        The last of several results of one host x control wins, as a dict built in order
        would; numpy keys instead of a dict of two million tuples keep this to a few arrays.
        """
        if self._index is not None:
            return self._index
        results, items = self._results, self.items
        n_r = len(results)
        if not n_r:
            self._index = np.full(len(items), -1, dtype=np.int64)
            return self._index
        # map() over C callables: no Python frame per result or item.
        r_hosts = list(map(operator.attrgetter("host"), results))
        r_controls = list(map(operator.attrgetter("control_id"), results))
        hosts = {name: k for k, name in enumerate(dict.fromkeys(r_hosts))}
        controls = {name: k for k, name in enumerate(dict.fromkeys(r_controls))}
        r_host = np.fromiter(map(hosts.__getitem__, r_hosts), np.int64, n_r)
        r_control = np.fromiter(map(controls.__getitem__, r_controls), np.int64, n_r)
        del r_hosts, r_controls
        width = max(len(controls), 1) + 1
        keys = r_host * width + r_control
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        n_i = len(items)
        i_host = np.fromiter(
            map(hosts.get, map(operator.itemgetter(0), items), itertools.repeat(-1)), np.int64, n_i
        )
        i_control = np.fromiter(
            map(controls.get, map(operator.itemgetter(1), items), itertools.repeat(width - 1)),
            np.int64,
            n_i,
        )
        wanted = i_host * width + i_control
        at = np.maximum(np.searchsorted(keys, wanted, side="right") - 1, 0)
        hit = (i_host >= 0) & (keys[at] == wanted)
        self._index = np.where(hit, order[at], -1)
        return self._index

    def row(self, item: Item, index: int | None = None) -> dict[str, Any]:
        """The row of one item (`index`: its position in `items`, when the caller knows it)."""
        if index is None:
            index = self.items.index(item)
        k = int(self._found()[index])
        found = self._results[k] if k >= 0 else None
        return {
            "host": item.target,
            "control": item.control_id,
            "kind": item.kind,
            "severity": item.severity,
            "weight": item.weight,
            "clause": item.clause,
            "chapter": item.chapter,
            "raw": item.raw,
            "effective": item.effective,
            "reason": item.reason,
            "evidence": item.evidence,
            "evidence_at": _iso(item.evidence_at),
            "evidence_sha256": found.evidence_sha256 if found else "",
            "evidence_truncated": found.evidence_truncated if found else False,
            "task": found.task if found else "",
            "waiver": item.waiver,
            "run": item.run_id,
        }

    def chunks(self) -> Iterator[list[dict[str, Any]]]:
        """The rows, a slice at a time."""
        for start in range(0, len(self.items), self.CHUNK):
            stop = min(start + self.CHUNK, len(self.items))
            yield [self.row(self.items[k], k) for k in range(start, stop)]

    def column(self, name: str, start: int, stop: int) -> list[Any]:
        """Values `start:stop` of one JSON column."""
        items = self.items[start:stop]
        field = _ITEM_FIELD.get(name)
        if field is not None:
            return list(map(operator.itemgetter(field), items))
        if name == "evidence_at":
            times = list(map(operator.itemgetter(12), items))
            text = {t: _iso(t) for t in set(times)}
            return list(map(text.__getitem__, times))
        found = self._found()[start:stop]
        default = {"evidence_sha256": "", "evidence_truncated": False, "task": ""}[name]
        if not len(self._results):
            return [default] * len(found)
        values = list(
            map(operator.attrgetter(name), map(self._results.__getitem__, found.tolist()))
        )
        for k in np.flatnonzero(found < 0).tolist():  # no stored result (picked the last one)
            values[k] = default
        return values

    def write_json(self, out: TextIO) -> None:
        """`{"columns": {name: [values…]}, "count": n}`, each column a slice at a time."""
        n = len(self.items)
        out.write('{"columns":{')
        for c, name in enumerate(RESULT_COLUMNS):
            out.write(("," if c else "") + _dumps(name) + ":[")
            for start in range(0, n, self.JSON_SLICE):
                values = self.column(name, start, min(start + self.JSON_SLICE, n))
                out.write(("," if start else "") + _dumps(values)[1:-1])
            out.write("]")
        out.write('},"count":' + str(n) + "}")

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self.row(self.items[k], k) for k in range(*index.indices(len(self.items)))]
        if index < 0:
            index += len(self.items)
        return self.row(self.items[index], index)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for chunk in self.chunks():
            yield from chunk


#: JSON columns read straight off an item (its field number).
_ITEM_FIELD = {
    "host": 0,
    "control": 1,
    "raw": 8,
    "effective": 9,
    "reason": 10,
    "evidence": 11,
    "waiver": 13,
    "run": 14,
}


def _coded(items: Sequence[Item], field: int) -> tuple[list[str], Any]:
    """The distinct values of one item field (first seen first) and each item's index into
    them, as an int64 array: counting two million items is then one bincount."""
    values = list(map(operator.itemgetter(field), items))
    names = list(dict.fromkeys(values))
    where = {name: k for k, name in enumerate(names)}
    return names, np.fromiter(map(where.__getitem__, values), np.int64, len(values))


Coder = Callable[[int], tuple[list[str], Any]]


def _coder(items: Sequence[Item] | ResultRows) -> Coder:
    if isinstance(items, ResultRows):
        return items.coded
    return functools.partial(_coded, items)


def _counts(items: Sequence[Item] | ResultRows, view: str = "effective") -> dict[str, int]:
    names, codes = _coder(items)(8 if view == "raw" else 9)
    counts = np.bincount(codes, minlength=len(names)).tolist()
    return _ordered({name: n for name, n in zip(names, counts, strict=True) if n})


def _ordered(counts: Mapping[str, int]) -> dict[str, int]:
    return {s: counts[s] for s in STATUS_ORDER if s in counts} | {
        s: n for s, n in sorted(counts.items()) if s not in STATUS_ORDER
    }


def _counts_by(items: Sequence[Item] | ResultRows, key: int) -> dict[str, dict[str, int]]:
    """Effective status counts per target (key 0) or control (key 1)."""
    names, by = _coder(items)(key)
    statuses, status = _coder(items)(9)
    width = max(len(statuses), 1)
    table = np.bincount(by * width + status, minlength=len(names) * width)
    out: dict[str, dict[str, int]] = {}
    for name, row in zip(names, table.reshape(len(names), width).tolist(), strict=True):
        out[name] = _ordered({s: n for s, n in zip(statuses, row, strict=True) if n})
    return out


def _failed_by_severity(items: Sequence[Item] | ResultRows) -> dict[str, int]:
    """Counted, not-passing items (effective view) per severity, first seen first: what
    `Scores.failed` gives, counted on arrays."""
    severities, severity = _coder(items)(3)
    statuses, status = _coder(items)(9)
    bad = np.array([failing(s) for s in statuses], dtype=bool)[status]
    chosen = severity[bad]
    counts = np.bincount(chosen, minlength=len(severities))
    present, first = np.unique(chosen, return_index=True)
    return {severities[k]: int(counts[k]) for k in present[np.argsort(first)].tolist()}


def _failing_of(counts: Mapping[str, int]) -> int:
    return sum(n for status, n in counts.items() if failing(status))


def _sort_key_percent(percent: float | None) -> float:
    return 101.0 if percent is None else percent


def _waiver_rows(policy: Any, as_of: dt.datetime, used: Mapping[str, int]) -> list[dict[str, Any]]:
    rows = []
    for w in sorted(policy.waivers, key=lambda w: (w.expires_at, w.id)):
        status = w.status(as_of) if hasattr(w, "status") else "active"
        if status == "active" and w.approved_at is not None and as_of < w.approved_at:
            status = "pending"
        days_left = (w.expires_at - as_of).total_seconds() / 86400
        rows.append(
            {
                "id": w.id,
                "control": w.control,
                "hosts": list(w.scope.hosts),
                "groups": list(w.scope.groups),
                "justification": w.justification,
                "requester": w.requester,
                "approver": w.approver or "",
                "approved_at": _iso(w.approved_at),
                "requested_at": _iso(w.requested_at),
                "expires_at": _iso(w.expires_at),
                "ticket": w.ticket,
                "status": status,
                "days_left": round(days_left, 1),
                "expiring_soon": status == "active" and days_left <= EXPIRING_DAYS,
                "results_waived": used.get(w.id, 0),
            }
        )
    return rows


def _attestation_rows(policy: Any, as_of: dt.datetime) -> list[dict[str, Any]]:
    rows = []
    for a in sorted(policy.attestations, key=lambda a: (a.control, a.attested_at)):
        if a.attested_at > as_of:
            status = "future"
        elif as_of >= a.valid_until:
            status = "expired"
        else:
            status = "valid"
        days_left = (a.valid_until - as_of).total_seconds() / 86400
        rows.append(
            {
                "control": a.control,
                "attested_by": a.attested_by,
                "attested_at": _iso(a.attested_at),
                "valid_until": _iso(a.valid_until),
                "evidence_file": a.evidence.file,
                "evidence_sha256": a.evidence.sha256,
                "note": a.note,
                "status": status,
                "days_left": round(days_left, 1),
                "expiring_soon": status == "valid" and days_left <= EXPIRING_DAYS,
            }
        )
    return rows


def _run_row(run: RunRecord) -> dict[str, Any]:
    return {
        "ident": run.ident,
        "id": run.id,
        "mode": run.mode,
        "job": run.job,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "user": run.user,
        "controller": run.controller,
        "inventory": run.inventory,
        "limit": run.limit,
        "controls": list(run.controls),
        "policy_commit": run.policy_commit,
        "policy_digest": run.policy_digest,
        "playbook": run.playbook,
        "rc": run.rc,
        "reason": run.reason,
        "late": run.late,
        # Roles whose disruptive steps the run was allowed (enforce --allow-disruptive).
        "disruptive": sorted(str(r) for r in getattr(run, "disruptive", ()) or ()),
        "emergency": run.job == "emergency",
    }


#: How many patching enforces outside a change a report lists (newest first).
OUTSIDE_CHANGES_SHOWN = 50


def _change_control(store: Store, as_of: dt.datetime) -> dict[str, Any]:
    """3.4: patching enforces up to `as_of` that no started change record covered."""
    from opsrunner.notify.changes import outside_changes

    runs = [r for r in outside_changes(store, as_of) if r.started_at <= as_of]
    runs.sort(key=lambda r: r.started_at, reverse=True)
    return {
        "patching_outside_changes": [
            {
                "run": r.ident,
                "started_at": _iso(r.started_at),
                "status": r.status,
                "emergency": r.job == "emergency",
            }
            for r in runs[:OUTSIDE_CHANGES_SHOWN]
        ],
        "patching_outside_changes_total": len(runs),
    }


def _changes(
    before: Sequence[Item] | None, now: Sequence[Item], limit_run: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "previous_run": limit_run,
        "newly_failing": [],
        "fixed": [],
        "regressed": [],
    }
    if before is None:
        return out
    old = {(i.target, i.control_id): i.effective for i in before}
    rank = {s: n for n, s in enumerate(reversed(STATUS_ORDER))}
    for item in now:
        prev = old.get((item.target, item.control_id))
        cur = item.effective
        if prev is None or prev == cur:
            continue
        row = {"host": item.target, "control": item.control_id, "before": prev, "after": cur}
        if prev in PASSING and failing(cur):
            out["newly_failing"].append(row)
        elif failing(prev) and cur in PASSING:
            out["fixed"].append(row)
        elif failing(prev) and failing(cur) and rank.get(cur, 0) > rank.get(prev, 0):
            out["regressed"].append(row)
    return out


def _previous_runs(store: Store, run: RunRecord) -> list[RunRecord]:
    earlier = [
        r
        for r in store.list_runs(limit=200, mode=run.mode)
        if r.status in FINISHED
        and r.id != run.id
        and (r.ended_at or r.started_at) <= (run.ended_at or run.started_at)
        and r.job == run.job
    ]
    earlier.sort(key=lambda r: (r.ended_at or r.started_at, r.id or 0), reverse=True)
    return earlier[: TREND_RUNS - 1]


def build(
    store: Store,
    policy: Any,
    run_key: int | str = "latest",
    *,
    model: str | None = None,
) -> Report:
    """The report of one stored run (or the newest finished audit with `latest`)."""
    run = resolve_run(store, run_key)
    assert run.id is not None
    results = report_results(store, run.id)
    hosts = store.hosts(run.id)
    scores = run_scores(policy, run, results, hosts, model=model)
    previous = _previous_runs(store, run)
    cache = _TrendCache(store.state_dir, policy, model)
    cache.put(run, _trend_point(run, scores))
    trend: list[dict[str, Any]] = []
    before_items: Sequence[Item] | None = None
    for n, past in enumerate(previous):
        assert past.id is not None
        point = cache.get(past) if n else None
        if point is None:
            # The previous run is scored in full (its items give "since the last run"); older
            # runs only for their trend point, once: the point is kept beside the store.
            past_scores = run_scores(
                policy, past, report_results(store, past.id), store.hosts(past.id), model=model
            )
            if n == 0:
                before_items = past_scores.items
            point = _trend_point(past, past_scores)
            cache.put(past, point)
        trend.append(point)
    cache.save()
    trend.reverse()
    trend.append(_trend_point(run, scores))
    return assemble(
        policy,
        run,
        results,
        hosts,
        scores,
        change_control=_change_control(store, scores.as_of),
        trend=trend,
        before=before_items,
        previous=previous[0].ident if previous else None,
    )


@functools.cache
def _scoring_code() -> str:
    # A change of scoring's code (its semantics) must not reuse points computed by the old one.
    from opsrunner.scoring import engine, runs

    blob = b"".join(Path(m.__file__ or "").read_bytes() for m in (engine, runs))
    return hashlib.sha256(blob).hexdigest()[:16]


class _TrendCache:
    """Trend points already computed, per run, policy digest and model (<state>/reports/)."""

    def __init__(self, state_dir: Path, policy: Any, model: str | None) -> None:
        self.path = state_dir / "reports" / "trend-cache.json"
        digest = policy.digest() if hasattr(policy, "digest") else ""
        self.prefix = f"{_scoring_code()}|{digest}|{model or policy.settings.scoring_model}|"
        self.changed = False
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            self.points: dict[str, dict[str, Any]] = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self.points = {}

    def _key(self, run: RunRecord) -> str:
        return f"{self.prefix}{run.id}|{run.ident}|{_iso(run.ended_at)}"

    def get(self, run: RunRecord) -> dict[str, Any] | None:
        found = self.points.get(self._key(run))
        return dict(found) if isinstance(found, dict) else None

    def put(self, run: RunRecord, point: dict[str, Any]) -> None:
        if run.status in FINISHED and self.points.get(self._key(run)) != point:
            self.points[self._key(run)] = point
            self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        try:
            paths.private_dir(self.path.parent, tighten=False)  # scores: owner-only (issue 15)
            paths.write_private(self.path, json.dumps(self.points, sort_keys=True))
        except OSError:
            pass  # a read-only state directory: the points are computed again next time


def resolve_run(store: Store, run_key: int | str) -> RunRecord:
    """A run by id/ident, or `latest`: the newest finished audit (else any finished run)."""
    if str(run_key) != "latest":
        return store.get_run(run_key)
    runs = [r for r in store.list_runs(limit=50) if r.status in FINISHED]
    audits = [r for r in runs if r.mode == "audit"]
    chosen = (audits or runs)[:1]
    if not chosen:
        from opsrunner.store import StoreError

        raise StoreError("no finished run in the store")
    return chosen[0]


def _trend_point(run: RunRecord, scores: Scores) -> dict[str, Any]:
    return {
        "run": run.ident,
        "ended_at": _iso(run.ended_at or run.started_at),
        "raw": _round(scores.overall.get("raw", "all").percent),
        "effective": _round(scores.overall.get("effective", "all").percent),
    }


def assemble(
    policy: Any,
    run: RunRecord,
    results: Sequence[ResultRecord],
    hosts: Sequence[HostRecord],
    scores: Scores,
    *,
    trend: Sequence[Mapping[str, Any]] = (),
    before: Sequence[Item] | None = None,
    previous: str | None = None,
    change_control: Mapping[str, Any] | None = None,
) -> Report:
    """The document from a run, its results and hosts, and their scores (no I/O)."""
    as_of = scores.as_of
    grades = _grades(policy)
    items = scores.items
    result_rows = ResultRows(items, results, getattr(scores, "columns", None))
    controls = {c.id: c for c in policy.controls}
    clause_of = {c.number: c for c in policy.clauses}
    host_rec = {h.host: h for h in hosts}

    overall = figures(scores.overall)
    eff_all = scores.overall.get("effective", "all").percent
    counts_of_host = _counts_by(result_rows, 0)
    counts_of_control = _counts_by(result_rows, 1)
    targets, target = result_rows.coded(0)
    kinds, kind = result_rows.coded(2)
    manual = np.array([k == "manual" for k in kinds], dtype=bool)[kind]
    manual_only = {targets[t] for t in np.unique(target[manual]).tolist()} - {
        targets[t] for t in np.unique(target[~manual]).tolist()
    }

    # Hosts with results that are no longer in the scored fleet (scoring's `retired`).
    retired = set(getattr(scores, "retired", ()) or ())
    host_rows: list[dict[str, Any]] = []
    for name, table in scores.by_host.items():
        rec = host_rec.get(name)
        counts = counts_of_host.get(name, {})
        eff = table.get("effective", "all").percent
        host_rows.append(
            {
                "host": name,
                "groups": list(rec.groups) if rec else [],
                "reachable": rec.reachable if rec else True,
                "reason": rec.reason if rec else "",
                "retired": name in retired,
                "organisation": rec is None and name in manual_only,
                "grade": grade_of(eff, grades),
                "scores": figures(table),
                "counts": counts,
                "failing": _failing_of(counts),
            }
        )
    host_rows.sort(
        key=lambda h: (
            _sort_key_percent(h["scores"]["effective"]["all"]["percent"]),
            -h["failing"],
            h["host"],
        )
    )

    # per control
    weights = policy.settings.severity_weights
    control_rows: list[dict[str, Any]] = []
    for control in policy.controls:
        if control.id not in scores.by_control:
            continue
        counts = counts_of_control.get(control.id, {})
        table = scores.by_control[control.id]
        weight = float(weights.get(control.severity, 1.0)) * float(control.weight)
        primary = control.source[0] if control.source else ""
        control_rows.append(
            {
                "id": control.id,
                "title": control.title,
                "description": control.description,
                "kind": control.kind,
                "severity": control.severity,
                "weight": control.weight,
                # What every result row of this control shares (schema 2.0 says it once here).
                "rule_weight": weight,
                "clause": primary,
                "chapter": primary.split(".", 1)[0],
                "owner": control.owner,
                "role": control.role or "",
                "task_prefix": control.prefix if hasattr(control, "prefix") else control.id,
                "frequency": str(control.frequency),
                "clauses": list(control.source),
                "applies_to": list(control.applies_to),
                "evidence_required": control.evidence_required or "",
                "scores": figures(table),
                "counts": counts,
                "failing": _failing_of(counts),
                "failing_weight": round(weight * _failing_of(counts), 2),
            }
        )
    worst_controls = [
        c["id"]
        for c in sorted(
            (c for c in control_rows if c["failing"]),
            key=lambda c: (-c["failing_weight"], -c["failing"], c["id"]),
        )
    ]

    chapter_rows: list[dict[str, Any]] = []
    for number, table in scores.by_chapter.items():
        clause = clause_of.get(number)
        chapter_rows.append(
            {
                "number": number,
                "heading": (clause.heading or "") if clause else "",
                "heading_zh": (clause.heading_zh or "") if clause else "",
                "scores": figures(table),
            }
        )
    chapter_rows.sort(key=lambda c: _clause_sort(c["number"]))

    owner_of = {cid: [c.owner] for cid, c in controls.items()}
    owner_controls: dict[str, set[str]] = {}
    failing_of_owner: dict[str, int] = {}
    for cid, counts in counts_of_control.items():
        owner = controls[cid].owner if cid in controls else ""
        owner_controls.setdefault(owner, set()).add(cid)
        failing_of_owner[owner] = failing_of_owner.get(owner, 0) + _failing_of(counts)
    owner_rows = [
        {
            "owner": owner,
            "controls": sorted(owner_controls.get(owner, ())),
            "scores": figures(table),
            "failing": failing_of_owner.get(owner, 0),
        }
        for owner, table in scores.by_controls(owner_of).items()
    ]

    groups_of = {h.host: list(h.groups) for h in hosts if h.host in counts_of_host}
    group_hosts: dict[str, int] = {}
    failing_of_group: dict[str, int] = {}
    for name, groups in groups_of.items():
        for group in groups:
            group_hosts[group] = group_hosts.get(group, 0) + 1
            failing_of_group[group] = failing_of_group.get(group, 0) + _failing_of(
                counts_of_host[name]
            )
    group_rows = [
        {
            "group": group,
            "hosts": group_hosts[group],
            "scores": figures(table),
            "failing": failing_of_group[group],
        }
        for group, table in scores.by_targets(groups_of).items()
    ]

    clause_rows = []
    for clause in policy.clauses:
        cited = sorted(c.id for c in policy.controls if clause.number in c.source)
        clause_table = scores.by_clause.get(clause.number)
        clause_rows.append(
            {
                "number": clause.number,
                "heading": clause.heading or "",
                "heading_zh": clause.heading_zh or "",
                "text": clause.text,
                "not_applicable": clause.not_applicable or "",
                "controls": cited,
                "scores": figures(clause_table) if clause_table is not None else None,
            }
        )

    waived_by = collections.Counter(map(operator.itemgetter(13), items))
    del waived_by[""]
    raws, raw = result_rows.coded(8)
    stale = np.flatnonzero(raw == raws.index("stale")) if "stale" in raws else np.zeros(0, int)
    stale_rows = [
        {
            "host": item.target,
            "control": item.control_id,
            "evidence_at": _iso(item.evidence_at),
            "reason": item.reason,
        }
        for item in map(items.__getitem__, stale.tolist())
    ]

    regulation = getattr(policy, "regulation", None)
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generator": f"opsrunner {__version__}",
        "as_of": _iso(as_of),
        "policy": {
            "name": policy.settings.name,
            "version": policy.settings.version,
            "regulation_title": getattr(regulation, "title", ""),
            "regulation_title_zh": getattr(regulation, "title_zh", ""),
            "commit": run.policy_commit,
            "digest": run.policy_digest,
            "model": scores.model,
            "grades": [{"grade": g, "min": m} for g, m in grades],
            "expiring_days": EXPIRING_DAYS,
        },
        "run": _run_row(run),
        "change_control": dict(
            change_control or {"patching_outside_changes": [], "patching_outside_changes_total": 0}
        ),
        "grade": grade_of(eff_all, grades),
        "scores": overall,
        "failed_by_severity": _failed_by_severity(result_rows),
        "totals": {
            "hosts": sum(1 for h in host_rows if not h["organisation"]),
            "controls": len(control_rows),
            "results": len(result_rows),
            "raw": _counts(result_rows, "raw"),
            "effective": _counts(result_rows, "effective"),
        },
        "trend": [dict(t) for t in trend] or [_trend_point(run, scores)],
        "changes": _changes(before, items, previous),
        "chapters": chapter_rows,
        "owners": owner_rows,
        "groups": group_rows,
        "hosts": host_rows,
        "controls": control_rows,
        "worst_controls": worst_controls,
        "retired_hosts": sorted(retired),
        "clauses": clause_rows,
        "results": result_rows,
        "stale": stale_rows,
        "waivers": _waiver_rows(policy, as_of, waived_by),
        "attestations": _attestation_rows(policy, as_of),
    }
    return Report(data)


def _clause_sort(number: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in number.split("."))
