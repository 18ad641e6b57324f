"""Fault row 7: 16 runs recording at once beside report readers, on SQLite and PostgreSQL.

Sixteen OS processes each record a run the way the runner does (begin, results in batches of
10 through the same upsert, hosts, finish) while four readers query what reports read. Every
run must be stored whole and no "database is locked" (or any other error) may reach a caller.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from opsrunner.store import HostRecord, ResultRecord, RunRecord, Store
from tests.unit.store.conftest import _fresh_pg, pg_url  # noqa: F401 - the PostgreSQL server

RUNS, HOSTS, CONTROLS, READERS, BATCH = 16, 20, 10, 4, 10
NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def _writer(url: str, state: str, n: int, out: multiprocessing.Queue[str]) -> None:
    try:
        with Store.open(url, Path(state)) as store:
            run = store.begin_run(
                RunRecord(ident=f"run-{n:02d}", mode="audit", status="running", started_at=NOW)
            )
            assert run.id is not None
            results = [
                ResultRecord(f"h{n:02d}-{h:02d}", f"FW-{c:03d}", "pass", NOW + dt.timedelta(n))
                for h in range(HOSTS)
                for c in range(CONTROLS)
            ]
            for start in range(0, len(results), BATCH):
                store.add_results(run.id, results[start : start + BATCH])
            store.set_hosts(run.id, [HostRecord(f"h{n:02d}-{h:02d}") for h in range(HOSTS)])
            store.finish_run(run.id, "successful", ended_at=NOW + dt.timedelta(n))
        out.put("ok")
    except BaseException:
        out.put(traceback.format_exc())


def _reader(
    url: str, state: str, stop: Callable[[], bool], out: multiprocessing.Queue[str]
) -> None:
    reads = 0
    try:
        with Store.open(url, Path(state)) as store:
            while not stop() or reads == 0:
                for run in store.list_runs(limit=100):
                    store.results(run.id or 0)
                store.latest_results()
                reads += 1
        out.put(f"reads {reads}")
    except BaseException:
        out.put(traceback.format_exc())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres])])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        Store.open(None, tmp_path).close()  # migrated before the rush
        yield f"sqlite:///{tmp_path / 'opsrunner.db'}"
    else:
        _fresh_pg(request.getfixturevalue("pg_url"), tmp_path).close()
        yield request.getfixturevalue("pg_url")


@pytest.mark.slow
@pytest.mark.faults(7)
def test_sixteen_concurrent_runs_and_readers(
    url: str, tmp_path: Path, fault_record: Callable[..., None]
) -> None:
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[str] = ctx.Queue()
    done = ctx.Event()
    readers = [
        ctx.Process(target=_reader, args=(url, str(tmp_path), done.is_set, out))
        for _ in range(READERS)
    ]
    writers = [ctx.Process(target=_writer, args=(url, str(tmp_path), n, out)) for n in range(RUNS)]
    for proc in readers + writers:
        proc.start()
    for proc in writers:
        proc.join(300)
    done.set()
    for proc in readers:
        proc.join(120)
    answers = [out.get(timeout=10) for _ in range(RUNS + READERS)]
    errors = [a for a in answers if a != "ok" and not a.startswith("reads ")]
    locked = sum("database is locked" in a for a in errors)
    with Store.open(url, tmp_path) as store:
        runs = store.list_runs(limit=100)
        stored = {r.ident: len(store.results(r.id or 0)) for r in runs}
        statuses = {r.status for r in runs}
    lost = sum(HOSTS * CONTROLS - stored.get(f"run-{n:02d}", 0) for n in range(RUNS))
    assert not errors, errors[0]
    assert statuses == {"successful"} and len(stored) == RUNS and lost == 0, stored
    reads = sum(int(a.split()[1]) for a in answers if a.startswith("reads "))
    backend = url.split(":", 1)[0]
    fault_record(
        row=7,
        injected=1,
        survived=1,
        lost=lost,
        figure=f"{backend}: {RUNS} concurrent runs x {HOSTS * CONTROLS} results, {READERS} "
        f"readers ({reads} report reads): {len(stored)} runs stored whole, {locked} "
        "'database is locked'",
    )
