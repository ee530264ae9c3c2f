"""The promise to call a reporter back: its due time, attempts, reminders and escalations, and their sweep.

Service functions flush and leave the commit to the caller, like cases.workflow; every change of a
callback writes a CaseEvent (no phone number, no transcript in it). Reminder rows are the truth: the
worker's ReminderSweep sends each one exactly once (see ReminderSweep).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cases import notifications
from cases.callback_settings import CallbackSettings
from cases.models import (
    CENTRAL_OFFICE_CODE,
    OPEN_CALLBACK_STATES,
    REPORTER_FAILURES,
    AttemptOutcome,
    Callback,
    CallbackAttempt,
    CallbackState,
    Case,
    CaseEvent,
    CaseStatus,
    Channel,
    Office,
    Reminder,
    ReminderKind,
)
from cases.staff import Role, RoleAssignment, User
from cases.texts import N_
from cases.workflow import InvalidInput, NotPermitted, may_reveal, roles_in
from infra.clock import Clock, as_utc, iso_utc, utcnow
from infra.db import Database
from infra.logs import mask_phones

log = logging.getLogger(__name__)
# Where app.py keeps the loaded CallbackSettings (app.extensions), for the console's views.
SETTINGS_KEY = "hotline.callbacks"

# The outcomes that end an attempt; the others (requested, ringing, bridging) only report progress.
FINAL_OUTCOMES = frozenset(
    {*REPORTER_FAILURES, AttemptOutcome.REACHED, AttemptOutcome.LOGGED, AttemptOutcome.OPERATOR_UNREACHABLE}
)
REACHED_OUTCOMES = frozenset({AttemptOutcome.REACHED, AttemptOutcome.LOGGED})
# What staff may log by hand: reached by other means (LOGGED; REACHED is taken to mean the same), or a
# failed try from another phone, which counts like one through the bridge.
BY_HAND_OUTCOMES = frozenset({AttemptOutcome.REACHED, AttemptOutcome.LOGGED, *REPORTER_FAILURES})
# Reminders for the responsible SC-Operators; the escalations go to heads.
OPERATOR_KINDS = (ReminderKind.BEFORE_DUE, ReminderKind.AT_DUE)
NOTE_LIMIT = 2000
MIN_WAIT_S = 0.05
# After this long an attempt nobody heard back about no longer blocks a new one (a lost status callback),
# and the reminder sweep ends it, so that the callback does not stay "calling" for ever.
STALE_ATTEMPT = timedelta(minutes=15)
UNDER_WAY = N_("A call-back for this case is already under way. Wait until it ends.")


# ---- who is responsible -------------------------------------------------------------------------------


def responsible_users(session: Session, office: Office) -> list[User]:
    """The office's SC-Operators (heads included), active ones; at the central office its agents too."""
    roles = [Role.OPERATOR, Role.HEAD]
    if office.code == CENTRAL_OFFICE_CODE:
        roles.append(Role.AGENT)
    return _people(session, office.id, roles)


def heads(session: Session, office: Office) -> list[User]:
    """The office's active head SC-Operators."""
    return _people(session, office.id, [Role.HEAD])


def _people(session: Session, office_id: int, roles: Sequence[Role]) -> list[User]:
    return list(
        session.scalars(
            select(User)
            .where(
                User.active,
                User.id.in_(
                    select(RoleAssignment.user_id).where(
                        RoleAssignment.office_id == office_id, RoleAssignment.role.in_(roles)
                    )
                ),
            )
            .order_by(User.display_name, User.id)
        )
    )


def holding_office(session: Session, case: Case, office_id: int) -> Office:
    """The office whose staff hear about the case: the call centre (central) while it is a draft.

    A draft already carries the office the IVR guessed from the province, but only the call centre sees
    it until an agent routes it (workflow.visibility): a reminder to the guessed office would link to a
    page its staff cannot open.
    """
    if case.status == CaseStatus.DRAFT:
        central = _central_office_id(session)
        if central is not None:
            office_id = central
    office = session.get(Office, office_id)
    assert office is not None
    return office


