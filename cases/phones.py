"""Staff members' own phones: which numbers may be used, verification by a code, and the audit of each change.

The call-back bridge rings a staff member's phone and connects it to a child under the hotline's caller
ID, so the number must really be theirs and must be an ordinary one: a number is saved only after a code
sent to it by SMS is keyed back (within `code_minutes`, at most `code_tries` tries); only the countries of
the allow-list (Thailand by default) and only mobile or fixed lines (phonenumbers' number types: no
premium-rate, shared-cost, VoIP, personal or unassigned ranges). The pending number is encrypted like a
reporter's; the code is kept only as a keyed hash. Every step (code sent, verified, wrong code, refused
number, removed, set from the shell) writes an AuditEvent with the number masked.

Functions flush and leave the commit to the caller, which commits after a refusal too: a wrong code
counts, and the audit row of a refusal must stay.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import phonenumbers
from phonenumbers import PhoneNumberType
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cases.accounts import AccountError
from cases.notifications.channels import SmsGateway
from cases.staff import AuditEvent, PhoneVerification, User
from cases.texts import N_
from infra.crypto import FieldCipher, mask_phone

log = logging.getLogger(__name__)

THAILAND = 66
# The only kinds of line a staff phone may be: everything else (premium rate, shared cost, toll free,
# VoIP, personal, UAN, pager, unknown) is refused.
ORDINARY_LINES = frozenset(
    {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
)
CODE_DIGITS = 6
PENDING, VERIFIED, FAILED, EXPIRED, REPLACED, CANCELLED, NOT_SENT = (
    "pending",
    "verified",
    "failed",
    "expired",
    "replaced",
    "cancelled",
    "not_sent",
)
# The SMS, in the user's language; it names the service so that a stranger who gets it knows what it is.
CODE_SMS = {
    "th": "รหัสยืนยันหมายเลขโทรศัพท์เจ้าหน้าที่ ศูนย์ความปลอดภัย กระทรวงศึกษาธิการ: {code} ใช้ได้ {minutes} นาที "
    "ห้ามบอกรหัสนี้กับผู้อื่น",
    "en": "MOE Safety Center staff phone check code: {code}. Valid {minutes} minutes. Do not share it.",
}

NOT_A_NUMBER = N_("That is not a phone number. Write it like 081 234 5678 or +66812345678.")
NOT_ASSIGNED = N_("That number does not exist (it is not in any assigned range).")
NOT_ALLOWED_COUNTRY = N_("Only Thai numbers (+66) can be used here, unless the service allows your country.")
NOT_ORDINARY = N_(
    "Use an ordinary mobile or landline number: premium-rate, shared-cost and special numbers are refused."
)
NO_CODE = N_("There is no code waiting for you. Ask for a new code.")
CODE_EXPIRED = N_("The code has expired. Ask for a new code.")
CODE_WRONG = N_("That code is not right. %(left)d tries left.")
CODE_USED_UP = N_("Too many wrong codes. Ask for a new code.")
TOO_MANY_CODES = N_("Too many codes were sent in the last hour. Wait a while, then ask again.")
NOT_SENT_TEXT = N_("The code could not be sent. Check the number and try again in a moment.")
SMS_OFF = N_("Codes cannot be sent: SMS is not set up on this service. Ask the administrator.")


class PhoneError(AccountError):
    """A staff phone or a code is refused; str(exc) is the English (the shell), the console shows Thai."""


@dataclass(frozen=True)
class PhonePolicy:
    """The rules for staff phones (HOTLINE_STAFF_PHONE_COUNTRIES sets `countries`)."""

    countries: frozenset[int] = field(default_factory=lambda: frozenset({THAILAND}))
    code_minutes: int = 10
    code_tries: int = 5
    codes_per_hour: int = 3  # SMS to one user per hour: no SMS pumping through the form


@dataclass(frozen=True)
class PhoneSetup:
    """What verification needs: the rules, the cipher, and how a code is sent (None: SMS is not set up)."""

    policy: PhonePolicy
    cipher: FieldCipher
    gateway: SmsGateway | None = None
    sms_from: str | None = None


def check_number(raw: str, policy: PhonePolicy) -> str:
    """The number in E.164 if a staff phone may be it; PhoneError saying why not."""
    try:
        parsed = phonenumbers.parse(raw.strip(), "TH")  # a national number ('081 234 5678') is Thai
    except phonenumbers.NumberParseException:
        raise PhoneError(NOT_A_NUMBER) from None
    if parsed.country_code not in policy.countries:
        raise PhoneError(NOT_ALLOWED_COUNTRY)
    if not phonenumbers.is_valid_number(parsed):
        raise PhoneError(NOT_ASSIGNED)
    if phonenumbers.number_type(parsed) not in ORDINARY_LINES:
        raise PhoneError(NOT_ORDINARY)
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def verified_phone(user: User, policy: PhonePolicy | None = None) -> str | None:
    """The user's phone if it was verified (and, given a policy, is still allowed by it); else None."""
    if not user.phone or user.phone_verified_at is None:
        return None
    if policy is not None:
        try:
            check_number(user.phone, policy)
        except PhoneError:
            return None
    return user.phone


