"""The period assessment (chapter 7): the 7.1.1 scorecard against 7.1.2 targets, and a grade."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select

from opsrunner.emergency import drills, incidents, support
from opsrunner.notify.changes import summary as change_summary
from opsrunner.policy.loader import Policy
from opsrunner.policy.models import INDICATORS
from opsrunner.policy.plan_checks import plan_problems
from opsrunner.reports.safe import md
from opsrunner.scoring import availability
from opsrunner.scoring import score as compute
from opsrunner.store import Store
from opsrunner.store.models import Result, Run

RESTORE_CONTROL = "BAK-007"
RESTORE_JOB = "restore_test"
_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")


class AssessError(Exception):
    """A period or input the assessment refuses."""


def period(
    quarter: str | None = None, year: int | None = None
) -> tuple[str, dt.datetime, dt.datetime]:
    """The label and [start, end) in UTC of `--quarter 2026Q4` or `--year 2026`."""
    if (quarter is None) == (year is None):
        raise AssessError("give one of --quarter (e.g. 2026Q4) or --year (e.g. 2026)")
    if quarter is not None:
        match = _QUARTER.match(quarter.strip().upper())
        if not match:
            raise AssessError(f"--quarter: {quarter!r} is not YYYYQn (e.g. 2026Q4)")
        y, q = int(match.group(1)), int(match.group(2))
        start = dt.datetime(y, 3 * q - 2, 1, tzinfo=dt.UTC)
        end = dt.datetime(y + (q == 4), 1 if q == 4 else 3 * q + 1, 1, tzinfo=dt.UTC)
        return f"{y}Q{q}", start, end
    assert year is not None
    if not 2000 <= year <= 2100:
        raise AssessError(f"--year: {year} is out of range")
    return (
        str(year),
        dt.datetime(year, 1, 1, tzinfo=dt.UTC),
        dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC),
    )


def _p95(values: Sequence[float]) -> float | None:
    """Nearest-rank 95th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 1)


