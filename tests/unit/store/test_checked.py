"""The open-time quick_check runs when the SQLite store changed since its last clean check."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from opsrunner.store import RunRecord, Store

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def _checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = Store.integrity_problem

    def counted(self: Store) -> str:
        calls.append(1)
        return original(self)

    monkeypatch.setattr(Store, "integrity_problem", counted)
    return calls


def test_quick_check_skipped_only_while_the_file_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _checks(monkeypatch)
    with Store.open(None, tmp_path) as store:
        store.begin_run(RunRecord(ident="r1", mode="audit", status="running", started_at=T0))
    Store.open(None, tmp_path).close()  # written since the last check: checked
    assert len(calls) == 2
    stamp = tmp_path / "opsrunner.db.checked"
    assert stamp.stat().st_mode & 0o777 == 0o600
    Store.open(None, tmp_path).close()  # unchanged: skipped
    Store.open(None, tmp_path).close()
    assert len(calls) == 2
    # Any change to the file (a write, a flipped byte keeping the size, a touch) checks again.
    database = tmp_path / "opsrunner.db"
    data = database.read_bytes()
    database.write_bytes(data)
    Store.open(None, tmp_path).close()
    assert len(calls) == 3
    os.utime(database, ns=(0, 0))
    Store.open(None, tmp_path).close()
    assert len(calls) == 4
    stamp.write_text("not json")
    Store.open(None, tmp_path).close()
    assert len(calls) == 5
