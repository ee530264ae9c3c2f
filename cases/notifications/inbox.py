"""What staff read of the outbox in the console: their notifications, unread counts, failed deliveries."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select, true, update
from sqlalchemy.orm import Session

from cases.models import (
    Case,
    Channel,
    Notification,
    NotificationAttempt,
    NotificationStatus,
    Office,
)
from cases.offices import central_office_id
from cases.staff import Role, RoleAssignment, User

log = logging.getLogger(__name__)

# ---- the console's side ----------------------------------------------------------------------------------


def unread_count(session: Session, user: User) -> int:
    return int(
        session.scalar(
            select(func.count(Notification.id)).where(
                Notification.user_id == user.id,
                Notification.channel == Channel.CONSOLE,
                Notification.read_at.is_(None),
            )
        )
        or 0
    )


@dataclass(frozen=True)
class LiveCounts:
    """What a console page polls: the user's unread console notifications, and the newest one's id."""

    unread: int
    latest: int  # 0 when none: a new alert for the user changes it even when they have read the rest


def live_counts(session: Session, user: User) -> LiveCounts:
    """One query on the user's console rows (notifications.user_id is indexed): cheap enough to poll."""
    unread, latest = session.execute(
        select(
            func.count(Notification.id).filter(Notification.read_at.is_(None)),
            func.max(Notification.id),
        ).where(Notification.user_id == user.id, Notification.channel == Channel.CONSOLE)
    ).one()
    return LiveCounts(unread=int(unread or 0), latest=int(latest or 0))


def mark_read(session: Session, user: User, now: datetime, notification_id: int | None = None) -> int:
    """Mark one (or every) unread console notification of `user` read; returns how many changed."""
    stmt = update(Notification).where(
        Notification.user_id == user.id,
        Notification.channel == Channel.CONSOLE,
        Notification.read_at.is_(None),
    )
    if notification_id is not None:
        stmt = stmt.where(Notification.id == notification_id)
    result = session.execute(stmt.values(read_at=now))
    return int(getattr(result, "rowcount", 0) or 0)


def my_notifications(session: Session, user: User, *, limit: int = 100) -> list[Notification]:
    """The user's console notifications, newest first."""
    return list(
        session.scalars(
            select(Notification)
            .where(Notification.user_id == user.id, Notification.channel == Channel.CONSOLE)
            .order_by(Notification.created_at.desc(), Notification.id.desc())
            .limit(limit)
        )
    )


OVERSEERS = (Role.HEAD, Role.ADMIN)


def overseen_office_ids(session: Session, user: User, roles: Iterable[Role] = OVERSEERS) -> set[int] | None:
    """Offices the user oversees in one of `roles` (failed deliveries: head or admin), and offices below.

    None means every office (that role at the central office); an empty set, none.
    """
    if not user.active:
        return set()
    mine = set(
        session.scalars(
            select(RoleAssignment.office_id).where(
                RoleAssignment.user_id == user.id, RoleAssignment.role.in_([str(r) for r in roles])
            )
        )
    )
    if not mine:
        return set()
    central = central_office_id(session)
    if central in mine:
        return None
    seen, frontier = set(mine), set(mine)
    while frontier:
        frontier = set(session.scalars(select(Office.id).where(Office.parent_id.in_(frontier)))) - seen
        seen |= frontier
    return seen


@dataclass(frozen=True)
class FailedDelivery:
    notification: Notification
    attempts: list[NotificationAttempt]
    recipient: User | None
    office: Office | None
    case: Case | None


def _failed_scope(session: Session, user: User) -> ColumnElement[bool] | None:
    """The condition on Notification for what the user oversees; None when they oversee nothing."""
    offices = overseen_office_ids(session, user)
    if offices is None:
        return true()
    if not offices:
        return None
    staff = select(RoleAssignment.user_id).where(RoleAssignment.office_id.in_(offices))
    cases = select(Case.id).where(Case.office_id.in_(offices))
    return or_(
        Notification.office_id.in_(offices),
        Notification.case_id.in_(cases),
        Notification.user_id.in_(staff),
    )


def failed_count(session: Session, user: User) -> int | None:
    """How many deliveries failed in the offices the user oversees; None when they oversee none."""
    scope = _failed_scope(session, user)
    if scope is None:
        return None
    stmt = select(func.count(Notification.id)).where(Notification.status == NotificationStatus.FAILED, scope)
    return int(session.scalar(stmt) or 0)


def failed_deliveries(session: Session, user: User, *, limit: int = 200) -> list[FailedDelivery] | None:
    """FAILED rows of the offices the user oversees, newest first, with their attempts; None: not theirs."""
    scope = _failed_scope(session, user)
    if scope is None:
        return None
    rows = list(
        session.scalars(
            select(Notification)
            .where(Notification.status == NotificationStatus.FAILED, scope)
            .order_by(Notification.created_at.desc(), Notification.id.desc())
            .limit(limit)
        )
    )
    attempts: dict[int, list[NotificationAttempt]] = {}
    if rows:
        for a in session.scalars(
            select(NotificationAttempt)
            .where(NotificationAttempt.notification_id.in_([n.id for n in rows]))
            .order_by(NotificationAttempt.at, NotificationAttempt.id)
        ):
            attempts.setdefault(a.notification_id, []).append(a)
    return [
        FailedDelivery(
            notification=n,
            attempts=attempts.get(n.id, []),
            recipient=session.get(User, n.user_id) if n.user_id is not None else None,
            office=session.get(Office, n.office_id) if n.office_id is not None else None,
            case=session.get(Case, n.case_id) if n.case_id is not None else None,
        )
        for n in rows
    ]
