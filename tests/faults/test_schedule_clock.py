"""Fault row 9: the daemon under clock jumps and DST changes runs each fire time exactly once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from opsrunner.config import Settings
from opsrunner.schedule import Daemon, Job
from opsrunner.store import RunRecord, Store

BERLIN = ZoneInfo("Europe/Berlin")


def _daemon(store: Store, jobs: list[Job], clock: Callable[[], dt.datetime]) -> Daemon:
    def runner(mode: str, inventory: Path, **kwargs: Any) -> RunRecord:
        at = clock()
        return store.begin_run(
            RunRecord(
                ident=f"{kwargs['job']}-{at:%Y%m%dT%H%M%S}-{len(store.list_runs(limit=5000))}",
                mode=mode,
                job=kwargs["job"],
                status="successful",
                started_at=at,
                ended_at=at,
                scheduled_for=kwargs["scheduled_for"],
                late=kwargs["late"],
            )
        )

    return Daemon(Settings(), store, jobs, Path("inv"), runner=runner, clock=clock)


def _walk(
    store: Store, jobs: list[Job], moments: list[dt.datetime]
) -> dict[str, list[dt.datetime]]:
    """Tick the daemon at each moment (the wall clock as the daemon sees it); runs per job."""
    now: list[dt.datetime] = [moments[0]]
    daemon = _daemon(store, jobs, lambda: now[-1])
    for moment in moments:
        now.append(moment)
        daemon.run_due()
    out: dict[str, list[dt.datetime]] = {}
    for run in store.list_runs(limit=5000):
        assert run.scheduled_for is not None
        out.setdefault(run.job, []).append(run.scheduled_for)
    return {job: sorted(times) for job, times in out.items()}


def _ticks(start: dt.datetime, end: dt.datetime, step: dt.timedelta) -> list[dt.datetime]:
    out = []
    while start <= end:
        out.append(start)
        start += step
    return out


@pytest.mark.faults
@pytest.mark.parametrize(
    ("label", "first", "last"),
    [
        # Spring forward: 02:00 -> 03:00 local on 2026-03-29, 02:30 never happens that day.
        (
            "spring-forward",
            dt.datetime(2026, 3, 27, 12, tzinfo=BERLIN),
            dt.datetime(2026, 3, 31, 12, tzinfo=BERLIN),
        ),
        # Fall back: 03:00 -> 02:00 local on 2026-10-25, 02:30 happens twice that day.
        (
            "fall-back",
            dt.datetime(2026, 10, 23, 12, tzinfo=BERLIN),
            dt.datetime(2026, 10, 27, 12, tzinfo=BERLIN),
        ),
    ],
)
def test_dst_change_neither_doubles_nor_drops_a_run(
    tmp_path: Path,
    fault_record: Callable[..., None],
    label: str,
    first: dt.datetime,
    last: dt.datetime,
) -> None:
    jobs = [
        Job("local-0230", "audit", "30 2 * * *", "Europe/Berlin"),
        Job("utc-0100", "audit", "0 1 * * *", "UTC"),
    ]
    # Coarse ticks, and every minute through the night of the change (00:00-04:00 UTC).
    ticks = _ticks(first.astimezone(dt.UTC), last.astimezone(dt.UTC), dt.timedelta(hours=3))
    night = (first + dt.timedelta(days=2)).astimezone(dt.UTC).replace(hour=0, minute=0)
    ticks = sorted({*ticks, *_ticks(night, night + dt.timedelta(hours=4), dt.timedelta(minutes=5))})
    with Store.open(None, tmp_path) as store:
        runs = _walk(store, jobs, ticks)
    days = sorted({t.astimezone(BERLIN).date() for t in runs["local-0230"]})
    # One run per local day from the first day the job was due through the last, none twice.
    per_day = {d: [t for t in runs["local-0230"] if t.astimezone(BERLIN).date() == d] for d in days}
    expected_days = [
        first.date() + dt.timedelta(days=n) for n in range(0, (last.date() - first.date()).days + 1)
    ]
    doubled = sum(len(v) - 1 for v in per_day.values() if len(v) > 1)
    missed = [d for d in expected_days if d not in per_day]
    utc_days = [t.date() for t in runs["utc-0100"]]
    assert doubled == 0, per_day
    assert not missed, f"missed {missed}: {per_day}"
    assert len(utc_days) == len(set(utc_days)) == len(expected_days), runs["utc-0100"]
    fault_record(
        row=9,
        injected=1,
        survived=1,
        duplicates=doubled,
        lost=len(missed),
        figure=f"{label}: {len(runs['local-0230'])} local runs on {len(expected_days)} days, "
        f"{doubled} doubled, {len(missed)} missed",
    )


@pytest.mark.faults
def test_clock_jumps_neither_double_nor_drop_a_run(
    tmp_path: Path, fault_record: Callable[..., None]
) -> None:
    job = Job("daily-0300", "audit", "0 3 * * *")
    start = dt.datetime(2026, 6, 1, 2, 50, tzinfo=dt.UTC)
    minute = dt.timedelta(minutes=2)
    moments = _ticks(start, start + 20 * minute, minute)  # 03:00 fires once
    # NTP steps the clock back an hour across 03:00 again: must not run a second time.
    back = moments[-1] - dt.timedelta(hours=1)
    moments += _ticks(back, back + 30 * minute, minute)
    # Then the clock jumps three days ahead: the missed days run once, late, not three times.
    ahead = moments[-1] + dt.timedelta(days=3)
    moments += _ticks(ahead, ahead + 10 * minute, minute)
    # And back behind the late run's time: nothing more.
    moments += _ticks(ahead - dt.timedelta(hours=2), ahead - dt.timedelta(hours=1), minute)
    with Store.open(None, tmp_path) as store:
        runs = _walk(store, [job], moments)["daily-0300"]
        late = [r.late for r in store.list_runs()]
    # Yesterday's 03:00 once (late, at the daemon's start), today's, then the last of the gap.
    assert runs == [
        start.replace(hour=3, minute=0) - dt.timedelta(days=1),
        start.replace(hour=3, minute=0),
        ahead.replace(hour=3, minute=0),
    ], runs
    assert late.count(True) == 2
    fault_record(
        row=9,
        injected=3,
        survived=3,
        figure=f"clock back 1 h, ahead 3 d, back 2 h: {len(runs)} runs for 3 distinct fire "
        "times (the 3-day gap caught up once, late)",
    )
