"""Fault rows 3 and 4: the runner killed at a random event, and a crash before a commit.

Real ansible-runner runs of the throw-away runner test project (local-connection hosts, see
tests/integration/test_runner_local.py). The runner is killed (SIGKILL, SIGTERM) once the run's
artifacts hold a randomly chosen number of events; or it crashes (os._exit) inside the store
write, after the events arrived and before their results were committed. The store is then
compared with the artifacts: nothing stored is lost or doubled, re-import is idempotent.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from opsrunner.runner.events import Collector, read_artifact_events
from opsrunner.runner.run import import_artifacts
from opsrunner.store import Store
from tests.integration.test_runner_local import project  # noqa: F401 - the shared fixture

pytestmark = [pytest.mark.slow, pytest.mark.faults]

REPO = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("OPSRUNNER_FAULT_SEED", str(int(time.time()) % 100_000)))


def _cli(proj: dict[str, Any], *args: str) -> list[str]:
    settings = proj["settings"]
    return [
        sys.executable,
        "-m",
        "opsrunner",
        *args,
        "--state-dir",
        str(settings.state_dir),
    ]


def _env(proj: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, "OPSRUNNER_PROJECT": str(proj["root"]), "PYTHONPATH": str(REPO)}


def _events(state: Path) -> tuple[Path | None, int]:
    """The newest run's private dir and how many events its artifacts hold."""
    runs = sorted((state / "runs").glob("*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        return None, 0
    return runs[-1], len(list(runs[-1].glob("artifacts/*/job_events/*.json")))


def _processes_of(ident: str) -> list[int]:
    marker = f"OPSRUNNER_RUN_IDENT={ident}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _rows(store: Store, ident: str) -> list[tuple[str, str, str, str]]:
    run = store.get_run(ident)
    with store.engine.connect() as connection:
        return [
            tuple(r)
            for r in connection.exec_driver_sql(
                "SELECT host, control_id, status, evidence_sha256 FROM results WHERE run_id = ?",
                (run.id,),
            )
        ]


def _expected(private: Path) -> dict[tuple[str, str], str]:
    """What the artifacts say, host x control -> status (the events the store must hold)."""
    meta = json.loads((private / "opsrunner-run.json").read_text())
    collector = Collector(None, meta.get("controls"))
    for event in read_artifact_events(Path(meta["record"]["artifact_dir"])):
        collector.feed(event)
    return {(r.host, r.control_id): r.status for r in collector.results()}


def _check(
    store: Store, private: Path, before: list[tuple[str, str, str, str]]
) -> tuple[int, int, str]:
    """After recovery: (results lost, duplicates, run status)."""
    ident = private.name
    after = _rows(store, ident)
    keys = [(h, c) for h, c, _s, _e in after]
    duplicates = len(keys) - len(set(keys))
    stored = {(h, c): s for h, c, s, _e in after}
    lost = sum(1 for h, c, s, _e in before if stored.get((h, c)) != s)
    lost += sum(1 for k, s in _expected(private).items() if stored.get(k) != s)
    return lost, duplicates, store.get_run(ident).status


@pytest.mark.extended
@pytest.mark.faults(3)
def test_runner_killed_at_a_random_event(
    project: dict[str, Any],  # noqa: F811
    fault_record: Callable[..., None],
) -> None:
    state = Path(project["settings"].state_dir)
    store: Store = project["store"]
    inventory: Path = project["inventory"]
    # h1 pauses 30 s after its first results: there is always an event left to be killed at.
    inventory.write_text(
        inventory.read_text().replace("rtx_001_pass=false", "rtx_001_pass=false rtx_sleep=30")
    )
    rng = random.Random(SEED)
    figures = []
    for sig in (signal.SIGKILL, signal.SIGTERM):
        already = (
            {p.name for p in (state / "runs").glob("*")} if (state / "runs").exists() else set()
        )
        at = rng.randint(3, 40)
        proc = subprocess.Popen(
            _cli(project, "audit", "--plain", "--no-summary", "-i", str(inventory),
                 "--limit", "h1:h2", "--policy", str(project["root"] / "policy")),
            env=_env(project), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        private, seen = None, 0
        while time.monotonic() < deadline and proc.poll() is None:
            private, seen = _events(state)
            if private is not None and private.name not in already and seen >= at:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before event {at}: {proc.communicate()[0]}"
        assert private is not None
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=120)
        ident = private.name
        before = _rows(store, ident)
        # No process of the run outlives the runner (ansible-playbook, its workers).
        deadline = time.monotonic() + 10
        while _processes_of(ident) and time.monotonic() < deadline:
            time.sleep(0.2)
        orphans = _processes_of(ident)
        for pid in orphans:
            os.kill(pid, signal.SIGKILL)
        assert not orphans, f"{sig.name}: processes left running: {orphans}"
        if sig == signal.SIGKILL:
            assert store.get_run(ident).status == "running"
            # The CLI's re-import finishes it; a second import changes nothing.
            done = subprocess.run(
                _cli(project, "runs", "import", str(private)),
                env=_env(project), capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done
            rows = sorted(_rows(store, ident))
            import_artifacts(store, private, state)
            assert sorted(_rows(store, ident)) == rows
        else:
            assert proc.returncode != 0, output
        lost, duplicates, status = _check(store, private, before)
        # SIGTERM is a request to stop: ansible-runner cancels, recorded `canceled`.
        assert status == ("interrupted" if sig == signal.SIGKILL else "canceled"), (status, output)
        assert (lost, duplicates) == (0, 0)
        unknown = [r for r in store.results(store.get_run(ident).id or 0) if r.status == "unknown"]
        assert unknown, "a killed run must leave its unreported controls unknown"
        figures.append(
            f"{sig.name} at event {seen} (target {at}, seed {SEED}): {status}, "
            f"{len(before)} rows stored before kept, {lost} lost, {duplicates} duplicates"
        )
        fault_record(row=3, injected=1, survived=1, lost=lost, duplicates=duplicates)
    fault_record(row=3, figure="; ".join(figures))


CRASH = """
import os, sys
from opsrunner.store.store import Store
from opsrunner.cli import main
calls = {"n": 0}
original = Store.add_results
def crashing(self, run_id, results):
    calls["n"] += 1
    if calls["n"] == int(os.environ["CRASH_AT"]):
        os._exit(70)  # events received and handed to the store, nothing committed
    return original(self, run_id, results)
Store.add_results = crashing
sys.argv = ["opsrunner", *sys.argv[1:]]
main()
"""


@pytest.mark.faults(4)
def test_crash_before_commit_then_reimport_is_idempotent(
    project: dict[str, Any],  # noqa: F811
    fault_record: Callable[..., None],
) -> None:
    state = Path(project["settings"].state_dir)
    store: Store = project["store"]
    # Batches of 3: the crash in the 2nd write of the end-of-play flush leaves 3 rows committed
    # and the rest received, not committed (the stats event itself never reached the artifacts).
    config_file = project["tmp"] / "opsrunner.yml"
    config_file.write_text("batch_size: 3\n")
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, "audit", "--plain", "--no-summary",
         "-i", str(project["inventory"]), "--limit", "h1:h2",
         "--policy", str(project["root"] / "policy"), "--state-dir", str(state)],
        env={**_env(project), "CRASH_AT": "2", "OPSRUNNER_CONFIG": str(config_file)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 70, proc
    (private,) = (state / "runs").glob("*")
    ident = private.name
    before = _rows(store, ident)
    assert store.get_run(ident).status == "running"
    rounds = []
    for _ in range(3):
        import_artifacts(store, private, state)
        rounds.append(sorted(_rows(store, ident)))
    assert rounds[0] == rounds[1] == rounds[2]
    lost, duplicates, status = _check(store, private, before)
    assert before and status == "interrupted" and (lost, duplicates) == (0, 0)
    # Into a fresh store, twice: the same rows again.
    other = Store.open(None, project["tmp"] / "other")
    try:
        import_artifacts(other, private)
        import_artifacts(other, private)
        assert len(other.list_runs()) == 1
        again = sorted(_rows(other, ident))
        assert [(h, c, s) for h, c, s, _e in again] == [(h, c, s) for h, c, s, _e in rounds[0]]
    finally:
        other.close()
    fault_record(
        row=4,
        injected=1,
        survived=1,
        lost=lost,
        duplicates=duplicates,
        figure=f"crash in the 2nd store write: {len(before)} rows committed before, "
        f"{len(rounds[0])} after 3 re-imports (and 2 into a fresh store), "
        f"{lost} lost, {duplicates} duplicates, run {status}",
    )
