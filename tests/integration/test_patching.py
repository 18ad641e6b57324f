"""Patching on the lab: mutations per control, emergency override, a canary halting the rollout."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from opsrunner.lab.core import Lab
from tests.lab_helpers import control, controls, reset_hosts, run_playbook, snapshots

PLAYBOOK = "playbooks/patching.yml"
PAT = [f"PAT-00{i}" for i in range(1, 8)]
HOSTS = ("host1", "host2", "host3")

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def open_window(groups: list[str], name: str = "test-open") -> dict[str, Any]:
    """A window open now (hourly, 2 h long), notices on record for this start and the next."""
    top = _utcnow().replace(minute=0, second=0, microsecond=0)
    return {
        "windows": [
            {
                "name": name,
                "groups": groups,
                "timezone": "UTC",
                "start": "0 * * * *",
                "duration_minutes": 120,
                "notice_hours": 1,
            }
        ],
        "notices": [
            {
                "window": name,
                "window_start": (top + dt.timedelta(hours=k)).isoformat(),
                "sent_at": (top - dt.timedelta(hours=3)).isoformat(),
                "ticket": "CHG-TEST-1",
            }
            for k in (0, 1)
        ],
    }


def daily_window(
    name: str, groups: list[str], in_hours: float, notice_hours: float
) -> dict[str, Any]:
    """A daily window starting ``in_hours`` from now (no notice recorded)."""
    start = _utcnow() + dt.timedelta(hours=in_hours)
    return {
        "name": name,
        "groups": groups,
        "timezone": "UTC",
        "start": f"{start.minute} {start.hour} * * *",
        "duration_minutes": 60,
        "notice_hours": notice_hours,
    }


def windows_vars(windows: list[dict[str, Any]], notices: list[dict[str, Any]]) -> dict[str, Any]:
    return {"opsrunner_windows": windows, "opsrunner_notices": notices}


def install_demo_1_0(lab: Lab, *hosts: str) -> None:
    """Put hosts on 1.0 of the dummy packages (1.1: base in bookworm, web in bookworm-security)."""
    for host in hosts:
        lab.ssh(
            host,
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
            "--allow-downgrades opsdemo-base=1.0 opsdemo-web=1.0 >/dev/null",
            check=True,
            timeout=300,
        )


def version(lab: Lab, host: str, package: str) -> str:
    return lab.ssh(host, f"dpkg-query -W -f='${{Version}}' {package}", check=True).stdout.strip()


def failing(results: dict[str, Any], host: str) -> set[str]:
    return {
        cid for cid, status in controls(results, host).items() if status != "pass" and cid in PAT
    }


def rollout_record(state_dir: Path, run_id: str) -> dict[str, Any]:
    path = state_dir / "patching" / f"rollout-{run_id}.json"
    assert path.is_file(), f"no rollout record at {path}"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_patching_mutations_fail_exactly_their_control(lab: Lab, tmp_path: Path) -> None:
    """Emergency enforce makes hosts compliant; each mutation fails exactly its control in audit."""
    reset_hosts(lab)
    install_demo_1_0(lab, *HOSTS)
    env = {"OPSRUNNER_STATE_DIR": str(tmp_path)}
    try:
        # No window at all: only the emergency override lets it patch, and it is recorded.
        enforce = run_playbook(
            lab,
            PLAYBOOK,
            check=False,
            env=env,
            extra_vars={
                **windows_vars([], []),
                "patching_emergency": True,
                "patching_emergency_reason": "INC-TEST-7 exploited web flaw",
                "patching_run_id": "emerg",
            },
        )
        assert enforce.rc == 0, enforce
        record = rollout_record(tmp_path, "emerg")
        assert (
            record["emergency"] is True
            and record["emergency_reason"] == "INC-TEST-7 exploited web flaw"
        )
        for host in HOSTS:
            assert record["hosts"][host]["state"] == "patched", record["hosts"][host]
            assert "EMERGENCY override (INC-TEST-7" in record["hosts"][host]["reason"]
            assert version(lab, host, "opsdemo-web") == "1.1"
            assert version(lab, host, "opsdemo-base") == "1.1"
            assert control(enforce, host, "PAT-006")["data"]["emergency"] is True
            last_patch = json.loads(
                lab.ssh(host, "cat /var/lib/opsrunner/patching/last-patch.json", check=True).stdout
            )
            assert last_patch["emergency"] is True and last_patch["state"] == "patched"

        # The audit below sees windows: critical and web far ahead (notice not yet due),
        # backup_target (host3) opening within its notice period with no notice on record.
        audit_windows = windows_vars(
            [
                daily_window("far", ["critical", "web"], in_hours=6, notice_hours=1),
                daily_window("soon", ["backup_target"], in_hours=2, notice_hours=24),
            ],
            [],
        )
        baseline = run_playbook(lab, PLAYBOOK, check=True, extra_vars=audit_windows)
        for host in HOSTS:
            assert failing(baseline, host) == ({"PAT-006"} if host == "host3" else set()), baseline

        # PAT-006 is already broken on host3 by the window above; now the host mutations.
        lab.ssh(
            "host1",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades "
            "opsdemo-web=1.0 >/dev/null && touch /run/reboot-required && "
            "echo opsdemo-kernel > /run/reboot-required.pkgs",
            check=True,
        )  # PAT-001, PAT-004
        lab.ssh(
            "host2",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades "
            "opsdemo-base=1.0 >/dev/null && apt-mark hold opsdemo-web >/dev/null && "
            "systemctl stop cron",
            check=True,
        )  # PAT-002, PAT-003, PAT-007
        lab.ssh("host3", "rm /var/lib/opsrunner/patching/last-success.json", check=True)  # PAT-005
        before = snapshots(lab)
        audit = run_playbook(
            lab,
            PLAYBOOK,
            check=True,
            extra_vars={
                **audit_windows,
                "patching_security_deadline_days": 0,
                "patching_other_deadline_days": 0,
            },
        )
        assert snapshots(lab) == before, "the audit changed a host"
        assert audit.rc == 0, audit
        assert failing(audit, "host1") == {"PAT-001", "PAT-004"}, audit
        assert failing(audit, "host2") == {"PAT-002", "PAT-003", "PAT-007"}, audit
        assert failing(audit, "host3") == {"PAT-005", "PAT-006"}, audit
        assert "opsdemo-web" in control(audit, "host1", "PAT-001")["reason"]
        assert control(audit, "host1", "PAT-001")["data"]["overdue"] == ["opsdemo-web"]
        assert "opsdemo-kernel" in control(audit, "host1", "PAT-004")["evidence"]
        assert "opsdemo-base" in control(audit, "host2", "PAT-002")["reason"]
        assert "opsdemo-web" in control(audit, "host2", "PAT-003")["reason"]
        assert "cron is inactive" in control(audit, "host2", "PAT-007")["reason"]
        assert "no successful patch run on record" in control(audit, "host3", "PAT-005")["reason"]
        assert "soon" in control(audit, "host3", "PAT-006")["reason"]
        assert "overdue" in control(audit, "host3", "PAT-006")["reason"]

        # Age against the tier's deadline: the same pending updates are within the
        # policy's deadlines (7 d critical, 60 d standard), so they pass while still listed.
        in_deadline = run_playbook(
            lab, PLAYBOOK, check=True, extra_vars=audit_windows, tags=["pat-001", "pat-002"]
        )
        assert controls(in_deadline, "host1")["PAT-001"] == "pass", in_deadline
        assert "opsdemo-web 1.0->1.1" in control(in_deadline, "host1", "PAT-001")["evidence"]
        assert controls(in_deadline, "host2")["PAT-002"] == "pass", in_deadline
        assert snapshots(lab) == before, "the audit changed a host"
    finally:
        reset_hosts(lab)


@pytest.mark.faults(14, 15)
def test_patching_rollout_halts_after_failed_canary(
    lab: Lab, tmp_path: Path, fault_record: Any
) -> None:
    """The canary (web) breaks after its upgrade: the rollout halts, every host's state recorded."""
    reset_hosts(lab)
    install_demo_1_0(lab, *HOSTS)
    env = {"OPSRUNNER_STATE_DIR": str(tmp_path)}
    try:
        # host3 cannot be reached (SSH dropped in its own netns, established sessions too).
        lab.ssh(
            "host3",
            "nft add table inet patx && nft add chain inet patx in "
            "'{ type filter hook input priority -10; policy accept; }' && "
            "nft add rule inet patx in tcp dport 22 drop",
            timeout=10,
        )
        window = open_window(["critical", "standard"])
        # The web application's own check: it only works with opsdemo-web 1.0, so the
        # security update breaks it, which the canary batch must reveal.
        halted = run_playbook(
            lab,
            PLAYBOOK,
            check=False,
            env=env,
            extra_vars={
                **windows_vars(window["windows"], window["notices"]),
                "patching_run_id": "halt",
                "patching_health_checks": [
                    {
                        "name": "web-app-works",
                        "command": "grep -qx 1.0 /usr/share/opsdemo/opsdemo-web/VERSION",
                    }
                ],
            },
        )
        record = rollout_record(tmp_path, "halt")
        states = {h: record["hosts"][h]["state"] for h in HOSTS}
        assert states == {"host2": "failed", "host1": "not-patched", "host3": "unreachable"}, record
        assert record["halted"] is True
        assert record["hosts"]["host2"]["batch"] == ["host2"], (
            "the canary batch is the web host alone"
        )
        assert "web-app-works failed" in record["hosts"]["host2"]["reason"]
        assert "rollout halted" in record["hosts"]["host1"]["reason"]
        assert "host2" in record["hosts"]["host1"]["reason"]
        assert version(lab, "host2", "opsdemo-web") == "1.1"  # the canary was patched
        assert version(lab, "host1", "opsdemo-web") == "1.0"  # the halt kept host1 untouched
        assert controls(halted, "host2")["PAT-007"] == "fail"
        # host1 degraded to audit: its controls report in audit mode with the reason.
        pat001 = control(halted, "host1", "PAT-001")
        assert pat001["mode"] == "audit" and pat001["data"]["rollout"]["state"] == "not-patched"
        assert (
            not halted["hosts"]["host3"]["reachable"]
            or "PAT-001" not in halted["hosts"]["host3"]["controls"]
        )
        fault_record(
            row=14,
            injected=2,
            survived=2,
            figure="canary health check fails after upgrade, host3 unreachable: later batch "
            "not started (host1 1.0, not-patched), per-host state stored for 3 of 3 hosts",
        )

        # Second rollout: host3 back, only the critical tier has a window; host1 needs a
        # reboot after its upgrade and patching_disruptive allows it.
        reset_hosts(lab, "host3")
        install_demo_1_0(lab, "host3")
        marker = lab.boot_marker("host1")
        window = open_window(["critical"], name="crit-open")
        second = run_playbook(
            lab,
            PLAYBOOK,
            check=False,
            env=env,
            extra_vars={
                **windows_vars(window["windows"], window["notices"]),
                "patching_run_id": "reboot",
                "patching_disruptive": True,
                "patching_reboot_packages": ["opsdemo-web"],
                "patching_reboot_timeout": 120,
            },
        )
        assert second.rc == 0, second
        record = rollout_record(tmp_path, "reboot")
        states = {h: record["hosts"][h]["state"] for h in HOSTS}
        assert states == {"host1": "patched", "host2": "deferred", "host3": "deferred"}, record
        assert record["halted"] is False
        assert (
            "outside every maintenance window" in record["hosts"]["host3"]["reason"]
            or "no maintenance window" in record["hosts"]["host3"]["reason"]
        )
        assert record["hosts"]["host1"]["rebooted"] is True
        assert lab.boot_marker("host1") != marker, "the lab's own marker confirms the reboot"
        pat004 = control(second, "host1", "PAT-004")
        assert pat004["status"] == "pass" and pat004["data"]["rebooted"] is True
        assert version(lab, "host1", "opsdemo-web") == "1.1"
        assert version(lab, "host3", "opsdemo-web") == "1.0"  # deferred: untouched

        # Third rollout: the canary must reboot but does not come back in time: reboot-failed,
        # and the rollout halts before the other hosts.
        lab.ssh("host2", "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades "
                "opsdemo-web=1.0 >/dev/null", check=True)  # fmt: skip
        window = open_window(["critical", "standard"], name="all-open")
        third = run_playbook(
            lab,
            PLAYBOOK,
            check=False,
            env=env,
            extra_vars={
                **windows_vars(window["windows"], window["notices"]),
                "patching_run_id": "rebootfail",
                "patching_disruptive": True,
                "patching_reboot_packages": ["opsdemo-web"],
                "patching_reboot_timeout": 1,
            },
        )
        record = rollout_record(tmp_path, "rebootfail")
        states = {h: record["hosts"][h]["state"] for h in HOSTS}
        assert states == {
            "host2": "reboot-failed",
            "host1": "not-patched",
            "host3": "not-patched",
        }, (
            record,
            third,
        )
        assert record["halted"] is True
        assert "reboot failed" in record["hosts"]["host2"]["reason"]
        assert controls(third, "host2")["PAT-004"] == "fail"
        assert version(lab, "host3", "opsdemo-web") == "1.0"
        fault_record(
            row=15,
            injected=1,
            survived=1,
            figure="canary reboot never returns (timeout 1 s): host2 reboot-failed, "
            "host1/host3 not-patched, rollout halted",
        )
    finally:
        reset_hosts(lab)
