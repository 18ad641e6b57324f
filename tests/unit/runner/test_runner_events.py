"""Events to results: merge rules, errors from failed control tasks, unreachable and missing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from opsrunner.runner import evidence
from opsrunner.runner.events import Collector

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def _ok(counter: int, host: str, task: str, **control: Any) -> dict[str, Any]:
    return {
        "counter": counter,
        "event": "runner_on_ok",
        "created": "2026-11-28T11:00:00.000001",
        "event_data": {
            "host": host,
            "task": task,
            "res": {"opsrunner_control": control, "changed": False},
        },
    }


def _event(counter: int, kind: str, host: str = "", **data: Any) -> dict[str, Any]:
    return {"counter": counter, "event": kind, "event_data": {"host": host, **data}}


def _statuses(collector: Collector) -> dict[tuple[str, str], str]:
    return {(r.host, r.control_id): r.status for r in collector.results()}


def test_worst_status_wins_and_equal_evidence_joins(tmp_path: Path) -> None:
    c = Collector(tmp_path)
    c.feed(_ok(1, "h1", "FW-001 | a", id="FW-001", status="pass", evidence="one"))
    c.feed(_ok(2, "h1", "FW-001 | b", id="FW-001", status="pass", evidence="two"))
    c.feed(_ok(3, "h1", "FW-002 | a", id="FW-002", status="pass", evidence="fine"))
    c.feed(_ok(4, "h1", "FW-002 | b", id="FW-002", status="fail", evidence="bad", reason="port 23"))
    c.feed(_ok(5, "h1", "FW-002 | c", id="FW-002", status="notapplicable"))
    got = {r.control_id: r for r in c.results()}
    assert got["FW-001"].evidence == "one; two"
    assert (got["FW-002"].status, got["FW-002"].reason, got["FW-002"].evidence) == (
        "fail",
        "port 23",
        "bad",
    )
    assert got["FW-002"].task == "FW-002 | b"
    assert got["FW-001"].checked_at == dt.datetime(2026, 11, 28, 11, 0, 0, 1, tzinfo=dt.UTC)
    # The full report (every check) is kept under its hash.
    full = evidence.evidence_path(tmp_path, got["FW-002"].evidence_sha256).read_text()
    assert "FW-002 | c" in full


def test_same_events_twice_change_nothing() -> None:
    events = [_ok(1, "h1", "FW-001 | a", id="FW-001", status="pass", evidence="one")]
    c = Collector()
    for e in events + events:
        c.feed(e)
    assert c.results()[0].evidence == "one"


def test_loop_results_and_filter() -> None:
    c = Collector(controls=["FW-001"])
    c.feed(
        {
            "counter": 1,
            "event": "runner_on_ok",
            "event_data": {
                "host": "h1",
                "task": "loop",
                "res": {
                    "results": [
                        {"opsrunner_control": {"id": "FW-001", "status": "fail"}},
                        {"opsrunner_control": {"id": "FW-002", "status": "fail"}},
                    ]
                },
            },
        }
    )
    assert _statuses(c) == {("h1", "FW-001"): "fail"}


def test_failed_control_task_is_error_unless_ignored() -> None:
    c = Collector()
    c.feed(
        _event(1, "runner_on_failed", "h1", task="FW-003 | Probe", res={"msg": "nft: not found"})
    )
    c.feed(
        _event(
            2, "runner_on_failed", "h1", task="FW-004 | Probe", ignore_errors=True, res={"msg": "x"}
        )
    )
    c.feed(_event(3, "runner_on_failed", "h2", task="Gather facts", res={"msg": "boom"}))
    assert _statuses(c) == {("h1", "FW-003"): "error"}
    assert "nft: not found" in c.results()[0].reason
    missing = {
        (r.host, r.control_id): (r.status, r.reason)
        for r in c.missing({"h2": ["FW-001"]}, "failed", NOW)
    }
    assert missing[("h2", "FW-001")][0] == "unknown" and "boom" in missing[("h2", "FW-001")][1]


def test_a_rescued_failure_yields_to_the_rescue_report() -> None:
    c = Collector()
    c.feed(_event(1, "runner_on_failed", "h1", task="FW-001 | Apply", res={"msg": "nft: syntax"}))
    c.feed(_ok(2, "h1", "FW-001 | Report", id="FW-001", status="fail", reason="rule set rejected"))
    c.feed(_event(3, "runner_on_failed", "h1", task="FW-002 | Apply", res={"msg": "no rescue"}))
    # Nothing is written for FW-002 until the play ends: a rescue may still report it.
    assert _statuses(c) == {("h1", "FW-001"): "fail", ("h1", "FW-002"): "error"}
    c2 = Collector()
    c2.feed(_event(1, "runner_on_failed", "h1", task="FW-002 | Apply", res={"msg": "x"}))
    assert c2.dirty_count == 0
    c2.feed(_event(2, "playbook_on_stats", ok={"h1": 1}))
    assert c2.dirty_count == 1 and _statuses(c2) == {("h1", "FW-002"): "error"}


def test_missing_controls_by_cause() -> None:
    c = Collector()
    c.feed(_event(1, "runner_on_unreachable", "down", res={"msg": "Connection refused"}))
    c.feed(_ok(2, "up", "FW-001 | a", id="FW-001", status="pass"))
    scope = {"down": ["FW-001"], "up": ["FW-001", "FW-002"]}
    done = {(r.host, r.control_id): (r.status, r.reason) for r in c.missing(scope, "failed", NOW)}
    assert done == {
        ("down", "FW-001"): ("unknown", "host unreachable: Connection refused"),
        ("up", "FW-002"): ("notchecked", "no result reported by the playbooks"),
    }
    for status in ("timeout", "canceled", "interrupted"):
        (late,) = [r for r in c.missing(scope, status, NOW) if r.host == "up"]
        assert late.status == "unknown" and status in late.reason


def test_stats_mark_hosts_and_unreachable_from_dark() -> None:
    c = Collector()
    assert not c.has_stats
    c.feed(
        _event(9, "playbook_on_stats", ok={"h1": 5}, failures={}, dark={"h2": 1}, changed={"h1": 1})
    )
    assert c.has_stats
    hosts = {h.host: h for h in c.host_records({"h1": ["web", "all"]})}
    assert hosts["h1"].stats["ok"] == 5 and hosts["h1"].groups == ("all", "web")
    assert not hosts["h2"].reachable


def test_evidence_is_trimmed_with_a_hash_of_the_whole() -> None:
    c = Collector()
    c.feed(_ok(1, "h1", "FW-001 | a", id="FW-001", status="fail", evidence="x" * 5000))
    (r,) = c.results()
    assert r.evidence_truncated and len(r.evidence) == evidence.TRIM
    assert len(r.evidence_sha256) == 64


def test_results_reach_the_store_in_batches() -> None:
    from opsrunner.runner.progress import NullReporter
    from opsrunner.runner.run import _Streamer

    class _Store:
        def __init__(self) -> None:
            self.batches: list[list[str]] = []

        def add_results(self, run_id: int, results: list[Any]) -> int:
            self.batches.append([r.control_id for r in results])
            return len(results)

    store = _Store()
    # No time-based flush here: only the batch size decides.
    streamer = _Streamer(store, 1, Collector(), NullReporter(), batch=2, max_wait=1e9)  # type: ignore[arg-type]
    for n in range(1, 6):
        streamer(_ok(n, "h1", f"FW-00{n} | a", id=f"FW-00{n}", status="pass"))
    streamer.flush()
    assert store.batches == [["FW-001", "FW-002"], ["FW-003", "FW-004"], ["FW-005"]]


def test_a_task_start_writes_what_is_waiting() -> None:
    from opsrunner.runner.progress import NullReporter
    from opsrunner.runner.run import _Streamer

    class _Store:
        def __init__(self) -> None:
            self.batches: list[list[str]] = []

        def add_results(self, run_id: int, results: list[Any]) -> int:
            self.batches.append([r.control_id for r in results])
            return len(results)

    store = _Store()
    streamer = _Streamer(store, 1, Collector(), NullReporter(), batch=50, max_wait=1e9)  # type: ignore[arg-type]
    streamer(_ok(1, "h1", "FW-001 | a", id="FW-001", status="pass"))
    assert store.batches == []
    streamer(_event(2, "playbook_on_task_start", task="Pause"))
    assert store.batches == [["FW-001"]]
