"""secure_transport on the lab: enforce, break controls on several hosts, audit once, enforce."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from opsrunner.lab.core import Lab
from tests.lab_helpers import ROOT, control, controls, reset_hosts, run_playbook, snapshots

PLAYBOOK = "playbooks/secure_transport.yml"
SSH_IDS = ("SSH-001", "SSH-002", "SSH-003", "SSH-004", "SSH-005")


def _tls_server(lab: Lab, host: str, *, days: int, protocol: str, cipher: str = "DEFAULT") -> None:
    """(Re)start openssl s_server on 443 with a new self-signed certificate valid `days` days."""
    lab.ssh(
        host,
        "systemctl stop tls-test 2>/dev/null; systemctl reset-failed tls-test 2>/dev/null; "
        f"openssl req -x509 -newkey rsa:2048 -nodes -days {days} -subj /CN={host} "
        "-keyout /root/tls-test.key -out /root/tls-test.crt 2>/dev/null && "
        "systemd-run --unit=tls-test openssl s_server -accept 443 -cert /root/tls-test.crt "
        f"-key /root/tls-test.key {protocol} -cipher '{cipher}' -www -quiet && sleep 1",
        check=True,
    )


def _failing(results: dict[str, object], host: str) -> set[str]:
    return {cid for cid, status in controls(results, host).items() if status == "fail"}


@pytest.mark.lab
@pytest.mark.slow
def test_secure_transport_mutations(lab: Lab) -> None:
    reset_hosts(lab)
    _tls_server(lab, "host2", days=365, protocol="-no_tls1 -no_tls1_1")

    enforced = run_playbook(lab, PLAYBOOK, check=False)
    assert enforced.rc == 0, enforced
    for host in lab.hosts:
        statuses = controls(enforced, host)
        assert all(statuses[c] == "pass" for c in SSH_IDS), (host, statuses)
    assert controls(enforced, "host2")["TLS-001"] == "pass", enforced
    assert controls(enforced, "host2")["TLS-002"] == "pass", enforced

    # Break them, several controls on different hosts.
    # host1: a drop-in read before the role's turns passwords and a CBC cipher back on.
    lab.ssh(
        "host1",
        "printf 'PasswordAuthentication yes\\nCiphers aes128-cbc,aes256-ctr\\n' "
        "> /etc/ssh/sshd_config.d/00-aaa.conf",
        check=True,
    )
    # host3: root with a password, more tries, and a group nobody authorised.
    lab.ssh(
        "host3",
        "sed -i -e 's/^PermitRootLogin .*/PermitRootLogin yes/' "
        "-e 's/^MaxAuthTries .*/MaxAuthTries 10/' -e 's/^AllowGroups .*/& intruders/' "
        "/etc/ssh/sshd_config.d/00-opsrunner.conf",
        check=True,
    )
    # host2: the endpoint speaks only TLS 1.1, with a certificate ending in 5 days.
    _tls_server(lab, "host2", days=5, protocol="-tls1_1", cipher="ALL:@SECLEVEL=0")

    before = snapshots(lab)
    audit = run_playbook(lab, PLAYBOOK, check=True)
    assert snapshots(lab) == before, "the audit changed a host"

    assert _failing(audit, "host1") == {"SSH-001", "SSH-003"}, audit
    assert _failing(audit, "host2") == {"TLS-001", "TLS-002"}, audit
    assert _failing(audit, "host3") == {"SSH-002", "SSH-004", "SSH-005"}, audit
    assert "PasswordAuthentication is yes" in control(audit, "host1", "SSH-001")["evidence"]
    assert "aes128-cbc" in control(audit, "host1", "SSH-003")["evidence"]
    assert "PermitRootLogin is yes" in control(audit, "host3", "SSH-002")["evidence"]
    assert "MaxAuthTries is 10" in control(audit, "host3", "SSH-004")["evidence"]
    assert "extra: intruders" in control(audit, "host3", "SSH-005")["evidence"]
    tls1 = control(audit, "host2", "TLS-001")
    assert "accepts TLSv1.1 (older than TLSv1.2)" in tls1["evidence"], tls1
    tls2 = control(audit, "host2", "TLS-002")
    assert "expires within 14 days" in tls2["evidence"], tls2

    # Enforce repairs every SSH control (the overriding drop-in is commented out).
    fixed = run_playbook(lab, PLAYBOOK, check=False, limit=["host1", "host3"])
    for host in ("host1", "host3"):
        statuses = controls(fixed, host)
        assert all(statuses[c] == "pass" for c in SSH_IDS), (host, statuses)
    assert (
        "# opsrunner SSH-001: PasswordAuthentication yes"
        in lab.ssh("host1", "cat /etc/ssh/sshd_config.d/00-aaa.conf").stdout
    )
    assert lab.ssh("host3", "true", connect_timeout=5).returncode == 0
    reset_hosts(lab)


@pytest.mark.lab
@pytest.mark.slow
def test_ssh_lockout_guard(lab: Lab) -> None:
    """A policy that would shut the management connection out is refused: error, sshd untouched."""
    reset_hosts(lab, "host3")
    before = lab.ssh("host3", "sshd -T | grep -i '^allowgroups' || true").stdout
    res = run_playbook(
        lab,
        PLAYBOOK,
        check=False,
        limit="host3",
        tags="ssh-005",
        extra_vars={
            "secure_transport_ssh_management_groups": ["nobody-here"],
            "secure_transport_roster": {},
        },
    )
    ssh5 = control(res, "host3", "SSH-005")
    assert ssh5["status"] == "error", ssh5
    assert "lock the run out" in ssh5["reason"], ssh5
    assert lab.ssh("host3", "sshd -T | grep -i '^allowgroups' || true").stdout == before
    assert lab.ssh("host3", "true").returncode == 0


@pytest.mark.lab
@pytest.mark.slow
def test_encryption_at_rest_truthful(lab: Lab, tmp_path: Path) -> None:
    """ENC-001: a lab host cannot show its storage (error, never pass); this VM's disk: fail."""
    lab.ssh("host1", "mkdir -p /var/lib/postgresql", check=True)
    res = run_playbook(lab, PLAYBOOK, check=True, limit="host1", tags="enc-001")
    enc = control(res, "host1", "ENC-001")
    assert enc["status"] == "error", enc
    assert "cannot be shown" in enc["reason"], enc

    # The controller itself, audited over a local connection: its root disk has no dm-crypt layer.
    inventory = tmp_path / "local.yml"
    inventory.write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: /usr/bin/python3\n"
    )
    results = tmp_path / "results.json"
    proc = subprocess.run(
        [
            str(ROOT / ".venv/bin/ansible-playbook"),
            "-i",
            str(inventory),
            PLAYBOOK,
            "--check",
            "--tags",
            "enc-001",
            "-e",
            '{"secure_transport_sensitive_paths": ["/etc"]}',
        ],
        cwd=ROOT,
        env={**os.environ, "OPSRUNNER_RESULTS_FILE": str(results)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    local = json.loads(results.read_text())["hosts"]["localhost"]["controls"]["ENC-001"]
    assert local["status"] == "fail", (local, proc.stdout[-2000:])
    assert "/etc not on encrypted storage" in local["reason"]
    lab.reset("host1")