def _central_office_id(session: Session) -> int | None:
    """The central office's id, looked up once per session (the sweep asks for every draft)."""
    if "central_office_id" not in session.info:
        session.info["central_office_id"] = session.scalar(
            select(Office.id).where(Office.code == CENTRAL_OFFICE_CODE)
        )
    central: int | None = session.info["central_office_id"]
    return central


def _escalation_office_id(office: Office) -> int:
    """Where ESCALATE_PARENT goes: the parent office; the central office, which has none, to itself.

    The central office's own heads hear it again rather than nobody: the promise to a child is still
    open, and it is the last office that can keep it. The row is made for every case (the central office
    included), so that routing a case on from central finds all four rows to move.
    """
    return office.parent_id if office.parent_id is not None else office.id


# ---- opening and moving ---------------------------------------------------------------------------------


def open_callback(session: Session, case: Case, settings: CallbackSettings, now: datetime) -> Callback | None:
    """The callback of a case that asked for one, due by its hazard group's SLA; None for anonymous cases.

    Creates the Callback and its round-0 reminders, once per case (callbacks.case_id is unique; the
    caller opens it with the case). Runs inside the IVR's webhook: a few inserts in one flush, and no
    query (the case's office is already in the session).
    """
    if not case.callback_requested:
        return None
    office = case.office
    due = settings.callback_due(office.code, case.category, case.created_at)
    callback = Callback(
        case_id=case.id,
        office_id=office.id,
        state=CallbackState.PENDING,
        due_at=due,
        first_due_at=due,
        round=0,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(callback)
    session.flush()
    _schedule_round(session, callback, office, settings, now)
    _event(session, case, None, "callback_scheduled", now, {"due_at": iso_utc(due)})
    session.flush()
    return callback


def _schedule_round(
    session: Session, callback: Callback, office: Office, settings: CallbackSettings, now: datetime
) -> list[Reminder]:
    """The reminders of the callback's current round, from its due time in the office's working hours."""
    calendar = settings.calendar_for(office.code)
    due = callback.due_at
    head_at = calendar.add(due, settings.escalate_head_after_minutes)
    parent_at = calendar.add(head_at, settings.escalate_parent_after_minutes)
    times: list[tuple[ReminderKind, datetime, int]] = []
    before = calendar.subtract(due, settings.remind_before_minutes)
    if before > now and before < due:
        times.append((ReminderKind.BEFORE_DUE, before, office.id))
    times += [
        (ReminderKind.AT_DUE, due, office.id),
        (ReminderKind.ESCALATE_HEAD, head_at, office.id),
        (ReminderKind.ESCALATE_PARENT, parent_at, _escalation_office_id(office)),
    ]
    rows = [
        Reminder(
            callback_id=callback.id,
            case_id=callback.case_id,
            round=callback.round,
            kind=kind,
            due_at=at,
            office_id=office_id,
            late=False,
        )
        for kind, at, office_id in times
    ]
    session.add_all(rows)
    return rows


def follow_office(session: Session, case: Case, now: datetime | None = None) -> None:
    """The case moved to another office: its callback and unsent reminders move with it.

    Due times stay as they are (the promise was made when the case was opened); only whose staff hear
    the reminders changes, and who they are is looked up when each is sent.
    """
    callback = session.scalar(select(Callback).where(Callback.case_id == case.id))
    if callback is None:
        return
    when = now or utcnow()
    assignee = session.get(User, callback.assignee_id) if callback.assignee_id is not None else None
    if assignee is not None and not may_call_back(session, assignee, case):
        # Whoever took it before (the call centre, while it was a draft; the old office) may not call
        # from here: the office's SC-Operators are reminded instead, until one of them takes it.
        callback.assignee_id = None
        callback.updated_at = when
    if callback.office_id == case.office_id:
        session.flush()
        return
    office = session.get(Office, case.office_id)
    assert office is not None
    callback.office_id = office.id
    callback.updated_at = when
    pending = (
        Reminder.callback_id == callback.id,
        Reminder.sent_at.is_(None),
        Reminder.cancelled_at.is_(None),
    )
    session.execute(
        update(Reminder)
        .where(*pending, Reminder.kind != ReminderKind.ESCALATE_PARENT)
        .values(office_id=office.id)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Reminder)
        .where(*pending, Reminder.kind == ReminderKind.ESCALATE_PARENT)
        .values(office_id=_escalation_office_id(office))
        .execution_options(synchronize_session=False)
    )
    if callback.state in OPEN_CALLBACK_STATES:
        _event(session, case, None, "callback_moved", when, {"office": office.code})
    session.flush()