def code_hash(cipher: FieldCipher, salt: str, code: str) -> str:
    # Keyed with the data key: six digits are a million guesses, so a plain hash would be no secret.
    return cipher.lookup_hash(f"staff-phone-code:{salt}:{code}")


def _audit(
    session: Session, actor_id: int | None, action: str, user: User, now: datetime, **detail: Any
) -> None:
    session.add(AuditEvent(at=now, user_id=actor_id, action=action, detail={"user": user.id, **detail}))


def _masked(raw: str) -> str:
    """A refused entry, as much as the audit may keep of it: the last digits only."""
    digits = "".join(ch for ch in raw if ch.isdigit())[-3:]
    return ("x" * 4 + digits) if digits else ""


def pending(session: Session, user: User, now: datetime) -> PhoneVerification | None:
    """The user's code waiting to be keyed back, if any and not expired."""
    return session.scalar(
        select(PhoneVerification)
        .where(
            PhoneVerification.user_id == user.id,
            PhoneVerification.status == PENDING,
            PhoneVerification.expires_at > now,
        )
        .order_by(PhoneVerification.id.desc())
        .limit(1)
    )


def _end_pending(session: Session, user: User, status: str, now: datetime) -> None:
    session.execute(
        update(PhoneVerification)
        .where(PhoneVerification.user_id == user.id, PhoneVerification.status == PENDING)
        .values(status=status, ended_at=now)
    )


def request_code(session: Session, setup: PhoneSetup, user: User, raw: str, now: datetime) -> CodeToSend:
    """Check the number and make a code for it, pending: what to send (not sent here).

    The caller commits, then sends the code with send_code() outside the write transaction. A refused
    number is audited and raises PhoneError (commit anyway, for the audit row).
    """
    policy = setup.policy
    try:
        number = check_number(raw, policy)
    except PhoneError as exc:
        _audit(session, user.id, "phone_refused", user, now, entered=_masked(raw), why=exc.text.msgid[:60])
        session.flush()
        raise
    if setup.gateway is None or not setup.sms_from:
        raise PhoneError(SMS_OFF)
    sent = session.scalar(
        select(func.count(PhoneVerification.id)).where(
            PhoneVerification.user_id == user.id, PhoneVerification.created_at > now - timedelta(hours=1)
        )
    )
    if (sent or 0) >= policy.codes_per_hour:
        _audit(session, user.id, "phone_code_refused", user, now, number=mask_phone(number), why="rate")
        session.flush()
        raise PhoneError(TOO_MANY_CODES)
    _end_pending(session, user, REPLACED, now)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    salt = secrets.token_hex(16)
    row = PhoneVerification(
        user_id=user.id,
        number_enc=setup.cipher.encrypt(number),
        number_masked=mask_phone(number) or "",
        code_salt=salt,
        code_hash=code_hash(setup.cipher, salt, code),
        tries=0,
        status=PENDING,
        created_at=now,
        expires_at=now + timedelta(minutes=policy.code_minutes),
    )
    session.add(row)
    session.flush()
    _audit(session, user.id, "phone_code_requested", user, now, number=row.number_masked, verification=row.id)
    session.flush()
    return CodeToSend(row.id, row.number_enc, code, user.locale)


@dataclass(frozen=True)
class CodeToSend:
    """A code made by request_code(), to send once the transaction is committed (plain values: no row)."""

    verification_id: int
    number_enc: str
    code: str
    locale: str


def send_code(setup: PhoneSetup, sending: CodeToSend) -> None:
    """Send the code by SMS to the pending number; PhoneError (NOT_SENT_TEXT) if the gateway fails."""
    if setup.gateway is None or not setup.sms_from:
        raise PhoneError(SMS_OFF)
    template = CODE_SMS.get(sending.locale, CODE_SMS["th"])
    body = template.format(code=sending.code, minutes=setup.policy.code_minutes)
    try:
        setup.gateway.send_sms(setup.cipher.decrypt(sending.number_enc), body, setup.sms_from)
    except Exception as exc:  # the gateway's reasons are safe (no numbers), but the person needs only this
        log.warning("phone code %d not sent: %s", sending.verification_id, type(exc).__name__)
        raise PhoneError(NOT_SENT_TEXT) from None


