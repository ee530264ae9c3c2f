"""The case workflow: one table of allowed moves, who may make them, and an event for every move.

Service functions take the session, the acting user and the case; they check the rule, change the
case, write a CaseEvent, flush, and leave the commit to the request. A refused move raises a named
WorkflowError whose message is shown to the user as it is.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from cases import audit, coverage, milestones, search_index
from cases.access import (
    active_assignment,
    assignees,
    may_reveal,
    roles_in,
)
from cases.models import (
    Acknowledgement,
    Assignment,
    Case,
    CaseAction,
    CaseEvent,
    CaseStatus,
    ForwardingProposal,
    HazardGroup,
    Office,
    OfficeKind,
    SummaryVersion,
    TranscriptCorrection,
)
from cases.notifications import alerts
from cases.offices import central_office_id
from cases.staff import AuditEvent, Committee, Role, RoleAssignment, User
from cases.texts import N_, Refusal, Text
from cases.words import MOVE_WORDS, ROLE_WORDS, STATE_WORDS
from infra.clock import Clock, utcnow
from infra.crypto import FieldCipher
from transcription.models import Recording


class Move(enum.StrEnum):
    ROUTE = "route"
    PROPOSE = "propose"
    APPROVE = "approve"
    REJECT = "reject"
    ACKNOWLEDGE = "acknowledge"
    RECORD_ACTION = "record_action"
    RESOLVE = "resolve"
    # Corrections by the people who made or oversee a move (cases.workflow_changes).
    WITHDRAW = "withdraw"
    REASSIGN = "reassign"
    REOPEN = "reopen"


S = CaseStatus
# The whole state machine. A move not in this table is illegal from that state, whoever asks.
TRANSITIONS: dict[tuple[CaseStatus, Move], CaseStatus] = {
    (S.DRAFT, Move.ROUTE): S.ROUTED,
    (S.ROUTED, Move.ROUTE): S.ROUTED,  # an agent may correct the routing before anyone proposed
    (S.ROUTED, Move.PROPOSE): S.PROPOSED,
    (S.PROPOSED, Move.REJECT): S.ROUTED,
    # APPROVE leads to ASSIGNED (to staff or a committee) or back to ROUTED at a district office.
    (S.PROPOSED, Move.APPROVE): S.ASSIGNED,
    (S.ASSIGNED, Move.ACKNOWLEDGE): S.IN_ACTION,
    (S.IN_ACTION, Move.ACKNOWLEDGE): S.IN_ACTION,
    (S.IN_ACTION, Move.RECORD_ACTION): S.IN_ACTION,
    (S.IN_ACTION, Move.RESOLVE): S.RESOLVED,
    # The proposer takes back a pending proposal: the case is at its office again, as after a rejection.
    (S.PROPOSED, Move.WITHDRAW): S.ROUTED,
    # A head gives the case to other SC-Action staff: they acknowledge it before working on it.
    (S.ASSIGNED, Move.REASSIGN): S.ASSIGNED,
    (S.IN_ACTION, Move.REASSIGN): S.ASSIGNED,
    # A head reopens a resolved case: its SC-Action staff (who acknowledged it) work on it again.
    (S.RESOLVED, Move.REOPEN): S.IN_ACTION,
}
# States in which the case's content (summary, hazard group, transcript) may still be edited.
EDITABLE = {S.DRAFT, S.ROUTED}


class WorkflowError(Refusal):
    """A refused action on a case; its `text` says why in words a user understands (cases.texts.Refusal)."""


class IllegalMove(WorkflowError):
    def __init__(self, move: Move, status: CaseStatus) -> None:
        super().__init__(
            N_("A case that is “%(state)s” cannot be given the action “%(action)s”."),
            state=Text(STATE_WORDS[status]),
            action=Text(MOVE_WORDS[move]),
        )
        self.move, self.status = move, status


class NotPermitted(WorkflowError):
    pass


class SelfApproval(NotPermitted):
    def __init__(self) -> None:
        super().__init__(N_("Nobody approves their own proposal: another head SC-Operator must decide."))


class InvalidInput(WorkflowError):
    pass


# ---- who is who ---------------------------------------------------------------------------------------


def _require(session: Session, user: User, office_id: int, role: Role, doing: str) -> None:
    if role not in roles_in(session, user, office_id):
        raise NotPermitted(
            N_("Only staff with the role “%(role)s” at that office can %(doing)s."),
            role=Text(ROLE_WORDS[role]),
            doing=Text(doing),
        )


def _move(
    session: Session,
    case: Case,
    actor: User,
    move: Move,
    *,
    to: CaseStatus | None = None,
    detail: dict[str, Any] | None = None,
    clock: Clock = utcnow,
) -> CaseEvent:
    current = CaseStatus(case.status)
    target = TRANSITIONS.get((current, move))
    if target is None:
        raise IllegalMove(move, current)
    new = to or target
    event = _event(session, case, actor, move.value, current, new, detail or {}, clock)
    milestones.note(case, event)
    case.status = new
    case.updated_at = clock()
    session.flush()
    return event


def _event(
    session: Session,
    case: Case,
    actor: User | None,
    action: str,
    from_status: CaseStatus | None,
    to_status: CaseStatus | None,
    detail: dict[str, Any],
    clock: Clock = utcnow,
) -> CaseEvent:
    event = CaseEvent(
        case_id=case.id,
        at=clock(),
        actor_id=actor.id if actor else None,
        action=action,
        from_status=str(from_status) if from_status else None,
        to_status=str(to_status) if to_status else None,
        detail=detail,
    )
    session.add(event)
    return event


def _callback_follows(session: Session, case: Case, clock: Clock) -> None:
    """The case's callback, and its reminders not yet sent, move to the case's new office."""
    # Imported here: cases.callbacks builds on this module (its errors and who-may rules).
    from cases.callbacks import follow_office

    follow_office(session, case, clock())


# ---- call-centre agents -------------------------------------------------------------------------------


def route_case(
    session: Session,
    case: Case,
    actor: User,
    office: Office,
    *,
    category: HazardGroup | None = None,
    without_operator: str = coverage.OFFER,
    clock: Clock = utcnow,
) -> Office:
    """A call-centre agent sends a case from the phone line to a provincial or district office.

    An office without an SC-Operator is refused, or replaced by the nearest one above with one
    (`without_operator`, cases.coverage); returns the office the case went to."""
    central = central_office_id(session)
    assert central is not None
    _require(session, actor, central, Role.AGENT, N_("route cases from the phone line"))
    if office.kind == OfficeKind.CENTRAL:
        raise InvalidInput(
            N_("Route the case to a provincial or district office; a case without one waits here.")
        )
    if (CaseStatus(case.status), Move.ROUTE) not in TRANSITIONS:
        raise IllegalMove(Move.ROUTE, CaseStatus(case.status))
    chosen, office = office, coverage.routing_target(session, office, without_operator)
    detail: dict[str, Any] = {"office": office.code}
    if office.id != chosen.id:
        detail["no_operator_at"] = chosen.code
    if category is not None and category != case.category:
        detail["category"] = {"from": str(case.category), "to": str(category)}
        case.category = category
    arrives = case.status == CaseStatus.DRAFT or case.office_id != office.id  # not a mere correction
    case.office_id = office.id
    case.province_code = office.province_code
    case.forwarded_from_office_id = None  # routed afresh: an earlier forwarding office no longer holds it
    event = _move(session, case, actor, Move.ROUTE, detail=detail, clock=clock)
    _callback_follows(session, case, clock)
    if arrives:
        alerts.case_routed(session, event, case, actor)
    return office


def correct_transcript(
    session: Session, case: Case, actor: User, recording: Recording, text: str, *, clock: Clock = utcnow
) -> TranscriptCorrection:
    """Keep a person's correction beside the machine transcript (which is never overwritten)."""
    _require_editor(session, case, actor)
    if recording.case_id != case.id:
        raise InvalidInput(N_("That recording is not part of this case."))
    text = text.strip()
    if not text:
        raise InvalidInput(N_("The corrected transcript is empty."))
    earlier = session.scalar(
        select(func.count(TranscriptCorrection.id)).where(
            TranscriptCorrection.case_id == case.id, TranscriptCorrection.recording_id == recording.id
        )
    )
    # A new row each time: every earlier correction stays (the table is append-only).
    correction = TranscriptCorrection(
        case_id=case.id, recording_id=recording.id, user_id=actor.id, text=text, at=clock()
    )
    session.add(correction)
    search_index.index_correction(session, case, recording.id, text)
    detail = {"recording": recording.recording_sid, "version": (earlier or 0) + 1}
    _event(session, case, actor, "transcript_corrected", None, None, detail, clock)
    session.flush()
    return correction


