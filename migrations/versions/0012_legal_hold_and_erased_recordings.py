"""retention: legal hold on cases, and when retention erased a recording

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs: rebuilding `cases` in batch mode (for a foreign key on legal_hold_by) would drop
    # a table that other tables' foreign keys point at. Who set the hold is also in the audit row.
    op.add_column("cases", sa.Column("legal_hold_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("cases", sa.Column("legal_hold_by", sa.Integer(), nullable=True))
    op.add_column("cases", sa.Column("legal_hold_reason", sa.Text(), nullable=True))
    op.add_column("recordings", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("recordings", "erased_at")
    for column in ("legal_hold_reason", "legal_hold_by", "legal_hold_at"):
        op.drop_column("cases", column)
