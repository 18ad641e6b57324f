"""Attestations: recorded with evidence by hash, refused when wrong, scored until they lapse."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
import yaml
from conftest import Site
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.emergency import attest as att
from opsrunner.scoring import score

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
FLEET = {"host1": ["critical"], "host2": ["standard"]}


def _manual_passed(site: Site, at: dt.datetime) -> tuple[int, float | None]:
    figure = score(site.policy(), [], FLEET, at).overall.get("effective", "manual")
    return figure.passed, figure.percent


def test_attest_records_evidence_by_hash_and_the_score_rises(site: Site) -> None:
    plan = site.evidence("training-plan-2027.md", "# Training plan 2027\n- goals\n")
    minutes = site.evidence("training-minutes.md", "Minutes of the training review\n")
    before = _manual_passed(site, NOW)
    record = att.attest(
        site.policy(),
        control="TRN-001",
        evidence=[plan, minutes],
        by="erin",
        state_dir=site.state_dir,
        note="approved by the board",
        now=NOW,
    )
    assert record.id == "ATT-2026-001"
    # Annual control: valid for the frequency's 366 days unless told otherwise.
    assert record.valid_until == NOW + dt.timedelta(days=366)
    written = yaml.safe_load((site.policy_dir / "attestations.yml").read_text())
    entry = written["attestations"][0]
    sha = hashlib.sha256(plan.read_bytes()).hexdigest()
    assert entry["evidence"] == {"file": plan.name, "sha256": sha, "size": plan.stat().st_size}
    assert entry["more_evidence"][0]["file"] == minutes.name
    assert entry["note"] == "approved by the board"
    kept = att.evidence_file(site.state_dir, sha)
    assert kept.read_bytes() == plan.read_bytes()
    after = _manual_passed(site, NOW)
    assert after[0] == before[0] + 1
    assert (after[1] or 0) > (before[1] or 0)
    # A year and a day later it has lapsed: the control fails again.
    assert _manual_passed(site, NOW + dt.timedelta(days=367))[0] == before[0]
    checks = att.verify(site.policy(), "ATT-2026-001", site.state_dir, [plan])
    assert [c.ok for c in checks] == [True, True, True]


def test_revoked_attestation_fails_its_control(site: Site) -> None:
    proof = site.evidence("drill-record.md", "restore drill held 2026-11-20\n")
    att.attest(
        site.policy(),
        control="EMG-003",
        evidence=[proof],
        by="alice",
        state_dir=site.state_dir,
        now=NOW,
    )
    assert _manual_passed(site, NOW + dt.timedelta(hours=2))[0] == 1
    revoked = att.revoke(
        site.policy(),
        "ATT-2026-001",
        by="dave",
        reason="the drill record was of another system",
        now=NOW + dt.timedelta(hours=1),
    )
    assert revoked.revoked_at == NOW + dt.timedelta(hours=1)
    items = score(site.policy(), [], FLEET, NOW + dt.timedelta(hours=2)).items
    item = next(i for i in items if i.control_id == "EMG-003")
    assert item.effective == "fail" and "revoked" in item.reason
    # Before the revocation it held.
    assert _manual_passed(site, NOW + dt.timedelta(minutes=30))[0] == 1
    with pytest.raises(att.AttestError, match="already revoked"):
        att.revoke(site.policy(), "ATT-2026-001", by="dave", reason="again", now=NOW)


@pytest.mark.parametrize(
    ("control", "by", "kwargs", "message"),
    [
        ("XYZ-999", "erin", {}, "unknown control id 'XYZ-999'"),
        ("FW-001", "alice", {}, "FW-001 is automated"),
        ("TRN-001", "nobody", {}, "'nobody' is not on the roster"),
        ("TRN-001", "alice", {}, "alice is sysadmin; TRN-001 is owned by business_support"),
        ("EMG-003", "frank", {}, "frank is departed"),
        (
            "TRN-001",
            "erin",
            {"valid_until": NOW + dt.timedelta(days=400)},
            "--valid-until: 2028-01-07T08:00:00Z is after 2027-12-04T08:00:00Z",
        ),
        ("TRN-001", "erin", {"evidence": []}, "--evidence: TRN-001 needs evidence"),
        ("TRN-001", "erin", {"evidence": ["missing.pdf"]}, "missing.pdf: no such file"),
        ("TRN-001", "erin", {"evidence": ["empty.txt"]}, "empty.txt is empty"),
    ],
)
def test_bad_attestations_are_refused_and_nothing_is_written(
    site: Site, control: str, by: str, kwargs: dict[str, object], message: str
) -> None:
    (site.root / "empty.txt").write_text("")
    proof = site.evidence("proof.md", "evidence\n")
    if "evidence" in kwargs:
        kwargs["evidence"] = [site.root / str(p) for p in kwargs["evidence"]]  # type: ignore[attr-defined]
    arguments: dict[str, object] = {"evidence": [proof], **kwargs}
    before = (site.policy_dir / "attestations.yml").read_bytes()
    with pytest.raises(att.AttestError) as caught:
        att.attest(
            site.policy(),
            control=control,
            by=by,
            state_dir=site.state_dir,
            now=NOW,
            **arguments,  # type: ignore[arg-type]
        )
    assert message in str(caught.value)
    assert (site.policy_dir / "attestations.yml").read_bytes() == before
    assert not (site.state_dir / "evidence").exists()


def test_emg001_cannot_outlive_the_plan_review_and_an_overdue_review_refuses(
    site: Site,
) -> None:
    proof = site.evidence("plans-approval.md", "plans approved\n")
    # The plans were reviewed 2026-10-15 and are due a year later: the attestation stops there.
    record = att.attest(
        site.policy(),
        control="EMG-001",
        evidence=[proof],
        by="dave",
        state_dir=site.state_dir,
        now=NOW,
    )
    assert record.valid_until == dt.datetime(2027, 10, 15, tzinfo=UTC)
    later = dt.datetime(2027, 10, 20, tzinfo=UTC)
    with pytest.raises(att.AttestError, match="due for review on 2027-10-15"):
        att.attest(
            site.policy(),
            control="EMG-001",
            evidence=[proof],
            by="dave",
            state_dir=site.state_dir,
            now=later,
        )


def test_an_incident_action_item_bounds_emg007(site: Site) -> None:
    proof = site.evidence("reviews.md", "post-incident reviews\n")
    due = dt.datetime(2026, 12, 20, tzinfo=UTC)
    record = att.attest(
        site.policy(),
        control="EMG-007",
        evidence=[proof],
        by="dave",
        state_dir=site.state_dir,
        now=NOW,
        limits=[(due, "INC-2026-001 action A1 is due")],
    )
    assert record.valid_until == due
    with pytest.raises(att.AttestError, match="INC-2026-001 action A1 is due"):
        att.attest(
            site.policy(),
            control="EMG-007",
            evidence=[proof],
            by="dave",
            state_dir=site.state_dir,
            now=due,
            limits=[(due, "INC-2026-001 action A1 is due")],
        )


def test_verify_finds_a_tampered_kept_copy(site: Site) -> None:
    proof = site.evidence("support-channels.md", "phone, e-mail, IM\n")
    att.attest(
        site.policy(),
        control="SUP-001",
        evidence=[proof],
        by="erin",
        state_dir=site.state_dir,
        now=NOW,
    )
    kept = att.evidence_file(site.state_dir, hashlib.sha256(proof.read_bytes()).hexdigest())
    kept.chmod(0o640)
    kept.write_text("something else\n")
    checks = att.verify(site.policy(), "ATT-2026-001", site.state_dir)
    assert not checks[0].ok and "now hashes to" in checks[0].message


def test_cli_attest_then_score_at_shows_it_lapse(site: Site) -> None:
    runner = CliRunner()
    proof = site.evidence("training-record.md", "training held, 12 attendees\n")
    cfg = ["--config", str(site.config)]
    result = runner.invoke(
        app,
        [
            "attest",
            "TRN-003",
            "--evidence",
            str(proof),
            "--by",
            "erin",
            "--valid-until",
            "2027-01-31",
            *cfg,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ATT-" in result.output and "TRN-003" in result.output
    listed = runner.invoke(app, ["attest", "list", "--json", *cfg])
    entry = json.loads(listed.output)[0]
    assert entry["state"] == "valid"
    assert entry["valid_until"] == "2027-02-01T00:00:00Z"

    def manual_at(at: str) -> dict[str, object]:
        out = runner.invoke(
            app,
            [
                "score",
                "--json",
                "--kind",
                "manual",
                "--at",
                at,
                "--inventory",
                str(site.inventory),
                *cfg,
            ],
        )
        assert out.exit_code in (0, 1), out.output
        return json.loads(out.output)  # type: ignore[no-any-return]

    # One manual control passes now (nothing else is attested), none once it lapsed.
    now_manual = manual_at("+1h")["overall"]["effective/manual"]  # type: ignore[index]
    later_manual = manual_at("2027-02-02")["overall"]["effective/manual"]  # type: ignore[index]
    assert (now_manual["passed"], later_manual["passed"]) == (1, 0)
    assert now_manual["percent"] > 0 and later_manual["percent"] == 0
    refused = runner.invoke(
        app, ["attest", "FW-001", "--evidence", str(proof), "--by", "alice", *cfg]
    )
    assert refused.exit_code == 2 and "FW-001 is automated" in refused.output


def test_the_demo_attests_three_controls_from_its_shipped_evidence(site: Site) -> None:
    from opsrunner.emergency import attest_demo

    before = _manual_passed(site, NOW)[0]
    policy = attest_demo(site.policy(), site.state_dir, now=NOW)
    assert [a.control for a in policy.attestations] == ["TRN-003", "EMG-001", "SUP-001"]
    assert _manual_passed(site, NOW + dt.timedelta(minutes=1))[0] == before + 3
    for record in policy.attestations:
        assert record.id is not None
        assert all(c.ok for c in att.verify(policy, record.id, site.state_dir))
