"""The promise itself: opened with the case, its rounds of reminders, moved with the case, closed."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cases.access import may_call_back
from cases.callbacks.people import escalation_office_id
from cases.callbacks.settings import CallbackSettings
from cases.models import (
    OPEN_CALLBACK_STATES,
    Callback,
    CallbackState,
    Case,
    CaseEvent,
    Office,
    Reminder,
    ReminderKind,
)
from cases.staff import User
from cases.texts import N_
from cases.workflow import InvalidInput, NotPermitted
from infra.clock import iso_utc, utcnow

log = logging.getLogger(__name__)
NOTE_LIMIT = 2000


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
    schedule_round(session, callback, office, settings, now)
    callback_event(session, case, None, "callback_scheduled", now, {"due_at": iso_utc(due)})
    session.flush()
    return callback


def schedule_round(
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
        (ReminderKind.ESCALATE_PARENT, parent_at, escalation_office_id(office)),
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
        .values(office_id=escalation_office_id(office))
        .execution_options(synchronize_session=False)
    )
    if callback.state in OPEN_CALLBACK_STATES:
        callback_event(session, case, None, "callback_moved", when, {"office": office.code})
    session.flush()


def cancel_callback(session: Session, case: Case, actor: User, reason: str, now: datetime) -> None:
    """Close an open callback without calling (the reporter called in again, …): the reason is kept.

    Resolving a case never does this by itself: a promise to call a child back stands until someone
    keeps it or decides, by hand and with a reason, that it no longer can be (the resolve form asks for
    that reason in the same step: close_before_resolving).
    """
    require_may_call_back(session, actor, case)
    reason = reason.strip()[:NOTE_LIMIT]
    if not reason:
        raise InvalidInput(N_("Give a reason for closing the callback without calling."))
    callback = open_callback_of(session, case)
    close_callback(session, callback, CallbackState.CANCELLED, actor.id, now)
    callback_event(session, case, actor, "callback_cancelled", now, {"reason": reason[:200]})
    session.flush()


class CallbackStillOpen(InvalidInput):
    """Resolving was asked while the reporter still waits for a call back and no reason to close it came."""


def close_before_resolving(
    session: Session, case: Case, actor: User, reason: str | None, now: datetime
) -> None:
    """Before a case is resolved its callback must be closed: kept, given up, or closed here by hand.

    With a reason (the resolve form offers it in the same step) the open callback is closed as
    cancel_callback does, by someone who may call back; without one the resolving is refused.
    """
    callback_id = session.scalar(
        select(Callback.id).where(Callback.case_id == case.id, Callback.state.in_(OPEN_CALLBACK_STATES))
    )
    if callback_id is None:
        return
    if not (reason or "").strip():
        raise CallbackStillOpen(
            N_(
                "The reporter is still waiting for a call back. Call them back first, or close the "
                "call back with a reason before resolving the case."
            )
        )
    cancel_callback(session, case, actor, reason or "", now)


def require_may_call_back(session: Session, actor: User, case: Case) -> None:
    if not may_call_back(session, actor, case):
        raise NotPermitted(
            N_("Only the case's SC-Operators and assigned SC-Action staff can log its callback.")
        )


def open_callback_of(session: Session, case: Case) -> Callback:
    """The case's callback, row-locked, to be acted on; refused when it has none or it is closed."""
    callback_id = session.scalar(select(Callback.id).where(Callback.case_id == case.id))
    if callback_id is None:
        raise InvalidInput(N_("This case has no callback: the reporter left no number."))
    return locked_open(session, callback_id)


def locked_open(session: Session, callback_id: int) -> Callback:
    """The callback, row-locked; refused when it is closed (reached, given up or closed by hand)."""
    callback = locked(session, callback_id)
    if callback.state not in OPEN_CALLBACK_STATES:
        raise InvalidInput(N_("This callback is closed: there is nobody left to call back."))
    return callback


def close_callback(
    session: Session, callback: Callback, state: CallbackState, by: int | None, now: datetime
) -> None:
    """The one way a callback ends (reached, given up, closed by hand): its reminders end with it."""
    callback.state = state
    callback.closed_at = now
    callback.closed_by = by
    callback.updated_at = now
    cancel_reminders(session, callback, now)


def cancel_reminders(session: Session, callback: Callback, now: datetime) -> None:
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


def locked(session: Session, callback_id: int) -> Callback:
    """The callback, re-read and row-locked on PostgreSQL (changes to one callback go one at a time)."""
    callback = session.get(Callback, callback_id, with_for_update=True, populate_existing=True)
    assert callback is not None
    return callback


def case_of(session: Session, callback: Callback) -> Case:
    case = session.get(Case, callback.case_id)
    assert case is not None
    return case


def callback_event(
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
