"""The period assessment from a fixture store; every figure below is worked out by hand."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from conftest import Site
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.emergency import assess, drills, support
from opsrunner.emergency import incidents as inc
from opsrunner.store import RunRecord, SampleRecord, Store
from opsrunner.store.records import ResultRecord

UTC = dt.UTC
Q4 = dt.datetime(2026, 10, 1, tzinfo=UTC)
END = dt.datetime(2027, 1, 1, tzinfo=UTC)
NOW = dt.datetime(2027, 1, 10, tzinfo=UTC)
DAY = dt.timedelta(days=1)
FLEET = {"host1": ["critical"], "host2": ["standard"]}

TICKETS = """\
id,channel,opened,first_response,resolved,complexity
T1,phone,2026-10-05T09:00:00Z,2026-10-05T09:10:00Z,2026-10-05T10:00:00Z,simple
T2,email,2026-10-06T09:00:00Z,2026-10-06T09:30:00Z,2026-10-06T12:00:00Z,simple
T3,im,2026-11-01T09:00:00Z,2026-11-01T09:05:00Z,2026-11-01T15:00:00Z,simple
T4,email,2026-11-02T09:00:00Z,2026-11-02T09:45:00Z,2026-11-04T09:00:00Z,complex
T5,phone,2026-12-30T09:00:00Z,2026-12-30T11:00:00Z,,complex
T6,phone,2026-09-30T09:00:00Z,2026-09-30T09:01:00Z,2026-09-30T09:30:00Z,simple
"""
SURVEY = """\
survey,respondent,answered,score,comment
2026Q4,u1,2026-12-10T10:00:00Z,5,fast answers
2026Q4,u2,2026-12-10T11:00:00Z,4,
2026Q4,u3,2026-12-11T10:00:00Z,4,
2026Q4,u4,2026-12-12T10:00:00Z,3,slow at month end
2027Q1,u1,2027-01-05T10:00:00Z,1,outside the quarter
"""
REVIEW = """\
summary: s
impact: i
root_causes: [r]
trigger: t
detection: d
resolution: r
went_well: [w]
went_wrong: [w]
action_items:
  - {id: A1, what: Rotate the exposed keys, owner: alice, due: 2026-11-30}
