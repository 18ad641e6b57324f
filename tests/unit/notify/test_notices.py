"""Advance notices (3.1.3): composed from the window and the last patching audit, delivered over
real loopback SMTP and HTTP, recorded per recipient, retried until a receiver comes back, and
read by the patching role's window rule."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import importlib.util
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from opsrunner.notify import notices, outbox
from opsrunner.notify.routing import secrets_for
from opsrunner.policy.loader import Policy
from opsrunner.store import Store
from opsrunner.store.notices import NoticeRecord, OutboxMessage
from tests.unit.notify.conftest import HMAC_KEY, HttpReceiver, SmtpSink, reopen
from tests.unit.notify.helpers import GROUPS, record_run

# critical-weekly opens Sunday 02:00 Asia/Shanghai: 2026-11-28T18:00Z, notice due 72 h before.
NOW = dt.datetime(2026, 11, 24, 0, 0, tzinfo=dt.UTC)
OPENS = dt.datetime(2026, 11, 28, 18, 0, tzinfo=dt.UTC)
HOSTS = {h: list(g) for h, g in GROUPS.items()}
MAILS = {"dave@ops.example.com", "finance@biz.example.com", "alice@ops.example.com"}


def _audit_with_pending_updates(store: Store) -> None:
    pending = [
        {"name": "opsdemo-web", "installed": "1.0", "candidate": "1.1"},
        {"name": "opsdemo-base", "installed": "1.0", "candidate": "1.1"},
    ]
    record_run(
        store,
        NOW - dt.timedelta(hours=5),
        {("host1", "PAT-001"): "fail", ("host2", "PAT-001"): "pass"},
        data={("host1", "PAT-001"): {"pending": pending}},
    )


def _count(store: Store, table: Any) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_notice_reaches_mail_and_webhook_and_is_recorded(
    policy: Policy, store: Store, smtp_sink: SmtpSink, http_receiver: HttpReceiver
) -> None:
    _audit_with_pending_updates(store)
    sent = notices.send_notice(policy, store, "critical-weekly", HOSTS, NOW)

    assert sent.status == "sent" and sent.in_time
    assert sent.window_start == OPENS and sent.hosts == ["host1"]
    assert sent.audience == ["finance", "ops"]
    assert {(d["channel"], d["recipient"], d["status"]) for d in sent.deliveries} == {
        *(("mail", m, "sent") for m in MAILS),
        ("hook", "hook", "sent"),
    }
    digest = hashlib.sha256(f"{sent.subject}\n{sent.body}".encode()).hexdigest()
    assert sent.content_sha256 == digest

    # What the mail server received: one message per recipient, the window, hosts and changes.
    mails = smtp_sink.by_recipient()
    assert set(mails) == MAILS and len(smtp_sink.received) == 3
    body = mails["finance@biz.example.com"].message.get_payload(decode=True).decode()
    assert "critical-weekly" in body and "2026-11-29T02:00:00+08:00" in body
    assert "Hosts:    host1" in body
    assert "host1: opsdemo-web 1.0 -> 1.1" in body and "host1: opsdemo-base 1.0 -> 1.1" in body
    assert body.replace("\r\n", "\n") == sent.body  # SMTP carries CRLF line ends

    # What the webhook received: the notice as an Alertmanager-like alert, signed.
    (request,) = http_receiver.requests
    stamp = request.headers["X-Opsrunner-Timestamp"]
    mac = hmac.new(HMAC_KEY.encode(), stamp.encode() + b"." + request.body, "sha256")
    assert request.headers["X-Opsrunner-Signature"] == "sha256=" + mac.hexdigest()
    (alert,) = request.json()["alerts"]
    assert alert["labels"]["window"] == "critical-weekly"
    assert alert["startsAt"] == "2026-11-28T18:00:00Z" and alert["endsAt"] == "2026-11-28T22:00:00Z"
    assert alert["annotations"]["content_sha256"] == digest

    # Sending again does not notify twice.
    again = notices.send_notice(
        policy, store, "critical-weekly", HOSTS, NOW + dt.timedelta(hours=1)
    )
    assert again.ident == sent.ident
    assert len(smtp_sink.received) == 3 and len(http_receiver.requests) == 1
    assert _count(store, OutboxMessage) == 4


def test_receiver_down_retries_with_backoff_and_nothing_is_lost(
    policy: Policy,
    store: Store,
    tmp_path: Path,
    smtp_sink: SmtpSink,
    http_receiver: HttpReceiver,
) -> None:
    http_receiver.stop()
    sent = notices.send_notice(policy, store, "critical-weekly", HOSTS, NOW)
    hook = next(d for d in sent.deliveries if d["channel"] == "hook")
    assert sent.status == "pending" and sent.sent_at is None
    assert hook["status"] == "pending" and hook["attempts"] == 1 and "refused" in hook["error"]
    assert notices.ansible_records(store) == [], "an incomplete notice is not on record"

    # A second attempt before the backoff has passed tries nothing; while still down it fails
    # again and backs off longer.
    channels = dict(policy.notifications.channels)
    rules = policy.notifications.delivery
    secrets = secrets_for(policy, tmp_path)
    assert outbox.deliver_due(store, channels, secrets, rules, NOW + dt.timedelta(seconds=10)) == []
    (failed,) = outbox.deliver_due(store, channels, secrets, rules, NOW + dt.timedelta(seconds=31))
    assert not failed.ok and failed.attempts == 2 and failed.status == "pending"
    (row,) = outbox.messages(store, status="pending")
    assert row.next_attempt_at == NOW + dt.timedelta(seconds=31 + 60)

    # The controller restarts (a new Store on the same database) and the receiver comes back.
    http_receiver.start()
    with reopen(store) as reopened:
        (ok,) = outbox.deliver_due(
            reopened, channels, secrets, rules, NOW + dt.timedelta(minutes=2)
        )
        assert ok.ok and ok.attempts == 3 and ok.status == "sent"
        notices.settle_all(reopened)
        done = notices.get_notice(reopened, sent.ident)
        assert done.status == "sent" and done.sent_at == NOW + dt.timedelta(minutes=2)
        assert done.in_time
        (record,) = notices.ansible_records(reopened)
        assert record["sent_at"] == "2026-11-24T00:02:00Z"
    assert len(http_receiver.requests) == 1 and len(smtp_sink.received) == 3  # once each


def test_delivery_gives_up_after_max_attempts_and_says_so(
    policy: Policy, store: Store, tmp_path: Path, http_receiver: HttpReceiver
) -> None:
    http_receiver.stop()
    sent = notices.send_notice(policy, store, "critical-weekly", HOSTS, NOW)
    channels, rules = dict(policy.notifications.channels), policy.notifications.delivery
    secrets = secrets_for(policy, tmp_path)
    for minute in range(1, 60):
        outbox.deliver_due(store, channels, secrets, rules, NOW + dt.timedelta(minutes=minute * 5))
    (gave_up,) = outbox.messages(store, status="failed")
    assert gave_up.attempts == rules.max_attempts and gave_up.last_error
    notices.settle_all(store)
    assert notices.get_notice(store, sent.ident).status == "failed"


def _window_rule() -> Any:
    path = Path(__file__).resolve().parents[3] / "roles/patching/filter_plugins/patching_window.py"
    spec = importlib.util.spec_from_file_location("patching_window", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.patching_window_state


def test_patching_window_rule_reads_the_stored_notice(policy: Policy, store: Store) -> None:
    state = _window_rule()
    windows = [w.model_dump(mode="json") for w in policy.windows]
    inside = "2026-11-28T19:00:00Z"
    before = state(windows, notices.ansible_records(store), ["critical"], now=inside)
    assert before["inside"] and not before["enforce_allowed"]
    notices.send_notice(policy, store, "critical-weekly", HOSTS, NOW)
    after = state(windows, notices.ansible_records(store), ["critical"], now=inside)
    assert after["enforce_allowed"], after["reason"]
    assert "NTC-20261128T1800Z-critical-weekly" in after["reason"]


def test_a_late_notice_is_recorded_late_and_does_not_open_the_window(
    policy: Policy, store: Store
) -> None:
    late_now = OPENS - dt.timedelta(hours=10)
    sent = notices.send_notice(policy, store, "critical-weekly", HOSTS, late_now)
    assert sent.status == "sent" and not sent.in_time and sent.data["late"] is True
    state = _window_rule()
    windows = [w.model_dump(mode="json") for w in policy.windows]
    got = state(windows, notices.ansible_records(store), ["critical"], now="2026-11-28T19:00:00Z")
    assert not got["enforce_allowed"] and "sent late" in got["reason"]


@pytest.mark.parametrize(
    ("window", "start", "message"),
    [
        ("nope", None, "no maintenance window 'nope'"),
        ("standard-nightly", None, "nobody is routed notices for groups standard"),
        ("critical-weekly", dt.datetime(2026, 11, 28, 19, 0, tzinfo=dt.UTC), "does not open at"),
        ("critical-weekly", dt.datetime(2026, 11, 21, 18, 0, tzinfo=dt.UTC), "too late"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    policy: Policy,
    store: Store,
    smtp_sink: SmtpSink,
    window: str,
    start: dt.datetime | None,
    message: str,
) -> None:
    with pytest.raises(notices.NoticeError, match=message):
        notices.send_notice(policy, store, window, HOSTS, NOW, start=start)
    assert _count(store, NoticeRecord) == 0 and _count(store, OutboxMessage) == 0
    assert smtp_sink.received == []


def test_due_notices_come_at_the_notice_period_less_the_lead(policy: Policy, store: Store) -> None:
    lead = dt.timedelta(hours=policy.notifications.delivery.notice_lead_hours)
    due_at = OPENS - dt.timedelta(hours=72) - lead
    names = lambda t: [o.window.name for o in notices.due_notices(policy, store, t)]  # noqa: E731
    assert "critical-weekly" not in names(due_at - dt.timedelta(minutes=1))
    assert "critical-weekly" in names(due_at)
    notices.send_notice(policy, store, "critical-weekly", HOSTS, due_at)
    assert "critical-weekly" not in names(due_at + dt.timedelta(minutes=1))


def test_vars_file_is_what_ansible_playbook_reads(policy: Policy, store: Store) -> None:
    import json

    notices.send_notice(policy, store, "critical-weekly", HOSTS, NOW)
    path = notices.write_vars_file(store)
    assert path.stat().st_mode & 0o077 == 0
    data = json.loads(path.read_text())
    (record,) = data["opsrunner_notice_records"]
    assert record["window"] == "critical-weekly"
    assert record["window_start"] == "2026-11-28T18:00:00Z"