def _require_editor(session: Session, case: Case, actor: User) -> None:
    if CaseStatus(case.status) not in EDITABLE:
        raise InvalidInput(N_("The case can no longer be edited: it has been forwarded."))
    roles = roles_in(session, actor, case.office_id)
    if case.status == CaseStatus.DRAFT:
        central = central_office_id(session)
        if central is None or Role.AGENT not in roles_in(session, actor, central):
            raise NotPermitted(
                N_("Only a call-centre agent can edit a case that is new from the phone line.")
            )
    elif Role.OPERATOR not in roles:
        raise NotPermitted(N_("Only an SC-Operator of the case's office can edit it."))


# ---- SC-Operators ---------------------------------------------------------------------------------------


def summarise(
    session: Session,
    case: Case,
    actor: User,
    summary: str,
    category: HazardGroup,
    *,
    clock: Clock = utcnow,
) -> None:
    """An SC-Operator summarises the event and selects the right hazard group."""
    if case.status == CaseStatus.DRAFT:
        raise InvalidInput(N_("The case must be routed to an office before its SC-Operators summarise it."))
    if case.status != CaseStatus.ROUTED:
        raise InvalidInput(N_("The case can no longer be summarised: a forwarding was proposed or approved."))
    _require(session, actor, case.office_id, Role.OPERATOR, N_("summarise a case"))
    summary = summary.strip()
    if not summary:
        raise InvalidInput(N_("The summary is empty."))
    earlier = session.scalar(select(func.count(SummaryVersion.id)).where(SummaryVersion.case_id == case.id))
    detail: dict[str, Any] = {"version": (earlier or 0) + 1}
    if category != case.category:
        detail["category"] = {"from": str(case.category), "to": str(category)}
    case.summary, case.category, case.updated_at = summary, category, clock()
    # The case holds the latest; every version, this one too, is kept as a row of its own.
    session.add(
        SummaryVersion(case_id=case.id, user_id=actor.id, at=clock(), text=summary, category=category)
    )
    search_index.index_summary(session, case)
    _event(session, case, actor, "summarised", None, None, detail, clock)
    session.flush()


