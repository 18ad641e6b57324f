"""Bench: what the evidence ledger costs on a large SQLite store (store open, finish_run).

Run: .venv/bin/python -m bench.ledger [--runs 200] [--results 10000] [--keep DIR]
Builds the store with the store API (each run finished, so each is chained), then times
`Store.open` (its parts: quick_check, migrate, ledger check), `finish_run` of one more run of
the same size, and the full `verify`. Timings are never asserted in tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from opsrunner.store import HostRecord, ResultRecord, RunRecord, Store

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _results(count: int, at: dt.datetime) -> list[ResultRecord]:
    return [
        ResultRecord(
            host=f"host{n // 100:04d}",
            control_id=f"FW-{n % 100:03d}",
            status="pass" if n % 7 else "fail",
            checked_at=at,
            reason="" if n % 7 else "rule missing",
            evidence=f"evidence {n} " + "x" * 120,
            evidence_sha256=f"{n:064x}",
            data={"n": n},
        )
        for n in range(count)
    ]


def add_run(
    store: Store, ident: str, results: int, at: dt.datetime
) -> tuple[int, tuple[float, float]]:
    """Record one run of `results` results; (run id, (wall, CPU) seconds finish_run took)."""
    run = store.begin_run(RunRecord(ident=ident, mode="audit", status="running", started_at=at))
    assert run.id is not None
    rows = _results(results, at)
    for start in range(0, len(rows), 2000):
        store.add_results(run.id, rows[start : start + 2000])
    store.set_hosts(run.id, [HostRecord(f"host{n:04d}") for n in range((results + 99) // 100)])
    clock = _Clock()
    store.finish_run(run.id, "successful", ended_at=at + dt.timedelta(minutes=5), rc=0)
    return run.id, clock.took()


class _Clock:
    """Wall and CPU seconds since it was made (the machine is shared: compare CPU)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def took(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def build(state: Path, runs: int, results: int) -> None:
    """A store of `runs` finished runs of `results` results each (skipped when already there)."""
    with Store.open(None, state) as store:
        have = len(store.list_runs(limit=runs + 1))
        for n in range(have, runs):
            add_run(store, f"bench-{n:04d}", results, T0 + dt.timedelta(hours=n))


def measure(state: Path, results: int, repeat: int = 3) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds, best of `repeat`, of open and its parts; finish_run; verify."""
    out: dict[str, tuple[float, float]] = {}

    def best(name: str, clock: _Clock) -> None:
        took = clock.took()
        out[name] = min(out.get(name, took), took, key=lambda t: t[1])

    stamp = state / "opsrunner.db.checked"  # opsrunner.store.checked (absent before it)
    for _ in range(repeat):
        stamp.unlink(missing_ok=True)
        clock = _Clock()
        Store.open(None, state).close()
        best("open (store changed)", clock)
        clock = _Clock()
        store = Store.open(None, state)
        best("open (unchanged)", clock)
        try:
            clock = _Clock()
            store.integrity_problem()
            best("  quick_check", clock)
            clock = _Clock()
            store.migrate()
            best("  migrate", clock)
            clock = _Clock()
            store._open_ledger()
            best("  ledger check", clock)
        finally:
            store.close()
    with Store.open(None, state) as store:
        ident = f"bench-finish-{time.time_ns()}"
        _run_id, out["finish_run"] = add_run(store, ident, results, dt.datetime.now(dt.UTC))
        clock = _Clock()
        report = store.verify()
        out["verify (full walk)"] = clock.took()
        assert report.ok, report.problems
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--results", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, default=None, help="build/reuse the store here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = args.keep or Path(tmp)
        started = time.perf_counter()
        build(state, args.runs, args.results)
        built = time.perf_counter() - started
        size = (state / "opsrunner.db").stat().st_size / 1e6
        print(
            f"store: {args.runs} runs x {args.results} results, {size:.0f} MB "
            f"(built in {built:.0f} s)"
        )
        print(f"{'':20} {'wall s':>8} {'CPU s':>8}")
        for name, (wall, cpu) in measure(state, args.results).items():
            print(f"{name:20} {wall:8.3f} {cpu:8.3f}")


if __name__ == "__main__":
    main()
