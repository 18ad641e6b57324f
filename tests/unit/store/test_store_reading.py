"""The reports' Core read of a run's results gives what Store.results gives, less `data`."""

from __future__ import annotations

import dataclasses
import datetime as dt

from opsrunner.store import ResultRecord, RunRecord, Store
from opsrunner.store.reading import report_results

AT = dt.datetime(2026, 11, 3, 3, 0, tzinfo=dt.UTC)


def test_report_results_equal_store_results_without_data(store: Store) -> None:
    run = store.begin_run(RunRecord("r1", "audit", "running", AT))
    other = store.begin_run(RunRecord("r2", "audit", "running", AT))
    assert run.id is not None and other.id is not None
    results = [
        ResultRecord(
            f"h{h}",
            f"CT-{c:03d}",
            ("pass", "fail", "unknown", "notchecked")[(h + c) % 4],
            AT - dt.timedelta(minutes=h),
            reason="why" if c % 2 else "",
            evidence=f"line {c}\u202e" if h % 2 else "same",
            evidence_sha256=f"{h * 100 + c:064x}",
            evidence_truncated=bool(h % 3 == 0),
            data={"k": [h, c]},
            remediated=bool(c % 5 == 0),
            task=f"CT-{c:03d} | probe",
        )
        for h in (3, 1, 2)
        for c in (7, 2, 5)
    ]
    store.add_results(run.id, results)
    store.add_results(other.id, results[:2])
    expected = [dataclasses.replace(r, data={}) for r in store.results(run.id)]
    got = report_results(store, run.id)
    assert got == expected
    assert [(r.host, r.control_id) for r in got] == sorted((r.host, r.control_id) for r in results)
    assert all(r.checked_at.tzinfo is not None for r in got)
    assert report_results(store, 999) == []
