"""Markdown for a pull request or a wiki page: the same sections as the HTML, as tables."""

from __future__ import annotations

from typing import Any

from opsrunner.reports.document import Report, failing
from opsrunner.reports.html import CHANGE_ROWS, LEVELS, TABLE_ROWS
from opsrunner.reports.i18n import labels
from opsrunner.reports.safe import md


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


def render(report: Report, *, level: str = "auditor", lang: str = "en") -> str:
    """The report as GitHub-flavoured Markdown; untrusted text is escaped, never raw HTML."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r} (choose {', '.join(LEVELS)})")
    t = labels(lang)
    d: dict[str, Any] = report.data
    n = LEVELS.index(level)
    out = [
        f"# {t['title']}: {md(d['policy']['name'])}",
        "",
        f"{t['run']} `{md(d['run']['ident'])}` ({md(d['run']['mode'])}, {md(d['run']['status'])})"
        f" · {t['as_of']} {d['as_of']} · {t['model']} {d['policy']['model']}"
        f" · {t['policy']} {md(d['run']['policy_commit'])}",
        "",
        f"**{t['grade']}: {d['grade']}**",
        "",
    ]
    rows = []
    notes = []
    for view in ("effective", "raw"):
        row = [t[view]]
        for kind in ("automated", "manual", "all"):
            f = d["scores"][view][kind]
            notes.append(f["formula"])
            row.append(f"{_pct(f['percent'])} ({f['passed']}/{f['counted']})[^{len(notes)}]")
        rows.append(row)
    out += _table([t["scores"], t["automated"], t["manual"], t["all"]], rows)
    counts = ", ".join(f"{s} {c}" for s, c in d["totals"]["effective"].items())
    out += [f"{d['totals']['hosts']} {t['hosts']} · {counts}", ""]
    outside = d["change_control"]
    listed = ", ".join(
        f"`{md(r['run'])}` ({md(r['status'])}{', emergency' if r['emergency'] else ''})"
        for r in outside["patching_outside_changes"]
    )
    out += [
        f"{t['outside_changes']}: {outside['patching_outside_changes_total']}"
        + (f" — {listed}" if listed else ""),
        "",
    ]

    out += [f"## {t['trend']}", ""]
    out += _table(
        [t["run"], t["ended"], t["effective"], t["raw"]],
        [
            [md(p["run"]), str(p["ended_at"]), _pct(p["effective"]), _pct(p["raw"])]
            for p in d["trend"]
        ],
    )

    out += [f"## {t['top_risks']}", "", f"### {t['worst_hosts']}", ""]
    hosts = [h for h in d["hosts"] if not h["organisation"]]
    worst = [h for h in hosts if h["failing"]][:10]
    out += _table(
        [t["host"], t["effective"], t["failing"]],
        [
            [md(h["host"]), _pct(h["scores"]["effective"]["all"]["percent"]), str(h["failing"])]
            for h in worst
        ],
    )
    controls = {c["id"]: c for c in d["controls"]}
    out += [f"### {t['worst_controls']}", ""]
    out += _table(
        [t["control"], t["title_col"], t["severity"], t["failing"]],
        [
            [c, md(controls[c]["title"]), controls[c]["severity"], str(controls[c]["failing"])]
            for c in d["worst_controls"][:10]
        ],
    )
    ch = d["changes"]
    out += [
        f"{t['changes']}: {len(ch['newly_failing'])} {t['newly_failing']}, {len(ch['fixed'])}"
        f" {t['fixed']}, {len(ch['regressed'])} {t['regressed']}",
        "",
    ]
    if n >= 1:
        out += [f"## {t['chapters']}", ""]
        out += _table(
            [t["chapter"], t["effective"], t["raw"], t["counted"]],
            [
                [
                    f"{c['number']}. {md(c['heading_zh'] if lang == 'zh' else c['heading'])}",
                    _pct(c["scores"]["effective"]["all"]["percent"]),
                    _pct(c["scores"]["raw"]["all"]["percent"]),
                    str(c["scores"]["raw"]["all"]["counted"]),
                ]
                for c in d["chapters"]
            ],
        )
        out += [f"## {t['owners']}", ""]
        out += _table(
            [t["owner"], t["effective"], t["raw"], t["failing"]],
            [
                [
                    md(o["owner"]),
                    _pct(o["scores"]["effective"]["all"]["percent"]),
                    _pct(o["scores"]["raw"]["all"]["percent"]),
                    str(o["failing"]),
                ]
                for o in d["owners"]
            ],
        )
        out += [f"## {t['hosts_title']}", ""]
        out += _table(
            [t["host"], t["group"], t["grade"], t["effective"], t["raw"], t["failing"]],
            [
                [
                    md(h["host"]),
                    md(", ".join(h["groups"])),
                    h["grade"],
                    _pct(h["scores"]["effective"]["all"]["percent"]),
                    _pct(h["scores"]["raw"]["all"]["percent"]),
                    str(h["failing"]),
                ]
                for h in hosts[:TABLE_ROWS]
            ],
        )
        out += [f"## {t['changes']}", ""]
        change_rows = [
            [t[key], md(r["host"]), r["control"], r["before"], r["after"]]
            for key in ("newly_failing", "regressed", "fixed")
            for r in ch[key][:CHANGE_ROWS]
        ]
        out += _table([t["status"], t["host"], t["control"], t["before"], t["after"]], change_rows)
    if n >= 2:
        out += [f"## {t['failing']}", ""]
        bad = [r for r in d["results"] if failing(r["effective"])][:TABLE_ROWS]
        out += _table(
            [t["host"], t["control"], t["severity"], t["status"], t["reason"]],
            [
                [md(r["host"]), r["control"], r["severity"], r["effective"], md(r["reason"], 200)]
                for r in bad
            ],
        )
        out += [f"## {t['waivers']}", ""]
        out += _table(
            ["id", t["control"], t["scope"], t["approver"], t["ticket"], t["expires"], t["status"]],
            [
                [
                    w["id"],
                    w["control"],
                    md(", ".join(w["hosts"] + w["groups"])),
                    md(w["approver"]),
                    md(w["ticket"]),
                    str(w["expires_at"])
                    + (" **" + t["expiring_soon"] + "**" if w["expiring_soon"] else ""),
                    w["status"],
                ]
                for w in d["waivers"]
            ],
        )
        out += [f"## {t['attestations']}", ""]
        out += _table(
            [t["control"], t["attested_by"], t["valid_until"], t["status"], "sha256"],
            [
                [
                    a["control"],
                    md(a["attested_by"]),
                    str(a["valid_until"]),
                    a["status"],
                    a["evidence_sha256"],
                ]
                for a in d["attestations"]
            ],
        )
        out += [f"## {t['stale']}", ""]
        out += _table(
            [t["host"], t["control"], t["evidence"], t["reason"]],
            [
                [md(s["host"]), s["control"], str(s["evidence_at"]), md(s["reason"], 200)]
                for s in d["stale"][:TABLE_ROWS]
            ],
        )
    out += [f"## {t['formulas']}", ""]
    out += [f"[^{i}]: {md(text)}" for i, text in enumerate(notes, 1)]
    out += ["", f"_{md(d['generator'])} · schema {d['schema_version']}_", ""]
    return "\n".join(out)
