"""Calling a reporter back through the bridge: who may, the dialer the console needs, an attempt's start.

cases/ never imports telephony/: it declares the `Dialer` it needs, and app.py hands it telephony's
implementation (Twilio's REST API plus the bridge's webhook URLs). The reporter's number never passes
through here: the dialer rings the operator's own phone, and the bridge's TwiML (telephony.bridge)
connects them, decrypting the number on the server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cases import access, callbacks, phones
from cases.callbacks.settings import CallbackSettings
from cases.models import OPEN_CALLBACK_STATES, AttemptOutcome, Callback, CallbackAttempt, Case
from cases.staff import User
from cases.texts import N_
from cases.workflow import InvalidInput, NotPermitted
from infra.crypto import FieldCipher

log = logging.getLogger(__name__)


NOT_YOURS = N_("Only the case's SC-Operators and the staff it is assigned to may call this reporter back.")
NO_CALLBACK = N_("This case has no open call-back.")
NO_PHONE = N_("Add your own phone number first: the call-back rings your phone, then connects the reporter.")
UNVERIFIED = N_(
    "Your phone number is not verified. Verify it on your phone page (a code is sent to it), then call back."
)
USER_LIMIT = N_("You have started %(count)d call-backs in the last hour, the most allowed. Try again later.")
CASE_LIMIT = N_("This case has had %(count)d call-backs in the last hour, the most allowed. Try again later.")
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class BridgeLimits:
    """Call-backs through the bridge per hour (HOTLINE_BRIDGE_CALLS_PER_USER_HOUR, …_PER_CASE_HOUR).

    Every attempt counts, those that never reached the operator ("operator unreachable") among them: a
    number that never answers must not be rung again and again.
    """

    per_user_hour: int = 5
    per_case_hour: int = 3


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


def bridge_attempts_since(
    session: Session, since: datetime, *, operator: User | None = None, case: Case | None = None
) -> int:
    """Attempts through the bridge (those that rang a number) since `since`, of a user or of a case."""
    query = select(func.count(CallbackAttempt.id)).where(
        CallbackAttempt.operator_number_enc.is_not(None), CallbackAttempt.started_at > since
    )
    if operator is not None:
        query = query.where(CallbackAttempt.operator_id == operator.id)
    if case is not None:
        query = query.where(CallbackAttempt.case_id == case.id)
    return session.scalar(query) or 0


def phone_to_ring(operator: User, policy: phones.PhonePolicy) -> str:
    """The operator's verified phone, still allowed by the rules; InvalidInput otherwise."""
    if not operator.phone:
        raise InvalidInput(NO_PHONE)
    number = phones.verified_phone(operator, policy)
    if number is None:
        raise InvalidInput(UNVERIFIED)
    return number


def _check_limits(session: Session, case: Case, operator: User, limits: BridgeLimits, now: datetime) -> None:
    if bridge_attempts_since(session, now - HOUR, operator=operator) >= limits.per_user_hour:
        log.warning("call-back refused: user id %d reached %d an hour", operator.id, limits.per_user_hour)
        raise InvalidInput(USER_LIMIT, count=limits.per_user_hour)
    if bridge_attempts_since(session, now - HOUR, case=case) >= limits.per_case_hour:
        log.warning("call-back refused: case %d reached %d an hour", case.id, limits.per_case_hour)
        raise InvalidInput(CASE_LIMIT, count=limits.per_case_hour)


def begin_call(
    session: Session,
    case: Case,
    operator: User,
    now: datetime,
    *,
    cipher: FieldCipher,
    policy: phones.PhonePolicy,
    limits: BridgeLimits,
) -> tuple[CallbackAttempt, str]:
    """Check that `operator` may call the reporter back now and start an attempt (flushes, no commit):
    the attempt (keeping the number it will ring, encrypted) and that number, the only one to ring.

    The operator's phone must be verified (cases.phones) and allowed; the per-user and per-case limits of
    the last hour must not be reached. The caller commits before it asks the dialer to ring: Twilio's
    webhooks for the attempt may arrive before the dialer returns, and must find it.
    """
    callback = callback_of(session, case)
    if callback is None or callback.state not in OPEN_CALLBACK_STATES:
        raise InvalidInput(NO_CALLBACK)
    if not may_call_back(session, operator, case, callback):
        raise NotPermitted(NOT_YOURS)
    number = phone_to_ring(operator, policy)
    if attempt_under_way(session, callback, now) is not None:
        raise InvalidInput(callbacks.UNDER_WAY)
    _check_limits(session, case, operator, limits, now)
    attempt = callbacks.start_attempt(session, callback, operator, now)
    attempt.operator_number_enc = cipher.encrypt(number)
    session.flush()
    log.info("call-back attempt %d of case %d started by user id %d", attempt.id, case.id, operator.id)
    return attempt, number


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
