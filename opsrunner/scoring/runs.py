"""The scores of one stored run, as of its end (a re-render gives the same figures)."""

from __future__ import annotations

from collections.abc import Sequence

from opsrunner.scoring.engine import PolicyLike, Scores, score
from opsrunner.store.records import HostRecord, ResultRecord, RunRecord


def run_scores(
    policy: PolicyLike,
    run: RunRecord,
    results: Sequence[ResultRecord],
    hosts: Sequence[HostRecord],
    *,
    model: str | None = None,
) -> Scores:
    """Score one run's results as of its end (a re-render gives the same figures)."""
    as_of = run.ended_at or run.started_at
    groups = {h.host: list(h.groups) for h in hosts}
    # A run that broke before it recorded its hosts still answers for the hosts it reported on.
    for result in results:
        groups.setdefault(result.host, [])
    # A run answers for the controls it covered (its results, unknown and notchecked included)
    # plus the manual ones, met by attestations as of its end; operate jobs only for their own.
    covered = set(run.controls) | {r.control_id for r in results}
    if run.mode != "operate":
        covered |= {c.id for c in policy.controls if c.kind == "manual"}
    return score(
        policy, results, groups, as_of, model=model, controls=sorted(covered), keep_filtered=True
    )


def partial(run: RunRecord, policy: PolicyLike) -> str:
    """ "partial run: N of M controls" when --controls or --tags narrowed a run, else ""."""
    if run.mode == "operate" or not run.controls:
        return ""
    total = sum(1 for c in policy.controls if c.kind == "automated")
    return f"partial run: {len(run.controls)} of {total} automated controls"
