"""Office staff and committees: who has which role at an office, and the SC-Action committees.

Office admins (or the shell, as actor None) change them; each change is checked here and audited.
The refusals are the workflow's (NotPermitted, InvalidInput), marked where raised.

Separated duties: administering an office (roles, committees) gives no case work. An admin cannot give
themselves a case role or a seat on a committee, and a role that reaches reporters' numbers (head,
SC-Operator, agent) is only asked for by one admin and given when a second admin of the office, or an
admin of an office above it, approves (as forwarding needs a head). Roles held before this rule stay:
it governs new grants. Refusals of these rules are DutyRefused, which the caller audits after its
rollback (audit_refusal).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cases.access import administers, roles_in
from cases.models import ForwardingProposal, Office, OfficeKind
from cases.staff import AuditEvent, Committee, CommitteeMember, Role, RoleAssignment, RoleRequest, User
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


# Case work, as opposed to administration (Role.ADMIN).
CASE_ROLES = frozenset({Role.AGENT, Role.OPERATOR, Role.HEAD, Role.ACTION})
# Roles that reach reporters' numbers (may_reveal, may_call_back) are given by two admins; so is the admin
# role itself, or one admin could make a second account of their own an admin to approve their requests.
TWO_PERSON_ROLES = frozenset({Role.AGENT, Role.OPERATOR, Role.HEAD, Role.ADMIN})


class DutyRefused(NotPermitted):
    """A staff change refused by the rules above; `detail` is what the audit row records of it."""

    def __init__(self, message: str, detail: dict[str, Any]) -> None:
        super().__init__(message)
        self.detail = detail


def audit_refusal(session: Session, actor: User | None, exc: DutyRefused, clock: Clock = utcnow) -> None:
    """The refused attempt, written after the request's rollback (which took its other changes away)."""
    _audit(session, actor, "staff_change_refused", exc.detail, clock)
    session.flush()


def _require_admin(session: Session, actor: User | None, office: Office, what: str) -> None:
    # actor None: the shell (`flask users grant`), which is trusted like a database console.
    if actor is not None and not administers(session, actor, office):
        raise DutyRefused(
            N_("Only an admin of this office can change its staff and committees."),
            {"reason": "not_admin", "office": office.code, "change": what},
        )


def _refuse_self(actor: User | None, user: User, office: Office, change: str, role: Role | None) -> None:
    """An admin giving themselves case work: refused, whoever else administers the office."""
    if actor is None or actor.id != user.id:
        return
    detail = {"reason": "self_grant", "office": office.code, "change": change, "user": user.username}
    if role is not None:
        detail["role"] = str(role)
    raise DutyRefused(
        N_("You cannot give yourself case work: another admin of this office has to do it."), detail
    )


def _audit(
    session: Session, actor: User | None, action: str, detail: dict[str, Any], clock: Clock = utcnow
) -> None:
    session.add(AuditEvent(at=clock(), user_id=actor.id if actor else None, action=action, detail=detail))


def grant_role(
    session: Session, office: Office, user: User, role: Role, *, actor: User | None, clock: Clock = utcnow
) -> RoleAssignment | RoleRequest:
    """An office admin (or the shell) gives a person a role at an office; audited.

    A head, SC-Operator or agent role asked for by an admin is not given yet: the RoleRequest returned
    waits for a second admin (approve_role_request). The shell gives every role at once.
    """
    _require_admin(session, actor, office, "grant_role")
    if role in CASE_ROLES:
        _refuse_self(actor, user, office, "grant_role", role)
    if role == Role.AGENT and office.kind != OfficeKind.CENTRAL:
        raise InvalidInput(N_("Call-centre agents work at the central Safety Center only."))
    if _held(session, office, user, role) is not None:
        raise InvalidInput(N_("That person already has this role at this office."))
    if actor is not None and role in TWO_PERSON_ROLES:
        return _request_role(session, office, user, role, actor, clock)
    return _add_role(session, office, user, role, actor, {}, clock)


def _held(session: Session, office: Office, user: User, role: Role) -> RoleAssignment | None:
    return session.scalar(
        select(RoleAssignment).where(
            RoleAssignment.user_id == user.id,
            RoleAssignment.office_id == office.id,
            RoleAssignment.role == role,
        )
    )


def _add_role(
    session: Session,
    office: Office,
    user: User,
    role: Role,
    actor: User | None,
    extra: dict[str, Any],
    clock: Clock,
) -> RoleAssignment:
    assignment = RoleAssignment(user_id=user.id, office_id=office.id, role=role)
    session.add(assignment)
    detail = {"office": office.code, "user": user.username, "role": str(role), **extra}
    _audit(session, actor, "role_granted", detail, clock)
    session.flush()
    return assignment


