"""Callbacks: the due time, the reminders and escalations, attempts and their outcomes, and the sweep.

The service functions of cases.callbacks are driven with an injected clock over a migrated database,
with the shipped callback settings (cases/data/callbacks.yaml: Mon-Fri 08:30-16:30 Asia/Bangkok,
violence due in 60 working minutes, others in 240; remind 30 before; heads 30 after; parent 120 after
that; 3 attempts; a retry 60 later) and holidays (cases/data/holidays-th.yaml). The console and the
export are read through the Flask test client and the CLI.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import get_database
from cases import workflow
from cases.callbacks import (
    ReminderSweep,
    callback_settings,
    cancel_callback,
    log_by_hand,
    open_callback,
    record_outcome,
    responsible_users,
    start_attempt,
)
from cases.callbacks.settings import CallbackSettings
from cases.models import (
    CENTRAL_OFFICE_CODE,
    AttemptOutcome,
    Call,
    Callback,
    CallbackAttempt,
    CallbackChoice,
    CallbackState,
    Case,
    CaseEvent,
    CaseStatus,
    Channel,
    HazardGroup,
    Notification,
    Office,
    Reminder,
    ReminderKind,
)
from cases.notifications.alerts import ALERT_KINDS
from cases.service import DraftReport, open_draft_case
from cases.staff import Role, RoleAssignment, User
from cases.workflow import InvalidInput, NotPermitted
from console.base import console_clock
from infra.config import Config
from infra.crypto import FieldCipher, mask_phone
from tests.conftest import TwilioCaller
from tests.integration.test_console import login, post, text
from tests.integration.test_webhooks import FULL_CALL, Recorded, walk
from tests.support.seed import seed_console

K = ReminderKind
# Wednesday 25 November 2026, 10:00 in Bangkok: a plain working day.
WED_10 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def bkk(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    """A Bangkok wall time in 2026 as aware UTC (Bangkok is UTC+7 all year)."""
    return datetime(2026, month, day, hour, minute, tzinfo=UTC) - timedelta(hours=7)


@dataclass
class Hotline:
    """The app with seeded staff (tests.support.seed) and a head at the central office; ids, not objects."""

    app: Flask
    settings: CallbackSettings
    cipher: FieldCipher
    users: dict[str, int]
    offices: dict[str, int]
    password: str

    def session(self) -> Session:
        return get_database(self.app).sessions()

    def open_case(
        self,
        *,
        province: str | None = "50",
        category: HazardGroup = HazardGroup.VIOLENCE,
        callback: CallbackChoice = CallbackChoice.CALLER,
        at: datetime = WED_10,
    ) -> int:
        """A draft case as the IVR opens it, with the callback settings the app runs with."""
        with get_database(self.app).session() as s:
            number = "+6681" + "".join(str(secrets.randbelow(10)) for _ in range(7))
            call = Call(
                call_sid="CA" + secrets.token_hex(16),
                status="completed",
                caller_number_enc=self.cipher.encrypt(number),
                caller_number_masked=mask_phone(number),
                created_at=at,
                updated_at=at,
            )
            s.add(call)
            s.flush()
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
            case = open_draft_case(s, report, cipher=self.cipher, clock=lambda: at, callbacks=self.settings)
            return case.id

    def route(self, case_id: int, office_code: str, at: datetime = WED_10) -> None:
        with get_database(self.app).session() as s:
            case, agent = s.get(Case, case_id), s.get(User, self.users["agent"])
            office = s.scalar(select(Office).where(Office.code == office_code))
            assert case and agent and office
            workflow.route_case(s, case, agent, office, clock=lambda: at)

    def callback(self, case_id: int) -> Callback:
        with self.session() as s:
            row = s.scalar(select(Callback).where(Callback.case_id == case_id))
            assert row is not None
            return row

    def reminders(self, case_id: int) -> list[Reminder]:
        with self.session() as s:
            return list(s.scalars(select(Reminder).where(Reminder.case_id == case_id).order_by(Reminder.id)))

    def pending(self, case_id: int) -> dict[tuple[int, ReminderKind], datetime]:
        """The reminders still to be sent: (round, kind) -> due time."""
        return {
            (r.round, ReminderKind(r.kind)): r.due_at
            for r in self.reminders(case_id)
            if r.sent_at is None and r.cancelled_at is None
        }

    def sweep(self, at: datetime, **kw: int) -> ReminderSweep:
        sweeper = ReminderSweep(get_database(self.app), self.settings, clock=lambda: at, **kw)
        sweeper.sweep()
        return sweeper

    def notifications(self, case_id: int) -> list[Notification]:
        """The case's callback notifications (routing it also alerted its office: see test_alerts)."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(Notification)
                    .where(Notification.case_id == case_id, Notification.kind.not_in(ALERT_KINDS))
                    .order_by(Notification.id)
                )
            )

    def recipients(self, case_id: int, kind: str) -> set[str]:
        """Usernames of the console notifications of one kind for a case."""
        with self.session() as s:
            return set(
                s.scalars(
                    select(User.username)
                    .join(Notification, Notification.user_id == User.id)
                    .where(
                        Notification.case_id == case_id,
                        Notification.kind == kind,
                        Notification.channel == Channel.CONSOLE,
                    )
                )
            )

    def events(self, case_id: int) -> list[str]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(CaseEvent.action)
                    .where(CaseEvent.case_id == case_id, CaseEvent.action.like("callback%"))
                    .order_by(CaseEvent.id)
                )
            )

    def act(self, case_id: int, work: Callable[[Session, Case, Callback], object]) -> None:
        with get_database(self.app).session() as s:
            case = s.get(Case, case_id)
            callback = s.scalar(select(Callback).where(Callback.case_id == case_id))
            assert case is not None and callback is not None
            work(s, case, callback)

    def user(self, s: Session, name: str) -> User:
        user = s.get(User, self.users[name])
        assert user is not None
        return user

    def attempt(self, case_id: int, operator: str, at: datetime) -> int:
        out: list[int] = []
        self.act(case_id, lambda s, _c, cb: out.append(start_attempt(s, cb, self.user(s, operator), at).id))
        return out[0]

    def outcome(self, attempt_id: int, outcome: AttemptOutcome, at: datetime) -> None:
        with get_database(self.app).session() as s:
            attempt = s.get(CallbackAttempt, attempt_id)
            assert attempt is not None
            record_outcome(s, attempt, outcome, self.settings, at, duration_s=30)


