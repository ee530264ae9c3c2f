"""Withdraw, reassign and reopen (issue 14, item 6): who may, in which state, with which reason, and what
each leaves behind (the case event, the audit row, the alerts). Driven on cases.workflow_changes directly,
with the offices, staff and cases of test_workflow (Chiang Mai 50 and its district 5001, Chiang Rai 57)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cases import workflow as wf
from cases import workflow_changes as changes
from cases.access import active_assignment
from cases.models import (
    Acknowledgement,
    Assignment,
    Case,
    CaseEvent,
    Channel,
    ForwardingProposal,
    Notification,
)
from cases.staff import Role, User
from cases.workflow import IllegalMove, InvalidInput, NotPermitted
from tests.integration import test_workflow as base
from tests.integration.test_workflow import Cast, S, World, assert_words, forwarded_to_user

# The fixtures of test_workflow: the offices' staff (Cast) and the World that builds cases.
session, w, cast = base.session, base.w, base.cast


def alerted(w: World, case: Case) -> dict[str, set[str]]:
    """Who was alerted on the console about the case, by kind (usernames)."""
    out: dict[str, set[str]] = {}
    rows = w.s.execute(
        select(Notification.kind, Notification.user_id).where(
            Notification.case_id == case.id, Notification.channel == Channel.CONSOLE
        )
    )
    for kind, user_id in rows:
        user = w.s.get(User, user_id)
        assert user is not None
        out.setdefault(kind, set()).add(user.username)
    return out


def last_event(w: World, case: Case) -> CaseEvent:
    event = w.s.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id.desc())
    ).first()
    assert event is not None
    return event


def in_action(w: World, cast: Cast) -> Case:
    """A case at 50 assigned to act50, who acknowledged it."""
    case = w.case("50")
    forwarded_to_user(w, cast, case)
    wf.acknowledge(w.s, case, cast.act50)
    return case


def resolved(w: World, cast: Cast) -> Case:
    case = in_action(w, cast)
    wf.resolve(w.s, case, cast.act50, "The teacher was moved.")
    return case


# ---- withdraw ---------------------------------------------------------------------------------------------


def test_the_proposer_withdraws_a_pending_proposal_and_the_case_is_at_its_office_again(
    w: World, cast: Cast
) -> None:
    case = w.case("50")
    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50)
    before = alerted(w, case)

    changes.withdraw_proposal(w.s, proposal, cast.op50)

    assert (case.status, proposal.status, proposal.decided_by) == (S.ROUTED, "withdrawn", cast.op50.id)
    assert w.events(case)[-1] == ("withdraw", cast.op50.id, "proposed", "routed")
    assert [a.action for a in w.audits(case)] == ["proposal_withdrawn"]
    assert alerted(w, case) == before  # nobody is told; the heads' list drops it
    assert wf.proposals_awaiting(w.s, cast.head50) == []
    assert changes.my_pending_proposals(w.s, cast.op50) == []
    # The office may propose again.
    again = wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50)
    assert changes.my_pending_proposals(w.s, cast.op50) == [again]


@pytest.mark.parametrize("who", ["head50", "op57", "act50"])
def test_only_the_proposer_may_withdraw(w: World, cast: Cast, who: str) -> None:
    case = w.case("50")
    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50)
    with pytest.raises(NotPermitted) as refused:
        changes.withdraw_proposal(w.s, proposal, getattr(cast, who))
    assert_words(str(refused.value))
    assert (case.status, proposal.status) == (S.PROPOSED, "pending")
    assert w.events(case)[-1][0] == "propose"


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_decided_proposal_cannot_be_withdrawn(w: World, cast: Cast, decision: str) -> None:
    case = w.case("50")
    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50)
    wf.decide_proposal(w.s, proposal, cast.head50, approve=decision == "approve", reason="not now")
    status = case.status
    with pytest.raises(InvalidInput):
        changes.withdraw_proposal(w.s, proposal, cast.op50)
    assert case.status == status and proposal.status != "withdrawn"


def test_a_head_sees_their_own_pending_proposals_and_not_those_they_decide(w: World, cast: Cast) -> None:
    mine = wf.propose_forwarding(w.s, w.case("50"), cast.head50, to_user=cast.act50)
    theirs = wf.propose_forwarding(w.s, w.case("50"), cast.op50, to_user=cast.act50)
    assert changes.my_pending_proposals(w.s, cast.head50) == [mine]
    assert wf.proposals_awaiting(w.s, cast.head50) == [theirs]


# ---- reassign ---------------------------------------------------------------------------------------------


def test_a_head_reassigns_a_case_being_worked_to_a_committee_with_a_reason(w: World, cast: Cast) -> None:
    case = in_action(w, cast)
    old = active_assignment(w.s, case)
    assert old is not None
    committee = w.committee("50", cast.op50, w.user("act50b", ("50", Role.ACTION)))

    new = changes.reassign(w.s, case, cast.head50, "  act50 is on leave  ", to_committee=committee)

    assert case.status == S.ASSIGNED  # the new assignees acknowledge before they work
    assert (old.active, new.active, new.committee_id, new.user_id) == (False, True, committee.id, None)
    assert new.proposal_id == old.proposal_id
    assert w.events(case)[-1] == ("reassign", cast.head50.id, "in_action", "assigned")
    detail = last_event(w, case).detail
    assert detail["reason"] == "act50 is on leave"
    assert (detail["from"], detail["to"]) == ({"user": cast.act50.id}, {"committee": committee.id})
    audit = w.audits(case)[-1]
    assert (audit.action, audit.user_id, audit.reason) == (
        "case_reassigned",
        cast.head50.id,
        "act50 is on leave",
    )
    assert alerted(w, case)["committee_assigned"] == {"op50", "act50b"}
    # A committee member acknowledges and works it; act50 no longer may.
    wf.acknowledge(w.s, case, cast.op50)
    assert case.status == S.IN_ACTION
    wf.record_action(w.s, case, cast.op50, "Visited.")
    with pytest.raises(NotPermitted):
        wf.record_action(w.s, case, cast.act50, "Visited too.")


def test_a_head_of_the_province_reassigns_a_district_case_and_the_person_is_alerted(
    w: World, cast: Cast
) -> None:
    case = w.case("5001")
    proposal = wf.propose_forwarding(w.s, case, cast.op5001, to_user=cast.act5001)
    wf.decide_proposal(w.s, proposal, cast.head5001, approve=True)

    changes.reassign(w.s, case, cast.head50, "closer to the school", to_user=cast.op5001)

    assignment = active_assignment(w.s, case)
    assert assignment is not None and assignment.user_id == cast.op5001.id
    assert "op5001" in alerted(w, case)["case_assigned"]
    assert "head50" not in alerted(w, case).get("case_assigned", set())


@pytest.mark.parametrize("who", ["op50", "act50", "head57", "head5001", "agent"])
def test_only_a_head_of_the_office_or_above_reassigns(w: World, cast: Cast, who: str) -> None:
    case = in_action(w, cast)
    events = w.events(case)
    with pytest.raises(NotPermitted) as refused:
        changes.reassign(w.s, case, getattr(cast, who), "reason", to_user=cast.op50)
    assert_words(str(refused.value))
    assert w.events(case) == events and case.status == S.IN_ACTION


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_reassignment_needs_a_reason(w: World, cast: Cast, reason: str | None) -> None:
    case = in_action(w, cast)
    with pytest.raises(InvalidInput):
        changes.reassign(w.s, case, cast.head50, reason, to_user=cast.op50)
    assert w.count(Assignment, case_id=case.id) == 1 and case.status == S.IN_ACTION


def test_a_reassignment_goes_to_sc_action_of_the_office_and_somewhere_new(w: World, cast: Cast) -> None:
    case = in_action(w, cast)
    for target in (cast.act57, cast.act50):  # another office's SC-Action; the same person again
        with pytest.raises(InvalidInput):
            changes.reassign(w.s, case, cast.head50, "reason", to_user=target)
    with pytest.raises(InvalidInput):
        changes.reassign(w.s, case, cast.head50, "reason", to_committee=w.committee("57", cast.act57))
    with pytest.raises(InvalidInput):
        changes.reassign(w.s, case, cast.head50, "reason")
    assert w.count(Assignment, case_id=case.id) == 1


@pytest.mark.parametrize("status", [S.ROUTED, S.PROPOSED, S.RESOLVED])
def test_a_case_not_assigned_cannot_be_reassigned(w: World, cast: Cast, status: S) -> None:
    case = w.case("50", status)
    with pytest.raises(IllegalMove):
        changes.reassign(w.s, case, cast.head50, "reason", to_user=cast.op50)
    assert not changes.may_reassign(w.s, cast.head50, case)


# ---- reopen -----------------------------------------------------------------------------------------------


def test_a_head_reopens_a_resolved_case_for_its_sc_action_staff(w: World, cast: Cast) -> None:
    case = resolved(w, cast)
    assert changes.may_reopen(w.s, cast.head50, case)

    changes.reopen(w.s, case, cast.head50, "The parents called: it goes on.")

    assert (case.status, case.outcome) == (S.IN_ACTION, None)
    assert w.events(case)[-1] == ("reopen", cast.head50.id, "resolved", "in_action")
    detail = last_event(w, case).detail
    assert detail == {"reason": "The parents called: it goes on.", "outcome": "The teacher was moved."}
    audit = w.audits(case)[-1]
    assert (audit.action, audit.reason) == ("case_reopened", "The parents called: it goes on.")
    # The office's SC-Operators and heads (but the head who reopened) and the assignee hear of it.
    assert alerted(w, case)["case_reopened"] == {"op50", "act50"}
    # act50 already acknowledged: works on it and resolves again at once.
    wf.record_action(w.s, case, cast.act50, "Met the parents.")
    wf.resolve(w.s, case, cast.act50, "Settled with the parents.")
    assert case.status == S.RESOLVED
    assert w.count(Acknowledgement) == 1


@pytest.mark.parametrize("who", ["op50", "act50", "head57", "nobody"])
def test_only_a_head_of_the_office_or_above_reopens(w: World, cast: Cast, who: str) -> None:
    case = resolved(w, cast)
    with pytest.raises(NotPermitted):
        changes.reopen(w.s, case, getattr(cast, who), "reason")
    assert (case.status, case.outcome) == (S.RESOLVED, "The teacher was moved.")
    assert "case_reopened" not in alerted(w, case)


def test_a_central_head_may_reopen_and_an_empty_reason_is_refused(w: World, cast: Cast) -> None:
    case = resolved(w, cast)
    with pytest.raises(InvalidInput) as refused:
        changes.reopen(w.s, case, cast.head50, "  ")
    assert_words(str(refused.value))
    assert case.status == S.RESOLVED
    changes.reopen(w.s, case, cast.central_head, "Ministry review.")
    assert case.status == S.IN_ACTION


@pytest.mark.parametrize("status", [S.ROUTED, S.ASSIGNED, S.IN_ACTION])
def test_only_a_resolved_case_is_reopened(w: World, cast: Cast, status: S) -> None:
    case = w.case("50", status)
    with pytest.raises(IllegalMove):
        changes.reopen(w.s, case, cast.head50, "reason")
    assert not changes.may_reopen(w.s, cast.head50, case)


def test_withdrawn_proposals_stay_on_record(w: World, cast: Cast) -> None:
    case = w.case("50")
    proposal = wf.propose_forwarding(w.s, case, cast.op50, to_user=cast.act50)
    changes.withdraw_proposal(w.s, proposal, cast.op50)
    assert w.count(ForwardingProposal, case_id=case.id, status="withdrawn") == 1
