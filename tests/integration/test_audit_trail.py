"""audit_trail on lab hosts: kernel audit is not served to containers, so AUD-001/002 are errors."""

from __future__ import annotations

import pytest

from opsrunner.lab.core import Lab
from tests.lab_helpers import control, controls, reset_hosts, run_playbook, snapshots

PLAYBOOK = "playbooks/audit_trail.yml"
AUD = ("AUD-001", "AUD-002", "AUD-003", "AUD-004")
KERNEL_CONTROLS = ("AUD-001", "AUD-002")  # need the kernel's audit: error here, never pass
UNAVAILABLE = "kernel audit unavailable in this host"

# One mutation per host, each on a control that a container can prove.
MUTATIONS: dict[str, tuple[str, str, str]] = {
    # An identity file readable by everybody.
    "host1": ("AUD-003", "chmod 0644 /etc/shadow",
              "/etc/shadow is root:shadow 0644, want root:shadow 0640"),
    # auditd told to delete its oldest logs again.
    "host2": ("AUD-004",
              "sed -i 's/^max_log_file_action = keep_logs/max_log_file_action = ROTATE/'"
              " /etc/audit/auditd.conf",
              "does not set max_log_file_action = keep_logs"),
    # Sensitive data (policy: /srv/data root:root 0750) opened to everybody.
    "host3": ("AUD-003", "chmod 0777 /srv/data",
              "/srv/data is root:root 0777, want root:root 0750"),
}


def _assert_kernel_errors(results: dict[str, object], host: str) -> None:
    for cid in KERNEL_CONTROLS:
        record = control(results, host, cid)
        assert record["status"] == "error", f"{host} {cid}: {record}"
        assert UNAVAILABLE in record["reason"], f"{host} {cid}: {record}"


@pytest.mark.lab
@pytest.mark.slow
def test_audit_trail_enforce_idempotent_mutations_and_kernel_error(lab: Lab) -> None:
    reset_hosts(lab)
    try:
        # Sensitive data that exists on host3 only, too open before the first enforce.
        lab.ssh("host3", "install -d -m 0755 /srv/data", check=True)
        first = run_playbook(lab, PLAYBOOK, check=False)
        second = run_playbook(lab, PLAYBOOK, check=False)
        for host in lab.hosts:
            for results in (first, second):
                assert controls(results, host) == {"AUD-001": "error", "AUD-002": "error",
                                                   "AUD-003": "pass", "AUD-004": "pass"}, results
                _assert_kernel_errors(results, host)
            assert second["stats"][host]["changed"] == 0, f"second enforce changed {host}\n{second}"
            rules = lab.ssh(host, "cat /etc/audit/rules.d/50-opsrunner.rules", check=True).stdout
            for path in ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow",
                         "/etc/sudoers", "/etc/sudoers.d"):
                assert f"-w {path} -p wa -k opsrunner-identity" in rules, f"{host}: {rules}"
            retention = lab.ssh(host, "cat /etc/cron.d/opsrunner-audit-retention",
                                check=True).stdout
            days = 365 if host == "host1" else 180  # policy: critical 365, standard 180
            assert f"-mtime +{days} -delete" in retention
        assert "-w /srv/data -p wa -k opsrunner-sensitive" in lab.ssh(
            "host3", "cat /etc/audit/rules.d/50-opsrunner.rules").stdout
        assert lab.ssh("host3", "stat -c %a /srv/data").stdout.strip() == "750"
        assert control(first, "host3", "AUD-003")["remediated"] is True
        assert "/srv/data is root:root 0755, want root:root 0750" in \
            control(first, "host3", "AUD-003")["evidence"]

        for host, (_cid, cmd, _text) in MUTATIONS.items():
            lab.ssh(host, cmd, check=True)
        before = snapshots(lab)
        audit = run_playbook(lab, PLAYBOOK, check=True)
        assert snapshots(lab) == before, "the audit changed a host"
        for host, (cid, _cmd, text) in MUTATIONS.items():
            want = dict.fromkeys(AUD, "pass") | dict.fromkeys(KERNEL_CONTROLS, "error")
            want[cid] = "fail"
            assert controls(audit, host) == want, f"{host}\n{audit}"
            _assert_kernel_errors(audit, host)
            record = control(audit, host, cid)
            assert text in record["evidence"], f"{host} {cid}: {record}"
    finally:
        reset_hosts(lab)
