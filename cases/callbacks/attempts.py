"""Calling the reporter back: who may, an attempt and its outcome, a call logged by hand."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cases import notifications
from cases.callbacks.people import case_link, heads_up_the_line, holding_office, operators_for
from cases.callbacks.promise import (
    NOTE_LIMIT,
    callback_event,
    cancel_reminders,
    case_of,
    close_callback,
    locked,
    locked_open,
    open_callback_of,
    require_may_call_back,
    schedule_round,
)
from cases.callbacks.settings import CallbackSettings
from cases.models import (
    OPEN_CALLBACK_STATES,
    REPORTER_FAILURES,
    AttemptOutcome,
    Callback,
    CallbackAttempt,
    CallbackState,
    Case,
    Channel,
    Office,
    ReminderKind,
)
from cases.staff import User
from cases.texts import N_
from cases.workflow import InvalidInput
from infra.clock import iso_utc
from infra.logs import mask_phones

log = logging.getLogger(__name__)


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
# After this long an attempt nobody heard back about no longer blocks a new one (a lost status callback),
# and the reminder sweep ends it, so that the callback does not stay "calling" for ever.
STALE_ATTEMPT = timedelta(minutes=15)
UNDER_WAY = N_("A call-back for this case is already under way. Wait until it ends.")


def start_attempt(session: Session, callback: Callback, operator: User, now: datetime) -> CallbackAttempt:
    """An operator starts calling the reporter back: the callback is CALLING until the outcome comes."""
    callback = locked_open(session, callback.id)
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
    case = case_of(session, callback)
    callback_event(session, case, operator, "callback_attempt", now, {"attempt": attempt.id})
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
    callback = locked(session, attempt.callback_id)
    case = case_of(session, callback)
    operator = session.get(User, attempt.operator_id)
    detail: dict[str, Any] = {"attempt": attempt.id, "outcome": str(outcome)}
    callback.updated_at = now

    if outcome in REACHED_OUTCOMES:
        if callback.state == CallbackState.REACHED:
            return
        callback.attempts += 1
        close_callback(session, callback, CallbackState.REACHED, attempt.operator_id, now)
        callback_event(session, case, operator, "callback_reached", now, detail)
    elif outcome == AttemptOutcome.OPERATOR_UNREACHABLE:
        if callback.state == CallbackState.CALLING:
            callback.state = CallbackState.PENDING
        callback_event(session, case, operator, "callback_operator_unreachable", now, detail)
    elif callback.state not in OPEN_CALLBACK_STATES:
        callback_event(
            session, case, operator, "callback_failed", now, detail
        )  # closed meanwhile: counted nowhere
    else:
        callback.attempts += 1
        detail["attempts"] = callback.attempts
        if callback.attempts >= settings.max_attempts:
            close_callback(session, callback, CallbackState.GAVE_UP, None, now)
            callback_event(session, case, operator, "callback_gave_up", now, detail)
            notify_gave_up(session, callback, case, settings, now)
        else:
            cancel_reminders(session, callback, now)
            office = session.get(Office, callback.office_id)
            assert office is not None
            callback.round += 1
            callback.due_at = settings.calendar_for(office.code).add(now, settings.retry_after_minutes)
            callback.state = CallbackState.PENDING
            session.flush()
            schedule_round(session, callback, office, settings, now)
            detail["due_at"] = iso_utc(callback.due_at)
            callback_event(session, case, operator, "callback_retry", now, detail)
            notify_retry(session, callback, case, settings, now)
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
    require_may_call_back(session, actor, case)
    if outcome not in BY_HAND_OUTCOMES:
        raise InvalidInput(N_("Choose what happened: reached, no answer, busy, voicemail or failed."))
    # Free text every viewer of the case reads: a number typed into it is masked like everywhere else.
    note = mask_phones(note.strip()[:NOTE_LIMIT])
    if not note:
        raise InvalidInput(N_("Say how the reporter was called back."))
    callback = open_callback_of(session, case)
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


def message_params(
    case: Case, callback: Callback, settings: CallbackSettings, **extra: str
) -> dict[str, str]:
    """What a message may say: the reference and times; never the reporter's number or words."""
    params = {
        "reference": case.reference,
        "due_at": iso_utc(callback.due_at),  # notify() writes it in the reader's language and time zone
        "attempts": str(callback.attempts),
        "max_attempts": str(settings.max_attempts),
    }
    params.update(extra)
    return params


def channels_for(settings: CallbackSettings, kind: ReminderKind) -> tuple[Channel, ...]:
    return tuple(settings.channels.get(kind, (Channel.CONSOLE,)))


def notify_retry(
    session: Session, callback: Callback, case: Case, settings: CallbackSettings, now: datetime
) -> None:
    office = holding_office(session, case, callback.office_id)
    users = operators_for(session, callback, office)
    notifications.notify(
        session,
        dedupe=f"callback:{callback.id}:retry:{callback.round}",
        kind="callback_retry",
        case=case,
        users=users,
        office=office,
        channels=channels_for(settings, ReminderKind.AT_DUE),
        params=message_params(case, callback, settings),
        link=case_link(case),
        now=now,
    )


def notify_gave_up(
    session: Session, callback: Callback, case: Case, settings: CallbackSettings, now: datetime
) -> None:
    office = holding_office(session, case, callback.office_id)
    notifications.notify(
        session,
        dedupe=f"callback:{callback.id}:gave_up",
        kind="callback_gave_up",
        case=case,
        users=heads_up_the_line(session, office),
        office=office,
        channels=channels_for(settings, ReminderKind.ESCALATE_HEAD),
        params=message_params(case, callback, settings),
        link=case_link(case),
        now=now,
    )
