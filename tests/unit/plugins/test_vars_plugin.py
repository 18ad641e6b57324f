"""The opsrunner_policy vars plugin gives each host its policy values, through real Ansible."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "policies" / "valid"
INVENTORY_BIN = ROOT / ".venv" / "bin" / "ansible-inventory"

pytestmark = pytest.mark.skipif(
    not INVENTORY_BIN.exists(), reason="no .venv (run scripts/bootstrap)"
)

INVENTORY = """\
[critical]
c1
[standard]
s1
s2
[db]
c1
s2
[web]
s2
[other]
o1
"""


def _plain(value: Any) -> Any:
    """ansible-inventory marks strings from plugins as unsafe ({"__ansible_unsafe": s}); unwrap."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _inventory(tmp_path: Path, policy_dir: Path) -> tuple[int, dict[str, Any], str]:
    inv = tmp_path / "hosts.ini"
    inv.write_text(INVENTORY)
    env = dict(
        os.environ, OPSRUNNER_POLICY_DIR=str(policy_dir), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")
    )
    proc = subprocess.run(
        [str(INVENTORY_BIN), "-i", str(inv), "--list"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    data = json.loads(proc.stdout) if proc.returncode == 0 else {}
    return proc.returncode, _plain(data.get("_meta", {}).get("hostvars", {})), proc.stderr


def test_hosts_get_default_tier_and_group_values(tmp_path: Path) -> None:
    code, hostvars, err = _inventory(tmp_path, FIXTURES / "minimal")
    assert code == 0, err
    c1, s1, s2, o1 = (hostvars[h] for h in ("c1", "s1", "s2", "o1"))
    assert c1["accounts_disable_within_hours"] == 2  # critical 4, then group db 2
    assert s1["accounts_disable_within_hours"] == 24  # standard tier
    assert s2["accounts_disable_within_hours"] == 12  # standard, db 2, then web 12 (listed order)
    assert o1["accounts_disable_within_hours"] == 72  # default only
    assert c1["accounts_tier_only"] is True and "accounts_tier_only" not in s1
    assert (c1["opsrunner_tier"], s1["opsrunner_tier"], o1["opsrunner_tier"]) == (
        "critical",
        "standard",
        "none",
    )
    assert [w["name"] for w in c1["opsrunner_windows"]] == ["crit-weekly"]
    assert [w["name"] for w in s1["opsrunner_windows"]] == ["std-nightly"]
    assert [n["ticket"] for n in c1["opsrunner_notices"]] == ["CHG-1"] and s1[
        "opsrunner_notices"
    ] == []
    assert {p["user"] for p in o1["opsrunner_roster"]["people"]} == {
        "alice",
        "dave",
        "frank",
        "grace",
    }
    assert len(str(c1["opsrunner_policy_digest"])) == 64


def test_a_modified_copy_changes_the_values(tmp_path: Path) -> None:
    copy = tmp_path / "policy"
    shutil.copytree(FIXTURES / "minimal", copy)
    params = copy / "parameters" / "accounts.yml"
    params.write_text(
        params.read_text().replace(
            "tiers: {critical: 4, standard: 24}", "tiers: {critical: 4, standard: 36}"
        )
    )
    code, hostvars, err = _inventory(tmp_path, copy)
    assert code == 0, err
    assert hostvars["s1"]["accounts_disable_within_hours"] == 36


def test_a_policy_error_fails_the_run_with_file_and_line(tmp_path: Path) -> None:
    copy = tmp_path / "policy"
    shutil.copytree(FIXTURES / "minimal", copy)
    controls = copy / "controls" / "training.yml"
    controls.write_text(controls.read_text().replace("severity: medium", "severity: urgent"))
    code, _, err = _inventory(tmp_path, copy)
    assert code != 0
    assert "opsrunner policy is invalid" in err
    assert "controls/training.yml:7: controls[0].severity:" in err


def test_the_project_policy_reaches_a_plain_inventory(tmp_path: Path) -> None:
    code, hostvars, err = _inventory(tmp_path, ROOT / "policy")
    assert code == 0, err
    assert hostvars["c1"]["opsrunner_tier"] == "critical"
    assert any(p["status"] == "departed" for p in hostvars["c1"]["opsrunner_roster"]["people"])
