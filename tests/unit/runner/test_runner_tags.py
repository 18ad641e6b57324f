"""Which controls a `--tags` run selects, read from the real site.yml's task listing."""

from __future__ import annotations

from pathlib import Path

from opsrunner.policy import load_policy
from opsrunner.runner.run import _ansible_env, _list_tasks, listed_tasks, tag_selection

ROOT = Path(__file__).resolve().parents[3]

LISTING = """
playbook: playbooks/site.yml

  play #3 (all): Firewall policy\tTAGS: []
    tasks:
      firewall : Probe the live rule set and listening sockets\tTAGS: [always, firewall]
      firewall : FW-001 | Work out the drift\tTAGS: [firewall, fw-001, fw-002]
      firewall : FW-002 | Report\tTAGS: [firewall, fw-002]
      Sort the hosts into the canary batch and the rest\tTAGS: [always]
"""


def test_listing_is_parsed_without_role_prefixes() -> None:
    assert listed_tasks(LISTING) == [
        ("Probe the live rule set and listening sockets", {"always", "firewall"}),
        ("FW-001 | Work out the drift", {"firewall", "fw-001", "fw-002"}),
        ("FW-002 | Report", {"firewall", "fw-002"}),
        ("Sort the hosts into the canary batch and the rest", {"always"}),
    ]


def test_task_role_and_group_tags_select_their_controls(tmp_path: Path) -> None:
    policy = load_policy(ROOT / "policy")
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[critical]\nhost1\n[standard]\nhost2\n[web]\nhost2\n")
    env = _ansible_env(policy.root, "test", tmp_path)
    # One listing of every task (the selection rule reads the same tasks from any listing that
    # includes them, so one call serves every tag below).
    listing = _list_tasks(ROOT / "playbooks" / "site.yml", inventory, None, "all", env)
    assert len(listing) > 100

    def select(tags: str) -> set[str]:
        return tag_selection(policy.controls, tags, listing)

    # A control id tag selects that control only, even where a shared task of another control
    # carries its tag (the firewall's rule-set tasks are named FW-001 and tagged fw-002).
    assert select("fw-002") == {"FW-002"}
    firewall = {c.id for c in policy.controls if c.role == "firewall"}
    assert select("firewall") == firewall
    # A role's own group tag (secure_transport's "ssh") selects the controls its tasks carry.
    ssh = {c.id for c in policy.controls if c.id.startswith("SSH-")}
    assert ssh and select("ssh") == ssh
    assert select("fw-001,acc-002") == {"FW-001", "ACC-002"}
    assert select("no-such-tag") == set()
    assert select("all") == {c.id for c in policy.controls if c.kind == "automated"}
