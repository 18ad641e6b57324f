"""The store's tables (SQLAlchemy 2), one schema for SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so alembic migrations read the same on both databases.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out (SQLite keeps no zone of its own)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps UTC only")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Run(Base):
    """One audit, enforce or operate run (also a skipped one)."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ident: Mapped[str] = mapped_column(String(64), unique=True)
    mode: Mapped[str] = mapped_column(String(16))  # audit | enforce | operate
    job: Mapped[str] = mapped_column(String(128), default="")  # operate job or schedule job
    playbook: Mapped[str] = mapped_column(String(512), default="")
    status: Mapped[str] = mapped_column(String(16), index=True)  # running | successful | failed | …
    rc: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[dt.datetime] = mapped_column(index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    user: Mapped[str] = mapped_column(String(128), default="")
    controller: Mapped[str] = mapped_column(String(255), default="")
    inventory: Mapped[str] = mapped_column(String(1024), default="")
    limit: Mapped[str] = mapped_column(String(1024), default="")
    controls: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"ids": [...]} when filtered
    policy_commit: Mapped[str] = mapped_column(String(64), default="")
    policy_digest: Mapped[str] = mapped_column(String(128), default="")
    scheduled_for: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    artifact_dir: Mapped[str] = mapped_column(String(1024), default="")
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Roles whose disruptive steps the run was allowed (enforce --allow-disruptive).
    disruptive: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")

    results: Mapped[list[Result]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True
    )
    hosts: Mapped[list[RunHost]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True
    )


class RunHost(Base):
    """A host as a run saw it: reachable or not, and its final stats."""

    __tablename__ = "run_hosts"
    __table_args__ = (UniqueConstraint("run_id", "host", name="uq_run_hosts_run_host"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(255))
    reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)  # scoring needs applies_to
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)

    run: Mapped[Run] = relationship(back_populates="hosts")


class Result(Base):
    """One host x control status of one run, with its (trimmed) evidence."""

    __tablename__ = "results"
    __table_args__ = (
        UniqueConstraint("run_id", "host", "control_id", name="uq_results_run_host_control"),
        Index("ix_results_host_control_checked", "host", "control_id", "checked_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(255))
    control_id: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[str] = mapped_column(Text, default="")
    evidence_sha256: Mapped[str] = mapped_column(String(64), default="")
    evidence_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    remediated: Mapped[bool] = mapped_column(Boolean, default=False)
    task: Mapped[str] = mapped_column(Text, default="")
    checked_at: Mapped[dt.datetime] = mapped_column()

    run: Mapped[Run] = relationship(back_populates="results")


class Sample(Base):
    """One monitoring scrape of one host (7.1.1 availability = ok scrapes / expected scrapes)."""

    __tablename__ = "samples"
    __table_args__ = (Index("ix_samples_host_at", "host", "scraped_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255))
    target: Mapped[str] = mapped_column(String(1024), default="")
    scraped_at: Mapped[dt.datetime] = mapped_column()
    ok: Mapped[bool] = mapped_column(Boolean)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str] = mapped_column(Text, default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Incident(Base):
    """Room for the incidents issue: an incident and its timeline."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ident: Mapped[str] = mapped_column(String(64), unique=True)
    opened_at: Mapped[dt.datetime] = mapped_column(index=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    severity: Mapped[str] = mapped_column(String(16), default="")
    title: Mapped[str] = mapped_column(Text, default="")
    hosts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Drill(Base):
    """Room for drills (restore tests, emergency plan exercises)."""

    __tablename__ = "drills"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), nullable=True, index=True
    )
    held_at: Mapped[dt.datetime] = mapped_column(index=True)
    outcome: Mapped[str] = mapped_column(String(32), default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Notice(Base):
    """Room for notices sent (maintenance windows, changes) by e-mail or webhook."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sent_at: Mapped[dt.datetime] = mapped_column(index=True)
    channel: Mapped[str] = mapped_column(String(32), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    audience: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Alert(Base):
    """Room for alerts raised from samples or results."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    raised_at: Mapped[dt.datetime] = mapped_column(index=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    host: Mapped[str] = mapped_column(String(255), default="")
    rule: Mapped[str] = mapped_column(String(128), default="")
    severity: Mapped[str] = mapped_column(String(16), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SupportTicket(Base):
    """One imported support ticket (6.3.2): when it was opened, first answered and resolved."""

    __tablename__ = "support_tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ident: Mapped[str] = mapped_column(String(128), unique=True)  # the help desk's ticket id
    channel: Mapped[str] = mapped_column(String(32))
    complexity: Mapped[str] = mapped_column(String(16))  # simple | complex
    opened_at: Mapped[dt.datetime] = mapped_column(index=True)
    first_response_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    source: Mapped[str] = mapped_column(String(1024), default="")  # file:line it came from
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SurveyResponse(Base):
    """One answer of a user-satisfaction survey (7.1.1, 7.3.2), imported from CSV."""

    __tablename__ = "survey_responses"
    __table_args__ = (
        UniqueConstraint("survey", "respondent", name="uq_survey_responses_survey_respondent"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    survey: Mapped[str] = mapped_column(String(128))
    respondent: Mapped[str] = mapped_column(String(128))
    answered_at: Mapped[dt.datetime] = mapped_column(index=True)
    score: Mapped[float] = mapped_column(Float)
    comment: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(1024), default="")


TABLES = (
    Run,
    RunHost,
    Result,
    Sample,
    Incident,
    Drill,
    Notice,
    Alert,
    SupportTicket,
    SurveyResponse,
)

# The notice, outbox, alert and change tables (issue 13) join the same metadata, so migrations
# and the models are compared as one schema.
from opsrunner.store import evidence as _evidence  # noqa: E402, F401
from opsrunner.store import ledger as _ledger  # noqa: E402, F401
from opsrunner.store import notices as _notices  # noqa: E402, F401
from opsrunner.store import timings as _timings  # noqa: E402, F401
