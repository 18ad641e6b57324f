"""playbooks/site.yml imports every role playbook, and the runner reads the roles it runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from opsrunner.runner.scope import site_roles

ROOT = Path(__file__).resolve().parents[3]


def _tracked_role_playbooks() -> set[str]:
    # Only committed playbooks: a role engineer's work in progress is not yet the project's.
    out = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "playbooks/*.yml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = {Path(p).stem for p in out}
    return {n for n in names if n != "site" and not n.startswith("operate_")}


def test_site_imports_every_role_playbook() -> None:
    roles = site_roles(ROOT / "playbooks" / "site.yml")
    missing = _tracked_role_playbooks() - set(roles)
    assert not missing, f"playbooks/site.yml does not import: {sorted(missing)}"
    assert len(roles) == len(set(roles)), "a playbook is imported twice"
    for role in roles:
        assert (ROOT / "playbooks" / f"{role}.yml").is_file(), (
            f"site.yml imports a missing {role}.yml"
        )
