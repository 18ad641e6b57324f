"""`opsrunner policy …` and `opsrunner waiver …` end to end through the CLI."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.policy import load_policy
from opsrunner.policy.schema import policy_schema, render_schema
from opsrunner.policy.trace import register_evidence_provider

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "policies"
ROLES = ROOT / "tests" / "fixtures" / "roles"
runner = CliRunner()


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "policy"
    shutil.copytree(FIXTURES / "valid" / "minimal", copy)
    return copy


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_validate_passes_a_valid_policy() -> None:
    code, out, _ = _run(
        "policy",
        "validate",
        "--policy-dir",
        str(FIXTURES / "valid" / "contract"),
        "--roles-dir",
        str(ROLES),
    )
    assert code == 0, out
    assert "policy valid: 5 controls (5 automated, 0 manual)" in out


def test_validate_lists_every_problem_and_exits_1() -> None:
    code, _, err = _run(
        "policy", "validate", "--policy-dir", str(FIXTURES / "invalid" / "clause_before_parent")
    )
    assert code == 1
    lines = [line for line in err.splitlines() if ".yml:" in line]
    assert len(lines) == 5
    assert any(
        line.endswith(
            "regulation.yml:7: clauses[1].number: clause 2.1 comes before (or without) its parent 2"
        )
        for line in lines
    )
    assert "5 problem(s) found" in err


def test_validate_runs_coverage_and_cross_check() -> None:
    code, _, err = _run(
        "policy",
        "validate",
        "--policy-dir",
        str(FIXTURES / "invalid" / "crosscheck_missing_role"),
        "--roles-dir",
        str(ROLES),
    )
    assert code == 1 and "ACX-001.role: role 'no_such_role' does not exist" in err
    code, _, err = _run(
        "policy",
        "validate",
        "--policy-dir",
        str(FIXTURES / "invalid" / "uncovered_clause"),
        "--no-crosscheck",
    )
    assert code == 1 and "clause 1.3: no control covers this clause" in err
    code, _, _ = _run(
        "policy",
        "validate",
        "--policy-dir",
        str(FIXTURES / "invalid" / "uncovered_clause"),
        "--no-crosscheck",
        "--no-coverage",
    )
    assert code == 0


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_show_dumps_the_whole_policy(fmt: str) -> None:
    code, out, _ = _run(
        "policy", "show", "--policy-dir", str(FIXTURES / "valid" / "minimal"), "--format", fmt
    )
    assert code == 0
    data = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    assert [c["id"] for c in data["controls"]] == ["ACX-001", "TRX-001"]
    assert data["digest"] == load_policy(FIXTURES / "valid" / "minimal").digest()
    assert data["parameters"]["accounts_disable_within_hours"]["tiers"] == {
        "critical": 4,
        "standard": 24,
    }


def test_show_table_lists_controls() -> None:
    code, out, _ = _run("policy", "show", "--policy-dir", str(FIXTURES / "valid" / "minimal"))
    assert code == 0 and "ACX-001" in out and "TRX-001" in out


def test_trace_a_clause_reaches_controls_and_tasks() -> None:
    code, out, _ = _run(
        "policy",
        "trace",
        "1.1",
        "--policy-dir",
        str(FIXTURES / "valid" / "contract"),
        "--roles-dir",
        str(ROLES),
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["clause"]["number"] == "1.1" and data["clause"]["leaf"] is True
    assert [c["id"] for c in data["controls"]] == ["CEX-001", "CEX-002"]
    tasks = data["controls"][0]["tasks"]
    assert {t["name"] for t in tasks} >= {
        "CEX-001 | Ensure the marker file exists",
        "CEX-001 | Report",
    }
    assert all(
        t["file"].endswith("contract_example/tasks/marker.yml") and t["line"] > 0 for t in tasks
    )
    assert data["parameters"] == ["contract_example_mode"]


def test_trace_a_control_walks_back_to_its_clauses_and_waivers() -> None:
    code, out, _ = _run(
        "policy",
        "trace",
        "TRX-001",
        "--policy-dir",
        str(FIXTURES / "valid" / "minimal"),
        "--roles-dir",
        str(ROLES),
    )
    assert code == 0
    assert "clause 1.2: Training happens." in out
    assert "evidence required: The approved training plan." in out
    assert "attested by dave" in out and "waiver WVR-2026-002" in out


def test_trace_text_of_a_clause_and_the_evidence_hook() -> None:
    seen: list[str] = []

    def provider(control_id: str) -> list[dict[str, str]]:
        seen.append(control_id)
        return [
            {
                "host": "host1",
                "status": "pass",
                "at": "2026-11-28T00:00:00Z",
                "evidence": "marker ok",
            }
        ]

    register_evidence_provider(provider)
    try:
        code, out, _ = _run(
            "policy",
            "trace",
            "1",
            "--policy-dir",
            str(FIXTURES / "valid" / "contract"),
            "--roles-dir",
            str(ROLES),
        )
    finally:
        register_evidence_provider(None)
    assert code == 0
    assert "sub-clauses: 1.1, 1.2, 1.3" in out
    assert "evidence host1: pass" in out and seen == [
        "CEX-001",
        "CEX-002",
        "CEX-003",
        "CEX-004",
        "CEX-005",
    ]


def test_trace_unknown_key() -> None:
    code, _, err = _run(
        "policy", "trace", "9.9.9", "--policy-dir", str(FIXTURES / "valid" / "minimal")
    )
    assert code == 2 and "neither a clause" in err


def test_schema_file_is_in_sync_with_the_models() -> None:
    """Regenerate with `opsrunner policy schema` after changing a model."""
    assert (ROOT / "policy" / "schema.json").read_text(encoding="utf-8") == render_schema()


def test_schema_describes_every_file_and_forbids_unknown_fields(tmp_path: Path) -> None:
    schema = policy_schema()
    assert set(schema["x-files"]) == {
        "policy.yml",
        "regulation.yml",
        "controls/*.yml",
        "parameters/*.yml",
        "windows.yml",
        "roster.yml",
        "waivers.yml",
        "attestations.yml",
        "plans/*.yml",
        "targets.yml",
        "notifications.yml",
    }
    assert schema["$defs"]["Control"]["additionalProperties"] is False
    out = tmp_path / "schema.json"
    code, _, _ = _run("policy", "schema", "--output", str(out))
    assert code == 0 and json.loads(out.read_text()) == json.loads(render_schema())


def test_schema_validates_the_fixture_files() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = policy_schema()
    base = FIXTURES / "valid" / "minimal"
    for pattern, ref in schema["x-files"].items():
        for file in sorted(base.glob(pattern)):
            sub = {"$ref": ref, "$defs": schema["$defs"]}
            data = json.loads(
                json.dumps(
                    yaml.safe_load(file.read_text()),
                    default=lambda v: v.isoformat().replace("+00:00", "Z"),
                )
            )
            jsonschema.validate(data, sub)


# --- waivers -------------------------------------------------------------------------------------


def _request(policy_dir: Path, *extra: str, expires: str | None = None) -> tuple[int, str, str]:
    expiry = expires or (dt.datetime.now(dt.UTC) + dt.timedelta(days=20)).strftime("%Y-%m-%d")
    return _run(
        "waiver",
        "request",
        "--policy-dir",
        str(policy_dir),
        "--control",
        "ACX-001",
        "--requester",
        "alice",
        "--justification",
        'Vendor "appliance": no agent',
        "--ticket",
        "RISK-9",
        "--expires",
        expiry,
        *extra,
    )


def test_waiver_request_then_approve(policy_copy: Path) -> None:
    before = (policy_copy / "waivers.yml").read_text()
    code, out, err = _request(policy_copy, "--host", "legacy2", "--group", "legacy")
    assert code == 0, err
    year = dt.datetime.now(dt.UTC).year
    new_id = f"WVR-{year}-00{3 if year == 2026 else 1}"
    assert new_id in out
    text = (policy_copy / "waivers.yml").read_text()
    assert text.startswith(before)  # existing records, comments and order untouched
    waiver = next(w for w in load_policy(policy_copy).waivers if w.id == new_id)
    assert (
        waiver.approver is None
        and waiver.scope.hosts == ["legacy2"]
        and waiver.justification == 'Vendor "appliance": no agent'
    )

    code, _, err = _run(
        "waiver", "approve", new_id, "--approver", "alice", "--policy-dir", str(policy_copy)
    )
    assert code == 1 and "a different person must approve it" in err
    code, out, err = _run(
        "waiver", "approve", new_id, "--approver", "dave", "--policy-dir", str(policy_copy)
    )
    assert code == 0, err
    waiver = next(w for w in load_policy(policy_copy).waivers if w.id == new_id)
    assert waiver.approver == "dave" and waiver.approved_at is not None
    code, _, err = _run(
        "waiver", "approve", new_id, "--approver", "dave", "--policy-dir", str(policy_copy)
    )
    assert code == 1 and "already approved by dave" in err

    code, out, _ = _run("waiver", "list", "--policy-dir", str(policy_copy), "--format", "json")
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows[new_id]["status"] == "active" and rows[new_id]["approver"] == "dave"
    code, out, _ = _run(
        "waiver",
        "expire-soon",
        "--days",
        "30",
        "--policy-dir",
        str(policy_copy),
        "--format",
        "json",
    )
    assert [r["id"] for r in json.loads(out)] == [new_id]
    code, out, _ = _run(
        "waiver", "expire-soon", "--days", "5", "--policy-dir", str(policy_copy), "--format", "json"
    )
    assert json.loads(out) == []


def test_waiver_request_refusals_leave_the_file_alone(policy_copy: Path) -> None:
    before = (policy_copy / "waivers.yml").read_text()
    far = (dt.datetime.now(dt.UTC) + dt.timedelta(days=120)).strftime("%Y-%m-%d")
    code, _, err = _request(policy_copy, "--group", "legacy", expires=far)
    assert code == 1 and "more than 90 days away" in err
    code, _, err = _request(policy_copy)  # no host, no group
    assert code == 1 and "at least one host or group" in err
    code, _, err = _request(policy_copy, "--group", "legacy", expires="31/12/2026")
    assert code == 2 and "not an ISO date" in err
    code, _, err = _request(policy_copy, "--group", "legacy", expires="2026-12-31T00:00:00")
    assert code == 2 and "no time zone" in err
    code, _, err = _run(
        "waiver",
        "request",
        "--policy-dir",
        str(policy_copy),
        "--control",
        "ACX-001",
        "--requester",
        "mallory",
        "-j",
        "x",
        "--ticket",
        "T",
        "--expires",
        "2026-12-31",
        "--group",
        "g",
    )
    assert code == 1 and "not on the roster" in err
    assert (policy_copy / "waivers.yml").read_text() == before
    assert not list(policy_copy.glob(".waivers.*"))


def test_waiver_list_says_expired_waivers_no_longer_apply() -> None:
    code, out, _ = _run(
        "waiver",
        "list",
        "--policy-dir",
        str(FIXTURES / "valid" / "minimal"),
        "--at",
        "2027-02-01T00:00:00Z",
        "--format",
        "json",
    )
    assert code == 0
    rows = {r["id"]: r for r in json.loads(out)}
    assert (
        rows["WVR-2026-001"]["status"] == "expired"
        and "no longer applies" in rows["WVR-2026-001"]["note"]
    )


def test_waiver_request_into_an_empty_list(tmp_path: Path) -> None:
    copy = tmp_path / "policy"
    shutil.copytree(FIXTURES / "valid" / "contract", copy)
    code, _, err = _run(
        "waiver",
        "request",
        "--policy-dir",
        str(copy),
        "--control",
        "CEX-003",
        "--requester",
        "alice",
        "-j",
        "probe unsupported",
        "--ticket",
        "T-1",
        "--expires",
        (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--host",
        "h1",
    )
    assert code == 0, err
    assert [w.control for w in load_policy(copy).waivers] == ["CEX-003"]


HELP = {
    "policy": "Validate, show and trace the policy.",
    "policy validate": "Validate the policy",
    "policy show": "Show the controls",
    "policy trace": "Walk clause",
    "policy schema": "Write the JSON Schema",
    "waiver": "Request, approve, list and watch waivers",
    "waiver request": "Record a pending waiver",
    "waiver approve": "Approve a pending waiver",
    "waiver list": "List waivers with their status",
    "waiver expire-soon": "List active waivers that expire within",
}


@pytest.mark.parametrize("path", sorted(HELP))
def test_every_policy_and_waiver_command_has_help(path: str) -> None:
    result = runner.invoke(app, [*path.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert HELP[path] in " ".join(result.output.split())
