"""follow-up tries: wrong case references per calling number, for key 5's hourly limit

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "follow_up_tries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("caller_hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("follow_up_tries") as batch_op:
        batch_op.create_index("ix_follow_up_tries_caller_at", ["caller_hash", "at"], unique=False)
        batch_op.create_index("ix_follow_up_tries_at", ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("follow_up_tries") as batch_op:
        batch_op.drop_index("ix_follow_up_tries_at")
        batch_op.drop_index("ix_follow_up_tries_caller_at")
    op.drop_table("follow_up_tries")
