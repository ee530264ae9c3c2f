"""A small world with known timestamps for the dashboard's tests: every figure of it is known by hand.

NOW is 12:00 in Bangkok on 15 June 2026; the period is 1-15 June (Bangkok). Cases (T = 10 June 10:00):

| key | office | group | state | first route/approve/action/resolve after T | call-back |
| A | 50 | violence | routed | 600 s | reached on time |
| B | 50 | violence | resolved | 1200/3600/7200 (and 9000)/18000 | reached late |
| C | 5001 | accident | in_action | 1800/7200/10800 | open, overdue |
| D | 10 | health_harm | assigned | 2400/10800 | open, not due |
| E | 50 (a draft) | violence | draft | | calling, not due |
| H | 50 | rights_violation | routed, 1 June 00:10 | | gave up |
| G | 50 | violence | routed, 31 May 23:30: outside | | reached on time |
| F | 10 | violence | resolved, 1 May: outside | 600 | |

Staff: agent (central), op50 and head50 (50), op10 and an inactive op10b (10), op5001 (5001).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from cases.accounts import hash_password
from cases.models import (
    CENTRAL_OFFICE_CODE,
    MILESTONES,
    Callback,
    CallbackChoice,
    CallbackState,
    Case,
    CaseEvent,
    CaseStatus,
    HazardGroup,
    Office,
)
from cases.staff import Role, RoleAssignment, User
from infra.crypto import FieldCipher
from tests.support.seed import bulk_reference

NOW = datetime(2026, 6, 15, 5, 0, tzinfo=UTC)
T = datetime(2026, 6, 10, 3, 0, tzinfo=UTC)
PASSWORD = "figures-password-0123"
NUMBER = "+66812224567"  # every case's call-back number: no export or print may show any of it
MASKED = "+66 81 xxx x567"

STAFF = {
    "agent": (Role.AGENT, CENTRAL_OFFICE_CODE, True),
    "op50": (Role.OPERATOR, "50", True),
    "head50": (Role.HEAD, "50", True),
    "op10": (Role.OPERATOR, "10", True),
    "op10b": (Role.OPERATOR, "10", False),
    "op5001": (Role.OPERATOR, "5001", True),
}
# key: (office, group, state, created, {action: seconds after created}, (callback state, due, closed))
CASES: dict[
    str, tuple[str, HazardGroup, CaseStatus, datetime, dict[str, list[int]], tuple[str, ...] | None]
] = {
    "A": ("50", HazardGroup.VIOLENCE, CaseStatus.ROUTED, T, {"route": [600]}, ("reached", "2h", "1h")),
    "B": (
        "50",
        HazardGroup.VIOLENCE,
        CaseStatus.RESOLVED,
        T,
        {"route": [1200], "approve": [3600], "record_action": [7200, 9000], "resolve": [18000]},
        ("reached", "2h", "3h"),
    ),
    "C": (
        "5001",
        HazardGroup.ACCIDENT,
        CaseStatus.IN_ACTION,
        T,
        {"route": [1800], "approve": [7200], "record_action": [10800]},
        ("pending", "24h", ""),
    ),
    "D": (
        "10",
        HazardGroup.HEALTH_HARM,
        CaseStatus.ASSIGNED,
        T,
        {"route": [2400], "approve": [10800], "summarised": [100]},
        ("pending", "150h", ""),
    ),
    "E": ("50", HazardGroup.VIOLENCE, CaseStatus.DRAFT, T, {}, ("calling", "250h", "")),
    "H": (
        "50",
        HazardGroup.RIGHTS_VIOLATION,
        CaseStatus.ROUTED,
        datetime(2026, 5, 31, 17, 10, tzinfo=UTC),
        {},
        ("gave_up", "1h", "2h"),
    ),
    "G": (
        "50",
        HazardGroup.VIOLENCE,
        CaseStatus.ROUTED,
        datetime(2026, 5, 31, 16, 30, tzinfo=UTC),
        {},
        ("reached", "2h", "1h"),
    ),
    "F": (
        "10",
        HazardGroup.VIOLENCE,
        CaseStatus.RESOLVED,
        datetime(2026, 5, 1, 3, 0, tzinfo=UTC),
        {"route": [600]},
        None,
    ),
}


@dataclass
class FiguresWorld:
    offices: dict[str, int]
    users: dict[str, int]
    cases: dict[str, int]
    references: dict[str, str]


def _hours(text: str) -> timedelta:
    return timedelta(hours=int(text.rstrip("h")))


def seed_figures_world(session: Session, cipher: FieldCipher, start: int = 500_000) -> FiguresWorld:
    """The world above, flushed (the caller commits)."""
    codes = (
        {c for c, *_ in CASES.values()} | {code for _r, code, _a in STAFF.values()} | {CENTRAL_OFFICE_CODE}
    )
    offices = dict(session.execute(select(Office.code, Office.id).where(Office.code.in_(codes))).all())
    password = hash_password(PASSWORD)
    users: dict[str, int] = {}
    for name, (role, code, active) in STAFF.items():
        user = User(
            username=f"fig_{name}",
            display_name=f"ทดสอบ {name}",
            password_hash=password,
            active=active,
            locale="th",
            failed_logins=0,
            session_token=secrets.token_hex(32),
            created_at=NOW - timedelta(days=60),
        )
        session.add(user)
        session.flush()
        session.add(RoleAssignment(user_id=user.id, office_id=offices[code], role=role))
        users[name] = user.id
    cases: dict[str, int] = {}
    references: dict[str, str] = {}
    for i, (key, (code, group, state, created, events, callback)) in enumerate(CASES.items()):
        office = session.get(Office, offices[code])
        assert office is not None
        case = Case(
            reference=bulk_reference(start + i),
            status=state,
            category=group,
            ivr_category=group,
            language="th",
            province_code=office.province_code,
            office_id=office.id,
            callback_choice=CallbackChoice.OTHER,
            callback_number_enc=cipher.encrypt(NUMBER),
            callback_number_masked=MASKED,
            opened_by="caller",
            created_at=created,
            updated_at=created,
        )
        session.add(case)
        session.flush()
        cases[key], references[key] = case.id, case.reference
        for action, offsets in events.items():
            for seconds in offsets:
                at = created + timedelta(seconds=seconds)
                session.add(CaseEvent(case_id=case.id, at=at, action=action, detail={}))
            if action in MILESTONES:  # what the workflow keeps (cases.milestones): the first event's time
                setattr(case, MILESTONES[action], created + timedelta(seconds=min(offsets)))
        if callback is not None:
            cb_state, due, closed = callback
            session.add(
                Callback(
                    case_id=case.id,
                    office_id=office.id,
                    state=CallbackState(cb_state),
                    due_at=created + _hours(due),
                    first_due_at=created + _hours(due),
                    closed_at=created + _hours(closed) if closed else None,
                    created_at=created,
                    updated_at=created,
                )
            )
    session.flush()
    return FiguresWorld(offices, users, cases, references)
