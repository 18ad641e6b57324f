"""Every format rendered from a stored lab run (a real audit → enforce → audit, exported JSONL).

fixtures/lab-run.jsonl is `opsrunner store export` of three runs on a 3-host lab (audit,
enforce FW-001..003, audit); the first audit's results were not recorded by the runner, so it
stands in the trend with manual controls only.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
from lxml import etree

from opsrunner.policy import load_policy
from opsrunner.reports import FORMATS, build, render
from opsrunner.store import Store

HERE = Path(__file__).parent
ROOT = HERE.parents[2]


@pytest.fixture(scope="module")
def lab_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    path = tmp_path_factory.mktemp("labrun")
    store = Store.open(f"sqlite:///{path / 'store.db'}", path)
    store.import_(HERE / "fixtures" / "lab-run.jsonl")
    return store


def test_every_format_from_the_lab_run(lab_store: Store, tmp_path: Path) -> None:
    report = build(lab_store, load_policy(), "latest")
    assert report["run"]["ident"] == "20261203T072327Z-audit-1debc44a"
    assert report["run"]["mode"] == "audit"
    hosts = {h["host"] for h in report["hosts"] if not h["organisation"]}
    assert hosts == {"host1", "host2", "host3"}
    assert len(report["trend"]) == 2
    out = {fmt: render(report, fmt) for fmt in FORMATS}
    schema = json.loads((ROOT / "docs" / "report-schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(json.loads(out["json"]))
    evidence = "login accounts without a password hash: 0"
    assert evidence in out["json"] and evidence in out["html"]
    junit_xsd = etree.XMLSchema(etree.parse(str(HERE / "schemas" / "junit-10.xsd")))
    junit = etree.fromstring(out["junit"].encode())
    assert junit_xsd.validate(junit), junit_xsd.error_log
    sarif = json.loads((HERE / "schemas" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(sarif).validate(json.loads(out["sarif"]))
    from trestle.oscal.assessment_results import AssessmentResults

    AssessmentResults.parse_obj(json.loads(out["oscal"])["assessment-results"])
    rows = list(csv.DictReader(io.StringIO(out["csv"])))
    assert len(rows) == len(junit.findall(".//testcase")) == report["totals"]["results"]
    failing = sum(1 for r in rows if r["effective"] in ("fail", "stale"))
    assert failing == len(junit.findall(".//testcase/failure"))
    oscap = shutil.which("oscap")
    if oscap is not None:
        path = tmp_path / "lab.xccdf.xml"
        path.write_text(out["xccdf"], encoding="utf-8")
        checked = subprocess.run([oscap, "xccdf", "validate", str(path)], capture_output=True)
        assert checked.returncode == 0, checked.stdout[-2000:]
    # The same stored run renders the same bytes.
    again = build(lab_store, load_policy(), "20261203T072327Z")
    assert render(again, "html") == out["html"]
    assert render(again, "json") == out["json"]
