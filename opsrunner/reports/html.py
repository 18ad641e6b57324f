"""One self-contained HTML file: Jinja2 with autoescape, inline CSS and SVG, one hashed script."""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jinja2
import numpy as np

from opsrunner.reports.document import STATUS_ORDER, Report, ResultRows, failing
from opsrunner.reports.i18n import labels
from opsrunner.reports.safe import one_line, visible

LEVELS = ("executive", "manager", "auditor")
# Beyond these the HTML shows the worst first and points at JSON/CSV for the rest.
MATRIX_HOSTS = 40
TABLE_ROWS = 500
CHANGE_ROWS = 200
TRAIL_SAMPLES = 3

ABBREV = {
    "pass": "P",
    "fail": "F",
    "error": "E",
    "unknown": "U",
    "stale": "S",
    "waived": "W",
    "notapplicable": "\u2013",
    "notchecked": "·",
}

# The only script: filters the matrix. Its sha256 goes into the page's CSP, nothing else runs.
FILTER_SCRIPT = """
(function () {
  var form = document.getElementById('filters');
  if (!form) { return; }
  var table = document.getElementById('matrix');
  function apply() {
    var st = form.elements.status.value, sev = form.elements.severity.value;
    var ch = form.elements.chapter.value, gr = form.elements.group.value;
    var hq = form.elements.host.value.toLowerCase();
    var heads = table.tHead.rows[0].cells, show = [];
    for (var i = 0; i < heads.length; i++) {
      var h = heads[i], name = h.getAttribute('data-host');
      if (name === null) { show.push(true); continue; }
      var groups = (h.getAttribute('data-groups') || '').split(' ');
      show.push((gr === '' || groups.indexOf(gr) >= 0) &&
                (hq === '' || name.toLowerCase().indexOf(hq) >= 0));
    }
    var rows = table.tBodies[0].rows;
    for (var r = 0; r < rows.length; r++) {
      var row = rows[r], any = false;
      for (var c = 0; c < row.cells.length; c++) {
        var cell = row.cells[c];
        cell.hidden = !show[c];
        if (show[c] && cell.hasAttribute('data-s') &&
            (st === '' || cell.getAttribute('data-s') === st)) { any = true; }
      }
      row.hidden = !any || (sev !== '' && row.getAttribute('data-sev') !== sev) ||
                   (ch !== '' && row.getAttribute('data-ch') !== ch);
    }
    for (var k = 0; k < heads.length; k++) { heads[k].hidden = !show[k]; }
  }
  form.addEventListener('input', apply);
  form.addEventListener('change', apply);
})();
""".strip()


