"""Fault: one byte flipped on disk in the evidence ledger, or in a stored result.

`opsrunner verify` names the first bad entry and exits 1; a store whose ledger does not hold
refuses writes when it is opened, so nothing new is chained onto a broken chain.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.store import RunRecord, Store, StoreError
from tests.unit.store.test_ledger import record_run

pytestmark = pytest.mark.faults
T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)


def _verify(state: Path) -> Result:
    return CliRunner().invoke(app, ["verify", "--state-dir", str(state)])


def _flip(database: Path, needle: bytes) -> None:
    """Flip one byte of `needle` (found exactly once) in the database file itself."""
    assert not Path(f"{database}-wal").exists() or Path(f"{database}-wal").stat().st_size == 0
    data = bytearray(database.read_bytes())
    at = data.find(needle)
    assert at >= 0 and data.find(needle, at + 1) < 0, needle
    data[at + len(needle) - 1] ^= 0x01
    database.write_bytes(bytes(data))


def _store_with_three_runs(state: Path) -> None:
    with Store.open(None, state) as store:
        for n in range(3):
            record_run(store, f"run{n}", at=T0 + dt.timedelta(hours=n))


def _entry_digest(database: Path, seq: int) -> bytes:
    with sqlite3.connect(database) as connection:
        (body,) = connection.execute("SELECT body FROM ledger WHERE seq = ?", (seq,)).fetchone()
    start = body.index('"results_sha256":"') + len('"results_sha256":"')
    return f'"results_sha256":"{body[start : start + 64]}"'.encode()


def test_flipped_byte_in_the_ledger(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _store_with_three_runs(state)
    assert _verify(state).exit_code == 0
    database = state / "opsrunner.db"
    _flip(database, _entry_digest(database, 2))
    done = _verify(state)
    assert done.exit_code == 1, done.output
    assert "BAD ledger entry 2 (run run1): content does not match its hash" in done.output
    # Detected on open; writes refused, naming the entry.
    with Store.open(None, state) as store:
        assert "ledger entry 2" in store.refuse_writes
        with pytest.raises(StoreError, match=r"ledger entry 2 .*writes are refused"):
            store.begin_run(RunRecord(ident="next", mode="audit", status="running", started_at=T0))
    print("fault: flipped ledger byte -> verify exit 1, entry 2 named, writes refused")


def test_flipped_byte_in_a_stored_result(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _store_with_three_runs(state)
    _flip(state / "opsrunner.db", b"run2 host1 FW-002 evidence")
    done = _verify(state)
    assert done.exit_code == 1, done.output
    assert "BAD ledger entry 3 (run run2): stored run or results differ" in done.output
    print("fault: flipped result byte -> verify exit 1, entry 3 named")
