"""Firewall role on lab hosts: enforce, idempotence, one mutation per control seen by the audit."""

from __future__ import annotations

import subprocess

import pytest

from opsrunner.lab.core import Lab
from tests.lab_helpers import control, controls, reset_hosts, run_playbook, snapshots

PLAYBOOK = "playbooks/firewall.yml"
FW = ("FW-001", "FW-002", "FW-003", "FW-004", "FW-005")

# Each mutation breaks one control; two per host at most, on different controls,
# so one audit shows that each break is seen by exactly its own control.
MUTATIONS: dict[str, list[tuple[str, str]]] = {
    "host1": [
        # FW-001: a port outside the allowlist opened in the live rule set.
        ("FW-001", "nft add rule inet opsrunner input tcp dport 8080 accept"),
        # FW-005: a service listening on a port the allowlist does not cover.
        ("FW-005", "systemd-run --unit=fw-rogue python3 -m http.server 8081 >/dev/null 2>&1"
                   " && for i in $(seq 50); do ss -Htln | grep -q ':8081 ' && break;"
                   " sleep 0.1; done"),
    ],
    "host2": [
        # FW-002: the admin-network SSH rule narrowed to the controller alone (the
        # controller keeps its access, the admin network loses it).
        ("FW-002", 'h=$(nft -a list chain inet opsrunner input'
                   ' | awk \'/FW-002 management SSH/ {print $NF; exit}\');'
                   ' nft replace rule inet opsrunner input handle "$h"'
                   ' ip saddr "${SSH_CLIENT%% *}" tcp dport 22 accept'),
        # FW-004: the rule set would not be loaded at the next boot.
        ("FW-004", "systemctl disable --quiet nftables.service"),
    ],
    "host3": [
        # FW-003: the rate-limited drop log rule removed.
        ("FW-003", 'h=$(nft -a list chain inet opsrunner input | awk \'/FW-003/ {print $NF}\');'
                   ' nft delete rule inet opsrunner input handle "$h"'),
    ],
}

EVIDENCE = {
    ("host1", "FW-001"): "tcp/8080 from any",
    ("host1", "FW-005"): ":8081 (python3)",
    ("host2", "FW-002"): "not accepted from 10.0.0.0/8",
    ("host2", "FW-004"): "nftables.service was not enabled",
    ("host3", "FW-003"): "no rate-limited log rule",
}


def _rulesets(lab: Lab) -> dict[str, str]:
    return {h: lab.ssh(h, "nft list ruleset", check=True).stdout for h in lab.hosts}


@pytest.mark.lab
@pytest.mark.slow
def test_firewall_enforce_idempotent_and_mutations(lab: Lab) -> None:
    reset_hosts(lab)
    try:
        first = run_playbook(lab, PLAYBOOK, check=False)
        for host in lab.hosts:
            assert controls(first, host) == dict.fromkeys(FW, "pass"), first
        second = run_playbook(lab, PLAYBOOK, check=False)
        for host in lab.hosts:
            assert second["stats"][host]["changed"] == 0, f"second enforce changed {host}\n{second}"
            assert controls(second, host) == dict.fromkeys(FW, "pass"), second
            # A new SSH connection (not the multiplexed one) still gets in: no lock-out.
            # ssh keeps the first value of an option, so the multiplexing ones are rewritten.
            args = [("ControlPath=none" if a.startswith("ControlPath=") else
                     "ControlMaster=no" if a.startswith("ControlMaster=") else a)
                    for a in lab.ssh_args(host)]
            fresh = subprocess.run([*args, "true"], capture_output=True, text=True, timeout=30,
                                   check=False)
            assert fresh.returncode == 0, f"new SSH connection to {host} refused: {fresh.stderr}"

        # FW-004 persisted: after a reboot the kernel has the same rule set (and SSH gets in).
        table = "nft list table inet opsrunner"
        enforced = lab.ssh("host3", table, check=True).stdout
        lab.reboot("host3")
        assert lab.ssh("host3", table).stdout == enforced, "the rule set did not survive a reboot"

        for host, steps in MUTATIONS.items():
            for _cid, cmd in steps:
                lab.ssh(host, cmd, check=True)
        before, rules_before = snapshots(lab), _rulesets(lab)
        audit = run_playbook(lab, PLAYBOOK, check=True, diff=True)
        assert snapshots(lab) == before, "the audit changed files on a host"
        assert _rulesets(lab) == rules_before, "the audit changed a live rule set"

        for host in lab.hosts:
            broken = {cid for cid, _ in MUTATIONS.get(host, [])}
            want = {cid: ("fail" if cid in broken else "pass") for cid in FW}
            assert controls(audit, host) == want, audit
        for (host, cid), text in EVIDENCE.items():
            rec = control(audit, host, cid)
            assert text in rec["evidence"] + " " + rec["reason"], rec

        # Enforce repairs the rule set; the foreign listener needs a person (report only).
        fixed = run_playbook(lab, PLAYBOOK, check=False)
        for host in lab.hosts:
            want = dict.fromkeys(FW, "pass")
            if host == "host1":
                want["FW-005"] = "fail"
            assert controls(fixed, host) == want, fixed
        assert "tcp dport 8080" not in lab.ssh("host1", "nft list ruleset", check=True).stdout
    finally:
        reset_hosts(lab)
