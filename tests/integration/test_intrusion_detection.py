"""intrusion_detection on the lab: a real SSH burst gets its source banned through nftables."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from opsrunner.lab.core import Lab
from tests.lab_helpers import control, controls, reset_hosts, run_playbook, snapshots

PLAYBOOK = "playbooks/intrusion_detection.yml"
BURST = 8  # failed logins, above the standard tier's maxretry (5)


def _burst_from_host(lab: Lab, source: str, target: str) -> None:
    """Failed SSH logins from one lab host to another (unknown user, no key)."""
    address = lab.hosts[target].address
    lab.ssh(
        source,
        f"for i in $(seq {BURST}); do ssh -o BatchMode=yes -o StrictHostKeyChecking=no "
        f"-o UserKnownHostsFile=/dev/null -o ConnectTimeout=3 intruder@{address} true; done; true",
        timeout=120,
    )


def _burst_from_controller(lab: Lab, target: str) -> None:
    """The same burst from the management address (the controller's bridge address)."""
    for _ in range(BURST):
        subprocess.run(
            [
                "ssh",
                "-i",
                "/dev/null",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "ControlMaster=no",
                "-o",
                "ConnectTimeout=3",
                f"intruder@{lab.hosts[target].address}",
                "true",
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )


def _banned(lab: Lab, host: str) -> list[str]:
    out = lab.ssh(host, "fail2ban-client get sshd banip").stdout
    return out.split()


def _wait_banned(lab: Lab, host: str, address: str, tries: int = 30) -> list[str]:
    """Poll until fail2ban has acted on the journal (no timing is asserted)."""
    banned: list[str] = []
    for _ in range(tries):
        banned = _banned(lab, host)
        if address in banned:
            break
        time.sleep(1)
    return banned


def _failing(results: dict[str, object], host: str) -> set[str]:
    return {cid for cid, status in controls(results, host).items() if status == "fail"}


@pytest.mark.lab
@pytest.mark.slow
def test_intrusion_detection_burst_and_mutations(lab: Lab) -> None:
    reset_hosts(lab)
    management = lab.repo.address
    attacker = lab.hosts["host3"].address

    enforced = run_playbook(lab, PLAYBOOK, check=False)
    assert enforced.rc == 0, enforced
    for host in lab.hosts:
        assert set(controls(enforced, host).values()) == {"pass"}, (host, enforced)

    # A real burst of failed logins: from host3 to host2, and from the management address.
    _burst_from_host(lab, "host3", "host2")
    _burst_from_controller(lab, "host2")
    banned = _wait_banned(lab, "host2", attacker)
    assert attacker in banned, banned
    assert management not in banned, banned
    nft = lab.ssh("host2", "nft list set inet f2b-table addr-set-sshd", check=True).stdout
    elements = re.findall(r"\d+\.\d+\.\d+\.\d+", nft)
    assert attacker in elements and management not in elements, nft
    # The ban is real: host3 no longer reaches host2's sshd, the controller still does.
    blocked = lab.ssh(
        "host3",
        f"ssh -o BatchMode=yes -o StrictHostKeyChecking=no "
        f"-o ConnectTimeout=3 x@{lab.hosts['host2'].address} true 2>&1",
    )
    assert "Permission denied" not in blocked.stdout, blocked.stdout
    assert lab.ssh("host2", "true", connect_timeout=5).returncode == 0

    # Break one control per host.
    # host1: the jail's threshold is loosened behind the policy's back.
    lab.ssh(
        "host1",
        "sed -i 's/^maxretry = .*/maxretry = 50/' "
        "/etc/fail2ban/jail.d/opsrunner-sshd.local && fail2ban-client reload",
        check=True,
    )
    # host2: the ignore list is gone, so the management address could be banned.
    lab.ssh(
        "host2",
        "rm /etc/fail2ban/jail.d/zz-opsrunner-ignoreip.local && fail2ban-client reload",
        check=True,
    )
    # host3: fail2ban would not start at boot.
    lab.ssh("host3", "systemctl disable fail2ban", check=True)

    before = snapshots(lab)
    audit = run_playbook(lab, PLAYBOOK, check=True)
    assert snapshots(lab) == before, "the audit changed a host"

    assert _failing(audit, "host1") == {"IDS-002"}, audit
    assert _failing(audit, "host2") == {"IDS-003"}, audit
    assert _failing(audit, "host3") == {"IDS-001"}, audit
    assert "maxretry is 50" in control(audit, "host1", "IDS-002")["evidence"]
    ids3 = control(audit, "host2", "IDS-003")
    assert "not ignored by the live jail" in ids3["evidence"], ids3
    assert management in ids3["reason"].replace(";", " ").split(), ids3
    # The ban shows in the audit's evidence, with the nftables set that carries it out.
    ids2 = control(audit, "host2", "IDS-002")
    assert ids2["status"] == "pass", ids2
    assert f"banned now: {attacker}" in ids2["evidence"], ids2
    assert attacker in ids2["data"]["nft_banned"], ids2
    assert "not enabled at boot" in control(audit, "host3", "IDS-001")["evidence"]

    fixed = run_playbook(lab, PLAYBOOK, check=False)
    for host in lab.hosts:
        assert set(controls(fixed, host).values()) == {"pass"}, (host, fixed)
    assert management not in _banned(lab, "host2")
    reset_hosts(lab)
