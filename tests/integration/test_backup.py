"""Backup role on lab hosts: enforce, full vs incremental, restore drill, mutations."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from opsrunner.lab.core import Lab
from tests.lab_helpers import Results, control, controls, reset_hosts, run_playbook, snapshots

PLAYBOOK = "playbooks/backup.yml"
BAK = tuple(f"BAK-00{i}" for i in range(1, 8))
CLIENTS = ("host1", "host2")
LOCAL = (
    "restic -r /var/backups/opsrunner/restic"
    " --password-file /etc/opsrunner/backup/repository.pass --no-cache"
)
OFFSITE = (
    "restic -r sftp:opsrunner-backup-target:/srv/opsrunner-backup/{host}/restic"
    " -o 'sftp.command=ssh -F /etc/opsrunner/backup/ssh_config opsrunner-backup-target -s sftp'"
    " --password-file /etc/opsrunner/backup/repository.pass --no-cache"
)
IDS = "python3 -c 'import json,sys; print(\" \".join(s[\"id\"] for s in json.load(sys.stdin)))'"
NEWEST = (
    "python3 -c 'import json,sys;"
    " print(sorted(json.load(sys.stdin), key=lambda s: s[\"time\"])[-1][\"id\"])'"
)


def _sh(lab: Lab, host: str, cmd: str) -> str:
    proc = lab.ssh(host, cmd, timeout=120)
    assert proc.returncode == 0, f"{host}: {cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _run(lab: Lab, playbook: str, password_file: str, *, check: bool = False,
         extra: dict[str, Any] | None = None) -> Results:
    # The secret comes from a root-only file on the controller, never from the environment.
    res = run_playbook(lab, playbook, check=check,
                       env={"OPSRUNNER_BACKUP_PASSWORD_FILE": password_file},
                       extra_vars=extra)
    assert res.rc == 0, res
    return res


def _failing(res: Results, host: str) -> dict[str, str]:
    return {cid: st for cid, st in controls(res, host).items() if st != "pass"}


def _assert_no_secret(password: str, *runs: Results) -> None:
    for res in runs:
        blob = res.stdout + res.stderr + json.dumps(dict(res))
        assert password not in blob, f"the repository password leaked into {res.cmd}"


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.faults(16)
@pytest.mark.timeout(1800)  # a dozen playbook runs; on a shared, loaded VM they can take long
def test_backup_role_operate_drill_and_mutations(
    lab: Lab, tmp_path: Path, fault_record: Any
) -> None:
    secret = "bak-" + secrets.token_urlsafe(18)
    password = str(tmp_path / "restic-password")
    Path(password).write_text(secret)
    Path(password).chmod(0o600)
    reset_hosts(lab, "host1", "host2", "host3")
    runs: list[Results] = []
    try:
        # Data of the sets the policy gives host1 (db) and host2 (web).
        _sh(lab, "host1", "mkdir -p /srv/db && python3 -c \"import sqlite3;"
                          " c = sqlite3.connect('/srv/db/app.sqlite');"
                          " c.execute('create table t(x)');"
                          " c.execute('insert into t values (42)'); c.commit()\"")
        _sh(lab, "host2", "mkdir -p /srv/www && echo '<h1>opsrunner</h1>' > /srv/www/index.html")

        # Enforce: repositories, password file, SSH route (idempotence: molecule/backup).
        runs.append(_run(lab, PLAYBOOK, password))
        for h in CLIENTS:
            got = controls(runs[-1], h)
            assert got["BAK-001"] == "pass" and got["BAK-002"] == "pass", runs[-1]
        assert set(controls(runs[-1], "host3").values()) == {"notapplicable"}, runs[-1]

        # Full vs incremental: the first scheduled run is full (no full yet), the next
        # incremental (parent used, unchanged files skipped), and a forced full re-reads
        # every file although nothing changed.
        kinds = []
        schedule: list[dict[str, Any]] = [{}, {}, {"backup_kind": "full"}]
        for extra in schedule:
            runs.append(_run(lab, "playbooks/operate_backup.yml", password, extra=extra))
            sets = control(runs[-1], "host1", "BAK-003")["data"]["sets"]
            assert control(runs[-1], "host1", "BAK-003")["status"] == "pass", runs[-1]
            kinds.append((sets["db"]["kind"], sets["db"]["summary"]))
        (k1, s1), (k2, s2), (k3, s3) = kinds
        assert (k1, k2, k3) == ("full", "incremental", "full")
        assert s1["files_unmodified"] == 0 and s1["files_new"] > 100
        assert s2["files_unmodified"] > 100 and s2["files_new"] == 0
        assert s3["files_unmodified"] == 0 and s3["files_new"] == s2["total_files_processed"]

        # Restore drill: RTO and RPO recorded as evidence.
        runs.append(_run(lab, "playbooks/operate_restore_test.yml", password))
        for h in CLIENTS:
            drill = control(runs[-1], h, "BAK-007")
            assert drill["status"] == "pass", runs[-1]
            assert drill["data"]["rto_seconds"] > 0 and drill["data"]["rpo_seconds"] >= 0
            assert all(s["files_verified"] > 0 for s in drill["data"]["sets"].values())
            assert "RTO" in drill["evidence"] and "RPO" in drill["evidence"]

        # Compliant audit, which changes nothing.
        before = snapshots(lab)
        runs.append(_run(lab, PLAYBOOK, "", check=True))
        assert snapshots(lab) == before
        for h in CLIENTS:
            assert controls(runs[-1], h) == dict.fromkeys(BAK, "pass"), runs[-1]

        # Round 1: two mutations per host, each seen by exactly its control.
        _sh(lab, "host1", "chmod 0644 /etc/opsrunner/backup/repository.pass")  # BAK-001
        # BAK-006: two snapshots of one past day, one of them beyond the daily retention.
        for hour in ("01", "02"):
            _sh(lab, "host1", f"{LOCAL} backup -q --host host1 --tag opsrunner --tag set:db"
                              f" --tag kind:incremental --time '2026-11-20 {hour}:00:00'"
                              " /etc/hostname")
        off2 = OFFSITE.format(host="host2")
        newest = _sh(lab, "host2", f"{off2} snapshots --json --tag opsrunner | {NEWEST}").strip()
        _sh(lab, "host2", f"{off2} forget -q {newest}")  # BAK-004: latest copy gone off-site
        _sh(lab, "host2", "rm /var/lib/opsrunner/backup/restore-test.json")  # BAK-007
        before = snapshots(lab)
        audit = _run(lab, PLAYBOOK, "", check=True)
        assert snapshots(lab) == before
        assert _failing(audit, "host1") == {"BAK-001": "fail", "BAK-006": "fail"}, audit
        assert _failing(audit, "host2") == {"BAK-004": "fail", "BAK-007": "fail"}, audit
        assert "mode 0644" in control(audit, "host1", "BAK-001")["reason"]
        assert "beyond the retention policy" in control(audit, "host1", "BAK-006")["reason"]
        assert "has no off-site copy" in control(audit, "host2", "BAK-004")["reason"]
        assert "no restore test on record" in control(audit, "host2", "BAK-007")["reason"]
        runs.append(audit)

        # Repair: enforce (with retention applied), a backup, a drill.
        runs.append(_run(lab, PLAYBOOK, password, extra={"backup_disruptive": True}))
        runs.append(_run(lab, "playbooks/operate_backup.yml", password))
        runs.append(_run(lab, "playbooks/operate_restore_test.yml", password))
        for h in CLIENTS:
            assert control(runs[-1], h, "BAK-007")["status"] == "pass", runs[-1]

        # Round 2: no full backup left (BAK-003) and an off-site pack deleted (BAK-005) on
        # host1; host2's key removed from the backup target (BAK-002): the off-site
        # controls of host2 cannot be judged then (error, never pass).
        _sh(lab, "host1", f"{LOCAL} snapshots --json --tag kind:full | {IDS}"
                          f" | xargs {LOCAL} forget -q")
        _sh(lab, "host3", "rm \"$(ls -S /srv/opsrunner-backup/host1/restic/data/*/* | head -n1)\"")
        _sh(lab, "host3", "sed -i '/opsrunner-backup@host2$/d'"
                          " /srv/opsrunner-backup/.ssh/authorized_keys")
        before = snapshots(lab)
        audit = _run(lab, PLAYBOOK, "", check=True)
        assert snapshots(lab) == before
        assert _failing(audit, "host1") == {"BAK-003": "fail", "BAK-005": "fail"}, audit
        want = {"BAK-002": "fail", "BAK-004": "error", "BAK-005": "error"}
        assert _failing(audit, "host2") == want, audit
        assert "no full backup" in control(audit, "host1", "BAK-003")["reason"]
        assert "restic check of offsite repository" in control(audit, "host1", "BAK-005")["reason"]
        assert "not reachable" in control(audit, "host2", "BAK-002")["reason"]
        runs.append(audit)

        # Restore-drill mutations: a corrupted pack (host1) and a deleted snapshot (host2).
        runs.append(_run(lab, PLAYBOOK, password))
        _sh(lab, "host1", "p=$(ls -S /var/backups/opsrunner/restic/data/*/* | head -n1);"
                          " s=$(stat -c %s \"$p\"); chmod u+w \"$p\";"
                          " head -c 512 /dev/urandom"
                          " | dd of=\"$p\" bs=1 seek=$((s / 2)) conv=notrunc status=none")
        state = _sh(lab, "host2", "cat /var/lib/opsrunner/backup/sets/web.json")
        recorded = json.loads(state)["snapshot_id"]
        _sh(lab, "host2", f"{LOCAL} forget -q {recorded}")
        drill = _run(lab, "playbooks/operate_restore_test.yml", password)
        runs.append(drill)
        h1, h2 = control(drill, "host1", "BAK-007"), control(drill, "host2", "BAK-007")
        assert h1["status"] == "fail" and h2["status"] == "fail", drill
        assert "check --read-data" in h1["reason"] and "failed" in h1["reason"], h1
        assert f"snapshot {recorded[:8]}" in h2["reason"], h2
        assert "missing from the repository" in h2["reason"], h2
        fault_record(
            row=16,
            injected=2,
            survived=2,
            figure="corrupted pack (host1), forgotten snapshot (host2): restore test BAK-007 "
            "fails with its reason on both",
        )

        # The secret never reached any output or recorded result, nor the hosts' journals.
        _assert_no_secret(secret, *runs)
        for h in ("host1", "host2", "host3"):
            assert secret not in lab.ssh(h, "journalctl --no-pager -o cat 2>/dev/null").stdout
        fault_record(
            row=12,
            figure=f"backup password canary: 0 hits in {len(runs)} runs' output and results "
            "and 3 hosts' journals",
        )
    finally:
        reset_hosts(lab, "host1", "host2", "host3")
