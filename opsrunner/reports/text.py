"""Plain-text tables for a terminal: the run, scores overall, per host and chapter, what fails."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from opsrunner.reports.document import Report, failing
from opsrunner.reports.safe import one_line

_COLUMNS = (
    ("raw", "automated", "raw auto"),
    ("effective", "automated", "eff. auto"),
    ("raw", "manual", "raw manual"),
    ("effective", "manual", "eff. manual"),
    ("raw", "all", "raw all"),
    ("effective", "all", "eff. all"),
)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def _table(title: str, label: str, rows: list[tuple[str, dict[str, Any]]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(label)
    for _view, _kind, header in _COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("counted", justify="right")
    for name, scores in rows:
        # Text cells: a host name like "[bold]x" stays text, never rich markup.
        table.add_row(
            Text(one_line(name)),
            *(_pct(scores[view][kind]["percent"]) for view, kind, _h in _COLUMNS),
            str(scores["raw"]["all"]["counted"]),
        )
    return table


def render(report: Report, *, width: int = 110, limit: int = 200) -> str:
    """The summary a terminal shows after a run, from the canonical document."""
    d: dict[str, Any] = report.data
    run = d["run"]
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    say = console.print
    say(
        f"Run {one_line(run['ident'])}  mode {run['mode']}"
        f"{' ' + one_line(run['job']) if run['job'] else ''}  status {run['status']}"
        f"  as of {d['as_of']}  grade {d['grade']}",
        highlight=False,
        markup=False,
    )
    limit_text = f"  limit {one_line(run['limit'])}" if run["limit"] else ""
    say(
        f"policy {one_line(run['policy_commit']) or '(no git)'} digest {run['policy_digest'][:16]}"
        f"  inventory {one_line(run['inventory'])}{limit_text}  model {d['policy']['model']}",
        highlight=False,
        markup=False,
    )
    for host in d["hosts"]:
        if not host["reachable"]:
            say(f"{one_line(host['host'])}: UNREACHABLE — {one_line(host['reason'])}", markup=False)
    say(_table("Overall", "scope", [("all hosts", d["scores"])]))
    say(
        _table(
            "Per host (worst first)", "host", [(h["host"], h["scores"]) for h in d["hosts"][:limit]]
        )
    )
    if len(d["hosts"]) > limit:
        say(f"… and {len(d['hosts']) - limit} more hosts", markup=False)
    say(
        _table(
            "Per chapter",
            "chapter",
            [(f"{c['number']} {c['heading']}".strip(), c["scores"]) for c in d["chapters"]],
        )
    )
    bad = [r for r in d["results"] if failing(r["effective"]) and r["kind"] == "automated"]
    if bad:
        table = Table(title="Automated controls not passing (effective)", title_justify="left")
        for header in ("host", "control", "severity", "status", "reason"):
            table.add_column(header)
        for row in bad[:limit]:
            table.add_row(
                Text(one_line(row["host"])),
                row["control"],
                row["severity"],
                row["effective"],
                Text(one_line(row["reason"], 120)),
            )
        say(table)
        if len(bad) > limit:
            say(f"… and {len(bad) - limit} more (opsrunner report --format csv)", markup=False)
    output = console.file
    assert isinstance(output, io.StringIO)
    return output.getvalue()
