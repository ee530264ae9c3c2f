"""No case left alone (issue 14, item 3): routing and forwarding need an SC-Operator at the office, a
reminder nobody can hear goes up at once, and a case is resolved only once its callback is closed.

Driven on the seeded console staff (tests.support.seed: SC-Operators at Chiang Mai 50 and its district
Mueang 5001, none at Chom Thong 5002 or at Lamphun 51) with the callbacks fixture of test_callbacks.
"""

# The callbacks tests' fixture is imported and used as the test argument of the same name.
# ruff: noqa: F811

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import get_database
from cases import coverage, workflow
from cases.coverage import NoOperatorThere
from cases.models import Callback, CallbackState, Case, CaseEvent, CaseStatus, HazardGroup, Office, Reminder
from console.base import console_clock
from tests.integration.test_callbacks import Hotline, bkk, hotline, signed_in  # noqa: F401
from tests.integration.test_console import flashes, post, text


def office(s: Session, code: str) -> Office:
    found = s.scalar(select(Office).where(Office.code == code))
    assert found is not None
    return found


def events(s: Session, case_id: int, action: str) -> list[CaseEvent]:
    return list(s.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.action == action)))


def deactivate(hotline: Hotline, username: str) -> None:
    with get_database(hotline.app).session() as s:
        hotline.user(s, username).active = False


# ---- routing ---------------------------------------------------------------------------------------------


def test_routing_to_a_district_without_an_operator_is_refused_with_its_province_offered(
    hotline: Hotline,
) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    with get_database(hotline.app).session() as s:
        case, agent = s.get(Case, case_id), hotline.user(s, "agent")
        assert case is not None
        with pytest.raises(NoOperatorThere) as refused:
            workflow.route_case(s, case, agent, office(s, "5002"))
        assert refused.value.offered is not None and refused.value.offered.code == "50"
        assert "ONIE Chom Thong District has no SC-Operator" in str(refused.value)
        assert (case.status, case.office_id) == (CaseStatus.DRAFT, office(s, "50").id)  # untouched
        assert events(s, case_id, "route") == []
        # The offered office takes it.
        assert workflow.route_case(s, case, agent, refused.value.offered).code == "50"
        assert case.status == CaseStatus.ROUTED


def test_an_inactive_operator_does_not_count_and_with_nobody_above_the_case_stays(hotline: Hotline) -> None:
    deactivate(hotline, "op5001")
    case_id = hotline.open_case(at=bkk(25, 10))
    with get_database(hotline.app).session() as s:
        case, agent = s.get(Case, case_id), hotline.user(s, "agent")
        assert case is not None
        with pytest.raises(NoOperatorThere) as to_district:
            workflow.route_case(s, case, agent, office(s, "5001"))
        assert to_district.value.offered is not None and to_district.value.offered.code == "50"
        # Lamphun has nobody, and above it is only the centre: nothing is offered, the case stays a draft.
        with pytest.raises(NoOperatorThere) as to_province:
            workflow.route_case(s, case, agent, office(s, "51"), without_operator=coverage.PARENT)
        assert to_province.value.offered is None
        assert "stays with the call centre" in str(to_province.value)
        assert case.status == CaseStatus.DRAFT


