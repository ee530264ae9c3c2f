"""The console's withdraw, reassign and reopen forms (issue 14, item 6), through the Flask client: shown to
those who may use them, refused in the reader's words otherwise, protected by CSRF, recorded in Thai on the
case's timeline; the head's own pending proposals on the approvals page."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from app import get_database
from cases.access import active_assignment
from cases.models import Case, CaseEvent, CaseStatus, ForwardingProposal, Notification
from cases.staff import AuditEvent
from tests.integration import test_console as base
from tests.integration.test_console import World, as_user, flashes, post, set_locale, text

world = base.world  # the fixture: seed_console's offices, staff and cases, as ids


def case_state(app: Flask, case_id: int) -> tuple[str, str | None]:
    with get_database(app).session() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return str(case.status), case.outcome


def events(app: Flask, case_id: int) -> list[str]:
    with get_database(app).session() as session:
        return list(
            session.scalars(
                select(CaseEvent.action).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
            )
        )


def test_the_proposer_withdraws_from_the_case_page_and_the_timeline_says_so_in_thai(
    app: Flask, world: World
) -> None:
    case_id, pid = world.cases["proposed_50"], world.pending_proposal
    page = f"/console/cases/{case_id}"
    op50 = as_user(app, world, "op50")
    assert f"/console/proposals/{pid}/withdraw" in text(op50.get(page))
    head = as_user(app, world, "head50")
    assert f"/console/proposals/{pid}/withdraw" not in text(head.get(page))  # not the head's proposal

    post(head, f"/console/proposals/{pid}/withdraw")
    assert ("error", "เฉพาะผู้เสนอส่งต่อเท่านั้นที่ถอนข้อเสนอได้") in flashes(head)
    assert case_state(app, case_id)[0] == CaseStatus.PROPOSED

    answer = post(op50, f"/console/proposals/{pid}/withdraw")
    assert answer.status_code == 302 and answer.headers["Location"].endswith(f"{page}#forwarding")
    assert ("ok", "ถอนข้อเสนอแล้ว เรื่องกลับมาอยู่ที่สำนักงานตามเดิม") in flashes(op50)
    assert case_state(app, case_id)[0] == CaseStatus.ROUTED
    shown = text(op50.get(page))
    assert "ถอนข้อเสนอส่งต่อ" in shown and "ผู้เสนอถอนข้อเสนอแล้ว" in shown
    assert f"/console/proposals/{pid}/withdraw" not in shown
    # Withdrawn once: a second try is refused in words.
    post(op50, f"/console/proposals/{pid}/withdraw")
    assert ("error", "ข้อเสนอนี้ได้รับการพิจารณาหรือถูกถอนไปแล้ว") in flashes(op50)


def test_a_withdraw_without_the_csrf_token_or_of_a_case_not_seen_is_refused(app: Flask, world: World) -> None:
    pid = world.pending_proposal
    op50 = as_user(app, world, "op50")
    assert op50.post(f"/console/proposals/{pid}/withdraw").status_code == 400
    assert post(as_user(app, world, "op10"), f"/console/proposals/{pid}/withdraw").status_code == 404
    assert case_state(app, world.cases["proposed_50"])[0] == CaseStatus.PROPOSED
    with get_database(app).session() as session:
        refused = session.scalars(
            select(AuditEvent.action).where(AuditEvent.action == "access_refused")
        ).all()
        assert refused


def test_the_approvals_page_lists_the_heads_own_pending_proposals_with_a_withdraw_button(
    app: Flask, world: World
) -> None:
    head = as_user(app, world, "head50")
    assert "ไม่มีข้อเสนอของท่านที่รออนุมัติ" in text(head.get("/console/approvals"))
    routed = world.cases["routed_50"]
    post(head, f"/console/cases/{routed}/summary", summary="ครูตีนักเรียน", category="violence")
    post(head, f"/console/cases/{routed}/proposals", target=f"user:{world.users['action50']}")
    with get_database(app).session() as session:
        mine = session.scalars(
            select(ForwardingProposal.id).where(
                ForwardingProposal.case_id == routed, ForwardingProposal.status == "pending"
            )
        ).one()
    page = text(head.get("/console/approvals"))
    assert "ข้อเสนอของฉันที่รอหัวหน้าท่านอื่นอนุมัติ" in page
    assert f"/console/proposals/{mine}/withdraw" in page
    # op50's proposal waits for head50's decision: listed to decide, not among head50's own.
    assert f"/console/proposals/{world.pending_proposal}/decision" in page
    assert f"/console/proposals/{world.pending_proposal}/withdraw" not in page
    answer = post(head, f"/console/proposals/{mine}/withdraw", next="/console/approvals")
    assert answer.headers["Location"].endswith("/console/approvals")
    assert case_state(app, routed)[0] == CaseStatus.ROUTED


def test_a_head_reassigns_from_the_case_page_and_the_new_assignee_is_alerted(
    app: Flask, world: World
) -> None:
    case_id = world.cases["in_action_50"]
    page = f"/console/cases/{case_id}"
    assert 'id="reassign-form"' not in text(as_user(app, world, "op50").get(page))
    head = as_user(app, world, "head50")
    assert 'id="reassign-form"' in text(head.get(page))

    post(head, f"{page}/reassign", target=f"user:{world.users['op50b']}", reason=" ")
    assert ("error", "กรุณาระบุเหตุผลที่เปลี่ยนผู้รับผิดชอบเรื่องนี้") in flashes(head)
    op50 = as_user(app, world, "op50")
    post(op50, f"{page}/reassign", target=f"user:{world.users['op50b']}", reason="ลาป่วย")
    assert any(kind == "error" for kind, _m in flashes(op50))
    assert case_state(app, case_id)[0] == CaseStatus.IN_ACTION

    post(head, f"{page}/reassign", target=f"user:{world.users['op50b']}", reason="มานะลาป่วย")
    assert ("ok", "เปลี่ยนผู้รับผิดชอบแล้ว และได้แจ้งเจ้าหน้าที่ SC-Action ผู้รับผิดชอบใหม่แล้ว") in flashes(head)
    assert case_state(app, case_id)[0] == CaseStatus.ASSIGNED
    with get_database(app).session() as session:
        case = session.get(Case, case_id)
        assert case is not None
        assignment = active_assignment(session, case)
        assert assignment is not None and assignment.user_id == world.users["op50b"]
        told = session.scalars(
            select(Notification.user_id).where(
                Notification.case_id == case_id, Notification.kind == "case_assigned"
            )
        ).all()
        assert set(told) == {world.users["op50b"]}
        audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "case_reassigned")).one()
        assert (audit.user_id, audit.reason) == (world.users["head50"], "มานะลาป่วย")
    shown = text(head.get(page))
    assert "เปลี่ยนผู้รับผิดชอบ SC-Action" in shown and "มานะลาป่วย" in shown
    assert events(app, case_id)[-1] == "reassign"


def test_a_head_reopens_a_resolved_case_and_its_operators_are_alerted(app: Flask, world: World) -> None:
    case_id = world.cases["resolved_50"]
    page = f"/console/cases/{case_id}"
    for name in ("op50", "action50"):
        assert 'id="reopen-reason"' not in text(as_user(app, world, name).get(page))
        post(as_user(app, world, name), f"{page}/reopen", reason="ยังไม่จบ")
    assert case_state(app, case_id)[0] == CaseStatus.RESOLVED
    head = as_user(app, world, "head50")
    set_locale(head, "en")
    assert 'id="reopen-reason"' in text(head.get(page))
    post(head, f"{page}/reopen", reason="")
    assert ("error", "Give a reason for reopening the case.") in flashes(head)

    post(head, f"{page}/reopen", reason="ผู้ปกครองแจ้งว่ายังเกิดเหตุอยู่")
    assert ("ok", "The case was reopened. Its SC-Action staff work on it again.") in flashes(head)
    assert case_state(app, case_id) == (CaseStatus.IN_ACTION, None)
    with get_database(app).session() as session:
        told = session.scalars(
            select(Notification.user_id).where(
                Notification.case_id == case_id, Notification.kind == "case_reopened"
            )
        ).all()
    assert set(told) == {world.users[n] for n in ("op50", "op50b", "action50")}
    # The assignee works on it again at once, and sees the reopening in Thai on the timeline.
    action50 = as_user(app, world, "action50")
    shown = text(action50.get(page))
    assert "เปิดเรื่องใหม่" in shown and "ผู้ปกครองแจ้งว่ายังเกิดเหตุอยู่" in shown
    assert 'id="resolve-form"' in shown
    post(action50, f"{page}/actions", text="เยี่ยมบ้านนักเรียน")
    assert events(app, case_id)[-2:] == ["reopen", "record_action"]
    # The office's admin reads the reopening in the case's audit trail in Thai (the trail shows no free
    # text but a reveal's reason: the reason is on the case's timeline, asserted above).
    trail = text(as_user(app, world, "admin50").get(f"/console/audit/cases/{case_id}"))
    assert "เปิดเรื่องที่ปิดแล้วใหม่" in trail and "ผู้ปกครองแจ้งว่ายังเกิดเหตุอยู่" not in trail
