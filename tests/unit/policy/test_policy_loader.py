"""load_policy and the Policy helpers on the real policy and the minimal fixture."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from opsrunner.policy import Frequency, Policy, PolicyError, load_policy
from opsrunner.policy.loader import default_policy_dir

ROOT = Path(__file__).resolve().parents[3]
MINIMAL = ROOT / "tests" / "fixtures" / "policies" / "valid" / "minimal"
UTC = dt.UTC


@pytest.fixture(scope="module")
def minimal() -> Policy:
    return load_policy(MINIMAL)


def test_the_project_policy_loads() -> None:
    policy = load_policy(ROOT / "policy")
    assert policy.settings.tiers == ["critical", "standard"]
    assert len(policy.clauses) > 70
    assert policy.control("TRN-001").kind == "manual"
    assert policy.leaf_clauses()


def test_default_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSRUNNER_POLICY_DIR", str(MINIMAL))
    assert default_policy_dir() == MINIMAL
    assert load_policy().settings.name == "minimal fixture"


def test_controls_and_lookups(minimal: Policy) -> None:
    assert [c.id for c in minimal.controls] == ["ACX-001", "TRX-001"]
    acx = minimal.control("ACX-001")
    assert acx.prefix == "CEX-001" and acx.weight == 2.0 and acx.family == "ACX"
    assert minimal.control("TRX-001").source == ["1.2"]  # a single string is accepted as a list
    with pytest.raises(KeyError):
        minimal.control("NOPE-001")
    where = minimal.location("control", "TRX-001")
    assert where is not None and where.file.endswith("controls/training.yml") and where.line == 2
    assert [c.number for c in minimal.leaf_clauses()] == ["1.1", "1.2", "1.3"]
    assert [c.id for c in minimal.controls_for_clause("1")] == ["ACX-001", "TRX-001"]
    assert minimal.controls_for_clause("1", below=False) == ()


def test_tier_is_the_first_policy_tier_the_host_is_in(minimal: Policy) -> None:
    assert minimal.tier_for(["all", "standard", "critical"]) == "critical"
    assert minimal.tier_for(["all", "standard"]) == "standard"
    assert minimal.tier_for(["all", "web"]) is None


def test_parameters_resolve_default_then_tier_then_groups(minimal: Policy) -> None:
    assert minimal.params_for_host(["all"]) == {
        "accounts_disable_within_hours": 72,
        "accounts_shells": ["/bin/bash"],
    }
    crit = minimal.params_for_host(["all", "critical"])
    assert crit["accounts_disable_within_hours"] == 4 and crit["accounts_tier_only"] is True
    assert minimal.params_for_host(["all", "standard"])["accounts_disable_within_hours"] == 24
    assert "accounts_tier_only" not in minimal.params_for_host(["all", "standard"])
    # groups override the tier, in the order listed: db (2) then web (12) -> web wins
    assert minimal.params_for_host(["all", "critical", "db"])["accounts_disable_within_hours"] == 2
    assert (
        minimal.params_for_host(["all", "critical", "db", "web"])["accounts_disable_within_hours"]
        == 12
    )


def test_host_vars_carry_context(minimal: Policy) -> None:
    values = minimal.host_vars(["all", "critical"])
    assert values["opsrunner_tier"] == "critical"
    assert [w["name"] for w in values["opsrunner_windows"]] == ["crit-weekly"]
    assert values["opsrunner_notices"][0]["ticket"] == "CHG-1"
    assert {p["user"] for p in values["opsrunner_roster"]["people"]} == {
        "alice",
        "dave",
        "frank",
        "grace",
    }
    assert values["opsrunner_roster"]["role_map"]["sysadmin"]["sudo"] is True
    assert minimal.host_vars(["all"])["opsrunner_tier"] == "none"
    assert minimal.host_vars(["all"])["opsrunner_windows"] == []


def test_digest_is_stable_and_follows_content(tmp_path: Path, minimal: Policy) -> None:
    assert load_policy(MINIMAL).digest() == minimal.digest()
    copy = tmp_path / "policy"
    shutil.copytree(MINIMAL, copy)
    (copy / "controls" / "training.yml").write_text(
        (copy / "controls" / "training.yml")
        .read_text()
        .replace("severity: medium", "severity: high")
    )
    assert load_policy(copy).digest() != minimal.digest()
    # comments and key order do not change the meaning, nor the digest
    text = (MINIMAL / "policy.yml").read_text()
    (copy / "controls" / "training.yml").write_text(
        (MINIMAL / "controls" / "training.yml").read_text()
    )
    (copy / "policy.yml").write_text(
        "# a comment\n" + "\n".join(reversed(text.splitlines())) + "\n"
    )
    assert load_policy(copy).digest() == minimal.digest()


def test_waiver_status_and_scope(minimal: Policy) -> None:
    approved, pending = minimal.waivers
    at = dt.datetime(2026, 12, 1, tzinfo=UTC)
    assert (
        approved.status(at) == "active"
        and pending.status(dt.datetime(2026, 11, 15, tzinfo=UTC)) == "pending"
    )
    assert approved.status(dt.datetime(2027, 1, 30, tzinfo=UTC)) == "expired"
    assert minimal.waivers_for("ACX-001", "legacy1", ["all"], at) == (approved,)
    assert minimal.waivers_for("ACX-001", "other", ["all"], at) == ()
    assert (
        minimal.waivers_for("ACX-001", "legacy1", ["all"], dt.datetime(2027, 2, 1, tzinfo=UTC))
        == ()
    )
    # a pending waiver never applies
    assert (
        minimal.waivers_for("TRX-001", "h", ["standard"], dt.datetime(2026, 11, 15, tzinfo=UTC))
        == ()
    )


def test_attestations(minimal: Policy) -> None:
    (att,) = minimal.attestations_for("TRX-001")
    assert att.valid_at(dt.datetime(2027, 1, 1, tzinfo=UTC))
    assert not att.valid_at(dt.datetime(2027, 10, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("spec", "age", "cron"),
    [
        ("daily", dt.timedelta(days=1), "0 3 * * *"),
        ("weekly", dt.timedelta(days=7), "0 3 * * MON"),
        ("monthly", dt.timedelta(days=31), "0 3 1 * *"),
        ("quarterly", dt.timedelta(days=92), "0 3 1 1,4,7,10 *"),
        ("annual", dt.timedelta(days=366), "0 3 1 1 *"),
        ("0 2 * * SUN", dt.timedelta(days=7), "0 2 * * SUN"),
        ("0 9 * * MON-FRI", dt.timedelta(days=3), "0 9 * * MON-FRI"),
        ("0 9 1 */3 *", dt.timedelta(days=92), "0 9 1 */3 *"),
    ],
)
def test_frequency(spec: str, age: dt.timedelta, cron: str) -> None:
    freq = Frequency.parse(spec)
    assert freq.max_age == age and freq.cron == cron and str(freq) == spec
    now = dt.datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert not freq.is_stale(now - age, now)
    assert freq.is_stale(now - age - dt.timedelta(seconds=1), now)
    assert freq.next_after(now) > now


@pytest.mark.parametrize("bad", ["fortnightly", "", "0 2 * *", "61 * * * *", 7])
def test_frequency_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        Frequency.parse(bad)


def test_a_missing_directory_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "nowhere")
    assert "policy directory does not exist" in str(info.value)


def test_models_are_frozen(minimal: Policy) -> None:
    with pytest.raises(Exception, match="frozen"):
        minimal.control("ACX-001").severity = "low"  # type: ignore[misc]


def _copy_minimal(tmp_path: Path) -> Path:
    target = tmp_path / "policy"
    shutil.copytree(MINIMAL, target)
    return target


def test_a_symlink_out_of_the_policy_tree_is_refused_unread(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$y$SECRETCANARY:19000:0:99999:7:::\n")
    policy = _copy_minimal(tmp_path)
    (policy / "controls" / "x.yml").symlink_to(secret)
    with pytest.raises(PolicyError) as caught:
        load_policy(policy)
    text = str(caught.value)
    assert "SECRETCANARY" not in text and "root:" not in text
    assert "controls/x.yml:1: a symlink leaving the policy directory is refused" in text
    # A symlink that stays inside the tree is an ordinary file.
    (policy / "controls" / "x.yml").unlink()
    (policy / "controls" / "x.yml").symlink_to(policy / "controls" / "training.yml")
    with pytest.raises(PolicyError, match="already defined"):
        load_policy(policy)


def test_deep_nesting_is_a_problem_with_a_line_not_a_traceback(tmp_path: Path) -> None:
    policy = _copy_minimal(tmp_path)
    (policy / "controls" / "deep.yml").write_text("controls: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(policy)
    assert "deep.yml:1: nested more than 64 levels deep" in str(caught.value)


def test_an_unknown_key_is_echoed_short_and_escaped(tmp_path: Path) -> None:
    policy = _copy_minimal(tmp_path)
    key = "root:$y$j9T$" + "A" * 200 + "\u202e"
    (policy / "controls" / "odd.yml").write_text(f'"{key}": 1\ncontrols: []\n')
    with pytest.raises(PolicyError) as caught:
        load_policy(policy)
    text = str(caught.value)
    assert "A" * 41 not in text and "\u202e" not in text
    assert "odd.yml:1: ['root:$y$j9T$AAAA" in text and "…']: unknown field" in text


def test_report_grades_come_from_the_policy_in_order(tmp_path: Path) -> None:
    assert load_policy(ROOT / "policy").settings.grades == {"A": 90, "B": 80, "C": 70, "D": 60}
    policy = _copy_minimal(tmp_path)
    text = (policy / "policy.yml").read_text()
    (policy / "policy.yml").write_text(text + "grades: {A: 90, B: 95, C: 70, D: 60}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(policy)
    assert "policy.yml:" in str(caught.value) and "grades: each grade needs a higher" in str(
        caught.value
    )