# ---- attempts and their outcomes ------------------------------------------------------------------------


def may_call_back(session: Session, user: User, case: Case) -> bool:
    """Who may call the reporter back or log a callback: those who may see the number.

    The case's SC-Operators and its assigned SC-Action staff (workflow.may_reveal), and while the case is
    a draft, the call centre's agents and SC-Operators (it is their case until they route it).
    """
    if not user.active:
        return False
    if case.status == CaseStatus.DRAFT:
        central = _central_office_id(session)
        return central is not None and bool({Role.AGENT, Role.OPERATOR} & roles_in(session, user, central))
    return may_reveal(session, user, case)


def start_attempt(session: Session, callback: Callback, operator: User, now: datetime) -> CallbackAttempt:
    """An operator starts calling the reporter back: the callback is CALLING until the outcome comes."""
    callback = _locked(session, callback.id)
    if callback.state not in OPEN_CALLBACK_STATES:
        raise InvalidInput("This callback is closed: there is nobody left to call back.")
    if callback.state == CallbackState.CALLING and session.scalar(
        select(CallbackAttempt.id).where(
            CallbackAttempt.callback_id == callback.id,
            CallbackAttempt.ended_at.is_(None),
            CallbackAttempt.started_at > now - STALE_ATTEMPT,
        )
    ):
        # Checked again under the row lock: two clicks at once must not ring the reporter twice.
        raise InvalidInput(UNDER_WAY)
    attempt = CallbackAttempt(
        callback_id=callback.id,
        case_id=callback.case_id,
        operator_id=operator.id,
        outcome=AttemptOutcome.REQUESTED,
        started_at=now,
    )
    session.add(attempt)
    callback.state = CallbackState.CALLING
    if callback.assignee_id is None:
        callback.assignee_id = operator.id  # whoever calls first is the one reminders go to from now on
    callback.updated_at = now
    session.flush()
    case = _case(session, callback)
    _event(session, case, operator, "callback_attempt", now, {"attempt": attempt.id})
    session.flush()
    return attempt


def record_outcome(
    session: Session,
    attempt: CallbackAttempt,
    outcome: AttemptOutcome,
    settings: CallbackSettings,
    now: datetime,
    *,
    duration_s: int | None = None,
) -> None:
    """What became of an attempt; a repeat (Twilio retries a status callback) changes nothing.

    The first final outcome of an attempt wins: the attempt row is updated only while it has none
    (a conditional UPDATE, so two deliveries at once on PostgreSQL cannot both count). REACHED (or
    LOGGED) closes the callback and cancels its reminders; a reporter-side failure counts an attempt and
    either opens a new round (a new due time, new reminders) or, at the maximum, gives up and tells the
    heads; OPERATOR_UNREACHABLE (the operator's own phone) puts the callback back to PENDING, counting
    nothing. Progress outcomes (ringing, bridging) only update the attempt.
    """
    if outcome not in FINAL_OUTCOMES:
        session.execute(
            update(CallbackAttempt)
            .where(CallbackAttempt.id == attempt.id, CallbackAttempt.ended_at.is_(None))
            .values(outcome=outcome)
        )
        session.flush()
        return
    won = session.execute(
        update(CallbackAttempt)
        .where(CallbackAttempt.id == attempt.id, CallbackAttempt.ended_at.is_(None))
        .values(outcome=outcome, ended_at=now, duration_s=duration_s)
    )
    if not getattr(won, "rowcount", 0):
        return  # this attempt already has its outcome
    session.refresh(attempt)
    callback = _locked(session, attempt.callback_id)
    case = _case(session, callback)
    operator = session.get(User, attempt.operator_id)
    detail: dict[str, Any] = {"attempt": attempt.id, "outcome": str(outcome)}
    callback.updated_at = now

    if outcome in REACHED_OUTCOMES:
        if callback.state == CallbackState.REACHED:
            return
        callback.attempts += 1
        _close(session, callback, CallbackState.REACHED, attempt.operator_id, now)
        _event(session, case, operator, "callback_reached", now, detail)
    elif outcome == AttemptOutcome.OPERATOR_UNREACHABLE:
        if callback.state == CallbackState.CALLING:
            callback.state = CallbackState.PENDING
        _event(session, case, operator, "callback_operator_unreachable", now, detail)
    elif callback.state not in OPEN_CALLBACK_STATES:
        _event(session, case, operator, "callback_failed", now, detail)  # closed meanwhile: counted nowhere
    else:
        callback.attempts += 1
        detail["attempts"] = callback.attempts
        if callback.attempts >= settings.max_attempts:
            _close(session, callback, CallbackState.GAVE_UP, None, now)
            _event(session, case, operator, "callback_gave_up", now, detail)
            _notify_gave_up(session, callback, case, settings, now)
        else:
            _cancel_reminders(session, callback, now)
            office = session.get(Office, callback.office_id)
            assert office is not None
            callback.round += 1
            callback.due_at = settings.calendar_for(office.code).add(now, settings.retry_after_minutes)
            callback.state = CallbackState.PENDING
            session.flush()
            _schedule_round(session, callback, office, settings, now)
            detail["due_at"] = iso_utc(callback.due_at)
            _event(session, case, operator, "callback_retry", now, detail)
            _notify_retry(session, callback, case, settings, now)
    session.flush()