def test_with_the_parent_setting_the_case_goes_to_the_office_above_and_says_so(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    with get_database(hotline.app).session() as s:
        case, agent = s.get(Case, case_id), hotline.user(s, "agent")
        assert case is not None
        sent = workflow.route_case(s, case, agent, office(s, "5002"), without_operator=coverage.PARENT)
        assert sent.code == "50" and case.office_id == sent.id and case.status == CaseStatus.ROUTED
        (routed,) = events(s, case_id, "route")
        assert routed.detail == {"office": "50", "no_operator_at": "5002"}
    assert hotline.callback(case_id).office_id == hotline.offices["50"]  # the callback followed


def test_the_console_offers_the_office_above_and_the_setting_sends_it_there(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    console_clock.install(hotline.app, lambda: bkk(25, 10, 5))
    agent = signed_in(hotline, "agent")
    response = post(agent, f"/console/cases/{case_id}/route", province="50", district="5002")
    assert response.status_code == 302
    assert response.location.endswith(f"/console/cases/{case_id}?offer={hotline.offices['50']}#routing")
    assert flashes(agent) == [
        ("error", "กศน. อำเภอจอมทอง ไม่มี SC-Operator ที่จะรับเรื่อง ส่งเรื่องไปที่สำนักงาน กศน. จังหวัดเชียงใหม่แทนหรือไม่")
    ]
    page = text(agent.get(response.location))
    assert 'id="route-offer"' in page and "ส่งไปที่สำนักงาน กศน. จังหวัดเชียงใหม่แทน" in page
    assert 'name="province" value="50"' in page
    with get_database(hotline.app).session() as s:
        assert s.get(Case, case_id).status == CaseStatus.DRAFT  # type: ignore[union-attr]

    cfg = hotline.app.config["HOTLINE"]
    hotline.app.config["HOTLINE"] = cfg.with_overrides(route_without_operator=coverage.PARENT)
    try:
        post(agent, f"/console/cases/{case_id}/route", province="50", district="5002")
    finally:
        hotline.app.config["HOTLINE"] = cfg
    assert flashes(agent) == [
        ("warning", "กศน. อำเภอจอมทอง ไม่มี SC-Operator จึงส่งเรื่องไปที่สำนักงาน กศน. จังหวัดเชียงใหม่แทน")
    ]
    with get_database(hotline.app).session() as s:
        case = s.get(Case, case_id)
        assert case is not None and (case.status, case.office_id) == (
            CaseStatus.ROUTED,
            hotline.offices["50"],
        )


# ---- forwarding ------------------------------------------------------------------------------------------


def test_forwarding_to_a_district_without_an_operator_is_refused_also_at_approval(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "50")
    with get_database(hotline.app).session() as s:
        case = s.get(Case, case_id)
        assert case is not None
        op50 = hotline.user(s, "op50")
        workflow.summarise(s, case, op50, "สรุป", HazardGroup.VIOLENCE)
        with pytest.raises(NoOperatorThere) as refused:
            workflow.propose_forwarding(s, case, op50, to_office=office(s, "5002"))
        assert refused.value.offered is not None and refused.value.offered.code == "50"
        assert case.status == CaseStatus.ROUTED
        proposal = workflow.propose_forwarding(s, case, op50, to_office=office(s, "5001"))
        proposal_id = proposal.id
    deactivate(hotline, "op5001")  # the district's only SC-Operator leaves before the head decides
    with get_database(hotline.app).session() as s:
        proposal = s.get(workflow.ForwardingProposal, proposal_id)
        assert proposal is not None
        with pytest.raises(NoOperatorThere):
            workflow.decide_proposal(s, proposal, hotline.user(s, "head50"), approve=True)
        s.rollback()
        case = s.get(Case, case_id)
        assert case is not None and (case.status, case.office_id) == (
            CaseStatus.PROPOSED,
            hotline.offices["50"],
        )


# ---- a reminder with nobody to hear it --------------------------------------------------------------------


def test_a_reminder_with_no_recipient_escalates_at_once(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))  # violence: due 11:00, "due soon" at 10:30
    hotline.route(case_id, "5001")
    deactivate(hotline, "op5001")  # the district now has nobody to remind
    sweep = hotline.sweep(bkk(25, 10, 30))
    assert (sweep.stats.sent, sweep.stats.escalated) == (1, 1)
    # Sent at once to the heads of the province above, as "nobody to remind", not to nobody.
    assert hotline.recipients(case_id, "no_recipient") == {"head50"}
    assert hotline.recipients(case_id, "before_due") == set()
    with get_database(hotline.app).session() as s:
        (event,) = events(s, case_id, "reminder_escalated")
        assert event.detail == {"kind": "before_due", "office": "5001", "to_office": "50"}
        sent = s.scalars(select(Reminder).where(Reminder.case_id == case_id, Reminder.sent_at.is_not(None)))
        assert [r.kind for r in sent] == ["before_due"]
    (note,) = [n for n in hotline.notifications(case_id) if n.kind == "no_recipient"]
    assert "ไม่มี SC-Operator ที่จะรับการแจ้งเตือน" in note.body and "กศน. อำเภอเมืองเชียงใหม่" in note.body


def test_a_reminder_someone_hears_is_not_escalated(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "5001")
    sweep = hotline.sweep(bkk(25, 10, 30))
    assert (sweep.stats.sent, sweep.stats.escalated) == (1, 0)
    assert hotline.recipients(case_id, "before_due") == {"op5001"}
    assert hotline.recipients(case_id, "no_recipient") == set()


# ---- resolving with the callback open ----------------------------------------------------------------------


def in_action(hotline: Hotline) -> int:
    """A case at Chiang Mai with its callback open, assigned to action50 who acknowledged it."""
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "50")
    with get_database(hotline.app).session() as s:
        case = s.get(Case, case_id)
        assert case is not None
        op50, head50, action50 = (hotline.user(s, n) for n in ("op50", "head50", "action50"))
        workflow.summarise(s, case, op50, "สรุป", HazardGroup.VIOLENCE)
        p = workflow.propose_forwarding(s, case, op50, to_user=action50)
        workflow.decide_proposal(s, p, head50, approve=True)
        workflow.acknowledge(s, case, action50)
    return case_id


