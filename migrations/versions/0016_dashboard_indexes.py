"""dashboard: covering indexes for the figures (cases by period, by office and period; each case's events)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 18:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every count of the dashboard reads only this index: the cases of a period, grouped by one column.
    op.create_index(
        "ix_cases_figures", "cases", ["created_at", "status", "category", "province_code", "office_id"]
    )
    # The same for an office's dashboard: its offices' cases of the period, read office by office.
    op.create_index(
        "ix_cases_office_figures", "cases", ["office_id", "created_at", "status", "category", "province_code"]
    )
    # The median times: each case's first event of an action, read from the index alone.
    op.create_index("ix_case_events_case_action_at", "case_events", ["case_id", "action", "at"])


def downgrade() -> None:
    op.drop_index("ix_case_events_case_action_at", table_name="case_events")
    op.drop_index("ix_cases_office_figures", table_name="cases")
    op.drop_index("ix_cases_figures", table_name="cases")
