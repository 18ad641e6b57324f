"""Every report format from one stored run: schemas, reproducibility, agreement, hostile input."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from lxml import etree

from opsrunner.policy import Policy
from opsrunner.reports import FORMATS, SCHEMA_VERSION, Report, build, render
from opsrunner.reports import metrics as prom
from opsrunner.reports import oscal as oscal_mod
from opsrunner.reports.document import rows_of
from opsrunner.reports.html import LEVELS, MATRIX_HOSTS
from opsrunner.store import Store
from tests.unit.reports.conftest import EVIL_EVIDENCE, EVIL_HOST

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = Path(__file__).parent / "schemas"
BIDI = "\u202e"


@pytest.fixture(scope="module")
def rendered(report: Report) -> dict[str, str]:
    """Every format once."""
    return {fmt: render(report, fmt) for fmt in FORMATS}


def test_json_matches_the_versioned_schema(rendered: dict[str, str]) -> None:
    schema = json.loads((ROOT / "docs" / "report-schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    data = json.loads(rendered["json"])
    jsonschema.Draft202012Validator(schema).validate(data)
    assert (
        data["schema_version"] == SCHEMA_VERSION == schema["properties"]["schema_version"]["const"]
    )


def test_the_schema_rejects_a_broken_document(rendered: dict[str, str]) -> None:
    schema = json.loads((ROOT / "docs" / "report-schema.json").read_text())
    data = json.loads(rendered["json"])
    data["results"]["columns"]["effective"][0] = "green"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_json_columns_give_back_every_row(report: Report, rendered: dict[str, str]) -> None:
    # Schema 2.0 keeps the matrix as columns and per-control constants in `controls`: joined
    # again they are exactly the rows every other format is rendered from.
    data = json.loads(rendered["json"])
    assert data["results"]["count"] == len(report["results"]) == data["totals"]["results"]
    assert list(rows_of(data)) == list(report["results"])
    streamed = io.StringIO()
    report.write_json(streamed)
    assert streamed.getvalue() == rendered["json"]


def test_same_run_renders_the_same_bytes(
    store: Store, policy: Policy, rendered: dict[str, str]
) -> None:
    again = build(store, policy, "20261103")
    for fmt in FORMATS:
        assert render(again, fmt) == rendered[fmt], fmt
    first = build(store, policy, "20261103")
    assert render(first, "html", level="executive", lang="zh") == render(
        again, "html", level="executive", lang="zh"
    )


def test_document_content(report: Report) -> None:
    d = report.data
    assert d["as_of"] == "2026-11-03T03:20:00Z"
    assert d["run"]["ident"] == "20261103T030000-audit"
    assert [p["run"] for p in d["trend"]] == [
        "20261101T030000-audit",
        "20261102T030000-audit",
        "20261103T030000-audit",
    ]
    assert d["changes"]["previous_run"] == "20261102T030000-audit"
    # host1 ACC-002 passed, then failed, and WVR-2026-001 waives it: effective stays passing.
    acc = next(r for r in d["results"] if r["host"] == "host1" and r["control"] == "ACC-002")
    assert (acc["raw"], acc["effective"], acc["waiver"]) == ("fail", "waived", "WVR-2026-001")
    waivers = {w["id"]: w for w in d["waivers"]}
    assert waivers["WVR-2026-001"]["expiring_soon"] is True
    assert waivers["WVR-2026-001"]["results_waived"] == 1
    assert waivers["WVR-2026-002"]["status"] == "expired"
    attest = {a["control"]: a["status"] for a in d["attestations"]}
    assert attest == {"GOV-001": "valid", "GOV-002": "expired"}
    assert {(s["host"], s["control"]) for s in d["stale"]} == {("host2", "FW-001")}
    hosts = [h for h in d["hosts"] if not h["organisation"]]
    percents = [h["scores"]["effective"]["all"]["percent"] for h in hosts]
    assert percents == sorted(percents), "hosts are listed worst first"
    assert d["totals"]["results"] == len(d["results"])
    ch1 = next(c for c in d["chapters"] if c["number"] == "1")
    assert ch1["heading_zh"] == "总则"


def test_changes_since_last_run(store: Store, policy: Policy, report: Report) -> None:
    first = build(store, policy, "20261102")
    before = {(r["host"], r["control"]): r["effective"] for r in first["results"]}
    now = {(r["host"], r["control"]): r["effective"] for r in report["results"]}
    passing = {"pass", "waived"}
    skip = {"notapplicable", "notchecked"}
    expected_new = {
        k for k, v in now.items() if before.get(k) in passing and v not in passing | skip
    }
    expected_fixed = {
        k for k, v in now.items() if before.get(k) not in passing | skip | {None} and v in passing
    }
    got_new = {(r["host"], r["control"]) for r in report["changes"]["newly_failing"]}
    got_fixed = {(r["host"], r["control"]) for r in report["changes"]["fixed"]}
    assert got_new == expected_new and got_new
    assert got_fixed == expected_fixed and got_fixed


def _junit_counts(text: str) -> dict[str, int]:
    root = etree.fromstring(text.encode())
    return {
        "tests": len(root.findall(".//testcase")),
        "failures": len(root.findall(".//testcase/failure")),
        "errors": len(root.findall(".//testcase/error")),
        "skipped": len(root.findall(".//testcase/skipped")),
    }


def test_formats_agree_on_counts(report: Report, rendered: dict[str, str]) -> None:
    eff = report["totals"]["effective"]
    counts = _junit_counts(rendered["junit"])
    assert counts["tests"] == report["totals"]["results"]
    assert counts["failures"] == eff.get("fail", 0) + eff.get("stale", 0)
    assert counts["errors"] == eff.get("error", 0) + eff.get("unknown", 0)
    assert counts["skipped"] == eff.get("notapplicable", 0) + eff.get("notchecked", 0)
    rows = list(csv.DictReader(io.StringIO(rendered["csv"])))
    assert len(rows) == report["totals"]["results"]
    csv_eff: dict[str, int] = {}
    for row in rows:
        csv_eff[row["effective"]] = csv_eff.get(row["effective"], 0) + 1
    assert csv_eff == eff
    sarif = json.loads(rendered["sarif"])
    results = sarif["runs"][0]["results"]
    assert len([r for r in results if "suppressions" not in r]) == sum(
        eff.get(s, 0) for s in ("fail", "error", "unknown", "stale")
    )
    assert len([r for r in results if "suppressions" in r]) == eff.get("waived", 0)
    xccdf = etree.fromstring(rendered["xccdf"].encode())
    ns = {"x": "http://checklists.nist.gov/xccdf/1.2"}
    assert len(xccdf.findall(".//x:rule-result", ns)) == report["totals"]["results"]
    oscal = json.loads(rendered["oscal"])["assessment-results"]["results"][0]
    assert len(oscal["observations"]) == report["totals"]["results"]
    md = rendered["md"]
    grade = report["grade"]
    assert f"**Grade: {grade}**" in md
    percent = report["scores"]["effective"]["all"]["percent"]
    assert f"{percent:.1f}%" in md and f"{percent:.1f}%" in render(report, "html")


def test_junit_validates_against_its_xsd(rendered: dict[str, str]) -> None:
    schema = etree.XMLSchema(etree.parse(str(SCHEMAS / "junit-10.xsd")))
    doc = etree.fromstring(rendered["junit"].encode())
    assert schema.validate(doc), schema.error_log


def test_sarif_validates_against_the_sarif_2_1_0_schema(rendered: dict[str, str]) -> None:
    schema = json.loads((SCHEMAS / "sarif-schema-2.1.0.json").read_text())
    data = json.loads(rendered["sarif"])
    jsonschema.Draft4Validator(schema).validate(data)
    assert data["version"] == "2.1.0"


def test_oscal_documents_validate_with_trestle(rendered: dict[str, str]) -> None:
    from trestle.oscal.assessment_results import AssessmentResults
    from trestle.oscal.catalog import Catalog
    from trestle.oscal.component import ComponentDefinition

    ar = AssessmentResults.parse_obj(json.loads(rendered["oscal"])["assessment-results"])
    assert ar.results[0].findings
    catalog = Catalog.parse_obj(json.loads(rendered["oscal-catalog"])["catalog"])
    assert catalog.groups and catalog.groups[0].title == "总则"
    comp = ComponentDefinition.parse_obj(
        json.loads(rendered["oscal-components"])["component-definition"]
    )
    assert {c.title for c in comp.components or []} >= {"firewall", "manual-attestation"}


def test_oscal_uuids_are_stable_across_runs(store: Store, policy: Policy, report: Report) -> None:
    first = json.loads(render(build(store, policy, "20261102"), "oscal"))["assessment-results"]
    second = json.loads(render(report, "oscal"))["assessment-results"]

    def obs(doc: dict[str, Any]) -> dict[str, str]:
        return {o["title"]: o["uuid"] for o in doc["results"][0]["observations"]}

    assert obs(first) == obs(second)
    assert first["uuid"] != second["uuid"], "each run's document is its own"
    fw = oscal_mod.stable_uuid(policy.settings.name, "observation", "FW-001", "host1")
    assert obs(second)["FW-001 on host1"] == fw
    states = {
        f["target"]["target-id"]: f["target"]["status"]["state"]
        for f in second["results"][0]["findings"]
    }
    by_control = {c["id"]: c for c in report["controls"]}
    for cid, state in states.items():
        counts = by_control[cid]["counts"]
        bad = sum(counts.get(s, 0) for s in ("fail", "error", "unknown", "stale"))
        counted = bad + counts.get("pass", 0) + counts.get("waived", 0)
        assert (state == "satisfied") == (bad == 0 and counted > 0), cid


def test_xccdf_is_read_by_openscap(tmp_path: Path, rendered: dict[str, str]) -> None:
    oscap = shutil.which("oscap")
    if oscap is None:
        pytest.skip("openscap-scanner is not installed (scripts/bootstrap installs it)")
    path = tmp_path / "results.xml"
    path.write_text(rendered["xccdf"], encoding="utf-8")
    check = subprocess.run([oscap, "xccdf", "validate", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    out = tmp_path / "report.html"
    made = subprocess.run(
        [oscap, "xccdf", "generate", "report", "--output", str(out), str(path)],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    html = out.read_text(encoding="utf-8")
    # oscap's report shows the document's last TestResult: the organisation's manual controls.
    assert "GOV-001 Regulation adopted and published" in html
    assert "软件系统运营管理制度" in html
    assert "<img src=x" not in html


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.mark.faults(11)
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_html_is_self_contained_and_escapes_hostile_input(
    report: Report, level: str, lang: str, fault_record: Any
) -> None:
    page = render(report, "html", level=level, lang=lang)
    parser = _Tags()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    # Hostile host names, evidence and titles that became live markup (the fault matrix's XSS).
    live = sum(t in ("img", "iframe", "link") for t in tags)
    live += max(0, tags.count("script") - (1 if level == "auditor" else 0))
    live += sum(1 for _t, a in parser.tags for n in a if n.startswith("on"))
    fault_record(
        row=11,
        injected=1,
        survived=int(live == 0),
        xss=live,
        figure=f"HTML {level}/{lang}: {live} live elements from hostile input",
    )
    assert "img" not in tags and "iframe" not in tags and "link" not in tags
    assert tags.count("script") == (1 if level == "auditor" else 0)
    for _tag, attrs in parser.tags:
        assert not any(name.startswith("on") for name in attrs), attrs
        for name in ("src", "href", "action"):
            assert name not in attrs, attrs
    csp = next(a["content"] for t, a in parser.tags if t == "meta" and a.get("http-equiv"))
    assert csp is not None and csp.startswith("default-src 'none'")
    assert BIDI not in page
    assert "{{ lookup('pipe','id') }}" not in page  # escaped: the quotes are entities
    if level == "auditor":
        assert "&lt;U+202E&gt;" in page
        assert "{{ lookup(&#39;pipe&#39;,&#39;id&#39;) }}" in page
        assert "&lt;/script&gt;&lt;script&gt;" in page
    assert "evil&lt;img src=x onerror=alert(1)&gt;" in page
    if lang == "zh" and level != "executive":
        assert "总则" in page


def test_levels_hold_what_they_promise(report: Report) -> None:
    executive = render(report, "html", level="executive")
    manager = render(report, "html", level="manager")
    auditor = render(report, "html", level="auditor")
    assert 'id="chapters"' not in executive and 'id="trend"' in executive
    assert 'id="chapters"' in manager and 'id="matrix"' not in manager
    for section in ('id="matrix"', 'id="trail"', 'id="waivers"', "WVR-2026-001"):
        assert section in auditor
    assert len(executive) < len(manager) < len(auditor)


@pytest.mark.faults(11)
def test_markdown_and_text_formats_neutralise_hostile_input(rendered: dict[str, str]) -> None:
    md = rendered["md"]
    assert "<img" not in md and "<script" not in md and "</script" not in md
    assert "evil&lt;img src=x onerror=alert\\(1\\)&gt;" in md
    for fmt in FORMATS:
        assert BIDI not in rendered[fmt], fmt


@pytest.mark.faults(11)
def test_csv_neutralises_formulas(rendered: dict[str, str]) -> None:
    rows = list(csv.reader(io.StringIO(rendered["csv"])))
    evil = [r for r in rows if r[0].startswith(EVIL_HOST[:4])]
    assert evil
    for row in rows[1:]:
        for cell in row:
            assert not re.match(r"^[=+\-@\t\r]", cell), cell
    assert any(cell == "'" + EVIL_EVIDENCE for row in evil for cell in row)


def test_metrics_text_exposition(report: Report, store: Store, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    runs = store.list_runs()
    text = prom.render(report, runs)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    overall = {
        (s.labels["view"], s.labels["kind"]): s.value
        for s in families["opsrunner_compliance_score_percent"].samples
    }
    assert overall[("effective", "all")] == pytest.approx(
        report["scores"]["effective"]["all"]["percent"]
    )
    runs_total = sum(
        s.value for s in families["opsrunner_runs"].samples if s.name.endswith("_total")
    )
    assert runs_total == len(runs) == 3
    path = prom.write_textfile(tmp_path / "textfile", report, runs)
    assert path.read_text() == text
    assert [p.name for p in path.parent.iterdir()] == ["opsrunner.prom"]


def test_large_fleet_html_shows_the_worst_hosts_first(policy: Policy) -> None:
    import datetime as dt

    from opsrunner.reports import assemble
    from opsrunner.scoring import score
    from opsrunner.store import HostRecord, ResultRecord, RunRecord

    at = dt.datetime(2026, 11, 3, 3, 0, tzinfo=dt.UTC)
    controls = [c for c in policy.controls if c.kind == "automated"][:20]
    hosts = [HostRecord(f"h{n:04d}", groups=("standard", f"rack{n % 7}")) for n in range(300)]
    results = [
        ResultRecord(h.host, c.id, "fail" if (i * 7 + j) % (i % 11 + 2) == 0 else "pass", at)
        for i, h in enumerate(hosts)
        for j, c in enumerate(controls)
    ]
    run = RunRecord("big", "audit", "successful", at, id=1, ended_at=at)
    scores = score(
        policy,
        results,
        {h.host: list(h.groups) for h in hosts},
        at,
        controls=[c.id for c in controls],
    )
    doc = assemble(policy, run, results, hosts, scores)
    page = render(doc, "html", level="auditor")
    assert f"Showing the {MATRIX_HOSTS} worst of 300 hosts" in page
    assert page.count('class="h" data-host=') == MATRIX_HOSTS
    worst = doc["hosts"][0]["host"]
    assert f'data-host="{worst}"' in page
    results = json.loads(render(doc, "json"))["results"]
    assert results["count"] == 300 * 20
    assert {len(values) for values in results["columns"].values()} == {300 * 20}


def test_publish_writes_the_report_and_metrics(
    store: Store, policy: Policy, tmp_path: Path
) -> None:
    from opsrunner.reports import publish

    written = publish(store, policy, "latest", tmp_path / "out", textfile_dir=tmp_path / "prom")
    ident = "20261103T030000-audit"
    assert written["html"].name == f"report-{ident}.html"
    assert written["latest_html"].read_text() == written["html"].read_text()
    assert json.loads(written["latest_json"].read_text())["run"]["ident"] == ident
    assert "opsrunner_compliance_score_percent" in written["metrics"].read_text()
    leftovers = [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_trend_points_from_the_cache_equal_computed_ones(
    store: Store, policy: Policy, rendered: dict[str, str]
) -> None:
    cache = store.state_dir / "reports" / "trend-cache.json"
    assert cache.is_file(), "building a report keeps its runs' trend points"
    assert render(build(store, policy, "latest"), "json") == rendered["json"]
    # The oldest run's point is read from the cache: a planted value shows through.
    points = json.loads(cache.read_text())
    key = next(k for k in points if "20261101T030000-audit" in k)
    points[key] = dict(points[key], effective=12.34)
    cache.write_text(json.dumps(points), encoding="utf-8")
    planted = build(store, policy, "latest")["trend"]
    assert planted[0]["effective"] == 12.34
    cache.write_text("{not json", encoding="utf-8")
    assert render(build(store, policy, "latest"), "json") == rendered["json"]
    cache.unlink()
    assert render(build(store, policy, "latest"), "json") == rendered["json"]


def test_text_summary_from_the_document(report: Report, rendered: dict[str, str]) -> None:
    text = rendered["text"]
    assert text.startswith("Run 20261103T030000-audit  mode audit  status successful")
    assert f"grade {report['grade']}" in text.splitlines()[0]
    percent = report["scores"]["effective"]["all"]["percent"]
    assert f"{percent:.1f}%" in text
    assert "evil<img src=x" in text  # plain text for a terminal, shown as written
    assert BIDI not in text and "<U+202E>" in text


def test_run_record_shows_disruptive_roles(store: Store, policy: Policy) -> None:
    import dataclasses

    from opsrunner.reports import assemble
    from opsrunner.scoring import run_scores

    run = store.get_run("20261103")
    assert run.id is not None
    enforce = dataclasses.replace(run, mode="enforce", disruptive=("patching", "account_cleanup"))
    results, hosts = store.results(run.id), store.hosts(run.id)
    doc = assemble(policy, enforce, results, hosts, run_scores(policy, enforce, results, hosts))
    assert doc["run"]["disruptive"] == ["account_cleanup", "patching"]
    assert "yes: account_cleanup, patching" in render(doc, "html", level="executive")
    assert build(store, policy, "latest")["run"]["disruptive"] == []


def test_retired_hosts_are_listed_not_scored(store: Store, policy: Policy) -> None:
    from opsrunner.reports import assemble
    from opsrunner.scoring import score

    run = store.get_run("20261103")
    assert run.id is not None and run.ended_at is not None
    results, hosts = store.results(run.id), store.hosts(run.id)
    fleet = {h.host: list(h.groups) for h in hosts if h.host != EVIL_HOST}
    scores = score(policy, results, fleet, run.ended_at)
    doc = assemble(policy, run, results, [h for h in hosts if h.host != EVIL_HOST], scores)
    assert doc["retired_hosts"] == [EVIL_HOST]
    assert EVIL_HOST not in {h["host"] for h in doc["hosts"]}
    page = render(doc, "html", level="manager")
    assert "Retired hosts (results kept, not scored): evil&lt;img" in page


def test_patching_outside_a_change_shows_in_the_report(tmp_path: Path, policy: Policy) -> None:
    import datetime as dt

    from opsrunner.store import HostRecord, ResultRecord, RunRecord

    at = dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC)
    with Store.open(None, tmp_path) as fresh:
        for ident, mode, job, controls, start in (
            ("20261120T0300Z-enforce-patch", "enforce", "emergency", ("PAT-001",), at),
            ("20261120T0400Z-audit-after", "audit", "", (), at + dt.timedelta(hours=1)),
            (
                "20261120T0500Z-enforce-later",
                "enforce",
                "",
                ("PAT-001",),
                at + dt.timedelta(hours=2),
            ),
        ):
            run = fresh.begin_run(
                RunRecord(ident, mode, "running", start, job=job, controls=controls)
            )
            assert run.id is not None
            fresh.add_results(run.id, [ResultRecord("host1", "PAT-001", "pass", start)])
            fresh.set_hosts(run.id, [HostRecord("host1", groups=("critical",))])
            fresh.finish_run(run.id, "successful", ended_at=start + dt.timedelta(minutes=5))
        doc = build(fresh, policy, "20261120T0400Z-audit-after")
    # The later patch run is after the report's as-of time: a re-render stays the same.
    assert doc["change_control"] == {
        "patching_outside_changes": [
            {
                "run": "20261120T0300Z-enforce-patch",
                "started_at": "2026-11-20T03:00:00Z",
                "status": "successful",
                "emergency": True,
            }
        ],
        "patching_outside_changes_total": 1,
    }
    assert "20261120T0300Z-enforce-patch</span> (successful, emergency)" in render(doc, "html")
    assert "outside an approved change (3.4): 1 — `20261120T0300Z-enforce-patch`" in render(
        doc, "md"
    )


def test_report_cli_streams_the_json_to_its_file(
    store: Store, rendered: dict[str, str], tmp_path: Path
) -> None:
    # `report -f json -o FILE` writes the document a column at a time: the same bytes as
    # render(), and no temporary file left beside it.
    from typer.testing import CliRunner

    from opsrunner.cli import app
    from opsrunner.policy import default_policy_dir
    from tests.unit.reports.conftest import ATTESTATIONS, WAIVERS

    root = tmp_path / "policy"
    shutil.copytree(default_policy_dir(), root)
    (root / "waivers.yml").write_text(WAIVERS, encoding="utf-8")
    (root / "attestations.yml").write_text(ATTESTATIONS, encoding="utf-8")
    out = tmp_path / "out" / "report.json"
    done = CliRunner().invoke(
        app,
        [
            "report",
            "latest",
            "-f",
            "json",
            "-o",
            str(out),
            "--store",
            str(store.engine.url),
            "--state-dir",
            str(store.state_dir),
            "--policy",
            str(root),
        ],
    )
    assert done.exit_code == 0, done.output
    assert out.read_text(encoding="utf-8") == rendered["json"]
    assert [p.name for p in out.parent.iterdir()] == ["report.json"]
