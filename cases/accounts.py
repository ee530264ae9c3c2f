"""Staff accounts: creation, passwords (scrypt, in werkzeug's format), sessions, the sign-in count.

The shell commands, the seed data and the console's sign-in page use these; nothing here knows the web.
A staff member's own phone is cases.phones' (verified by a code).
A hash is `scrypt:32768:8:1$<salt>$<hex>` exactly as werkzeug.security writes it, so that hashes made
before (and by werkzeug) still verify.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from cases import sign_in_limits as limits
from cases.sign_in_limits import LOCK_AFTER_FAILURES, LOCK_FOR
from cases.staff import AuditEvent, User
from cases.texts import N_, Refusal
from infra.clock import Clock, utcnow

log = logging.getLogger(__name__)

LOCALES = ("th", "en")
__all__ = ["LOCK_AFTER_FAILURES", "LOCK_FOR"]  # the sign-in page's message names them
MIN_PASSWORD_LENGTH = 10
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,79}$")
# werkzeug's defaults: scrypt n=2**15, r=8, p=1, a 16-character salt of letters and digits.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SALT_CHARS = string.ascii_letters + string.digits
SALT_LENGTH = 16


class AccountError(Refusal, ValueError):
    """A user account cannot be created or changed as asked (the shell shows str(exc), the console Thai)."""


# ---- password hashes ----------------------------------------------------------------------------------


def _derive(method: str, salt: str, password: str) -> str | None:
    """The hex digest for werkzeug's `method` string ("scrypt:n:r:p" or "pbkdf2:sha256:iterations")."""
    name, *args = method.split(":")
    secret, salt_bytes = password.encode(), salt.encode()
    try:
        if name == "scrypt":
            n, r, p = (int(a) for a in args) if args else (SCRYPT_N, SCRYPT_R, SCRYPT_P)
            # werkzeug's maxmem (scrypt needs 128*n*r*p and a little more)
            return hashlib.scrypt(secret, salt=salt_bytes, n=n, r=r, p=p, maxmem=132 * n * r * p).hex()
        if name == "pbkdf2":
            digest = args[0] if args else "sha256"
            rounds = int(args[1]) if len(args) > 1 else 600_000
            return hashlib.pbkdf2_hmac(digest, secret, salt_bytes, rounds).hex()
    except (ValueError, IndexError):
        return None
    return None


def hash_password(password: str) -> str:
    """scrypt (n=2**15, r=8, p=1) with a random salt, written as werkzeug's generate_password_hash does."""
    salt = "".join(secrets.choice(SALT_CHARS) for _ in range(SALT_LENGTH))
    method = f"scrypt:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}"
    return f"{method}${salt}${_derive(method, salt, password)}"


def password_matches(password_hash: str, password: str) -> bool:
    """werkzeug's check_password_hash: the stored method and salt give the same digest (constant time)."""
    try:
        method, salt, expected = password_hash.split("$", 2)
    except ValueError:
        return False
    actual = _derive(method, salt, password)
    return actual is not None and hmac.compare_digest(actual, expected)


@cache
def _dummy_hash() -> str:
    # Checked against when the username is unknown, so an unknown name costs as much time as a known one.
    return hash_password(secrets.token_hex(16))


# ---- accounts -----------------------------------------------------------------------------------------


def _check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(N_("the password needs at least %(count)d characters"), count=MIN_PASSWORD_LENGTH)


