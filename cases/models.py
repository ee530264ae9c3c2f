"""Typed models of offices, calls (with their IVR path) and cases."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
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


class CallbackState(enum.StrEnum):
    PENDING = "pending"  # waiting for staff to call; due_at says by when
    CALLING = "calling"  # an attempt is under way (the operator's phone or the bridge is ringing)
    REACHED = "reached"  # the reporter was spoken to: the promise is kept, reminders stop
    GAVE_UP = "gave_up"  # the maximum attempts failed
    CANCELLED = "cancelled"  # closed by staff without a call (e.g. the reporter called in again)


OPEN_CALLBACK_STATES = (CallbackState.PENDING, CallbackState.CALLING)


class AttemptOutcome(enum.StrEnum):
    REQUESTED = "requested"  # asked Twilio to ring the operator's phone
    OPERATOR_RINGING = "operator_ringing"
    BRIDGING = "bridging"  # the operator answered; the reporter's phone is ringing
    REACHED = "reached"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"
    FAILED = "failed"  # Twilio could not place the reporter's leg
    OPERATOR_UNREACHABLE = "operator_unreachable"  # the operator's own phone did not answer
    LOGGED = "logged"  # recorded by hand (reached by other means); see CallbackAttempt.note


# Outcomes that end an attempt; the first four are the reporter's, and count against max attempts.
REPORTER_FAILURES = (
    AttemptOutcome.NO_ANSWER,
    AttemptOutcome.BUSY,
    AttemptOutcome.VOICEMAIL,
    AttemptOutcome.FAILED,
)


class ReminderKind(enum.StrEnum):
    BEFORE_DUE = "before_due"  # to the responsible SC-Operators, a while before the due time
    AT_DUE = "at_due"  # to the same, at the due time
    ESCALATE_HEAD = "escalate_head"  # not logged a grace period after due: the office's head SC-Operator
    ESCALATE_PARENT = "escalate_parent"  # a second period later: the parent office's heads


class Channel(enum.StrEnum):
    CONSOLE = "console"
    EMAIL = "email"
    SMS = "sms"
    LINE = "line"


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its (next) attempt
    SENT = "sent"
    FAILED = "failed"  # every attempt failed; shown in the console


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


# The case's milestone columns, by the action of the event that sets each (cases.milestones).
MILESTONES: dict[str, str] = {
    "route": "routed_at",
    "approve": "approved_at",
    "record_action": "first_action_at",
    "resolve": "resolved_at",
}
MILESTONE_COLUMNS = tuple(MILESTONES.values())


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("call_id"),
        # The queue pages in age order and filters on status: with status in the index, picking a deep
        # page's ids reads only the index (no table row per skipped case), and so do the state counts.
        Index("ix_cases_queue", "created_at", "id", "status"),
        # The dashboard counts a period's cases by state, group, province and office from this index alone.
        Index("ix_cases_figures", "created_at", "status", "category", "province_code", "office_id"),
        Index("ix_cases_office_figures", "office_id", "created_at", "status", "category", "province_code"),
        # The dashboard's medians read the milestones of a period's cases from these alone (migration 0017).
        Index("ix_cases_milestones", "created_at", *MILESTONE_COLUMNS),
        Index("ix_cases_office_milestones", "office_id", "created_at", "status", *MILESTONE_COLUMNS),
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
    # Keyed hashes of the last 4 digits of the callback number and of the number that called
    # (cases.search_index): the console finds a case by them without decrypting every number. Erased with
    # the numbers.
    callback_digits_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    caller_digits_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))
    # Why the case was opened without the caller pressing "send", if so.
    opened_by: Mapped[str] = mapped_column(String(32), default="caller")
    summary: Mapped[str | None] = mapped_column(Text)
    # The office that forwarded the case to the office it is at now (a province to its district).
    forwarded_from_office_id: Mapped[int | None] = mapped_column(ForeignKey("offices.id"), index=True)
    outcome: Mapped[str | None] = mapped_column(Text)
    # Legal hold (cases.retention.hold): set by a head with a reason; the retention sweep skips the case.
    legal_hold_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    legal_hold_by: Mapped[int | None] = mapped_column(Integer)  # a user id (no FK: see migration 0012)
    legal_hold_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Milestones: the time of the case's FIRST event of each action (cases.milestones keeps them; a later
    # event of the same action, e.g. a second action or a resolve after a reopen, leaves them as they are).
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_action_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    office: Mapped[Office] = relationship(foreign_keys=[office_id])
    call: Mapped[Call | None] = relationship(back_populates="case")
    recordings: Mapped[list[Recording]] = relationship(
        primaryjoin="Case.id == foreign(Recording.case_id)", order_by="Recording.id", viewonly=True
    )
    callback: Mapped[Callback | None] = relationship(viewonly=True, uselist=False)

    @property
    def callback_requested(self) -> bool:
        return self.callback_choice != CallbackChoice.NONE

    @property
    def anonymous(self) -> bool:
        return self.callback_choice == CallbackChoice.NONE


class CaseEvent(Base):
    """Every move and edit of a case: who, when, what, from which state. Append-only."""

    __tablename__ = "case_events"
    # The dashboard's median times read each case's first event of an action from this index alone.
    __table_args__ = (Index("ix_case_events_case_action_at", "case_id", "action", "at"),)

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
    """A person's correction of a machine transcript; the machine text stays untouched beside it.

    Each save is a new row (the page shows the latest, and the earlier ones as versions). Append-only.
    """

    __tablename__ = "transcript_corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    text: Mapped[str] = mapped_column(Text)


class SearchText(Base):
    """A text of a case made searchable: its words segmented (Thai by PyThaiNLP), lowercased, one space apart.

    One row per summary (the latest), machine transcript and latest correction of a recording. SQLite
    keeps the FTS5 table `search_fts` in step by triggers; PostgreSQL has a GIN index on
    to_tsvector('simple', words). Both are made by migration 0015 (cases.search_index).
    """

    __tablename__ = "search_texts"
    __table_args__ = (UniqueConstraint("kind", "source_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # summary | transcript | correction
    source_id: Mapped[int] = mapped_column(Integer)  # the case's id (summary) or the recording's
    words: Mapped[str] = mapped_column(Text)


class SummaryVersion(Base):
    """Every summary an SC-Operator saved, in order: the case's `summary` is only the latest. Append-only."""

    __tablename__ = "summary_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    # None only for a summary written before versions were kept (migration 0008 copied it in).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    text: Mapped[str] = mapped_column(Text)
    category: Mapped[HazardGroup] = mapped_column(String(24))


