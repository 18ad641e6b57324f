"""log_review on lab hosts: enforce, idempotence, a mutation per control, the operate restart."""

from __future__ import annotations

import subprocess

import pytest

from opsrunner.lab.core import Lab, ssh_key
from tests.lab_helpers import control, controls, reset_hosts, run_playbook, snapshots

PLAYBOOK = "playbooks/log_review.yml"
OPERATE = "playbooks/operate_log_review.yml"
LOG = ("LOG-001", "LOG-002", "LOG-003", "LOG-004", "LOG-005")

# cron is on the policy's restart allowlist (policy/parameters/log_review.yml); a
# runtime drop-in makes its start fail (and not retry), then goes away, so cron stays
# failed until somebody restarts it, as after a transient fault.
_DROPIN = "/run/systemd/system/cron.service.d"
BREAK_CRON = (
    f"mkdir -p {_DROPIN}"
    f" && printf '[Service]\\nExecStartPre=/bin/false\\nRestart=no\\n' > {_DROPIN}/break.conf"
    " && systemctl daemon-reload && (systemctl restart cron || true)"
    f" && rm -r {_DROPIN} && systemctl daemon-reload"
    " && systemctl is-failed --quiet cron"
)

# Two mutations per host at most, on different controls: one audit shows that each
# break is seen by exactly its own control.
MUTATIONS: dict[str, list[tuple[str, str]]] = {
    "host1": [
        # LOG-001: journald persistence switched off in the role's own drop-in.
        ("LOG-001", "sed -i 's/^Storage=.*/Storage=volatile/'"
                    " /etc/systemd/journald.conf.d/zz-opsrunner.conf"),
        # LOG-004: a unit that is not on the restart allowlist fails.
        ("LOG-004", "systemd-run --quiet --unit=opsr-broken /bin/false;"
                    " for i in $(seq 50); do systemctl is-failed --quiet opsr-broken && break;"
                    " sleep 0.1; done; systemctl is-failed --quiet opsr-broken"),
    ],
    "host2": [
        # LOG-002: done from the controller below (real failed SSH logins).
        # LOG-005: the container has no kernel log of its own, so an OOM kill is written
        # the way a syslog relay of the kernel log carries it (identifier "kernel").
        ("LOG-005", "logger -t kernel -p kern.err"
                    " 'Out of memory: Killed process 4242 (reportd) total-vm:812345kB'"),
    ],
    "host3": [
        # LOG-003: a user outside sudoers tries sudo three times (standard threshold 3).
        ("LOG-003", "cd / && for i in 1 2 3; do echo wrong | runuser -u nobody -- sudo -S true"
                    " >/dev/null 2>&1; done; true"),
    ],
}
FAILED_SSH = 12  # standard-tier threshold is 10 per source


