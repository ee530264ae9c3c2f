"""What retention erases, and when: one query per kind of data, and the dry run's counts by office.

Each query selects only rows that still hold what their kind erases, so a sweep that ran (or crashed)
before finds nothing twice. Cases under legal hold are left out of every kind, whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, ScalarSelect, Select, and_, exists, func, literal, or_, select
from sqlalchemy.orm import Session

from cases.models import (
    Call,
    Callback,
    CallbackChoice,
    CallEvent,
    Case,
    CaseEvent,
    CaseStatus,
    Notification,
    NotificationStatus,
    Office,
    TranscriptCorrection,
)
from cases.retention.settings import RetentionSettings
from cases.staff import AuditEvent
from transcription.models import Recording, StorageStatus, Transcript, TranscriptStatus

# The kinds, in the order the sweep erases them: drafts first, so their content is counted as drafts.
KINDS = ("drafts", "caller_numbers", "recordings", "call_events", "notifications", "audit")
Due = Select[int, int | None]  # (row id, office id) of the rows a kind would erase
NO_OFFICE = "-"  # a call that never became a case, an audit row about no case


@dataclass(frozen=True)
class PlanRow:
    kind: str
    office: str  # the office's code, or NO_OFFICE
    count: int


def resolved_at() -> ScalarSelect[Any]:
    """When the case was last resolved (its last move to resolved), as a correlated subquery."""
    return (
        select(func.max(CaseEvent.at))
        .where(CaseEvent.case_id == Case.id, CaseEvent.to_status == CaseStatus.RESOLVED.value)
        .scalar_subquery()
    )


def _number_left() -> ColumnElement[bool]:
    call_number = exists().where(
        Call.id == Case.call_id,
        or_(Call.caller_number_enc.is_not(None), Call.caller_number_masked.is_not(None)),
    )
    return or_(Case.callback_number_enc.is_not(None), Case.callback_number_masked.is_not(None), call_number)


def _recording_left() -> ColumnElement[bool]:
    return exists().where(Recording.case_id == Case.id, Recording.erased_at.is_(None))


def _path_left() -> ColumnElement[bool]:
    return exists().where(CallEvent.call_id == Case.call_id)


def _not_a_due_draft(now: datetime, s: RetentionSettings) -> ColumnElement[bool]:
    """Drafts past their period are the drafts kind's, whole: no other kind counts them twice."""
    return ~and_(Case.status == CaseStatus.DRAFT.value, Case.created_at < now - timedelta(days=s.drafts))


def due_drafts(now: datetime, s: RetentionSettings) -> Due:
    """Cases never routed out of draft, older than the period, that still hold anything personal."""
    cutoff = now - timedelta(days=s.drafts)
    return select(Case.id, Case.office_id).where(
        Case.status == CaseStatus.DRAFT.value,
        Case.created_at < cutoff,
        Case.legal_hold_at.is_(None),
        or_(_number_left(), _recording_left(), _path_left()),
    )


def due_caller_numbers(now: datetime, s: RetentionSettings) -> Due:
    """Cases whose callback closed (or, anonymous, whose call was) longer ago than the period."""
    cutoff = now - timedelta(days=s.caller_numbers)
    closed = exists().where(
        Callback.case_id == Case.id, Callback.closed_at.is_not(None), Callback.closed_at < cutoff
    )
    anonymous = and_(
        Case.callback_choice == CallbackChoice.NONE.value,
        Case.created_at < cutoff,
        ~exists().where(Callback.case_id == Case.id, Callback.closed_at.is_(None)),
    )
    return select(Case.id, Case.office_id).where(
        Case.legal_hold_at.is_(None), or_(closed, anonymous), _number_left(), _not_a_due_draft(now, s)
    )


def due_caseless_numbers(now: datetime, s: RetentionSettings) -> Due:
    """Calls that never became a case (hung up before a message), older than the numbers' period."""
    cutoff = now - timedelta(days=s.caller_numbers)
    return select(Call.id, literal(None, type_=Integer).label("office_id")).where(
        Call.created_at < cutoff,
        ~exists().where(Case.call_id == Call.id),
        or_(Call.caller_number_enc.is_not(None), Call.caller_number_masked.is_not(None)),
    )


