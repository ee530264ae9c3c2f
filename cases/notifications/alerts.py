"""Workflow alerts: who hears of a move (routed, proposed, decided, assigned), queued in its transaction.

Each function is called by cases.workflow right after the move's CaseEvent is written, so the alert rows
commit or roll back with the move (the outbox pattern) and are deduplicated on that event's id. The actor
never hears of their own action. The texts carry the reference and a console link only (cases.notifications
.texts): never the reporter's number or words. Which channels carry them is the `alerts` setting of the
delivery targets (console, e-mail, SMS, LINE; LINE to the office's group where it has one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from cases.models import Case, CaseEvent, ForwardingProposal, Office
from cases.notifications.outbox import delivery_targets, notify
from cases.staff import CommitteeMember, Role, RoleAssignment, User
from infra.clock import as_utc

CASE_ROUTED = "case_routed"
PROPOSAL_WAITING = "proposal_waiting"
PROPOSAL_APPROVED = "proposal_approved"
PROPOSAL_REJECTED = "proposal_rejected"
CASE_ASSIGNED = "case_assigned"
COMMITTEE_ASSIGNED = "committee_assigned"
FOLLOW_UP_MESSAGE = "follow_up_message"
CASE_REOPENED = "case_reopened"
ALERT_KINDS = (
    CASE_ROUTED,
    PROPOSAL_WAITING,
    PROPOSAL_APPROVED,
    PROPOSAL_REJECTED,
    CASE_ASSIGNED,
    COMMITTEE_ASSIGNED,
    FOLLOW_UP_MESSAGE,
    CASE_REOPENED,
)


def case_link(case: Case) -> str:
    """The console page of a case (as cases.callbacks.case_link; not imported: that package imports us)."""
    return f"/console/cases/{case.id}"


def _people(session: Session, ids: Iterable[int]) -> list[User]:
    return list(session.scalars(select(User).where(User.active, User.id.in_(list(ids))).order_by(User.id)))


def office_people(session: Session, office_id: int, roles: Sequence[Role]) -> list[User]:
    """The office's active staff holding one of `roles` (as assigned, not by position)."""
    ids = select(RoleAssignment.user_id).where(
        RoleAssignment.office_id == office_id, RoleAssignment.role.in_([str(r) for r in roles])
    )
    return list(session.scalars(select(User).where(User.active, User.id.in_(ids)).order_by(User.id)))


def _alert(
    session: Session,
    kind: str,
    event: CaseEvent,
    case: Case,
    users: Iterable[User],
    office: Office | None,
    actor: User | None,
) -> None:
    """Queue `kind` for `users` but the actor, on the alert channels, deduplicated on the move's event."""
    people = [u for u in users if actor is None or u.id != actor.id]
    if not people:
        return
    targets = delivery_targets(session)
    notify(
        session,
        dedupe=f"alert:{event.id}:{kind}",
        kind=kind,
        case=case,
        users=people,
        office=office,
        channels=targets.alerts,
        params={"reference": case.reference},
        link=case_link(case),
        now=as_utc(event.at),
        targets=targets,
    )


def case_routed(session: Session, event: CaseEvent, case: Case, actor: User | None) -> None:
    """A case arrived at an office (routed by an agent, or forwarded to a district): its SC-Operators."""
    office = session.get(Office, case.office_id)
    assert office is not None
    users = office_people(session, office.id, (Role.OPERATOR, Role.HEAD))
    _alert(session, CASE_ROUTED, event, case, users, office, actor)


def proposal_waiting(
    session: Session, event: CaseEvent, case: Case, proposal: ForwardingProposal, approvers_office: int
) -> None:
    """A forwarding was proposed: the heads who may decide it (never the proposer)."""
    office = session.get(Office, approvers_office)
    users = office_people(session, approvers_office, (Role.HEAD,))
    proposer = session.get(User, proposal.proposed_by)
    _alert(session, PROPOSAL_WAITING, event, case, users, office, proposer)


def proposal_decided(
    session: Session, event: CaseEvent, case: Case, proposal: ForwardingProposal, actor: User
) -> None:
    """A head decided a proposal: its proposer hears whether it was approved or rejected."""
    kind = PROPOSAL_APPROVED if proposal.status == "approved" else PROPOSAL_REJECTED
    proposer = _people(session, [proposal.proposed_by])
    office = session.get(Office, proposal.office_id)
    _alert(session, kind, event, case, proposer, office, actor)


def case_assigned(
    session: Session, event: CaseEvent, case: Case, proposal: ForwardingProposal, actor: User
) -> None:
    """An approved forwarding assigned the case: the SC-Action person, or every member of the committee."""
    assigned_to(session, event, case, proposal.to_user_id, proposal.to_committee_id, actor)


def assigned_to(
    session: Session,
    event: CaseEvent,
    case: Case,
    user_id: int | None,
    committee_id: int | None,
    actor: User,
) -> None:
    """The case was given (by approval or by a head's reassignment) to a person or a committee."""
    office = session.get(Office, case.office_id)
    if user_id is not None:
        _alert(session, CASE_ASSIGNED, event, case, _people(session, [user_id]), office, actor)
    elif committee_id is not None:
        members = select(CommitteeMember.user_id).where(CommitteeMember.committee_id == committee_id)
        users = _people(session, session.scalars(members))
        _alert(session, COMMITTEE_ASSIGNED, event, case, users, office, actor)


def case_reopened(
    session: Session, event: CaseEvent, case: Case, assignee_ids: Iterable[int], actor: User
) -> None:
    """A head reopened a resolved case: the office's SC-Operators and heads, and the SC-Action staff on it."""
    office = session.get(Office, case.office_id)
    assert office is not None
    users = {u.id: u for u in office_people(session, office.id, (Role.OPERATOR, Role.HEAD))}
    users.update({u.id: u for u in _people(session, assignee_ids)})
    _alert(session, CASE_REOPENED, event, case, [users[k] for k in sorted(users)], office, actor)
