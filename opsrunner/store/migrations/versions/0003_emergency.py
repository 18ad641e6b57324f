"""support tickets and survey responses (issue 12); incidents and drills use the 0001 tables"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import opsrunner.store.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "support_tickets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ident", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("complexity", sa.String(length=16), nullable=False),
        sa.Column("opened_at", opsrunner.store.models.UTCDateTime(), nullable=False),
        sa.Column("first_response_at", opsrunner.store.models.UTCDateTime(), nullable=True),
        sa.Column("resolved_at", opsrunner.store.models.UTCDateTime(), nullable=True),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_tickets")),
        sa.UniqueConstraint("ident", name=op.f("uq_support_tickets_ident")),
    )
    with op.batch_alter_table("support_tickets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_support_tickets_opened_at"), ["opened_at"], unique=False
        )
    op.create_table(
        "survey_responses",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("survey", sa.String(length=128), nullable=False),
        sa.Column("respondent", sa.String(length=128), nullable=False),
        sa.Column("answered_at", opsrunner.store.models.UTCDateTime(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_responses")),
        sa.UniqueConstraint("survey", "respondent", name="uq_survey_responses_survey_respondent"),
    )
    with op.batch_alter_table("survey_responses", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_survey_responses_answered_at"), ["answered_at"], unique=False
        )


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("survey_responses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_survey_responses_answered_at"))
    op.drop_table("survey_responses")
    with op.batch_alter_table("support_tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_support_tickets_opened_at"))
    op.drop_table("support_tickets")
