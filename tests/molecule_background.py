"""Molecule scenarios run in the background beside the other tests (one at a time).

Each scenario boots its own lab, so the scenarios do not need the session lab, and the lab
tests leave a core mostly idle (they wait on SSH, boots and timeouts). So the scenarios a run
selects start in the background as soon as collection ends, one at a time, beside the other
tests (`pytest_collection_finish` in tests/conftest.py); each test in
tests/integration/test_molecule.py waits for its scenario's outcome and asserts it.
OPSRUNNER_MOLECULE_BACKGROUND=0 runs each scenario when its test comes instead.
"""

from __future__ import annotations

import os
import subprocess
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from opsrunner.paths import project_root

ROOT = project_root()
SCENARIOS = sorted(
    p.parent.name
    for p in (ROOT / "molecule").glob("*/molecule.yml")
    if not p.parent.name.startswith("_")
)
#: Seconds one scenario may take.
SCENARIO_TIMEOUT = 1500

_started: dict[str, Future[tuple[int, str]]] = {}
_running: dict[str, subprocess.Popen[str]] = {}
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _lab_name(scenario: str) -> str:
    # one lab per scenario and pytest run, so a developer's own molecule run does not collide
    return f"m{os.getpid() % 100000}{SCENARIOS.index(scenario)}"


def _molecule(scenario: str) -> tuple[int, str]:
    """`molecule test -s scenario`: (exit code, output)."""
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "OPSRUNNER_MOLECULE_LAB": _lab_name(scenario),
        "ANSIBLE_NOCOLOR": "1",
        "PY_COLORS": "0",
        "NO_COLOR": "1",
    }
    with _lock:
        if _pool is None:  # the session ended before this scenario's turn
            return -1, "not run: the test session ended first"
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "molecule"), "test", "-s", scenario],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        _running[scenario] = proc
    try:
        out, _ = proc.communicate(timeout=SCENARIO_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        out += f"\nmolecule test -s {scenario} killed after {SCENARIO_TIMEOUT}s"
    finally:
        with _lock:
            _running.pop(scenario, None)
    return proc.returncode, out


def start(scenarios: list[str]) -> None:
    """Queue the scenarios, one at a time in this order, in a background thread."""
    global _pool
    if not scenarios:
        return
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="molecule")
        for scenario in scenarios:
            if scenario not in _started:
                _started[scenario] = _pool.submit(_molecule, scenario)


def outcome(scenario: str) -> tuple[int, str]:
    """Wait for the scenario (queued now if collection did not queue it): (exit code, output)."""
    start([scenario])
    return _started[scenario].result()


def stop() -> None:
    """End of the session: drop what has not started, stop what runs, take its lab down."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
        running = dict(_running)
    if pool is None:
        return
    pool.shutdown(wait=False, cancel_futures=True)
    for scenario, proc in running.items():
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "opsrunner"), "lab", "down", "--force", "--name",
             _lab_name(scenario)],
            capture_output=True, check=False, timeout=300,
        )  # fmt: skip
