"""Scores computed by hand for a small fixture match the engine, for all three models."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from opsrunner.policy import Attestation, Control, Waiver
from opsrunner.scoring import ORG, evaluate, explain, gate, score
from opsrunner.store import ResultRecord

NOW = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class _Settings:
    severity_weights: dict[str, float]
    scoring_model: str = "xccdf"


@dataclasses.dataclass(frozen=True)
class _Policy:
    settings: _Settings
    controls: tuple[Control, ...]
    waivers: tuple[Waiver, ...] = ()
    attestations: tuple[Attestation, ...] = ()


def _control(
    cid: str, severity: str, source: str, frequency: str = "daily", **extra: Any
) -> Control:
    fields: dict[str, Any] = {
        "id": cid,
        "title": cid,
        "description": cid,
        "source": [source],
        "owner": "system_administrator",
        "severity": severity,
        "frequency": frequency,
        "kind": "automated",
        "role": "firewall",
    }
    fields.update(extra)
    return Control.model_validate(fields)


def _waiver(
    wid: str,
    control: str,
    *,
    hosts: list[str] | None = None,
    groups: list[str] | None = None,
    expires: dt.datetime = NOW + 30 * DAY,
) -> Waiver:
    return Waiver.model_validate(
        {
            "id": wid,
            "control": control,
            "scope": {"hosts": hosts or [], "groups": groups or []},
            "justification": "legacy",
            "requester": "alice",
            "approver": "dave",
            "approved_at": NOW - 10 * DAY,
            "ticket": "CHG-1",
            "requested_at": NOW - 10 * DAY,
            "expires_at": expires,
        }
    )


def _attestation(control: str, at: dt.datetime, until: dt.datetime) -> Attestation:
    return Attestation.model_validate(
        {
            "control": control,
            "attested_by": "erin",
            "attested_at": at,
            "evidence": {"file": "plan.pdf", "sha256": "a" * 64},
            "valid_until": until,
        }
    )


WEIGHTS = {"low": 1.0, "medium": 2.0, "high": 3.0, "critical": 5.0}
CONTROLS = (
    _control("FW-001", "high", "4.2.1"),
    _control("FW-002", "medium", "4.2.2"),
    _control("FW-003", "low", "4.2.1"),
    _control("ACC-001", "critical", "3.3.1", "weekly", applies_to=["web"]),
    _control(
        "TRN-001",
        "low",
        "2.1.1",
        "annual",
        kind="manual",
        role=None,
        evidence_required="training plan",
    ),
)
POLICY = _Policy(
    _Settings(WEIGHTS),
    CONTROLS,
    waivers=(
        _waiver("WVR-2026-001", "FW-002", hosts=["h1"]),
        _waiver("WVR-2026-002", "FW-003", groups=["db"]),
    ),
    attestations=(_attestation("TRN-001", NOW - 30 * DAY, NOW + 300 * DAY),),
)
HOSTS = {"h1": ["web"], "h2": ["db"]}


def _r(host: str, control: str, status: str, age: dt.timedelta = HOUR) -> ResultRecord:
    return ResultRecord(host=host, control_id=control, status=status, checked_at=NOW - age)


RESULTS = [
    _r("h1", "FW-001", "pass"),
    _r("h1", "FW-002", "fail"),
    _r("h1", "FW-003", "fail"),
    _r("h1", "ACC-001", "pass", 2 * DAY),
    _r("h2", "FW-001", "pass", 3 * DAY),  # daily control, 3 days old: stale
    _r("h2", "FW-002", "pass"),
    # h2 FW-003: no evidence at all -> unknown (its waiver cannot excuse that)
]


def _statuses(view: str) -> dict[tuple[str, str], str]:
    return {(i.target, i.control_id): i.status(view) for i in evaluate(POLICY, RESULTS, HOSTS, NOW)}


def test_statuses_add_stale_unknown_and_waived() -> None:
    assert _statuses("raw") == {
        ("h1", "FW-001"): "pass",
        ("h1", "FW-002"): "fail",
        ("h1", "FW-003"): "fail",
        ("h1", "ACC-001"): "pass",
        ("h2", "FW-001"): "stale",
        ("h2", "FW-002"): "pass",
        ("h2", "FW-003"): "unknown",
        (ORG, "TRN-001"): "pass",
    }
    effective = _statuses("effective")
    assert effective[("h1", "FW-002")] == "waived"
    assert effective[("h2", "FW-003")] == "unknown"  # unknown never passes, waiver or not
    assert effective[("h1", "FW-003")] == "fail"  # the db-group waiver does not cover web


# Hand computation (weights: low 1, medium 2, high 3, critical 5):
#  raw: h1 4.2.1 = (100*3 + 0*1)/4 = 75, 4.2.2 = 0 -> ch4 37.5; ch3 100 -> h1 68.75
#       h2 4.2.1 = 0 (stale, unknown), 4.2.2 = 100 -> ch4 50 -> h2 50  => automated 59.375
#  effective: h1 4.2.2 = 100 -> ch4 87.5 -> h1 93.75                   => automated 71.875
#  manual: TRN-001 attested -> 100.
#  all = (automated x 11 + manual x 1) / 12: 11 and 1 are the summed weights of the counted
#  automated controls (FW-001 3 + FW-002 2 + FW-003 1 + ACC-001 5) and manual (TRN-001 1),
#  each control once however many hosts it runs on.
#  flat automated: raw 10/17, effective 12/17.
@pytest.mark.parametrize(
    ("model", "view", "kind", "percent"),
    [
        ("xccdf", "raw", "all", (59.375 * 11 + 100) / 12),
        ("xccdf", "raw", "automated", (68.75 + 50) / 2),
        ("xccdf", "raw", "manual", 100.0),
        ("xccdf", "effective", "all", (71.875 * 11 + 100) / 12),
        ("flat", "raw", "all", (100 * 10 / 17 * 11 + 100) / 12),
        ("flat", "raw", "automated", 100 * 10 / 17),
        ("flat", "effective", "all", (100 * 12 / 17 * 11 + 100) / 12),
        ("flat_unweighted", "raw", "automated", 100 * 3 / 7),
        ("flat_unweighted", "raw", "all", (100 * 3 / 7 * 4 + 100) / 5),
        ("flat_unweighted", "effective", "automated", 100 * 4 / 7),
        ("absolute", "raw", "all", 0.0),
        ("absolute", "effective", "all", 0.0),
        ("absolute", "raw", "manual", 100.0),
    ],
)
def test_hand_computed_overall_scores(model: str, view: str, kind: str, percent: float) -> None:
    scores = score(POLICY, RESULTS, HOSTS, NOW, model=model)
    figure = scores.overall.get(view, kind)
    assert figure.percent == pytest.approx(percent)


def test_flat_points_and_breakdowns() -> None:
    scores = score(POLICY, RESULTS, HOSTS, NOW, model="flat")
    overall = scores.overall.get("raw", "all")
    assert (overall.maximum, overall.counted, overall.passed) == (12.0, 8, 4)
    assert overall.points == pytest.approx(10 / 17 * 11 + 1)
    automated = scores.overall.get("raw", "automated")
    assert (automated.points, automated.maximum) == (10.0, 17.0)
    assert scores.by_host["h1"].get("raw", "all").percent == pytest.approx(100 * 8 / 11)
    assert scores.by_host["h2"].get("raw", "all").percent == pytest.approx(100 * 2 / 6)
    assert scores.by_control["FW-001"].get("raw", "all").percent == pytest.approx(50.0)
    assert scores.by_chapter["3"].get("raw", "all").percent == pytest.approx(100.0)
    assert scores.by_clause["4.2"].get("raw", "all").percent == pytest.approx(100 * 5 / 12)
    assert scores.by_clause["4.2.1"].get("effective", "all").percent == pytest.approx(100 * 3 / 8)


def test_stale_evidence_lowers_the_score() -> None:
    fresh = [dataclasses.replace(r, checked_at=NOW - HOUR) for r in RESULTS]
    stale = score(POLICY, RESULTS, HOSTS, NOW, model="flat").overall.get("raw", "all").percent
    now_fresh = score(POLICY, fresh, HOSTS, NOW, model="flat").overall.get("raw", "all").percent
    assert stale is not None and now_fresh is not None
    assert now_fresh - stale == pytest.approx(100 * 3 / 17 * 11 / 12)


def test_unreachable_and_interrupted_results_never_pass() -> None:
    unknown = [ResultRecord("h1", c.id, "unknown", NOW, reason="unreachable") for c in CONTROLS[:4]]
    scores = score(POLICY, unknown, {"h1": ["web"]}, NOW, model="flat")
    assert scores.overall.get("effective", "automated").percent == 0.0
    assert scores.overall.get("effective", "automated").counted == 4


def test_notapplicable_and_notchecked_are_left_out() -> None:
    results = [
        _r("h1", "FW-001", "pass"),
        _r("h1", "FW-002", "notapplicable"),
        _r("h1", "FW-003", "notchecked"),
    ]
    scores = score(
        POLICY,
        results,
        {"h1": []},
        NOW,
        model="flat",
        controls=["FW-001", "FW-002", "FW-003"],
        keep_filtered=True,
    )
    figure = scores.overall.get("raw", "automated")
    assert (figure.counted, figure.percent) == (1, 100.0)


def test_manual_controls_need_a_valid_fresh_attestation() -> None:
    def manual(attestations: tuple[Attestation, ...]) -> str:
        policy = dataclasses.replace(POLICY, attestations=attestations)
        (item,) = evaluate(policy, [], {}, NOW, controls=["TRN-001"])
        return item.raw

    assert manual(()) == "fail"
    assert manual((_attestation("TRN-001", NOW - 400 * DAY, NOW - DAY),)) == "fail"  # expired
    assert (
        manual((_attestation("TRN-001", NOW - 380 * DAY, NOW + DAY),)) == "stale"
    )  # annual: >366 d
    assert (
        manual((_attestation("TRN-001", NOW + DAY, NOW + 9 * DAY),)) == "fail"
    )  # not yet attested
    assert manual((_attestation("TRN-001", NOW - DAY, NOW + DAY),)) == "pass"


def test_expired_waiver_does_not_apply() -> None:
    policy = dataclasses.replace(
        POLICY, waivers=(_waiver("WVR-2026-009", "FW-002", hosts=["h1"], expires=NOW - HOUR),)
    )
    (item,) = [
        i
        for i in evaluate(policy, RESULTS, HOSTS, NOW)
        if i.control_id == "FW-002" and i.target == "h1"
    ]
    assert item.effective == "fail"


def test_newest_result_wins() -> None:
    results = [_r("h1", "FW-001", "fail", 2 * HOUR), _r("h1", "FW-001", "pass", HOUR)]
    (item,) = evaluate(POLICY, results, {"h1": []}, NOW, controls=["FW-001"])
    assert item.raw == "pass"


def test_gate_fails_under_threshold_and_on_critical_failures() -> None:
    scores = score(POLICY, RESULTS, HOSTS, NOW, model="flat")
    assert gate(scores, fail_under=70) == []
    assert gate(scores, fail_under=75) != []
    assert gate(scores, max_failed={"high": 0}) != []  # h2 FW-001 is stale
    assert gate(scores, max_failed={"medium": 0}) == []  # waived in the effective view
    assert gate(scores, max_failed={"medium": 0}, view="raw") != []
    assert scores.failed("raw") == {"medium": 1, "low": 2, "high": 1}


def test_explain_gives_the_items_behind_a_figure() -> None:
    scores = score(POLICY, RESULTS, HOSTS, NOW, model="flat")
    label, figures, items = explain(scores, "FW-003")
    assert label == "control"
    assert sorted(i.raw for i in items) == ["fail", "unknown"]
    assert figures.get("raw", "all").maximum == 2.0
    assert explain(scores, "h2")[0] == "host"
    assert explain(scores, "4.2")[0] == "clause"
    assert len(explain(scores, "4.2")[2]) == 6  # FW-001..003 on h1 and h2
    with pytest.raises(KeyError):
        explain(scores, "9.9.9")


def test_scoring_is_pure_and_deterministic() -> None:
    assert score(POLICY, RESULTS, HOSTS, NOW) == score(POLICY, list(reversed(RESULTS)), HOSTS, NOW)
    with pytest.raises(ValueError):
        score(POLICY, RESULTS, HOSTS, NOW.replace(tzinfo=None))