@pytest.fixture
def hotline(app: Flask, config: Config) -> Hotline:
    cipher = FieldCipher(config.data_key)
    with get_database(app).session() as s:
        seeded = seed_console(s, cipher=cipher, clock=lambda: WED_10 - timedelta(days=1))
        central = s.scalar(select(Office).where(Office.code == CENTRAL_OFFICE_CODE))
        assert central is not None
        head = User(
            username="headc",
            display_name="ผู้อำนวยการ ศูนย์กลาง",
            password_hash="x",
            session_token=secrets.token_hex(32),
        )
        s.add(head)
        s.flush()
        s.add(RoleAssignment(user_id=head.id, office_id=central.id, role=Role.HEAD))
        users = {k: u.id for k, u in seeded.users.items()} | {"headc": head.id}
        offices = {k: o.id for k, o in seeded.offices.items()}
    return Hotline(app, callback_settings(app), cipher, users, offices, seeded.password)


# ---- opening: the due time and the reminders --------------------------------------------------------------


def test_a_violence_case_is_due_in_one_working_hour_with_its_four_reminders(hotline: Hotline) -> None:
    case_id = hotline.open_case(category=HazardGroup.VIOLENCE, at=bkk(25, 10))
    callback = hotline.callback(case_id)
    assert callback.state == CallbackState.PENDING
    assert callback.due_at == callback.first_due_at == bkk(25, 11)
    assert (callback.round, callback.attempts, callback.office_id) == (0, 0, hotline.offices["50"])
    assert hotline.pending(case_id) == {
        (0, K.BEFORE_DUE): bkk(25, 10, 30),
        (0, K.AT_DUE): bkk(25, 11),
        (0, K.ESCALATE_HEAD): bkk(25, 11, 30),
        (0, K.ESCALATE_PARENT): bkk(25, 13, 30),
    }
    offices = {ReminderKind(r.kind): r.office_id for r in hotline.reminders(case_id)}
    central = _office_id(hotline, CENTRAL_OFFICE_CODE)
    # The parent escalation goes to Chiang Mai's parent, the central office; the rest to Chiang Mai.
    assert offices == {
        K.BEFORE_DUE: hotline.offices["50"],
        K.AT_DUE: hotline.offices["50"],
        K.ESCALATE_HEAD: hotline.offices["50"],
        K.ESCALATE_PARENT: central,
    }
    assert hotline.events(case_id) == ["callback_scheduled"]