def code_not_sent(session: Session, verification_id: int, now: datetime) -> None:
    """The SMS failed: the code can never be keyed back; audited."""
    row = session.get(PhoneVerification, verification_id)
    user = session.get(User, row.user_id) if row is not None else None
    if row is not None and user is not None and row.status == PENDING:
        row.status, row.ended_at = NOT_SENT, now
        detail = {"number": row.number_masked, "verification": row.id}
        _audit(session, user.id, "phone_code_not_sent", user, now, **detail)
        session.flush()


def confirm_code(session: Session, setup: PhoneSetup, user: User, code: str, now: datetime) -> str:
    """The code keyed back: on a match the number becomes the user's verified phone (returned).

    A wrong code counts a try (the last one ends the code); an expired code ends it. Each is audited and
    raises PhoneError: the caller commits anyway.
    """
    row = session.scalar(
        select(PhoneVerification)
        .where(PhoneVerification.user_id == user.id, PhoneVerification.status == PENDING)
        .order_by(PhoneVerification.id.desc())
        .limit(1)
        .with_for_update()  # two submissions at once must not both get the last try
    )
    if row is None:
        raise PhoneError(NO_CODE)
    detail = {"number": row.number_masked, "verification": row.id}
    if row.expires_at <= now:
        row.status, row.ended_at = EXPIRED, now
        _audit(session, user.id, "phone_code_expired", user, now, **detail)
        session.flush()
        raise PhoneError(CODE_EXPIRED)
    given = "".join(ch for ch in code if ch.isdigit())[: CODE_DIGITS + 1]
    if not hmac.compare_digest(code_hash(setup.cipher, row.code_salt, given), row.code_hash):
        row.tries += 1
        used_up = row.tries >= setup.policy.code_tries
        if used_up:
            row.status, row.ended_at = FAILED, now
        _audit(session, user.id, "phone_code_wrong", user, now, tries=row.tries, ended=used_up, **detail)
        session.flush()
        if used_up:
            raise PhoneError(CODE_USED_UP)
        raise PhoneError(CODE_WRONG, left=setup.policy.code_tries - row.tries)
    # The rules may have changed since the code was sent.
    number = check_number(setup.cipher.decrypt(row.number_enc), setup.policy)
    row.status, row.ended_at = VERIFIED, now
    user.phone, user.phone_verified_at = number, now
    _audit(session, user.id, "phone_verified", user, now, **detail)
    session.flush()
    log.info("user id %d verified their phone", user.id)
    return number


def cancel_code(session: Session, user: User, now: datetime) -> None:
    """The user gives up on a pending code (to enter another number)."""
    _end_pending(session, user, CANCELLED, now)
    session.flush()


def remove_phone(session: Session, user: User, now: datetime, *, actor_id: int | None) -> None:
    """No phone any more (and no pending code); audited. actor_id None: the shell."""
    if user.phone:
        _audit(session, actor_id, "phone_removed", user, now, number=mask_phone(user.phone))
    user.phone, user.phone_verified_at = None, None
    _end_pending(session, user, CANCELLED, now)
    session.flush()


def set_by_admin(session: Session, policy: PhonePolicy, user: User, raw: str, now: datetime) -> str:
    """The shell's override for setting up (`flask users phone`): the same checks, no code; audited.

    Whoever runs the shell holds the database and its keys already; the audit row says the number was
    set without a code, so that it stands out.
    """
    try:
        number = check_number(raw, policy)
    except PhoneError as exc:
        _audit(session, None, "phone_refused", user, now, entered=_masked(raw), why=exc.text.msgid[:60])
        session.flush()
        raise
    _end_pending(session, user, CANCELLED, now)
    user.phone, user.phone_verified_at = number, now
    _audit(session, None, "phone_set_by_admin", user, now, number=mask_phone(number), without_code=True)
    session.flush()
    return number


def audit_trail(session: Session, user: User, actions: Iterable[str] | None = None) -> list[AuditEvent]:
    """The phone audit rows about `user`, oldest first (tests and the admin pages)."""
    rows = session.scalars(
        select(AuditEvent).where(AuditEvent.action.like("phone_%")).order_by(AuditEvent.id)
    )
    wanted = set(actions) if actions is not None else None
    return [
        r for r in rows if (r.detail or {}).get("user") == user.id and (wanted is None or r.action in wanted)
    ]
