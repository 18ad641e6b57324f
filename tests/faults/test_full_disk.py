"""Fault row 5: the disk fills up under a run (store, artifacts) and under a report.

Real ansible-runner runs of the runner test project (local-connection hosts) with the store or
the state directory on a small tmpfs that the test fills once the run is under way. Expected: a
clean non-zero exit with the reason, a store that passes its integrity check, the rows
committed before kept, and no half-written report.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from opsrunner.policy import load_policy
from opsrunner.reports.publish import publish
from opsrunner.store import ResultRecord, RunRecord, Store
from tests.integration.test_runner_local import project  # noqa: F401 - the shared fixture

pytestmark = [pytest.mark.slow, pytest.mark.faults]

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(where: Path) -> None:
    """Fill the file system up to the last byte."""
    with (where / "filler").open("ab", buffering=0) as handle:
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 512)


def _fill_when_started(runs: Path, where: Path) -> threading.Event:
    """Fill `where` once a run's artifacts show its first task started."""
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(runs.glob("*/artifacts/*/job_events/*.json")):
                _fill(where)
                done.set()
                return
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    return done


def _audit(
    proj: dict[str, Any], state: Path, store: str | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "opsrunner", "audit", "--plain", "--no-summary",
            "-i", str(proj["inventory"]), "--limit", "h1", "--state-dir", str(state),
            "--policy", str(proj["root"] / "policy")]  # fmt: skip
    if store:
        argv += ["--store", store]
    return subprocess.run(
        argv,
        env={**os.environ, "OPSRUNNER_PROJECT": str(proj["root"]), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _quick_check(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return str(connection.execute("PRAGMA quick_check").fetchone()[0])


@pytest.mark.extended
def test_store_and_artifacts_fill_up_mid_run(
    project: dict[str, Any],  # noqa: F811
    tmp_path: Path,
    fault_record: Callable[..., None],
) -> None:
    inventory: Path = project["inventory"]
    # h1 pauses 3 s after its first task: time enough for the disk to fill under the run.
    inventory.write_text(
        inventory.read_text().replace("rtx_001_pass=false", "rtx_001_pass=false rtx_sleep=3")
    )
    figures = []
    # 1. The store's file system fills (artifacts elsewhere).
    state = tmp_path / "state1"
    with _tmpfs(tmp_path / "storefs", "3m") as storefs:
        db = storefs / "opsrunner.db"
        Store.open(str(db), state).close()
        _fill_when_started(state / "runs", storefs)
        done = _audit(project, state, str(db))
        said = done.stdout + done.stderr
        assert done.returncode != 0, said
        assert "Traceback" not in said and "database or disk is full" in said, said
        assert _quick_check(db) == "ok"
        (private,) = (state / "runs").glob("*")
        assert f"runs import {private}" in said
        (storefs / "filler").unlink()
        # Room again: the artifacts complete the record, once.
        again = subprocess.run(
            [sys.executable, "-m", "opsrunner", "runs", "import", str(private),
             "--store", str(db), "--state-dir", str(state)],
            env={**os.environ, "OPSRUNNER_PROJECT": str(project["root"]), "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert again.returncode == 0, again
        with Store.open(str(db), state) as store:
            (record,) = store.list_runs()
            rows = store.results(record.id or 0)
        assert record.status in ("failed", "interrupted") and rows
        figures.append(f"store full mid-run: exit {done.returncode}, quick_check ok, "
                       f"{len(rows)} rows after re-import, run {record.status}")  # fmt: skip
    # 2. The state directory (artifacts, evidence and the store) fills.
    with _tmpfs(tmp_path / "statefs", "8m") as statefs:
        _fill_when_started(statefs / "runs", statefs)
        done = _audit(project, statefs)
        said = done.stdout + done.stderr
        assert done.returncode != 0, said
        assert "Traceback" not in said, said
        assert "No space left on device" in said or "disk is full" in said, said
        assert _quick_check(statefs / "opsrunner.db") == "ok"
        figures.append(f"state dir full mid-run: exit {done.returncode}, quick_check ok")
    fault_record(row=5, injected=2, survived=2, figure="; ".join(figures))


def test_a_report_on_a_full_disk_is_never_half_written(
    project: dict[str, Any],  # noqa: F811
    tmp_path: Path,
    fault_record: Callable[..., None],
) -> None:
    state = Path(project["settings"].state_dir)
    store: Store = project["store"]
    now = dt.datetime.now(dt.UTC)
    run = store.begin_run(
        RunRecord(ident="r-report", mode="audit", status="running", started_at=now)
    )
    store.add_results(run.id or 0, [ResultRecord("h1", "RTX-001", "fail", now, reason="x" * 500)])
    store.finish_run(run.id or 0, "failed", ended_at=now)
    with _tmpfs(tmp_path / "reports", "1m") as out:
        old = out / "report.html"
        old.write_text("the previous report\n")
        _fill(out)
        proc = subprocess.run(
            [sys.executable, "-m", "opsrunner", "report", "--format", "html", "-o", str(old),
             "--state-dir", str(state), "--policy", str(project["root"] / "policy")],
            env={**os.environ, "OPSRUNNER_PROJECT": str(project["root"]), "PYTHONPATH": str(REPO)},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode != 0, proc
        assert "Traceback" not in proc.stderr and "No space left" in proc.stderr, proc.stderr
        assert old.read_text() == "the previous report\n"
        assert sorted(p.name for p in out.iterdir()) == ["filler", "report.html"]
        # The daemon's and the demo's publishing: the same on a full disk.
        latest = out / "latest.html"
        (out / "filler").unlink()
        latest.write_text("the previous latest\n")
        _fill(out)
        with pytest.raises(OSError, match="No space left"):
            publish(store, load_policy(project["root"] / "policy"), "r-report", out)
        assert latest.read_text() == "the previous latest\n"
        assert sorted(p.name for p in out.iterdir()) == ["filler", "latest.html", "report.html"]
    fault_record(
        row=5,
        injected=2,
        survived=2,
        figure="report onto a full disk (CLI and publish): fails clearly, the previous report "
        "intact, no temp left",
    )
