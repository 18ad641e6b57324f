"""Checks of the emergency plans that depend on the date: an overdue review fails EMG-001."""

from __future__ import annotations

import datetime as dt

from opsrunner.policy.loader import Policy, Problem

PLANS_CONTROL = "EMG-001"


def plan_problems(policy: Policy, today: dt.date | None = None) -> list[Problem]:
    """A problem per plan whose review is overdue, and one when a plan covers no tier at all."""
    day = today or dt.datetime.now(dt.UTC).date()
    problems: list[Problem] = []
    for plan in policy.plans:
        where = policy.location("plan", plan.id)
        file, line = (where.file, where.line) if where else ("policy/plans", 1)
        due = plan.review_due()
        if due < day:
            problems.append(
                Problem(
                    file,
                    line,
                    "plan.last_reviewed",
                    f"{plan.id} review overdue since {due} (last reviewed {plan.last_reviewed}, "
                    f"every {plan.review_every_days} days): {PLANS_CONTROL} fails until reviewed",
                )
            )
    if policy.plans:
        covered = {t for p in policy.plans for t in p.tiers}
        for tier in policy.settings.tiers:
            if tier not in covered:
                problems.append(
                    Problem(
                        file if policy.plans else "policy/plans",
                        1,
                        "plan.tiers",
                        f"no emergency plan covers tier {tier!r} (5.1.2: every system is graded)",
                    )
                )
    return problems
