"""Who may see and do what: roles at offices, the cases a user sees, the reporter's number, call-backs.

One set of rules for the console's pages, the workflow's service functions, the call-backs and the
export: they all ask here, so a page never shows a form the service would refuse, nor a case it hides.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.orm import Session

from cases.models import Assignment, Case, CaseStatus, Office
from cases.offices import central_office_id
from cases.staff import IMPLIED, CommitteeMember, Role, RoleAssignment, User


def roles_in(session: Session, user: User, office_id: int) -> frozenset[Role]:
    """The user's roles at an office, with those implied by position (an SC-Operator is SC-Action)."""
    held = session.scalars(
        select(RoleAssignment.role).where(
            RoleAssignment.user_id == user.id, RoleAssignment.office_id == office_id
        )
    ).all()
    out: set[Role] = set()
    for r in held:
        out |= IMPLIED[Role(r)]
    return frozenset(out)


def office_ids_of(session: Session, user: User) -> set[int]:
    return set(session.scalars(select(RoleAssignment.office_id).where(RoleAssignment.user_id == user.id)))


def is_central(session: Session, user: User) -> bool:
    """Whether the user holds any role at the central Safety Center (which sees every case)."""
    central = central_office_id(session)
    if central is None:
        return False
    held = select(RoleAssignment.id).where(
        RoleAssignment.user_id == user.id, RoleAssignment.office_id == central
    )
    return session.scalar(held.limit(1)) is not None


def visibility(session: Session, user: User) -> ColumnElement[bool]:
    """Cases a user may see: their offices' cases, cases their offices forwarded, their assignments.

    The central Safety Center sees every case.
    """
    if not user.active:
        return false()
    if is_central(session, user):
        return true()
    offices = office_ids_of(session, user)
    committees = select(CommitteeMember.committee_id).where(CommitteeMember.user_id == user.id)
    # An uncorrelated IN, not EXISTS: each branch of the OR can then use its index, where a correlated
    # subquery would be run once per case of the whole table (the queue counts every visible case).
    assigned = select(Assignment.case_id).where(
        or_(Assignment.user_id == user.id, Assignment.committee_id.in_(committees))
    )
    # A draft is the call centre's work until an agent routes it, even when the IVR guessed its office.
    return and_(
        Case.status != CaseStatus.DRAFT,
        or_(Case.office_id.in_(offices), Case.forwarded_from_office_id.in_(offices), Case.id.in_(assigned)),
    )


def can_view(session: Session, user: User, case: Case) -> bool:
    return bool(session.scalar(select(Case.id).where(Case.id == case.id, visibility(session, user))))


def active_assignment(session: Session, case: Case) -> Assignment | None:
    return session.scalar(select(Assignment).where(Assignment.case_id == case.id, Assignment.active))


def assignees(session: Session, assignment: Assignment) -> set[int]:
    if assignment.user_id is not None:
        return {assignment.user_id}
    return set(
        session.scalars(
            select(CommitteeMember.user_id).where(CommitteeMember.committee_id == assignment.committee_id)
        )
    )


def may_reveal(session: Session, user: User, case: Case) -> bool:
    """Only the case's SC-Operators and its assigned SC-Action staff may see the reporter's number."""
    if case.status == CaseStatus.DRAFT:
        return False  # not routed yet: it has no SC-Operators of its own
    if Role.OPERATOR in roles_in(session, user, case.office_id):
        return True
    assignment = active_assignment(session, case)
    return assignment is not None and user.id in assignees(session, assignment)


def may_call_back(session: Session, user: User, case: Case) -> bool:
    """Who may call the reporter back or log a callback: those who may see the number.

    The case's SC-Operators and its assigned SC-Action staff (may_reveal), and while the case is a
    draft, the call centre's agents and SC-Operators (it is their case until they route it).
    """
    if not user.active:
        return False
    if case.status == CaseStatus.DRAFT:
        central = central_office_id(session)
        return central is not None and bool({Role.AGENT, Role.OPERATOR} & roles_in(session, user, central))
    return may_reveal(session, user, case)


@dataclass(frozen=True)
class WhoAmI:
    """A user's offices and roles, computed once per request for views and templates."""

    user: User
    central: bool
    roles: dict[int, frozenset[Role]]

    def has(self, role: Role, office_id: int | None = None) -> bool:
        if office_id is None:
            return any(role in r for r in self.roles.values())
        return role in self.roles.get(office_id, frozenset())


def who_am_i(session: Session, user: User) -> WhoAmI:
    roles: dict[int, set[Role]] = {}
    for ra in session.scalars(select(RoleAssignment).where(RoleAssignment.user_id == user.id)):
        roles.setdefault(ra.office_id, set()).update(IMPLIED[Role(ra.role)])
    return WhoAmI(user, is_central(session, user), {k: frozenset(v) for k, v in roles.items()})


def office_line(session: Session, office: Office) -> list[int]:
    """The office and the offices above it: a district, its province, the central office."""
    ids = [office.id]
    parent = office.parent_id
    while parent is not None and parent not in ids:
        ids.append(parent)
        parent = session.scalar(select(Office.parent_id).where(Office.id == parent))
    return ids


def _holds_role_in_line(session: Session, user: User, office: Office, role: Role | None) -> bool:
    """Whether the user holds `role` (any role for None) at the office or at an office above it."""
    if not user.active:
        return False
    stmt = select(RoleAssignment.id).where(
        RoleAssignment.user_id == user.id, RoleAssignment.office_id.in_(office_line(session, office))
    )
    if role is not None:
        stmt = stmt.where(RoleAssignment.role == role)
    return session.scalar(stmt.limit(1)) is not None


def administers(session: Session, user: User, office: Office) -> bool:
    """An office admin manages their office and the offices under it (a province its districts)."""
    return _holds_role_in_line(session, user, office, Role.ADMIN)


def can_see_staff(session: Session, user: User, office: Office) -> bool:
    """Anyone with a role at the office, or at an office above it, may see who works there."""
    return _holds_role_in_line(session, user, office, None)
