"""Real ansible-runner runs recorded end to end, on local-connection hosts of a throw-away project.

The project is a copy of the real policy plus a small `runnertest` role playbook that reports
RTX-* controls through the result contract, so every runner path (merge, error, unreachable,
cancel, timeout, kill, lock, artifact import) is driven by real Ansible events without touching
this machine: the tasks only run `true`, `false`, `sleep` and write files under tmp.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsrunner.config import Settings
from opsrunner.runner import evidence
from opsrunner.runner.progress import PlainReporter
from opsrunner.runner.run import RunError, import_artifacts, lock_name, recover_stale, run
from opsrunner.store import ResultRecord, RunRecord, Store

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

CONTROLS = """\
controls:
""" + "".join(
    f"""\
  - id: RTX-00{n}
    title: Runner test control {n}
    description: Reported by the runner test playbook.
    source: ["4.2.1"]
    owner: system_administrator
    severity: {sev}
    frequency: daily
    kind: automated
    role: runnertest
    applies_to: [{applies}]
"""
    for n, sev, applies in [
        (1, "high", "all"),
        (2, "medium", "web"),
        (3, "low", "all"),
        (4, "low", "all"),
        (5, "low", "all"),
    ]
)

PLAYBOOK = """\
---
- name: Runner test role
  hosts: all
  gather_facts: false
  tasks:
    - name: "RTX-001 | Probe the host"
      ansible.builtin.command: "true"
      changed_when: false
      check_mode: false
    - name: "RTX-001 | Report"
      opsrunner.compliance.control:
        id: RTX-001
        passed: "{{ rtx_001_pass | default(true) }}"
        evidence: "{{ rtx_evidence | default('first look') }}"
        data: {host: "{{ inventory_hostname }}"}
      tags: [rtx-001]
    - name: "RTX-001 | Report a second look"
      opsrunner.compliance.control:
        id: RTX-001
        passed: true
        evidence: second look
    - name: "RTX-002 | Ensure the marker file"
      ansible.builtin.copy:
        content: "x"
        dest: "{{ rtx_marker }}"
        mode: "0644"
      register: __rtx_marker
      when: rtx_marker is defined
    - name: "RTX-002 | Report"
      opsrunner.compliance.control:
        id: RTX-002
        drift: "{{ __rtx_marker.changed }}"
        evidence: "{{ rtx_marker }}"
      when: rtx_marker is defined
    - name: "RTX-003 | Broken probe"
      ansible.builtin.command: "false"
      changed_when: false
      check_mode: false
      when: rtx_break | default(false)
    - name: "RTX-004 | Report"
      opsrunner.compliance.control:
        id: RTX-004
        applicable: false
        reason: no such service here
    - name: Pause
      ansible.builtin.command: "sleep {{ rtx_sleep }}"
      changed_when: false
      check_mode: false
      when: rtx_sleep is defined
    - name: "RTX-005 | Report after the pause"
      opsrunner.compliance.control:
        id: RTX-005
        passed: true
