"""notices, the delivery outbox, alerts and change records (issue 13)"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import opsrunner.store.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    utc = opsrunner.store.models.UTCDateTime
    op.create_table(
        "notify_notices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ident", sa.String(length=64), nullable=False),
        sa.Column("window_name", sa.String(length=128), nullable=False),
        sa.Column("window_start", utc(), nullable=False),
        sa.Column("window_end", utc(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("sent_at", utc(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("hosts", sa.JSON(), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("change", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_notices")),
        sa.UniqueConstraint("ident", name=op.f("uq_notify_notices_ident")),
        sa.UniqueConstraint("window_name", "window_start", name="uq_notify_notices_window"),
    )
    with op.batch_alter_table("notify_notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notify_notices_created_at"), ["created_at"])

    op.create_table(
        "notify_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=128), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("next_attempt_at", utc(), nullable=False),
        sa.Column("sent_at", utc(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_outbox")),
    )
    with op.batch_alter_table("notify_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notify_outbox_ref"), ["ref"])
        batch_op.create_index(batch_op.f("ix_notify_outbox_status"), ["status"])
        batch_op.create_index(batch_op.f("ix_notify_outbox_next_attempt_at"), ["next_attempt_at"])

    op.create_table(
        "notify_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", utc(), nullable=False),
        sa.Column("last_seen_at", utc(), nullable=False),
        sa.Column("last_sent_at", utc(), nullable=True),
        sa.Column("sent_count", sa.Integer(), nullable=False),
        sa.Column("resolved_at", utc(), nullable=True),
        sa.Column("muted_by", sa.String(length=128), nullable=False),
        sa.Column("acked_by", sa.String(length=128), nullable=False),
        sa.Column("acked_at", utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_alerts")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_notify_alerts_fingerprint")),
    )
    with op.batch_alter_table("notify_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notify_alerts_status"), ["status"])

    op.create_table(
        "notify_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ident", sa.String(length=32), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("window_name", sa.String(length=128), nullable=False),
        sa.Column("hosts", sa.JSON(), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("updated_at", utc(), nullable=False),
        sa.Column("started_at", utc(), nullable=True),
        sa.Column("ended_at", utc(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_changes")),
        sa.UniqueConstraint("ident", name=op.f("uq_notify_changes_ident")),
    )
    with op.batch_alter_table("notify_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notify_changes_status"), ["status"])


def downgrade() -> None:
    """Revert this revision."""
    for table in ("notify_changes", "notify_alerts", "notify_outbox", "notify_notices"):
        op.drop_table(table)
