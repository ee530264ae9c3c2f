"""Calling a reporter back through the bridge: who may, the dialer the console needs, an attempt's start.

cases/ never imports telephony/: it declares the `Dialer` it needs, and app.py hands it telephony's
implementation (Twilio's REST API plus the bridge's webhook URLs). The reporter's number never passes
through here: the dialer rings the operator's own phone, and the bridge's TwiML (telephony.bridge)
connects them, decrypting the number on the server.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from cases import access, callbacks
from cases.callbacks.settings import CallbackSettings
from cases.models import OPEN_CALLBACK_STATES, AttemptOutcome, Callback, CallbackAttempt, Case
from cases.staff import User
from cases.texts import N_
from cases.workflow import InvalidInput, NotPermitted

log = logging.getLogger(__name__)


NOT_YOURS = N_("Only the case's SC-Operators and the staff it is assigned to may call this reporter back.")
NO_CALLBACK = N_("This case has no open call-back.")
NO_PHONE = N_("Add your own phone number first: the call-back rings your phone, then connects the reporter.")


class DialError(RuntimeError):
    """The call could not be started; `reason` is short and safe to show (no numbers, no credentials)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Dialer(Protocol):
    """What the console needs from the telephone side to start a call-back."""

    def call_operator(self, attempt_id: int, operator_phone: str) -> str:
        """Ring the operator's phone for this attempt; the operator leg's CallSid. Raises DialError."""
        ...


def callback_of(session: Session, case: Case) -> Callback | None:
    return session.scalar(select(Callback).where(Callback.case_id == case.id))


def may_call_back(session: Session, user: User, case: Case, callback: Callback | None) -> bool:
    """Whether the page shows the call-back button: an open callback, and someone responsible for it."""
    if case.anonymous or callback is None or callback.state not in OPEN_CALLBACK_STATES:
        return False
    return access.may_call_back(session, user, case)


def attempt_under_way(session: Session, callback: Callback, now: datetime) -> CallbackAttempt | None:
    return session.scalar(
        select(CallbackAttempt)
        .where(
            CallbackAttempt.callback_id == callback.id,
            CallbackAttempt.ended_at.is_(None),
            CallbackAttempt.started_at > now - callbacks.STALE_ATTEMPT,
        )
        .order_by(CallbackAttempt.id.desc())
        .limit(1)
    )


def begin_call(session: Session, case: Case, operator: User, now: datetime) -> CallbackAttempt:
    """Check that `operator` may call the reporter back now and start an attempt (flushes, no commit).

    The caller commits before it asks the dialer to ring: Twilio's webhooks for the attempt may arrive
    before the dialer returns, and must find it.
    """
    callback = callback_of(session, case)
    if callback is None or callback.state not in OPEN_CALLBACK_STATES:
        raise InvalidInput(NO_CALLBACK)
    if not may_call_back(session, operator, case, callback):
        raise NotPermitted(NOT_YOURS)
    if not operator.phone:
        raise InvalidInput(NO_PHONE)
    if attempt_under_way(session, callback, now) is not None:
        raise InvalidInput(callbacks.UNDER_WAY)
    attempt = callbacks.start_attempt(session, callback, operator, now)
    session.flush()
    log.info("call-back attempt %d of case %d started by user id %d", attempt.id, case.id, operator.id)
    return attempt


def dial_started(session: Session, attempt_id: int, call_sid: str) -> None:
    """The operator's phone is ringing: keep the leg's CallSid (a webhook may have stored it already)."""
    attempt = session.get(CallbackAttempt, attempt_id)
    if attempt is None:
        return
    if attempt.operator_call_sid is None:
        attempt.operator_call_sid = call_sid
        session.flush()
    elif attempt.operator_call_sid != call_sid:
        log.warning("call-back attempt %d: Twilio returned another call SID than its webhooks", attempt.id)


def dial_failed(
    session: Session, attempt_id: int, reason: str, settings: CallbackSettings, now: datetime
) -> None:
    """Twilio would not start the call: the attempt ends here, counting nothing against the reporter."""
    attempt = session.get(CallbackAttempt, attempt_id)
    if attempt is None or attempt.ended_at is not None:
        return
    attempt.note = f"not started: {reason}"[:500]
    callbacks.record_outcome(session, attempt, AttemptOutcome.OPERATOR_UNREACHABLE, settings, now)
    log.warning("call-back attempt %d could not be started: %s", attempt.id, reason)


def attempts(session: Session, case: Case) -> list[CallbackAttempt]:
    """The case's call-back attempts, newest first."""
    return list(
        session.scalars(
            select(CallbackAttempt)
            .where(CallbackAttempt.case_id == case.id)
            .order_by(CallbackAttempt.started_at.desc(), CallbackAttempt.id.desc())
        )
    )