def test_working_hours_weekends_and_holidays_push_the_due_time_and_reminders(hotline: Hotline) -> None:
    # Friday 4 December 15:00: 90 minutes that day, then Saturday, Sunday and Monday 7 December (the
    # substitution holiday for Father's Day) are skipped; the last 150 minutes run on Tuesday from 08:30.
    case_id = hotline.open_case(category=HazardGroup.ACCIDENT, at=bkk(4, 15, month=12))
    due = bkk(8, 11, month=12)
    assert hotline.callback(case_id).due_at == due
    assert hotline.pending(case_id) == {
        (0, K.BEFORE_DUE): bkk(8, 10, 30, month=12),
        (0, K.AT_DUE): due,
        (0, K.ESCALATE_HEAD): bkk(8, 11, 30, month=12),
        (0, K.ESCALATE_PARENT): bkk(8, 13, 30, month=12),
    }
    # A 09:00 Bangkok time is 02:00 UTC.
    late = hotline.open_case(category=HazardGroup.VIOLENCE, at=bkk(25, 16))
    assert hotline.callback(late).due_at == datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
    # Its reminders count working minutes too: 30 before 09:00 is the opening, 08:30; 09:00 + 30 + 120.
    assert hotline.pending(late)[(0, K.BEFORE_DUE)] == bkk(26, 8, 30)
    assert hotline.pending(late)[(0, K.ESCALATE_PARENT)] == bkk(26, 11, 30)


def test_the_before_due_reminder_is_skipped_when_its_time_has_passed(hotline: Hotline) -> None:
    case_id = hotline.open_case(callback=CallbackChoice.NONE, at=bkk(25, 10))
    with get_database(hotline.app).session() as s:
        case = s.get(Case, case_id)
        assert case is not None
        case.callback_choice = CallbackChoice.CALLER  # as if the number came later
        case.callback_number_enc = hotline.cipher.encrypt("+66812345678")
        # Opened at 10:45 for a case received at 10:00: the 10:30 "due soon" moment is gone.
        open_callback(s, case, hotline.settings, bkk(25, 10, 45))
    assert set(hotline.pending(case_id)) == {(0, K.AT_DUE), (0, K.ESCALATE_HEAD), (0, K.ESCALATE_PARENT)}


def test_an_anonymous_case_has_no_callback_and_no_reminders(hotline: Hotline) -> None:
    case_id = hotline.open_case(callback=CallbackChoice.NONE)
    with hotline.session() as s:
        assert s.scalar(select(func.count()).select_from(Callback).where(Callback.case_id == case_id)) == 0
        assert s.scalar(select(func.count()).select_from(Reminder).where(Reminder.case_id == case_id)) == 0
        case = s.get(Case, case_id)
        assert case is not None
        assert open_callback(s, case, hotline.settings, WED_10) is None


def test_a_call_through_the_webhooks_opens_the_callback_and_its_reminders(
    hotline: Hotline, new_caller: Callable[..., TwilioCaller]
) -> None:
    caller = new_caller()
    walk(caller, *FULL_CALL, Recorded(), "1")  # violence, Bangkok, call back this number, sent
    anonymous = new_caller()
    walk(anonymous, "1", "10", "1", "3", Recorded(), "1")  # the same, anonymous
    with hotline.session() as s:
        cases = {c.call.call_sid: c for c in s.scalars(select(Case))}
        reported, hidden = cases[caller.call_sid], cases[anonymous.call_sid]
        callback = s.scalar(select(Callback).where(Callback.case_id == reported.id))
        assert callback is not None and callback.state == CallbackState.PENDING
        calendar = hotline.settings.calendar_for("10")
        assert callback.due_at == calendar.add(reported.created_at, 60)
        kinds = set(s.scalars(select(Reminder.kind).where(Reminder.case_id == reported.id)))
        assert {K.AT_DUE, K.ESCALATE_HEAD, K.ESCALATE_PARENT} <= kinds
        assert s.scalar(select(Callback).where(Callback.case_id == hidden.id)) is None


# ---- moving with the case ---------------------------------------------------------------------------------


def test_the_callback_and_its_unsent_reminders_follow_the_case(hotline: Hotline) -> None:
    case_id = hotline.open_case(province=None, at=bkk(25, 10))  # no province: the IVR leaves it at central
    central = _office_id(hotline, CENTRAL_OFFICE_CODE)
    assert {r.office_id for r in hotline.reminders(case_id)} == {central}  # central is its own parent
    hotline.sweep(bkk(25, 10, 31))  # BEFORE_DUE is sent at central: it stays where it was sent
    hotline.route(case_id, "50", at=bkk(25, 10, 40))
    by_kind = {ReminderKind(r.kind): r for r in hotline.reminders(case_id)}
    assert by_kind[K.BEFORE_DUE].office_id == central and by_kind[K.BEFORE_DUE].sent_at is not None
    assert by_kind[K.AT_DUE].office_id == by_kind[K.ESCALATE_HEAD].office_id == hotline.offices["50"]
    assert by_kind[K.ESCALATE_PARENT].office_id == central
    assert hotline.callback(case_id).office_id == hotline.offices["50"]

    # Chiang Mai forwards it to its district Mueang (5001): the district's staff, and Chiang Mai above.
    with get_database(hotline.app).session() as s:
        case = s.get(Case, case_id)
        district = s.get(Office, hotline.offices["5001"])
        assert case is not None and district is not None
        at = lambda: bkk(25, 10, 45)  # noqa: E731
        workflow.summarise(s, case, hotline.user(s, "op50"), "สรุป", HazardGroup.VIOLENCE, clock=at)
        p = workflow.propose_forwarding(s, case, hotline.user(s, "op50"), to_office=district, clock=at)
        workflow.decide_proposal(s, p, hotline.user(s, "head50"), approve=True, clock=at)
    by_kind = {ReminderKind(r.kind): r for r in hotline.reminders(case_id)}
    assert by_kind[K.AT_DUE].office_id == by_kind[K.ESCALATE_HEAD].office_id == hotline.offices["5001"]
    assert by_kind[K.ESCALATE_PARENT].office_id == hotline.offices["50"]
    assert hotline.callback(case_id).due_at == bkk(25, 11)  # the promise made to the caller stands
    assert hotline.events(case_id) == ["callback_scheduled", "callback_moved", "callback_moved"]
    hotline.sweep(bkk(25, 11))
    assert hotline.recipients(case_id, "at_due") == {"op5001"}


def test_a_draft_reminds_the_call_centre_that_holds_it(hotline: Hotline) -> None:
    case_id = hotline.open_case(province="50", at=bkk(25, 10))  # at Chiang Mai, but a draft
    hotline.sweep(bkk(25, 11))
    # The call centre sees drafts, Chiang Mai does not yet: its agents and heads hear it.
    assert hotline.recipients(case_id, "at_due") == {"agent", "headc"}
    hotline.route(case_id, "50", at=bkk(25, 11, 5))
    hotline.sweep(bkk(25, 11, 30))
    assert hotline.recipients(case_id, "escalate_head") == {"head50"}


def test_responsible_users_are_the_offices_operators_and_heads(hotline: Hotline) -> None:
    central_id = _office_id(hotline, CENTRAL_OFFICE_CODE)
    with hotline.session() as s:
        chiang_mai = s.get(Office, hotline.offices["50"])
        central = s.get(Office, central_id)
        assert chiang_mai is not None and central is not None
        assert {u.username for u in responsible_users(s, chiang_mai)} == {"op50", "op50b", "head50"}
        assert {u.username for u in responsible_users(s, central)} == {"agent", "headc"}


# ---- attempts and outcomes ---------------------------------------------------------------------------------


def test_reached_closes_the_callback_and_stops_its_reminders(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "50")
    attempt = hotline.attempt(case_id, "op50", bkk(25, 10, 20))
    callback = hotline.callback(case_id)
    assert callback.state == CallbackState.CALLING and callback.assignee_id == hotline.users["op50"]
    hotline.outcome(attempt, AttemptOutcome.REACHED, bkk(25, 10, 25))
    callback = hotline.callback(case_id)
    assert callback.state == CallbackState.REACHED and callback.attempts == 1
    assert callback.closed_at == bkk(25, 10, 25) and callback.closed_by == hotline.users["op50"]
    assert hotline.pending(case_id) == {}
    assert all(r.cancelled_at == bkk(25, 10, 25) for r in hotline.reminders(case_id))
    assert hotline.sweep(bkk(26, 16)).stats.sent == 0
    assert hotline.notifications(case_id) == []
    assert hotline.events(case_id)[-2:] == ["callback_attempt", "callback_reached"]


def test_failed_attempts_open_new_rounds_then_give_up_at_the_maximum(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "50")
    assert hotline.settings.max_attempts == 3
    first = hotline.attempt(case_id, "op50", bkk(25, 10, 50))
    hotline.outcome(first, AttemptOutcome.NO_ANSWER, bkk(25, 10, 51))
    callback = hotline.callback(case_id)
    assert (callback.state, callback.attempts, callback.round) == (CallbackState.PENDING, 1, 1)
    assert callback.due_at == bkk(25, 11, 51) and callback.first_due_at == bkk(25, 11)
    assert hotline.pending(case_id) == {
        (1, K.BEFORE_DUE): bkk(25, 11, 21),
        (1, K.AT_DUE): bkk(25, 11, 51),
        (1, K.ESCALATE_HEAD): bkk(25, 12, 21),
        (1, K.ESCALATE_PARENT): bkk(25, 14, 21),
    }
    assert {r.kind for r in hotline.reminders(case_id) if r.round == 0 and r.cancelled_at} == set(K)
    # The retry is announced to whoever took the callback.
    assert hotline.recipients(case_id, "callback_retry") == {"op50"}

    second = hotline.attempt(case_id, "op50b", bkk(25, 12))
    hotline.outcome(second, AttemptOutcome.BUSY, bkk(25, 12, 1))
    assert (hotline.callback(case_id).attempts, hotline.callback(case_id).round) == (2, 2)
    # Round 2's due-soon moment (12:31) is still ahead; round 1's rows are cancelled.
    assert set(hotline.pending(case_id)) == {(2, k) for k in K}

    third = hotline.attempt(case_id, "op50", bkk(25, 13))
    hotline.outcome(third, AttemptOutcome.VOICEMAIL, bkk(25, 13, 2))
    callback = hotline.callback(case_id)
    assert (callback.state, callback.attempts) == (CallbackState.GAVE_UP, 3)
    assert callback.closed_at == bkk(25, 13, 2) and hotline.pending(case_id) == {}
    assert hotline.recipients(case_id, "callback_gave_up") == {"head50"}
    assert hotline.events(case_id).count("callback_retry") == 2
    assert hotline.events(case_id)[-1] == "callback_gave_up"
    with pytest.raises(InvalidInput):
        hotline.attempt(case_id, "op50", bkk(25, 14))


