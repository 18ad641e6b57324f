"""Runs and results written straight into a store, as the runner would record them."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from opsrunner.store import HostRecord, ResultRecord, RunRecord, Store

_counter = itertools.count(1)
GROUPS = {"host1": ("critical", "db"), "host2": ("standard", "web")}


def record_run(
    store: Store,
    at: dt.datetime,
    results: dict[tuple[str, str], str],
    *,
    mode: str = "audit",
    status: str = "successful",
    job: str = "",
    unreachable: tuple[str, ...] = (),
    data: dict[tuple[str, str], dict[str, Any]] | None = None,
    controls: tuple[str, ...] = (),
) -> RunRecord:
    """One finished run with these host x control statuses."""
    run = store.begin_run(
        RunRecord(
            ident=f"{mode}-{next(_counter)}",
            mode=mode,
            status="running",
            started_at=at,
            job=job,
            controls=controls,
        )
    )
    assert run.id is not None
    hosts = sorted({h for h, _ in results} | set(unreachable))
    store.set_hosts(
        run.id,
        [HostRecord(h, reachable=h not in unreachable, groups=GROUPS.get(h, ())) for h in hosts],
    )
    store.add_results(
        run.id,
        [
            ResultRecord(
                host=h,
                control_id=c,
                status=s,
                checked_at=at,
                reason=f"{c} is {s}",
                data=(data or {}).get((h, c), {}),
            )
            for (h, c), s in results.items()
        ],
    )
    store.finish_run(run.id, status, ended_at=at + dt.timedelta(minutes=1))
    return store.get_run(run.id)
