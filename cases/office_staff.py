"""Office staff and committees: who has which role at an office, and the SC-Action committees.

Office admins (or the shell, as actor None) change them; each change is checked here and audited.
The refusals are the workflow's (NotPermitted, InvalidInput), marked where raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cases.access import administers, roles_in
from cases.models import ForwardingProposal, Office, OfficeKind
from cases.staff import AuditEvent, Committee, CommitteeMember, Role, RoleAssignment, User
from cases.texts import N_
from cases.workflow import InvalidInput, NotPermitted
from infra.clock import Clock, utcnow


def offices_needing_operators(session: Session, office_ids: Iterable[int]) -> list[int]:
    """Offices with fewer than two SC-Operators (heads count), which the guideline asks for."""
    wanted = list(office_ids)
    counts = dict(
        session.execute(
            select(RoleAssignment.office_id, func.count(func.distinct(RoleAssignment.user_id)))
            .join(User, User.id == RoleAssignment.user_id)
            .where(
                RoleAssignment.office_id.in_(wanted),
                RoleAssignment.role.in_([Role.OPERATOR, Role.HEAD]),
                User.active,
            )
            .group_by(RoleAssignment.office_id)
        ).all()
    )
    return [o for o in wanted if counts.get(o, 0) < 2]


# ---- office staff and committees (office admins) -----------------------------------------------------


def _require_admin(session: Session, actor: User | None, office: Office) -> None:
    # actor None: the shell (`flask users grant`), which is trusted like a database console.
    if actor is not None and not administers(session, actor, office):
        raise NotPermitted(N_("Only an admin of this office can change its staff and committees."))


def _audit(
    session: Session, actor: User | None, action: str, detail: dict[str, Any], clock: Clock = utcnow
) -> None:
    session.add(AuditEvent(at=clock(), user_id=actor.id if actor else None, action=action, detail=detail))


def grant_role(
    session: Session, office: Office, user: User, role: Role, *, actor: User | None, clock: Clock = utcnow
) -> RoleAssignment:
    """An office admin (or the shell) gives a person a role at an office; audited."""
    _require_admin(session, actor, office)
    if role == Role.AGENT and office.kind != OfficeKind.CENTRAL:
        raise InvalidInput(N_("Call-centre agents work at the central Safety Center only."))
    held = session.scalar(
        select(RoleAssignment).where(
            RoleAssignment.user_id == user.id,
            RoleAssignment.office_id == office.id,
            RoleAssignment.role == role,
        )
    )
    if held is not None:
        raise InvalidInput(N_("That person already has this role at this office."))
    assignment = RoleAssignment(user_id=user.id, office_id=office.id, role=role)
    session.add(assignment)
    _audit(
        session,
        actor,
        "role_granted",
        {"office": office.code, "user": user.username, "role": str(role)},
        clock,
    )
    session.flush()
    return assignment


def revoke_role(
    session: Session, office: Office, user: User, role: Role, *, actor: User | None, clock: Clock = utcnow
) -> None:
    """Take a role away; who is no longer SC-Action of the office leaves its committees too."""
    _require_admin(session, actor, office)
    if actor is not None and actor.id == user.id and role == Role.ADMIN:
        raise InvalidInput(N_("You cannot remove your own admin role: ask another admin."))
    held = session.scalar(
        select(RoleAssignment).where(
            RoleAssignment.user_id == user.id,
            RoleAssignment.office_id == office.id,
            RoleAssignment.role == role,
        )
    )
    if held is None:
        raise InvalidInput(N_("That person does not have this role at this office."))
    session.delete(held)
    session.flush()
    if Role.ACTION not in roles_in(session, user, office.id):
        for member in session.scalars(
            select(CommitteeMember)
            .join(Committee, Committee.id == CommitteeMember.committee_id)
            .where(Committee.office_id == office.id, CommitteeMember.user_id == user.id)
        ):
            session.delete(member)
    _audit(
        session,
        actor,
        "role_revoked",
        {"office": office.code, "user": user.username, "role": str(role)},
        clock,
    )
    session.flush()


def create_committee(
    session: Session, office: Office, name: str, *, actor: User | None, clock: Clock = utcnow
) -> Committee:
    _require_admin(session, actor, office)
    name = name.strip()
    if not name:
        raise InvalidInput(N_("Give the committee a name."))
    committee = Committee(office_id=office.id, name=name[:200])
    session.add(committee)
    session.flush()
    _audit(session, actor, "committee_created", {"office": office.code, "committee": committee.id}, clock)
    session.flush()
    return committee


def remove_committee(
    session: Session, committee: Committee, *, actor: User | None, clock: Clock = utcnow
) -> None:
    """Remove a committee that was never proposed or assigned a case (those keep their history)."""
    office = _committee_office(session, committee, actor)
    used = session.scalar(
        select(ForwardingProposal.id).where(ForwardingProposal.to_committee_id == committee.id).limit(1)
    )
    if used is not None:
        raise InvalidInput(N_("This committee has cases in its history; remove its members instead."))
    session.delete(committee)
    _audit(session, actor, "committee_removed", {"office": office.code, "committee": committee.id}, clock)
    session.flush()


def _committee_office(session: Session, committee: Committee, actor: User | None) -> Office:
    """The committee's office, once the actor is shown to administer it."""
    office = session.get(Office, committee.office_id)
    assert office is not None
    _require_admin(session, actor, office)
    return office


def _membership(session: Session, committee: Committee, user: User) -> CommitteeMember | None:
    return session.scalar(
        select(CommitteeMember).where(
            CommitteeMember.committee_id == committee.id, CommitteeMember.user_id == user.id
        )
    )


def add_committee_member(
    session: Session, committee: Committee, user: User, *, actor: User | None, clock: Clock = utcnow
) -> None:
    office = _committee_office(session, committee, actor)
    if Role.ACTION not in roles_in(session, user, office.id):
        raise InvalidInput(N_("Only SC-Action staff of the office can sit on its committees."))
    if _membership(session, committee, user) is not None:
        raise InvalidInput(N_("That person is already on this committee."))
    session.add(CommitteeMember(committee_id=committee.id, user_id=user.id))
    detail = {"office": office.code, "committee": committee.id, "user": user.username}
    _audit(session, actor, "committee_member_added", detail, clock)
    session.flush()


def remove_committee_member(
    session: Session, committee: Committee, user: User, *, actor: User | None, clock: Clock = utcnow
) -> None:
    office = _committee_office(session, committee, actor)
    member = _membership(session, committee, user)
    if member is None:
        raise InvalidInput(N_("That person is not on this committee."))
    session.delete(member)
    detail = {"office": office.code, "committee": committee.id, "user": user.username}
    _audit(session, actor, "committee_member_removed", detail, clock)
    session.flush()