"""

OPERATE = """\
---
- name: Echo job
  hosts: all
  gather_facts: false
  tasks:
    - name: "RTX-005 | Job ran"
      opsrunner.compliance.control:
        id: RTX-005
        passed: true
        evidence: job done
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    root = tmp_path / "project"
    (root / "playbooks").mkdir(parents=True)
    shutil.copytree(REPO / "policy", root / "policy")
    (root / "policy" / "controls" / "zz_runnertest.yml").write_text(CONTROLS, encoding="utf-8")
    cfg = (REPO / "ansible.cfg").read_text(encoding="utf-8").replace("= ./", f"= {REPO}/")
    (root / "ansible.cfg").write_text(cfg, encoding="utf-8")
    (root / "playbooks" / "runnertest.yml").write_text(PLAYBOOK, encoding="utf-8")
    (root / "playbooks" / "operate_echo.yml").write_text(OPERATE, encoding="utf-8")
    (root / "playbooks" / "site.yml").write_text(
        "---\n- name: Import the runner test playbook\n"
        "  ansible.builtin.import_playbook: runnertest.yml\n",
        encoding="utf-8",
    )
    local = f"ansible_connection=local ansible_python_interpreter={sys.executable}"
    inventory = root / "hosts.ini"
    inventory.write_text(
        "[web]\n"
        f"h1 {local} rtx_001_pass=false rtx_marker={tmp_path}/h1.marker rtx_evidence={'E' * 3000}\n"
        "[db]\n"
        f"h2 {local} rtx_break=true\n"
        # A closed port on loopback: refused at once, so the host is unreachable.
        "down ansible_host=127.0.0.1 ansible_port=9 ansible_user=nobody ansible_connection=ssh\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("OPSRUNNER_PROJECT", str(root))
    state = tmp_path / "state"
    settings = Settings(
        state_dir=str(state), policy=str(root / "policy"), task_timeout=60, run_timeout=300
    )
    store = Store.open(None, state)
    try:
        yield {
            "root": root,
            "inventory": inventory,
            "settings": settings,
            "store": store,
            "tmp": tmp_path,
        }
    finally:
        store.close()


def _by_key(store: Store, run: RunRecord) -> dict[tuple[str, str], ResultRecord]:
    assert run.id is not None
    return {(r.host, r.control_id): r for r in store.results(run.id)}


def test_audit_then_enforce_recorded_end_to_end(project: dict[str, Any]) -> None:
    store: Store = project["store"]
    settings: Settings = project["settings"]
    lines = io.StringIO()
    audit = run(
        "audit", project["inventory"], store=store, settings=settings, reporter=PlainReporter(lines)
    )
    assert audit.status == "failed"  # a host was unreachable and one failed a task
    assert audit.policy_digest and audit.user and audit.mode == "audit"
    assert audit.ended_at is not None and audit.ended_at >= audit.started_at
    got = _by_key(store, audit)
    statuses = {k: r.status for k, r in got.items()}
    assert statuses == {
        ("h1", "RTX-001"): "fail",  # worst of fail and pass
        ("h1", "RTX-002"): "fail",  # drift in check mode
        ("h1", "RTX-003"): "error",  # in scope, h1 was fine, yet nothing reported it
        ("h1", "RTX-004"): "notapplicable",
        ("h1", "RTX-005"): "pass",
        ("h2", "RTX-001"): "pass",
        ("h2", "RTX-003"): "error",  # an unrescued failing task named "RTX-003 | …"
        ("h2", "RTX-004"): "unknown",  # h2 stopped at the failure
        ("h2", "RTX-005"): "unknown",
        ("down", "RTX-001"): "unknown",
        ("down", "RTX-003"): "unknown",
        ("down", "RTX-004"): "unknown",
        ("down", "RTX-005"): "unknown",
    }
    assert "unreachable" in got[("down", "RTX-001")].reason
    assert got[("h1", "RTX-003")].reason.startswith("no result reported")
    assert "failed" in got[("h2", "RTX-003")].reason
    assert got[("h2", "RTX-001")].evidence == "first look; second look"
    # Evidence trimmed on the result, the full report content-addressed in the store.
    h1 = got[("h1", "RTX-001")]
    assert h1.evidence_truncated and len(h1.evidence) <= evidence.TRIM
    full = evidence.load(store, h1.evidence_sha256) or b""
    assert hashlib.sha256(full).hexdigest() == h1.evidence_sha256
    assert "E" * 1999 in full.decode()
    hosts = {h.host: h for h in store.hosts(audit.id or 0)}
    assert not hosts["down"].reachable and hosts["h1"].groups == ("all", "web")
    assert not (project["tmp"] / "h1.marker").exists(), "audit changed the host"
    # Every host x control printed once, with the status stored (the end-of-run rows too).
    printed = [ln.split()[1:4] for ln in lines.getvalue().splitlines() if ln.startswith("[")]
    assert sorted((h, c, s) for h, c, s in printed) == sorted(
        (h, c, r.status) for (h, c), r in got.items()
    ), lines.getvalue()
    # The project's callback loads under ansible-runner too: no warning, results.json written.
    artifacts = Path(audit.artifact_dir)
    assert "Skipping callback plugin" not in (artifacts / "stdout").read_text()
    written = json.loads((artifacts.parents[1] / "results.json").read_text())
    assert written["format"] == "opsrunner-results/1"
    assert written["hosts"]["h1"]["controls"]["RTX-001"]["status"] == "fail"

    enforce = run("enforce", project["inventory"], store=store, settings=settings, limit="h1")
    assert enforce.status == "successful" and enforce.limit == "h1"
    fixed = _by_key(store, enforce)
    assert fixed[("h1", "RTX-002")].status == "pass" and fixed[("h1", "RTX-002")].remediated
    assert (project["tmp"] / "h1.marker").exists()
    assert {h for h, _ in fixed} == {"h1"}

    # Artifacts are the recovery path: importing them again adds no rows, here or elsewhere.
    private = Path(audit.artifact_dir).parents[1]
    again = import_artifacts(store, private, Path(settings.state_dir or ""))
    assert again.id == audit.id and _by_key(store, again) == got
    other = Store.open(None, project["tmp"] / "other")
    try:
        first = import_artifacts(other, private)
        second = import_artifacts(other, private)
        assert first.id == second.id and len(other.list_runs()) == 1
        assert {k: r.status for k, r in _by_key(other, second).items()} == {
            k: r.status for k, r in got.items() if r.status != "notchecked" and k[0] != "down"
        } | {k: r.status for k, r in got.items() if r.status == "notchecked" or k[0] == "down"}
    finally:
        other.close()


def test_controls_filter_runs_only_those(project: dict[str, Any]) -> None:
    store: Store = project["store"]
    record = run(
        "audit",
        project["inventory"],
        store=store,
        settings=project["settings"],
        controls=["rtx-004"],
        limit="h1",
    )
    assert record.controls == ("RTX-004",)
    assert {k: r.status for k, r in _by_key(store, record).items()} == {
        ("h1", "RTX-004"): "notapplicable"
    }
    with pytest.raises(RunError, match="RTX-999"):
        run(
            "audit",
            project["inventory"],
            store=store,
            settings=project["settings"],
            controls=["RTX-999"],
        )


def test_an_unreachable_host_keeps_what_did_not_apply(project: dict[str, Any]) -> None:
    store: Store = project["store"]
    # An earlier audit, when "down" still answered: RTX-004 did not apply there.
    then = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    earlier = store.begin_run(
        RunRecord(
            ident="20261201T000000Z-audit-earlier", mode="audit", status="running", started_at=then
        )
    )
    assert earlier.id is not None
    store.add_results(
        earlier.id,
        [
            ResultRecord("down", "RTX-004", "notapplicable", then, reason="no such service here"),
            ResultRecord("down", "RTX-001", "pass", then),
        ],
    )
    store.finish_run(earlier.id, "successful", ended_at=then)
    record = run(
        "audit", project["inventory"], store=store, settings=project["settings"], limit="down"
    )
    got = _by_key(store, record)
    assert got[("down", "RTX-004")].status == "notapplicable"
    assert "host unreachable" in got[("down", "RTX-004")].reason
    assert (
        f"not applicable when last checked {then.isoformat(timespec='seconds')} "
        "(run 20261201T000000Z-audit-earlier): no such service here"
    ) in got[("down", "RTX-004")].reason
    # What applied then is unknown now: never passing.
    assert got[("down", "RTX-001")].status == "unknown"
    assert got[("down", "RTX-005")].status == "unknown"


def test_a_tags_run_records_what_it_selected(project: dict[str, Any]) -> None:
    store: Store = project["store"]
    record = run(
        "audit",
        project["inventory"],
        store=store,
        settings=project["settings"],
        tags="rtx-001,rtx-002",
        limit="h1",
    )
    # Selected: RTX-001 (its report is tagged) and RTX-002 (named by the tag, yet none of its
    # tasks carries it, so nothing reports it: an error, never a silent gap in the score).
    assert record.controls == ("RTX-001", "RTX-002")
    got = _by_key(store, record)
    assert {k: r.status for k, r in got.items()} == {
        ("h1", "RTX-001"): "fail",
        ("h1", "RTX-002"): "error",
        ("h1", "RTX-003"): "notchecked",
        ("h1", "RTX-004"): "notchecked",
        ("h1", "RTX-005"): "notchecked",
    }
    assert got[("h1", "RTX-002")].reason.startswith("no result reported")
    assert got[("h1", "RTX-004")].reason == "filtered out by --tags rtx-001,rtx-002"
    assert store.get_run(record.ident).controls == ("RTX-001", "RTX-002")
    # The artifacts say the same when imported elsewhere.
    other = Store.open(None, project["tmp"] / "other-tags")
    try:
        again = import_artifacts(other, Path(record.artifact_dir).parents[1])
        assert {k: r.status for k, r in _by_key(other, again).items()} == {
            k: r.status for k, r in got.items()
        }
    finally:
        other.close()
    with pytest.raises(RunError, match="--tags nothing-here: selects none"):
        run(
            "audit",
            project["inventory"],
            store=store,
            settings=project["settings"],
            tags="nothing-here",
        )


class _WhenPaused(threading.Thread):
    """Acts once the run's "Pause" task (the sleep) has started: cancel, or kill ansible.

    Results are recorded once their play ends, so the signal is the task start in the run's
    artifacts (ansible-runner's job_events), which are written as the events arrive.
    """

    def __init__(self, state_dir: str | None, action: Any) -> None:
        super().__init__(daemon=True)
        self.runs = Path(state_dir or "") / "runs"
        self.before = set(self.runs.glob("*")) if self.runs.is_dir() else set()
        self.action = action
        self.fired = threading.Event()
        self.start()

    def _paused(self) -> bool:
        for run_dir in set(self.runs.glob("*")) - self.before:
            for path in run_dir.glob("artifacts/*/job_events/*.json"):
                try:
                    event = json.loads(path.read_text())
                except ValueError:
                    continue
                data = event.get("event_data") or {}
                if event.get("event") == "playbook_on_task_start" and data.get("task") == "Pause":
                    return True
        return False

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self._paused():
                self.fired.set()
                self.action()
                return
            time.sleep(0.2)


def _kill_run_processes(ident: str) -> int:
    """SIGKILL the ansible processes of this run only (found by the ident in their environment)."""
    killed = 0
    marker = f"OPSRUNNER_RUN_IDENT={ident}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except (OSError, ProcessLookupError):
            continue
    return killed


def test_cancel_timeout_and_kill_are_recorded_never_compliant(project: dict[str, Any]) -> None:
    store: Store = project["store"]
    settings: Settings = project["settings"]
    cancel = threading.Event()
    hook = _WhenPaused(settings.state_dir, cancel.set)
    canceled = run(
        "audit",
        project["inventory"],
        store=store,
        settings=settings,
        limit="h1",
        extravars={"rtx_sleep": 60},
        cancel=cancel,
    )
    assert hook.fired.is_set()
    assert canceled.status == "canceled"
    results = _by_key(store, canceled)
    assert results[("h1", "RTX-005")].status == "unknown"
    assert "canceled" in results[("h1", "RTX-005")].reason
    assert results[("h1", "RTX-004")].status == "notapplicable"  # done before the cancel: kept

    short = settings.model_copy(update={"run_timeout": 4})
    timed = run(
        "audit",
        project["inventory"],
        store=store,
        settings=short,
        limit="h1",
        extravars={"rtx_sleep": 60},
    )
    assert timed.status == "timeout"
    assert _by_key(store, timed)[("h1", "RTX-005")].status == "unknown"

    holder: dict[str, str] = {}

    def kill() -> None:
        (ident,) = [r.ident for r in store.running()]
        holder["ident"] = ident
        assert _kill_run_processes(ident) >= 1

    _WhenPaused(settings.state_dir, kill)
    killed = run(
        "audit",
        project["inventory"],
        store=store,
        settings=settings,
        limit="h1",
        extravars={"rtx_sleep": 60},
    )
    assert killed.ident == holder["ident"]
    assert killed.status == "interrupted"
    assert _by_key(store, killed)[("h1", "RTX-005")].status == "unknown"

    # A controller crash leaves the run "running": its artifacts finish it as interrupted.
    fresh = Store.open(None, project["tmp"] / "recovered")
    try:
        recovered = import_artifacts(fresh, Path(killed.artifact_dir).parents[1])
        assert recovered.status == "interrupted"
        assert _by_key(fresh, recovered)[("h1", "RTX-005")].status == "unknown"
    finally:
        fresh.close()
    # The daemon does the same on start for runs stuck in "running" past the run timeout.
    stuck = Store.open(None, project["tmp"] / "stuck")
    try:
        stuck.begin_run(
            dataclasses.replace(killed, id=None, status="running", ended_at=None, reason="")
        )
        assert recover_stale(stuck, 300, killed.started_at + dt.timedelta(seconds=30)) == []
        (fixed,) = recover_stale(stuck, 300, killed.started_at + dt.timedelta(hours=1))
        assert fixed.status == "interrupted" and stuck.running() == []
    finally:
        stuck.close()


def test_overlapping_run_is_recorded_as_skipped(project: dict[str, Any]) -> None:
    store: Store = project["store"]
    settings: Settings = project["settings"]
    with store.lock(lock_name(project["root"] / "policy", project["inventory"])):
        skipped = run("audit", project["inventory"], store=store, settings=settings)
    assert skipped.status == "skipped" and "overlap" in skipped.reason
    assert store.results(skipped.id or 0) == []


def test_operate_job_is_recorded_like_any_run(project: dict[str, Any]) -> None:
    store: Store = project["store"]
    record = run(
        "operate",
        project["inventory"],
        job="echo",
        store=store,
        settings=project["settings"],
        limit="h1",
    )
    assert (record.mode, record.job, record.status) == ("operate", "echo", "successful")
    assert record.playbook == "playbooks/operate_echo.yml"
    assert _by_key(store, record)[("h1", "RTX-005")].evidence == "job done"
    with pytest.raises(RunError, match="operate_nope"):
        run("operate", project["inventory"], job="nope", store=store, settings=project["settings"])


@pytest.mark.faults(8)
def test_daemon_runs_a_due_job_and_skips_an_overlapping_one(project: dict[str, Any]) -> None:
    from opsrunner.schedule import Daemon, Job

    store: Store = project["store"]
    job = Job("audit-rtx", "audit", "0 3 * * *", controls=("RTX-004",), limit="h1")
    moments = [dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)]
    daemon = Daemon(
        project["settings"],
        store,
        [job],
        project["inventory"],
        runner=run,
        clock=lambda: moments[-1],
    )
    # Another run (here: this test) holds the policy + inventory lock: recorded as skipped.
    with store.lock(lock_name(project["root"] / "policy", project["inventory"])):
        (skipped,) = daemon.run_due()
    assert (skipped.status, skipped.job, skipped.late) == ("skipped", "audit-rtx", True)
    assert daemon.run_due() == []
    # At the next fire time the job runs for real, on time.
    moments.append(moments[0].replace(hour=3, minute=1) + dt.timedelta(days=1))
    (ran,) = daemon.run_due()
    assert (ran.status, ran.mode, ran.late, ran.controls) == (
        "successful",
        "audit",
        False,
        ("RTX-004",),
    )
    assert ran.scheduled_for == moments[-1].replace(minute=0)
    assert {(r.host, r.control_id): r.status for r in store.results(ran.id or 0)} == {
        ("h1", "RTX-004"): "notapplicable"
    }


