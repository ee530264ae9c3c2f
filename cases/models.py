"""Typed models of offices, calls (with their IVR path) and cases."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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
    DRAFT = "draft"  # opened by the IVR; waits for a call-centre agent at the central Safety Center
    ROUTED = "routed"  # at an office, waiting for its SC-Operators
    PROPOSED = "proposed"  # a forwarding waits for the head SC-Operator's approval
    ASSIGNED = "assigned"  # forwarded to SC-Action staff or a committee, not yet acknowledged
    IN_ACTION = "in_action"  # acknowledged: being worked
    RESOLVED = "resolved"


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
    __table_args__ = (
        UniqueConstraint("call_id"),
        # The queue pages in age order and filters on status: with status in the index, picking a deep
        # page's ids reads only the index (no table row per skipped case), and so do the state counts.
        Index("ix_cases_queue", "created_at", "id", "status"),
    )

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
    summary: Mapped[str | None] = mapped_column(Text)
    # The office that forwarded the case to the office it is at now (a province to its district).
    forwarded_from_office_id: Mapped[int | None] = mapped_column(ForeignKey("offices.id"), index=True)
    outcome: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    office: Mapped[Office] = relationship(foreign_keys=[office_id])
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


class CaseEvent(Base):
    """Every move and edit of a case: who, when, what, from which state. Append-only."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str | None] = mapped_column(String(24))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ForwardingProposal(Base):
    """An SC-Operator's proposal to forward a case; nothing goes out before a head approves it."""

    __tablename__ = "forwarding_proposals"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    office_id: Mapped[int] = mapped_column(ForeignKey("offices.id"), index=True)  # the proposing office
    proposed_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    to_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    to_committee_id: Mapped[int | None] = mapped_column(ForeignKey("committees.id"))
    to_office_id: Mapped[int | None] = mapped_column(ForeignKey("offices.id"))
    note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(
        String(16), default="pending", index=True
    )  # pending|approved|rejected
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)


class Assignment(Base):
    """A case given to one SC-Action person or to a committee (whose members each acknowledge)."""

    __tablename__ = "assignments"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    committee_id: Mapped[int | None] = mapped_column(ForeignKey("committees.id"), index=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("forwarding_proposals.id"))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Acknowledgement(Base):
    __tablename__ = "acknowledgements"
    __table_args__ = (UniqueConstraint("assignment_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CaseAction(Base):
    """What SC-Action staff did on a case."""

    __tablename__ = "case_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    text: Mapped[str] = mapped_column(Text)


class TranscriptCorrection(Base):
    """A person's correction of a machine transcript; the machine text stays untouched beside it."""

    __tablename__ = "transcript_corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    text: Mapped[str] = mapped_column(Text)