def create_user(
    session: Session,
    username: str,
    display_name: str,
    password: str,
    *,
    locale: str = "th",
    email: str | None = None,
    clock: Clock = utcnow,
) -> User:
    """Create a staff account (no roles yet, no phone: cases.phones). Flushes, never commits."""
    username = username.strip().lower()
    if not USERNAME.match(username):
        raise AccountError(N_("a username is 3-80 characters: a-z, 0-9, '.', '_' or '-'"))
    if not display_name.strip():
        raise AccountError(N_("give the person's name (--name)"))
    if locale not in LOCALES:
        raise AccountError(N_("the locale is one of %(locales)s"), locales=", ".join(LOCALES))
    _check_new_password(password)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AccountError(N_("the username '%(username)s' is taken"), username=username)
    user = User(
        username=username,
        display_name=display_name.strip()[:200],
        email=email,
        password_hash=hash_password(password),
        active=True,
        locale=locale,
        failed_logins=0,
        session_token=secrets.token_hex(32),
        created_at=clock(),
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, user: User, password: str) -> None:
    """Set a new password, unlock the account and end every session of the user."""
    _check_new_password(password)
    user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until = 0, None
    limits.forget_account(session, user.id)
    end_all_sessions(session, user)


def set_locale(session: Session, user: User, locale: str) -> None:
    if locale in LOCALES:
        user.locale = locale
        session.flush()


def end_all_sessions(session: Session, user: User) -> None:
    """A new session token: every cookie carrying the old one stops working at its next request."""
    user.session_token = secrets.token_hex(32)
    session.flush()


# ---- signing in ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PasswordCheck:
    """A password checked against an account, read without the write lock: scrypt takes about 0.1 s."""

    user_id: int | None
    password_hash: str | None
    good: bool


def check_password(session: Session, username: str, password: str) -> PasswordCheck:
    """Check the password (reads only); record_sign_in() then decides and counts, under the write lock."""
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        password_matches(_dummy_hash(), password)
        return PasswordCheck(None, None, False)
    return PasswordCheck(user.id, user.password_hash, password_matches(user.password_hash, password))


def record_sign_in(
    session: Session, check: PasswordCheck, *, address: str = "unknown", clock: Clock = utcnow
) -> User | None:
    """The user if the password was right and the account is open to `address` now; counts failures.

    The account is read again in `session` (the write transaction), so a lock or a new password set since
    the check wins. A wrong password counts against the account from this client address and against the
    address (cases.sign_in_limits); five from one address close the account to that address only. The
    caller commits either way (the failure count is the point) and says the same thing to the person
    whatever the reason, so that nobody learns whether a username exists or is locked.
    """
    now = clock()
    user = session.get(User, check.user_id) if check.user_id is not None else None
    if user is None:
        if check.user_id is None:  # no such name: it still counts against the address
            limits.record_failure(session, None, address, now)
        return None
    if user.password_hash != check.password_hash:
        return None  # a new password since the check: the old one neither signs in nor counts
    locked = (user.locked_until is not None and user.locked_until > now) or limits.pair_blocked(
        session, user.id, address, now
    )
    if check.good:
        if locked or not user.active:
            return None
        user.failed_logins, user.locked_until = 0, None
        session.flush()
        return user
    _count_failure(session, user, address, now, locked)
    return None


def _count_failure(session: Session, user: User, address: str, now: datetime, locked: bool) -> None:
    """A wrong password: counted; audited when it closes the pair, or (from many addresses) the account."""
    limits.record_failure(session, user.id, address, now)
    user.failed_logins += 1
    minutes = int(LOCK_FOR.total_seconds() // 60)
    if not locked and limits.pair_blocked(session, user.id, address, now):
        session.add(
            AuditEvent(
                at=now,
                user_id=user.id,
                action="login_locked",
                detail={"minutes": minutes, "scope": "address"},
            )
        )
        log.warning(
            "sign-in closed for user id %d from one address after %d failures", user.id, LOCK_AFTER_FAILURES
        )
    account_open = user.locked_until is None or user.locked_until <= now
    if account_open and limits.account_under_attack(session, user.id, now):
        user.locked_until = now + LOCK_FOR
        session.add(
            AuditEvent(
                at=now,
                user_id=user.id,
                action="login_locked",
                detail={"minutes": minutes, "scope": "account"},
            )
        )
        log.warning("sign-in locked for user id %d: failures from several addresses", user.id)
    session.flush()
