"""Fault row 6 (the store half): a corrupted SQLite store is found on open and never written."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from opsrunner.store import ResultRecord, RunRecord, Store, StoreError

NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def _filled(state: Path) -> Path:
    with Store.open(None, state) as store:
        for n in range(3):
            run = store.begin_run(
                RunRecord(ident=f"r{n}", mode="audit", status="running", started_at=NOW)
            )
            assert run.id is not None
            store.add_results(
                run.id,
                [
                    ResultRecord(f"host{h:03d}", "FW-001", "pass", NOW, evidence="x" * 400)
                    for h in range(300)
                ],
            )
            store.finish_run(run.id, "successful", ended_at=NOW)
        with store.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return state / "opsrunner.db"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _flip(path: Path, offset: int, count: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        data = bytearray(handle.read(count))
        handle.seek(offset)
        handle.write(bytes(b ^ 0x5A for b in data))


def _cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsrunner", *args, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        check=False,
    )


@pytest.mark.faults(6)
@pytest.mark.parametrize("where", ["btree-page", "header"])
def test_a_corrupted_store_is_refused_on_open(
    tmp_path: Path, where: str, fault_record: Callable[..., None]
) -> None:
    db = _filled(tmp_path)
    size = db.stat().st_size
    assert size > 40 * 4096
    if where == "header":
        _flip(db, 0, 16)  # the "SQLite format 3" magic
    else:
        _flip(db, 4096 * 20, 64)  # the header and cell pointers of a results page
    before = _digest(db)
    with pytest.raises(StoreError) as info:
        Store.open(None, tmp_path)
    message = str(info.value)
    assert "corrupted" in message and str(db) in message and "refuses to write" in message
    if where == "header":
        # The CLI says the same in one line, exit 2 (an error it explains), no traceback.
        done = _cli(tmp_path, "runs", "list")
        assert done.returncode == 2, done
        assert "corrupted" in done.stderr and "Traceback" not in done.stderr
    assert _digest(db) == before, "the corrupted store was written to"
    fault_record(
        row=6,
        injected=1,
        survived=1,
        figure=f"store {where} damaged: refused on open "
        f"({message.split('corrupted (', 1)[1].split('); opsrunner')[0][:90]}), file unchanged",
    )
