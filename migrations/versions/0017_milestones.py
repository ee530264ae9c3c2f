"""milestones: each case's first route/approve/action/resolve time, backfilled from its events; indexes

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 19:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# column: the action of the event whose first time it holds (as cases.models.MILESTONES, frozen here)
MILESTONES = {
    "routed_at": "route",
    "approved_at": "approve",
    "first_action_at": "record_action",
    "resolved_at": "resolve",
}


def upgrade() -> None:
    for column in MILESTONES:
        op.add_column("cases", sa.Column(column, sa.DateTime(timezone=True), nullable=True))
    for column, action in MILESTONES.items():
        # One statement per column; the (case_id, action, at) index of 0016 answers each MIN by a seek.
        op.execute(
            sa.text(
                f"UPDATE cases SET {column} = (SELECT MIN(e.at) FROM case_events e"  # noqa: S608 - fixed names
                " WHERE e.case_id = cases.id AND e.action = :action)"
            ).bindparams(action=action)
        )
    # The medians read a period's milestones from an index alone: the centre's by time, an office's by office.
    op.create_index("ix_cases_milestones", "cases", ["created_at", *MILESTONES])
    op.create_index("ix_cases_office_milestones", "cases", ["office_id", "created_at", "status", *MILESTONES])


def downgrade() -> None:
    op.drop_index("ix_cases_office_milestones", table_name="cases")
    op.drop_index("ix_cases_milestones", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        for column in reversed(list(MILESTONES)):
            batch.drop_column(column)