def propose_forwarding(
    session: Session,
    case: Case,
    actor: User,
    *,
    to_user: User | None = None,
    to_committee: Committee | None = None,
    to_office: Office | None = None,
    note: str | None = None,
    clock: Clock = utcnow,
) -> ForwardingProposal:
    """Propose forwarding to one SC-Action person, a committee, or (from a province) one of its districts."""
    if sum(x is not None for x in (to_user, to_committee, to_office)) != 1:
        raise InvalidInput(N_("Choose exactly one: a person, a committee, or a district office."))
    if (CaseStatus(case.status), Move.PROPOSE) not in TRANSITIONS:
        raise IllegalMove(Move.PROPOSE, CaseStatus(case.status))
    _require(session, actor, case.office_id, Role.OPERATOR, N_("propose forwarding"))
    if not case.summary:
        raise InvalidInput(N_("Summarise the case before proposing to forward it."))
    office = session.get(Office, case.office_id)
    assert office is not None
    if to_user is not None and Role.ACTION not in roles_in(session, to_user, office.id):
        raise InvalidInput(N_("That person is not SC-Action of this office."))
    if to_committee is not None and to_committee.office_id != office.id:
        raise InvalidInput(N_("That committee belongs to another office."))
    if to_office is not None and (office.kind != OfficeKind.PROVINCE or to_office.parent_id != office.id):
        raise InvalidInput(
            N_("A case can be forwarded only to a district office under this provincial office.")
        )
    if to_office is not None:
        coverage.require_covered_district(session, to_office, office)
    proposal = ForwardingProposal(
        case_id=case.id,
        office_id=office.id,
        proposed_by=actor.id,
        proposed_at=clock(),
        to_user_id=to_user.id if to_user else None,
        to_committee_id=to_committee.id if to_committee else None,
        to_office_id=to_office.id if to_office else None,
        note=(note or "").strip() or None,
        status="pending",
    )
    session.add(proposal)
    session.flush()
    target = _target_words(to_user, to_committee, to_office)
    event = _move(
        session, case, actor, Move.PROPOSE, detail={"proposal": proposal.id, "to": target}, clock=clock
    )
    alerts.proposal_waiting(session, event, case, proposal, approvers_office_id(session, proposal))
    return proposal