def test_an_unreachable_operator_counts_nothing(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "50")
    attempt = hotline.attempt(case_id, "op50", bkk(25, 10, 20))
    before = hotline.pending(case_id)
    hotline.outcome(attempt, AttemptOutcome.OPERATOR_UNREACHABLE, bkk(25, 10, 21))
    callback = hotline.callback(case_id)
    assert (callback.state, callback.attempts, callback.round) == (CallbackState.PENDING, 0, 0)
    assert hotline.pending(case_id) == before
    assert hotline.events(case_id)[-1] == "callback_operator_unreachable"


def test_recording_an_outcome_twice_changes_nothing_the_second_time(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "50")
    attempt = hotline.attempt(case_id, "op50", bkk(25, 10, 20))
    hotline.outcome(attempt, AttemptOutcome.BRIDGING, bkk(25, 10, 20))  # progress: nothing counted
    for _ in range(3):  # Twilio retries the status callback
        hotline.outcome(attempt, AttemptOutcome.NO_ANSWER, bkk(25, 10, 21))
    hotline.outcome(attempt, AttemptOutcome.BUSY, bkk(25, 10, 22))  # a late, different one: too late
    hotline.outcome(attempt, AttemptOutcome.BRIDGING, bkk(25, 10, 23))  # progress after the end: ignored
    callback = hotline.callback(case_id)
    assert (callback.attempts, callback.round) == (1, 1)
    with hotline.session() as s:
        row = s.get(CallbackAttempt, attempt)
        assert row is not None and row.outcome == AttemptOutcome.NO_ANSWER and row.ended_at == bkk(25, 10, 21)
        assert s.scalar(select(func.count()).select_from(Reminder).where(Reminder.case_id == case_id)) == 8
    assert hotline.events(case_id).count("callback_retry") == 1
    assert len([n for n in hotline.notifications(case_id) if n.kind == "callback_retry"]) == 1


def test_staff_log_a_callback_by_hand_or_close_it_with_a_reason(hotline: Hotline) -> None:
    reached = hotline.open_case(at=bkk(25, 10))
    hotline.route(reached, "50")

    def log(who: str, outcome: AttemptOutcome, note: str) -> Callable[[Session, Case, Callback], object]:
        return lambda s, case, _cb: log_by_hand(
            s, case, hotline.user(s, who), outcome, note, hotline.settings, bkk(25, 10, 30)
        )

    with pytest.raises(NotPermitted):
        hotline.act(reached, log("op10", AttemptOutcome.REACHED, "โทรจากโต๊ะ"))  # another province
    with pytest.raises(InvalidInput):
        hotline.act(reached, log("op50", AttemptOutcome.REACHED, "  "))
    with pytest.raises(InvalidInput):
        hotline.act(reached, log("op50", AttemptOutcome.OPERATOR_UNREACHABLE, "x"))
    hotline.act(reached, log("op50", AttemptOutcome.NO_ANSWER, "โทรจากโทรศัพท์สำนักงาน ไม่มีผู้รับสาย"))
    assert (hotline.callback(reached).attempts, hotline.callback(reached).round) == (1, 1)
    hotline.act(reached, log("op50b", AttemptOutcome.REACHED, "ผู้แจ้งโทรเข้ามาเอง ได้พูดคุยแล้ว"))
    callback = hotline.callback(reached)
    assert callback.state == CallbackState.REACHED and callback.closed_by == hotline.users["op50b"]
    with hotline.session() as s:
        outcomes = list(s.scalars(select(CallbackAttempt.outcome).where(CallbackAttempt.case_id == reached)))
        assert outcomes == [AttemptOutcome.NO_ANSWER, AttemptOutcome.LOGGED]
        # The case events carry the outcome, never the note (it may hold a number).
        details = [e.detail for e in s.scalars(select(CaseEvent).where(CaseEvent.case_id == reached))]
        assert "ผู้แจ้ง" not in json.dumps(details, ensure_ascii=False)

    cancelled = hotline.open_case(at=bkk(25, 10))
    hotline.route(cancelled, "50")

    def cancel(who: str, reason: str) -> Callable[[Session, Case, Callback], object]:
        return lambda s, case, _cb: cancel_callback(s, case, hotline.user(s, who), reason, bkk(25, 10, 40))

    with pytest.raises(InvalidInput):
        hotline.act(cancelled, cancel("op50", ""))
    with pytest.raises(NotPermitted):
        hotline.act(cancelled, cancel("action50", "ไม่ใช่หน้าที่"))  # SC-Action, not assigned
    hotline.act(cancelled, cancel("op50", "ผู้แจ้งแจ้งว่าไม่ต้องโทรกลับแล้ว"))
    callback = hotline.callback(cancelled)
    assert callback.state == CallbackState.CANCELLED and hotline.pending(cancelled) == {}
    with pytest.raises(InvalidInput):
        hotline.act(cancelled, cancel("op50", "อีกครั้ง"))
    assert hotline.events(cancelled)[-1] == "callback_cancelled"


