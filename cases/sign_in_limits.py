"""The sign-in throttle, kept in the database so that every server process counts the same failures.

Three limits, all over a sliding window of LOCK_FOR:
- an (account, client address) pair stops being tried after LOCK_AFTER_FAILURES failures: one address
  guessing an account's password cannot lock its owner out from their own address;
- a client address stops being answered after ADDRESS_MAX_FAILURES failures, whatever the names tried
  (a spray over many accounts that stays under the pair limit for each);
- an account locks everywhere (users.locked_until) only after failures from ACCOUNT_LOCK_ADDRESSES
  different addresses, which no single address can bring about.
The address is the real client's (console.proxies reads it behind a trusted proxy).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cases.staff import SignInFailure

LOCK_AFTER_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)
ADDRESS_MAX_FAILURES = 20
ACCOUNT_LOCK_ADDRESSES = 3
ACCOUNT_LOCK_FAILURES = 10
ADDRESS_LENGTH = 64


def _since(now: datetime) -> datetime:
    return now - LOCK_FOR


def address_blocked(session: Session, address: str, now: datetime) -> bool:
    """Whether the address has failed ADDRESS_MAX_FAILURES times within the window, any accounts."""
    count = session.scalar(
        select(func.count(SignInFailure.id)).where(
            SignInFailure.address == address[:ADDRESS_LENGTH], SignInFailure.at > _since(now)
        )
    )
    return (count or 0) >= ADDRESS_MAX_FAILURES


def pair_blocked(session: Session, user_id: int, address: str, now: datetime) -> bool:
    """Whether this account has failed LOCK_AFTER_FAILURES times from this address within the window."""
    count = session.scalar(
        select(func.count(SignInFailure.id)).where(
            SignInFailure.user_id == user_id,
            SignInFailure.address == address[:ADDRESS_LENGTH],
            SignInFailure.at > _since(now),
        )
    )
    return (count or 0) >= LOCK_AFTER_FAILURES


def account_under_attack(session: Session, user_id: int, now: datetime) -> bool:
    """Failures for the account from several addresses: the whole account locks, not one pair."""
    addresses, failures = session.execute(
        select(func.count(func.distinct(SignInFailure.address)), func.count(SignInFailure.id)).where(
            SignInFailure.user_id == user_id, SignInFailure.at > _since(now)
        )
    ).one()
    return addresses >= ACCOUNT_LOCK_ADDRESSES and failures >= ACCOUNT_LOCK_FAILURES


def record_failure(session: Session, user_id: int | None, address: str, now: datetime) -> None:
    """Count one failure, and forget those older than the window (the only reads are within it)."""
    session.execute(delete(SignInFailure).where(SignInFailure.at <= _since(now)))
    session.add(SignInFailure(at=now, address=address[:ADDRESS_LENGTH], user_id=user_id))
    session.flush()


def forget_account(session: Session, user_id: int) -> None:
    """A new password: the failures counted against the old one lock nothing any more."""
    session.execute(delete(SignInFailure).where(SignInFailure.user_id == user_id))