"""


def _samples(store: Store) -> None:
    # 92 days, one scrape a day (interval 1 day): 92 expected per host, 184 for the fleet.
    # host1 answers 90 (2 failed), host2 answers 91 (1 missing): 181 of 184 = 98.370 %.
    rows = []
    for day in range(92):
        at = Q4 + day * DAY
        rows.append(SampleRecord("host1", at, ok=day not in (10, 11), duration_ms=100.0))
        if day != 50:
            # 9 of the 181 answered scrapes are slow: nearest-rank p95 is the 172nd = 100 ms.
            rows.append(SampleRecord("host2", at, ok=True, duration_ms=900.0 if day < 9 else 100.0))
    # Not in the fleet, and before the quarter: neither counts.
    rows.append(SampleRecord("retired9", Q4 + DAY, ok=True, duration_ms=5000.0))
    rows.append(SampleRecord("host1", Q4 - DAY, ok=False, duration_ms=5000.0))
    store.add_samples(rows)


def _restores(store: Store) -> None:
    # In the quarter: checksums matched twice (one of those missed its RTO), failed once.
    cases = [
        (dt.datetime(2026, 9, 20, tzinfo=UTC), "fail", "failed"),  # before: not counted
        (dt.datetime(2026, 10, 20, tzinfo=UTC), "pass", "passed"),
        (dt.datetime(2026, 11, 20, tzinfo=UTC), "fail", "passed"),
        (dt.datetime(2026, 12, 20, tzinfo=UTC), "fail", "failed"),
        (dt.datetime(2026, 12, 21, tzinfo=UTC), "error", ""),  # broken check: not counted
        # An audit's BAK-007 reads the last restore record; it restores nothing: not counted.
        (dt.datetime(2026, 12, 22, tzinfo=UTC), "fail", "audit"),
    ]
    for n, (at, status, checked) in enumerate(cases):
        audit = checked == "audit"
        run = store.begin_run(
            RunRecord(
                ident=f"restore-{n}",
                mode="audit" if audit else "operate",
                job="" if audit else "restore_test",
                status="running",
                started_at=at,
            )
        )
        assert run.id is not None
        store.add_results(
            run.id,
            [
                ResultRecord(
                    "host1",
                    "BAK-007",
                    status,
                    at,
                    data={"status": checked} if checked and not audit else {},
                )
            ],
        )
        store.finish_run(run.id, "successful", rc=0, ended_at=at + dt.timedelta(minutes=5))


def _incidents(site: Site, store: Store) -> None:
    policy = site.policy()
    cases = [
        ("security", dt.datetime(2026, 9, 25, tzinfo=UTC)),  # before the quarter
        ("security", dt.datetime(2026, 10, 15, tzinfo=UTC)),
        ("failure", dt.datetime(2026, 11, 1, tzinfo=UTC)),
        ("security", dt.datetime(2026, 11, 10, tzinfo=UTC)),
    ]
    for kind, at in cases:
        view = inc.open_incident(
            store,
            policy,
            title=f"{kind} at {at.date()}",
            kind=kind,
            severity=2,
            system="intranet",
            hosts=["host2"],
            known_hosts=FLEET,
            symptoms="s",
            impact="i",
            occurred_at=at,
            detected_at=at + dt.timedelta(minutes=10),
            reported_by="alice",
            now=NOW,
        )
        for entry, minutes in (("response", 15), ("resolved", 70)):
            inc.update(
                store,
                policy,
                view.ident,
                kind=entry,
                text=entry,
                by="alice",
                at=at + dt.timedelta(minutes=minutes),
                now=NOW,
            )
    review = site.root / "review.yml"
    review.write_text(REVIEW)
    inc.close(
        store,
        "INC-2026-002",
        review=inc.read_review(review, policy),
        at=dt.datetime(2026, 10, 16, tzinfo=UTC),
        now=NOW,
    )


def _drills(site: Site, store: Store) -> None:
    plan = site.policy().plans[0]
    good = drills.Journal(
        kind="restore",
        plan=plan,
        hosts=["host1"],
        started_at=dt.datetime(2026, 11, 15, 10, tzinfo=UTC),
    )
    good.steady_state_before = {"ok": True}
    good.steady_state_after = {"ok": True}
    good.measurements = {"rto_seconds": 42.0, "rpo_seconds": 3600.0}
    good.ended_at = good.started_at + dt.timedelta(minutes=3)
    drills.record(store, good)
    bad = drills.Journal(
        kind="service-failure",
        plan=plan,
        hosts=["host1"],
        started_at=dt.datetime(2026, 11, 20, 10, tzinfo=UTC),
    )
    bad.steady_state_before = {"ok": True}
    bad.steady_state_after = {"ok": True}
    bad.measurements = {"detect_seconds": 30.0, "recover_seconds": 4000.0}
    bad.problems = ["recovery took 4000 s, beyond 3600 s"]
    bad.ended_at = bad.started_at + dt.timedelta(minutes=70)
    drills.record(store, bad)


@pytest.fixture
def filled(site: Site, store: Store) -> Store:
    _samples(store)
    _restores(store)
    _incidents(site, store)
    _drills(site, store)
    tickets, survey = site.root / "tickets.csv", site.root / "survey.csv"
    tickets.write_text(TICKETS)
    survey.write_text(SURVEY)
    assert support.import_tickets(store, tickets, now=NOW) == {"imported": 6, "skipped": 0}
    assert support.import_survey(store, survey, now=NOW) == {"imported": 5, "skipped": 0}
    return store


def test_quarter_figures_checked_by_hand(site: Site, filled: Store) -> None:
    label, start, end = assess.period("2026Q4")
    assert (label, start, end) == ("2026Q4", Q4, END)
    report = assess.assess(
        filled,
        site.policy(),
        FLEET,
        label=label,
        start=start,
        end=end,
        scrape_interval=DAY,
        now=NOW,
    )
    by = {i["name"]: i for i in report["indicators"]}
    assert by["availability"]["value"] == 98.37  # 181 / 184
    assert by["availability"]["basis"] == "181 of 184 expected scrapes answered on 2 hosts"
    assert by["availability"]["met"] is False  # target 99.5
    assert report["availability_by_host"] == {"host1": 100 * 90 / 92, "host2": 100 * 91 / 92}
    assert by["performance"]["value"] == 100.0 and by["performance"]["met"] is True
    assert by["data_accuracy"]["value"] == 66.67  # 2 of 3 matched
    assert by["data_accuracy"]["met"] is False
    assert by["security_incidents"]["value"] == 2.0  # two in Q4, one quarter
    assert by["security_incidents"]["met"] is False
    assert by["satisfaction"]["value"] == 4.0  # (5 + 4 + 4 + 3) / 4
    assert by["satisfaction"]["met"] is True
    assert report["indicators_met"] == 2
    assert report["grade"] == "D"  # fewer than 3 indicators met
    assert [i["ident"] for i in report["incidents"]] == [
        "INC-2026-002",
        "INC-2026-003",
        "INC-2026-004",
    ]
    first = report["incidents"][0]
    assert (first["detect_minutes"], first["respond_minutes"], first["resolve_minutes"]) == (
        10.0,
        5.0,
        60.0,
    )
    assert [(d["kind"], d["outcome"]) for d in report["drills"]] == [
        ("restore", "completed"),
        ("service-failure", "deviated"),
    ]
    assert report["drills"][0]["measurements"]["rto_seconds"] == 42.0
    simple, complex_ = report["support"]
    assert simple == {
        "complexity": "simple",
        "count": 3,
        "responded_in_time": 2,
        "resolved_in_time": 2,
        "median_first_response_minutes": 10.0,
        "median_resolve_hours": 3.0,
    }
    assert complex_ == {
        "complexity": "complex",
        "count": 2,
        "responded_in_time": 1,
        "resolved_in_time": 2,
        "median_first_response_minutes": 82.5,
        "median_resolve_hours": 48.0,
    }
    overdue = {(a["source"], a["id"]) for a in report["overdue_action_items"]}
    # The incident's A1 was due 2026-11-30; the drill's A1 due 2026-12-20 (30 days after).
    assert overdue == {("INC-2026-002", "A1"), ("drill 2", "A1")}
    assert [t["at"][:10] for t in report["compliance_trend"]] == [
        "2026-11-01",
        "2026-12-01",
        "2027-01-01",
    ]
    # Nothing attested: every manual control is "not reviewed", never passed.
    states = {c["control"]: c["state"] for c in report["overdue_controls"]}
    assert states["TRN-001"] == "not reviewed" and states["EMG-001"] == "not reviewed"
    markdown = assess.to_markdown(report)
    assert "**Grade D**: 2 of 5 indicators met" in markdown
    assert "| availability | 98.37 % | ≥ 99.5 % | **no** |" in markdown


def test_year_and_bad_periods() -> None:
    assert assess.period(year=2026)[1:] == (
        dt.datetime(2026, 1, 1, tzinfo=UTC),
        dt.datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert assess.period("2026q1")[1:] == (
        dt.datetime(2026, 1, 1, tzinfo=UTC),
        dt.datetime(2026, 4, 1, tzinfo=UTC),
    )
    for bad in ("2026Q5", "Q4", "2026-Q4"):
        with pytest.raises(assess.AssessError, match="--quarter"):
            assess.period(bad)
    with pytest.raises(assess.AssessError, match="one of"):
        assess.period("2026Q4", 2026)


def test_bad_csv_rows_are_refused_with_file_line_column(site: Site, store: Store) -> None:
    bad = site.root / "tickets.csv"
    bad.write_text(
        "id,channel,opened,first_response,resolved,complexity\n"
        "T1,fax,2026-10-05T09:00:00Z,2026-10-05T09:10:00Z,,simple\n"
        "T2,phone,2026-10-05T09:00:00Z,2026-10-05T08:10:00Z,,hard\n"
        "T3,phone,2099-01-01T00:00:00Z,,,simple\n"
    )
    with pytest.raises(support.ImportError_) as caught:
        support.import_tickets(store, bad, now=NOW)
    lines = str(caught.value).splitlines()
    assert lines == [
        f"{bad}:2: channel: 'fax' is not one of phone, email, im",
        f"{bad}:3: complexity: 'hard' is not one of simple, complex",
        f"{bad}:3: first_response: is before opened",
        f"{bad}:4: opened: 2099-01-01T00:00:00Z is in the future",
    ]
    assert support.ticket_stats(store, Q4, END, site.policy().targets.support)[0].count == 0  # type: ignore[union-attr]
    header = site.root / "survey.csv"
    header.write_text("survey,respondent,score\n")
    with pytest.raises(
        support.ImportError_, match=r"survey\.csv:1: header lacks answered, comment"
    ):
        support.import_survey(store, header, now=NOW)


def test_cli_assess_json_and_markdown(site: Site, filled: Store) -> None:
    runner = CliRunner()
    cfg = ["--config", str(site.config), "--inventory", str(site.inventory)]
    out = runner.invoke(app, ["assess", "--quarter", "2026Q4", "--format", "json", *cfg])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["period"] == "2026Q4" and len(report["indicators"]) == 5
    target = Path(site.root / "assess.md")
    written = runner.invoke(app, ["assess", "--year", "2026", "-o", str(target), *cfg])
    assert written.exit_code == 0, written.output
    assert target.read_text().startswith("# Operations assessment 2026")
    hostile = "<img src=x onerror=alert(1)>"
    at = dt.datetime(2026, 12, 1, tzinfo=UTC)
    inc.open_incident(
        filled,
        site.policy(),
        title=hostile,
        kind="other",
        severity=2,
        system="web",
        hosts=["host2"],
        known_hosts=FLEET,
        symptoms="s",
        impact="i",
        occurred_at=at,
        detected_at=at,
        reported_by="alice",
        now=NOW,
    )
    page = runner.invoke(app, ["assess", "--quarter", "2026Q4", "--format", "html", *cfg])
    assert page.exit_code == 0, page.output
    assert "<h1>Operations assessment 2026Q4</h1>" in page.output
    assert "<script" not in page.output and "Content-Security-Policy" in page.output
    # Untrusted text (an incident title) is escaped, never markup.
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.output and hostile not in page.output
    bad = runner.invoke(app, ["assess", "--quarter", "2026Q9", *cfg])
    assert bad.exit_code == 2 and "--quarter: '2026Q9' is not YYYYQn" in bad.output


def test_the_quarter_counts_changes_and_patching_outside_them(site: Site, store: Store) -> None:
    from opsrunner.notify import changes

    in_q4 = Q4 + dt.timedelta(days=20)
    changes.plan(
        store,
        in_q4,
        title="opsdemo security update",
        what="opsdemo-web 1.0 -> 1.1",
        why="CVE fix",
        hosts=["host1"],
        rollback="apt install opsdemo-web=1.0",
    )
    changes.plan(  # in Q3: not this quarter's
        store,
        Q4 - dt.timedelta(days=5),
        title="older",
        what="x",
        why="y",
        hosts=["host1"],
        rollback="z",
    )
    run = store.begin_run(
        RunRecord("20261025-enforce-pat", "enforce", "running", in_q4, controls=("PAT-001",))
    )
    assert run.id is not None
    store.finish_run(run.id, "successful", ended_at=in_q4 + dt.timedelta(minutes=9))
    label, start, end = assess.period("2026Q4")
    report = assess.assess(
        store, site.policy(), FLEET, label=label, start=start, end=end, scrape_interval=DAY, now=NOW
    )
    got = report["changes"]
    assert got["changes"] == 1 and got["by_status"]["planned"] == 1
    assert got["patching_outside_changes"] == ["20261025-enforce-pat"]
    markdown = assess.to_markdown(report)
    assert "## Changes (3.4)" in markdown and "`20261025-enforce-pat`" in markdown
    assert "patching enforce outside a change: 20261025-enforce-pat" in assess.to_html(report)