def due_recordings(now: datetime, s: RetentionSettings) -> Due:
    """Recordings of cases resolved longer ago than the period whose words staff have kept otherwise.

    A summary or a corrected transcript must exist: the machine's words go only once a person's stay.
    A recording still being downloaded or transcribed waits for its job (the job would need the file).
    """
    cutoff = now - timedelta(days=s.recordings)
    corrected = exists().where(TranscriptCorrection.recording_id == Recording.id)
    busy = exists().where(
        Transcript.recording_id == Recording.id, Transcript.status == TranscriptStatus.QUEUED.value
    )
    return (
        select(Recording.id, Case.office_id)
        .join(Case, Case.id == Recording.case_id)
        .where(
            Recording.erased_at.is_(None),
            Recording.storage_status != StorageStatus.PENDING.value,
            ~busy,
            Case.status == CaseStatus.RESOLVED.value,
            Case.legal_hold_at.is_(None),
            resolved_at() < cutoff,
            or_(Case.summary.is_not(None), corrected),
        )
    )


def due_caseless_recordings(now: datetime, s: RetentionSettings) -> Due:
    """Recordings no case holds (the call ended before a case opened, or a message the case never took),
    older than the drafts' period: like a draft's, they never became a report. A recording of a call
    whose case is under legal hold stays; one still being downloaded or transcribed waits for its job.
    """
    cutoff = now - timedelta(days=s.drafts)
    busy = exists().where(
        Transcript.recording_id == Recording.id, Transcript.status == TranscriptStatus.QUEUED.value
    )
    held = exists().where(
        Call.call_sid == Recording.call_sid, Case.call_id == Call.id, Case.legal_hold_at.is_not(None)
    )
    return select(Recording.id, literal(None, type_=Integer).label("office_id")).where(
        Recording.case_id.is_(None),
        Recording.erased_at.is_(None),
        Recording.storage_status != StorageStatus.PENDING.value,
        Recording.created_at < cutoff,
        ~busy,
        ~held,
    )


def due_call_events(now: datetime, s: RetentionSettings) -> Due:
    """Calls older than the period that still hold a menu path (events or IVR state)."""
    cutoff = now - timedelta(days=s.call_events)
    return (
        select(Call.id, Case.office_id)
        .outerjoin(Case, Case.call_id == Call.id)
        .where(
            Call.created_at < cutoff,
            Call.status != "in-progress",
            or_(Case.id.is_(None), and_(Case.legal_hold_at.is_(None), _not_a_due_draft(now, s))),
            exists().where(CallEvent.call_id == Call.id),
        )
    )


def due_notifications(now: datetime, s: RetentionSettings) -> Due:
    """Delivered or failed notifications older than the period (never one still to be sent)."""
    cutoff = now - timedelta(days=s.notifications)
    return (
        select(Notification.id, func.coalesce(Case.office_id, Notification.office_id))
        .outerjoin(Case, Case.id == Notification.case_id)
        .where(
            Notification.created_at < cutoff,
            Notification.status != NotificationStatus.PENDING.value,
            or_(Case.id.is_(None), Case.legal_hold_at.is_(None)),
        )
    )


def due_audit(now: datetime, s: RetentionSettings) -> Due:
    """Audit rows older than the (longest) period, except those about a case under legal hold."""
    cutoff = now - timedelta(days=s.audit)
    return (
        select(AuditEvent.id, Case.office_id)
        .outerjoin(Case, Case.id == AuditEvent.case_id)
        .where(AuditEvent.at < cutoff, or_(Case.id.is_(None), Case.legal_hold_at.is_(None)))
    )


DUE = {
    "drafts": (due_drafts,),
    "caller_numbers": (due_caller_numbers, due_caseless_numbers),
    "recordings": (due_recordings, due_caseless_recordings),
    "call_events": (due_call_events,),
    "notifications": (due_notifications,),
    "audit": (due_audit,),
}


def plan(session: Session, now: datetime, settings: RetentionSettings) -> list[PlanRow]:
    """What a sweep at `now` would erase: counts by kind and office, never a row's content."""
    codes: dict[int, str] = {row[0]: row[1] for row in session.execute(select(Office.id, Office.code))}
    rows: list[PlanRow] = []
    for kind in KINDS:
        counts: dict[str, int] = {}
        for query in DUE[kind]:
            sub = query(now, settings).subquery()
            office_col = sub.c[list(sub.c.keys())[1]]
            for office_id, n in session.execute(select(office_col, func.count()).group_by(office_col)):
                code = codes.get(office_id, NO_OFFICE) if office_id is not None else NO_OFFICE
                counts[code] = counts.get(code, 0) + int(n)
        rows += [PlanRow(kind, code, n) for code, n in sorted(counts.items())]
    return rows
