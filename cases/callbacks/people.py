"""Who hears about a callback: the office holding the case, its SC-Operators, its heads up the line."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from cases.models import (
    CENTRAL_OFFICE_CODE,
    Callback,
    Case,
    CaseStatus,
    Office,
)
from cases.offices import central_office_id
from cases.staff import Role, RoleAssignment, User

log = logging.getLogger(__name__)


def responsible_users(session: Session, office: Office) -> list[User]:
    """The office's SC-Operators (heads included), active ones; at the central office its agents too."""
    roles = [Role.OPERATOR, Role.HEAD]
    if office.code == CENTRAL_OFFICE_CODE:
        roles.append(Role.AGENT)
    return _people(session, office.id, roles)


def heads(session: Session, office: Office) -> list[User]:
    """The office's active head SC-Operators."""
    return _people(session, office.id, [Role.HEAD])


def _people(session: Session, office_id: int, roles: Sequence[Role]) -> list[User]:
    return list(
        session.scalars(
            select(User)
            .where(
                User.active,
                User.id.in_(
                    select(RoleAssignment.user_id).where(
                        RoleAssignment.office_id == office_id, RoleAssignment.role.in_(roles)
                    )
                ),
            )
            .order_by(User.display_name, User.id)
        )
    )


def holding_office(session: Session, case: Case, office_id: int) -> Office:
    """The office whose staff hear about the case: the call centre (central) while it is a draft.

    A draft already carries the office the IVR guessed from the province, but only the call centre sees
    it until an agent routes it (workflow.visibility): a reminder to the guessed office would link to a
    page its staff cannot open.
    """
    if case.status == CaseStatus.DRAFT:
        central = central_office_id(session)
        if central is not None:
            office_id = central
    office = session.get(Office, office_id)
    assert office is not None
    return office


def escalation_office_id(office: Office) -> int:
    """Where ESCALATE_PARENT goes: the parent office; the central office, which has none, to itself.

    The central office's own heads hear it again rather than nobody: the promise to a child is still
    open, and it is the last office that can keep it. The row is made for every case (the central office
    included), so that routing a case on from central finds all four rows to move.
    """
    return office.parent_id if office.parent_id is not None else office.id


def operators_for(session: Session, callback: Callback, office: Office) -> list[User]:
    """Who hears an operator reminder: whoever took the callback, else the office's SC-Operators."""
    if callback.assignee_id is not None:
        assignee = session.get(User, callback.assignee_id)
        if assignee is not None and assignee.active:
            return [assignee]
    return responsible_users(session, office)


def heads_up_the_line(session: Session, office: Office) -> list[User]:
    """The office's heads; an office with none escalates to the next office up that has some."""
    seen: set[int] = set()
    current: Office | None = office
    while current is not None and current.id not in seen:
        seen.add(current.id)
        found = heads(session, current)
        if found:
            return found
        current = session.get(Office, current.parent_id) if current.parent_id else None
    return []


def someone_above(session: Session, office: Office) -> tuple[list[User], Office] | None:
    """Who hears a reminder nobody at `office` can: the first office above with anyone to remind.

    There its heads, else its SC-Operators (at the central office its call-centre agents too); the
    central office itself when nothing above it is left. None only when nobody anywhere up the line.
    """
    seen: set[int] = {office.id}
    current = session.get(Office, office.parent_id) if office.parent_id is not None else None
    while current is not None and current.id not in seen:
        seen.add(current.id)
        found = heads(session, current) or responsible_users(session, current)
        if found:
            return found, current
        current = session.get(Office, current.parent_id) if current.parent_id is not None else None
    if office.parent_id is None:  # the central office's own head reminder: its SC-Operators and agents
        found = responsible_users(session, office)
        if found:
            return found, office
    return None


def case_link(case: Case) -> str:
    """The console page of a case (notify() makes it absolute for e-mail, SMS and LINE)."""
    return f"/console/cases/{case.id}"
