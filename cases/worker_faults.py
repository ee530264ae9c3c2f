"""The worker's faults as office admins see them: downloads and transcripts failing, given up or stuck.

An office admin answers for the office running (staff, addresses, and telling the server's administrator
when the server fails it), so they see the recordings and transcripts of their offices' cases, and of
the offices under them, that the worker could not download, store, read or transcribe. An admin of the
central office also sees those not yet attached to any case. Nothing here writes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, true
from sqlalchemy.orm import Session

from cases.models import Case, Office
from cases.notifications import overseen_office_ids
from cases.staff import Role, User
from transcription.models import Recording, StorageStatus, Transcript, TranscriptStatus

# Due this long and untouched by any worker: no worker is running, or none can keep up.
UNTOUCHED_AFTER = timedelta(minutes=15)


class FaultState(enum.StrEnum):
    RETRYING = "retrying"  # a fault is on the row; the worker tries again by itself
    GAVE_UP = "gave_up"  # the worker stopped trying: Twilio has no usable copy, or transcription failed
    STUCK = "stuck"  # claimed by a worker whose lease ran out: that worker stopped mid-way
    UNTOUCHED = "untouched"  # due for a long time and no worker has taken it


@dataclass(frozen=True)
class WorkerFault:
    kind: str  # "recording" or "transcript"
    state: FaultState
    recording: Recording
    transcript: Transcript | None
    case: Case | None
    office: Office | None
    error: str | None
    tries: int
    when: datetime | None  # the next try (retrying), since when (stuck, untouched), or when it ended

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.transcript.id if self.transcript else self.recording.id}"


def admin_scope(session: Session, user: User) -> ColumnElement[bool] | None:
    """The condition on Recording for the offices the user administers; None when they administer none."""
    offices = overseen_office_ids(session, user, (Role.ADMIN,))
    if offices is None:
        return true()
    if not offices:
        return None
    return Recording.case_id.in_(select(Case.id).where(Case.office_id.in_(offices)))


def _recording_faulty(now: datetime) -> ColumnElement[bool]:
    return or_(
        Recording.storage_status == StorageStatus.UNAVAILABLE,
        and_(
            Recording.storage_status.in_([StorageStatus.PENDING, StorageStatus.STORED]),
            Recording.last_error.is_not(None),
        ),
        and_(Recording.claimed_by.is_not(None), Recording.claimed_until < now),
        and_(
            Recording.storage_status == StorageStatus.PENDING,
            Recording.claimed_by.is_(None),
            func.coalesce(Recording.next_attempt_at, Recording.created_at) < now - UNTOUCHED_AFTER,
        ),
    )


def _transcript_faulty(now: datetime) -> ColumnElement[bool]:
    queued = Transcript.status == TranscriptStatus.QUEUED
    return or_(
        Transcript.status.in_([TranscriptStatus.FAILED, TranscriptStatus.TIMEOUT]),
        and_(queued, Transcript.reason.is_not(None)),
        and_(queued, Transcript.claimed_by.is_not(None), Transcript.claimed_until < now),
        and_(queued, Transcript.claimed_by.is_(None), Transcript.created_at < now - UNTOUCHED_AFTER),
    )


def _recording_fault(rec: Recording, case: Case | None, office: Office | None, now: datetime) -> WorkerFault:
    when: datetime | None
    if rec.claimed_by is not None and rec.claimed_until is not None and rec.claimed_until < now:
        state, when = FaultState.STUCK, rec.claimed_until
    elif rec.storage_status == StorageStatus.UNAVAILABLE:
        state, when = FaultState.GAVE_UP, rec.updated_at
    elif rec.last_error is not None:
        state, when = FaultState.RETRYING, rec.next_attempt_at
    else:
        state, when = FaultState.UNTOUCHED, rec.next_attempt_at or rec.created_at
    return WorkerFault(
        "recording", state, rec, None, case, office, rec.last_error, rec.download_attempts, when
    )


def _transcript_fault(
    row: Transcript, rec: Recording, case: Case | None, office: Office | None, now: datetime
) -> WorkerFault:
    when: datetime | None
    if row.claimed_by is not None and row.claimed_until is not None and row.claimed_until < now:
        state, when = FaultState.STUCK, row.claimed_until
    elif row.status != TranscriptStatus.QUEUED:
        state, when = FaultState.GAVE_UP, row.finished_at
    elif row.reason is not None:
        state, when = FaultState.RETRYING, rec.next_attempt_at
    else:
        state, when = FaultState.UNTOUCHED, row.created_at
    error = row.reason if row.status == TranscriptStatus.QUEUED else f"{row.status}: {row.reason or ''}"
    return WorkerFault("transcript", state, rec, row, case, office, error, row.attempts, when)


def worker_faults(
    session: Session, user: User, now: datetime, *, limit: int = 200
) -> list[WorkerFault] | None:
    """The faults of the offices the user administers, latest first; None when they administer none."""
    scope = admin_scope(session, user)
    if scope is None:
        return None
    recordings = session.execute(
        select(Recording, Case, Office)
        .outerjoin(Case, Case.id == Recording.case_id)
        .outerjoin(Office, Office.id == Case.office_id)
        .where(scope, _recording_faulty(now))
        .order_by(Recording.updated_at.desc(), Recording.id.desc())
        .limit(limit)
    ).all()
    transcripts = session.execute(
        select(Transcript, Recording, Case, Office)
        .join(Recording, Recording.id == Transcript.recording_id)
        .outerjoin(Case, Case.id == Recording.case_id)
        .outerjoin(Office, Office.id == Case.office_id)
        .where(scope, _transcript_faulty(now))
        .order_by(Transcript.id.desc())
        .limit(limit)
    ).all()
    faults = [_recording_fault(rec, case, office, now) for rec, case, office in recordings]
    faults += [_transcript_fault(row, rec, case, office, now) for row, rec, case, office in transcripts]
    # Newest first: a row's last change, else when it was made.
    faults.sort(key=lambda f: f.recording.updated_at, reverse=True)
    return faults[:limit]


def worker_fault_count(session: Session, user: User, now: datetime) -> int | None:
    """How many rows worker_faults() would list (uncapped); None when the user administers no office."""
    scope = admin_scope(session, user)
    if scope is None:
        return None
    recordings = session.scalar(select(func.count(Recording.id)).where(scope, _recording_faulty(now)))
    transcripts = session.scalar(
        select(func.count(Transcript.id))
        .join(Recording, Recording.id == Transcript.recording_id)
        .where(scope, _transcript_faulty(now))
    )
    return int(recordings or 0) + int(transcripts or 0)
