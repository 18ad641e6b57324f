"""Fault rows 1 and 2 on real lab hosts: a host cut off mid-run, a host that hangs after connecting.

One small throw-away project (RTX-* controls reported through the result contract, the real
policy beside them) runs on the session lab. The faults are real: host3 rejects SSH from the
middle of the run on (its own nftables rejects port 22, established sessions too), host2's
sshd is stopped (SIGSTOP) after it answered (the connection stays open, nothing comes back).
Both hosts are restored from their overlay afterwards.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from opsrunner.config import Settings
from opsrunner.lab.core import Lab
from opsrunner.runner.reap import run_processes
from opsrunner.runner.run import run
from opsrunner.store import Store
from tests.lab_helpers import reset_hosts

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.faults]

REPO = Path(__file__).resolve().parents[2]

CONTROLS = "controls:\n" + "".join(
    f"""\
  - id: RTX-00{n}
    title: Fault test control {n}
    description: Reported by the fault test playbook.
    source: ["4.2.1"]
    owner: system_administrator
    severity: low
    frequency: daily
    kind: automated
    role: faulttest
    applies_to: [all]
"""
    for n in (1, 2)
)

# The test strikes while every host sleeps in "Let it strike" (see _When).
PLAYBOOK = """\
---
- name: Fault test
  hosts: all
  gather_facts: false
  tasks:
    - name: "RTX-001 | Report before the fault"
      opsrunner.compliance.control:
        id: RTX-001
        passed: true
        evidence: before
    - name: Let it strike
      ansible.builtin.command: sleep 4
      changed_when: false
      check_mode: false
    - name: "RTX-002 | Probe after the fault"
      ansible.builtin.command: "true"
      changed_when: false
      check_mode: false
    - name: "RTX-002 | Report"
      opsrunner.compliance.control:
        id: RTX-002
        passed: true
        evidence: after
"""

CUT = (
    "nft add table inet fault && nft add chain inet fault in "
    "'{ type filter hook input priority -10; policy accept; }' && "
    "nft add rule inet fault in tcp dport 22 reject with tcp reset"
)
HANG = "pkill -STOP -x sshd"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "playbooks").mkdir(parents=True)
    shutil.copytree(REPO / "policy", root / "policy")
    (root / "policy" / "controls" / "zz_faulttest.yml").write_text(CONTROLS, encoding="utf-8")
    cfg = (REPO / "ansible.cfg").read_text(encoding="utf-8").replace("= ./", f"= {REPO}/")
    (root / "ansible.cfg").write_text(cfg, encoding="utf-8")
    (root / "playbooks" / "faulttest.yml").write_text(PLAYBOOK, encoding="utf-8")
    (root / "playbooks" / "site.yml").write_text(
        "---\n- name: Import the fault test playbook\n"
        "  ansible.builtin.import_playbook: faulttest.yml\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("OPSRUNNER_PROJECT", str(root))
    return root


class _When(threading.Thread):
    """Runs `action` once the run's "Let it strike" task has started (read from its artifacts)."""

    def __init__(self, state: Path, action: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.runs = state / "runs"
        self.before = set(self.runs.glob("*")) if self.runs.is_dir() else set()
        self.action = action
        self.fired = threading.Event()
        self.start()

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for run_dir in set(self.runs.glob("*")) - self.before:
                for path in run_dir.glob("artifacts/*/job_events/*.json"):
                    try:
                        event = json.loads(path.read_text())
                    except ValueError:
                        continue
                    data = event.get("event_data") or {}
                    if event.get("event") == "runner_on_start" and data.get("task") == (
                        "Let it strike"
                    ):
                        self.action()
                        self.fired.set()
                        return
            time.sleep(0.1)


def _statuses(store: Store, run_id: int | None) -> dict[tuple[str, str], str]:
    return {(r.host, r.control_id): r.status for r in store.results(run_id or 0)}


@pytest.mark.faults(1, 2)
def test_host_cut_off_mid_run_and_host_hanging_after_connect(
    lab: Lab, project: Path, tmp_path: Path, fault_record: Callable[..., None]
) -> None:
    state = tmp_path / "state"
    policy = str(project / "policy")
    try:
        with Store.open(None, state) as store:
            # Row 1: host3 rejects SSH from the middle of the run on.
            settings = Settings(state_dir=str(state), policy=policy, run_timeout=300)
            hook = _When(state, lambda: lab.ssh("host3", CUT, timeout=10))
            cut = run("audit", lab.inventory_path, store=store, settings=settings)
            assert hook.fired.is_set()
            got = _statuses(store, cut.id)
            hosts = {h.host: h for h in store.hosts(cut.id or 0)}
            assert got[("host3", "RTX-001")] == "pass", got  # before the cut: kept
            assert got[("host3", "RTX-002")] == "unknown", got
            assert not hosts["host3"].reachable and hosts["host3"].reason
            for host in ("host1", "host2"):
                assert got[(host, "RTX-001")] == got[(host, "RTX-002")] == "pass", got
            lost = sum(1 for h in ("host1", "host2") for c in ("RTX-001", "RTX-002")
                       if got.get((h, c)) != "pass")  # fmt: skip
            fault_record(
                row=1,
                injected=1,
                survived=1,
                lost=lost,
                figure=f"host3 cut off mid-run: run {cut.status}, host3 RTX-002 unknown "
                f"({hosts['host3'].reason[:50]}…), host1/host2 4 of 4 results stored",
            )

            # Row 2: host2 answers, then its sshd stops: connected, never answering again.
            short = Settings(state_dir=str(state), policy=policy, run_timeout=25, task_timeout=0)
            started = time.monotonic()
            hook = _When(state, lambda: lab.ssh("host2", HANG, timeout=5))
            hung = run("audit", lab.inventory_path, store=store, settings=short)
            assert hook.fired.is_set()
            took = time.monotonic() - started
            got = _statuses(store, hung.id)
            assert hung.status == "timeout", hung
            assert "exceeded 25s" in hung.reason
            assert got[("host2", "RTX-002")] == "unknown", got
            assert got[("host1", "RTX-001")] == "pass", got  # reported before the hang: kept
            left = run_processes(hung.ident)
            assert not left, f"processes of the timed-out run still running: {left}"
            fault_record(
                row=2,
                injected=1,
                survived=1,
                figure=f"host2 hangs after connecting: run {hung.status} after {took:.0f} s "
                f"(timeout 25 s), host2 RTX-002 unknown, {len(left)} processes left",
            )
    finally:
        reset_hosts(lab, "host2", "host3")