def _request_role(
    session: Session, office: Office, user: User, role: Role, actor: User, clock: Clock
) -> RoleRequest:
    waiting = session.scalar(
        select(RoleRequest.id).where(
            RoleRequest.office_id == office.id,
            RoleRequest.user_id == user.id,
            RoleRequest.role == role,
            RoleRequest.status == "pending",
        )
    )
    if waiting is not None:
        raise InvalidInput(N_("This role is already waiting for a second admin's approval."))
    request = RoleRequest(
        office_id=office.id, user_id=user.id, role=role, requested_by=actor.id, requested_at=clock()
    )
    session.add(request)
    session.flush()
    detail = {"office": office.code, "user": user.username, "role": str(role), "request": request.id}
    _audit(session, actor, "role_requested", detail, clock)
    session.flush()
    return request


def pending_role_requests(session: Session, office: Office) -> list[RoleRequest]:
    """The office's role requests waiting for a second admin, oldest first."""
    return list(
        session.scalars(
            select(RoleRequest)
            .where(RoleRequest.office_id == office.id, RoleRequest.status == "pending")
            .order_by(RoleRequest.id)
        )
    )


def _pending(session: Session, request: RoleRequest) -> tuple[Office, User]:
    if request.status != "pending":
        raise InvalidInput(N_("This request has already been decided."))
    office, user = session.get(Office, request.office_id), session.get(User, request.user_id)
    assert office is not None and user is not None
    return office, user


def approve_role_request(
    session: Session, request: RoleRequest, *, actor: User, clock: Clock = utcnow
) -> RoleAssignment:
    """A second admin (of the office or one above it) gives the role asked for; never the one who asked."""
    office, user = _pending(session, request)
    _require_admin(session, actor, office, "approve_role")
    _refuse_self(actor, user, office, "approve_role", Role(request.role))
    if actor.id == request.requested_by:
        raise DutyRefused(
            N_("You asked for this role: another admin has to approve it."),
            {"reason": "own_request", "office": office.code, "change": "approve_role", "request": request.id},
        )
    request.status, request.decided_by, request.decided_at = "approved", actor.id, clock()
    if _held(session, office, user, Role(request.role)) is not None:
        raise InvalidInput(N_("That person already has this role at this office."))
    extra = {"request": request.id, "requested_by": request.requested_by}
    return _add_role(session, office, user, Role(request.role), actor, extra, clock)


def decline_role_request(
    session: Session, request: RoleRequest, *, actor: User, clock: Clock = utcnow
) -> None:
    """Any admin of the office declines a request (the one who asked withdraws it); audited."""
    office, user = _pending(session, request)
    _require_admin(session, actor, office, "decline_role")
    request.status, request.decided_by, request.decided_at = "declined", actor.id, clock()
    detail = {"office": office.code, "user": user.username, "role": str(request.role), "request": request.id}
    _audit(session, actor, "role_request_declined", detail, clock)
    session.flush()


def revoke_role(
    session: Session, office: Office, user: User, role: Role, *, actor: User | None, clock: Clock = utcnow
) -> None:
    """Take a role away; who is no longer SC-Action of the office leaves its committees too."""
    _require_admin(session, actor, office, "revoke_role")
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
    _require_admin(session, actor, office, "create_committee")
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
    office = _committee_office(session, committee, actor, "remove_committee")
    used = session.scalar(
        select(ForwardingProposal.id).where(ForwardingProposal.to_committee_id == committee.id).limit(1)
    )
    if used is not None:
        raise InvalidInput(N_("This committee has cases in its history; remove its members instead."))
    session.delete(committee)
    _audit(session, actor, "committee_removed", {"office": office.code, "committee": committee.id}, clock)
    session.flush()


def _committee_office(session: Session, committee: Committee, actor: User | None, what: str) -> Office:
    """The committee's office, once the actor is shown to administer it."""
    office = session.get(Office, committee.office_id)
    assert office is not None
    _require_admin(session, actor, office, what)
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
    office = _committee_office(session, committee, actor, "add_committee_member")
    # A seat on a committee is case work (its cases are assigned to it): not the admin's to take.
    _refuse_self(actor, user, office, "add_committee_member", None)
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
    office = _committee_office(session, committee, actor, "remove_committee_member")
    member = _membership(session, committee, user)
    if member is None:
        raise InvalidInput(N_("That person is not on this committee."))
    session.delete(member)
    detail = {"office": office.code, "committee": committee.id, "user": user.username}
    _audit(session, actor, "committee_member_removed", detail, clock)
    session.flush()
