"""runs.disruptive: the roles whose disruptive steps a run was allowed (--allow-disruptive)"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision: runs recorded before it allowed no disruptive step ([])."""
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("disruptive", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("disruptive")
