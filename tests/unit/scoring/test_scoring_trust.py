"""What a waiver, a partial fleet, a big fleet or a retired host may and may not do to a score.

Each test here failed on the engine before issue 10 (numbers refer to its points).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from opsrunner.policy import Waiver
from opsrunner.scoring import ORG, evaluate, explain, going_stale, score
from opsrunner.store import ResultRecord
from tests.unit.scoring.test_scoring_engine import (
    CONTROLS,
    DAY,
    HOSTS,
    HOUR,
    NOW,
    POLICY,
    RESULTS,
    WEIGHTS,
    _attestation,
    _control,
    _Policy,
    _r,
    _Settings,
)


def _waiver(
    control: str, *, requested: dt.datetime, approved: dt.datetime | None, host: str = "h1"
) -> Waiver:
    return Waiver.model_validate(
        {
            "id": "WVR-2026-050",
            "control": control,
            "scope": {"hosts": [host]},
            "justification": "vendor fix pending",
            "requester": "alice",
            "approver": "dave" if approved else None,
            "approved_at": approved,
            "ticket": "CHG-9",
            "requested_at": requested,
            "expires_at": NOW + 30 * DAY,
        }
    )


def _item(policy: _Policy, results: list[ResultRecord], host: str, control: str) -> tuple[str, str]:
    found = [
        i
        for i in evaluate(policy, results, HOSTS, NOW)
        if i.target == host and i.control_id == control
    ]
    assert len(found) == 1
    return found[0].raw, found[0].effective


# -- 1: only a finding is waivable -------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "age", "expected"),
    [
        ("fail", HOUR, "waived"),
        ("error", HOUR, "error"),  # the check broke: nothing was found to accept
        ("pass", 3 * DAY, "stale"),  # weeks-old evidence is no finding either
        ("unknown", HOUR, "unknown"),  # unreachable host
    ],
)
def test_a_waiver_accepts_a_failure_and_nothing_else(
    status: str, age: dt.timedelta, expected: str
) -> None:
    # WVR-2026-001 covers FW-002 on h1 (approved ten days ago).
    results = [_r("h1", "FW-002", status, age)]
    assert _item(POLICY, results, "h1", "FW-002")[1] == expected
    scores = score(POLICY, results, HOSTS, NOW, controls=["FW-002"])
    if expected != "waived":
        assert scores.by_host["h1"].get("effective", "automated").percent == 0.0


def test_a_waived_error_does_not_score_full_marks() -> None:
    results = [_r("h1", "FW-002", "error"), _r("h2", "FW-002", "pass")]
    figure = score(POLICY, results, HOSTS, NOW, model="flat", controls=["FW-002"]).overall
    assert figure.get("effective", "automated").percent == pytest.approx(50.0)


# -- 2: a waiver counts from its approval -----------------------------------------------------
def test_a_waiver_does_not_reach_back_before_its_approval() -> None:
    checked = NOW - 10 * HOUR
    results = [_r("h1", "FW-002", "fail", 10 * HOUR)]
    # Requested before the check, approved after it: the finding stands.
    late = _waiver("FW-002", requested=NOW - 20 * DAY, approved=checked + 5 * HOUR)
    policy = dataclasses.replace(POLICY, waivers=(late,))
    assert _item(policy, results, "h1", "FW-002") == ("fail", "fail")
    # The next check after the approval is waived.
    again = [*results, _r("h1", "FW-002", "fail", HOUR)]
    assert _item(policy, again, "h1", "FW-002") == ("fail", "waived")
    # Approved before the check: waived.
    early = _waiver("FW-002", requested=NOW - 20 * DAY, approved=checked - HOUR)
    policy = dataclasses.replace(POLICY, waivers=(early,))
    assert _item(policy, results, "h1", "FW-002") == ("fail", "waived")


def test_a_waiver_is_not_valid_while_pending_or_before_its_approval_time() -> None:
    results = [_r("h1", "FW-002", "fail")]
    pending = _waiver("FW-002", requested=NOW - 2 * DAY, approved=None)
    assert _item(dataclasses.replace(POLICY, waivers=(pending,)), results, "h1", "FW-002")[1] == (
        "fail"
    )
    future = _waiver("FW-002", requested=NOW - 2 * DAY, approved=NOW + DAY)
    assert not future.applies("h1", [], NOW)
    assert future.applies("h1", [], NOW + 2 * DAY)


# -- 4: manual controls weigh the same whatever the fleet size ----------------------------------
@pytest.mark.parametrize("model", ["xccdf", "flat", "flat_unweighted"])
def test_manual_weight_does_not_depend_on_fleet_size(model: str) -> None:
    policy = dataclasses.replace(POLICY, waivers=(), attestations=())  # TRN-001: no attestation

    def all_figure(count: int) -> float:
        hosts = {f"h{n:03d}": ["db"] for n in range(count)}
        results = [_r(h, c, "pass") for h in hosts for c in ("FW-001", "FW-002", "FW-003")]
        figure = score(policy, results, hosts, NOW, model=model).overall.get("raw", "all")
        assert figure.percent is not None
        return figure.percent

    weights = (3 + 2 + 1, 1) if model != "flat_unweighted" else (3, 1)
    share = 100 * weights[0] / sum(weights)
    assert all_figure(3) == pytest.approx(share)
    assert all_figure(200) == pytest.approx(share)


def test_every_figure_says_how_it_was_built() -> None:
    scores = score(POLICY, RESULTS, HOSTS, NOW)
    overall = scores.overall
    assert "mean over 2 target(s)" in overall.get("raw", "automated").formula
    assert "(68.75 + 50) / 2" in overall.get("raw", "automated").formula
    text = overall.get("raw", "all").formula
    assert "automated 59.38% x 11 + manual 100% x 1) / 12" in text
    flat = score(POLICY, RESULTS, HOSTS, NOW, model="flat").overall.get("raw", "automated")
    assert flat.formula.endswith("= 10 / 17 = 58.82%")


# -- 5: one clause rule for the tree and the tables --------------------------------------------
def test_a_control_citing_several_clauses_is_filed_under_its_first_everywhere() -> None:
    cross = _control("FW-009", "high", "4.2.1")
    cross = cross.model_copy(update={"source": ["4.2.1", "3.3.2", "5.1.1"]})
    policy = dataclasses.replace(POLICY, controls=(*CONTROLS, cross))
    results = [*RESULTS, _r("h1", "FW-009", "fail"), _r("h2", "FW-009", "pass")]
    scores = score(policy, results, HOSTS, NOW, model="flat")
    counted = scores.overall.get("raw", "all").counted
    assert sum(s.get("raw", "all").counted for s in scores.by_chapter.values()) == counted
    assert "5" not in scores.by_chapter
    assert "3.3.2" not in scores.by_clause
    assert scores.by_clause["4.2.1"].get("raw", "automated").counted == 6
    label, _figures, items = explain(scores, "3")
    assert label == "chapter" and {i.control_id for i in items} == {"ACC-001"}


# -- 7: the fleet is the inventory ------------------------------------------------------------
def test_a_host_removed_from_the_inventory_is_retired_not_scored() -> None:
    results = [*RESULTS, _r("old", "FW-001", "fail"), _r("old", "FW-002", "fail")]
    scores = score(POLICY, results, HOSTS, NOW, model="flat")
    assert scores.retired == ("old",)
    assert "old" not in scores.by_host
    assert scores == dataclasses.replace(
        score(POLICY, RESULTS, HOSTS, NOW, model="flat"), retired=("old",)
    )


def test_an_inventory_host_without_evidence_is_unknown() -> None:
    hosts = {**HOSTS, "new": ["db"]}
    scores = score(POLICY, RESULTS, hosts, NOW)
    assert {i.raw for i in scores.items if i.target == "new"} == {"unknown"}


# -- 9: what-if at another time, flat-unweighted ----------------------------------------------
def test_scoring_at_a_later_time_shows_what_goes_stale() -> None:
    friday = NOW + 3 * DAY
    now_scores = score(POLICY, RESULTS, HOSTS, NOW)
    later = score(POLICY, RESULTS, HOSTS, friday)
    stale = [(i.target, i.control_id) for i in going_stale(now_scores, later)]
    # Daily controls checked an hour ago go stale; ACC-001 is weekly (2 days old -> 5 by Friday).
    assert stale == [("h1", "FW-001"), ("h1", "FW-002"), ("h1", "FW-003"), ("h2", "FW-002")]


def test_results_checked_after_the_as_of_time_are_ignored() -> None:
    results = [_r("h1", "FW-001", "fail", 2 * HOUR), _r("h1", "FW-001", "pass", -HOUR)]
    (item,) = evaluate(POLICY, results, {"h1": []}, NOW, controls=["FW-001"])
    assert item.raw == "fail"


def test_manual_items_live_under_the_organisation() -> None:
    policy = _Policy(
        _Settings(WEIGHTS),
        CONTROLS,
        attestations=(_attestation("TRN-001", NOW - DAY, NOW + DAY),),
    )
    scores = score(policy, [], {}, NOW, model="flat_unweighted")
    assert [i.target for i in scores.items] == [ORG]
    assert scores.overall.get("raw", "all").percent == 100.0


# -- 3: a partial run never raises the fleet's figure --------------------------------------------
def test_a_control_filtered_out_of_a_later_run_keeps_its_last_real_result() -> None:
    yesterday = [_r("h1", "FW-001", "fail", 20 * HOUR), _r("h1", "FW-002", "pass", 20 * HOUR)]
    tagged = [_r("h1", "FW-001", "notchecked", HOUR), _r("h1", "FW-002", "pass", HOUR)]
    items = evaluate(POLICY, yesterday + tagged, {"h1": []}, NOW, controls=["FW-001", "FW-002"])
    assert [(i.control_id, i.raw) for i in items] == [("FW-001", "fail"), ("FW-002", "pass")]
    # Only ever filtered out: no evidence, so unknown in the fleet's figure ...
    (only,) = evaluate(POLICY, tagged, {"h1": []}, NOW, controls=["FW-001"])
    assert only.raw == "unknown"
    # ... and left out only when one partial run is scored on its own.
    (kept,) = evaluate(POLICY, tagged, {"h1": []}, NOW, controls=["FW-001"], keep_filtered=True)
    assert kept.raw == "notchecked"
