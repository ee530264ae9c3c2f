"""Service-level tests of every rule of the case workflow (issue 4, "Roles and rules").

Each test drives `cases.workflow` directly on a migrated database with the 1,006 offices loaded, as
the console's views will: the acting user, the case, and the rule that must hold. Refused moves are
checked for what they must leave untouched as well as for the error they raise, because a view that
shows the error and carries on must not commit half a move.

Offices used: the central Safety Center; Chiang Mai (50) with its districts Mueang (5001) and
Chom Thong (5002); Chiang Rai (57) with its district Mueang (5701); Lamphun (51).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import get_database
from cases import access, office_staff
from cases import workflow as wf
from cases import workflow_changes as changes
from cases.models import (
    CENTRAL_OFFICE_CODE,
    Acknowledgement,
    Assignment,
    Call,
    CallbackChoice,
    Case,
    CaseAction,
    CaseEvent,
    CaseStatus,
    ForwardingProposal,
    HazardGroup,
    Office,
    TranscriptCorrection,
)
from cases.reference import new_reference
from cases.service import DraftReport, open_draft_case
from cases.staff import AuditEvent, Committee, CommitteeMember, Role, RoleAssignment, User
from cases.words import STATE_WORDS
from cases.workflow import TRANSITIONS, IllegalMove, InvalidInput, Move, NotPermitted, SelfApproval
from infra.clock import utcnow
from infra.config import Config
from infra.crypto import FieldCipher, mask_phone
from transcription.models import Recording, Transcript, TranscriptStatus

NUMBER = "+66891234567"
CALLER = "+66812345678"
S = CaseStatus


# ---- a small world of offices, staff and cases -----------------------------------------------------------


class World:
    """Builds offices' staff, committees and cases directly in the test's session."""

    def __init__(self, session: Session, cipher: FieldCipher) -> None:
        self.s = session
        self.cipher = cipher
        self._offices: dict[str, Office] = {}

    def office(self, code: str) -> Office:
        if code not in self._offices:
            office = self.s.scalar(select(Office).where(Office.code == code))
            assert office is not None, code
            self._offices[code] = office
        return self._offices[code]

    def user(self, name: str, *roles: tuple[str, Role], active: bool = True) -> User:
        user = User(
            username=name,
            display_name=name.title(),
            password_hash="x",
            session_token=uuid.uuid4().hex,
            active=active,
        )
        self.s.add(user)
        self.s.flush()
        for code, role in roles:
            self.grant(user, code, role)
        return user

    def grant(self, user: User, code: str, role: Role) -> None:
        self.s.add(RoleAssignment(user_id=user.id, office_id=self.office(code).id, role=role))
        self.s.flush()

    def committee(self, code: str, *members: User) -> Committee:
        committee = Committee(office_id=self.office(code).id, name=f"safety committee {code}")
        self.s.add(committee)
        self.s.flush()
        for m in members:
            self.s.add(CommitteeMember(committee_id=committee.id, user_id=m.id))
        self.s.flush()
        return committee

    def case(
        self,
        code: str,
        status: CaseStatus = S.ROUTED,
        *,
        summary: str | None = "A pupil was hit by a teacher.",
        number: str | None = NUMBER,
        category: HazardGroup = HazardGroup.VIOLENCE,
        forwarded_from: str | None = None,
    ) -> Case:
        office = self.office(code)
        case = Case(
            reference=new_reference(),
            status=status,
            category=category,
            ivr_category=category,
            language="th",
            province_code=office.province_code,
            office_id=office.id,
            callback_choice=CallbackChoice.OTHER if number else CallbackChoice.NONE,
            callback_number_enc=self.cipher.encrypt(number) if number else None,
            callback_number_masked=mask_phone(number),
            summary=summary,
            forwarded_from_office_id=self.office(forwarded_from).id if forwarded_from else None,
        )
        self.s.add(case)
        self.s.flush()
        return case

    def draft(
        self,
        province: str | None = None,
        *,
        callback: CallbackChoice = CallbackChoice.CALLER,
        category: HazardGroup = HazardGroup.UNSPECIFIED,
    ) -> Case:
        """A draft case the way the IVR opens it (through the case service)."""
        call = Call(
            call_sid="CA" + uuid.uuid4().hex,
            caller_number_enc=self.cipher.encrypt(CALLER),
            caller_number_masked=mask_phone(CALLER),
        )
        self.s.add(call)
        self.s.flush()
        report = DraftReport(
            call=call,
            category=category,
            language="th",
            province_code=province,
            callback=callback,
            callback_number=None,
            recording_sid=None,
            anonymous=callback == CallbackChoice.NONE,
        )
        return open_draft_case(self.s, report, cipher=self.cipher)

    def events(self, case: Case) -> list[tuple[str, int | None, str | None, str | None]]:
        rows = self.s.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id))
        return [(e.action, e.actor_id, e.from_status, e.to_status) for e in rows]

    def count(self, model: Any, **where: Any) -> int:
        query = select(func.count()).select_from(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return int(self.s.scalar(query) or 0)

    def audits(self, case: Case) -> list[AuditEvent]:
        return list(self.s.scalars(select(AuditEvent).where(AuditEvent.case_id == case.id)))


@dataclass
class Cast:
    """The standing staff: who holds which role where."""

    agent: User  # call-centre agent, central
    central_op: User  # SC-Operator at central (not an agent)
    central_action: User  # SC-Action at central (not an agent)
    central_head: User  # head SC-Operator, central
    agent50: User  # an "agent" role at a provincial office: not the call centre
    head50: User
    op50: User
    act50: User
    admin50: User  # office admin only
    head57: User
    op57: User
    act57: User
    head5001: User
    op5001: User
    act5001: User
    op5002: User
    nobody: User  # a user without any role


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with get_database(app).session() as s:
        yield s


@pytest.fixture
def w(session: Session, config: Config) -> World:
    return World(session, FieldCipher(config.data_key))


@pytest.fixture
def cast(w: World) -> Cast:
    c = CENTRAL_OFFICE_CODE
    return Cast(
        agent=w.user("agent", (c, Role.AGENT)),
        central_op=w.user("central_op", (c, Role.OPERATOR)),
        central_action=w.user("central_action", (c, Role.ACTION)),
        central_head=w.user("central_head", (c, Role.HEAD)),
        agent50=w.user("agent50", ("50", Role.AGENT)),
        head50=w.user("head50", ("50", Role.HEAD)),
        op50=w.user("op50", ("50", Role.OPERATOR)),
        act50=w.user("act50", ("50", Role.ACTION)),
        admin50=w.user("admin50", ("50", Role.ADMIN)),
        head57=w.user("head57", ("57", Role.HEAD)),
        op57=w.user("op57", ("57", Role.OPERATOR)),
        act57=w.user("act57", ("57", Role.ACTION)),
        head5001=w.user("head5001", ("5001", Role.HEAD)),
        op5001=w.user("op5001", ("5001", Role.OPERATOR)),
        act5001=w.user("act5001", ("5001", Role.ACTION)),
        op5002=w.user("op5002", ("5002", Role.OPERATOR)),
        nobody=w.user("nobody"),
    )


def snapshot(case: Case) -> tuple[Any, ...]:
    return (
        str(case.status),
        case.office_id,
        case.province_code,
        str(case.category),
        case.summary,
        case.forwarded_from_office_id,
        case.outcome,
    )


def assert_words(message: str) -> None:
    """A message for people: no enum reprs, no class names, no Python."""
    assert message.strip()
    for code in ("CaseStatus", "Move.", "Role.", "HazardGroup", "<", "None"):
        assert code not in message, message


def forwarded_to_user(w: World, cast: Cast, case: Case) -> ForwardingProposal:
    """Summarised at 50, proposed by op50 to act50, approved by head50: ASSIGNED to act50."""
    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50)
    wf.decide_proposal(w.s, proposal, cast.head50, approve=True)
    return proposal


# ---- the transition table ----------------------------------------------------------------------------------

ILLEGAL = [(status, move) for status in CaseStatus for move in Move if (status, move) not in TRANSITIONS]


def test_the_table_allows_exactly_the_documented_moves() -> None:
    assert TRANSITIONS == {
        (S.DRAFT, Move.ROUTE): S.ROUTED,
        (S.ROUTED, Move.ROUTE): S.ROUTED,
        (S.ROUTED, Move.PROPOSE): S.PROPOSED,
        (S.PROPOSED, Move.REJECT): S.ROUTED,
        (S.PROPOSED, Move.APPROVE): S.ASSIGNED,
        (S.ASSIGNED, Move.ACKNOWLEDGE): S.IN_ACTION,
        (S.IN_ACTION, Move.ACKNOWLEDGE): S.IN_ACTION,
        (S.IN_ACTION, Move.RECORD_ACTION): S.IN_ACTION,
        (S.IN_ACTION, Move.RESOLVE): S.RESOLVED,
        (S.PROPOSED, Move.WITHDRAW): S.ROUTED,
        (S.ASSIGNED, Move.REASSIGN): S.ASSIGNED,
        (S.IN_ACTION, Move.REASSIGN): S.ASSIGNED,
        (S.RESOLVED, Move.REOPEN): S.IN_ACTION,
    }
    assert len(ILLEGAL) == len(CaseStatus) * len(Move) - len(TRANSITIONS)
    # Resolved is final but for a head's reopening (cases.workflow_changes).
    assert [move for status, move in TRANSITIONS if status == S.RESOLVED] == [Move.REOPEN]
    assert set(STATE_WORDS) == set(CaseStatus)


@pytest.mark.parametrize(("status", "move"), ILLEGAL, ids=[f"{s}-{m}" for s, m in ILLEGAL])
def test_a_move_not_in_the_table_is_refused_in_words_and_changes_nothing(
    w: World, cast: Cast, status: CaseStatus, move: Move
) -> None:
    # Everything except the state would let the move through: the actor holds the right role, a
    # pending proposal exists, the case is assigned (and acknowledged where the move needs it).
    case = w.case("50", status, category=HazardGroup.VIOLENCE)
    proposal = ForwardingProposal(
        case_id=case.id,
        office_id=case.office_id,
        proposed_by=cast.op50.id,
        proposed_at=utcnow(),
        to_user_id=cast.act50.id,
        status="pending",
    )
    w.s.add(proposal)
    w.s.flush()
    assignment = Assignment(
        case_id=case.id, user_id=cast.act50.id, proposal_id=proposal.id, assigned_at=utcnow(), active=True
    )
    w.s.add(assignment)
    w.s.flush()
    if move in (Move.RECORD_ACTION, Move.RESOLVE):
        w.s.add(Acknowledgement(assignment_id=assignment.id, user_id=cast.act50.id, at=utcnow()))
        w.s.flush()
    before = snapshot(case)
    counts = {m: w.count(m) for m in (CaseEvent, Assignment, Acknowledgement, CaseAction, ForwardingProposal)}
    calls: dict[Move, Callable[[], Any]] = {
        Move.ROUTE: lambda: wf.route_case(
            w.s, case, cast.agent, w.office("57"), category=HazardGroup.ACCIDENT
        ),
        Move.PROPOSE: lambda: wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50),
        Move.APPROVE: lambda: wf.decide_proposal(w.s, proposal, cast.head50, approve=True),
        Move.REJECT: lambda: wf.decide_proposal(w.s, proposal, cast.head50, approve=False, reason="wrong"),
        Move.ACKNOWLEDGE: lambda: wf.acknowledge(w.s, case, cast.act50),
        Move.RECORD_ACTION: lambda: wf.record_action(w.s, case, cast.act50, "Visited the school."),
        Move.RESOLVE: lambda: wf.resolve(w.s, case, cast.act50, "The teacher was moved."),
        Move.WITHDRAW: lambda: changes.withdraw_proposal(w.s, proposal, cast.op50),
        Move.REASSIGN: lambda: changes.reassign(w.s, case, cast.head50, "away", to_user=cast.op50),
        Move.REOPEN: lambda: changes.reopen(w.s, case, cast.head50, "not done"),
    }

    with pytest.raises(IllegalMove) as refused:
        calls[move]()

    assert (refused.value.move, refused.value.status) == (move, status)
    assert isinstance(refused.value, wf.WorkflowError)
    message = str(refused.value)
    assert_words(message)
    assert STATE_WORDS[status] in message
    # Nothing of the refused move is left behind for a later commit to write.
    assert snapshot(case) == before
    assert (proposal.status, proposal.decided_by, proposal.decided_at, proposal.reason) == (
        "pending",
        None,
        None,
        None,
    )
    assert assignment.active
    w.s.flush()
    assert {m: w.count(m) for m in counts} == counts


# ---- call-centre agents route ----------------------------------------------------------------------------


def test_an_agent_of_the_central_office_routes_a_draft_to_a_province(w: World, cast: Cast) -> None:
    case = w.draft(None)  # no province: waits at the central office
    assert case.office_id == w.office(CENTRAL_OFFICE_CODE).id
    assert case.status == S.DRAFT

    wf.route_case(w.s, case, cast.agent, w.office("50"))

    assert (case.status, case.office_id, case.province_code) == (S.ROUTED, w.office("50").id, "50")
    event = w.s.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).one()
    assert (event.action, event.actor_id, event.from_status, event.to_status) == (
        "route",
        cast.agent.id,
        "draft",
        "routed",
    )
    assert event.detail == {"office": "50"}  # no category key: the category did not change


@pytest.mark.parametrize("who", ["central_op", "central_action", "central_head", "agent50", "op50", "nobody"])
def test_only_a_central_agent_routes(w: World, cast: Cast, who: str) -> None:
    case = w.draft(None)
    before = snapshot(case)

    with pytest.raises(NotPermitted) as refused:
        wf.route_case(w.s, case, getattr(cast, who), w.office("50"), category=HazardGroup.ACCIDENT)

    assert_words(str(refused.value))
    assert snapshot(case) == before
    assert w.events(case) == []


def test_a_case_is_not_routed_to_the_central_office(w: World, cast: Cast) -> None:
    case = w.draft("50")
    before = snapshot(case)

    with pytest.raises(InvalidInput):
        wf.route_case(w.s, case, cast.agent, w.office(CENTRAL_OFFICE_CODE))

    assert snapshot(case) == before
    assert w.events(case) == []


def test_a_category_change_at_routing_is_recorded_in_the_event(w: World, cast: Cast) -> None:
    case = w.draft(None, category=HazardGroup.UNSPECIFIED)

    wf.route_case(w.s, case, cast.agent, w.office("5001"), category=HazardGroup.RIGHTS_VIOLATION)

    assert case.category == HazardGroup.RIGHTS_VIOLATION
    assert case.ivr_category == HazardGroup.UNSPECIFIED  # what the caller pressed is kept
    assert case.province_code == "50"  # a district office carries its province
    event = w.s.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).one()
    assert event.detail == {
        "office": "5001",
        "category": {"from": "unspecified", "to": "rights_violation"},
    }


def test_an_agent_may_route_again_while_routed_but_not_once_proposed(w: World, cast: Cast) -> None:
    case = w.draft("50")
    w.grant(cast.op57, "5701", Role.OPERATOR)  # a district with an SC-Operator to receive it
    wf.route_case(w.s, case, cast.agent, w.office("50"))
    wf.route_case(w.s, case, cast.agent, w.office("5701"))

    assert (case.status, case.office_id, case.province_code) == (S.ROUTED, w.office("5701").id, "57")
    assert [e[2:] for e in w.events(case)] == [("draft", "routed"), ("routed", "routed")]

    wf.summarise(w.s, case, cast.op57, "Bullying at a district school.", HazardGroup.VIOLENCE)
    wf.propose_forwarding(w.s, case, cast.op57, to_user=cast.op57)
    before = snapshot(case)

    with pytest.raises(IllegalMove):
        wf.route_case(w.s, case, cast.agent, w.office("50"), category=HazardGroup.ACCIDENT)

    assert snapshot(case) == before  # the refused routing moved nothing
    assert case.office_id == w.office("5701").id


# ---- SC-Operators summarise -------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["op50", "head50"])
def test_an_operator_of_the_office_summarises_and_selects_the_group(w: World, cast: Cast, who: str) -> None:
    case = w.case("50", summary=None, category=HazardGroup.UNSPECIFIED)
    actor = getattr(cast, who)

    wf.summarise(w.s, case, actor, "  A fight after school; one pupil hurt.  ", HazardGroup.VIOLENCE)

    assert (case.summary, case.category, case.status) == (
        "A fight after school; one pupil hurt.",
        HazardGroup.VIOLENCE,
        S.ROUTED,
    )
    event = w.s.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).one()
    assert (event.action, event.actor_id) == ("summarised", actor.id)
    assert event.detail == {"version": 1, "category": {"from": "unspecified", "to": "violence"}}


@pytest.mark.parametrize("who", ["op57", "act50", "admin50", "agent", "central_head", "op5001", "nobody"])
def test_nobody_else_summarises(w: World, cast: Cast, who: str) -> None:
    case = w.case("50", summary=None, category=HazardGroup.UNSPECIFIED)
    before = snapshot(case)

    with pytest.raises(NotPermitted) as refused:
        wf.summarise(w.s, case, getattr(cast, who), "A summary.", HazardGroup.VIOLENCE)

    assert_words(str(refused.value))
    assert snapshot(case) == before
    assert w.events(case) == []


def test_summary_must_have_words_and_the_case_must_be_at_an_office(w: World, cast: Cast) -> None:
    case = w.case("50", summary=None)
    with pytest.raises(InvalidInput):
        wf.summarise(w.s, case, cast.op50, "   ", HazardGroup.VIOLENCE)
    assert case.summary is None

    draft = w.draft("50")  # opened at the province, but not yet routed by an agent
    with pytest.raises(InvalidInput):
        wf.summarise(w.s, draft, cast.op50, "A summary.", HazardGroup.VIOLENCE)
    assert draft.summary is None
    assert w.events(case) == [] and w.events(draft) == []


def test_a_summary_is_required_before_proposing(w: World, cast: Cast) -> None:
    case = w.case("50", summary=None)

    with pytest.raises(InvalidInput):
        wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50)

    assert case.status == S.ROUTED
    assert w.count(ForwardingProposal) == 0
    assert w.events(case) == []

    wf.summarise(w.s, case, cast.op50, "Now summarised.", HazardGroup.VIOLENCE)
    wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50)
    assert case.status == S.PROPOSED


# ---- forwarding targets ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["act50", "op50", "head50"])
def test_forward_to_a_person_who_is_sc_action_of_the_office(w: World, cast: Cast, target: str) -> None:
    # An SC-Operator (and a head) is SC-Action of their office by position.
    case = w.case("50")
    to_user = getattr(cast, target)

    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_user=to_user, note="  urgent ")

    assert (proposal.to_user_id, proposal.to_committee_id, proposal.to_office_id) == (to_user.id, None, None)
    assert (proposal.office_id, proposal.proposed_by, proposal.status, proposal.note) == (
        w.office("50").id,
        cast.op50.id,
        "pending",
        "urgent",
    )
    assert case.status == S.PROPOSED


@pytest.mark.parametrize("target", ["act57", "act5001", "admin50", "agent", "central_action", "nobody"])
def test_forward_to_a_person_not_sc_action_of_the_office_is_refused(
    w: World, cast: Cast, target: str
) -> None:
    case = w.case("50")
    with pytest.raises(InvalidInput):
        wf.propose_forwarding(w.s, case, cast.op50, to_user=getattr(cast, target))
    assert case.status == S.ROUTED
    assert w.count(ForwardingProposal) == 0


def test_forward_to_a_committee_of_the_office_only(w: World, cast: Cast) -> None:
    case = w.case("50")
    foreign = w.committee("57", cast.act57)
    with pytest.raises(InvalidInput):
        wf.propose_forwarding(w.s, case, cast.op50, to_committee=foreign)
    assert case.status == S.ROUTED and w.count(ForwardingProposal) == 0

    own = w.committee("50", cast.act50, cast.op50)
    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_committee=own)
    assert (proposal.to_user_id, proposal.to_committee_id, proposal.to_office_id) == (None, own.id, None)
    assert case.status == S.PROPOSED


@pytest.mark.parametrize("target", ["5701", "57", "50", CENTRAL_OFFICE_CODE])
def test_a_province_forwards_only_to_its_own_districts(w: World, cast: Cast, target: str) -> None:
    case = w.case("50")
    with pytest.raises(InvalidInput):
        wf.propose_forwarding(w.s, case, cast.op50, to_office=w.office(target))
    assert case.status == S.ROUTED and w.count(ForwardingProposal) == 0

    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_office=w.office("5001"))
    assert proposal.to_office_id == w.office("5001").id
    assert case.status == S.PROPOSED


def test_a_district_office_does_not_forward_to_an_office(w: World, cast: Cast) -> None:
    case = w.case("5001")
    for target in ("5002", "5001", "50"):
        with pytest.raises(InvalidInput):
            wf.propose_forwarding(w.s, case, cast.op5001, to_office=w.office(target))
    assert case.status == S.ROUTED and w.count(ForwardingProposal) == 0


def test_exactly_one_target(w: World, cast: Cast) -> None:
    case = w.case("50")
    committee = w.committee("50", cast.act50)
    for targets in (
        {},
        {"to_user": cast.act50, "to_committee": committee},
        {"to_user": cast.act50, "to_office": w.office("5001")},
        {"to_committee": committee, "to_office": w.office("5001")},
        {"to_user": cast.act50, "to_committee": committee, "to_office": w.office("5001")},
    ):
        with pytest.raises(InvalidInput):
            wf.propose_forwarding(w.s, case, cast.op50, **targets)
    assert case.status == S.ROUTED and w.count(ForwardingProposal) == 0


@pytest.mark.parametrize("who", ["act50", "admin50", "op57", "op5001", "agent", "central_head"])
def test_only_an_operator_of_the_office_proposes(w: World, cast: Cast, who: str) -> None:
    case = w.case("50")
    with pytest.raises(NotPermitted):
        wf.propose_forwarding(w.s, case, getattr(cast, who), to_user=cast.act50)
    assert case.status == S.ROUTED and w.count(ForwardingProposal) == 0


# ---- no forwarding without a head's approval -----------------------------------------------------------


def test_nothing_is_assigned_until_a_head_approves(w: World, cast: Cast) -> None:
    case = w.case("50")

    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50)

    assert case.status == S.PROPOSED
    assert w.count(Assignment) == 0
    assert access.active_assignment(w.s, case) is None
    assert not access.may_reveal(w.s, cast.act50, case)  # proposed is not assigned
    with pytest.raises(IllegalMove):
        wf.acknowledge(w.s, case, cast.act50)

    wf.decide_proposal(w.s, proposal, cast.head50, approve=True)

    assert case.status == S.ASSIGNED
    assert (proposal.status, proposal.decided_by) == ("approved", cast.head50.id)
    assert proposal.decided_at is not None
    assignment = access.active_assignment(w.s, case)
    assert assignment is not None
    assert (assignment.user_id, assignment.committee_id, assignment.proposal_id) == (
        cast.act50.id,
        None,
        proposal.id,
    )
    assert w.count(Assignment) == 1


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_rejection_needs_a_reason(w: World, cast: Cast, reason: str | None) -> None:
    case = w.case("50")
    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50)
    events = w.events(case)

    with pytest.raises(InvalidInput):
        wf.decide_proposal(w.s, proposal, cast.head50, approve=False, reason=reason)

    # Still undecided: the head can decide it properly afterwards.
    assert (proposal.status, proposal.decided_by, proposal.decided_at, proposal.reason) == (
        "pending",
        None,
        None,
        None,
    )
    assert case.status == S.PROPOSED
    assert w.events(case) == events


def test_a_rejection_returns_the_case_to_the_office(w: World, cast: Cast) -> None:
    case = w.case("50")
    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50)

    wf.decide_proposal(w.s, proposal, cast.head50, approve=False, reason="  Send it to the committee.  ")

    assert case.status == S.ROUTED
    assert (proposal.status, proposal.reason, proposal.decided_by) == (
        "rejected",
        "Send it to the committee.",
        cast.head50.id,
    )
    assert w.count(Assignment) == 0
    event = w.s.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id.desc()))
    last = event.first()
    assert last is not None
    assert (last.action, last.actor_id, last.from_status, last.to_status) == (
        "reject",
        cast.head50.id,
        "proposed",
        "routed",
    )
    assert last.detail == {"proposal": proposal.id, "reason": "Send it to the committee."}

    # The office may propose again, and the first proposal stays rejected.
    committee = w.committee("50", cast.act50, cast.op50)
    second = wf.propose_forwarding(w.s, case, cast.op50, to_committee=committee)
    assert second.id != proposal.id and case.status == S.PROPOSED
    with pytest.raises(InvalidInput):
        wf.decide_proposal(w.s, proposal, cast.head50, approve=True)  # the old one stays decided
    assert proposal.status == "rejected"


def test_a_proposal_is_decided_once(w: World, cast: Cast) -> None:
    case = w.case("50")
    proposal = forwarded_to_user(w, cast, case)
    events = w.events(case)

    with pytest.raises(InvalidInput):
        wf.decide_proposal(w.s, proposal, cast.head50, approve=True)
    with pytest.raises(InvalidInput):
        wf.decide_proposal(w.s, proposal, cast.head50, approve=False, reason="changed my mind")

    assert (proposal.status, proposal.reason) == ("approved", None)
    assert case.status == S.ASSIGNED
    assert w.count(Assignment) == 1
    assert w.events(case) == events


# ---- no self-approval --------------------------------------------------------------------------------


def test_a_head_does_not_approve_their_own_proposal(w: World, cast: Cast) -> None:
    case = w.case("50")
    proposal = wf.propose_forwarding(w.s, case, cast.head50, to_user=cast.act50)

    for approve in (True, False):
        with pytest.raises(SelfApproval) as refused:
            wf.decide_proposal(w.s, proposal, cast.head50, approve=approve, reason="mine")
        assert isinstance(refused.value, NotPermitted)
        assert_words(str(refused.value))
    assert not wf.can_decide(w.s, cast.head50, proposal)
    assert (proposal.status, proposal.decided_by, case.status) == ("pending", None, S.PROPOSED)
    assert w.count(Assignment) == 0


def test_a_provinces_only_head_is_approved_by_a_head_of_the_central_office(w: World, cast: Cast) -> None:
    case = w.case("50")
    proposal = wf.propose_forwarding(w.s, case, cast.head50, to_user=cast.act50)
    assert wf.approvers_office_id(w.s, proposal) == w.office(CENTRAL_OFFICE_CODE).id

    for other in (cast.op50, cast.act50, cast.head57, cast.head5001, cast.central_op, cast.agent):
        assert not wf.can_decide(w.s, other, proposal)
        with pytest.raises(NotPermitted):
            wf.decide_proposal(w.s, proposal, other, approve=True)
    assert (proposal.status, case.status, w.count(Assignment)) == ("pending", S.PROPOSED, 0)

    assert wf.can_decide(w.s, cast.central_head, proposal)
    wf.decide_proposal(w.s, proposal, cast.central_head, approve=True)
    assert (proposal.status, proposal.decided_by, case.status) == (
        "approved",
        cast.central_head.id,
        S.ASSIGNED,
    )


def test_a_districts_only_head_is_approved_by_a_head_of_its_province(w: World, cast: Cast) -> None:
    case = w.case("5001")
    proposal = wf.propose_forwarding(w.s, case, cast.head5001, to_user=cast.act5001)
    assert wf.approvers_office_id(w.s, proposal) == w.office("50").id

    # Not the district's own operators, not another province, not the central office (not the parent).
    for other in (cast.op5001, cast.act5001, cast.head57, cast.central_head, cast.op50):
        assert not wf.can_decide(w.s, other, proposal)
        with pytest.raises(NotPermitted):
            wf.decide_proposal(w.s, proposal, other, approve=False, reason="no")
    assert (proposal.status, case.status) == ("pending", S.PROPOSED)

    wf.decide_proposal(w.s, proposal, cast.head50, approve=True)
    assert (proposal.decided_by, case.status) == (cast.head50.id, S.ASSIGNED)


def test_with_two_heads_the_other_head_approves_not_the_parent(w: World, cast: Cast) -> None:
    second_head = w.user("head50b", ("50", Role.HEAD))
    case = w.case("50")
    proposal = wf.propose_forwarding(w.s, case, cast.head50, to_user=cast.act50)
    assert wf.approvers_office_id(w.s, proposal) == w.office("50").id

    for other in (cast.central_head, cast.op50, cast.head57):
        assert not wf.can_decide(w.s, other, proposal)
        with pytest.raises(NotPermitted):
            wf.decide_proposal(w.s, proposal, other, approve=True)
    assert proposal.status == "pending"

    assert wf.can_decide(w.s, second_head, proposal)
    wf.decide_proposal(w.s, proposal, second_head, approve=True)
    assert (proposal.decided_by, case.status) == (second_head.id, S.ASSIGNED)


def test_an_operators_proposal_is_decided_by_the_offices_head(w: World, cast: Cast) -> None:
    case = w.case("50")
    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50)
    assert wf.approvers_office_id(w.s, proposal) == w.office("50").id
    assert wf.can_decide(w.s, cast.head50, proposal)
    assert not wf.can_decide(w.s, cast.central_head, proposal)
    assert not wf.can_decide(w.s, cast.op50, proposal)


def test_a_deactivated_second_head_does_not_block_the_parent(w: World, cast: Cast) -> None:
    # The proposer is the only head still working at the office: the parent's head decides.
    w.user("head50_retired", ("50", Role.HEAD), active=False)
    case = w.case("50")
    proposal = wf.propose_forwarding(w.s, case, cast.head50, to_user=cast.act50)

    assert wf.approvers_office_id(w.s, proposal) == w.office(CENTRAL_OFFICE_CODE).id
    wf.decide_proposal(w.s, proposal, cast.central_head, approve=True)
    assert case.status == S.ASSIGNED


# ---- forwarding to a district --------------------------------------------------------------------------


def test_a_case_forwarded_to_a_district_arrives_there_and_the_province_keeps_sight(
    w: World, cast: Cast
) -> None:
    case = w.case("50")
    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_office=w.office("5001"))
    assert case.office_id == w.office("50").id  # nothing moves before approval

    wf.decide_proposal(w.s, proposal, cast.head50, approve=True)

    assert (case.status, case.office_id, case.forwarded_from_office_id) == (
        S.ROUTED,
        w.office("5001").id,
        w.office("50").id,
    )
    assert w.count(Assignment) == 0
    assert w.events(case)[-1] == ("approve", cast.head50.id, "proposed", "routed")
    for who in ("op50", "head50", "act50", "op5001", "head5001", "act5001", "central_action"):
        assert access.can_view(w.s, getattr(cast, who), case), who
    for who in ("op57", "head57", "op5002", "nobody"):
        assert not access.can_view(w.s, getattr(cast, who), case), who

    # The district works it now: its operators summarise and propose, its head approves.
    with pytest.raises(NotPermitted):
        wf.summarise(w.s, case, cast.op50, "The province's view.", HazardGroup.VIOLENCE)
    wf.summarise(w.s, case, cast.op5001, "Checked at the school.", HazardGroup.VIOLENCE)
    second = wf.propose_forwarding(w.s, case, cast.op5001, to_user=cast.act5001)
    assert second.office_id == w.office("5001").id
    wf.decide_proposal(w.s, second, cast.head5001, approve=True)
    assert case.status == S.ASSIGNED
    assert access.can_view(w.s, cast.op50, case)


def test_rerouting_a_forwarded_case_ends_the_old_provinces_sight(w: World, cast: Cast) -> None:
    case = w.case("50")
    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_office=w.office("5001"))
    wf.decide_proposal(w.s, proposal, cast.head50, approve=True)
    assert case.status == S.ROUTED

    wf.route_case(w.s, case, cast.agent, w.office("57"))

    assert case.office_id == w.office("57").id
    assert case.forwarded_from_office_id is None
    assert access.can_view(w.s, cast.op57, case)
    assert not access.can_view(w.s, cast.op50, case)


# ---- committees acknowledge member by member ---------------------------------------------------------


def test_every_committee_member_acknowledges_for_themselves(w: World, cast: Cast) -> None:
    member_elsewhere = w.user("act51", ("51", Role.ACTION))  # SC-Action of another office
    committee = w.committee("50", cast.act50, cast.op50, member_elsewhere)
    case = w.case("50")
    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_committee=committee)
    wf.decide_proposal(w.s, proposal, cast.head50, approve=True)
    everyone = {cast.act50.id, cast.op50.id, member_elsewhere.id}
    assert case.status == S.ASSIGNED
    assert wf.pending_acknowledgements(w.s, case) == everyone

    for outsider in (cast.head50, cast.act57, cast.nobody):  # not members, whatever their roles
        with pytest.raises(NotPermitted):
            wf.acknowledge(w.s, case, outsider)
    assert case.status == S.ASSIGNED and w.count(Acknowledgement) == 0

    wf.acknowledge(w.s, case, cast.act50)
    assert case.status == S.IN_ACTION
    assert wf.pending_acknowledgements(w.s, case) == everyone - {cast.act50.id}

    with pytest.raises(InvalidInput):
        wf.acknowledge(w.s, case, cast.act50)  # once per member
    assert wf.pending_acknowledgements(w.s, case) == everyone - {cast.act50.id}

    wf.acknowledge(w.s, case, cast.op50)
    assert wf.pending_acknowledgements(w.s, case) == {member_elsewhere.id}

    # Working the case needs the worker's own acknowledgement, not a colleague's.
    with pytest.raises(InvalidInput):
        wf.record_action(w.s, case, member_elsewhere, "Called the school.")
    with pytest.raises(InvalidInput):
        wf.resolve(w.s, case, member_elsewhere, "Settled.")
    assert w.count(CaseAction) == 0 and case.status == S.IN_ACTION

    wf.acknowledge(w.s, case, member_elsewhere)
    assert wf.pending_acknowledgements(w.s, case) == set()
    wf.record_action(w.s, case, member_elsewhere, "Called the school.")
    assert w.count(CaseAction, case_id=case.id, user_id=member_elsewhere.id) == 1

    for outsider in (cast.head50, cast.nobody):
        with pytest.raises(NotPermitted):
            wf.record_action(w.s, case, outsider, "Something.")
        with pytest.raises(NotPermitted):
            wf.resolve(w.s, case, outsider, "Something.")

    with pytest.raises(InvalidInput):
        wf.record_action(w.s, case, cast.act50, "   ")
    for empty in ("", "  \n "):
        with pytest.raises(InvalidInput):
            wf.resolve(w.s, case, cast.act50, empty)
    assert (case.status, case.outcome) == (S.IN_ACTION, None)

    wf.resolve(w.s, case, cast.act50, "  The pupils were reconciled.  ")
    assert (case.status, case.outcome) == (S.RESOLVED, "The pupils were reconciled.")
    acks = [e for e in w.events(case) if e[0] == "acknowledge"]
    assert acks == [
        ("acknowledge", cast.act50.id, "assigned", "in_action"),
        ("acknowledge", cast.op50.id, "in_action", "in_action"),
        ("acknowledge", member_elsewhere.id, "in_action", "in_action"),
    ]


def test_a_single_assignee_acknowledges_before_working(w: World, cast: Cast) -> None:
    case = w.case("50")
    forwarded_to_user(w, cast, case)
    assert wf.pending_acknowledgements(w.s, case) == {cast.act50.id}
    with pytest.raises(NotPermitted):
        wf.acknowledge(w.s, case, cast.op50)  # an operator of the office is not the assignee

    with pytest.raises(IllegalMove):
        wf.record_action(w.s, case, cast.act50, "Too early.")
    with pytest.raises(IllegalMove):
        wf.resolve(w.s, case, cast.act50, "Too early.")

    wf.acknowledge(w.s, case, cast.act50)
    assert wf.pending_acknowledgements(w.s, case) == set()
    with pytest.raises(InvalidInput):
        wf.acknowledge(w.s, case, cast.act50)


# ---- visibility --------------------------------------------------------------------------------------


def test_who_sees_which_case(w: World, cast: Cast) -> None:
    at50 = w.case("50")
    forwarded = w.case("5001", forwarded_from="50")
    routed_to_district = w.case("5002")  # routed there directly by an agent: the province was not involved
    at57 = w.case("57")
    draft = w.case(CENTRAL_OFFICE_CODE, S.DRAFT, summary=None)
    # An SC-Action user of Lamphun sits on Chiang Rai's committee, to which at57 is assigned.
    act51 = w.user("act51", ("51", Role.ACTION))
    committee = w.committee("57", cast.act57, act51)
    proposal = wf.propose_forwarding(w.s, at57, cast.op57, to_committee=committee)
    wf.decide_proposal(w.s, proposal, cast.head57, approve=True)
    # A Chiang Rai SC-Action user sits on Chiang Mai's committee, to which `via_committee` is assigned.
    via_committee = w.case("50")
    proposal = wf.propose_forwarding(
        w.s, via_committee, cast.op50, to_committee=w.committee("50", cast.act57)
    )
    wf.decide_proposal(w.s, proposal, cast.head50, approve=True)
    inactive = w.user("gone50", ("50", Role.OPERATOR), active=False)
    inactive_central = w.user("gone_central", (CENTRAL_OFFICE_CODE, Role.AGENT), active=False)

    everything = [at50, forwarded, routed_to_district, at57, draft, via_committee]
    expected: dict[str, set[int]] = {
        "op50": {at50.id, forwarded.id, via_committee.id},
        "head50": {at50.id, forwarded.id, via_committee.id},
        "act50": {at50.id, forwarded.id, via_committee.id},
        "admin50": {at50.id, forwarded.id, via_committee.id},
        "op5001": {forwarded.id},
        "op5002": {routed_to_district.id},
        "op57": {at57.id},
        "act57": {at57.id, via_committee.id},
        "agent": {c.id for c in everything},
        "central_action": {c.id for c in everything},
        "nobody": set(),
    }
    ids = [c.id for c in everything]
    for who, cases in expected.items():
        user = getattr(cast, who)
        seen = set(w.s.scalars(select(Case.id).where(Case.id.in_(ids), access.visibility(w.s, user))))
        assert seen == cases, who
        assert {c.id for c in everything if access.can_view(w.s, user, c)} == cases, who
    seen51 = set(w.s.scalars(select(Case.id).where(Case.id.in_(ids), access.visibility(w.s, act51))))
    assert seen51 == {at57.id}
    for gone in (inactive, inactive_central):
        assert not any(access.can_view(w.s, gone, c) for c in everything)
        assert w.s.scalars(select(Case.id).where(access.visibility(w.s, gone))).all() == []


# ---- revealing the reporter's number -----------------------------------------------------------------


def test_the_offices_operators_and_the_assignee_reveal_the_number_with_an_audit_row(
    w: World, cast: Cast
) -> None:
    act51 = w.user("act51", ("51", Role.ACTION))
    case = w.case("50", number=NUMBER)
    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_committee=w.committee("50", act51))
    wf.decide_proposal(w.s, proposal, cast.head50, approve=True)

    reveals = [
        (cast.op50, "to call the reporter back"),
        (cast.head50, "  to confirm the school  "),
        (act51, "to arrange a visit"),
    ]
    for user, reason in reveals:
        assert access.may_reveal(w.s, user, case)
        assert wf.reveal_number(w.s, case, user, reason, cipher=w.cipher) == NUMBER

    rows = w.audits(case)
    assert [(a.action, a.user_id, a.reason) for a in rows] == [
        ("reveal_number", user.id, reason.strip()) for user, reason in reveals
    ]
    assert all(a.detail == {"reference": case.reference} for a in rows)
    assert all(NUMBER not in str(a.detail) for a in rows)


@pytest.mark.parametrize(
    "who", ["act50", "admin50", "op57", "head57", "op5001", "agent", "central_head", "nobody"]
)
def test_anyone_else_is_refused_and_the_attempt_is_audited(w: World, cast: Cast, who: str) -> None:
    case = w.case("50", number=NUMBER)
    user = getattr(cast, who)
    assert not access.may_reveal(w.s, user, case)

    with pytest.raises(NotPermitted) as refused:
        wf.reveal_number(w.s, case, user, "curious", cipher=w.cipher)

    assert NUMBER not in str(refused.value)
    assert_words(str(refused.value))
    rows = w.audits(case)
    assert [(a.action, a.user_id, a.reason) for a in rows] == [("reveal_number_refused", user.id, "curious")]


def test_a_reveal_needs_a_reason_and_a_number(w: World, cast: Cast) -> None:
    case = w.case("50", number=NUMBER)
    for reason in ("", "   "):
        with pytest.raises(InvalidInput):
            wf.reveal_number(w.s, case, cast.op50, reason, cipher=w.cipher)
    # Nothing was revealed, and each refusal is written down with why (issue 12: refusals are audited).
    rows = w.audits(case)
    assert [(a.action, a.user_id, a.detail.get("why"), a.reason) for a in rows] == [
        ("reveal_number_refused", cast.op50.id, "no_reason", None)
    ] * 2

    anonymous = w.draft("50", callback=CallbackChoice.NONE)
    assert anonymous.anonymous and anonymous.callback_number_enc is None
    wf.route_case(w.s, anonymous, cast.agent, w.office("50"))
    with pytest.raises(InvalidInput):
        wf.reveal_number(w.s, anonymous, cast.op50, "to call back", cipher=w.cipher)
    refused = w.audits(anonymous)
    assert [(a.action, a.detail.get("why")) for a in refused] == [("reveal_number_refused", "anonymous")]


def test_a_draft_case_keeps_the_callers_number_for_its_operators(w: World, cast: Cast) -> None:
    case = w.draft("50", callback=CallbackChoice.CALLER)
    wf.route_case(w.s, case, cast.agent, w.office("50"))
    assert wf.reveal_number(w.s, case, cast.op50, "call back", cipher=w.cipher) == CALLER


# ---- transcript corrections ----------------------------------------------------------------------------


def recording_for(w: World, case: Case, text: str = "machine words") -> tuple[Recording, Transcript]:
    recording = Recording(
        recording_sid="RE" + uuid.uuid4().hex,
        call_sid="CA" + uuid.uuid4().hex,
        case_id=case.id,
        media_url="https://api.twilio.com/recording",
        language="th",
    )
    w.s.add(recording)
    w.s.flush()
    transcript = Transcript(recording_id=recording.id, status=TranscriptStatus.DONE, language="th", text=text)
    w.s.add(transcript)
    w.s.flush()
    return recording, transcript


def test_corrections_are_kept_beside_the_machine_transcript(w: World, cast: Cast) -> None:
    case = w.draft(None)
    recording, transcript = recording_for(w, case, "ครู ตี นักเรียน")

    with pytest.raises(NotPermitted):
        wf.correct_transcript(w.s, case, cast.op50, recording, "ครูตีนักเรียน")  # a draft is the agents'
    first = wf.correct_transcript(w.s, case, cast.agent, recording, "  ครูตีนักเรียน  ")
    wf.route_case(w.s, case, cast.agent, w.office("50"))
    with pytest.raises(NotPermitted):
        wf.correct_transcript(w.s, case, cast.op57, recording, "ผิดสำนักงาน")
    second = wf.correct_transcript(w.s, case, cast.op50, recording, "ครูตีนักเรียนที่โรงเรียน")

    w.s.expire_all()
    assert w.s.get(Transcript, transcript.id).text == "ครู ตี นักเรียน"  # type: ignore[union-attr]
    corrections = w.s.scalars(select(TranscriptCorrection).order_by(TranscriptCorrection.id)).all()
    assert [(c.id, c.user_id, c.text) for c in corrections] == [
        (first.id, cast.agent.id, "ครูตีนักเรียน"),
        (second.id, cast.op50.id, "ครูตีนักเรียนที่โรงเรียน"),
    ]
    assert [e[:2] for e in w.events(case)] == [
        ("transcript_corrected", cast.agent.id),
        ("route", cast.agent.id),
        ("transcript_corrected", cast.op50.id),
    ]

    with pytest.raises(InvalidInput):
        wf.correct_transcript(w.s, case, cast.op50, recording, "   ")
    other_case = w.case("50")
    other_recording, _ = recording_for(w, other_case)
    with pytest.raises(InvalidInput):
        wf.correct_transcript(w.s, case, cast.op50, other_recording, "not this case's recording")
    assert w.count(TranscriptCorrection) == 2


def test_no_corrections_once_the_case_was_forwarded(w: World, cast: Cast) -> None:
    case = w.case("50")
    recording, transcript = recording_for(w, case)
    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50)
    with pytest.raises(InvalidInput):
        wf.correct_transcript(w.s, case, cast.op50, recording, "too late")
    wf.decide_proposal(w.s, proposal, cast.head50, approve=True)
    for who in (cast.op50, cast.act50, cast.head50):
        with pytest.raises(InvalidInput):
            wf.correct_transcript(w.s, case, who, recording, "too late")
    assert w.count(TranscriptCorrection) == 0
    assert transcript.text == "machine words"
    assert not any(e[0] == "transcript_corrected" for e in w.events(case))


# ---- one event per move ----------------------------------------------------------------------------------


def test_a_complete_run_writes_one_event_per_move(w: World, cast: Cast) -> None:
    case = w.draft(None, category=HazardGroup.UNSPECIFIED)
    steps: list[tuple[Callable[[], Any], tuple[str, int, str | None, str | None]]] = [
        (
            lambda: wf.route_case(w.s, case, cast.agent, w.office("50"), category=HazardGroup.ACCIDENT),
            ("route", cast.agent.id, "draft", "routed"),
        ),
        (
            lambda: wf.summarise(w.s, case, cast.op50, "A pupil fell from the stairs.", HazardGroup.ACCIDENT),
            ("summarised", cast.op50.id, None, None),
        ),
        (
            lambda: wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50),
            ("propose", cast.op50.id, "routed", "proposed"),
        ),
        (
            lambda: wf.decide_proposal(
                w.s,
                w.s.scalars(select(ForwardingProposal).where(ForwardingProposal.case_id == case.id)).one(),
                cast.head50,
                approve=True,
            ),
            ("approve", cast.head50.id, "proposed", "assigned"),
        ),
        (
            lambda: wf.acknowledge(w.s, case, cast.act50),
            ("acknowledge", cast.act50.id, "assigned", "in_action"),
        ),
        (
            lambda: wf.record_action(w.s, case, cast.act50, "Had the stair rail fixed."),
            ("record_action", cast.act50.id, "in_action", "in_action"),
        ),
        (
            lambda: wf.resolve(w.s, case, cast.act50, "Rail fixed; pupil recovered."),
            ("resolve", cast.act50.id, "in_action", "resolved"),
        ),
    ]
    for n, (step, expected) in enumerate(steps, start=1):
        step()
        events = w.events(case)
        assert len(events) == n, expected
        assert events[-1] == expected
        if expected[3] is not None:
            assert case.status == expected[3]

    w.s.expire_all()
    rows = w.s.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)).all()
    assert all(r.at is not None for r in rows)
    assert [r.at for r in rows] == sorted(r.at for r in rows)
    assert rows[0].detail == {"office": "50", "category": {"from": "unspecified", "to": "accident"}}
    assert rows[-1].detail == {"outcome": "Rail fixed; pupil recovered."}
    moved = [r for r in rows if r.action in set(Move)]
    assert all(r.from_status and r.to_status for r in moved)
    assert all((S(r.from_status), Move(r.action)) in TRANSITIONS for r in moved)


# ---- offices short of SC-Operators ---------------------------------------------------------------------


def test_offices_with_fewer_than_two_operators_are_flagged(w: World, cast: Cast) -> None:
    # The cast gives: 50 one head + one operator; 57 one head + one operator; 5001 head + operator;
    # 5002 one operator; central one head + one operator; 51 and 5701 nobody.
    codes = ["50", "57", "5001", "5002", "51", "5701", CENTRAL_OFFICE_CODE, "52", "53", "54"]
    # 52: one user holding both operator and head counts once; 53: an operator, SC-Action, an agent and
    # an admin; 54: two operators, one of them deactivated.
    both = w.user("both52", ("52", Role.OPERATOR), ("52", Role.HEAD))
    assert both.id
    w.user("op53", ("53", Role.OPERATOR))
    w.user("act53", ("53", Role.ACTION))
    w.user("agent53", ("53", Role.AGENT))
    w.user("admin53", ("53", Role.ADMIN))
    w.user("op54", ("54", Role.OPERATOR))
    w.user("gone54", ("54", Role.OPERATOR), active=False)
    ids = [w.office(c).id for c in codes]

    flagged = office_staff.offices_needing_operators(w.s, ids)

    expected = ["5002", "51", "5701", "52", "53", "54"]
    assert flagged == [w.office(c).id for c in codes if c in expected]  # in the order asked

    w.grant(cast.op5002, "5002", Role.HEAD)  # same person again: still one
    w.user("op5002b", ("5002", Role.OPERATOR))
    assert w.office("5002").id not in office_staff.offices_needing_operators(w.s, ids)
    assert office_staff.offices_needing_operators(w.s, []) == []