def _target_words(user: User | None, committee: Committee | None, office: Office | None) -> str:
    if user is not None:
        return f"user:{user.username}"
    if committee is not None:
        return f"committee:{committee.id}"
    assert office is not None
    return f"office:{office.code}"


# ---- heads ------------------------------------------------------------------------------------------------


def approvers_office_id(session: Session, proposal: ForwardingProposal) -> int:
    """Whose heads decide: the proposing office's, or the parent's when the proposer is its only head."""
    heads = set(
        session.scalars(
            select(RoleAssignment.user_id)
            .join(User, User.id == RoleAssignment.user_id)
            .where(
                RoleAssignment.office_id == proposal.office_id, RoleAssignment.role == Role.HEAD, User.active
            )
        )
    )
    if heads - {proposal.proposed_by}:
        return proposal.office_id
    office = session.get(Office, proposal.office_id)
    assert office is not None
    if office.parent_id is None:
        return proposal.office_id  # the central office has no parent: it needs a second head
    return office.parent_id


def can_decide(session: Session, user: User, proposal: ForwardingProposal) -> bool:
    return user.id != proposal.proposed_by and Role.HEAD in roles_in(
        session, user, approvers_office_id(session, proposal)
    )


def decide_proposal(
    session: Session,
    proposal: ForwardingProposal,
    actor: User,
    *,
    approve: bool,
    reason: str | None = None,
    clock: Clock = utcnow,
) -> None:
    """A head SC-Operator approves (the forwarding goes out) or rejects (with a reason) a proposal."""
    case = session.get(Case, proposal.case_id)
    assert case is not None
    if proposal.status != "pending":
        raise InvalidInput(N_("This proposal has already been decided."))
    if actor.id == proposal.proposed_by:
        raise SelfApproval()
    approver_office = approvers_office_id(session, proposal)
    _require(session, actor, approver_office, Role.HEAD, N_("approve or reject forwarding"))
    move = Move.APPROVE if approve else Move.REJECT
    if (CaseStatus(case.status), move) not in TRANSITIONS:
        raise IllegalMove(move, CaseStatus(case.status))
    reason = (reason or "").strip()
    if not approve and not reason:
        raise InvalidInput(N_("Give a reason for rejecting the proposal."))
    proposal.decided_by, proposal.decided_at = actor.id, clock()
    if not approve:
        proposal.status, proposal.reason = "rejected", reason
        event = _move(
            session, case, actor, Move.REJECT, detail={"proposal": proposal.id, "reason": reason}, clock=clock
        )
        alerts.proposal_decided(session, event, case, proposal, actor)
        return
    proposal.status = "approved"
    if proposal.to_office_id is not None:
        # Forwarded to a district: it arrives there as a routed case; the province keeps sight of it.
        district = session.get(Office, proposal.to_office_id)
        assert district is not None
        coverage.require_covered_district(session, district, case.office)  # its operators may have left since
        from_office = case.office_id
        case.forwarded_from_office_id = from_office
        case.office_id = district.id
        event = _move(
            session,
            case,
            actor,
            Move.APPROVE,
            to=CaseStatus.ROUTED,
            detail={"proposal": proposal.id, "office": district.code},
            clock=clock,
        )
        _callback_follows(session, case, clock)
        alerts.proposal_decided(session, event, case, proposal, actor)
        alerts.case_routed(session, event, case, actor)
        return
    for old in session.scalars(select(Assignment).where(Assignment.case_id == case.id, Assignment.active)):
        old.active = False
    session.add(
        Assignment(
            case_id=case.id,
            user_id=proposal.to_user_id,
            committee_id=proposal.to_committee_id,
            proposal_id=proposal.id,
            assigned_at=clock(),
            active=True,
        )
    )
    event = _move(session, case, actor, Move.APPROVE, detail={"proposal": proposal.id}, clock=clock)
    alerts.proposal_decided(session, event, case, proposal, actor)
    alerts.case_assigned(session, event, case, proposal, actor)


