"""Re-scoring the same items with another model gives what scoring from scratch with it gives."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsrunner.scoring import MODELS, score
from opsrunner.scoring.models import with_model
from opsrunner.store import ResultRecord
from tests.unit.scoring import reference_engine as reference
from tests.unit.scoring.test_scoring_columnar import _same_sets, fleets
from tests.unit.scoring.test_scoring_engine import NOW, WEIGHTS, _Policy, _Settings


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets(), st.sampled_from(MODELS), st.sampled_from(MODELS), st.booleans())
def test_with_model_matches_the_reference_in_that_model(
    fleet: tuple[_Policy, list[ResultRecord], dict[str, list[str]]],
    first: str,
    then: str,
    keep_filtered: bool,
) -> None:
    policy, results, hosts = fleet
    scored = score(policy, results, hosts, NOW, model=first, keep_filtered=keep_filtered)
    again = with_model(scored, then)
    old = reference.score(policy, results, hosts, NOW, model=then, keep_filtered=keep_filtered)
    assert again.model == then and again.items == scored.items
    assert again.retired == scored.retired == old.retired
    _same_sets(again.overall, old.overall)
    for table in ("by_host", "by_chapter", "by_clause", "by_control"):
        mine, theirs = getattr(again, table), getattr(old, table)
        assert list(mine) == list(theirs), table
        for key, sets in theirs.items():
            _same_sets(mine[key], sets)


def test_with_model_refuses_an_unknown_model() -> None:
    empty = score(_Policy(_Settings(WEIGHTS), (), (), ()), [], {}, NOW)
    with pytest.raises(ValueError, match="unknown scoring model"):
        with_model(empty, "median")
