"""The compliance summary of a run for a terminal or a script: scores overall, per host and
per chapter, what fails; and the `score --explain` and `score --at` listings."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from opsrunner.scoring import Item, Scores, ScoreSet
from opsrunner.scoring.engine import PolicyLike
from opsrunner.scoring.runs import partial, run_scores
from opsrunner.store import HostRecord, RunRecord, Store


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


def render_explain(
    key: str, label: str, scores: Scores, table: ScoreSet, items: Sequence[Item]
) -> str:
    """`score --explain`: the figures of a control, clause, chapter or host with their formulas,
    then every item behind them with its evidence."""
    lines = [f"{label} {key} ({scores.model} model, as of {scores.as_of.isoformat()})"]
    for (v, k), fig in sorted(table.figures.items()):
        lines.append(
            f"  {v:<9} {k:<9} {fig!s:>7}  counted {fig.counted}, passed {fig.passed}: {fig.formula}"
        )
    for i in sorted(items, key=lambda i: (i.target, i.control_id)):
        waived = f" waiver {i.waiver}" if i.waiver else ""
        at_text = i.evidence_at.isoformat() if i.evidence_at else "never"
        lines.append(
            f"  {i.target:<16} {i.control_id:<9} w={i.weight:g} "
            f"raw={i.raw:<8} eff={i.effective:<8}"
            f"{waived} evidence {at_text} run {i.run_id or '-'}: {i.reason or i.evidence[:80]}"
        )
    return "\n".join(lines)


def render_stale_by(items: Sequence[Item], moment: str) -> str:
    """`score --at`: the current results that will be stale by then."""
    lines = [f"{len(items)} current result(s) will be stale by {moment} unless checked again:"]
    for i in items:
        last = i.evidence_at.isoformat(timespec="minutes") if i.evidence_at else "never"
        lines.append(f"  {i.target:<16} {i.control_id:<9} last evidence {last}")
    return "\n".join(lines)
