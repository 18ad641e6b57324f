"""A patching enforce on a lab host defers without a notice on record and patches with one: the
notice is sent by opsrunner over real loopback SMTP and HTTP, recorded in the store, and handed
to the role as the extra variable opsrunner_notice_records (3.1.3)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from opsrunner.lab.core import Lab
from opsrunner.notify import notices
from opsrunner.paths import project_root
from opsrunner.policy import load_policy
from opsrunner.store import Store
from tests.lab_helpers import reset_hosts, run_playbook
from tests.unit.notify.conftest import HttpReceiver, notifications_yaml, running_smtp, write_secrets

pytestmark = [pytest.mark.lab, pytest.mark.slow]

WINDOW = {
    "name": "lab-hourly",
    "description": "Open every hour for two hours (the test's window).",
    "groups": ["critical"],
    "timezone": "UTC",
    "start": "0 * * * *",
    "duration_minutes": 120,
    "notice_hours": 1,
}


def _version(lab: Lab, package: str) -> str:
    return lab.ssh("host1", f"dpkg-query -W -f='${{Version}}' {package}", check=True).stdout.strip()


def _rollout(state: Path, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state / "patching" / f"rollout-{run_id}.json").read_text())
    return data


def test_enforce_defers_without_a_notice_and_patches_with_one(lab: Lab, tmp_path: Path) -> None:
    reset_hosts(lab, "host1")
    lab.ssh(
        "host1",
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        "--allow-downgrades opsdemo-base=1.0 opsdemo-web=1.0 >/dev/null",
        check=True,
        timeout=300,
    )
    policy_dir = tmp_path / "policy"
    shutil.copytree(project_root() / "policy", policy_dir)
    (policy_dir / "windows.yml").write_text(json.dumps({"windows": [WINDOW]}))
    http = HttpReceiver()
    http.start()
    state = tmp_path / "state"
    try:
        with running_smtp(tmp_path) as smtp, Store.open(None, state) as store:
            (policy_dir / "notifications.yml").write_text(
                notifications_yaml(smtp, http, write_secrets(tmp_path / "secrets.yml"))
            )
            policy = load_policy(policy_dir)
            opened_at = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)

            def enforce(run_id: str) -> dict[str, Any]:
                records = notices.ansible_vars(store)
                res = run_playbook(
                    lab,
                    "playbooks/patching.yml",
                    check=False,
                    limit="host1",
                    env={"OPSRUNNER_STATE_DIR": str(state)},
                    extra_vars={
                        "opsrunner_windows": [WINDOW],
                        "opsrunner_notices": [],  # nothing from policy/windows.yml
                        **records,
                        "patching_run_id": run_id,
                    },
                )
                assert res.rc == 0, res
                return _rollout(state, run_id)["hosts"]["host1"]

            # Inside the window, but no notice on record: deferred, nothing installed.
            first = enforce("no-notice")
            assert first["state"] == "deferred", first
            assert "no notice was on record" in first["reason"]
            assert _version(lab, "opsdemo-web") == "1.0"

            # The notice of this opening, sent two hours before it (the clock is the test's):
            # every recipient gets it over SMTP and the signed webhook, and it is recorded.
            # (this opening and the next, so a test that crosses the hour still has its notice)
            for start in (opened_at, opened_at + dt.timedelta(hours=1)):
                sent = notices.send_notice(
                    policy,
                    store,
                    "lab-hourly",
                    {"host1": ["critical", "db"]},
                    opened_at - dt.timedelta(hours=2),
                    start=start,
                )
                assert sent.status == "sent" and sent.in_time and sent.hosts == ["host1"]
            assert len(smtp.received) == 6 and len(http.requests) == 2
            assert "lab-hourly" in str(smtp.received[0].message["Subject"])

            second = enforce("with-notice")
            assert second["state"] == "patched", second
            assert _version(lab, "opsdemo-web") == "1.1"
    finally:
        http.stop()
        reset_hosts(lab, "host1")
