"""Incidents: opened with the facts, updated in order, closed with a review; bad input refused."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from conftest import Site
from typer.testing import CliRunner

from opsrunner.cli import app
from opsrunner.emergency import incidents as inc
from opsrunner.store import Store

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
NOW = dt.datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
HOSTS = {"host1", "host2", "host3"}
REVIEW = """\
summary: The database host ran out of disk and the application stopped writing.
impact: Orders could not be saved for 95 minutes; 40 users affected.
root_causes:
  - Log rotation was disabled by a package upgrade
trigger: A burst of debug logging after the 09:00 deploy
detection: MON-003 failed at the next audit; users called support
resolution: Old logs removed, rotation re-enabled, service restarted
went_well:
  - Support escalated at once
went_wrong:
  - The disk alert went to a retired mailbox
action_items:
  - {id: A1, what: Route disk alerts to the on-call rota, owner: alice, due: 2026-11-30}
  - {id: A2, what: Pin logrotate config in the monitoring role, owner: bruce, due: 2027-01-15}
"""


def _open(store: Store, site: Site, **changes: object) -> inc.View:
    facts: dict[str, object] = {
        "title": "Orders not saved",
        "kind": "failure",
        "severity": 1,
        "system": "orders",
        "hosts": ["host1"],
        "known_hosts": HOSTS,
        "symptoms": "HTTP 500 on checkout",
        "impact": "40 users could not order",
        "occurred_at": T0,
        "detected_at": T0 + dt.timedelta(minutes=12),
        "reported_by": "erin",
        "now": NOW,
        **changes,
    }
    return inc.open_incident(store, site.policy(), **facts)  # type: ignore[arg-type]


def test_open_update_close_with_review_and_times_by_hand(site: Site, store: Store) -> None:
    policy = site.policy()
    view = _open(store, site)
    assert view.ident == "INC-2026-001" and view.stage == "open"
    steps = [
        ("response", "alice on it", 20),
        ("action", "stopped the debug logging", 35),
        ("progress", "reported to dave", 60),
        ("resolved", "orders saved again", 107),
    ]
    for kind, text, minutes in steps:
        inc.update(
            store,
            policy,
            view.ident,
            kind=kind,
            text=text,
            by="alice",
            at=T0 + dt.timedelta(minutes=minutes),
            now=NOW,
        )
    review_file = site.root / "review.yml"
    review_file.write_text(REVIEW)
    closed = inc.close(
        store,
        view.ident,
        review=inc.read_review(review_file, policy),
        at=T0 + dt.timedelta(hours=5),
        now=NOW,
    )
    assert closed.stage == "closed"
    # Occurred 09:00, detected 09:12, first response 09:20, resolved 10:47.
    assert closed.times() == {
        "detect_minutes": 12.0,
        "respond_minutes": 8.0,
        "resolve_minutes": 95.0,
    }
    # A1 was due 2026-11-30 and is open on 2026-12-03: past due; A2 is not due yet.
    assert [i.id for i in closed.overdue_items(NOW.date())] == ["A1"]
    done = inc.update(
        store, policy, view.ident, kind="note", text="", by="alice", done=["A1"], now=NOW
    )
    assert done.overdue_items(NOW.date()) == []
    assert inc.show(store, view.ident).review is not None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hosts": ["host9"]}, "--host: host9 not in the inventory"),
        ({"hosts": []}, "--host: name at least one affected host"),
        ({"severity": 7}, "--severity: 7 is not a plan grade (1, 2)"),
        ({"kind": "outage"}, "--kind: 'outage' is not one of"),
        ({"symptoms": "  "}, "--symptoms: required"),
        (
            {"occurred_at": NOW + dt.timedelta(hours=1)},
            "--occurred: 2026-12-03T09:00:00Z is in the future",
        ),
        (
            {"detected_at": T0 - dt.timedelta(minutes=5)},
            "--detected: 2026-11-10T08:55:00Z is before --occurred",
        ),
        ({"reported_by": "mallory"}, "--by: 'mallory' is not on the roster"),
    ],
)
def test_bad_incidents_are_refused_and_nothing_written(
    site: Site, store: Store, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(inc.IncidentError) as caught:
        _open(store, site, **changes)
    assert message in str(caught.value)
    assert inc.count(store) == 0


def test_updates_in_order_and_close_needs_resolution_and_review(site: Site, store: Store) -> None:
    policy = site.policy()
    view = _open(store, site)
    with pytest.raises(inc.IncidentError, match="before the detection"):
        inc.update(store, policy, view.ident, kind="action", text="x", by="alice", at=T0, now=NOW)
    inc.update(
        store,
        policy,
        view.ident,
        kind="action",
        text="restart",
        by="alice",
        at=T0 + dt.timedelta(minutes=30),
        now=NOW,
    )
    with pytest.raises(inc.IncidentError, match="before the last entry"):
        inc.update(
            store,
            policy,
            view.ident,
            kind="progress",
            text="x",
            by="alice",
            at=T0 + dt.timedelta(minutes=20),
            now=NOW,
        )
    with pytest.raises(inc.IncidentError, match="in the future"):
        inc.update(
            store,
            policy,
            view.ident,
            kind="progress",
            text="x",
            by="alice",
            at=NOW + dt.timedelta(minutes=1),
            now=NOW,
        )
    review_file = site.root / "review.yml"
    review_file.write_text(REVIEW)
    review = inc.read_review(review_file, policy)
    with pytest.raises(inc.IncidentError, match="is not resolved"):
        inc.close(store, view.ident, review=review, now=NOW)
    assert len(inc.show(store, view.ident).timeline) == 1
    assert inc.show(store, view.ident).stage == "open"


def test_a_review_missing_fields_names_file_line_and_field(site: Site) -> None:
    broken = site.root / "review.yml"
    broken.write_text(
        REVIEW.replace("trigger: A burst", "trigerr: A burst").replace(
            "owner: bruce", "owner: nobody"
        )
    )
    with pytest.raises(inc.IncidentError) as caught:
        inc.read_review(broken, site.policy())
    text = str(caught.value)
    assert f"{broken}:1: trigger: required field is missing" in text
    assert f"{broken}:5: trigerr: Extra inputs are not permitted" in text
    bad_owner = site.root / "review2.yml"
    bad_owner.write_text(REVIEW.replace("owner: bruce", "owner: nobody"))
    with pytest.raises(inc.IncidentError, match=r"review2.yml:14: action_items\[1\].owner"):
        inc.read_review(bad_owner, site.policy())


def test_cli_incident_lifecycle(site: Site) -> None:
    runner = CliRunner()
    cfg = ["--config", str(site.config)]
    opened = runner.invoke(
        app,
        [
            "incident",
            "open",
            "--title",
            "SSH brute force on host2",
            "--kind",
            "security",
            "--severity",
            "2",
            "--system",
            "intranet",
            "--host",
            "host2",
            "--symptoms",
            "500 failed logins",
            "--impact",
            "none; the source was banned",
            "--occurred",
            "2026-11-20T10:00:00Z",
            "--detected",
            "2026-11-20T10:04:00Z",
            "--by",
            "alice",
            *cfg,
        ],
    )
    assert opened.exit_code == 0, opened.output
    ident = opened.output.split()[0]
    for kind, at in (("response", "2026-11-20T10:06:00Z"), ("resolved", "2026-11-20T10:20:00Z")):
        out = runner.invoke(
            app,
            [
                "incident",
                "update",
                ident,
                "--kind",
                kind,
                "--text",
                kind,
                "--by",
                "alice",
                "--at",
                at,
                *cfg,
            ],
        )
        assert out.exit_code == 0, out.output
    no_review = runner.invoke(app, ["incident", "close", ident, *cfg])
    assert no_review.exit_code == 2 and "--review" in no_review.output
    review = Path(site.root / "review.yml")
    review.write_text(REVIEW)
    closed = runner.invoke(app, ["incident", "close", ident, "--review", str(review), *cfg])
    assert closed.exit_code == 0, closed.output
    assert "minutes to resolve 16.0" in closed.output
    shown = json.loads(runner.invoke(app, ["incident", "list", "--json", *cfg]).output)
    assert shown[0]["stage"] == "closed" and shown[0]["respond_minutes"] == 2.0
    bad = runner.invoke(
        app, ["incident", "update", "INC-2026-404", "--by", "alice", "--text", "x", *cfg]
    )
    assert bad.exit_code == 2 and "no incident INC-2026-404" in bad.output