def log_by_hand(
    session: Session,
    case: Case,
    actor: User,
    outcome: AttemptOutcome,
    note: str,
    settings: CallbackSettings,
    now: datetime,
) -> CallbackAttempt:
    """Staff log a callback made another way (their desk phone, the reporter called in): reached or not.

    Reached is kept as LOGGED and closes the callback; a failed try counts like one through the bridge.
    """
    if not may_call_back(session, actor, case):
        raise NotPermitted("Only the case's SC-Operators and assigned SC-Action staff can log its callback.")
    if outcome not in BY_HAND_OUTCOMES:
        raise InvalidInput("Choose what happened: reached, no answer, busy, voicemail or failed.")
    # Free text every viewer of the case reads: a number typed into it is masked like everywhere else.
    note = mask_phones(note.strip()[:NOTE_LIMIT])
    if not note:
        raise InvalidInput("Say how the reporter was called back.")
    callback = session.scalar(select(Callback).where(Callback.case_id == case.id))
    if callback is None:
        raise InvalidInput("This case has no callback: the reporter left no number.")
    if callback.state not in OPEN_CALLBACK_STATES:
        raise InvalidInput("This callback is closed: there is nobody left to call back.")
    final = AttemptOutcome.LOGGED if outcome == AttemptOutcome.REACHED else outcome
    attempt = CallbackAttempt(
        callback_id=callback.id,
        case_id=case.id,
        operator_id=actor.id,
        outcome=AttemptOutcome.REQUESTED,
        started_at=now,
        note=note,
    )
    session.add(attempt)
    session.flush()
    record_outcome(session, attempt, final, settings, now)
    return attempt


def cancel_callback(session: Session, case: Case, actor: User, reason: str, now: datetime) -> None:
    """Close an open callback without calling (the reporter called in again, …): the reason is kept.

    Resolving a case never does this by itself: a promise to call a child back stands until someone
    keeps it or decides, by hand and with a reason, that it no longer can be.
    """
    if not may_call_back(session, actor, case):
        raise NotPermitted("Only the case's SC-Operators and assigned SC-Action staff can log its callback.")
    reason = reason.strip()[:NOTE_LIMIT]
    if not reason:
        raise InvalidInput("Give a reason for closing the callback without calling.")
    callback = session.scalar(select(Callback).where(Callback.case_id == case.id))
    if callback is None:
        raise InvalidInput("This case has no callback: the reporter left no number.")
    callback = _locked(session, callback.id)
    if callback.state not in OPEN_CALLBACK_STATES:
        raise InvalidInput("This callback is closed: there is nobody left to call back.")
    _close(session, callback, CallbackState.CANCELLED, actor.id, now)
    _event(session, case, actor, "callback_cancelled", now, {"reason": reason[:200]})
    session.flush()


def _close(session: Session, callback: Callback, state: CallbackState, by: int | None, now: datetime) -> None:
    callback.state = state
    callback.closed_at = now
    callback.closed_by = by
    callback.updated_at = now
    _cancel_reminders(session, callback, now)


def _cancel_reminders(session: Session, callback: Callback, now: datetime) -> None:
    session.execute(
        update(Reminder)
        .where(
            Reminder.callback_id == callback.id,
            Reminder.sent_at.is_(None),
            Reminder.cancelled_at.is_(None),
        )
        .values(cancelled_at=now)
        .execution_options(synchronize_session=False)
    )


def _locked(session: Session, callback_id: int) -> Callback:
    """The callback, re-read and row-locked on PostgreSQL (changes to one callback go one at a time)."""
    callback = session.get(Callback, callback_id, with_for_update=True, populate_existing=True)
    assert callback is not None
    return callback


def _case(session: Session, callback: Callback) -> Case:
    case = session.get(Case, callback.case_id)
    assert case is not None
    return case


def _event(
    session: Session, case: Case, actor: User | None, action: str, now: datetime, detail: dict[str, Any]
) -> None:
    session.add(
        CaseEvent(
            case_id=case.id,
            at=now,
            actor_id=actor.id if actor else None,
            action=action,
            from_status=None,
            to_status=None,
            detail=detail,
        )
    )


# ---- notifications --------------------------------------------------------------------------------------


def _params(case: Case, callback: Callback, settings: CallbackSettings, **extra: str) -> dict[str, str]:
    """What a message may say: the reference and times; never the reporter's number or words."""
    params = {
        "reference": case.reference,
        "due_at": iso_utc(callback.due_at),  # notify() writes it in the reader's language and time zone
        "attempts": str(callback.attempts),
        "max_attempts": str(settings.max_attempts),
    }
    params.update(extra)
    return params


def _channels(settings: CallbackSettings, kind: ReminderKind) -> tuple[Channel, ...]:
    return tuple(settings.channels.get(kind, (Channel.CONSOLE,)))


def _notify_retry(
    session: Session, callback: Callback, case: Case, settings: CallbackSettings, now: datetime
) -> None:
    office = holding_office(session, case, callback.office_id)
    users = _operators_for(session, callback, office)
    notifications.notify(
        session,
        dedupe=f"callback:{callback.id}:retry:{callback.round}",
        kind="callback_retry",
        case=case,
        users=users,
        office=office,
        channels=_channels(settings, ReminderKind.AT_DUE),
        params=_params(case, callback, settings),
        link=case_link(case),
        now=now,
    )


def _notify_gave_up(
    session: Session, callback: Callback, case: Case, settings: CallbackSettings, now: datetime
) -> None:
    office = holding_office(session, case, callback.office_id)
    notifications.notify(
        session,
        dedupe=f"callback:{callback.id}:gave_up",
        kind="callback_gave_up",
        case=case,
        users=_heads_up_the_line(session, office),
        office=office,
        channels=_channels(settings, ReminderKind.ESCALATE_HEAD),
        params=_params(case, callback, settings),
        link=case_link(case),
        now=now,
    )


def case_link(case: Case) -> str:
    """The console page of a case (notify() makes it absolute for e-mail, SMS and LINE)."""
    return f"/console/cases/{case.id}"


def _operators_for(session: Session, callback: Callback, office: Office) -> list[User]:
    """Who hears an operator reminder: whoever took the callback, else the office's SC-Operators."""
    if callback.assignee_id is not None:
        assignee = session.get(User, callback.assignee_id)
        if assignee is not None and assignee.active:
            return [assignee]
    return responsible_users(session, office)


