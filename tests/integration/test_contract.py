"""Result contract + policy vars plugin + results callback together, with plain ansible-playbook."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
ROLES = ROOT / "tests" / "fixtures" / "roles"
POLICY = ROOT / "tests" / "fixtures" / "policies" / "valid" / "contract"

pytestmark = [
    pytest.mark.skipif(
        not (BIN / "ansible-playbook").exists(), reason="no .venv (run scripts/bootstrap)"
    ),
    pytest.mark.slow,
]

INVENTORY = """\
[critical]
h_crit
[standard]
h_std
[all:vars]
ansible_connection=local
ansible_python_interpreter=/usr/bin/python3
"""


def _play(
    tmp_path: Path, name: str, *, check: bool, policy: Path = POLICY
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    (tmp_path / "hosts.ini").write_text(INVENTORY)
    results = tmp_path / f"{name}.json"
    env = dict(
        os.environ,
        OPSRUNNER_POLICY_DIR=str(policy),
        OPSRUNNER_RESULTS_FILE=str(results),
        ANSIBLE_ROLES_PATH=str(ROLES),
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
    )
    cmd = [
        str(BIN / "ansible-playbook"),
        *("-i", str(tmp_path / "hosts.ini"), str(ROLES / "contract.yml")),
        *("-e", f"contract_example_dir={tmp_path}"),
    ]
    if check:
        cmd.append("--check")
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    return proc, json.loads(results.read_text()) if results.exists() else {}


def _statuses(payload: dict[str, Any], host: str) -> dict[str, str]:
    return {cid: c["status"] for cid, c in payload["hosts"][host]["controls"].items()}


def test_audit_enforce_audit(tmp_path: Path) -> None:
    for host in ("h_crit", "h_std"):
        (tmp_path / host).mkdir()

    # audit: nothing there yet, and the audit must not create anything
    proc, audit = _play(tmp_path, "audit1", check=True)
    assert audit, proc.stdout + proc.stderr
    assert audit["format"] == "opsrunner-results/1" and audit["mode"] == "audit"
    assert not (tmp_path / "h_crit" / "marker").exists()
    crit, std = _statuses(audit, "h_crit"), _statuses(audit, "h_std")
    assert crit == {
        "CEX-001": "fail",
        "CEX-002": "fail",
        "CEX-003": "error",
        "CEX-004": "pass",
        "CEX-005": "error",
    }
    assert std == {
        "CEX-001": "fail",
        "CEX-002": "fail",
        "CEX-003": "error",
        "CEX-004": "notapplicable",
        "CEX-005": "error",
    }
    # the policy's per-tier value reached the role through the vars plugin
    assert (
        audit["hosts"]["h_crit"]["controls"]["CEX-002"]["reason"]
        == "marker mode is absent, not 0600"
    )
    assert (
        audit["hosts"]["h_std"]["controls"]["CEX-002"]["reason"]
        == "marker mode is absent, not 0644"
    )
    # a rescued failure is reported once, by the role's own error report, with its message
    cex3 = audit["hosts"]["h_crit"]["controls"]["CEX-003"]
    assert len(cex3["checks"]) == 1 and "no-such-file" in cex3["reason"]
    # an unrescued failure of a task named with an id is an error for that control
    cex5 = audit["hosts"]["h_crit"]["controls"]["CEX-005"]
    assert cex5["reason"].startswith("task 'CEX-005 | A check that fails without a rescue' failed")
    # CEX-004's evidence shows the windows and roster the plugin gave the host
    assert audit["hosts"]["h_crit"]["controls"]["CEX-004"]["data"] == {"windows": ["crit"]}
    assert "2 people" in audit["hosts"]["h_crit"]["controls"]["CEX-004"]["evidence"]
    # the per-host summary is printed
    assert "OPSRUNNER CONTROL SUMMARY" in proc.stdout
    assert "h_crit: pass=1 fail=2 error=2" in proc.stdout
    assert "h_std: fail=2 error=2 notapplicable=1" in proc.stdout

    # enforce: remediated, and the modes follow the tiers
    proc, enforce = _play(tmp_path, "enforce", check=False)
    assert enforce["mode"] == "enforce"
    cex1 = enforce["hosts"]["h_crit"]["controls"]["CEX-001"]
    assert (
        cex1["status"] == "pass"
        and cex1["remediated"] is True
        and cex1["reason"] == "remediated in this run"
    )
    assert oct((tmp_path / "h_crit" / "marker").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "h_std" / "marker").stat().st_mode & 0o777) == "0o644"

    # audit again: compliant now, nothing remediated
    proc, audit2 = _play(tmp_path, "audit2", check=True)
    assert _statuses(audit2, "h_crit")["CEX-001"] == "pass"
    assert _statuses(audit2, "h_crit")["CEX-002"] == "pass"
    assert _statuses(audit2, "h_std")["CEX-002"] == "pass"
    assert audit2["hosts"]["h_crit"]["controls"]["CEX-001"]["remediated"] is False


def test_a_policy_change_reaches_the_role(tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "policy"
    shutil.copytree(POLICY, copy)
    params = copy / "parameters" / "contract_example.yml"
    params.write_text(params.read_text().replace('standard: "0644"', 'standard: "0640"'))
    for host in ("h_crit", "h_std"):
        (tmp_path / host).mkdir()
        (tmp_path / host / "marker").write_text("managed by opsrunner\n")
        (tmp_path / host / "marker").chmod(0o644)
    _, audit = _play(tmp_path, "audit", check=True, policy=copy)
    assert (
        audit["hosts"]["h_std"]["controls"]["CEX-002"]["reason"] == "marker mode is 0644, not 0640"
    )
    assert audit["hosts"]["h_crit"]["controls"]["CEX-002"]["status"] == "fail"


def test_the_example_role_passes_ansible_lint_production() -> None:
    lint = BIN / "ansible-lint"
    if not lint.exists():
        pytest.skip("ansible-lint not installed")
    proc = subprocess.run(
        [
            *(str(lint), "--profile", "production", "--nocolor"),
            *(str(ROLES / "contract_example"), str(ROLES / "contract.yml")),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env=dict(os.environ, ANSIBLE_ROLES_PATH=str(ROLES)),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr
