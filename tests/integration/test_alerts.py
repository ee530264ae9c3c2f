"""Workflow alerts: each move alerts the right people once, never the actor, without personal data; e-mail
reaches a real SMTP server; the console's live counts are the user's own and need a signed-in session."""

from __future__ import annotations

import re
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml
from flask import Flask
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app import get_database
from cases import workflow
from cases.callbacks import load_callback_settings
from cases.callbacks.settings import CallbackSettingsError
from cases.follow_up import attach_follow_up_message
from cases.models import Case, CaseEvent, Channel, ForwardingProposal, HazardGroup, Notification, Office
from cases.notifications import DeliveryTargets, Outbox, install_targets
from cases.notifications import alerts as workflow_alerts
from cases.notifications.channels import EmailSender
from cases.reference import display_reference
from cases.staff import Committee, CommitteeMember, Role, RoleAssignment, User
from console.base import console_clock
from infra.config import Config
from infra.crypto import FieldCipher
from infra.db import Database
from tests.conftest import PUBLIC_BASE
from tests.integration.test_console import FakeClock, login, post
from tests.support.seed import DISTRICT, PROVINCE, seed_console
from tests.support.standins import SmtpRelay
from transcription.models import Recording, Transcript

ROOT = Path(__file__).resolve().parents[2]
GROUP, LINE_TOKEN = "C" + "5" * 32, "line-token-chiang-mai"


@dataclass(frozen=True)
class Line:
    group_id: str
    token: str


@dataclass
class World:
    db: Database
    password: str
    users: dict[str, int]
    offices: dict[str, int]
    cases: dict[str, int]
    committee: int
    secrets: list[str]  # what no alert may carry: the reporters' numbers (whole and masked), their words


@pytest.fixture
def world(app: Flask, config: Config) -> World:
    db = get_database(app)
    cipher = FieldCipher(config.data_key)
    with db.session() as session:
        s = seed_console(session, cipher=cipher)
        for name, address in (("op50", "somchai"), ("op50b", "wipa"), ("head50", "prasert")):
            s.users[name].email = f"{address}@school.example"
        s.users["op50b"].locale = "en"
        secret_texts: list[str] = [s.cases["in_action_50"].summary or ""]
        for case in s.cases.values():
            if case.callback_number_enc:
                number = cipher.decrypt(case.callback_number_enc)
                secret_texts += [number, number[3:], number[-7:], case.callback_number_masked or ""]
        secret_texts += [t for t in session.scalars(select(Transcript.text)) if t]
        world = World(
            db=db,
            password=s.password,
            users={k: u.id for k, u in s.users.items()},
            offices={k: o.id for k, o in s.offices.items()},
            cases={k: c.id for k, c in s.cases.items()},
            committee=s.committees["cm50"].id,
            secrets=[t for t in secret_texts if t],
        )
    # E-mail and the Chiang Mai LINE group are configured: alerts go on console, e-mail and LINE.
    line = {PROVINCE: Line(GROUP, LINE_TOKEN)}
    install_targets(db, DeliveryTargets(email=True, line=line, public_base_url=PUBLIC_BASE))
    return world


@pytest.fixture
def clock(app: Flask) -> FakeClock:
    fake = FakeClock()
    console_clock.install(app, fake)
    return fake


def user(session: Session, world: World, name: str) -> User:
    found = session.get(User, world.users[name])
    assert found is not None
    return found


def case_of(session: Session, world: World, key: str) -> Case:
    found = session.get(Case, world.cases[key])
    assert found is not None
    return found


def alerts(world: World, kind: str | None = None) -> list[Notification]:
    with world.db.session() as session:
        stmt = select(Notification).order_by(Notification.id)
        if kind is not None:
            stmt = stmt.where(Notification.kind == kind)
        return list(session.scalars(stmt))


def recipients(world: World, kind: str, channel: Channel = Channel.CONSOLE) -> Counter[str]:
    """Who got `kind` on `channel`, by username, with how many rows each (once is 1)."""
    names = {v: k for k, v in world.users.items()}
    return Counter(names[n.user_id] for n in alerts(world, kind) if n.channel == channel and n.user_id)


def assert_no_personal_data(world: World) -> None:
    rows = alerts(world)
    assert rows
    for n in rows:
        for secret in world.secrets:
            assert secret not in n.subject and secret not in n.body, (n.kind, n.channel)
        assert not re.search(r"\d{9,}", n.body.replace(str(n.case_id), ""))  # no number-like run
        with world.db.session() as session:
            case = session.get(Case, n.case_id)
            assert case is not None
        assert display_reference(case.reference) in n.subject
        assert n.link in (f"/console/cases/{case.id}", f"{PUBLIC_BASE}/console/cases/{case.id}")


# ---- each alert ---------------------------------------------------------------------------------------


def test_a_routed_case_alerts_the_offices_sc_operators_once_but_not_the_agent_who_routed_it(
    world: World,
) -> None:
    with world.db.session() as session:
        agent = user(session, world, "agent")
        # The agent is an SC-Operator at Chiang Mai too: still not told of their own routing.
        session.add(RoleAssignment(user_id=agent.id, office_id=world.offices[PROVINCE], role=Role.OPERATOR))
        session.flush()
        office = session.get(Office, world.offices[PROVINCE])
        assert office is not None
        workflow.route_case(session, case_of(session, world, "draft_50"), agent, office)
    assert recipients(world, "case_routed") == {"op50": 1, "op50b": 1, "head50": 1}
    assert recipients(world, "case_routed", Channel.EMAIL) == {"op50": 1, "op50b": 1, "head50": 1}
    line = [n for n in alerts(world, "case_routed") if n.channel == Channel.LINE]
    assert [n.office_id for n in line] == [world.offices[PROVINCE]]
    thai = next(n for n in alerts(world, "case_routed") if n.user_id == world.users["op50"])
    english = next(n for n in alerts(world, "case_routed") if n.user_id == world.users["op50b"])
    assert thai.subject.startswith("มีเรื่องใหม่ส่งถึงสำนักงาน: เรื่อง ")
    assert english.subject.startswith("New case for your office: case ")
    assert_no_personal_data(world)


def test_a_rerouting_alerts_the_new_office_and_a_correction_in_place_alerts_nobody(world: World) -> None:
    with world.db.session() as session:
        agent = user(session, world, "agent")
        case = case_of(session, world, "routed_50")
        chiang_mai = session.get(Office, world.offices[PROVINCE])
        bangkok = session.get(Office, world.offices["10"])
        assert chiang_mai is not None and bangkok is not None
        workflow.route_case(session, case, agent, chiang_mai, category=HazardGroup.ACCIDENT)
        assert alerts_in(session) == []  # the same office, a corrected hazard group: nothing new for it
        workflow.route_case(session, case, agent, bangkok)
    assert recipients(world, "case_routed") == {"op10": 1}


def test_a_move_rolled_back_leaves_no_alert(world: World) -> None:
    with world.db.session() as session:
        office = session.get(Office, world.offices[PROVINCE])
        assert office is not None
        case = case_of(session, world, "draft_50")
        workflow.route_case(session, case, user(session, world, "agent"), office)
        assert alerts_in(session)  # queued in the move's own transaction ...
        session.rollback()  # ... and gone with it
    assert alerts(world) == []


def alerts_in(session: Session) -> list[Notification]:
    return list(session.scalars(select(Notification)))


def test_a_proposal_alerts_the_heads_who_decide_and_not_the_proposer(world: World) -> None:
    with world.db.session() as session:
        op50 = user(session, world, "op50")
        # The proposer is a head too: another head decides, and the proposer hears nothing of it.
        session.add(RoleAssignment(user_id=op50.id, office_id=world.offices[PROVINCE], role=Role.HEAD))
        case = case_of(session, world, "routed_50")
        workflow.summarise(session, case, op50, "สรุปเหตุการณ์", HazardGroup.VIOLENCE)
        workflow.propose_forwarding(session, case, op50, to_user=user(session, world, "action50"))
    assert recipients(world, "proposal_waiting") == {"head50": 1}
    assert_no_personal_data(world)


def test_the_only_heads_proposal_waits_for_the_heads_of_the_parent_office(world: World) -> None:
    with world.db.session() as session:
        op5001 = user(session, world, "op5001")
        session.add(RoleAssignment(user_id=op5001.id, office_id=world.offices[DISTRICT], role=Role.HEAD))
        session.add(RoleAssignment(user_id=op5001.id, office_id=world.offices[DISTRICT], role=Role.ACTION))
        session.flush()
        case = case_of(session, world, "district_5001")
        workflow.summarise(session, case, op5001, "สรุปเหตุการณ์", HazardGroup.VIOLENCE)
        workflow.propose_forwarding(session, case, op5001, to_user=op5001)
    assert recipients(world, "proposal_waiting") == {"head50": 1}


def test_an_approval_tells_the_proposer_and_the_assignee_once(world: World) -> None:
    with world.db.session() as session:
        proposal = pending_proposal(session, world)
        workflow.decide_proposal(session, proposal, user(session, world, "head50"), approve=True)
    assert recipients(world, "proposal_approved") == {"op50": 1}
    assert recipients(world, "case_assigned") == {"action50": 1}
    assert recipients(world, "proposal_rejected") == {}
    assert_no_personal_data(world)


def test_a_rejection_tells_the_proposer_only(world: World) -> None:
    with world.db.session() as session:
        proposal = pending_proposal(session, world)
        workflow.decide_proposal(
            session, proposal, user(session, world, "head50"), approve=False, reason="ข้อมูลไม่พอ"
        )
    assert recipients(world, "proposal_rejected") == {"op50": 1}
    assert {n.kind for n in alerts(world)} == {"proposal_rejected"}
    rejected = next(n for n in alerts(world) if n.channel == Channel.CONSOLE)
    assert "ข้อมูลไม่พอ" not in rejected.body  # the reason is read in the console, not carried around
    assert_no_personal_data(world)


def test_a_committee_assignment_tells_every_member_but_the_head_who_approved(world: World) -> None:
    with world.db.session() as session:
        head = user(session, world, "head50")
        session.add(CommitteeMember(committee_id=world.committee, user_id=head.id))
        case = case_of(session, world, "routed_50")
        op50 = user(session, world, "op50")
        workflow.summarise(session, case, op50, "สรุปเหตุการณ์", HazardGroup.VIOLENCE)
        committee = session.get(Committee, world.committee)
        proposal = workflow.propose_forwarding(session, case, op50, to_committee=committee)
        workflow.decide_proposal(session, proposal, head, approve=True)
    assert recipients(world, "committee_assigned") == {"action50": 1, "op50b": 1}
    assert recipients(world, "case_assigned") == {}
    assert_no_personal_data(world)


def test_a_forwarding_to_a_district_tells_its_sc_operators_and_the_proposer(world: World) -> None:
    with world.db.session() as session:
        op50 = user(session, world, "op50")
        case = case_of(session, world, "routed_50")
        workflow.summarise(session, case, op50, "สรุปเหตุการณ์", HazardGroup.VIOLENCE)
        district = session.get(Office, world.offices[DISTRICT])
        proposal = workflow.propose_forwarding(session, case, op50, to_office=district)
        workflow.decide_proposal(session, proposal, user(session, world, "head50"), approve=True)
    assert recipients(world, "case_routed") == {"op5001": 1}
    assert recipients(world, "proposal_approved") == {"op50": 1}


def test_a_follow_up_message_alerts_the_office_handling_the_case_on_the_alert_channels(
    world: World,
) -> None:
    sid = "RE" + secrets.token_hex(16)
    now = datetime.now(UTC)
    with world.db.session() as session:
        case = case_of(session, world, "in_action_50")
        session.add(
            Recording(
                recording_sid=sid,
                call_sid="CA" + secrets.token_hex(16),
                media_url="https://api.twilio.com/recording",
                status="completed",
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()
        assert attach_follow_up_message(session, case, sid, via="keys", now=now)
        assert not attach_follow_up_message(session, case, sid, via="keys", now=now)  # a retried webhook
    assert recipients(world, "follow_up_message") == {"op50": 1, "op50b": 1, "head50": 1}
    assert recipients(world, "follow_up_message", Channel.EMAIL) == {"op50": 1, "op50b": 1, "head50": 1}
    assert_no_personal_data(world)


def test_an_alert_is_queued_once_per_move(world: World) -> None:
    with world.db.session() as session:
        office = session.get(Office, world.offices[PROVINCE])
        assert office is not None
        case = case_of(session, world, "draft_50")
        agent = user(session, world, "agent")
        workflow.route_case(session, case, agent, office)
        event = session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id.desc())
        ).first()
        assert event is not None
        before = len(alerts_in(session))
        workflow_alerts.case_routed(session, event, case, agent)  # the same move told again
        assert len(alerts_in(session)) == before


def pending_proposal(session: Session, world: World) -> ForwardingProposal:
    return session.scalars(
        select(ForwardingProposal).where(
            ForwardingProposal.case_id == world.cases["proposed_50"], ForwardingProposal.status == "pending"
        )
    ).one()


# ---- delivery -----------------------------------------------------------------------------------------


def test_an_alert_reaches_a_real_smtp_server_with_only_the_reference_and_a_link(world: World) -> None:
    with world.db.session() as session:
        workflow.decide_proposal(
            session,
            pending_proposal(session, world),
            user(session, world, "head50"),
            approve=False,
            reason="ข้อมูลไม่พอ",
        )
        reference = display_reference(case_of(session, world, "proposed_50").reference)
    with SmtpRelay() as smtp:
        box = Outbox(
            world.db,
            {Channel.EMAIL: EmailSender(smtp.host, smtp.port, "safety-center@hotline.example.org")},
            attempts=3,
            backoff_s=30.0,
            worker_id="test-worker",
        )
        assert box.sweep() == 1
    ((_sender, rcpts),) = smtp.envelopes
    assert rcpts == ["somchai@school.example"]
    (mail,) = smtp.received
    assert isinstance(mail, EmailMessage)
    assert mail["Subject"] == f"ข้อเสนอส่งต่อของท่านไม่ได้รับอนุมัติ: เรื่อง {reference}"
    body = mail.get_content()
    assert f"{PUBLIC_BASE}/console/cases/{world.cases['proposed_50']}" in body
    for secret in [*world.secrets, "ข้อมูลไม่พอ"]:
        assert secret not in body


# ---- the setting --------------------------------------------------------------------------------------


def test_the_alert_channels_come_from_the_callbacks_file(tmp_path: Path) -> None:
    shipped = ROOT / "cases" / "data" / "callbacks.yaml"
    holidays = ROOT / "cases" / "data" / "holidays-th.yaml"
    s = load_callback_settings(shipped, holidays, "Asia/Bangkok", environ={})
    assert s.alert_channels == (Channel.CONSOLE, Channel.EMAIL, Channel.LINE)
    data = yaml.safe_load(shipped.read_text(encoding="utf-8"))
    data["alerts"] = ["console", "sms"]
    path = tmp_path / "callbacks.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_callback_settings(path, holidays, "Asia/Bangkok", environ={}).alert_channels == (
        Channel.CONSOLE,
        Channel.SMS,
    )
    del data["alerts"]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_callback_settings(path, holidays, "Asia/Bangkok", environ={}).alert_channels == (
        Channel.CONSOLE,
        Channel.EMAIL,
        Channel.LINE,
    )
    data["alerts"] = ["console", "pigeon"]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(CallbackSettingsError, match=r"alerts.*'pigeon' is not a channel"):
        load_callback_settings(path, holidays, "Asia/Bangkok", environ={})


# ---- the console's live counts ------------------------------------------------------------------------


def test_the_live_counts_need_a_signed_in_user(app: Flask, world: World) -> None:
    response = app.test_client().get("/console/live")
    assert response.status_code == 401 and response.is_json
    assert response.headers["Cache-Control"] == "no-store"


def test_the_live_counts_are_the_users_own_and_follow_new_alerts(app: Flask, world: World) -> None:
    op50, op10 = app.test_client(), app.test_client()
    assert login(op50, "op50", world.password).status_code == 302
    assert login(op10, "op10", world.password).status_code == 302
    before = op50.get("/console/live").get_json()
    assert before["unread"] == 0 and before["latest"] == 0
    assert 'data-latest="0"' in op50.get("/console/").get_data(as_text=True)
    agent = app.test_client()
    assert login(agent, "agent", world.password).status_code == 302
    routed = post(agent, f"/console/cases/{world.cases['draft_50']}/route", province=PROVINCE)
    assert routed.status_code == 302
    after = op50.get("/console/live")
    assert after.status_code == 200 and after.headers["Cache-Control"] == "no-store"
    counts = after.get_json()
    mine = [
        n
        for n in alerts(world, "case_routed")
        if n.user_id == world.users["op50"] and n.channel == Channel.CONSOLE
    ]
    label, text = "ยังไม่ได้อ่าน 1 รายการ", "1"  # the badge's words and text, in the console's digits
    assert counts == {"unread": 1, "latest": mine[0].id, "unread_label": label, "unread_text": text}
    assert op10.get("/console/live").get_json()["unread"] == 0  # Bangkok's operator: not theirs
    assert agent.get("/console/live").get_json()["unread"] == 0  # nor the agent's, who routed it
    assert f'data-latest="{mine[0].id}"' in op50.get("/console/").get_data(as_text=True)


def test_polling_the_live_counts_does_not_keep_an_idle_session_alive(
    app: Flask, world: World, clock: FakeClock
) -> None:
    client = app.test_client()
    assert login(client, "op50", world.password).status_code == 302
    clock.advance(minutes=20)
    assert client.get("/console/live").status_code == 200  # a tab left open, asking ...
    clock.advance(minutes=20)
    assert client.get("/console/live").status_code == 302  # ... is idle all the same after 30 minutes
    response = client.get("/console/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/console/login")


def test_the_live_counts_cost_two_queries(app: Flask, world: World) -> None:
    client = app.test_client()
    assert login(client, "op50", world.password).status_code == 302
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        assert client.get("/console/live").status_code == 200
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(queries) == 2, statements  # the signed-in user by id, and the one count over their rows
    assert "notifications.user_id" in queries[1]
