"""The durable outbox: every message to every recipient is stored first, then delivered with
retries and exponential backoff; a restart resumes what is pending, nothing is dropped silently.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from opsrunner.notify.channels import Channel, DeliveryError, Message, SecretSource, send
from opsrunner.notify.routing import Recipient
from opsrunner.policy.models import Delivery
from opsrunner.store import Store
from opsrunner.store.notices import OutboxMessage

Sender = Callable[[str, Channel, str, Message, SecretSource], str]
# A claimed message is not picked up by another controller for this long.
CLAIM = dt.timedelta(minutes=5)


@dataclasses.dataclass(frozen=True)
class Delivered:
    """The outcome of one delivery attempt."""

    id: int
    channel: str
    recipient: str
    ok: bool
    detail: str
    attempts: int
    status: str


def enqueue(
    store: Store,
    kind: str,
    ref: str,
    recipients: Iterable[Recipient],
    message: Message,
    now: dt.datetime,
) -> list[int]:
    """Store one pending message per recipient (in one transaction); return their ids."""
    with store.session() as session:
        rows = [
            OutboxMessage(
                kind=kind,
                ref=ref,
                channel=r.channel,
                recipient=r.address,
                message=message.as_json(),
                status="pending",
                attempts=0,
                created_at=now,
                next_attempt_at=now,
                last_error="",
            )
            for r in recipients
        ]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


def backoff(attempts: int, rules: Delivery) -> dt.timedelta:
    """Wait before the next attempt after `attempts` failed ones: doubling, capped."""
    seconds = rules.backoff_seconds * (2 ** max(0, attempts - 1))
    return dt.timedelta(seconds=min(seconds, rules.max_backoff_seconds))


def deliver_due(
    store: Store,
    channels: dict[str, Channel],
    secrets: SecretSource,
    rules: Delivery,
    now: dt.datetime,
    *,
    ref: str | None = None,
    sender: Sender | None = None,
) -> list[Delivered]:
    """Try every pending message whose time has come (or only those of `ref`)."""
    deliver = sender or send
    query = select(OutboxMessage.id, OutboxMessage.next_attempt_at).where(
        OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now
    )
    if ref is not None:
        query = query.where(OutboxMessage.ref == ref)
    with store.session() as session:
        due = list(session.execute(query.order_by(OutboxMessage.id)))
    out = []
    for ident, at in due:
        # Claim it (another controller sharing the store may be looking at the same row).
        with store.session() as session:
            claimed = cast(
                "CursorResult[Any]",
                session.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.id == ident,
                        OutboxMessage.next_attempt_at == at,
                        OutboxMessage.status == "pending",
                    )
                    .values(next_attempt_at=now + CLAIM)
                ),
            ).rowcount
            row = session.get(OutboxMessage, ident) if claimed else None
            if row is None:
                continue
            channel_name, recipient, payload = row.channel, row.recipient, dict(row.message)
        channel = channels.get(channel_name)
        try:
            if channel is None:
                raise DeliveryError(f"channel {channel_name!r} is not in notifications.yml")
            detail = deliver(channel_name, channel, recipient, Message.from_json(payload), secrets)
            ok = True
        except DeliveryError as exc:
            detail, ok = str(exc), False
        with store.session() as session:
            row = session.get(OutboxMessage, ident)
            assert row is not None
            row.attempts += 1
            if ok:
                row.status, row.sent_at, row.last_error = "sent", now, ""
            else:
                row.last_error = detail[:2000]
                if row.attempts >= rules.max_attempts:
                    row.status = "failed"  # kept, listed by `alert list` / `notice show`
                else:
                    row.next_attempt_at = now + backoff(row.attempts, rules)
            out.append(
                Delivered(ident, channel_name, recipient, ok, detail, row.attempts, row.status)
            )
    return out


def messages(
    store: Store, ref: str | None = None, status: str | None = None
) -> list[OutboxMessage]:
    """Outbox rows (of one notice/alert/change, of one status), oldest first."""
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    if ref is not None:
        query = query.where(OutboxMessage.ref == ref)
    if status is not None:
        query = query.where(OutboxMessage.status == status)
    with store.session() as session:
        return list(session.scalars(query))
