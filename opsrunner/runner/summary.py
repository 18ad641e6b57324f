"""The compliance summary of a run: scores per host and chapter, rendered as of the run's end."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from opsrunner.scoring import Scores, ScoreSet, score
from opsrunner.scoring.engine import PolicyLike
from opsrunner.store import HostRecord, ResultRecord, RunRecord, Store


def run_scores(
    policy: PolicyLike,
    run: RunRecord,
    results: Sequence[ResultRecord],
    hosts: Sequence[HostRecord],
    *,
    model: str | None = None,
) -> Scores:
    """Score one run's results as of its end (a re-render gives the same figures)."""
    as_of = run.ended_at or run.started_at
    groups = {h.host: list(h.groups) for h in hosts}
    # A run that broke before it recorded its hosts still answers for the hosts it reported on.
    for result in results:
        groups.setdefault(result.host, [])
    # A run answers for the controls it covered (its results, unknown and notchecked included)
    # plus the manual ones, met by attestations as of its end; operate jobs only for their own.
    covered = set(run.controls) | {r.control_id for r in results}
    if run.mode != "operate":
        covered |= {c.id for c in policy.controls if c.kind == "manual"}
    return score(
        policy, results, groups, as_of, model=model, controls=sorted(covered), keep_filtered=True
    )


def partial(run: RunRecord, policy: PolicyLike) -> str:
    """ "partial run: N of M controls" when --controls or --tags narrowed a run, else ""."""
    if run.mode == "operate" or not run.controls:
        return ""
    total = sum(1 for c in policy.controls if c.kind == "automated")
    return f"partial run: {len(run.controls)} of {total} automated controls"


def _cell(figures: ScoreSet, view: str, kind: str) -> str:
    return str(figures.get(view, kind))


def _table(title: str, rows: Mapping[str, ScoreSet], label: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column(label)
    for header in (
        "raw auto",
        "eff. auto",
        "raw manual",
        "eff. manual",
        "raw all",
        "eff. all",
        "counted",
    ):
        table.add_column(header, justify="right")
    for key, figures in rows.items():
        table.add_row(
            key,
            _cell(figures, "raw", "automated"),
            _cell(figures, "effective", "automated"),
            _cell(figures, "raw", "manual"),
            _cell(figures, "effective", "manual"),
            _cell(figures, "raw", "all"),
            _cell(figures, "effective", "all"),
            str(figures.get("raw", "all").counted),
        )
    return table


def render_summary(
    run: RunRecord,
    scores: Scores,
    hosts: Sequence[HostRecord] = (),
    *,
    width: int = 110,
    scope: str = "",
) -> str:
    """Plain text: the run, then scores overall, per host and per chapter, then what fails.

    `scope` (from `partial`) is printed above every figure: a partial run's score covers only
    the controls it ran.
    """
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    when = (run.ended_at or run.started_at).isoformat()
    if scope:
        console.print(f"{scope.upper()}: the figures below cover only these.", highlight=False)
    console.print(
        f"Run {run.ident}  mode {run.mode}{' ' + run.job if run.job else ''}  status {run.status}  "
        f"as of {when}",
        highlight=False,
    )
    console.print(
        f"policy {run.policy_commit or '(no git)'} digest {run.policy_digest[:16]}  "
        f"inventory {run.inventory}{'  limit ' + run.limit if run.limit else ''}  "
        f"model {scores.model}",
        highlight=False,
    )
    if run.reason:
        console.print(f"reason: {run.reason}", highlight=False)
    for host in hosts:
        if not host.reachable:
            console.print(f"{host.host}: UNREACHABLE — {host.reason}", highlight=False)
    if scores.retired:
        console.print(
            f"retired (not in the inventory, not scored): {', '.join(scores.retired)}",
            highlight=False,
        )
    console.print(_table("Overall", {"all hosts": scores.overall}, "scope"))
    console.print(
        f"{scores.model} model (docs/scoring.md). effective all = "
        f"{scores.overall.get('effective', 'all').formula}",
        highlight=False,
    )
    console.print(_table("Per host", scores.by_host, "host"))
    console.print(_table("Per chapter", scores.by_chapter, "chapter"))
    failing = [
        i
        for i in scores.items
        if i.effective not in ("pass", "waived", "notapplicable", "notchecked")
        and i.kind == "automated"
    ]
    manual = [
        i for i in scores.items if i.kind == "manual" and i.effective not in ("pass", "waived")
    ]
    if manual:
        reasons: dict[str, int] = {}
        for item in manual:
            # "attestation expired 2026-…" and the like: count by cause, not by date.
            key = item.reason.split(" 20")[0] or item.effective
            reasons[key] = reasons.get(key, 0) + 1
        detail = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
        console.print(f"Manual controls not met: {len(manual)} ({detail})", highlight=False)
    if failing:
        table = Table(title="Automated controls not passing (effective)", title_justify="left")
        for header in ("host", "control", "severity", "status", "reason"):
            table.add_column(header)
        for item in sorted(failing, key=lambda i: (i.target, i.control_id)):
            table.add_row(
                item.target, item.control_id, item.severity, item.effective, item.reason[:120]
            )
        console.print(table)
    output = console.file
    assert isinstance(output, io.StringIO)
    return output.getvalue()


def summary_json(run: RunRecord, scores: Scores, scope: str = "") -> dict[str, Any]:
    """The same summary as data."""

    def figures(table: ScoreSet) -> dict[str, Any]:
        return {
            f"{view}/{kind}": {
                "percent": f.percent,
                "points": f.points,
                "maximum": f.maximum,
                "counted": f.counted,
                "passed": f.passed,
                "formula": f.formula,
            }
            for (view, kind), f in table.figures.items()
        }

    return {
        "run": run.ident,
        "status": run.status,
        "mode": run.mode,
        "as_of": (run.ended_at or run.started_at).isoformat(),
        "model": scores.model,
        "partial": scope,
        "retired": list(scores.retired),
        "overall": figures(scores.overall),
        "hosts": {k: figures(v) for k, v in scores.by_host.items()},
        "chapters": {k: figures(v) for k, v in scores.by_chapter.items()},
        "failed": scores.failed("effective"),
    }


def compliance_summary(
    store: Store,
    run_key: int | str,
    policy: PolicyLike | None = None,
    *,
    model: str | None = None,
    as_json: bool = False,
) -> str:
    """Render the compliance summary of a stored run (the demo prints this)."""
    from opsrunner.policy import load_policy

    run = store.get_run(run_key)
    assert run.id is not None
    results = store.results(run.id)
    hosts = store.hosts(run.id)
    loaded = policy or load_policy()
    scores = run_scores(loaded, run, results, hosts, model=model)
    scope = partial(run, loaded)
    if as_json:
        return json.dumps(summary_json(run, scores, scope), indent=2, sort_keys=True)
    return render_summary(run, scores, hosts, scope=scope)


def as_of(run: RunRecord) -> dt.datetime:
    """The time a run's report is rendered at."""
    return run.ended_at or run.started_at
