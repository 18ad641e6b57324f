"""A run's results for scoring and reports, read as SQLAlchemy Core rows (no ORM objects)."""

from __future__ import annotations

from sqlalchemy import select

from opsrunner.store.models import Result
from opsrunner.store.records import ResultRecord
from opsrunner.store.store import Store

#: Rows fetched from the database at a time.
BATCH = 20_000


def report_results(store: Store, run_id: int) -> list[ResultRecord]:
    """`Store.results(run_id)` without `data` (no report or score reads it), cheaper per row.

    A fleet's run has millions of results: an ORM object per row, its JSON `data` decoded and
    copied, cost more than scoring them. Here each row is a plain Core row fetched in batches,
    and a text that repeats (host, control, status, task, reason, evidence: one value shared
    by many rows) is kept once, so two million records hold a few thousand distinct strings
    where the fleet's evidence allows it. Same records, same order (host, then control).
    """
    query = (
        select(
            Result.run_id,
            Result.host,
            Result.control_id,
            Result.status,
            Result.checked_at,
            Result.reason,
            Result.evidence,
            Result.evidence_sha256,
            Result.evidence_truncated,
            Result.remediated,
            Result.task,
        )
        .where(Result.run_id == run_id)
        .order_by(Result.host, Result.control_id)
    )
    seen: dict[str, str] = {}
    once = seen.setdefault
    out: list[ResultRecord] = []
    with store.session() as session:
        rows = session.execute(query.execution_options(yield_per=BATCH))
        for run, host, control, status, at, reason, evidence, sha, cut, fixed, task in rows:
            out.append(
                ResultRecord(
                    once(host, host),
                    once(control, control),
                    once(status, status),
                    at,
                    once(reason, reason),
                    once(evidence, evidence),
                    sha,
                    bool(cut),
                    {},
                    bool(fixed),
                    once(task, task),
                    run,
                )
            )
    return out