def _failed_ssh_logins(lab: Lab, host: str, count: int) -> None:
    """Real failed logins: an unknown user offered the lab key, from the controller."""
    address = lab.host(host).address
    for _ in range(count):
        proc = subprocess.run(
            ["ssh", "-i", str(ssh_key()), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "ControlMaster=no",
             "-o", "ControlPath=none",
             "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"intruder@{address}", "true"],
            capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL)
        assert proc.returncode == 255 and "Permission denied" in proc.stderr, proc.stderr


def _runtime(lab: Lab) -> dict[str, str]:
    """What a snapshot of the disk does not show: failed units and the journald settings in use."""
    return {h: lab.ssh(h, "systemctl list-units --failed --no-legend --plain; "
                          "systemctl is-active cron; cat /etc/systemd/journald.conf.d/*",
                       check=False).stdout for h in lab.hosts}


@pytest.mark.lab
@pytest.mark.slow
def test_log_review_enforce_idempotent_mutations_and_operate(lab: Lab) -> None:
    reset_hosts(lab)
    try:
        first = run_playbook(lab, PLAYBOOK, check=False)
        for host in lab.hosts:
            assert controls(first, host) == dict.fromkeys(LOG, "pass"), first
        second = run_playbook(lab, PLAYBOOK, check=False)
        for host in lab.hosts:
            assert second["stats"][host]["changed"] == 0, f"second enforce changed {host}\n{second}"
            assert controls(second, host) == dict.fromkeys(LOG, "pass"), second
            assert lab.ssh(host, "test -d /var/log/journal && grep -q '^Storage=persistent'"
                                 " /etc/systemd/journald.conf.d/zz-opsrunner.conf").returncode == 0

        for host, steps in MUTATIONS.items():
            for _cid, cmd in steps:
                lab.ssh(host, cmd, check=True)
        _failed_ssh_logins(lab, "host2", FAILED_SSH)
        broken = {"host1": {"LOG-001", "LOG-004"}, "host2": {"LOG-002", "LOG-005"},
                  "host3": {"LOG-003"}}
        before, runtime_before = snapshots(lab), _runtime(lab)
        audit = run_playbook(lab, PLAYBOOK, check=True)
        assert snapshots(lab) == before, "the audit changed a host"
        assert _runtime(lab) == runtime_before, "the audit changed a running host"
        for host in lab.hosts:
            want = {cid: ("fail" if cid in broken[host] else "pass") for cid in LOG}
            assert controls(audit, host) == want, f"{host}\n{audit}"

        controller = lab.host("host2").address.rsplit(".", 1)[0] + ".1"
        evidence = {
            ("host1", "LOG-001"): "Storage=volatile (want persistent)",
            ("host1", "LOG-004"): "failed units opsr-broken.service: 1 (threshold 1, high)",
            ("host2", "LOG-002"): f"failed SSH logins from {controller}: {FAILED_SSH}"
                                  " (threshold 10, high)",
            ("host2", "LOG-005"): "OOM kill messages: 1 (threshold 1, high): Out of memory:"
                                  " Killed process 4242 (reportd)",
            ("host3", "LOG-003"): "failed sudo attempts by nobody: 3 (threshold 3, medium)",
        }
        for (host, cid), text in evidence.items():
            record = control(audit, host, cid)
            assert text in record["evidence"], f"{host} {cid}: {record}"
        findings = control(audit, "host2", "LOG-002")["data"]["findings"]
        assert findings == [{"kind": "ssh_failed", "subject": controller, "count": FAILED_SSH,
                             "threshold": 10, "severity": "high",
                             "text": f"failed SSH logins from {controller}: {FAILED_SSH}"
                                     " (threshold 10, high)"}]

        # Operate mode: an allowlisted failed unit (cron on host3) is restarted at once,
        # a unit off the allowlist (host1) stays failed and is reported for analysis.
        lab.ssh("host3", BREAK_CRON, check=True)
        dry = run_playbook(lab, OPERATE, check=True, limit=["host1", "host3"])
        assert controls(dry, "host3") == {"LOG-004": "fail"}, dry
        assert "allowlisted for restart by the operate job: cron.service" in \
            control(dry, "host3", "LOG-004")["evidence"]
        assert lab.ssh("host3", "systemctl is-failed --quiet cron").returncode == 0, \
            "operate with --check restarted cron"
        operate = run_playbook(lab, OPERATE, check=False, limit=["host1", "host3"])
        assert controls(operate, "host3") == {"LOG-004": "pass"}, operate
        host3 = control(operate, "host3", "LOG-004")
        assert host3["data"]["restarted"] == ["cron.service"], host3
        assert "restarted at once (allowlisted): cron.service" in host3["evidence"]
        assert lab.ssh("host3", "systemctl is-active cron").stdout.strip() == "active"
        assert controls(operate, "host1") == {"LOG-004": "fail"}, operate
        host1 = control(operate, "host1", "LOG-004")
        assert host1["data"]["restarted"] == []
        assert host1["data"]["failed"] == ["opsr-broken.service"]
        assert lab.ssh("host1", "systemctl is-failed --quiet opsr-broken").returncode == 0
    finally:
        reset_hosts(lab)