# ---- SC-Action -------------------------------------------------------------------------------------------


def _require_assignee(session: Session, case: Case, actor: User) -> Assignment:
    assignment = active_assignment(session, case)
    if assignment is None or actor.id not in assignees(session, assignment):
        raise NotPermitted(N_("Only the SC-Action staff the case is assigned to can do this."))
    return assignment


def acknowledge(session: Session, case: Case, actor: User, *, clock: Clock = utcnow) -> None:
    """An assignee acknowledges; in a committee every member acknowledges for themselves."""
    if (CaseStatus(case.status), Move.ACKNOWLEDGE) not in TRANSITIONS:
        raise IllegalMove(Move.ACKNOWLEDGE, CaseStatus(case.status))
    assignment = _require_assignee(session, case, actor)
    done = session.scalar(
        select(Acknowledgement.id).where(
            Acknowledgement.assignment_id == assignment.id, Acknowledgement.user_id == actor.id
        )
    )
    if done is not None:
        raise InvalidInput(N_("You have already acknowledged this case."))
    session.add(Acknowledgement(assignment_id=assignment.id, user_id=actor.id, at=clock()))
    _move(session, case, actor, Move.ACKNOWLEDGE, detail={"assignment": assignment.id}, clock=clock)


def pending_acknowledgements(session: Session, case: Case) -> set[int]:
    assignment = active_assignment(session, case)
    if assignment is None:
        return set()
    done = set(
        session.scalars(select(Acknowledgement.user_id).where(Acknowledgement.assignment_id == assignment.id))
    )
    return assignees(session, assignment) - done


def _require_acknowledged(session: Session, case: Case, actor: User) -> None:
    assignment = _require_assignee(session, case, actor)
    if not session.scalar(
        select(Acknowledgement.id).where(
            Acknowledgement.assignment_id == assignment.id, Acknowledgement.user_id == actor.id
        )
    ):
        raise InvalidInput(N_("Acknowledge the case before working on it."))


def record_action(
    session: Session, case: Case, actor: User, text: str, *, clock: Clock = utcnow
) -> CaseAction:
    if (CaseStatus(case.status), Move.RECORD_ACTION) not in TRANSITIONS:
        raise IllegalMove(Move.RECORD_ACTION, CaseStatus(case.status))
    _require_acknowledged(session, case, actor)
    text = text.strip()
    if not text:
        raise InvalidInput(N_("Describe the action taken."))
    action = CaseAction(case_id=case.id, user_id=actor.id, text=text, at=clock())
    session.add(action)
    _move(session, case, actor, Move.RECORD_ACTION, clock=clock)
    return action


