"""The regulation copy matches the source; the real policy covers every leaf clause."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opsrunner.policy import load_policy
from opsrunner.policy.checks import coverage_problems, crosscheck_problems

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / ".." / "shared" / "policy-source.md"
_CHAPTER = re.compile(r"^## (\d+) ")
_CLAUSE = re.compile(r"^\s*- (\d+\.\d+(?:\.\d+)?) ")


def source_numbers(text: str) -> list[str]:
    """Clause numbers of policy-source.md in document order: chapters, sections, items."""
    numbers: list[str] = []
    for line in text.splitlines():
        match = _CHAPTER.match(line) or _CLAUSE.match(line)
        if match:
            numbers.append(match.group(1))
    return numbers


def test_the_source_parser_sees_chapters_sections_and_items() -> None:
    sample = (
        "## 3 Daily (日常)\n- 3.1 Monitoring\n  - 3.1.1 A thing: 4.2 is not a clause\n- 3.2 Data\n"
    )
    assert source_numbers(sample) == ["3", "3.1", "3.1.1", "3.2"]


@pytest.mark.skipif(not SOURCE.is_file(), reason="../shared/policy-source.md is not present")
def test_regulation_lists_exactly_the_source_clause_numbers() -> None:
    expected = source_numbers(SOURCE.read_text(encoding="utf-8"))
    assert len(expected) > 70
    actual = [c.number for c in load_policy(ROOT / "policy").clauses]
    assert actual == expected


@pytest.mark.skipif(not SOURCE.is_file(), reason="../shared/policy-source.md is not present")
def test_chinese_headings_match_the_source() -> None:
    headings = dict(
        re.findall(
            r"(\d+(?:\.\d+)*) [^(\n]*\(([^)\n]*[\u4e00-\u9fff][^)\n]*)\)",
            SOURCE.read_text(encoding="utf-8"),
        )
    )
    policy = load_policy(ROOT / "policy")
    for clause in policy.clauses:
        assert clause.heading_zh == headings.get(clause.number), clause.number


def test_every_leaf_clause_is_covered_or_not_applicable() -> None:
    """Passes only once every role engineer's controls file has landed."""
    problems = coverage_problems(load_policy(ROOT / "policy"))
    assert problems == [], "\n".join(map(str, problems))


def test_not_applicable_clauses_carry_a_reason_and_no_control() -> None:
    policy = load_policy(ROOT / "policy")
    marked = [c for c in policy.clauses if c.not_applicable is not None]
    assert [c.number for c in marked] == ["4.2.3"]
    assert all(len(c.not_applicable or "") > 40 for c in marked)


def test_every_control_family_the_roles_use_is_in_the_policy() -> None:
    policy = load_policy(ROOT / "policy")
    manual = {c.family for c in policy.controls if c.kind == "manual"}
    assert {"GOV", "ORG", "OPS", "UPG", "SEC", "EMG", "TRN", "SUP", "KPI"} <= manual


def test_roles_and_policy_agree_both_ways() -> None:
    """Every automated control has tasks in its role, every task's control id is in the policy."""
    policy = load_policy(ROOT / "policy")
    problems = crosscheck_problems(policy, ROOT / "roles")
    assert problems == [], "\n".join(map(str, problems))


# The map agreed between the policy and role engineers: role -> (families, clauses it covers).
AGREED = {
    "firewall": ({"FW"}, {"4.2.1", "4.1.2"}),
    "account_cleanup": ({"ACC"}, {"3.3.1", "3.3.2", "3.3.3", "4.4.2"}),
    "log_review": ({"LOG"}, {"3.1.2", "4.3.2"}),
    "audit_trail": ({"AUD"}, {"3.2.3", "4.3.2"}),
    "patching": ({"PAT"}, {"3.1.3", "3.4.2", "3.4.3", "4.2.2", "4.4.1"}),
    "backup": ({"BAK"}, {"3.2.1", "3.2.2", "4.3.1", "5.2.1"}),
    "monitoring": ({"MON"}, {"3.1.1", "1.3.2", "7.1.1"}),
    "secure_transport": ({"SSH", "TLS", "ENC"}, {"4.3.1", "4.4.2", "3.3.3"}),
    "intrusion_detection": ({"IDS"}, {"4.1.2"}),
    "vulnerability_scan": ({"VUL"}, {"4.2.2", "4.4.1"}),
}


@pytest.mark.parametrize("role", sorted(AGREED))
def test_each_role_covers_its_agreed_clauses_with_its_families(role: str) -> None:
    policy = load_policy(ROOT / "policy")
    controls = [c for c in policy.controls if c.role == role]
    assert controls, f"no automated controls for role {role}"
    families, clauses = AGREED[role]
    assert {c.family for c in controls} <= families
    assert clauses <= {s for c in controls for s in c.source}