class Callback(Base):
    """The promise to call a reporter back: one per case that asked for it, with its due time."""

    __tablename__ = "callbacks"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), unique=True)
    # The office whose SC-Operators are responsible: the case's office, kept in step when it moves.
    office_id: Mapped[int] = mapped_column(ForeignKey("offices.id"), index=True)
    state: Mapped[CallbackState] = mapped_column(String(16), default=CallbackState.PENDING)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the current due time (moves after a failed try)
    first_due_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the SLA's, never moved
    # Rounds of reminders: 0 for the first due time, +1 each time a failed attempt sets a new one.
    round: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # reporter-side attempts that failed or reached
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # who took it, if anyone
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    case: Mapped[Case] = relationship(viewonly=True)
    office: Mapped[Office] = relationship()

    __table_args__ = (Index("ix_callbacks_open_due", "state", "due_at"),)


class CallbackAttempt(Base):
    """One try to call the reporter back through the bridge (or logged by hand)."""

    __tablename__ = "callback_attempts"
    # The bridge's rate limits count a user's attempts of the last hour (cases.callbacks.dialing).
    __table_args__ = (Index("ix_callback_attempts_operator_started", "operator_id", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    callback_id: Mapped[int] = mapped_column(ForeignKey("callbacks.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    outcome: Mapped[AttemptOutcome] = mapped_column(String(24), default=AttemptOutcome.REQUESTED)
    # Twilio's SIDs of the two legs: the status callbacks are keyed on them (retries change nothing twice).
    operator_call_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    reporter_call_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_s: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    # The staff phone the bridge rang (encrypted; None for a call logged by hand). operator_id is who asked.
    operator_number_enc: Mapped[str | None] = mapped_column(Text)


class Reminder(Base):
    """A reminder or escalation due at a time. The row is the truth; sent_at is set exactly once."""

    __tablename__ = "reminders"
    __table_args__ = (
        UniqueConstraint("callback_id", "round", "kind"),
        # The sweep reads only unsent, uncancelled rows in due order.
        Index(
            "ix_reminders_pending",
            "due_at",
            sqlite_where=text("sent_at IS NULL AND cancelled_at IS NULL"),
            postgresql_where=text("sent_at IS NULL AND cancelled_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    callback_id: Mapped[int] = mapped_column(ForeignKey("callbacks.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    round: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[ReminderKind] = mapped_column(String(24))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Whose people hear it: the responsible office, its head, or the parent office.
    office_id: Mapped[int] = mapped_column(ForeignKey("offices.id"))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    late: Mapped[bool] = mapped_column(Boolean, default=False)  # sent well after due (worker was down)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Notification(Base):
    """The outbox: one row per message and channel (and recipient), delivered with retries.

    Text carries the case reference and a console link, never the reporter's number or the transcript.
    """

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # What made it, so one event gives one message per channel and recipient even when retried.
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[Channel] = mapped_column(String(16))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    reminder_id: Mapped[int | None] = mapped_column(ForeignKey("reminders.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)  # console, e-mail, SMS
    office_id: Mapped[int | None] = mapped_column(ForeignKey("offices.id"))  # LINE: the office's group
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[NotificationStatus] = mapped_column(String(16), default=NotificationStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # console notifications: the badge
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))


class NotificationAttempt(Base):
    """Each delivery attempt of a notification: when, whether it worked, the error (no personal data)."""

    __tablename__ = "notification_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(String(300))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    provider_ref: Mapped[str | None] = mapped_column(String(120))  # Twilio's message SID, LINE's request id


class FollowUpTry(Base):
    """A case reference keyed at the follow-up menu that named no case: the calls of one number get few.

    `caller_hash` is a keyed hash of the calling number (never the number); rows older than the counting
    window are deleted as new ones come (cases.follow_up).
    """

    __tablename__ = "follow_up_tries"

    id: Mapped[int] = mapped_column(primary_key=True)
    caller_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        Index("ix_follow_up_tries_caller_at", "caller_hash", "at"),
        Index("ix_follow_up_tries_at", "at"),
    )


class ErasureRequest(Base):
    """An admin's request to erase a case's personal data (cases.subject), done only when a second admin
    approves it (two-person rule, as role requests); kept when decided."""

    __tablename__ = "erasure_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    # The requester's justification (the data subject's request, its date and channel): staff words only.
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # pending, approved (the erasure was done in the same transaction), rejected
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RetentionRun(Base):
    """One finished retention sweep: when, and how many of each kind it erased (counts only, no ids).

    The privacy page shows the last one; a run that stopped half-way leaves no row (its work is kept,
    batch by batch, and the next run counts what it finishes).
    """

    __tablename__ = "retention_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)  # kind -> rows erased
    faults: Mapped[int] = mapped_column(Integer, default=0)