def _month_ends(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    out = []
    year, month = start.year, start.month
    while True:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        moment = dt.datetime(year, month, 1, tzinfo=dt.UTC)
        if moment >= end:
            break
        out.append(moment)
    return [*out, end]


def _restore_checks(store: Store, start: dt.datetime, end: dt.datetime) -> tuple[int, int]:
    """Restore drills and tests (BAK-007 results) in the period, and how many matched checksums."""
    with store.session() as session:
        rows = session.execute(
            select(Result.status, Result.data)
            .join(Run, Run.id == Result.run_id)
            .where(
                # Only the restore job restores; an audit's BAK-007 only reads its last record.
                Run.mode == "operate",
                Run.job == RESTORE_JOB,
                Result.control_id == RESTORE_CONTROL,
                Result.checked_at >= start,
                Result.checked_at < end,
                Result.status.in_(("pass", "fail")),
            )
        ).all()
    matched = sum(1 for _, data in rows if (data or {}).get("status") == "passed")
    return len(rows), matched


def assess(
    store: Store,
    policy: Policy,
    fleet: Mapping[str, Sequence[str]],
    *,
    label: str,
    start: dt.datetime,
    end: dt.datetime,
    scrape_interval: dt.timedelta,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Every figure of the assessment of [start, end), as of min(end, now)."""
    moment = now or dt.datetime.now(dt.UTC)
    if start >= moment:
        raise AssessError(f"the period {label} has not started yet")
    as_of = min(end, moment)
    targets = policy.targets
    if targets is None:
        raise AssessError("policy/targets.yml is missing: the indicators have no targets (7.1.2)")
    hosts = sorted(fleet)

    # Only the fleet's scrapes: a host no longer in the inventory is not assessed.
    samples = [s for s in store.samples(since=start, until=as_of) if s.host in fleet]
    per_host = availability(samples, hosts, start, as_of, scrape_interval)
    ok = sum(a.ok for a in per_host.values())
    expected = sum(a.expected for a in per_host.values())
    avail = round(min(100.0, 100.0 * ok / expected), 3) if expected else None
    latencies = [s.duration_ms for s in samples if s.ok]
    restores, matched = _restore_checks(store, start, as_of)
    found = incidents.listing(store, since=start, until=as_of)
    security = [i for i in found if i.kind == "security"]
    quarters = max(1, round((end - start).days / 91))
    mean, answers = support.survey_mean(store, start, as_of)

    measured: dict[str, dict[str, Any]] = {
        "availability": {
            "value": avail,
            "basis": f"{ok} of {expected} expected scrapes answered on {len(hosts)} hosts",
        },
        "performance": {
            "value": _p95(latencies),
            "basis": f"95th percentile of {len(latencies)} answered health checks",
        },
        "data_accuracy": {
            "value": round(100.0 * matched / restores, 2) if restores else None,
            "basis": f"{matched} of {restores} restore drills and tests matched their checksums",
        },
        "security_incidents": {
            "value": round(len(security) / quarters, 2),
            "basis": f"{len(security)} security incidents over {quarters} quarter(s)",
        },
        "satisfaction": {"value": mean, "basis": f"mean of {answers} survey answers"},
    }
    indicators = []
    for name in INDICATORS:
        target = targets.indicators[name]
        value = measured[name]["value"]
        indicators.append(
            {
                "name": name,
                "description": target.description,
                "unit": target.unit,
                "target": target.target,
                "better": target.better,
                "value": value,
                "met": None if value is None else target.met(float(value)),
                "basis": measured[name]["basis"],
            }
        )

    trend = []
    for point in _month_ends(start, as_of):
        scores = compute(policy, store.latest_results(as_of=point), fleet, point)
        figure = scores.overall.get("effective", "all")
        trend.append({"at": point.isoformat(), "percent": figure.percent})
    final = compute(policy, store.latest_results(as_of=as_of), fleet, as_of)
    compliance = final.overall.get("effective", "all").percent
    overdue_controls = []
    for item in final.items:
        status = item.status("effective")
        if item.kind == "manual" and status in ("fail", "stale"):
            # InSpec/Heimdall: a manual control without a valid attestation is "not reviewed".
            overdue_controls.append(
                {"control": item.control_id, "state": "not reviewed", "reason": item.reason}
            )
        elif status == "stale":
            overdue_controls.append(
                {
                    "control": item.control_id,
                    "state": f"stale on {item.target}",
                    "reason": item.reason,
                }
            )
    for problem in plan_problems(policy, as_of.date()):
        overdue_controls.append(
            {"control": "EMG-001", "state": "plan review overdue", "reason": problem.message}
        )

    today = as_of.date()
    overdue_items = [
        {"source": i.ident, **item.model_dump(mode="json")}
        for i in incidents.listing(store, until=as_of)
        for item in i.overdue_items(today)
    ]
    held = drills.listing(store, since=start, until=as_of)
    overdue_items += [
        {"source": f"drill {d.id}", **item}
        for d in drills.listing(store, until=as_of)
        for item in d.overdue_items(today)
    ]
    tickets = support.ticket_stats(store, start, as_of, targets.support)

    met = sum(1 for i in indicators if i["met"])
    grade = targets.grades[-1].grade
    for rule in targets.grades:
        if met >= rule.min_indicators_met and (compliance or 0.0) >= rule.min_compliance:
            grade = rule.grade
            break
    return {
        "period": label,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "as_of": as_of.isoformat(),
        "grade": grade,
        "indicators_met": met,
        "compliance": compliance,
        "indicators": indicators,
        "availability_by_host": {h: a.percent for h, a in per_host.items()},
        "compliance_trend": trend,
        "drills": [
            {
                "id": d.id,
                "kind": d.kind,
                "held_at": d.held_at.isoformat(),
                "outcome": d.outcome,
                "plan": d.data.get("plan"),
                "measurements": d.data.get("measurements", {}),
                "revise": d.data.get("evaluation", {}).get("revise", []),
            }
            for d in held
        ],
        "incidents": [
            {
                "ident": i.ident,
                "title": i.title,
                "kind": i.kind,
                "severity": i.severity,
                "stage": i.stage,
                **i.times(),
            }
            for i in found
        ],
        "support": [t.as_dict() for t in tickets],
        # 3.4: changes made in the period, by status and outcome, and patching outside one.
        "changes": change_summary(store, start, as_of),
        "overdue_controls": overdue_controls,
        "overdue_action_items": overdue_items,
    }


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}".strip()


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


def to_json(report: Mapping[str, Any]) -> str:
    """The assessment as JSON (sorted keys: the same figures give the same bytes)."""
    return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def to_markdown(report: Mapping[str, Any]) -> str:
    """The assessment as Markdown; untrusted text escaped."""
    lines = [
        f"# Operations assessment {report['period']}",
        "",
        f"Period {report['start']} → {report['end']}, as of {report['as_of']}.",
        "",
        f"**Grade {report['grade']}**: {report['indicators_met']} of {len(report['indicators'])} "
        f"indicators met, compliance (effective, all controls) {_num(report['compliance'], '%')}.",
        "",
        "## Indicators (7.1.1) against targets (7.1.2)",
        "",
    ]
    lines += _table(
        ["indicator", "value", "target", "met", "basis"],
        [
            [
                i["name"],
                _num(i["value"], i["unit"]),
                f"{'≥' if i['better'] == 'higher' else '≤'} {_num(i['target'], i['unit'])}",
                {True: "yes", False: "**no**", None: "n/a"}[i["met"]],
                md(i["basis"]),
            ]
            for i in report["indicators"]
        ],
    )
    lines += ["## Compliance trend", ""]
    lines += _table(
        ["as of", "effective, all"],
        [[t["at"], _num(t["percent"], "%")] for t in report["compliance_trend"]],
    )
    lines += ["## Drills (5.2)", ""]
    lines += _table(
        ["id", "kind", "held", "outcome", "plan", "measured", "revise"],
        [
            [
                str(d["id"]),
                d["kind"],
                d["held_at"],
                d["outcome"],
                md(d["plan"]),
                md(", ".join(f"{k} {_num(v)}" for k, v in sorted(d["measurements"].items()))),
                md("; ".join(d["revise"])),
            ]
            for d in report["drills"]
        ]
        or [["-", "none held", "", "", "", "", ""]],
    )
    lines += ["## Incidents (5.3)", ""]
    lines += _table(
        [
            "incident",
            "kind",
            "grade",
            "stage",
            "detect (min)",
            "respond (min)",
            "resolve (min)",
            "title",
        ],
        [
            [
                i["ident"],
                i["kind"],
                str(i["severity"]),
                i["stage"],
                _num(i["detect_minutes"]),
                _num(i["respond_minutes"]),
                _num(i["resolve_minutes"]),
                md(i["title"], 80),
            ]
            for i in report["incidents"]
        ]
        or [["-", "none", "", "", "", "", "", ""]],
    )
    lines += ["## Support (6.3.2)", ""]
    lines += _table(
        [
            "complexity",
            "tickets",
            "answered in time",
            "resolved in time",
            "median first answer",
            "median resolution",
        ],
        [
            [
                t["complexity"],
                str(t["count"]),
                str(t["responded_in_time"]),
                str(t["resolved_in_time"]),
                _num(t["median_first_response_minutes"], "min"),
                _num(t["median_resolve_hours"], "h"),
            ]
            for t in report["support"]
        ],
    )
    changes = report["changes"]
    lines += ["", "## Changes (3.4)", ""]
    lines += _table(
        ["changes", *changes["by_status"], *changes["outcomes"], "patching outside a change"],
        [
            [
                str(changes["changes"]),
                *(str(n) for n in changes["by_status"].values()),
                *(str(n) for n in changes["outcomes"].values()),
                str(len(changes["patching_outside_changes"])),
            ]
        ],
    )
    lines += [
        f"- patching enforce outside a change: `{md(ident)}`"
        for ident in changes["patching_outside_changes"]
    ]
    lines += ["", "## Overdue controls", ""]
    lines += [
        f"- {c['control']}: {c['state']} — {md(c['reason'], 160)}"
        for c in report["overdue_controls"]
    ] or ["- none"]
    lines += ["", "## Overdue action items", ""]
    lines += [
        f"- {md(a['source'])} {a['id']}: {md(a['what'], 120)} "
        f"(owner {md(a['owner'])}, due {a['due']})"
        for a in report["overdue_action_items"]
    ] or ["- none"]
    return "\n".join(lines) + "\n"


def to_html(report: Mapping[str, Any]) -> str:
    """The assessment as one self-contained HTML page (autoescaped, no script), with the
    compliance trend drawn by the reports' chart helper."""
    import jinja2

    from opsrunner.reports.html import trend_svg
    from opsrunner.reports.safe import one_line

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = (Path(__file__).parent / "assess.html.j2").read_text(encoding="utf-8")
    env.filters["line"] = one_line
    points = [
        {"raw": None, "effective": p["percent"], "run": "", "ended_at": p["at"]}
        for p in report["compliance_trend"]
    ]
    pct = lambda v: "n/a" if v is None else f"{v:.1f}%"  # noqa: E731 - a template helper
    return env.from_string(template).render(r=report, t=trend_svg(points), num=_num, pct=pct)
