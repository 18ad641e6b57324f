"""Change records (3.4): plan, test evidence by hash, start, the patching runs and health checks
during it, evaluation; a patching enforce outside any change is listed as such."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from opsrunner.notify import changes
from opsrunner.runner import evidence
from opsrunner.runner.evidence import evidence_path
from opsrunner.store import Store
from tests.unit.notify.helpers import record_run

T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
PAT = ("PAT-001", "PAT-002", "PAT-007")


def _plan(store: Store) -> str:
    row = changes.plan(
        store,
        T0,
        title="Security updates for the database host",
        what="apt upgrade opsdemo-*",
        why="PAT-001 overdue",
        hosts=["host1"],
        rollback="apt install opsdemo-web=1.0",
        window="critical-weekly",
        by="alice",
        windows=["critical-weekly"],
    )
    return row.ident


def test_change_goes_from_plan_to_evaluation_with_its_evidence(
    store: Store, tmp_path: Path
) -> None:
    ident = _plan(store)
    assert ident == "CHG-2026-001"
    with pytest.raises(changes.ChangeError, match="no passing functional, performance, comp"):
        changes.start(store, ident, T0)

    report = tmp_path / "perf.txt"
    report.write_text("p95 latency 41 ms before, 40 ms after\n")
    changes.record_test(
        store, ident, T0, kind="functional", result="pass", ref="molecule patching converge+verify"
    )
    changes.record_test(store, ident, T0, kind="performance", result="pass", ref="", files=[report])
    row = changes.record_test(
        store, ident, T0, kind="compatibility", result="pass", ref="ci run 1234"
    )
    assert row.status == "tested"
    digest = hashlib.sha256(report.read_bytes()).hexdigest()
    assert evidence_path(store.state_dir, digest).read_bytes() == report.read_bytes()

    # A patching enforce before the change started is outside any change.
    before = record_run(
        store,
        T0 + dt.timedelta(hours=1),
        {("host1", "PAT-001"): "pass"},
        mode="enforce",
        controls=PAT,
    )
    started = changes.start(store, ident, T0 + dt.timedelta(days=1), by="alice")
    assert started.status == "started"
    during = record_run(
        store,
        T0 + dt.timedelta(days=1, hours=1),
        {("host1", "PAT-001"): "pass", ("host1", "PAT-007"): "pass"},
        mode="enforce",
        controls=PAT,
    )
    assert [r.ident for r in changes.outside_changes(store, T0 + dt.timedelta(days=2))] == [
        before.ident
    ]
    done = changes.evaluate(
        store,
        ident,
        T0 + dt.timedelta(days=1, hours=2),
        outcome="successful",
        effect="PAT-001 passes on host1",
        problems="",
        lessons="stage the web host first",
        by="dave",
    )
    assert done.status == "evaluated"
    shown = changes.show(store, ident, T0 + dt.timedelta(days=3))
    assert shown["plan"]["rollback"] == "apt install opsdemo-web=1.0"
    assert [t["kind"] for t in shown["tests"]] == ["functional", "performance", "compatibility"]
    assert shown["tests"][1]["files"] == [
        {"file": "perf.txt", "sha256": digest, "size": report.stat().st_size}
    ]
    assert [r["run"] for r in shown["happened"]["runs"]] == [during.ident]
    assert shown["happened"]["health"][0]["status"] == "pass"
    assert shown["evaluation"]["outcome"] == "successful"
    assert shown["evaluation"]["problems"] == "none"
    counted = changes.summary(store, T0 - dt.timedelta(days=1), T0 + dt.timedelta(days=5))
    assert counted["changes"] == 1 and counted["outcomes"]["successful"] == 1
    assert counted["patching_outside_changes"] == [before.ident]

    # `store prune` removes evidence files no result points to, never a change's test evidence.
    assert digest in store.evidence_hashes()
    assert evidence.prune_files(store.state_dir, store.evidence_hashes()) == 0
    assert evidence_path(store.state_dir, digest).is_file()


def test_steps_out_of_order_and_bad_input_are_refused(store: Store) -> None:
    with pytest.raises(changes.ChangeError, match="--hosts"):
        changes.plan(store, T0, title="t", what="w", why="y", hosts=[" "], rollback="r")
    with pytest.raises(changes.ChangeError, match="no maintenance window 'nope'"):
        changes.plan(
            store,
            T0,
            title="t",
            what="w",
            why="y",
            hosts=["h"],
            rollback="r",
            window="nope",
            windows=["critical-weekly"],
        )
    assert changes.list_changes(store) == []
    ident = _plan(store)
    with pytest.raises(changes.ChangeError, match="only a started change is evaluated"):
        changes.evaluate(
            store, ident, T0, outcome="successful", effect="e", problems="", lessons="l"
        )
    with pytest.raises(changes.ChangeError, match="--kind 'smoke'"):
        changes.record_test(store, ident, T0, kind="smoke", result="pass", ref="x")
    with pytest.raises(changes.ChangeError, match="no such file"):
        changes.record_test(
            store,
            ident,
            T0,
            kind="functional",
            result="pass",
            ref="",
            files=[Path("/nonexistent/report")],
        )
    changes.record_test(store, ident, T0, kind="functional", result="fail", ref="ci 1")
    with pytest.raises(changes.ChangeError, match="cannot start"):
        changes.start(store, ident, T0)
    assert changes.show(store, ident, T0)["status"] == "planned"
    with pytest.raises(changes.ChangeError, match="no change 'CHG-2026-999'"):
        changes.show(store, "CHG-2026-999", T0)
