"""Staff: users, their roles in offices, committees, and the audit trail of what they saw."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from infra.clock import utcnow
from infra.db import Base, UTCDateTime


class Role(enum.StrEnum):
    AGENT = "agent"  # call-centre agent, central Safety Center
    OPERATOR = "operator"  # SC-Operator
    HEAD = "head"  # head SC-Operator: approves forwarding (and is an SC-Operator)
    ACTION = "action"  # SC-Action
    ADMIN = "admin"  # office admin: staff, roles, committees


# What a role also is by position (the guideline: every SC-Operator is SC-Action of their office).
IMPLIED: dict[Role, frozenset[Role]] = {
    Role.HEAD: frozenset({Role.HEAD, Role.OPERATOR, Role.ACTION}),
    Role.OPERATOR: frozenset({Role.OPERATOR, Role.ACTION}),
    Role.AGENT: frozenset({Role.AGENT}),
    Role.ACTION: frozenset({Role.ACTION}),
    Role.ADMIN: frozenset({Role.ADMIN}),
}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(200))
    # The person's own phone (E.164): SMS reminders, and the phone the call-back bridge rings. Used only
    # once verified (cases.phones): a number set before verification existed has phone_verified_at NULL.
    phone: Mapped[str | None] = mapped_column(String(32))
    phone_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    password_hash: Mapped[str] = mapped_column(String(300))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    locale: Mapped[str] = mapped_column(String(8), default="th")
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Changing it ends every session of the user (logout everywhere, password change).
    session_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    roles: Mapped[list[RoleAssignment]] = relationship(back_populates="user", cascade="all, delete-orphan")


class RoleAssignment(Base):
    __tablename__ = "role_assignments"
    __table_args__ = (UniqueConstraint("user_id", "office_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    office_id: Mapped[int] = mapped_column(ForeignKey("offices.id"), index=True)
    role: Mapped[Role] = mapped_column(String(16))

    user: Mapped[User] = relationship(back_populates="roles")


class Committee(Base):
    __tablename__ = "committees"

    id: Mapped[int] = mapped_column(primary_key=True)
    office_id: Mapped[int] = mapped_column(ForeignKey("offices.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))

    members: Mapped[list[CommitteeMember]] = relationship(cascade="all, delete-orphan")


class CommitteeMember(Base):
    __tablename__ = "committee_members"
    __table_args__ = (UniqueConstraint("committee_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    committee_id: Mapped[int] = mapped_column(ForeignKey("committees.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)

    user: Mapped[User] = relationship()


class PhoneVerification(Base):
    """A code sent to a number a user asked to make their own (cases.phones): pending until keyed back."""

    __tablename__ = "phone_verifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # The number asked for, encrypted with HOTLINE_DATA_KEY like reporters' numbers; masked for pages.
    number_enc: Mapped[str] = mapped_column(Text)
    number_masked: Mapped[str] = mapped_column(String(32))
    # The code, keyed-hashed with a salt of its own (cases.phones.code_hash); never stored in the clear.
    code_salt: Mapped[str] = mapped_column(String(32))
    code_hash: Mapped[str] = mapped_column(String(64))
    tries: Mapped[int] = mapped_column(Integer, default=0)
    # pending, verified, failed (tries used up), expired, replaced (a newer code), cancelled, not_sent
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Who saw or tried to see what: case views, recording plays, reveals of a reporter's number (and
    refusals), staff changes. Never a phone number or a reporter's words. Append-only (cases.audit)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(40))
    case_id: Mapped[int | None] = mapped_column(Integer, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str | None] = mapped_column(Text)


class RoleRequest(Base):
    """A case role an admin asked for, waiting for a second admin (two-person rule); kept when decided."""

    __tablename__ = "role_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    office_id: Mapped[int] = mapped_column(ForeignKey("offices.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    role: Mapped[Role] = mapped_column(String(16))
    requested_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # pending, approved, declined
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    requester: Mapped[User] = relationship(foreign_keys=[requested_by])


class SignInFailure(Base):
    """One failed sign-in: when, from which client address, to which account (None: no such name).

    Shared by every server process; rows older than the throttle's window are pruned as failures come.
    """

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_address_at", "address", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    address: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)


class AppendOnlyUnlock(Base):
    """The one way past the append-only triggers (cases.audit.unlocked): a row that lives in a transaction.

    The triggers on the audit, event and version tables refuse UPDATE and DELETE unless this table has a
    row. `must_close` refers to a row that never exists, checked at COMMIT (a deferred key): a transaction
    that leaves its row behind cannot commit, so the way is never left open.
    """

    __tablename__ = "append_only_unlocks"

    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(80))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    must_close: Mapped[int] = mapped_column(
        ForeignKey("append_only_unlocks.id", deferrable=True, initially="DEFERRED")
    )
