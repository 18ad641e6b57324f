"""The columnar engine gives the same items and figures as the straightforward one it replaced.

`reference_engine.py` is the engine as it was before scoring moved to numpy columns: one Python
loop per group, easy to read and slow (a 10,000-host fleet took minutes). Hypothesis draws
random fleets, controls, clauses, statuses, ages, waivers and attestations; every figure of both
engines must agree, in every model.
"""

from __future__ import annotations

import dataclasses
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsrunner.scoring import MODELS, score, score_set
from opsrunner.store import ResultRecord
from tests.unit.scoring import reference_engine as reference
from tests.unit.scoring.test_scoring_engine import (
    DAY,
    HOUR,
    NOW,
    WEIGHTS,
    _attestation,
    _control,
    _Policy,
    _Settings,
    _waiver,
)

CLAUSES = ("2.1.1", "2.1.2", "3.3", "3.3.1", "4.2.1", "4.2.2", "4.4", "5")
STATUSES = ("pass", "fail", "error", "unknown", "notapplicable", "notchecked")
GROUPS = ("web", "db", "edge")


@st.composite
def fleets(draw: st.DrawFn) -> tuple[_Policy, list[ResultRecord], dict[str, list[str]]]:
    n_controls = draw(st.integers(1, 7))
    controls = []
    for n in range(n_controls):
        manual = draw(st.booleans()) and n % 3 == 2
        extra: dict[str, object] = {
            "weight": draw(st.sampled_from((0.5, 1.0, 2.0))),
            "applies_to": draw(st.sampled_from((["all"], ["web"], ["db", "edge"], ["nowhere"]))),
        }
        if manual:
            extra.update(kind="manual", role=None, evidence_required="a record")
        controls.append(
            _control(
                f"CT-{n:03d}",
                draw(st.sampled_from(tuple(WEIGHTS))),
                draw(st.sampled_from(CLAUSES)),
                draw(st.sampled_from(("daily", "weekly", "annual"))),
                **extra,
            )
        )
    hosts = {
        f"h{n}": sorted(draw(st.sets(st.sampled_from(GROUPS), max_size=2)))
        for n in range(draw(st.integers(0, 6)))
    }
    names = [*hosts, "gone"]
    results = [
        ResultRecord(
            host=draw(st.sampled_from(names)),
            control_id=draw(st.sampled_from([c.id for c in controls])),
            status=draw(st.sampled_from(STATUSES)),
            checked_at=NOW - draw(st.sampled_from((HOUR, 2 * DAY, 9 * DAY, -HOUR))),
            reason=draw(st.sampled_from(("", "why"))),
        )
        for _ in range(draw(st.integers(0, 40)))
    ]
    waivers = tuple(
        _waiver(
            f"WVR-2026-{n:03d}",
            draw(st.sampled_from([c.id for c in controls])),
            hosts=scope[0],
            groups=scope[1],
        )
        for n, scope in enumerate(
            draw(
                st.lists(
                    st.sampled_from(((["h0"], []), (["h1", "h2"], []), ([], ["web"]))), max_size=3
                )
            )
        )
    )
    attestations = tuple(
        _attestation(c.id, NOW - draw(st.sampled_from((DAY, 400 * DAY))), NOW + 30 * DAY)
        for c in controls
        if c.kind == "manual" and draw(st.booleans())
    )
    policy = _Policy(_Settings(WEIGHTS), tuple(controls), waivers, attestations)
    return policy, results, hosts


def _same_figure(new: object, old: object) -> None:
    for field in ("model", "counted", "passed"):
        assert getattr(new, field) == getattr(old, field), field
    for field in ("points", "maximum", "percent"):
        a, b = getattr(new, field), getattr(old, field)
        assert (a is None) == (b is None), field
        if a is not None:
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (field, a, b)


def _same_sets(new: object, old: object) -> None:
    for key, fig in old.figures.items():  # type: ignore[attr-defined]
        _same_figure(new.figures[key], fig)  # type: ignore[attr-defined]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets(), st.sampled_from(MODELS), st.booleans())
def test_columnar_engine_matches_the_reference(
    fleet: tuple[_Policy, list[ResultRecord], dict[str, list[str]]],
    model: str,
    keep_filtered: bool,
) -> None:
    policy, results, hosts = fleet
    new = score(policy, results, hosts, NOW, model=model, keep_filtered=keep_filtered)
    old = reference.score(policy, results, hosts, NOW, model=model, keep_filtered=keep_filtered)
    assert [tuple(i) for i in new.items] == [
        tuple(getattr(i, f.name) for f in dataclasses.fields(i)) for i in old.items
    ]
    assert new.retired == old.retired
    _same_sets(new.overall, old.overall)
    for table in ("by_host", "by_chapter", "by_clause", "by_control"):
        mine, theirs = getattr(new, table), getattr(old, table)
        assert list(mine) == list(theirs), table
        for key, sets in theirs.items():
            _same_sets(mine[key], sets)
    # Groups computed on the columns equal score_set over the same items.
    groups = {h: groups for h, groups in hosts.items()}
    for group, sets in new.by_targets(groups).items():
        members = [i for i in new.items if group in groups.get(i.target, ())]
        _same_sets(sets, reference.score_set(members, new.model))
    assert not [
        g for g in new.by_targets(groups) if g not in {x for v in groups.values() for x in v}
    ]
    _same_sets(
        score_set(list(new.items), new.model), reference.score_set(list(new.items), new.model)
    )
