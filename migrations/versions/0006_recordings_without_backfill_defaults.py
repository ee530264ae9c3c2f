"""recordings without the backfill defaults

0002 gave recordings.storage_status and download_attempts a server default only so that the rows already
there got a value when the NOT NULL columns were added; the models set both in Python and declare no server
default, so a migrated database differed from the models' schema (tests/integration/test_migrations.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 12:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.alter_column(
            "storage_status", existing_type=sa.String(length=16), existing_nullable=False, server_default=None
        )
        batch_op.alter_column(
            "download_attempts", existing_type=sa.Integer(), existing_nullable=False, server_default=None
        )


def downgrade() -> None:
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.alter_column(
            "storage_status",
            existing_type=sa.String(length=16),
            existing_nullable=False,
            server_default="pending",
        )
        batch_op.alter_column(
            "download_attempts", existing_type=sa.Integer(), existing_nullable=False, server_default="0"
        )
