"""the evidence ledger: a hash chain over recorded runs (issue 15), append-only by trigger"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_REFUSE = "the evidence ledger is append-only"


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "ledger",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("run_ident", sa.String(length=64), nullable=False),
        sa.Column("prev", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_ledger")),
        sa.UniqueConstraint("prev", name=op.f("uq_ledger_prev")),
        sa.UniqueConstraint("sha256", name=op.f("uq_ledger_sha256")),
    )
    op.create_index(op.f("ix_ledger_run_ident"), "ledger", ["run_ident"], unique=False)
    # A guard against honest mistakes (a hand-written UPDATE): the hash chain, not the trigger,
    # is what detects a deliberate edit.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION opsrunner_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_REFUSE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger "
            "FOR EACH STATEMENT EXECUTE FUNCTION opsrunner_ledger_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_no_{action.lower()} BEFORE {action} ON ledger "
                f"BEGIN SELECT RAISE(ABORT, '{_REFUSE}'); END"
            )


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_append_only ON ledger")
        op.execute("DROP FUNCTION IF EXISTS opsrunner_ledger_append_only()")
    op.drop_index(op.f("ix_ledger_run_ident"), table_name="ledger")
    op.drop_table("ledger")
