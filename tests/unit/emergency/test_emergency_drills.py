"""Drill journals: status from the steady state and targets, evaluation and improvement items."""

from __future__ import annotations

import datetime as dt

from conftest import Site

from opsrunner.emergency import drills
from opsrunner.store import Store

UTC = dt.UTC
START = dt.datetime(2026, 11, 20, 10, tzinfo=UTC)


def _journal(site: Site, kind: str = "restore") -> drills.Journal:
    plan = drills.plan_for(site.policy(), ["standard"])
    journal = drills.Journal(kind=kind, plan=plan, hosts=["host2"], started_at=START)
    journal.ended_at = START + dt.timedelta(minutes=4)
    journal.steady_state_before = {"ok": True}
    journal.steady_state_after = {"ok": True}
    return journal


def test_a_drill_that_held_is_completed_without_items(site: Site, store: Store) -> None:
    journal = _journal(site)
    assert journal.plan.id == "PLAN-G2"  # host2 is in the standard tier: the grade-2 plan
    drill_id = drills.record(store, journal)
    stored = drills.show(store, drill_id)
    assert stored.outcome == "completed" and stored.kind == "restore"
    evaluation = stored.data["evaluation"]
    assert evaluation["plan"] == "PLAN-G2" and evaluation["scenario"] == "data_loss"
    assert evaluation["action_items"] == []
    assert evaluation["revise"] == ["PLAN-G2 scenarios.data_loss: no change needed"]
    assert stored.data["duration_seconds"] == 240.0


def test_problems_make_a_drill_deviate_and_open_improvement_items(site: Site, store: Store) -> None:
    journal = _journal(site, "service-failure")
    journal.problems = ["recovery took 4000 s, beyond 3600 s"]
    drill_id = drills.record(store, journal)
    stored = drills.show(store, drill_id)
    assert stored.outcome == "deviated"
    assert stored.data["evaluation"]["action_items"] == [
        {
            "id": "A1",
            "what": "Fix and re-drill: recovery took 4000 s, beyond 3600 s",
            "owner": "bruce",  # the grade-2 plan's owner
            "due": "2026-12-20",
            "done_at": None,
        }
    ]
    assert stored.overdue_items(dt.date(2026, 12, 20)) == []
    assert [i["id"] for i in stored.overdue_items(dt.date(2026, 12, 21))] == ["A1"]


def test_a_drill_whose_steady_state_did_not_hold_is_aborted_or_deviated(
    site: Site, store: Store
) -> None:
    broken = _journal(site, "attack")
    broken.aborted = "steady state does not hold before the fault"
    assert broken.status == "aborted"
    after = _journal(site, "attack")
    after.steady_state_after = {"ok": False}
    assert after.status == "deviated"
    drills.record(store, broken)
    drills.record(store, after)
    assert [d.outcome for d in drills.listing(store)] == ["aborted", "deviated"]
