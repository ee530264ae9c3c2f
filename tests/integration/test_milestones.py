"""The case's milestone columns agree with its events after the workflow's moves (cases.milestones).

The dashboard's medians read routed_at, approved_at, first_action_at and resolved_at instead of the
events: each must be the time of the FIRST event of its action, whatever came after it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import get_database
from cases import milestones
from cases import workflow as wf
from cases.models import (
    CENTRAL_OFFICE_CODE,
    MILESTONES,
    CallbackChoice,
    Case,
    CaseEvent,
    CaseStatus,
    HazardGroup,
    Office,
)
from cases.reference import new_reference
from cases.staff import Role, RoleAssignment, User

T0 = datetime(2026, 6, 10, 3, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves: each move happens at a known minute after T0."""

    def __init__(self) -> None:
        self.now = T0

    def at(self, minutes: int) -> Clock:
        self.now = T0 + timedelta(minutes=minutes)
        return self

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with get_database(app).session() as s:
        yield s


def _office(session: Session, code: str) -> Office:
    office = session.scalar(select(Office).where(Office.code == code))
    assert office is not None
    return office


def _user(session: Session, name: str, code: str, role: Role) -> User:
    user = User(username=name, display_name=name, password_hash="x", session_token=uuid.uuid4().hex)
    session.add(user)
    session.flush()
    session.add(RoleAssignment(user_id=user.id, office_id=_office(session, code).id, role=role))
    session.flush()
    return user


def _draft(session: Session) -> Case:
    case = Case(
        reference=new_reference(),
        status=CaseStatus.DRAFT,
        category=HazardGroup.VIOLENCE,
        ivr_category=HazardGroup.VIOLENCE,
        language="th",
        office_id=_office(session, CENTRAL_OFFICE_CODE).id,
        callback_choice=CallbackChoice.NONE,
        created_at=T0,
    )
    session.add(case)
    session.flush()
    return case


def _firsts_from_events(session: Session, case: Case) -> dict[str, datetime | None]:
    firsts = dict(
        session.execute(
            select(CaseEvent.action, func.min(CaseEvent.at))
            .where(CaseEvent.case_id == case.id)
            .group_by(CaseEvent.action)
        ).all()
    )
    return {column: firsts.get(action) for action, column in MILESTONES.items()}


def _columns(session: Session, case: Case) -> dict[str, datetime | None]:
    session.flush()
    session.expire(case)  # read back what was written, not what the object holds
    return {column: getattr(case, column) for column in MILESTONES.values()}


def test_the_milestones_are_the_first_event_of_each_step(session: Session) -> None:
    agent = _user(session, "ms_agent", CENTRAL_OFFICE_CODE, Role.AGENT)
    op50 = _user(session, "ms_op50", "50", Role.OPERATOR)
    head50 = _user(session, "ms_head50", "50", Role.HEAD)
    act50 = _user(session, "ms_act50", "50", Role.ACTION)
    case, clock = _draft(session), Clock()
    assert _columns(session, case) == dict.fromkeys(MILESTONES.values())

    wf.route_case(session, case, agent, _office(session, "50"), clock=clock.at(10))
    wf.route_case(session, case, agent, _office(session, "50"), clock=clock.at(15))  # a correction
    wf.summarise(session, case, op50, "ครูตีนักเรียน", HazardGroup.VIOLENCE, clock=clock.at(18))
    proposal = wf.propose_forwarding(session, case, op50, to_user=act50, clock=clock.at(20))
    assert _columns(session, case) == {
        "routed_at": T0 + timedelta(minutes=10),
        "approved_at": None,
        "first_action_at": None,
        "resolved_at": None,
    }
    wf.decide_proposal(session, proposal, head50, approve=True, clock=clock.at(30))
    wf.acknowledge(session, case, act50, clock=clock.at(40))
    wf.record_action(session, case, act50, "โทรหาโรงเรียน", clock=clock.at(50))
    wf.record_action(session, case, act50, "ไปที่โรงเรียน", clock=clock.at(60))  # a second action
    wf.resolve(session, case, act50, "ย้ายครูแล้ว", clock=clock.at(70))

    expected = {
        "routed_at": T0 + timedelta(minutes=10),
        "approved_at": T0 + timedelta(minutes=30),
        "first_action_at": T0 + timedelta(minutes=50),  # not the second action's 60
        "resolved_at": T0 + timedelta(minutes=70),
    }
    assert _columns(session, case) == expected
    assert _firsts_from_events(session, case) == expected
    assert (
        session.scalar(  # the second action and the second route were recorded: they just do not count
            select(func.count()).where(
                CaseEvent.case_id == case.id, CaseEvent.action.in_(["route", "record_action"])
            )
        )
        == 4
    )


def test_the_backfill_of_rows_written_in_bulk_agrees_with_the_events(session: Session) -> None:
    case = _draft(session)
    for action, minutes in (
        ("route", 9),
        ("route", 5),
        ("approve", 12),
        ("record_action", 30),
        ("record_action", 20),
        ("summarised", 1),
    ):
        session.add(CaseEvent(case_id=case.id, at=T0 + timedelta(minutes=minutes), action=action, detail={}))
    session.flush()
    session.execute(update(Case).where(Case.id == case.id).values(routed_at=None))

    milestones.backfill(session)

    assert _columns(session, case) == {
        "routed_at": T0 + timedelta(minutes=5),
        "approved_at": T0 + timedelta(minutes=12),
        "first_action_at": T0 + timedelta(minutes=20),
        "resolved_at": None,
    }
    assert _columns(session, case) == _firsts_from_events(session, case)
