"""Every rule of the policy format: valid fixtures load; invalid ones fail at file:line: field."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from opsrunner.policy import PolicyError, Problem, load_policy
from opsrunner.policy.checks import coverage_problems, crosscheck_problems
from opsrunner.policy.safeyaml import MAX_FILE_BYTES, YamlProblem, parse_text

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "policies"
ROLES = ROOT / "tests" / "fixtures" / "roles"

# fixture -> every expected problem: (file inside the fixture, line, field, words of the message)
LOAD_CASES: dict[str, list[tuple[str, int, str, str]]] = {
    "malformed_yaml": [("controls/accounts.yml", 8, "", "malformed YAML")],
    "duplicate_key": [
        (
            "controls/accounts.yml",
            10,
            "controls[0].severity",
            "duplicate key 'severity' (first defined on line 7)",
        )
    ],
    "unknown_field": [("controls/training.yml", 8, "controls[0].severty", "unknown field")],
    "python_tag": [
        ("policy.yml", 7, "description", "python/object/apply:os.system' is not allowed")
    ],
    "custom_tag": [("regulation.yml", 10, "clauses[2].text", "YAML tag '!include' is not allowed")],
    "alias_bomb": [("windows.yml", 6, "f", "expands to more than")],
    "bad_severity": [
        (
            "controls/accounts.yml",
            7,
            "controls[0].severity",
            "'low', 'medium', 'high' or 'critical'",
        )
    ],
    "unknown_clause": [
        ("controls/training.yml", 5, "controls[0].source[1]", "clause 9.9 is not in regulation.yml")
    ],
    "duplicate_control": [
        ("controls/training.yml", 2, "controls[0].id", "TRX-001 is already defined at")
    ],
    "waiver_unknown_control": [
        ("waivers.yml", 3, "waivers[0].control", "unknown control id ACX-999")
    ],
    "waiver_self_approval": [("waivers.yml", 7, "waivers[0].approver", "'alice' is the requester")],
    "waiver_expiry_too_long": [
        ("waivers.yml", 11, "waivers[0].expires_at", "more than 90 days after requested_at")
    ],
    "waiver_expiry_format": [("waivers.yml", 19, "waivers[1].expires_at", "valid datetime")],
    "waiver_expiry_not_utc": [("waivers.yml", 19, "waivers[1].expires_at", "must be in UTC")],
    "waiver_empty_scope": [("waivers.yml", 14, "waivers[1].scope", "at least one host or group")],
    "roster_bad_key": [("roster.yml", 11, "people[0].ssh_keys[0]", "damaged")],
    "roster_departed_without_date": [
        ("roster.yml", 20, "people[2].status", "a departed person has an end_date")
    ],
    "roster_unknown_role": [
        ("roster.yml", 27, "people[3].previous_role", "role 'dba' is not in role_map")
    ],
    "attestation_on_automated": [
        ("attestations.yml", 2, "attestations[0].control", "ACX-001 is automated")
    ],
    "attestation_bad_sha": [
        ("attestations.yml", 5, "attestations[0].evidence.sha256", "should match pattern")
    ],
    "parameter_wrong_type": [
        (
            "parameters/accounts.yml",
            7,
            "parameters.accounts_disable_within_hours.tiers.standard",
            "'24h' is not of type int",
        )
    ],
    "parameter_unknown_tier": [
        (
            "parameters/accounts.yml",
            18,
            "parameters.accounts_tier_only.tiers.gold",
            "not a tier of policy.yml",
        )
    ],
    "manual_without_evidence": [
        (
            "controls/training.yml",
            2,
            "controls[0].evidence_required",
            "what an attestation must show",
        )
    ],
    "automated_without_role": [("controls/accounts.yml", 2, "controls[0].role", "names its role")],
    "bad_frequency": [
        ("controls/training.yml", 8, "controls[0].frequency", "'fortnightly' is neither")
    ],
    "bad_timezone": [
        ("windows.yml", 10, "windows[1].timezone", "unknown IANA time zone 'Mars/Olympus'")
    ],
    "notice_unknown_window": [
        ("windows.yml", 15, "notices[0].window", "no window named 'crit-daily'")
    ],
    "missing_roster": [("roster.yml", 1, "", "required policy file is missing")],
    "stray_file": [("waiver.yml", 1, "", "unknown policy file")],
    "not_a_mapping": [("attestations.yml", 1, "", "top level must be a YAML mapping")],
    "na_on_parent": [("regulation.yml", 6, "clauses[0].not_applicable", "only a leaf clause")],
    "clause_before_parent": [
        (
            "regulation.yml",
            7,
            "clauses[1].number",
            "clause 2.1 comes before (or without) its parent 2",
        ),
        (
            "controls/accounts.yml",
            5,
            "controls[0].source[0]",
            "clause 1.1 is not in regulation.yml",
        ),
        ("parameters/accounts.yml", 4, "parameters.accounts_disable_within_hours.source[0]", "1.1"),
        ("parameters/accounts.yml", 11, "parameters.accounts_shells.source[0]", "1.1"),
        ("parameters/accounts.yml", 16, "parameters.accounts_tier_only.source[0]", "1.1"),
    ],
}

# fixtures that load, then fail `policy validate`'s coverage or role cross-check
CHECK_CASES: dict[str, list[tuple[str, int, str, str]]] = {
    "uncovered_clause": [("regulation.yml", 11, "clause 1.3", "no control covers this clause")],
    "crosscheck_missing_task": [
        (
            "controls/accounts.yml",
            2,
            "ACX-001.task_prefix",
            "no task in role 'contract_example' is named 'CEX-042 | …'",
        ),
        (
            "tests/fixtures/roles/contract_example/tasks/marker.yml",
            2,
            "name",
            "names control CEX-001, which is not in the policy",
        ),
    ],
    "crosscheck_missing_role": [
        ("controls/accounts.yml", 2, "ACX-001.role", "role 'no_such_role' does not exist")
    ],
}


def _matches(problem: Problem, base: Path, expected: tuple[str, int, str, str]) -> bool:
    file, line, field, words = expected
    target = (base / file) if not file.startswith("tests/") else (ROOT / file)
    return (
        Path(problem.file).resolve() == target.resolve()
        and problem.line == line
        and problem.field == field
        and words in problem.message
    )


def _assert_exactly(
    problems: list[Problem] | tuple[Problem, ...],
    base: Path,
    expected: list[tuple[str, int, str, str]],
) -> None:
    for item in expected:
        assert any(_matches(p, base, item) for p in problems), (
            f"missing {item}; got:\n" + "\n".join(map(str, problems))
        )
    assert len(problems) == len(expected), "unexpected extra problems:\n" + "\n".join(
        map(str, problems)
    )


def test_every_invalid_fixture_has_a_case() -> None:
    on_disk = {p.name for p in (FIXTURES / "invalid").iterdir() if p.is_dir()}
    assert on_disk == set(LOAD_CASES) | set(CHECK_CASES)


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (FIXTURES / "valid").iterdir() if p.is_dir())
)
def test_valid_fixtures_load(name: str) -> None:
    policy = load_policy(FIXTURES / "valid" / name)
    assert policy.controls
    assert coverage_problems(policy) == []


def test_the_contract_fixture_passes_the_cross_check() -> None:
    assert crosscheck_problems(load_policy(FIXTURES / "valid" / "contract"), ROLES) == []


@pytest.mark.faults(10)
@pytest.mark.parametrize("name", sorted(LOAD_CASES))
def test_invalid_fixture_is_refused_at_file_line_field(name: str) -> None:
    base = FIXTURES / "invalid" / name
    with pytest.raises(PolicyError) as info:
        load_policy(base)
    _assert_exactly(info.value.problems, base, LOAD_CASES[name])
    # the rendered message is file:line: field: message
    first = info.value.problems[0]
    rendered = (
        f"{first.file}:{first.line}: {first.field}: {first.message}"
        if first.field
        else f"{first.file}:{first.line}: {first.message}"
    )
    assert rendered in str(info.value)


@pytest.mark.parametrize("name", sorted(CHECK_CASES))
def test_invalid_fixture_fails_the_checks(name: str) -> None:
    base = FIXTURES / "invalid" / name
    policy = load_policy(base)
    problems = coverage_problems(policy) + crosscheck_problems(policy, ROLES)
    # the contract role's other tasks (CEX-002..005) are unknown here: not what this tests
    problems = [p for p in problems if not (p.field == "name" and "CEX-001" not in p.message)]
    _assert_exactly(problems, base, CHECK_CASES[name])


@pytest.mark.faults(10)
def test_python_tags_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(YamlProblem):
        parse_text(f'x: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert not marker.exists()
    with pytest.raises(YamlProblem, match="not allowed"):
        parse_text("x: !!python/name:os.system\n")


@pytest.mark.faults(10)
def test_a_50_mb_file_is_refused_before_parsing(tmp_path: Path) -> None:
    copy = tmp_path / "policy"
    shutil.copytree(FIXTURES / "valid" / "minimal", copy)
    big = copy / "controls" / "huge.yml"
    with big.open("wb") as handle:  # sparse: 50 MB on paper, nothing written, nothing read
        handle.truncate(50 * 1024 * 1024)
    assert os.path.getsize(big) > MAX_FILE_BYTES
    with pytest.raises(PolicyError) as info:
        load_policy(copy)
    (problem,) = info.value.problems
    assert problem.file.endswith("controls/huge.yml") and problem.line == 1
    assert "more than the" in problem.message and "bytes a policy file may have" in problem.message


@pytest.mark.faults(10)
def test_many_aliases_are_refused() -> None:
    text = "a: &a x\nb: [" + ", ".join(["*a"] * 150) + "]\n"
    with pytest.raises(YamlProblem, match="more than 100 YAML aliases") as info:
        parse_text(text)
    assert info.value.line == 2


def test_merge_keys_and_non_scalar_keys_are_refused() -> None:
    with pytest.raises(YamlProblem, match="merge keys"):
        parse_text("a: &a {x: 1}\nb:\n  <<: *a\n")
    with pytest.raises(YamlProblem, match="scalar"):
        parse_text("? [a, b]\n: 1\n")


def test_a_few_aliases_are_fine_and_lines_are_tracked() -> None:
    located = parse_text("a: &a [1, 2]\nb: *a\nc:\n  - x: 1\n    y: 2\n")
    assert located.data == {"a": [1, 2], "b": [1, 2], "c": [{"x": 1, "y": 2}]}
    assert located.lines[("c", 0, "y")] == 5
    assert located.line_for(("c", 0, "missing")) == 4


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    copy = tmp_path / "policy"
    shutil.copytree(FIXTURES / "valid" / "minimal", copy)
    path = copy / "controls" / "training.yml"
    path.write_text(
        path.read_text()
        .replace("severity: medium", "severity: meh")
        .replace("owner: business_support", "owner: nobody")
    )
    with pytest.raises(PolicyError) as info:
        load_policy(copy)
    assert sorted(p.field for p in info.value.problems) == [
        "controls[0].owner",
        "controls[0].severity",
    ]
