"""Events to results: merge rules, errors from failed control tasks, unreachable and missing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from opsrunner.runner import evidence
from opsrunner.runner.events import Collector
from opsrunner.runner.progress import NullReporter
from opsrunner.store import evidence as stored_evidence

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
    # The full report (every check) goes to the store with the result, under its hash.
    full = got["FW-002"].full
    assert full is not None and hashlib.sha256(full).hexdigest() == got["FW-002"].evidence_sha256
    assert "FW-002 | c" in full.decode()


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
    assert done[("down", "FW-001")] == ("unknown", "host unreachable: Connection refused")
    # A reachable host that never reported an in-scope control: the check is broken or silent.
    assert done[("up", "FW-002")][0] == "error"
    assert done[("up", "FW-002")][1].startswith("no result reported")
    assert set(done) == {("down", "FW-001"), ("up", "FW-002")}
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
    # Provisional until the play ends: a later task of the play may still report them.
    assert store.batches == []
    streamer(_event(6, "playbook_on_play_start"))
    assert store.batches == [["FW-001", "FW-002"], ["FW-003", "FW-004"], ["FW-005"]]


def test_the_end_of_a_play_writes_what_is_waiting() -> None:
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
    assert store.batches == []
    streamer(_event(3, "playbook_on_play_start"))
    assert store.batches == [["FW-001"]]


def test_fail_and_error_of_one_control_keep_every_reason(tmp_path: Path) -> None:
    # Issue 10, point 8: an error beside a fail kept the error only; the finding was lost.
    c = Collector(tmp_path)
    c.feed(_ok(1, "h1", "AUD-001 | a", id="AUD-001", status="pass", evidence="auditd on"))
    c.feed(
        _ok(
            2,
            "h1",
            "AUD-001 | b",
            id="AUD-001",
            status="fail",
            reason="rule for /etc/shadow missing",
            evidence="-w /etc/passwd only",
            data={"rules": 1},
        )
    )
    c.feed(
        _ok(
            3,
            "h1",
            "AUD-001 | c",
            id="AUD-001",
            status="error",
            reason="auditctl: cannot open netlink socket",
            evidence="auditctl -l rc=1",
            data={"rc": 1},
        )
    )
    c.feed(_ok(4, "h1", "AUD-001 | d", id="AUD-001", status="fail", reason="no retention"))
    (got,) = c.results()
    assert got.status == "error"
    assert got.reason == (
        "rule for /etc/shadow missing; no retention; auditctl: cannot open netlink socket"
    )
    assert got.evidence == "-w /etc/passwd only; auditctl -l rc=1"
    assert got.task == "AUD-001 | c"
    assert got.data == {"rc": 1, "failed_checks": [{"rules": 1}, {}]}
    full = (got.full or b"").decode()
    assert "rule for /etc/shadow missing" in full and "auditd on" in full
    # An unrescued failing task of the control merges the same way, after the fail.
    c2 = Collector()
    c2.feed(_ok(1, "h1", "FW-001 | Report", id="FW-001", status="fail", reason="port 23 open"))
    c2.feed(_event(2, "runner_on_failed", "h1", task="FW-001 | Reload", res={"msg": "nft: busy"}))
    c2.feed(_event(3, "playbook_on_stats", ok={"h1": 1}))
    (merged,) = c2.results()
    assert merged.status == "error"
    assert merged.reason.startswith("port 23 open; task 'FW-001 | Reload' failed: nft: busy")


def test_tag_runs_record_filtered_controls_notchecked_and_silent_ones_error() -> None:
    # Issue 10, point 3: only what the user filtered out is notchecked.
    c = Collector()
    c.feed(_ok(1, "h1", "FW-001 | Report", id="FW-001", status="pass"))
    c.feed(_event(2, "playbook_on_stats", ok={"h1": 3}))
    scope = {"h1": ["FW-001", "FW-002", "FW-003"]}
    done = {
        r.control_id: (r.status, r.reason)
        for r in c.missing(
            scope, "successful", NOW, selected={"FW-001", "FW-002"}, filtered="--tags fw-001,fw-002"
        )
    }
    assert done["FW-003"] == ("notchecked", "filtered out by --tags fw-001,fw-002")
    assert done["FW-002"][0] == "error" and "no result reported" in done["FW-002"][1]
    assert set(done) == {"FW-002", "FW-003"}


def test_an_unreachable_host_keeps_its_last_known_applicability() -> None:
    # Issue 10, point 6: notapplicable controls of an unreachable host became unknown.
    from opsrunner.store import LastKnown

    c = Collector()
    c.feed(_event(1, "runner_on_unreachable", "down", res={"msg": "No route to host"}))
    last = dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC)
    known = {
        ("down", "BAK-001"): LastKnown("notapplicable", last, "20261120T030000Z-audit-1", "no db"),
        ("down", "FW-001"): LastKnown("pass", last, "20261120T030000Z-audit-1"),
    }
    scope = {"down": ["BAK-001", "FW-001", "FW-002"]}
    done = {
        r.control_id: (r.status, r.reason)
        for r in c.missing(scope, "failed", NOW, last_known=known)
    }
    assert done["BAK-001"] == (
        "notapplicable",
        "host unreachable: No route to host; not applicable when last checked "
        "2026-11-20T03:00:00+00:00 (run 20261120T030000Z-audit-1): no db",
    )
    assert done["FW-001"] == ("unknown", "host unreachable: No route to host")
    assert done["FW-002"] == ("unknown", "host unreachable: No route to host")
    # A timed-out run is not an unreachable host: what was not reported is unknown.
    late = {r.control_id: r.status for r in c.missing({"up": ["BAK-001"]}, "timeout", NOW)}
    assert late == {"BAK-001": "unknown"}


def test_progress_prints_each_host_control_once_with_its_final_status(tmp_path: Path) -> None:
    # Issue 10, point 11: "host1 AUD-001 pass" then "host1 AUD-001 error" in one run, and the
    # rows written at the end never printed.
    import io

    from opsrunner.runner.progress import PlainReporter
    from opsrunner.runner.run import _finish, _Streamer
    from opsrunner.store import RunRecord, Store

    out = io.StringIO()
    reporter = PlainReporter(out)
    with Store.open(None, tmp_path) as store:
        run = store.begin_run(RunRecord(ident="r1", mode="audit", status="running", started_at=NOW))
        assert run.id is not None
        collector = Collector(tmp_path)
        streamer = _Streamer(store, run.id, collector, reporter, batch=1, max_wait=0.0)
        scope = {"host1": ["AUD-001", "AUD-002", "FW-001"], "host2": ["AUD-001"]}
        reporter.start(run, 4, 2)
        events = [
            _event(1, "playbook_on_play_start"),
            _event(2, "playbook_on_task_start", task="AUD-001 | a"),
            _ok(3, "host1", "AUD-001 | a", id="AUD-001", status="pass", evidence="e1"),
            _ok(4, "host2", "AUD-001 | a", id="AUD-001", status="pass"),
            _event(5, "playbook_on_task_start", task="AUD-001 | b"),
            _ok(6, "host1", "AUD-001 | b", id="AUD-001", status="error", reason="netlink"),
            _event(7, "playbook_on_task_start", task="AUD-002 | a"),
            _ok(8, "host1", "AUD-002 | a", id="AUD-002", status="pass"),
            _event(9, "playbook_on_play_start"),
            _event(10, "playbook_on_stats", ok={"host1": 3, "host2": 1}),
        ]
        for event in events:
            streamer(event)
        final = _finish(streamer, scope, {}, "successful", 0, "", run, None, None)
        reporter.finish(final)
        stored = {(r.host, r.control_id): r.status for r in store.results(run.id)}
        packed = stored_evidence.hashes(store)
        kept = {r.evidence_sha256 for r in store.results(run.id) if r.evidence_sha256}
        assert all(evidence.load(store, sha) for sha in kept)
    assert not (tmp_path / "evidence").exists()  # no file per result any more
    lines = [line for line in out.getvalue().splitlines() if line.startswith("[")]
    printed = [tuple(line.split()[1:4]) for line in lines]
    assert len(printed) == len(stored) == 4
    assert len({(h, c) for h, c, _ in printed}) == len(printed), printed
    assert {(h, c): s for h, c, s in printed} == stored
    assert stored[("host1", "AUD-001")] == "error" and stored[("host1", "FW-001")] == "error"
    assert lines[-1].startswith("[4/4] host1 FW-001 error")
    # Only the final report of each result was stored, in the store's evidence table.
    assert packed == kept


def test_a_superseded_report_leaves_no_stored_evidence(tmp_path: Path) -> None:
    # A control reported again after its play ended (written twice): the collector let the
    # first result go once written, reads it back from the store, merges, and the first full
    # report goes from the evidence table.
    from opsrunner.runner.run import _Streamer
    from opsrunner.store import RunRecord, Store

    with Store.open(None, tmp_path) as store:
        run = store.begin_run(RunRecord(ident="r1", mode="audit", status="running", started_at=NOW))
        assert run.id is not None
        c = Collector(tmp_path)
        streamer = _Streamer(store, run.id, c, NullReporter(), batch=50)
        streamer(_ok(1, "h1", "FW-001 | a", id="FW-001", status="fail", evidence="first"))
        streamer(_event(2, "playbook_on_play_start"))
        (first,) = store.results(run.id)
        assert not c.entries  # written and let go
        streamer(_ok(3, "h1", "FW-001 | b", id="FW-001", status="pass", evidence="second"))
        streamer(_event(4, "playbook_on_play_start"))
        (second,) = store.results(run.id)
        assert first.evidence_sha256 != second.evidence_sha256
        # The earlier fail still wins the merge: it was read back from the store.
        assert (second.status, second.evidence) == ("fail", "first")
        full = json.loads(evidence.load(store, second.evidence_sha256) or b"{}")
        assert [ch["evidence"] for ch in full["checks"]] == ["first", "second"]
        assert stored_evidence.hashes(store) == {second.evidence_sha256}