def test_sigterm_cancels_the_cli_run_cleanly(project: dict[str, Any]) -> None:
    import subprocess

    settings: Settings = project["settings"]
    env = dict(os.environ, OPSRUNNER_PROJECT=str(project["root"]))
    cli = [
        str(Path(sys.executable).parent / "opsrunner"),
        "audit",
        "--plain",
        "--no-summary",
        "-i",
        str(project["inventory"]),
        "--limit",
        "h1",
        "--state-dir",
        str(settings.state_dir),
        "--policy",
        str(project["root"] / "policy"),
    ]
    # rtx_sleep comes from the inventory here: the CLI has no extra-vars flag.
    inventory: Path = project["inventory"]
    inventory.write_text(
        inventory.read_text().replace("rtx_001_pass=false", "rtx_001_pass=false rtx_sleep=60")
    )
    holder: dict[str, subprocess.Popen[str]] = {}
    # Once the sleep runs, RTX-001 has been reported (its play is still going): SIGTERM then.
    hook = _WhenPaused(str(settings.state_dir), lambda: holder["proc"].send_signal(signal.SIGTERM))
    proc = holder["proc"] = subprocess.Popen(
        cli, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    output, _ = proc.communicate(timeout=120)
    assert hook.fired.is_set()
    assert proc.returncode == 1, output
    assert "canceled" in output
    store: Store = project["store"]
    (record,) = store.list_runs()
    assert record.status == "canceled" and record.ended_at is not None
    got = _by_key(store, record)
    assert got[("h1", "RTX-001")].status == "fail"
    assert got[("h1", "RTX-005")].status == "unknown"
    # The rows written at the end are printed too, each host x control once.
    printed = [ln.split()[1:4] for ln in output.splitlines() if ln.startswith("[")]
    assert sorted(tuple(p) for p in printed) == sorted(
        (h, c, r.status) for (h, c), r in got.items()
    ), output