def test_resolving_never_closes_a_callback_by_itself(hotline: Hotline) -> None:
    """Resolving with the callback open is refused (issue 14): the promise stands until closed by hand."""
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "50")
    with get_database(hotline.app).session() as s:
        case = s.get(Case, case_id)
        assert case is not None
        at = lambda: bkk(25, 10, 10)  # noqa: E731
        op50, head50, action50 = (hotline.user(s, n) for n in ("op50", "head50", "action50"))
        workflow.summarise(s, case, op50, "สรุป", HazardGroup.VIOLENCE, clock=at)
        p = workflow.propose_forwarding(s, case, op50, to_user=action50, clock=at)
        workflow.decide_proposal(s, p, head50, approve=True, clock=at)
        workflow.acknowledge(s, case, action50, clock=at)
        with pytest.raises(InvalidInput, match="still waiting for a call back"):
            workflow.resolve(s, case, action50, "ดำเนินการแล้ว", clock=at)
        assert case.status == CaseStatus.IN_ACTION
    assert hotline.callback(case_id).state == CallbackState.PENDING
    assert len(hotline.pending(case_id)) == 4
    hotline.sweep(bkk(25, 11))
    assert hotline.recipients(case_id, "at_due") == {"op50", "op50b", "head50"}


# ---- the sweep ---------------------------------------------------------------------------------------------


def test_the_sweep_sends_each_due_reminder_once_to_the_right_people(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "50")
    assert hotline.sweep(bkk(25, 10, 29)).stats.sent == 0
    assert hotline.sweep(bkk(25, 10, 30)).stats.sent == 1
    assert hotline.sweep(bkk(25, 10, 30)).stats.sent == 0  # once
    assert hotline.recipients(case_id, "before_due") == {"op50", "op50b", "head50"}
    hotline.sweep(bkk(25, 11))
    hotline.sweep(bkk(25, 11, 30))
    assert hotline.recipients(case_id, "at_due") == {"op50", "op50b", "head50"}
    assert hotline.recipients(case_id, "escalate_head") == {"head50"}
    hotline.sweep(bkk(25, 13, 30))
    assert hotline.recipients(case_id, "escalate_parent") == {"headc"}  # the central office's head
    sent = hotline.reminders(case_id)
    assert all(r.sent_at is not None and not r.late for r in sent)
    notes = hotline.notifications(case_id)
    assert {n.reminder_id for n in notes} == {r.id for r in sent}
    assert len({n.dedupe_key for n in notes}) == len(notes) == 3 + 3 + 1 + 1
    # A message carries the reference and a link, never the reporter's number.
    with hotline.session() as s:
        case = s.get(Case, case_id)
        assert case is not None and case.callback_number_enc
        number = hotline.cipher.decrypt(case.callback_number_enc)
        for n in notes:
            assert n.link == f"/console/cases/{case_id}"
            assert case.reference[:4] in n.subject and case.reference[4:] in n.body
            assert number not in n.body and number[3:] not in n.body and "0" + number[3:] not in n.body


