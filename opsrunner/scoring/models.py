"""The same scored items under another scoring model, without evaluating the results again."""

from __future__ import annotations

import dataclasses

import numpy as np

from opsrunner.scoring.engine import MODELS, Scores, _clause_keys, _Columns


def with_model(scores: Scores, model: str) -> Scores:
    """`scores` with every figure computed by `model` (items, as_of and retired unchanged).

    What `score(..., model=model)` gives for the same input: the items do not depend on the
    model, only the figures do, so a fleet's two million items are evaluated once for all models.
    """
    if model not in MODELS:
        raise ValueError(f"unknown scoring model {model!r} (choose {', '.join(MODELS)})")
    cols = scores.columns if scores.columns is not None else _Columns.of(scores.items)
    everything = np.arange(len(cols.items), dtype=np.int64)
    return dataclasses.replace(
        scores,
        model=model,
        overall=cols.groups(everything, np.zeros_like(everything), ["*"], model)["*"],
        by_host=cols.grouped_one(cols.target, cols.targets, model),
        by_chapter=cols.grouped_one(cols.chapter_of_clause[cols.clause], cols.chapters, model),
        by_clause=cols.grouped(lambda c: _clause_keys(cols.clauses[c]), cols.clause, model),
        by_control=cols.grouped_one(cols.control, cols.controls, model),
        columns=cols,
    )
