"""policy.yml `disruptive`: roles whose disruptive steps enforce always takes on some tiers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from opsrunner.policy import PolicyError, load_policy

ROOT = Path(__file__).resolve().parents[3]


def _policy(tmp_path: Path, block: str) -> Path:
    target = tmp_path / "policy"
    shutil.copytree(ROOT / "policy", target)
    settings = target / "policy.yml"
    text = settings.read_text(encoding="utf-8")
    head = text.split("\ndisruptive:", 1)[0]
    settings.write_text(head.rstrip("\n") + "\n" + block, encoding="utf-8")
    return target


def test_the_project_policy_locks_departed_accounts_on_critical_hosts() -> None:
    policy = load_policy(ROOT / "policy")
    grant = policy.settings.disruptive["account_cleanup"]
    assert grant.tiers == ["critical"] and "3.3.2" in grant.reason
    assert policy.host_vars({"all", "critical", "db"})["account_cleanup_disruptive"] is True
    standard = policy.host_vars({"all", "standard", "web"})
    assert "account_cleanup_disruptive" not in standard
    assert policy.disruptive_roles_for({"all", "critical"}) == ["account_cleanup"]
    assert policy.disruptive_roles_for({"all"}) == []


def test_an_unknown_tier_or_role_is_named_with_its_line(tmp_path: Path) -> None:
    bad_tier = _policy(
        tmp_path / "a",
        "disruptive:\n  account_cleanup:\n    tiers: [critcal]\n    reason: 3.3.2\n",
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(bad_tier)
    text = str(caught.value)
    assert "policy.yml:" in text and "disruptive.account_cleanup.tiers" in text
    assert "'critcal' is not a tier of policy.yml" in text
    bad_role = _policy(
        tmp_path / "b", "disruptive:\n  acount_cleanup:\n    tiers: [critical]\n    reason: x\n"
    )
    with pytest.raises(PolicyError, match="role 'acount_cleanup' checks no control"):
        load_policy(bad_role)
    no_reason = _policy(tmp_path / "c", "disruptive:\n  patching:\n    tiers: [critical]\n")
    with pytest.raises(PolicyError, match=r"disruptive\.patching\.reason"):
        load_policy(no_reason)
