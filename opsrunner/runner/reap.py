"""End what a stopped run left running: ansible workers, ssh clients and masters."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

IDENT_VAR = "OPSRUNNER_RUN_IDENT"


def run_processes(ident: str, proc: Path = Path("/proc")) -> list[int]:
    """Processes that carry this run's ident in their environment (Linux; [] elsewhere).

    Every process ansible-playbook starts inherits OPSRUNNER_RUN_IDENT, including ssh's
    ControlPersist masters, which outlive the playbook by design.
    """
    marker = f"{IDENT_VAR}={ident}".encode()
    found: list[int] = []
    if not proc.is_dir():
        return found
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def reap(ident: str, grace: float = 3.0) -> list[int]:
    """SIGTERM what a stopped run left running, SIGKILL what is still there after `grace` s.

    A run that timed out or was canceled stops ansible-playbook, not the workers and ssh
    clients waiting on a hung host: they would linger, holding connections and memory.
    Returns the pids that were ended.
    """
    pids = run_processes(ident)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
