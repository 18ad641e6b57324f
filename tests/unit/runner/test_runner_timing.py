"""Task durations from runner events, stored with the run and shown by `runs show --timing`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.runner.timing import TimingCollector, summarise
from opsrunner.store import RunRecord, Store
from opsrunner.store.timings import set_timings, timings

T0 = dt.datetime(2026, 11, 28, 0, 0, tzinfo=dt.UTC)
IDENT = "20261128T000000Z-audit-time0001"

# (role, task, {host: seconds}); the task named by FW-001 also loops, PAT-001 fails on host2.
TASKS: list[tuple[str, str, dict[str, float]]] = [
    ("", "Gathering Facts", {"host1": 1.5, "host2": 2.5}),
    ("firewall", "Probe the ruleset", {"host1": 4.0, "host2": 6.0}),
    ("firewall", "FW-001 | Report the input chain policy", {"host1": 0.5, "host2": 0.25}),
    ("firewall", "FW-002 | Report open ports", {"host1": 0.25, "host2": 0.25}),
    ("patching", "PAT-001 | Report pending updates", {"host1": 10.0, "host2": 20.0}),
]


def _events() -> list[dict[str, Any]]:
    """What ansible-runner streams for TASKS: a task start, then per host a start and an end."""
    events: list[dict[str, Any]] = []
    counter = 0
    clock = T0
    for number, (role, task, hosts) in enumerate(TASKS):
        uuid = f"uuid-{number}"
        common = {"task_uuid": uuid, "task": task, "role": role, "play": "site"}
        counter += 1
        events.append({"counter": counter, "event": "playbook_on_task_start", "event_data": common})
        for host in hosts:
            counter += 1
            events.append(
                {
                    "counter": counter,
                    "event": "runner_on_start",
                    "event_data": {**common, "host": host},
                }
            )
        for host, seconds in hosts.items():
            counter += 1
            failed = task.startswith("PAT") and host == "host2"
            kind = "runner_on_failed" if failed else "runner_on_ok"
            data = {
                **common,
                "host": host,
                "task_action": "ansible.builtin.command",
                "res": {"changed": task.startswith("Probe")},
                # ansible-runner writes naive UTC stamps and the duration in seconds
                "start": clock.replace(tzinfo=None).isoformat(),
                "end": (clock + dt.timedelta(seconds=seconds)).replace(tzinfo=None).isoformat(),
                "duration": seconds,
            }
            events.append({"counter": counter, "event": kind, "event_data": data})
        clock += dt.timedelta(seconds=max(hosts.values()))
    return events


def test_durations_per_task_and_host_from_events() -> None:
    collector = TimingCollector()
    events = _events()
    for event in events + events[:5]:  # a re-fed event (artifact import) counts once
        collector.feed(event)
    records = collector.records()
    assert len(records) == 10
    assert [r.task for r in records[::2]] == [t for _, t, _ in TASKS]
    first = records[0]
    assert first.started_at == T0 and first.duration == 1.5 and first.status == "ok"
    assert {r.status for r in records if r.task.startswith("Probe")} == {"changed"}
    assert {(r.host, r.status) for r in records if r.task.startswith("PAT")} == {
        ("host1", "ok"),
        ("host2", "failed"),
    }


def test_summary_slowest_first_with_totals_and_shares() -> None:
    collector = TimingCollector()
    for event in _events():
        collector.feed(event)
    timing = summarise(collector.records(), IDENT, T0, T0 + dt.timedelta(seconds=40))
    assert timing.seconds == pytest.approx(45.25) and timing.wall == 40.0
    assert timing.hosts == 2 and timing.executions == 10
    assert [(line.name, line.seconds) for line in timing.roles] == [
        ("patching", 30.0),
        ("firewall", 11.25),
        ("(play) site", 4.0),
    ]
    assert timing.roles[0].share == pytest.approx(30 / 45.25)
    assert sum(line.share for line in timing.roles) == pytest.approx(1.0)
    slowest = timing.tasks[0]
    assert (slowest.name, slowest.slowest_host, slowest.slowest_seconds) == (
        "PAT-001 | Report pending updates",
        "host2",
        20.0,
    )
    assert [line.name for line in timing.controls] == ["PAT-001", "FW-001", "FW-002"]
    assert [(line.name, line.seconds) for line in timing.by_host] == [
        ("host2", 29.0),
        ("host1", 16.25),
    ]


def test_runs_show_timing_text_and_json(tmp_path: Path) -> None:
    collector = TimingCollector()
    for event in _events():
        collector.feed(event)
    with Store.open(None, tmp_path) as store:
        run = store.begin_run(RunRecord(ident=IDENT, mode="audit", status="running", started_at=T0))
        assert run.id is not None
        set_timings(store, run.id, collector.records())
        set_timings(store, run.id, collector.records())  # replaced, not doubled
        assert len(timings(store, run.id)) == 10
        store.finish_run(run.id, "successful", ended_at=T0 + dt.timedelta(seconds=40))
        empty = store.begin_run(
            RunRecord(
                ident="20261128T010000Z-audit-none0001",
                mode="audit",
                status="running",
                started_at=T0,
            )
        )
        exported = store.export(tmp_path / "export.jsonl")
        assert exported["task_timings"] == 10
    args = ["--store", str(tmp_path / "opsrunner.db"), "--state-dir", str(tmp_path)]
    runner = CliRunner()
    shown = runner.invoke(app, ["runs", "show", IDENT, "--timing", *args])
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0] == f"run {IDENT}: wall 40.0s, 2 hosts, 10 task runs, 45.2 host-seconds in tasks"
    roles = lines.index("Roles, slowest first:")
    assert lines[roles + 2].split() == ["30.0", "66.3%", "2", "20.0", "patching"]
    assert "PAT-001 | Report pending updates" in lines[lines.index("Tasks, slowest first:") + 2]
    as_json = runner.invoke(app, ["runs", "show", IDENT, "--timing", "--format", "json", *args])
    data = json.loads(as_json.stdout)
    assert data["host_seconds"] == pytest.approx(45.25) and data["wall_seconds"] == 40.0
    assert [row["name"] for row in data["controls"]] == ["PAT-001", "FW-001", "FW-002"]
    assert len(data["tasks"]) == len(TASKS)
    none = runner.invoke(app, ["runs", "show", empty.ident, "--timing", *args])
    assert none.exit_code == 0 and "no task durations recorded" in none.stdout
