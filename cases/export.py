"""The JSON export of cases: one object per case, personal data masked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from cases.models import Case
from infra.clock import iso_utc
from transcription.models import Recording, StorageStatus


def case_record(case: Case) -> dict[str, Any]:
    recording = case.recordings[-1] if case.recordings else None
    transcript = recording.transcript if recording else None
    callback = case.callback
    return {
        "reference": case.reference,
        "status": str(case.status),
        "category": str(case.category),
        "ivr_category": str(case.ivr_category),
        "language": case.language,
        "province_code": case.province_code,
        "office_code": case.office.code,
        "callback_requested": case.callback_requested,
        "caller_number_masked": case.callback_number_masked if case.callback_requested else None,
        "opened_by": case.opened_by,
        "recording_sid": recording.recording_sid if recording else None,
        # Our copy's state once we know it (stored, unavailable, absent), else what Twilio said.
        "recording_status": _recording_status(recording) if recording else None,
        "transcript_status": str(transcript.status) if transcript else None,
        "transcript_text": transcript.text if transcript else None,
        "created_at": iso_utc(case.created_at),
        # The current due time of the call back (it moves after a failed attempt), and its state.
        "callback_due_at": iso_utc(callback.due_at) if callback else None,
        "callback_state": str(callback.state) if callback else None,
    }


def _recording_status(recording: Recording) -> str:
    if recording.storage_status != StorageStatus.PENDING:
        return str(recording.storage_status)
    return recording.status


def iter_case_records(session: Session, batch: int = 500) -> Iterator[dict[str, Any]]:
    """Every case, oldest first, loaded in batches so a large table does not fill memory."""
    stmt = (
        select(Case)
        .options(
            selectinload(Case.office),
            selectinload(Case.callback),
            selectinload(Case.recordings).selectinload(Recording.transcript),
        )
        .order_by(Case.id)
        .execution_options(yield_per=batch)
    )
    for case in session.scalars(stmt):
        yield case_record(case)
