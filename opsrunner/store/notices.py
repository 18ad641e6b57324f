"""The store's tables for notices, the delivery outbox, alerts and change records (issue 13)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from opsrunner.store.models import Base


class NoticeRecord(Base):
    """An advance notice of one maintenance window occurrence (3.1.3), as composed and sent."""

    __tablename__ = "notify_notices"
    __table_args__ = (
        UniqueConstraint("window_name", "window_start", name="uq_notify_notices_window"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ident: Mapped[str] = mapped_column(String(64), unique=True)
    window_name: Mapped[str] = mapped_column(String(128))
    window_start: Mapped[dt.datetime] = mapped_column()
    window_end: Mapped[dt.datetime] = mapped_column()
    timezone: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(index=True)
    # When the last recipient had it: the notice counts from then (None: not complete).
    sent_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    content_sha256: Mapped[str] = mapped_column(String(64))
    hosts: Mapped[list[str]] = mapped_column(JSON, default=list)
    audience: Mapped[list[str]] = mapped_column(JSON, default=list)
    change: Mapped[str] = mapped_column(String(64), default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class OutboxMessage(Base):
    """One message to one recipient over one channel; kept until delivered or given up."""

    __tablename__ = "notify_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # notice | alert | resolved | change
    ref: Mapped[str] = mapped_column(String(128), index=True)  # notice ident, alert fingerprint
    channel: Mapped[str] = mapped_column(String(128))
    recipient: Mapped[str] = mapped_column(String(320))
    message: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column()
    next_attempt_at: Mapped[dt.datetime] = mapped_column(index=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")


class AlertState(Base):
    """One alert by fingerprint: firing or resolved, when it was last sent, who acknowledged it."""

    __tablename__ = "notify_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    rule: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255), default="")
    summary: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True)  # firing | resolved
    started_at: Mapped[dt.datetime] = mapped_column()
    last_seen_at: Mapped[dt.datetime] = mapped_column()
    last_sent_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    sent_count: Mapped[int] = mapped_column(Integer, default=0)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    muted_by: Mapped[str] = mapped_column(String(128), default="")
    acked_by: Mapped[str] = mapped_column(String(128), default="")
    acked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class ChangeRecord(Base):
    """A change (3.4): plan, test evidence, what happened while it ran, evaluation."""

    __tablename__ = "notify_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ident: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)  # planned|tested|started|evaluated
    window_name: Mapped[str] = mapped_column(String(128), default="")
    hosts: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column()
    started_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


TABLES = (NoticeRecord, OutboxMessage, AlertState, ChangeRecord)
