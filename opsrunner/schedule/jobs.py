"""The schedule from the policy: audits per frequency, enforces per window, operate jobs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter  # type: ignore[import-untyped]

from opsrunner.store import RunRecord

# A run that starts more than this after its time is recorded as late.
LATE_AFTER = dt.timedelta(minutes=5)


@dataclasses.dataclass(frozen=True)
class Job:
    """One scheduled job."""

    name: str
    mode: str  # audit | enforce | operate
    cron: str
    timezone: str = "UTC"
    controls: tuple[str, ...] = ()
    limit: str = ""
    operate_job: str = ""
    why: str = ""

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The next fire time after `moment`, in UTC."""
        zone = ZoneInfo(self.timezone)
        fire: dt.datetime = croniter(self.cron, moment.astimezone(zone)).get_next(dt.datetime)
        return fire.astimezone(dt.UTC)

    def previous_before(self, moment: dt.datetime) -> dt.datetime:
        """The latest fire time at or before `moment`, in UTC."""
        zone = ZoneInfo(self.timezone)
        local = moment.astimezone(zone)
        if croniter.match(self.cron, local.replace(second=0, microsecond=0)):
            return _first_occurrence(local.replace(second=0, microsecond=0))
        fire: dt.datetime = croniter(self.cron, local).get_prev(dt.datetime)
        return _first_occurrence(fire.astimezone(zone))

    def owns(self, run: RunRecord) -> bool:
        """Whether a recorded run was this job's."""
        if self.mode == "operate":
            return run.mode == "operate" and run.job in (self.operate_job, self.name)
        return run.mode == self.mode and run.job == self.name


def _first_occurrence(local: dt.datetime) -> dt.datetime:
    """A local fire time in UTC; a wall time the clock shows twice (DST ends) is one fire time,
    its first occurrence, so the job runs once that night, not twice."""
    return local.replace(fold=0).astimezone(dt.UTC)


def _frequency_key(control: Any) -> tuple[str, str]:
    freq = control.frequency
    return (str(freq), freq.cron)


def jobs_from_policy(
    policy: Any,
    playbooks_dir: Path,
    *,
    overrides: Mapping[str, str] | None = None,
    roles: Iterable[str] | None = None,
) -> list[Job]:
    """Audits grouped by control frequency, one enforce per maintenance window, and one job per
    playbooks/operate_<job>.yml at the frequency of the controls it serves.

    `overrides` maps a job name to a cron expression (UTC) from the config; `roles` limits the
    audit to controls whose role site.yml runs.
    """
    role_set = set(roles) if roles is not None else None
    by_frequency: dict[tuple[str, str], list[str]] = {}
    for control in policy.controls:
        if control.kind != "automated":
            continue
        if role_set is not None and control.role not in role_set:
            continue
        by_frequency.setdefault(_frequency_key(control), []).append(control.id)
    jobs: list[Job] = []
    for (spec, cron), ids in sorted(by_frequency.items(), key=lambda kv: kv[0]):
        name = f"audit-{_slug(spec)}"
        jobs.append(
            Job(
                name,
                "audit",
                cron,
                "UTC",
                tuple(sorted(ids)),
                why=f"controls checked {spec}: {len(ids)}",
            )
        )
    for window in policy.windows:
        jobs.append(
            Job(
                f"enforce-{window.name}",
                "enforce",
                window.start,
                window.timezone,
                limit=":".join(window.groups),
                why=f"maintenance window {window.name} ({window.duration_minutes} min)",
            )
        )
    for path in sorted(playbooks_dir.glob("operate_*.yml")):
        job = path.stem.removeprefix("operate_")
        cron, why = _operate_cron(policy, job)
        jobs.append(Job(f"operate-{job}", "operate", cron, "UTC", operate_job=job, why=why))
    if overrides:
        known = {j.name for j in jobs}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(
                f"schedule overrides name unknown jobs: {', '.join(unknown)} "
                f"(have {', '.join(sorted(known))})"
            )
        for bad in [n for n, c in overrides.items() if not croniter.is_valid(c)]:
            raise ValueError(
                f"schedule override {bad}: {overrides[bad]!r} is not a cron expression"
            )
        jobs = [
            dataclasses.replace(
                j, cron=overrides[j.name], timezone="UTC", why=j.why + " (cron from config)"
            )
            if j.name in overrides
            else j
            for j in jobs
        ]
    return jobs


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "custom"


def _operate_cron(policy: Any, job: str) -> tuple[str, str]:
    """An operate job runs as often as the most frequent control it serves: the controls of the
    role of the same name, else those whose title names the job's first word (restore_test ->
    "Restore drill …"). Unknown jobs run monthly until the config says otherwise."""
    serving = [c for c in policy.controls if c.kind == "automated" and c.role == job]
    if not serving:
        word = job.split("_")[0].lower()
        serving = [c for c in policy.controls if c.kind == "automated" and word in c.title.lower()]
    if not serving:
        return "0 4 1 * *", "no control names this job: monthly by default"
    tightest = min(serving, key=lambda c: c.frequency.max_age)
    return (
        tightest.frequency.cron,
        f"serves {', '.join(sorted(c.id for c in serving))} ({tightest.frequency})",
    )


