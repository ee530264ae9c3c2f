"""The queue's urgency: its sort orders (call-back due time, hazard group, age), overdue and due-soon rows.

queries.queue asks here how to order the page's ids; the template asks how urgent a row is and for the
one-line preview of its summary. The due-time order puts open call backs first, soonest (most overdue)
on top, then the cases nobody waits to be called back about, oldest first.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, case, literal
from sqlalchemy.sql.elements import ColumnElement

from cases.models import OPEN_CALLBACK_STATES, Callback, Case, HazardGroup

DUE = "due"
HAZARD = "hazard"
OLDEST = "oldest"
NEWEST = "newest"
ORDERS = (DUE, HAZARD, OLDEST, NEWEST)
DEFAULT_ORDER = DUE
# A call back due within this long is "due soon" (the callbacks file's remind_before, when the view has it).
DUE_SOON = timedelta(minutes=30)
PREVIEW_CHARS = 120

OVERDUE = "overdue"
SOON = "soon"


def _open_due() -> ColumnElement[datetime]:
    """The case's open call back's due time (NULL when none is open), from the outer join below."""
    return Callback.__table__.c.due_at


def _hazard_rank() -> ColumnElement[int]:
    """The guideline's order of the hazard groups (violence first, unspecified last)."""
    return case(
        *((Case.category == str(h), literal(i)) for i, h in enumerate(HazardGroup)),
        else_=literal(len(HazardGroup)),
    )


def sorted_ids(query: Select[Any], order: str) -> Select[Any]:
    """The queue's id query joined to the open call backs (when the order needs them) and ordered."""
    by_age = (Case.created_at.asc(), Case.id.asc())
    if order == NEWEST:
        return query.order_by(Case.created_at.desc(), Case.id.desc())
    if order == OLDEST:
        return query.order_by(*by_age)
    joined = query.outerjoin(
        Callback, and_(Callback.case_id == Case.id, Callback.state.in_(OPEN_CALLBACK_STATES))
    )
    # NULLs last without NULLS LAST: "has no open call back" (0/1) sorts first, then the time.
    due_first = (case((_open_due().is_(None), literal(1)), else_=literal(0)), _open_due().asc())
    if order == HAZARD:
        return joined.order_by(_hazard_rank(), *due_first, *by_age)
    return joined.order_by(*due_first, *by_age)


def urgency(callback: Callback | None, now: datetime, soon: timedelta = DUE_SOON) -> str:
    """OVERDUE for an open call back past its due time, SOON when due within `soon`, else ""."""
    if callback is None or callback.state not in OPEN_CALLBACK_STATES:
        return ""
    if callback.due_at < now:
        return OVERDUE
    if callback.due_at <= now + soon:
        return SOON
    return ""


def preview(summary: str | None, limit: int = PREVIEW_CHARS) -> str:
    """The summary on one line, cut at `limit` characters (the queue's preview; never the transcript)."""
    if not summary:
        return ""
    line = " ".join(summary.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