def test_a_reminder_sent_long_after_its_time_is_marked_late(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "50")
    # The worker was down from 10:15 to 11:10: BEFORE_DUE and AT_DUE are sent once, marked late.
    sweeper = hotline.sweep(bkk(25, 11, 10))
    assert (sweeper.stats.sent, sweeper.stats.late) == (2, 2)
    by_kind = {ReminderKind(r.kind): r for r in hotline.reminders(case_id)}
    assert by_kind[K.AT_DUE].late and by_kind[K.AT_DUE].sent_at == bkk(25, 11, 10)
    at_due = [n for n in hotline.notifications(case_id) if n.kind == "at_due"]
    assert at_due and all("ส่งช้ากว่ากำหนด 10 นาที" in n.body for n in at_due)
    # On time (within late_after_seconds = 60 s) is not late.
    hotline.sweep(bkk(25, 11, 30) + timedelta(seconds=59))
    assert not {ReminderKind(r.kind): r for r in hotline.reminders(case_id)}[K.ESCALATE_HEAD].late


def test_the_sweep_works_in_short_batches_and_skips_closed_callbacks(hotline: Hotline) -> None:
    ids = [hotline.open_case(at=bkk(25, 10)) for _ in range(7)]
    for case_id in ids:
        hotline.route(case_id, "50")
    closed = ids[0]
    with get_database(hotline.app).session() as s:
        # A callback closed behind the sweep's back (its reminders not cancelled): nothing is sent.
        callback = s.scalar(select(Callback).where(Callback.case_id == closed))
        assert callback is not None
        callback.state = CallbackState.REACHED
    sweeper = hotline.sweep(bkk(25, 10, 30), batch=3)
    assert (sweeper.stats.sent, sweeper.stats.skipped, sweeper.stats.batches) == (6, 1, 3)
    assert hotline.pending(closed).keys() == {(0, K.AT_DUE), (0, K.ESCALATE_HEAD), (0, K.ESCALATE_PARENT)}
    assert hotline.notifications(closed) == []


def test_a_sweep_with_a_horizon_waits_for_what_falls_due_within_it(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "50")
    now = [bkk(25, 10, 29) + timedelta(seconds=59)]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += timedelta(seconds=seconds)

    sweeper = ReminderSweep(
        get_database(hotline.app), hotline.settings, clock=lambda: now[0], horizon_s=1.5, sleep=sleep
    )
    assert sweeper.sweep() == 1  # BEFORE_DUE fell due one second into the run, and went out then
    assert slept == [1.0]
    by_kind = {ReminderKind(r.kind): r for r in hotline.reminders(case_id)}
    assert by_kind[K.BEFORE_DUE].sent_at == bkk(25, 10, 30)


# ---- what staff see ---------------------------------------------------------------------------------------


def test_the_export_gives_the_due_time_in_utc_and_the_state(hotline: Hotline) -> None:
    with_callback = hotline.open_case(at=bkk(25, 10))
    anonymous = hotline.open_case(callback=CallbackChoice.NONE, at=bkk(25, 10))
    result = hotline.app.test_cli_runner().invoke(args=["cases", "export", "--format", "json"])
    assert result.exit_code == 0, result.output
    with hotline.session() as s:
        refs = {s.get(Case, i).reference: i for i in (with_callback, anonymous)}  # type: ignore[union-attr]
    records = {r["reference"]: r for r in json.loads(result.stdout) if r["reference"] in refs}
    by_id = {refs[k]: v for k, v in records.items()}
    assert by_id[with_callback]["callback_due_at"] == "2026-11-25T04:00:00Z"
    assert by_id[with_callback]["callback_state"] == "pending"
    assert by_id[anonymous]["callback_due_at"] is None and by_id[anonymous]["callback_state"] is None


def test_the_case_page_and_the_queue_show_the_due_time_and_who_is_responsible(hotline: Hotline) -> None:
    due_soon = hotline.open_case(at=bkk(25, 10))
    overdue = hotline.open_case(at=bkk(25, 9))
    for case_id in (due_soon, overdue):
        hotline.route(case_id, "50")
    console_clock.install(hotline.app, lambda: bkk(25, 10, 30))
    op = signed_in(hotline, "op50")

    page = text(op.get(f"/console/cases/{due_soon}"))
    assert 'id="callback"' in page
    assert "25 พ.ย. 2569 11:00" in page  # Thai date, Buddhist Era year, Bangkok time
    assert "รอโทรกลับ" in page  # waiting to be called back
    assert "สมชาย ใจดี" in page and "วิภา ตั้งใจ" in page and "ประเสริฐ หัวหน้า" in page
    overdue_page = text(op.get(f"/console/cases/{overdue}"))
    assert "เลยกำหนด" in overdue_page

    queue = text(op.get("/console/?callback=overdue"))
    assert f"/console/cases/{overdue}" in queue and f"/console/cases/{due_soon}" not in queue
    everything = text(op.get("/console/"))
    assert f"/console/cases/{due_soon}" in everything and "25 พ.ย. 2569 11:00" in everything

    # Someone takes it: they are who is responsible now, on the page and in the queue.
    hotline.attempt(due_soon, "op50b", bkk(25, 10, 31))
    assert "วิภา ตั้งใจ" in text(op.get("/console/"))


