"""opsrunner on real lab hosts: an audit and an enforce recorded end to end, then scored.

Uses the firewall role (FW-001..FW-005): a fresh host fails the audit, enforce remediates and
the next audit passes; a mutation on one host is recorded as that host's fail and lowers the
score; the audit never changes a host.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from opsrunner.config import Settings
from opsrunner.lab.core import Lab
from opsrunner.policy import load_policy
from opsrunner.reports import compliance_summary
from opsrunner.reports.publish import publish
from opsrunner.runner import run
from opsrunner.runner.progress import PlainReporter
from opsrunner.runner.timing import summarise
from opsrunner.scoring import run_scores
from opsrunner.store import RunRecord, Store
from opsrunner.store import evidence as stored_evidence
from opsrunner.store.timings import timings
from tests.lab_helpers import reset_hosts, snapshots
from tests.unit.store.test_store_modes import loose_paths

FW = ["FW-001", "FW-002", "FW-003", "FW-004", "FW-005"]
CALLBACK_WARNING = "Skipping callback plugin"


def assert_callback_loaded(run: RunRecord) -> None:
    """The project's callback ran under ansible-runner: no warning, results.json written."""
    artifacts = Path(run.artifact_dir)
    stdout = (artifacts / "stdout").read_text(encoding="utf-8")
    assert CALLBACK_WARNING not in stdout, stdout[:2000]
    written = json.loads((artifacts.parents[1] / "results.json").read_text(encoding="utf-8"))
    assert written["format"] == "opsrunner-results/1" and written["hosts"], written


@pytest.mark.lab
@pytest.mark.slow
def test_audit_enforce_audit_recorded_and_scored(lab: Lab, tmp_path: Path) -> None:
    reset_hosts(lab)
    settings = Settings(state_dir=str(tmp_path / "state"), task_timeout=120, run_timeout=900)
    policy = load_policy()
    # The loosest umask: every path the runs leave must still be owner-only (issue 15).
    umask = os.umask(0o000)
    try:
        with Store.open(None, tmp_path / "state") as store:
            before = snapshots(lab)
            lines = io.StringIO()
            first = run(
                "audit",
                lab.inventory_path,
                controls=FW,
                store=store,
                settings=settings,
                reporter=PlainReporter(lines),
            )
            assert snapshots(lab) == before, "the audit changed a host"
            assert first.status == "successful", first
            assert_callback_loaded(first)
            # Each host x control printed once, with the status the store keeps.
            printed = [
                tuple(ln.split()[1:4]) for ln in lines.getvalue().splitlines() if ln[:1] == "["
            ]
            stored = [(r.host, r.control_id, r.status) for r in store.results(first.id or 0)]
            assert sorted(printed) == sorted(stored), lines.getvalue()
            assert first.policy_digest == policy.digest() and first.controls == tuple(FW)
            statuses = {(r.host, r.control_id): r.status for r in store.results(first.id or 0)}
            assert set(statuses) == {(h, c) for h in lab.hosts for c in FW}
            assert "fail" in statuses.values(), (
                "a pristine host should not meet the firewall policy"
            )
            # Where the audit's time went (issue 14): every host's tasks, durations from events.
            timing = summarise(timings(store, first.id or 0), first.ident)
            assert {line.name for line in timing.by_host} == set(lab.hosts), timing
            assert {line.name for line in timing.roles} >= {"firewall"}, timing.roles
            assert {line.name for line in timing.controls} == set(FW), timing.controls
            assert all(line.seconds > 0 for line in timing.by_host), timing.by_host
            assert first.ended_at is not None
            wall = (first.ended_at - first.started_at).total_seconds()
            assert timing.seconds <= wall * len(lab.hosts), "tasks outlasting the run on every host"

            enforce = run(
                "enforce", lab.inventory_path, controls=FW, store=store, settings=settings
            )
            assert enforce.status == "successful", enforce
            assert_callback_loaded(enforce)
            remediated = [r for r in store.results(enforce.id or 0) if r.remediated]
            assert remediated and all(r.status == "pass" for r in remediated)

            lab.ssh("host2", "systemctl disable --quiet nftables.service", check=True)
            second = run("audit", lab.inventory_path, controls=FW, store=store, settings=settings)
            after = {(r.host, r.control_id): r.status for r in store.results(second.id or 0)}
            want = {(h, c): "pass" for h in lab.hosts for c in FW}
            want[("host2", "FW-004")] = "fail"
            assert after == want

            hosts = store.hosts(second.id or 0)
            assert {h.host for h in hosts} == set(lab.hosts) and all(h.reachable for h in hosts)
            scores = run_scores(policy, second, store.results(second.id or 0), hosts, model="flat")
            assert scores.by_host["host1"].get("raw", "automated").percent == 100.0
            host2 = scores.by_host["host2"].get("raw", "automated")
            assert host2.percent is not None and host2.percent < 100.0 and host2.passed == 4
            text = compliance_summary(store, second.ident, policy)
            assert "host2" in text and "FW-004" in text and second.ident in text
            # Re-rendering a run gives the same bytes (rendered as of the run's end).
            assert compliance_summary(store, second.ident, policy) == text
            # Issue 15: the three runs are chained in the ledger; the state directory, store,
            # evidence, artifacts and reports are owner-only.
            ledger = store.verify()
            assert ledger.ok and ledger.entries == ledger.runs_checked == 3, ledger
            publish(store, policy, second.ident)
            left = sorted(p.relative_to(tmp_path) for p in (tmp_path / "state").rglob("*"))
            # Every result's full evidence report is packed in the (owner-only) store.
            shas = {r.evidence_sha256 for r in store.results(second.id or 0)} - {""}
            assert shas and shas <= stored_evidence.hashes(store), shas
            assert any("artifacts" in p.parts for p in left), left
            assert any(p.parts[1:2] == ("reports",) for p in left), left
            loose = loose_paths(tmp_path / "state")
            assert loose == [], "\n".join(loose)
    finally:
        os.umask(umask)
        reset_hosts(lab)
