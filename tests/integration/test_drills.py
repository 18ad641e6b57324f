"""The three drills of 5.2 on lab hosts: restore, service failure and attack, journal recorded."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from pathlib import Path

import pytest

from opsrunner import config
from opsrunner.emergency import assess, drills
from opsrunner.lab.core import Lab
from opsrunner.policy import load_policy
from opsrunner.runner.run import run
from opsrunner.store import Store
from tests.lab_helpers import reset_hosts

SETUP_CONTROLS = [
    "MON-001",
    "MON-002",
    "IDS-001",
    "IDS-002",
    "IDS-003",
    *(f"BAK-00{i}" for i in range(1, 8)),
]


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.timeout(1800)  # one enforce of three roles, a backup, three drills
def test_restore_service_failure_and_attack_drills(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_hosts(lab, "host1", "host2", "host3")
    password = tmp_path / "restic.pass"
    password.write_text("drill-" + secrets.token_urlsafe(18))
    password.chmod(0o600)
    monkeypatch.setenv("OPSRUNNER_BACKUP_PASSWORD_FILE", str(password))
    state = tmp_path / "state"
    settings = config.load(
        None,
        inventory=str(lab.inventory_path),
        store=f"sqlite:///{state / 'store.db'}",
        state_dir=str(state),
    )
    policy = load_policy()
    lab.ssh(
        "host1",
        'mkdir -p /srv/db && python3 -c "import sqlite3;'
        " c = sqlite3.connect('/srv/db/app.sqlite');"
        " c.execute('create table t(x)'); c.execute('insert into t values (42)'); c.commit()\"",
        check=True,
    )
    try:
        with Store.open(settings.store, state) as store:
            common = {"store": store, "settings": settings}
            enforced = run("enforce", lab.inventory_path, controls=SETUP_CONTROLS, **common)
            assert enforced.status == "successful", enforced
            backup = run("operate", lab.inventory_path, job="backup", limit="host1,host3", **common)
            assert backup.status == "successful", backup

            ctx = drills.context(store, policy, settings, lab.inventory_path)
            started = time.monotonic()
            restore_id, restore = drills.run_drill(ctx, "restore", host="host1")
            failure_id, failure = drills.run_drill(ctx, "service-failure", host="host2")
            attack_id, attack = drills.run_drill(ctx, "attack", host="host2", source="host3")
            took = time.monotonic() - started

            for journal in (restore, failure, attack):
                data = journal.as_dict()
                assert data["status"] == "completed", json.dumps(data, indent=1)[-3000:]
                assert data["steady_state_before"]["ok"] and data["steady_state_after"]["ok"]
                assert data["evaluation"]["plan"] == journal.plan.id, data
                assert data["evaluation"]["action_items"] == []

            # Restore: every file verified against the backup-time checksums, RTO and RPO.
            during = restore.steady_state_during
            assert during["checksums_matched"] is True and during["files_verified"] > 0
            assert 0 < (restore.measurements["rto_seconds"] or 0) <= restore.targets["rto_seconds"]
            assert 0 < (restore.measurements["rpo_seconds"] or 0) <= restore.targets["rpo_seconds"]
            assert restore.plan.id == "PLAN-G1"  # host1 is critical: the grade-1 plan
            # Service failure: the monitoring control failed, then enforce brought it back.
            detect = failure.measurements["detect_seconds"] or 0
            recover = failure.measurements["recover_seconds"] or 0
            assert 0 < detect < recover, failure.measurements
            assert lab.ssh("host2", "systemctl is-active prometheus-node-exporter").returncode == 0
            # Attack: host3 banned on host2, log review named it, and the ban was lifted.
            assert 0 < (attack.measurements["ban_seconds"] or 0) <= 300
            assert (attack.measurements["detect_seconds"] or 0) > 0
            source = lab.hosts["host3"].address
            assert attack.steady_state_during["banned"] == [source]
            banned = lab.ssh("host2", "fail2ban-client get sshd banip", check=True).stdout.split()
            assert source not in banned and lab.repo.address not in banned
            # The controller still reaches host2.
            assert lab.ssh("host2", "true", connect_timeout=5).returncode == 0

            stored = drills.listing(store)
            assert [(d.id, d.kind, d.outcome) for d in stored] == [
                (restore_id, "restore", "completed"),
                (failure_id, "service-failure", "completed"),
                (attack_id, "attack", "completed"),
            ]
            now = dt.datetime.now(dt.UTC)
            quarter = f"{now.year}Q{(now.month - 1) // 3 + 1}"
            label, start, end = assess.period(quarter)
            report = assess.assess(
                store,
                policy,
                {h: list(i.groups) for h, i in lab.hosts.items()},
                label=label,
                start=start,
                end=end,
                scrape_interval=dt.timedelta(seconds=settings.scrape_interval),
            )
            accuracy = next(i for i in report["indicators"] if i["name"] == "data_accuracy")
            assert accuracy["value"] == 100.0 and "1 of 1" in accuracy["basis"]
            assert [d["kind"] for d in report["drills"]] == ["restore", "service-failure", "attack"]
            print(f"three drills took {took:.0f} s")  # shown with -s
    finally:
        reset_hosts(lab, "host1", "host2", "host3")
