"""Compliance scores and availability as pure functions of policy, results and time."""

from __future__ import annotations

from opsrunner.scoring.availability import Availability, availability
from opsrunner.scoring.engine import (
    KINDS,
    MODELS,
    ORG,
    VIEWS,
    Figure,
    Item,
    PolicyLike,
    Scores,
    ScoreSet,
    combine,
    evaluate,
    explain,
    figure,
    gate,
    going_stale,
    retired_hosts,
    score,
    score_set,
)
from opsrunner.scoring.runs import partial, run_scores

__all__ = [
    "KINDS",
    "MODELS",
    "ORG",
    "VIEWS",
    "Availability",
    "Figure",
    "Item",
    "PolicyLike",
    "ScoreSet",
    "Scores",
    "availability",
    "combine",
    "evaluate",
    "explain",
    "figure",
    "gate",
    "going_stale",
    "partial",
    "retired_hosts",
    "run_scores",
    "score",
    "score_set",
]