@dataclasses.dataclass(frozen=True)
class Due:
    """A job due now: the fire time it is for, and whether it is late."""

    job: Job
    scheduled_for: dt.datetime
    late: bool


def due_jobs(jobs: Sequence[Job], runs: Sequence[RunRecord], now: dt.datetime) -> list[Due]:
    """Jobs whose latest fire time has no run of theirs since: each runs once, however many
    times it was missed, and is late when its time is more than LATE_AFTER ago."""
    out = []
    for job in jobs:
        fire = job.previous_before(now)
        ran = any(job.owns(r) and (r.scheduled_for or r.started_at) >= fire for r in runs)
        if not ran:
            out.append(Due(job, fire, now - fire > LATE_AFTER))
    return out


def next_runs(
    jobs: Sequence[Job], now: dt.datetime, count: int = 1
) -> list[tuple[Job, dt.datetime]]:
    """The next `count` fire times of every job, soonest first."""
    out = []
    for job in jobs:
        moment = now
        for _ in range(count):
            moment = job.next_after(moment)
            out.append((job, moment))
    return sorted(out, key=lambda pair: (pair[1], pair[0].name))


# -- export ------------------------------------------------------------------------------------

_DOW = {
    "0": "Sun",
    "1": "Mon",
    "2": "Tue",
    "3": "Wed",
    "4": "Thu",
    "5": "Fri",
    "6": "Sat",
    "7": "Sun",
}


def _systemd_field(value: str, *, names: Mapping[str, str] | None = None) -> str:
    parts = []
    for part in value.split(","):
        step = ""
        if "/" in part:
            part, step = part.split("/", 1)
            part = "0" if part == "*" else part
            step = "/" + step
        if names:
            part = "..".join(names.get(p.upper()[:3], names.get(p, p)) for p in part.split("-"))
        else:
            part = part.replace("-", "..")
        parts.append(part + step)
    return ",".join(parts)


def on_calendar(job: Job) -> str:
    """The cron expression as a systemd OnCalendar= value, with its time zone."""
    minute, hour, dom, month, dow = job.cron.split()
    names = {**_DOW, **{v.upper(): v for v in _DOW.values()}}
    day = "" if dow == "*" else _systemd_field(dow, names=names) + " "
    date = f"*-{_systemd_field(month)}-{_systemd_field(dom)}"
    hours = "*" if hour == "*" else _systemd_field(hour)
    minutes = "*" if minute == "*" else _systemd_field(minute)
    return f"{day}{date} {hours}:{minutes}:00 {job.timezone}"


def _command(job: Job, executable: str, extra: Sequence[str]) -> str:
    args = [executable]
    if job.mode == "operate":
        args += ["operate", job.operate_job]
    else:
        args += [job.mode]
        if job.controls:
            args += ["--controls", ",".join(job.controls)]
        if job.limit:
            args += ["--limit", job.limit]
    args += ["--schedule-job", job.name, *extra]
    return " ".join(args)


def export_systemd(
    jobs: Sequence[Job], executable: str, extra: Sequence[str] = ()
) -> dict[str, str]:
    """File name -> content of one .service and one .timer per job."""
    files = {}
    for job in jobs:
        unit = f"opsrunner-{job.name}"
        files[f"{unit}.service"] = (
            "[Unit]\n"
            f"Description=opsrunner {job.name}: {job.why}\n"
            "After=network-online.target\n\n"
            "[Service]\n"
            "Type=oneshot\n"
            f"ExecStart={_command(job, executable, extra)}\n"
        )
        files[f"{unit}.timer"] = (
            "[Unit]\n"
            f"Description=Schedule of opsrunner {job.name}\n\n"
            "[Timer]\n"
            f"OnCalendar={on_calendar(job)}\n"
            # A missed run (controller off) runs once at boot, like the daemon does.
            "Persistent=true\n\n"
            "[Install]\n"
            "WantedBy=timers.target\n"
        )
    return files


def export_cron(jobs: Sequence[Job], executable: str, extra: Sequence[str] = ()) -> str:
    """A crontab; each entry states its zone with CRON_TZ (cronie, systemd-cron, busybox)."""
    lines = ["# opsrunner schedule, derived from the policy (opsrunner schedule export --cron)"]
    zone = None
    for job in sorted(jobs, key=lambda j: (j.timezone, j.name)):
        if job.timezone != zone:
            zone = job.timezone
            lines.append(f"CRON_TZ={zone}")
        lines.append(f"# {job.name}: {job.why}")
        lines.append(f"{job.cron} {_command(job, executable, extra)}")
    return "\n".join(lines) + "\n"