def test_resolving_with_an_open_callback_closes_it_in_the_same_step_with_its_reason(hotline: Hotline) -> None:
    case_id = in_action(hotline)
    at = bkk(25, 10, 20)
    with get_database(hotline.app).session() as s:
        case, action50 = s.get(Case, case_id), hotline.user(s, "action50")
        assert case is not None
        with pytest.raises(workflow.InvalidInput):
            workflow.resolve(s, case, action50, "ยุติแล้ว", close_callback_reason="   ", clock=lambda: at)
        workflow.resolve(
            s, case, action50, "ยุติแล้ว", close_callback_reason="ผู้แจ้งโทรเข้ามาเอง", clock=lambda: at
        )
        assert case.status == CaseStatus.RESOLVED
        (closed,) = events(s, case_id, "callback_cancelled")
        assert closed.detail == {"reason": "ผู้แจ้งโทรเข้ามาเอง"}
    callback = hotline.callback(case_id)
    assert (callback.state, callback.closed_at) == (CallbackState.CANCELLED, at)
    assert hotline.pending(case_id) == {}  # its reminders ended with it


def test_the_resolve_form_refuses_with_a_thai_message_and_offers_closing(hotline: Hotline) -> None:
    case_id = in_action(hotline)
    console_clock.install(hotline.app, lambda: bkk(25, 10, 20))
    action = signed_in(hotline, "action50")
    page = text(action.get(f"/console/cases/{case_id}"))
    assert 'name="close_callback"' in page and 'href="#callback"' in page
    response = post(action, f"/console/cases/{case_id}/resolve", outcome="ยุติแล้ว")
    assert response.location.endswith(f"/console/cases/{case_id}#callback")
    ((kind, message),) = flashes(action)
    assert kind == "error" and message.startswith("ผู้แจ้งยังรอการโทรกลับอยู่")
    assert hotline.callback(case_id).state == CallbackState.PENDING

    post(
        action,
        f"/console/cases/{case_id}/resolve",
        outcome="ยุติแล้ว",
        close_callback="1",
        callback_reason="ผู้แจ้งแจ้งว่าไม่ต้องโทรกลับ",
    )
    assert [k for k, _m in flashes(action)] == ["ok", "ok"]
    assert hotline.callback(case_id).state == CallbackState.CANCELLED
    with get_database(hotline.app).session() as s:
        assert s.get(Case, case_id).status == CaseStatus.RESOLVED  # type: ignore[union-attr]


def test_a_case_whose_callback_was_kept_resolves_without_asking(hotline: Hotline) -> None:
    case_id = in_action(hotline)
    callback_id = hotline.callback(case_id).id
    with get_database(hotline.app).session() as s:
        case, kept = s.get(Case, case_id), s.get(Callback, callback_id)
        assert case is not None and kept is not None
        kept.state, kept.closed_at = CallbackState.REACHED, bkk(25, 10, 15)  # reached: the promise was kept
        workflow.resolve(s, case, hotline.user(s, "action50"), "ยุติแล้ว")
        assert case.status == CaseStatus.RESOLVED