def _heads_up_the_line(session: Session, office: Office) -> list[User]:
    """The office's heads; an office with none escalates to the next office up that has some."""
    seen: set[int] = set()
    current: Office | None = office
    while current is not None and current.id not in seen:
        seen.add(current.id)
        found = heads(session, current)
        if found:
            return found
        current = session.get(Office, current.parent_id) if current.parent_id else None
    return []


# ---- the sweep --------------------------------------------------------------------------------------------


@dataclass
class SweepStats:
    """What the last sweep did (the benchmark reads it)."""

    sent: int = 0
    late: int = 0
    skipped: int = 0  # due rows whose callback had closed: cancelled instead of sent
    batches: int = 0
    busy_s: float = 0.0  # time spent in the batches' transactions (not waiting for what falls due)


class ReminderSweep:
    """The worker's reminder sweep: every due, unsent, uncancelled reminder is sent exactly once.

    Idempotent, and safe with several workers and across a kill. Each batch is ONE transaction that
    picks due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL: a second worker skips the rows this one
    holds and, once it commits, sees them sent; SQLite's BEGIN IMMEDIATE serialises the workers), sets
    each row's `sent_at` with a conditional UPDATE (`WHERE sent_at IS NULL`), and inserts its
    notifications (deduplicated on `reminder:<id>`), then commits. The marker and the messages commit
    together: a worker killed before the commit leaves the row due (sent again, once, after restart), a
    commit leaves both. Nothing is leased for later, so claimed_until/claimed_by stay unused here.

    Batches are short (`batch` rows) so that on SQLite the web app's webhooks, which share the write
    lock, never wait long; with `pause_s`, a run that has more due than one batch lets go of the lock
    that long between batches. SQLite's lock is not fair between processes: a webhook waiting in its
    busy handler sleeps 1, 2, 5, … 25 ms between tries and would miss back-to-back batches entirely
    (a burst of 1,000 held one webhook 0.4 s in the benchmark). With `horizon_s` (the worker passes
    most of its sweep interval) one run also waits for reminders falling due before the next run and
    sends each on time, instead of up to an interval late.
    """

    def __init__(
        self,
        db: Database,
        settings: CallbackSettings,
        *,
        clock: Clock = utcnow,
        batch: int = 100,
        pause_s: float = 0.0,
        horizon_s: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db, self.settings = db, settings
        self.clock, self.batch, self.pause_s, self.horizon_s, self.sleep = (
            clock,
            batch,
            pause_s,
            horizon_s,
            sleep,
        )
        self.stats = SweepStats()

    def sweep(self) -> int:
        """Send what is due (and, with a horizon, what falls due before it ends); the number sent."""
        self.stats = SweepStats()
        self._end_stale_attempts()
        deadline = self.clock() + timedelta(seconds=self.horizon_s)
        while True:
            while self._batch():
                if self.pause_s > 0:
                    self.sleep(self.pause_s)
            if self.horizon_s <= 0:
                break
            upcoming = self._next_due()
            now = self.clock()
            if upcoming is None or upcoming >= deadline:
                break
            # At least a moment: due rows another worker holds (SKIP LOCKED) are not ours to spin on.
            self.sleep(max((upcoming - now).total_seconds(), MIN_WAIT_S))
        if self.stats.sent or self.stats.skipped:
            log.info(
                "reminders: %d sent (%d late), %d of closed callbacks cancelled; %.0f ms in %d batches",
                self.stats.sent,
                self.stats.late,
                self.stats.skipped,
                self.stats.busy_s * 1000,
                self.stats.batches,
            )
        return self.stats.sent

    def _end_stale_attempts(self) -> None:
        """Attempts nobody heard back about (Twilio does not retry a lost status callback) end here as
        OPERATOR_UNREACHABLE, which counts nothing against the reporter: the callback is due again and
        its reminders go on, instead of it staying "calling" for ever."""
        now = self.clock()
        with self.db.reading() as conn:
            stale = list(
                conn.scalars(
                    select(CallbackAttempt.id).where(
                        CallbackAttempt.ended_at.is_(None), CallbackAttempt.started_at < now - STALE_ATTEMPT
                    )
                )
            )
        for attempt_id in stale:
            with self.db.writing() as session:
                attempt = session.get(CallbackAttempt, attempt_id, with_for_update=True)
                if attempt is None or attempt.ended_at is not None:
                    continue
                attempt.note = (attempt.note or "no word from Twilio about this call")[:NOTE_LIMIT]
                record_outcome(session, attempt, AttemptOutcome.OPERATOR_UNREACHABLE, self.settings, now)
                log.warning("call-back attempt %d: no outcome after %s, ended", attempt_id, STALE_ATTEMPT)

    def _next_due(self) -> datetime | None:
        # Read-only: on SQLite it must not take the write lock the webhooks queue for.
        with self.db.reading() as conn:
            value = conn.scalar(
                select(func.min(Reminder.due_at)).where(
                    Reminder.sent_at.is_(None), Reminder.cancelled_at.is_(None)
                )
            )
        return as_utc(value) if value is not None else None

    def _batch(self) -> bool:
        """One transaction over up to `batch` due rows; True when there may be more due now."""
        started = time.perf_counter()
        try:
            return self._transaction()
        finally:
            self.stats.busy_s += time.perf_counter() - started

    def _transaction(self) -> bool:
        with self.db.writing() as session:
            now = self.clock()
            rows = list(
                session.scalars(
                    select(Reminder)
                    .where(
                        Reminder.sent_at.is_(None), Reminder.cancelled_at.is_(None), Reminder.due_at <= now
                    )
                    .order_by(Reminder.due_at, Reminder.id)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
            )
            if not rows:
                return False
            self.stats.batches += 1
            self._send(session, rows, now)
        return len(rows) == self.batch

    def _send(self, session: Session, rows: Sequence[Reminder], now: datetime) -> None:
        callbacks = _by_id(session, Callback, {r.callback_id for r in rows})
        cases = _by_id(session, Case, {r.case_id for r in rows})
        people: dict[tuple[str, int], list[User]] = {}
        late_after = timedelta(seconds=self.settings.late_after_seconds)
        sending = []
        for reminder in rows:
            if callbacks[reminder.callback_id].state in OPEN_CALLBACK_STATES:
                sending.append(reminder)
            else:
                # The callback closed while this row was due: it is cancelled, not sent.
                reminder.cancelled_at = now
                self.stats.skipped += 1
        # The sent marker, set only where it is not yet: the rows this transaction marks are the ones it
        # sends (under the row locks every row qualifies; the condition makes it true by construction).
        marked = set(
            session.scalars(
                update(Reminder)
                .where(Reminder.id.in_([r.id for r in sending]), Reminder.sent_at.is_(None))
                .values(sent_at=now, late=Reminder.due_at < now - late_after)
                .returning(Reminder.id)
                .execution_options(synchronize_session=False)
            )
        )
        for reminder in sending:
            if reminder.id not in marked:
                continue
            callback, case = callbacks[reminder.callback_id], cases[reminder.case_id]
            late = now - reminder.due_at > late_after
            office = holding_office(session, case, reminder.office_id)
            kind = ReminderKind(reminder.kind)
            if kind in OPERATOR_KINDS:
                if callback.assignee_id is not None:
                    users = _operators_for(session, callback, office)
                else:
                    key = ("operators", office.id)
                    if key not in people:
                        people[key] = responsible_users(session, office)
                    users = people[key]
            else:
                key = ("heads", office.id)
                if key not in people:
                    people[key] = _heads_up_the_line(session, office)
                users = people[key]
            behind = math.floor((now - reminder.due_at).total_seconds() / 60)
            extra = {"late": "1" if late else "", "late_minutes": str(behind)}
            notifications.notify(
                session,
                dedupe=f"reminder:{reminder.id}",
                kind=str(kind),
                case=case,
                users=users,
                office=office,
                channels=_channels(self.settings, kind),
                params=_params(case, callback, self.settings, **extra),
                link=case_link(case),
                now=now,
                reminder_id=reminder.id,
            )
            self.stats.sent += 1
            self.stats.late += late
        session.flush()


def _by_id(session: Session, model: Any, ids: Iterable[int]) -> dict[int, Any]:
    return {row.id: row for row in session.scalars(select(model).where(model.id.in_(list(ids))))}
