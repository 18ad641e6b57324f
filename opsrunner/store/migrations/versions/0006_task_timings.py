"""task durations per run x host x task (issue 14: runs show --timing)"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import opsrunner.store.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "task_timings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("play", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=255), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", opsrunner.store.models.UTCDateTime(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_task_timings_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_timings")),
    )
    with op.batch_alter_table("task_timings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_timings_run_id"), ["run_id"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("task_timings")
