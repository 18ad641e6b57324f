"""The schedule comes from the policy; due jobs run once (late when missed); exports are valid."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from opsrunner.policy import load_policy
from opsrunner.runner.scope import site_roles
from opsrunner.schedule import (
    Job,
    due_jobs,
    export_cron,
    export_systemd,
    jobs_from_policy,
    next_runs,
    on_calendar,
)
from opsrunner.store import RunRecord

ROOT = Path(__file__).resolve().parents[3]
NOW = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)  # a Saturday


@pytest.fixture(scope="module")
def jobs() -> list[Job]:
    policy = load_policy(ROOT / "policy")
    return jobs_from_policy(
        policy, ROOT / "playbooks", roles=site_roles(ROOT / "playbooks" / "site.yml")
    )


def test_jobs_follow_the_policy(jobs: list[Job]) -> None:
    policy = load_policy(ROOT / "policy")
    roles = set(site_roles(ROOT / "playbooks" / "site.yml"))
    by_name = {j.name: j for j in jobs}
    daily = by_name["audit-daily"]
    assert daily.mode == "audit" and daily.cron == "0 3 * * *"
    expected = {
        c.id
        for c in policy.controls
        if c.kind == "automated" and c.role in roles and str(c.frequency) == "daily"
    }
    assert set(daily.controls) == expected
    audited = {c for j in jobs if j.mode == "audit" for c in j.controls}
    assert audited == {c.id for c in policy.controls if c.kind == "automated" and c.role in roles}
    for window in policy.windows:
        job = by_name[f"enforce-{window.name}"]
        assert (job.cron, job.timezone, job.limit) == (
            window.start,
            window.timezone,
            ":".join(window.groups),
        )
    for path in (ROOT / "playbooks").glob("operate_*.yml"):
        assert by_name[f"operate-{path.stem.removeprefix('operate_')}"].mode == "operate"


def test_window_times_are_local_to_their_zone() -> None:
    job = Job("enforce-w", "enforce", "0 2 * * SUN", "Asia/Shanghai")
    # Sunday 02:00 in Shanghai is Saturday 18:00 UTC.
    assert job.next_after(NOW) == dt.datetime(2026, 11, 28, 18, 0, tzinfo=dt.UTC)
    assert job.previous_before(NOW) == dt.datetime(2026, 11, 21, 18, 0, tzinfo=dt.UTC)


def _run(job: str, at: dt.datetime, mode: str = "audit", status: str = "successful") -> RunRecord:
    return RunRecord(
        ident=f"{job}-{at:%H%M}", mode=mode, job=job, status=status, started_at=at, scheduled_for=at
    )


def test_a_missed_job_runs_once_late_then_not_again() -> None:
    job = Job("audit-daily", "audit", "0 3 * * *")
    (due,) = due_jobs([job], [], NOW)
    assert due.scheduled_for == dt.datetime(2026, 11, 28, 3, 0, tzinfo=dt.UTC) and due.late
    # Yesterday's run does not count for today's time; today's (even skipped) does.
    assert due_jobs([job], [_run("audit-daily", NOW - dt.timedelta(days=1))], NOW)
    assert due_jobs([job], [_run("audit-daily", due.scheduled_for, status="skipped")], NOW) == []
    # Another job's run, or another mode's, is not this job's.
    assert due_jobs([job], [_run("audit-weekly", due.scheduled_for)], NOW)
    on_time = due_jobs([job], [], dt.datetime(2026, 11, 28, 3, 1, tzinfo=dt.UTC))
    assert on_time and not on_time[0].late


def test_operate_runs_are_matched_by_job_name() -> None:
    job = Job("operate-backup", "operate", "0 3 * * *", operate_job="backup")
    fire = job.previous_before(NOW)
    assert due_jobs([job], [_run("backup", fire, mode="operate")], NOW) == []


def test_next_runs_are_sorted() -> None:
    jobs = [Job("a", "audit", "0 3 * * *"), Job("b", "audit", "30 1 * * *")]
    upcoming = next_runs(jobs, NOW, count=2)
    assert [j.name for j, _ in upcoming] == ["b", "a", "b", "a"]
    assert upcoming[0][1] == dt.datetime(2026, 11, 29, 1, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("cron", "zone", "calendar"),
    [
        ("0 2 * * SUN", "Asia/Shanghai", "Sun *-*-* 2:0:00 Asia/Shanghai"),
        ("0 3 * * *", "UTC", "*-*-* 3:0:00 UTC"),
        ("0 3 1 1,4,7,10 *", "UTC", "*-1,4,7,10-1 3:0:00 UTC"),
        ("*/15 8-18 * * 1-5", "UTC", "Mon..Fri *-*-* 8..18:0/15:00 UTC"),
    ],
)
def test_cron_to_systemd_calendar(cron: str, zone: str, calendar: str) -> None:
    assert on_calendar(Job("j", "audit", cron, zone)) == calendar


def test_exports_name_every_job(jobs: list[Job]) -> None:
    units = export_systemd(jobs, "/usr/local/bin/opsrunner", ["--plain"])
    assert len(units) == 2 * len(jobs)
    timer = units["opsrunner-audit-daily.timer"]
    assert "OnCalendar=*-*-* 3:0:00 UTC" in timer and "Persistent=true" in timer
    service = units["opsrunner-audit-daily.service"]
    assert "ExecStart=/usr/local/bin/opsrunner audit --controls " in service
    assert "--schedule-job audit-daily --plain" in service
    crontab = export_cron(jobs, "opsrunner")
    assert "CRON_TZ=Asia/Shanghai" in crontab
    assert (
        "0 2 * * SUN opsrunner enforce --limit critical --schedule-job enforce-critical-weekly"
        in crontab
    )


def test_overrides_must_name_real_jobs_and_valid_cron() -> None:
    policy = load_policy(ROOT / "policy")
    jobs = jobs_from_policy(policy, ROOT / "playbooks", overrides={"audit-daily": "15 4 * * *"})
    assert {j.name: j.cron for j in jobs}["audit-daily"] == "15 4 * * *"
    with pytest.raises(ValueError, match="unknown jobs: audit-hourly"):
        jobs_from_policy(policy, ROOT / "playbooks", overrides={"audit-hourly": "0 * * * *"})
    with pytest.raises(ValueError, match="not a cron"):
        jobs_from_policy(policy, ROOT / "playbooks", overrides={"audit-daily": "every day"})
