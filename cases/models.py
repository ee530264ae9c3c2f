"""Typed models of offices, calls (with their IVR path) and cases."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from infra.clock import utcnow
from infra.db import Base, UTCDateTime
from transcription.models import Recording


class HazardGroup(enum.StrEnum):
    VIOLENCE = "violence"
    ACCIDENT = "accident"
    RIGHTS_VIOLATION = "rights_violation"
    HEALTH_HARM = "health_harm"
    UNSPECIFIED = "unspecified"


class OfficeKind(enum.StrEnum):
    CENTRAL = "central"
    PROVINCE = "province"
    DISTRICT = "district"


class CaseStatus(enum.StrEnum):
    DRAFT = "draft"


class CallbackChoice(enum.StrEnum):
    CALLER = "caller"  # call back the number that called
    OTHER = "other"  # a number the caller keyed
    NONE = "none"  # anonymous: no number stored with the case


CENTRAL_OFFICE_CODE = "central"


class Office(Base):
    __tablename__ = "offices"

    id: Mapped[int] = mapped_column(primary_key=True)
    # "central", a 2-digit DOPA province code, or a 4-digit DOPA district code.
    code: Mapped[str] = mapped_column(String(8), unique=True)
    kind: Mapped[OfficeKind] = mapped_column(String(16))
    name_th: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    province_code: Mapped[str | None] = mapped_column(String(2), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("offices.id"))

    parent: Mapped[Office | None] = relationship(remote_side=[id])


class Call(Base):
    """One inbound call, keyed by Twilio's CallSid; holds the IVR state between webhooks."""

    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(24), default="in-progress")
    caller_number_enc: Mapped[str | None] = mapped_column(Text)
    caller_number_masked: Mapped[str | None] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(8), default="th")
    ivr_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The step counter put in every action URL, and the last answer, so a retried webhook is
    # answered again without being applied twice.
    seq: Mapped[int] = mapped_column(Integer, default=0)
    last_response: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    events: Mapped[list[CallEvent]] = relationship(
        back_populates="call", order_by="CallEvent.id", cascade="all, delete-orphan"
    )
    case: Mapped[Case | None] = relationship(back_populates="call")


class CallEvent(Base):
    """A step on the caller's path through the menu; never holds digits of a phone number."""

    __tablename__ = "call_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    node: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    call: Mapped[Call] = relationship(back_populates="events")


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (UniqueConstraint("call_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    status: Mapped[CaseStatus] = mapped_column(String(24), default=CaseStatus.DRAFT)
    category: Mapped[HazardGroup] = mapped_column(String(24))
    ivr_category: Mapped[HazardGroup] = mapped_column(String(24))
    language: Mapped[str] = mapped_column(String(8))
    province_code: Mapped[str | None] = mapped_column(String(2))
    office_id: Mapped[int] = mapped_column(ForeignKey("offices.id"), index=True)
    callback_choice: Mapped[CallbackChoice] = mapped_column(String(8))
    callback_number_enc: Mapped[str | None] = mapped_column(Text)
    callback_number_masked: Mapped[str | None] = mapped_column(String(32))
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))
    # Why the case was opened without the caller pressing "send", if so.
    opened_by: Mapped[str] = mapped_column(String(32), default="caller")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    office: Mapped[Office] = relationship()
    call: Mapped[Call | None] = relationship(back_populates="case")
    recordings: Mapped[list[Recording]] = relationship(
        primaryjoin="Case.id == foreign(Recording.case_id)", order_by="Recording.id", viewonly=True
    )

    @property
    def callback_requested(self) -> bool:
        return self.callback_choice != CallbackChoice.NONE

    @property
    def anonymous(self) -> bool:
        return self.callback_choice == CallbackChoice.NONE
