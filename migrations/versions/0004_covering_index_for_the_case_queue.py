"""covering index for the case queue

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 07:41:48.414194
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_created_at"))
        batch_op.create_index("ix_cases_queue", ["created_at", "id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index("ix_cases_queue")
        batch_op.create_index(batch_op.f("ix_cases_created_at"), ["created_at"], unique=False)
