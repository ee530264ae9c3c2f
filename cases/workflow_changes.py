"""Second thoughts on the workflow: a proposer withdraws, a head reassigns or reopens, each with its event.

The moves live in cases.workflow's table (Move.WITHDRAW, REASSIGN, REOPEN); this module holds their rules.
A head's reassignment or reopening needs a reason, which goes into the case event and an audit row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cases import audit
from cases.access import active_assignment, assignees, roles_in
from cases.models import Assignment, Case, CaseStatus, ForwardingProposal, Office
from cases.notifications import alerts
from cases.staff import Committee, Role, User
from cases.texts import N_
from cases.workflow import (
    TRANSITIONS,
    IllegalMove,
    InvalidInput,
    Move,
    NotPermitted,
    _move,
)
from infra.clock import Clock, utcnow

REASON_LIMIT = 2000


def _allowed(case: Case, move: Move) -> None:
    if (CaseStatus(case.status), move) not in TRANSITIONS:
        raise IllegalMove(move, CaseStatus(case.status))


# ---- the proposer ------------------------------------------------------------------------------------------


def withdraw_proposal(
    session: Session, proposal: ForwardingProposal, actor: User, *, clock: Clock = utcnow
) -> None:
    """The proposer takes back a proposal no head has decided; the case is at its office again.

    Nobody is alerted: the heads' approvals list and badge drop it at once, and it asked nothing of anyone
    else. The proposal row stays, marked withdrawn, so the history shows what was proposed."""
    case = session.get(Case, proposal.case_id)
    assert case is not None
    if actor.id != proposal.proposed_by:
        raise NotPermitted(N_("Only the person who proposed the forwarding can withdraw it."))
    if proposal.status != "pending":
        raise InvalidInput(N_("This proposal has already been decided or withdrawn."))
    _allowed(case, Move.WITHDRAW)
    proposal.status = "withdrawn"
    proposal.decided_by, proposal.decided_at = actor.id, clock()
    _move(session, case, actor, Move.WITHDRAW, detail={"proposal": proposal.id}, clock=clock)
    audit.record(
        session,
        actor.id,
        "proposal_withdrawn",
        case_id=case.id,
        detail={"proposal": proposal.id},
        clock=clock,
    )


def my_pending_proposals(session: Session, user: User) -> list[ForwardingProposal]:
    """The user's own proposals still waiting for another head, oldest first."""
    return list(
        session.scalars(
            select(ForwardingProposal)
            .where(ForwardingProposal.proposed_by == user.id, ForwardingProposal.status == "pending")
            .order_by(ForwardingProposal.proposed_at, ForwardingProposal.id)
        )
    )


# ---- heads -------------------------------------------------------------------------------------------------


def is_head_over(session: Session, user: User, case: Case) -> bool:
    """A head of the case's office or of an office above it (the province over a district, the centre)."""
    office_id: int | None = case.office_id
    seen: set[int] = set()
    while office_id is not None and office_id not in seen:
        if Role.HEAD in roles_in(session, user, office_id):
            return True
        seen.add(office_id)
        office = session.get(Office, office_id)
        office_id = office.parent_id if office is not None else None
    return False


def _require_head(session: Session, user: User, case: Case) -> None:
    if not is_head_over(session, user, case):
        raise NotPermitted(
            N_("Only a head SC-Operator of the case's office, or of an office above it, can do this.")
        )


def _reason(reason: str | None) -> str:
    return (reason or "").strip()[:REASON_LIMIT]


def may_reassign(session: Session, user: User, case: Case) -> bool:
    return (CaseStatus(case.status), Move.REASSIGN) in TRANSITIONS and is_head_over(session, user, case)


def may_reopen(session: Session, user: User, case: Case) -> bool:
    return (CaseStatus(case.status), Move.REOPEN) in TRANSITIONS and is_head_over(session, user, case)


def reassign(
    session: Session,
    case: Case,
    actor: User,
    reason: str | None,
    *,
    to_user: User | None = None,
    to_committee: Committee | None = None,
    clock: Clock = utcnow,
) -> Assignment:
    """A head gives the case to another SC-Action person or committee of its office, saying why.

    The new assignment keeps the approved proposal it descends from (the forwarding stays approved);
    the new assignees acknowledge it before they work on it, and are alerted."""
    _allowed(case, Move.REASSIGN)
    _require_head(session, actor, case)
    if (to_user is None) == (to_committee is None):
        raise InvalidInput(N_("Choose exactly one: a person or a committee."))
    reason = _reason(reason)
    if not reason:
        raise InvalidInput(N_("Give a reason for reassigning the case."))
    if to_user is not None and Role.ACTION not in roles_in(session, to_user, case.office_id):
        raise InvalidInput(N_("That person is not SC-Action of this office."))
    if to_committee is not None and to_committee.office_id != case.office_id:
        raise InvalidInput(N_("That committee belongs to another office."))
    old = active_assignment(session, case)
    assert old is not None  # an ASSIGNED or IN_ACTION case always has one (cases.workflow.decide_proposal)
    new_user = to_user.id if to_user else None
    new_committee = to_committee.id if to_committee else None
    if (old.user_id, old.committee_id) == (new_user, new_committee):
        raise InvalidInput(N_("The case is already assigned there."))
    old.active = False
    assignment = Assignment(
        case_id=case.id,
        user_id=new_user,
        committee_id=new_committee,
        proposal_id=old.proposal_id,
        assigned_at=clock(),
        active=True,
    )
    session.add(assignment)
    session.flush()
    detail: dict[str, Any] = {
        "from": _whom(old.user_id, old.committee_id),
        "to": _whom(new_user, new_committee),
        "assignment": assignment.id,
        "reason": reason,
    }
    event = _move(session, case, actor, Move.REASSIGN, detail=detail, clock=clock)
    audit.record(
        session,
        actor.id,
        "case_reassigned",
        case_id=case.id,
        detail={"from": detail["from"], "to": detail["to"]},
        reason=reason,
        clock=clock,
    )
    alerts.assigned_to(session, event, case, new_user, new_committee, actor)
    return assignment


def _whom(user_id: int | None, committee_id: int | None) -> dict[str, int]:
    """An assignment's holder as ids (a person's name may change; ids stay)."""
    return {"user": user_id} if user_id is not None else {"committee": committee_id or 0}


def reopen(session: Session, case: Case, actor: User, reason: str | None, *, clock: Clock = utcnow) -> None:
    """A head reopens a resolved case, saying why: it is "being worked" again by the same SC-Action staff.

    Back to IN_ACTION, not ASSIGNED: the assignees already acknowledged the case, so they record actions
    and resolve again at once. The earlier outcome stays in this event; the case's outcome is cleared so
    the page does not show a result for work that goes on. The call back is left as it is."""
    _allowed(case, Move.REOPEN)
    _require_head(session, actor, case)
    reason = _reason(reason)
    if not reason:
        raise InvalidInput(N_("Give a reason for reopening the case."))
    detail: dict[str, Any] = {"reason": reason, "outcome": (case.outcome or "")[:REASON_LIMIT]}
    case.outcome = None
    event = _move(session, case, actor, Move.REOPEN, detail=detail, clock=clock)
    audit.record(session, actor.id, "case_reopened", case_id=case.id, reason=reason, clock=clock)
    assignment = active_assignment(session, case)
    people = assignees(session, assignment) if assignment is not None else set()
    alerts.case_reopened(session, event, case, people, actor)