def test_an_operator_closes_a_callback_from_the_case_page(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "50")
    console_clock.install(hotline.app, lambda: bkk(25, 10, 30))
    outsider = signed_in(hotline, "op10")
    assert outsider.get(f"/console/cases/{case_id}").status_code == 404
    op = signed_in(hotline, "op50")
    assert "callback-cancel-reason" in text(op.get(f"/console/cases/{case_id}"))
    response = post(op, f"/console/cases/{case_id}/callback/cancel", reason="")
    assert response.status_code == 302
    assert hotline.callback(case_id).state == CallbackState.PENDING
    post(op, f"/console/cases/{case_id}/callback/cancel", reason="ผู้แจ้งมาพบที่สำนักงานแล้ว")
    assert hotline.callback(case_id).state == CallbackState.CANCELLED
    page = text(op.get(f"/console/cases/{case_id}"))
    assert "callback-cancel-reason" not in page and "ผู้แจ้งมาพบที่สำนักงานแล้ว" in page


# ---- helpers ----------------------------------------------------------------------------------------------


def _office_id(hotline: Hotline, code: str) -> int:
    with hotline.session() as s:
        office_id = s.scalar(select(Office.id).where(Office.code == code))
        assert office_id is not None
        return office_id


def signed_in(hotline: Hotline, username: str) -> FlaskClient:
    client = hotline.app.test_client()
    assert login(client, username, hotline.password).status_code == 302
    return client


# ---- found in review: the taker, two clicks, a lost status callback, a number in a note -------------------


def test_a_callback_taken_at_central_goes_back_to_the_offices_operators_when_routed(hotline: Hotline) -> None:
    case_id = hotline.open_case(province="50", at=bkk(25, 10))
    attempt = hotline.attempt(case_id, "agent", bkk(25, 10, 5))  # the call centre tries while it is a draft
    hotline.outcome(attempt, AttemptOutcome.OPERATOR_UNREACHABLE, bkk(25, 10, 6))
    assert hotline.callback(case_id).assignee_id == hotline.users["agent"]
    hotline.route(case_id, "50", at=bkk(25, 10, 10))
    assert hotline.callback(case_id).assignee_id is None  # the agent may not call from Chiang Mai's case
    hotline.sweep(bkk(25, 11))
    assert "agent" not in hotline.recipients(case_id, "at_due")
    assert {"op50", "head50"} <= hotline.recipients(case_id, "at_due")


def test_a_second_attempt_while_one_is_under_way_is_refused_under_the_lock(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "50")
    hotline.attempt(case_id, "op50", bkk(25, 10, 20))
    with pytest.raises(InvalidInput):
        hotline.attempt(case_id, "op50b", bkk(25, 10, 21))  # the same moment, past the page's own check
    with hotline.session() as s:
        assert s.scalar(select(func.count()).select_from(CallbackAttempt)) == 1


def test_an_attempt_nobody_heard_back_about_is_ended_by_the_sweep(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "50")
    attempt = hotline.attempt(case_id, "op50", bkk(25, 10, 20))
    hotline.sweep(bkk(25, 10, 30))  # ten minutes: still under way
    assert hotline.callback(case_id).state == CallbackState.CALLING
    hotline.sweep(bkk(25, 10, 36))  # no status callback after fifteen minutes: it ended unheard
    callback = hotline.callback(case_id)
    assert (callback.state, callback.attempts) == (CallbackState.PENDING, 0)  # nothing counted
    with hotline.session() as s:
        row = s.get(CallbackAttempt, attempt)
        assert row is not None and row.outcome == AttemptOutcome.OPERATOR_UNREACHABLE and row.note
    hotline.attempt(case_id, "op50b", bkk(25, 10, 37))  # and a new attempt may start


def test_a_number_typed_into_a_by_hand_note_is_masked(hotline: Hotline) -> None:
    case_id = hotline.open_case(at=bkk(25, 10))
    hotline.route(case_id, "50")
    hotline.act(
        case_id,
        lambda s, case, _cb: log_by_hand(
            s,
            case,
            hotline.user(s, "op50"),
            AttemptOutcome.REACHED,
            "โทรจากโต๊ะไปที่ 081 234 5678 ได้คุยแล้ว",
            hotline.settings,
            bkk(25, 10, 30),
        ),
    )
    with hotline.session() as s:
        note = s.scalar(select(CallbackAttempt.note).where(CallbackAttempt.case_id == case_id))
    assert note is not None and note.startswith("โทรจากโต๊ะไปที่") and note.endswith("ได้คุยแล้ว")
    assert "234" not in note and "0812345678" not in note.replace(" ", "")
