"""What a run leaves in its artifacts: events stripped of task output, still enough to re-import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opsrunner.runner import artifacts
from opsrunner.runner.events import Collector, read_artifact_events
from opsrunner.runner.timing import TimingCollector

SECRET = "s3cr3t-canary"


def _events() -> list[dict[str, Any]]:
    """One play: a control that reports, a loop of control reports, a failing control task,
    a failing task echoing a secret, an unreachable host, the stats."""

    def event(n: int, kind: str, **data: Any) -> dict[str, Any]:
        return {
            "event": kind,
            "counter": n,
            "uuid": f"u{n}",
            "created": f"2026-12-01T08:00:{n:02d}.000000",
            "stdout": f"TASK output {SECRET}",
            "start_line": n,
            "event_data": {
                "play": "p",
                "task_uuid": f"t{n}",
                "start": "2026-12-01T08:00:00",
                "end": "2026-12-01T08:00:01",
                "duration": 1.0,
                "task_args": f"cmd={SECRET}",
                **data,
            },
        }

    report = {"id": "FW-001", "status": "fail", "evidence": "e", "reason": "r", "data": {"k": 1}}
    return [
        event(1, "playbook_on_play_start", name="p"),
        event(2, "playbook_on_task_start", task="FW-001 | Report"),
        event(3, "runner_on_start", host="h1", task="FW-001 | Report"),
        event(
            4,
            "runner_on_ok",
            host="h1",
            task="FW-001 | Report",
            res={"changed": False, "opsrunner_control": report, "stdout": SECRET},
        ),
        event(
            5,
            "runner_on_ok",
            host="h1",
            task="FW-002 | Report each",
            res={
                "changed": True,
                "results": [
                    {"item": SECRET, "opsrunner_control": dict(report, id="FW-002")},
                    {"item": SECRET, "stdout": SECRET},
                ],
            },
        ),
        event(6, "runner_item_on_ok", host="h1", res={"item": SECRET}),
        event(
            7,
            "runner_on_failed",
            host="h1",
            task="FW-003 | Probe",
            res={"msg": "non-zero return code", "stdout": SECRET, "cmd": f"echo {SECRET}"},
        ),
        event(8, "runner_on_failed", host="h2", task="Other", res={"stderr": "x" * 900}),
        event(9, "runner_on_unreachable", host="h3", task="Other", res={"msg": "no route"}),
        event(10, "verbose"),
        event(11, "playbook_on_stats", ok={"h1": 2}, failures={"h1": 1, "h2": 1}, dark={"h3": 1}),
    ]


def _collected(events: list[dict[str, Any]]) -> tuple[list[Any], list[Any], list[Any], bool]:
    collector = Collector(None, None)
    timing = TimingCollector()
    for event in events:
        collector.feed(event)
        timing.feed(event)
    groups = {"h1": ["all"], "h2": ["all"], "h3": ["all"]}
    return (
        collector.results(),
        collector.host_records(groups),
        timing.records(),
        collector.has_stats,
    )


def test_stripped_events_import_as_the_whole_ones_and_hold_no_output(tmp_path: Path) -> None:
    events = _events()
    keeper = artifacts.Keeper(tmp_path)
    for event in events:
        keeper(event)
    assert keeper.written == 9  # not the verbose and item events
    kept = read_artifact_events(tmp_path)
    assert _collected(kept) == _collected(events)
    for path in (tmp_path / "job_events").iterdir():
        assert SECRET not in path.read_text(), path.name
        assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "stdout").read_text() == ""


def test_scrub_strips_what_ansible_runner_wrote(tmp_path: Path) -> None:
    folder = tmp_path / "job_events"
    folder.mkdir()
    for event in _events():
        (folder / f"{event['counter']}-{event['uuid']}.json").write_text(json.dumps(event))
    (folder / "u99-partial.json").write_text(json.dumps({"stdout": SECRET}))
    (folder / "12-u12.json").write_text('{"event": "runner_on_ok", "stdout": "' + SECRET)
    (tmp_path / "stdout").write_text(
        f"TASK [x]\nfatal: [h1]: FAILED! => {{'stdout': '{SECRET}'}}\n"
        "[WARNING]: Skipping callback plugin 'x', unable to load\n"
    )
    (tmp_path / "command").write_text(
        json.dumps({"command": ["ansible-playbook"], "cwd": "/", "env": {"TOKEN": SECRET}})
    )
    before = _collected(_events())
    done = artifacts.scrub(tmp_path)
    assert done == {"stripped": 9, "dropped": 4}
    assert _collected(read_artifact_events(tmp_path)) == before
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(), path
    assert (tmp_path / "stdout").read_text() == (
        "[WARNING]: Skipping callback plugin 'x', unable to load\n"
    )
    assert json.loads((tmp_path / "command").read_text())["env"] == ["TOKEN"]
    assert artifacts.scrub(tmp_path) == {"stripped": 0, "dropped": 0}
