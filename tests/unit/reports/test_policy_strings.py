"""Policy strings and host output are data, never templates, in every report format.

A control title, a parameter value echoed in evidence and a roster field quoted in a reason all
hold `{{ lookup('pipe', 'id') }}`; every format shows it as written (after the format's own
escaping is undone) and none shows the output of `id`.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lxml import etree

from opsrunner.policy import load_policy
from opsrunner.reports import FORMATS, build, render
from opsrunner.store import HostRecord, ResultRecord, RunRecord, Store

ROOT = Path(__file__).resolve().parents[3]
CANARY = "{{ lookup('pipe', 'id') }}"
T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)


def canary_policy(tmp_path: Path) -> Path:
    """The project's policy with the canary in FW-001's title, a parameter and a roster name."""
    copy = tmp_path / "policy"
    shutil.copytree(ROOT / "policy", copy)
    controls = copy / "controls" / "firewall.yml"
    text = controls.read_text(encoding="utf-8")
    text, n = re.subn(
        r"(- id: FW-001\n\s+title: )(.*)\n", lambda m: f'{m[1]}"{m[2]} {CANARY}"\n', text
    )
    assert n == 1
    controls.write_text(text, encoding="utf-8")
    with (copy / "parameters" / "firewall.yml").open("a", encoding="utf-8") as handle:
        handle.write(
            "  firewall_canary_text:\n"
            "    description: A canary (issue 15), policy strings are data.\n"
            '    source: ["4.2.1"]\n'
            "    type: str\n"
            f'    default: "{CANARY}"\n'
        )
    roster = copy / "roster.yml"
    roster.write_text(
        roster.read_text(encoding="utf-8").replace(
            "name: Alice Zhang", f'name: "Alice {CANARY}"', 1
        ),
        encoding="utf-8",
    )
    return copy


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _decoded(fmt: str, text: str) -> str:
    """The text a reader of this format sees, its escaping undone."""
    if fmt in ("json", "sarif", "oscal", "oscal-catalog", "oscal-components"):
        return "\n".join(_strings(json.loads(text)))
    if fmt in ("junit", "xccdf"):
        root = etree.fromstring(text.encode("utf-8"))
        parts = [t for t in root.itertext()]
        parts += [v for el in root.iter() for v in el.attrib.values()]
        return "\n".join(parts)
    if fmt == "csv":
        return "\n".join(cell for row in csv.reader(io.StringIO(text)) for cell in row)
    if fmt == "html":
        return html.unescape(re.sub(r"<[^>]+>", "", text))
    if fmt == "md":
        return re.sub(r"\\([\\`*_{}\[\]()#+\-.!|<>'])", r"\1", html.unescape(text))
    return text


def test_canary_is_shown_as_written_in_every_format(tmp_path: Path) -> None:
    policy = load_policy(canary_policy(tmp_path))
    assert CANARY in policy.control("FW-001").title
    assert policy.host_vars({"all", "critical"})["firewall_canary_text"] == CANARY
    with Store.open(None, tmp_path / "state") as store:
        run = store.begin_run(
            RunRecord(ident="r-canary", mode="audit", status="running", started_at=T0)
        )
        assert run.id is not None
        store.add_results(
            run.id,
            [
                ResultRecord(
                    host="host1",
                    control_id="FW-001",
                    status="fail",
                    checked_at=T0,
                    evidence=f"firewall_canary_text = {CANARY}",
                    reason=f"roster name Alice {CANARY}",
                )
            ],
        )
        store.set_hosts(run.id, [HostRecord("host1", groups=("critical", "db"))])
        store.finish_run(run.id, "failed", ended_at=T0 + dt.timedelta(minutes=1), rc=2)
        report = build(store, policy, "r-canary")
    shown = {}
    for fmt in FORMATS:
        out = render(report, fmt)
        assert "uid=" not in out, f"{fmt}: the canary was templated"
        shown[fmt] = CANARY in _decoded(fmt, out)
    # The OSCAL catalog is the regulation's clauses alone: no control, host or result in it.
    assert shown.pop("oscal-catalog") is False
    assert all(shown.values()), f"formats that do not show the canary as written: {shown}"
