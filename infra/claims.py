"""Claiming work rows: a lease on each row so one worker does it, and a dead worker's rows come back."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


def claim(
    session: Session,
    model: Any,
    *conditions: ColumnElement[bool],
    now: datetime,
    lease: timedelta,
    worker_id: str,
    limit: int,
    order_by: Sequence[Any] = (),
) -> list[int]:
    """Lease up to `limit` rows matching `conditions`; the caller commits at once, then works.

    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so several workers on several hosts take different rows.
    SQLite: the transaction began with BEGIN IMMEDIATE, which already serialises claimers.
    """
    free = or_(model.claimed_until.is_(None), model.claimed_until < now)
    stmt = (
        select(model.id, model.claimed_by)
        .where(*conditions, free)
        .order_by(*(order_by or (model.id,)))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(stmt).all()
    ids = [row_id for row_id, _ in rows]
    for row_id, holder in rows:
        if holder is not None:
            # Its worker died (or hung) mid-way: say so, or the lease's wait would pass in silence.
            log.warning("%s %d taken over from %s, whose lease ran out", model.__tablename__, row_id, holder)
    if ids:
        session.execute(
            update(model).where(model.id.in_(ids)).values(claimed_until=now + lease, claimed_by=worker_id)
        )
    return ids


def release(session: Session, model: Any, row_id: int, worker_id: str) -> None:
    """Give a row back (its work is done or will be retried later)."""
    session.execute(
        update(model)
        .where(model.id == row_id, model.claimed_by == worker_id)
        .values(claimed_until=None, claimed_by=None)
    )