def resolve(
    session: Session,
    case: Case,
    actor: User,
    outcome: str,
    *,
    close_callback_reason: str | None = None,
    clock: Clock = utcnow,
) -> None:
    """Resolve with an outcome; an open callback must be closed first, or in this step with a reason."""
    if (CaseStatus(case.status), Move.RESOLVE) not in TRANSITIONS:
        raise IllegalMove(Move.RESOLVE, CaseStatus(case.status))
    _require_acknowledged(session, case, actor)
    outcome = outcome.strip()
    if not outcome:
        raise InvalidInput(N_("Record the outcome before resolving the case."))
    from cases.callbacks.promise import close_before_resolving  # here: cases.callbacks builds on us

    close_before_resolving(session, case, actor, close_callback_reason, clock())
    case.outcome = outcome
    _move(session, case, actor, Move.RESOLVE, detail={"outcome": outcome[:200]}, clock=clock)


# ---- the reporter's number ---------------------------------------------------------------------------


def reveal_number(
    session: Session, case: Case, actor: User, reason: str, *, cipher: FieldCipher, clock: Clock = utcnow
) -> str:
    """Decrypt the callback number for someone who needs it; every reveal (and refusal) is audited."""
    reason = reason.strip()
    refusal: WorkflowError | None = None
    why = None
    if not may_reveal(session, actor, case):
        why = "no_right"
        refusal = NotPermitted(
            N_("Only the case's SC-Operators and assigned SC-Action staff may see this number.")
        )
    elif not reason:
        why, refusal = "no_reason", InvalidInput(N_("Say why you need the reporter's number."))
    elif not case.callback_number_enc:
        why, refusal = "anonymous", InvalidInput(N_("This reporter left no number (anonymous)."))
    detail: dict[str, Any] = {"reference": case.reference}
    if why is not None:
        detail["why"] = why
    action = "reveal_number" if refusal is None else "reveal_number_refused"
    audit.record(
        session, actor.id, action, case_id=case.id, detail=detail, reason=reason or None, clock=clock
    )
    if refusal is not None:
        raise refusal  # the view commits the audit row before it shows the message
    assert case.callback_number_enc is not None
    return cipher.decrypt(case.callback_number_enc)


def audit_refused_access(session: Session, user: User | None, what: str, object_id: int | None) -> None:
    """A look-up of something the user may not see: answered 404, and written down."""
    session.add(
        AuditEvent(
            at=utcnow(),
            user_id=user.id if user else None,
            action="access_refused",
            case_id=object_id if what == "case" else None,
            detail={"what": what, "id": object_id},
        )
    )
    session.flush()


# ---- predicates the console asks before showing a form (the service functions still decide) --------


def may_edit_content(session: Session, user: User, case: Case) -> bool:
    """Whether the user may correct the transcript of the case now (the rule of correct_transcript)."""
    try:
        _require_editor(session, case, user)
    except WorkflowError:
        return False
    return True


def may_work(session: Session, user: User, case: Case) -> bool:
    """Whether the user may record actions on and resolve the case: an assignee who acknowledged."""
    if CaseStatus(case.status) != CaseStatus.IN_ACTION:
        return False
    try:
        _require_acknowledged(session, case, user)
    except WorkflowError:
        return False
    return True


def proposals_awaiting(session: Session, user: User) -> list[ForwardingProposal]:
    """Pending proposals this user may decide, oldest first (their offices', or a district's own head's)."""
    head_offices = select(RoleAssignment.office_id).where(
        RoleAssignment.user_id == user.id, RoleAssignment.role == Role.HEAD
    )
    candidates = session.scalars(
        select(ForwardingProposal)
        .join(Office, Office.id == ForwardingProposal.office_id)
        .where(
            ForwardingProposal.status == "pending",
            or_(ForwardingProposal.office_id.in_(head_offices), Office.parent_id.in_(head_offices)),
        )
        .order_by(ForwardingProposal.proposed_at, ForwardingProposal.id)
    )
    return [p for p in candidates if can_decide(session, user, p)]
