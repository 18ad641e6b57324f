"""Emergency plans: required sections checked at load, an overdue review fails validate."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import Site
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.policy import PolicyError, load_policy
from opsrunner.policy.plan_checks import plan_problems


def test_the_repository_plans_load_one_per_grade(site: Site) -> None:
    plans = site.policy().plans
    assert [(p.id, p.grade, p.tiers) for p in plans] == [
        ("PLAN-G1", 1, ["critical"]),
        ("PLAN-G2", 2, ["standard"]),
    ]
    assert plan_problems(site.policy(), dt.date(2026, 12, 3)) == []


def test_an_overdue_review_fails_validate_with_file_and_line(site: Site) -> None:
    problems = plan_problems(site.policy(), dt.date(2027, 10, 16))
    assert [str(p) for p in problems] == [
        f"{p.file}:{p.line}: plan.last_reviewed: {plan} review overdue since 2027-10-15 "
        f"(last reviewed 2026-10-15, every 365 days): EMG-001 fails until reviewed"
        for p, plan in zip(problems, ("PLAN-G1", "PLAN-G2"), strict=True)
    ]
    assert problems[0].file.endswith("plans/grade-1.yml") and problems[0].line == 4
    grade1 = site.policy_dir / "plans" / "grade-1.yml"
    grade1.write_text(
        grade1.read_text().replace("last_reviewed: 2026-10-15", "last_reviewed: 2025-10-01")
    )
    result = CliRunner().invoke(
        app, ["policy", "validate", "--policy-dir", str(site.policy_dir), "--no-crosscheck"]
    )
    assert result.exit_code == 1
    assert "PLAN-G1 review overdue since 2026-10-01" in result.output


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("    network_attack:\n", "    network_attak:\n", "scenarios.network_attak"),
        ("  resources:\n", "  resourcez:\n", "plan.resources: required field is missing"),
        ("  owner: alice\n", "  owner: zed\n", "plan.owner: 'zed' is not on the roster"),
        ("  tiers: [critical]\n", "  tiers: [gold]\n", "plan.tiers[0]: 'gold' is not a tier"),
        # Read in file order: the second plan of a grade is the one refused.
        ("  grade: 1\n", "  grade: 2\n", "grade-2.yml:6: plan.grade: grade 2 already has PLAN-G1"),
    ],
)
def test_a_broken_plan_is_refused_at_load(site: Site, old: str, new: str, message: str) -> None:
    grade1 = site.policy_dir / "plans" / "grade-1.yml"
    text = grade1.read_text()
    assert old in text
    grade1.write_text(text.replace(old, new, 1))
    with pytest.raises(PolicyError) as caught:
        load_policy(site.policy_dir)
    shown = str(caught.value)
    assert "plans/grade-" in shown and message in shown, shown
