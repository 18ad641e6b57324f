"""Alerts: raised once per fingerprint, repeated at the policy's interval, muted in an announced
window, acknowledged, resolved with a "resolved" message; delivered over loopback SMTP and HTTP."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from opsrunner.notify import alerts, notices, outbox
from opsrunner.policy.loader import Policy
from opsrunner.store import Store
from tests.unit.notify.conftest import HttpReceiver, SmtpSink, reopen
from tests.unit.notify.helpers import GROUPS, record_run

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
HOSTS = {h: list(g) for h, g in GROUPS.items()}


def _subjects(sink: SmtpSink) -> list[str]:
    return [str(m.message["Subject"]) for m in sink.received]


def test_alert_fires_once_repeats_and_resolves(
    policy: Policy, store: Store, smtp_sink: SmtpSink, http_receiver: HttpReceiver
) -> None:
    record_run(store, T0, {("host1", "PAT-001"): "fail", ("host1", "FW-001"): "pass"})
    first = alerts.evaluate(policy, store, T0 + dt.timedelta(minutes=1))
    (fp,) = first.raised
    assert all(d.ok for d in first.delivered) and len(first.delivered) == 2
    (mail,) = smtp_sink.received
    assert mail.rcpt_tos == ["alice@ops.example.com"]
    assert mail.message["Subject"].startswith("[opsrunner] FIRING high: PAT-001 fail on host1")
    (hook,) = http_receiver.requests
    body = hook.json()
    assert body["status"] == "firing" and body["alerts"][0]["fingerprint"] == fp
    assert body["alerts"][0]["labels"]["control"] == "PAT-001"

    # Still failing 30 minutes later: no second message (grouped by fingerprint).
    record_run(store, T0 + dt.timedelta(minutes=20), {("host1", "PAT-001"): "fail"})
    quiet = alerts.evaluate(policy, store, T0 + dt.timedelta(minutes=31))
    assert quiet.raised == [] and quiet.repeated == [] and quiet.delivered == []

    # After repeat_minutes (60): repeated once.
    again = alerts.evaluate(policy, store, T0 + dt.timedelta(minutes=62))
    assert again.repeated == [fp] and len(smtp_sink.received) == 2
    assert "FIRING (repeat)" in _subjects(smtp_sink)[1]

    # It clears: one "resolved" message to the same people, with an end time.
    record_run(store, T0 + dt.timedelta(minutes=90), {("host1", "PAT-001"): "pass"})
    done = alerts.evaluate(policy, store, T0 + dt.timedelta(minutes=91))
    assert done.resolved == [fp]
    assert _subjects(smtp_sink)[2].startswith("[opsrunner] RESOLVED high: PAT-001 fail on host1")
    resolved = http_receiver.requests[-1].json()
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"] == "2026-12-01T09:31:00Z"
    (row,) = alerts.list_alerts(store)
    assert row.status == "resolved" and row.sent_count == 2

    # And stays quiet afterwards.
    assert alerts.evaluate(policy, store, T0 + dt.timedelta(hours=5)).delivered == []
    assert len(smtp_sink.received) == 3 and len(http_receiver.requests) == 3


def test_ack_stops_the_repeats(policy: Policy, store: Store, smtp_sink: SmtpSink) -> None:
    record_run(store, T0, {("host1", "PAT-001"): "fail"})
    (fp,) = alerts.evaluate(policy, store, T0).raised
    alerts.ack(store, fp[:6], "alice", T0 + dt.timedelta(minutes=5))
    later = alerts.evaluate(policy, store, T0 + dt.timedelta(hours=3))
    assert later.repeated == [] and len(smtp_sink.received) == 1
    (row,) = alerts.list_alerts(store, "firing")
    assert row.acked_by == "alice"


def test_runs_failing_and_hosts_unknown_raise_their_alerts(
    policy: Policy, store: Store, smtp_sink: SmtpSink
) -> None:
    record_run(store, T0, {("host1", "FW-001"): "pass"}, job="audit-daily")
    record_run(
        store,
        T0 + dt.timedelta(hours=1),
        {("host2", "FW-001"): "unknown"},
        unreachable=("host2",),
        job="audit-daily",
    )
    record_run(
        store,
        T0 + dt.timedelta(hours=2),
        {("host2", "FW-001"): "unknown"},
        unreachable=("host2",),
        job="audit-daily",
        status="failed",
    )
    found = {c.rule: c for c in alerts.conditions(policy, store, T0 + dt.timedelta(hours=3))}
    assert found["host_unknown"].host == "host2"
    assert "unreachable in the last 2 runs" in found["host_unknown"].summary
    assert found["run_failed"].labels["job"] == "audit-daily"
    # A later successful run of the job clears its alert.
    record_run(store, T0 + dt.timedelta(hours=4), {("host2", "FW-001"): "pass"}, job="audit-daily")
    rules = {c.rule for c in alerts.conditions(policy, store, T0 + dt.timedelta(hours=5))}
    assert "run_failed" not in rules and "host_unknown" not in rules


def test_alert_is_muted_inside_an_announced_window(
    policy: Policy, store: Store, smtp_sink: SmtpSink
) -> None:
    # The notice of critical-weekly (opens 2026-11-28T18:00Z) went out in time ...
    notices.send_notice(
        policy, store, "critical-weekly", HOSTS, dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
    )
    before = len(smtp_sink.received)
    # ... so a failure on host1 (critical) during the window is expected, and muted.
    inside = dt.datetime(2026, 11, 28, 18, 30, tzinfo=dt.UTC)
    record_run(store, inside, {("host1", "PAT-001"): "fail"})
    muted = alerts.evaluate(policy, store, inside + dt.timedelta(minutes=5))
    assert len(muted.muted) == 1 and muted.delivered == []
    assert alerts.list_alerts(store)[0].muted_by == "critical-weekly"
    # Still failing after the window closed: now it is sent.
    after = alerts.evaluate(policy, store, dt.datetime(2026, 11, 28, 22, 5, tzinfo=dt.UTC))
    assert after.muted == [] and len(smtp_sink.received) == before + 1
    # A host outside the window's groups is never muted by it.
    record_run(store, inside, {("host2", "PAT-001"): "fail"})
    other = alerts.evaluate(policy, store, inside + dt.timedelta(minutes=6))
    assert any("host2" in alerts.find_alert(store, fp).summary for fp in other.raised)
    assert not any("host2" in alerts.find_alert(store, fp).summary for fp in other.muted)


def test_undelivered_alert_waits_in_the_outbox_until_the_receiver_is_back(
    policy: Policy, store: Store, smtp_sink: SmtpSink, http_receiver: HttpReceiver
) -> None:
    http_receiver.stop()
    record_run(store, T0, {("host1", "PAT-001"): "fail"})
    first = alerts.evaluate(policy, store, T0)
    assert sorted(d.ok for d in first.delivered) == [False, True]
    (waiting,) = outbox.messages(store, status="pending")
    assert waiting.channel == "hook" and waiting.kind == "alert"
    http_receiver.start()
    with reopen(store) as reopened:  # a restarted daemon
        later = alerts.evaluate(policy, reopened, T0 + dt.timedelta(minutes=2))
        assert [(d.channel, d.ok) for d in later.delivered] == [("hook", True)]
        assert outbox.messages(reopened, status="pending") == []
    (request,) = http_receiver.requests
    assert request.json()["status"] == "firing"
    assert len(smtp_sink.received) == 1


def test_overdue_incident_action_raises_an_alert(
    policy: Policy, store: Store, tmp_path: Path
) -> None:
    from opsrunner.emergency import incidents as inc

    at = dt.datetime(2026, 11, 10, tzinfo=dt.UTC)
    view = inc.open_incident(
        store,
        policy,
        title="disk full",
        kind="failure",
        severity=2,
        system="intranet",
        hosts=["host1"],
        known_hosts=["host1", "host2"],
        symptoms="s",
        impact="i",
        occurred_at=at,
        detected_at=at + dt.timedelta(minutes=5),
        reported_by="alice",
        now=at + dt.timedelta(minutes=10),
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
            now=at + dt.timedelta(hours=2),
        )
    review = tmp_path / "review.yml"
    review.write_text(
        "summary: s\nimpact: i\nroot_causes: [r]\ntrigger: t\ndetection: d\nresolution: r\n"
        "went_well: [w]\nwent_wrong: [w]\naction_items:\n"
        "  - {id: A1, what: Add a disk alarm, owner: alice, due: 2026-11-30}\n"
    )
    inc.close(
        store,
        view.ident,
        review=inc.read_review(review, policy),
        at=at + dt.timedelta(days=1),
        now=at + dt.timedelta(days=1),
    )
    rules = lambda t: {c.rule: c for c in alerts.conditions(policy, store, t)}  # noqa: E731
    assert "incident_action_overdue" not in rules(dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC))
    late = rules(dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC))["incident_action_overdue"]
    assert late.labels == {
        "alertname": "IncidentActionOverdue",
        "incident": view.ident,
        "action": "A1",
    }
    assert "Add a disk alarm" in late.summary and "due 2026-11-30" in late.summary
