"""Policy strings reach a lab host as data: `{{ lookup('pipe', 'id') }}` in a parameter and a
roster field arrives on the host as written, never run (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsrunner.lab.core import Lab
from tests.lab_helpers import run_playbook
from tests.unit.reports.test_policy_strings import CANARY, canary_policy

_PLAYBOOK = """\
- name: Write what the host received from the policy
  hosts: host1
  gather_facts: false
  tasks:
    - name: Write the canary parameter and roster name to a file
      ansible.builtin.copy:
        dest: /root/opsrunner-canary.txt
        mode: "0600"
        content: |
          {{ firewall_canary_text }}
          {{ (opsrunner_roster.people | selectattr('user', 'equalto', 'alice') | first).name }}
"""


@pytest.mark.lab
@pytest.mark.slow
def test_policy_strings_arrive_on_the_host_verbatim(lab: Lab, tmp_path: Path) -> None:
    policy = canary_policy(tmp_path)
    playbook = tmp_path / "canary.yml"
    playbook.write_text(_PLAYBOOK, encoding="utf-8")
    try:
        res = run_playbook(
            lab, playbook, check=False, limit="host1", env={"OPSRUNNER_POLICY_DIR": str(policy)}
        )
        assert res.rc == 0, res
        written = lab.ssh("host1", "cat /root/opsrunner-canary.txt", check=True).stdout
        assert written.splitlines() == [CANARY, f"Alice {CANARY}"], written
        assert "uid=" not in res.stdout + written
    finally:
        lab.ssh("host1", "rm -f /root/opsrunner-canary.txt")
