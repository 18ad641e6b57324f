"""Bench: results written one transaction per result vs one per batch (SQLite, PostgreSQL).

Run: .venv/bin/python -m bench.store_batching [--results 2000] [--batch 50] [--pg postgresql://…]
Prints the time of each way and their ratio; timings are never asserted in tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from opsrunner.store import ResultRecord, RunRecord, Store


def _results(count: int) -> list[ResultRecord]:
    now = dt.datetime.now(dt.UTC)
    return [
        ResultRecord(
            f"host{n // 50}",
            f"FW-{n % 50:03d}",
            "pass",
            now,
            evidence="x" * 200,
            evidence_sha256="a" * 64,
        )
        for n in range(count)
    ]


def _time(store: Store, results: list[ResultRecord], batch: int, ident: str) -> float:
    run = store.begin_run(
        RunRecord(ident=ident, mode="audit", status="running", started_at=dt.datetime.now(dt.UTC))
    )
    assert run.id is not None
    started = time.perf_counter()
    for start in range(0, len(results), batch):
        store.add_results(run.id, results[start : start + batch])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--pg", default=None, help="also bench a PostgreSQL store at this URL")
    args = parser.parse_args()
    results = _results(args.results)
    with tempfile.TemporaryDirectory() as tmp:
        urls = [("sqlite", None)] + ([("postgresql", args.pg)] if args.pg else [])
        for name, url in urls:
            with Store.open(url, Path(tmp)) as store:
                single = _time(store, results, 1, f"{name}-single-{time.time()}")
                batched = _time(store, results, args.batch, f"{name}-batched-{time.time()}")
            print(
                f"{name}: {args.results} results, 1 per transaction {single:.2f}s, "
                f"{args.batch} per transaction {batched:.2f}s, ratio {single / batched:.1f}x"
            )


if __name__ == "__main__":
    main()