def _csp(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("opsrunner.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["v"] = visible
    env.filters["line"] = one_line
    env.filters["pct"] = _pct
    env.filters["ab"] = lambda s: ABBREV.get(s, s[:2])
    return env


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def trend_svg(points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Coordinates of the trend chart (0-100 % on the y axis)."""
    width, height, pad = 640, 160, 28
    n = len(points)
    step = (width - 2 * pad) / max(n - 1, 1)

    def y(value: float | None) -> float:
        return round(height - pad - (value or 0.0) * (height - 2 * pad) / 100.0, 1)

    marks = []
    for i, p in enumerate(points):
        x = round(pad + i * step, 1) if n > 1 else width / 2
        marks.append(
            {
                "x": x,
                "raw_y": y(p["raw"]),
                "eff_y": y(p["effective"]),
                "raw": p["raw"],
                "effective": p["effective"],
                "run": p["run"],
                "at": p["ended_at"],
            }
        )
    return {
        "width": width,
        "height": height,
        "pad": pad,
        "raw": " ".join(f"{m['x']},{m['raw_y']}" for m in marks if m["raw"] is not None),
        "effective": " ".join(
            f"{m['x']},{m['eff_y']}" for m in marks if m["effective"] is not None
        ),
        "marks": marks,
        "grid": [(v, y(v)) for v in (0, 50, 90, 100)],
    }


def _matrix(report: Report) -> dict[str, Any]:
    hosts = [h for h in report["hosts"] if not h["organisation"]]
    shown = hosts[:MATRIX_HOSTS]
    names = [h["host"] for h in shown]
    wanted = set(names)
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for row in _rows(report, wanted):
        cells[(row["control"], row["host"])] = row
    controls = [c for c in report["controls"] if c["kind"] == "automated"]
    order = {cid: n for n, cid in enumerate(report["worst_controls"])}
    controls.sort(key=lambda c: (order.get(c["id"], len(order)), c["id"]))
    rows = []
    for control in controls:
        line = []
        for name in names:
            cell = cells.get((control["id"], name))
            line.append(cell)
        chapter = control["clauses"][0].split(".")[0] if control["clauses"] else ""
        bad = sum(1 for cell in line if cell is not None and failing(cell["effective"]))
        rows.append({"control": control, "chapter": chapter, "cells": line, "bad": bad})
    # The rows these hosts fail most come first (ties: worst fleet-wide first).
    rows.sort(key=lambda r: -r["bad"])
    groups = sorted({g for h in shown for g in h["groups"]})
    return {
        "hosts": shown,
        "total": len(hosts),
        "rows": rows,
        "groups": groups,
        "chapters": sorted({r["chapter"] for r in rows if r["chapter"]}, key=_num),
        "severities": ["critical", "high", "medium", "low"],
    }


def _num(text: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in text.split("."))


def _rows(report: Report, hosts: set[str]) -> Iterator[dict[str, Any]]:
    """The result rows of these hosts, without making the others."""
    results = report["results"]
    if isinstance(results, ResultRows):
        names, target = results.coded(0)
        chosen = np.array([name in hosts for name in names], dtype=bool)
        for k in np.flatnonzero(chosen[target] if len(names) else chosen).tolist():
            yield results.row(results.items[k], k)
    else:
        yield from (r for r in results if r["host"] in hosts)


def _trail(report: Report) -> list[dict[str, Any]]:
    # Per control, its worst TRAIL_SAMPLES results and how many more: ranked on arrays
    # (control, then status from the worst, then host name), so only the samples become rows.
    rank = {s: n for n, s in enumerate(STATUS_ORDER)}
    results = report["results"]
    by_control: dict[str, list[dict[str, Any]]] = {}
    counted: dict[str, int] = {}
    if isinstance(results, ResultRows) and len(results):
        controls, control = results.coded(1)
        statuses, status = results.coded(9)
        targets, target = results.coded(0)
        by_name = np.argsort(np.array(targets, dtype=object))
        name_rank = np.empty(len(targets), dtype=np.int64)
        name_rank[by_name] = np.arange(len(targets))
        status_rank = np.array([rank.get(s, 99) for s in statuses], dtype=np.int64)
        order = np.lexsort((name_rank[target], status_rank[status], control))
        starts = np.searchsorted(control[order], np.arange(len(controls) + 1))
        for c, cid in enumerate(controls):
            start, stop = int(starts[c]), int(starts[c + 1])
            counted[cid] = stop - start
            best = order[start : min(stop, start + TRAIL_SAMPLES)].tolist()
            by_control[cid] = [results.row(results.items[k], k) for k in best]
    else:
        for row in results:
            by_control.setdefault(row["control"], []).append(row)
        counted = {cid: len(rows) for cid, rows in by_control.items()}
    controls_of = {c["id"]: c for c in report["controls"]}
    out = []
    for clause in report["clauses"]:
        entries = []
        for cid in clause["controls"]:
            control_row = controls_of.get(cid)
            if control_row is None:
                continue
            rows = sorted(
                by_control.get(cid, []),
                key=lambda r: (rank.get(r["effective"], 99), r["host"]),
            )
            entries.append(
                {
                    "control": control_row,
                    "samples": rows[:TRAIL_SAMPLES],
                    "more": max(counted.get(cid, 0) - TRAIL_SAMPLES, 0),
                }
            )
        if entries or clause["not_applicable"]:
            out.append({"clause": clause, "entries": entries})
    return out


def render(report: Report, *, level: str = "manager", lang: str = "en") -> str:
    """The HTML report at one level (executive, manager, auditor) in one language."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r} (choose {', '.join(LEVELS)})")
    words = labels(lang)
    data = report.data
    hosts = [h for h in data["hosts"] if not h["organisation"]]
    # A retired host (scoring may mark one) is no risk to fix: it leaves the top-risk list.
    worst_hosts = [h for h in hosts if h["failing"] and not h["retired"]][:10]
    controls = {c["id"]: c for c in data["controls"]}
    worst_controls = [controls[c] for c in data["worst_controls"][:10]]
    changes = data["changes"]
    level_n = LEVELS.index(level)
    matrix = _matrix(report) if level_n >= 2 else None
    context = {
        "d": data,
        "t": words,
        "lang": lang,
        "level": level,
        "level_n": level_n,
        "csp": _csp(FILTER_SCRIPT),
        "script": FILTER_SCRIPT if matrix else "",
        "trend": trend_svg(data["trend"]),
        "worst_hosts": worst_hosts,
        "worst_controls": worst_controls,
        "hosts_table": hosts[:TABLE_ROWS],
        "hosts_total": len(hosts),
        "change_rows": {
            k: changes[k][:CHANGE_ROWS] for k in ("newly_failing", "fixed", "regressed")
        },
        "change_rows_max": CHANGE_ROWS,
        "matrix": matrix,
        "trail": _trail(report) if level_n >= 2 else [],
        "stale_rows": data["stale"][:TABLE_ROWS],
        "statuses": [s for s in STATUS_ORDER],
        "failing": failing,
        "chapter_name": lambda c: (
            (c["heading_zh"] or c["heading"]) if lang == "zh" else (c["heading"] or c["heading_zh"])
        ),
    }
    return _env().get_template("report.html.j2").render(context)
