"""`opsrunner policy validate --inventory`: an inventory against the policy's tiers and groups."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.policy import load_policy
from opsrunner.policy.checks import inventory_problems, policy_groups

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "inventories" / "example"
runner = CliRunner()


def _validate(inventory: Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["policy", "validate", "--inventory", str(inventory)])
    return result.exit_code, result.stdout, result.stderr


def test_the_shipped_example_inventory_is_valid() -> None:
    code, out, err = _validate(EXAMPLE)
    assert code == 0, err
    assert "inventory valid" in out and "4 hosts (critical 1, standard 3)" in out, out
    # Every group the example uses is one the policy names, and the example uses them all.
    policy = load_policy()
    _, summary = inventory_problems(policy, EXAMPLE)
    assert set(summary["groups"]) == set(policy_groups(policy)) - {"all"}, summary


def test_the_example_is_an_inventory_ansible_reads_the_same_way() -> None:
    graph = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(EXAMPLE), "--list"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    listed = json.loads(graph.stdout)
    assert listed["critical"]["hosts"] == ["db1.example.com"], listed
    assert sorted(listed["web"]["hosts"]) == ["web1.example.com", "web2.example.com"], listed
    # group_vars/all.yml applies to every host (a site setting, not a policy value).
    assert listed["_meta"]["hostvars"]["web2.example.com"]["ansible_user"] == "opsrunner"


BAD_HOSTS = """\
all:
  hosts:
    a1:
      vulnerability_scan_feed_url: http://mirror.invalid/feed
  children:
    critical:
      hosts:
        a1:
        a2:
    standard:
      children:
        webz:
          hosts:
            a2:
            a3:
    db:
      hosts:
        a4:
      vars:
        opsrunner_tier: critical
"""


@pytest.fixture
def bad_inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "bad"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "host_vars").mkdir()
    (inv / "hosts.yml").write_text(BAD_HOSTS)
    (inv / "group_vars" / "web.yml").write_text("secure_transport_tls_endpoints: []\n")
    (inv / "group_vars" / "standard.yml").write_text("site_note: fine\n")
    (inv / "host_vars" / "a9.yml").write_text("ansible_host: 192.0.2.9\n")
    return inv


def test_a_bad_inventory_names_every_problem_with_file_and_line(bad_inventory: Path) -> None:
    code, out, err = _validate(bad_inventory)
    assert code == 1, out
    lines = err.splitlines()
    hosts = str(bad_inventory / "hosts.yml")

    def find(text: str) -> str:
        found = [line for line in lines if text in line]
        assert len(found) == 1, (text, err)
        return found[0]

    # An unknown group, at the line that declares it.
    assert find("group 'webz' is not known to the policy").startswith(f"{hosts}:12: webz:")
    # A host in two tiers (one through a child group), and a host in none.
    two = find("host 'a2' is in 2 tier groups")
    assert two.startswith(f"{hosts}:9: a2:") and f"critical ({hosts}:9)" in two, two
    assert find("host 'a4' is in no tier group").startswith(f"{hosts}:18: a4:")
    # Policy values set in the inventory have no effect: each one is named where it is set.
    assert find("vulnerability_scan_feed_url (host a1) is a policy parameter").startswith(
        f"{hosts}:4: all.hosts.a1.vulnerability_scan_feed_url:"
    )
    assert find("opsrunner_tier (group db) is set by the policy's vars plugin").startswith(
        f"{hosts}:20:"
    )
    web = str(bad_inventory / "group_vars" / "web.yml")
    assert find("secure_transport_tls_endpoints (group web)").startswith(f"{web}:1:")
    assert find("group_vars/web.yml: no group 'web' in the inventory")
    assert find("host_vars/a9.yml: no host 'a9' in the inventory")
    # a1 and a3 have exactly one tier; group_vars/standard.yml is a site setting: no problem.
    assert not [
        line for line in lines if "'a1'" in line or "'a3'" in line or "standard.yml" in line
    ]
    assert lines[-1] == "8 problem(s) found", err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("all:\n  hosts: [a, b]\n", "hosts must be a mapping"),
        ("all:\n  children:\n    critical:\n      host:\n        a:\n", "unknown key 'host'"),
        ("- a\n- b\n", "a YAML inventory is a mapping of groups"),
        ("all:\n  hosts:\n    a: {\n", "malformed YAML"),
        ("all:\n  children:\n    critical:\n", "the inventory lists no hosts"),
    ],
)
def test_malformed_inventories_get_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text(text)
    code, _, err = _validate(inv)
    assert code == 1 and message in err, err


def test_a_missing_or_non_yaml_inventory_is_refused(tmp_path: Path) -> None:
    code, _, err = _validate(tmp_path / "nope")
    assert code == 1 and "no such inventory file or directory" in err, err
    (tmp_path / "ini").mkdir()
    (tmp_path / "ini" / "hosts").write_text("[critical]\na1\n")
    code, _, err = _validate(tmp_path / "ini")
    assert code == 1 and "not a YAML inventory" in err, err
