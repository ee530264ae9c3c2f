"""The case's milestone columns (routed_at, approved_at, first_action_at, resolved_at): first events' times.

The dashboard's medians (cases.figures) read these columns instead of joining every case to its events.
Each is the time of the case's FIRST event of its action, as the figures define the steps: a later event
of the same action (a second action, a re-route, a resolve after a reopen) leaves it as it is, and
nothing here ever clears one (a reopen keeps the first resolution time).
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cases.models import MILESTONES, Case, CaseEvent


def note(case: Case, event: CaseEvent) -> None:
    """Keep the event's time on the case if it is the first of a milestone's action."""
    column = MILESTONES.get(event.action)
    if column is not None and getattr(case, column) is None:
        setattr(case, column, event.at)


def backfill(session: Session) -> None:
    """Every case's milestones from its events (for rows written in bulk, without the workflow)."""
    for action, column in MILESTONES.items():
        first = (
            select(func.min(CaseEvent.at))
            .where(CaseEvent.case_id == Case.id, CaseEvent.action == action)
            .scalar_subquery()
        )
        session.execute(update(Case).values({column: first}).execution_options(synchronize_session=False))
