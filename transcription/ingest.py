"""Recording service functions called from the webhooks: note a recording, apply a status callback."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from transcription.models import Recording, RecordingCallback, StorageStatus

TERMINAL_TWILIO_STATUSES = {"completed", "absent", "failed"}


def note_recording(
    session: Session,
    *,
    recording_sid: str,
    call_sid: str,
    media_url: str,
    duration_s: int | None,
    language: str | None,
) -> Recording:
    """The row for a recording, created the first time any webhook mentions it. Flushes."""
    row = session.scalar(select(Recording).where(Recording.recording_sid == recording_sid).with_for_update())
    if row is None:
        row = Recording(
            recording_sid=recording_sid,
            call_sid=call_sid,
            media_url=media_url,
            duration_s=duration_s,
            language=language,
            status="reported",
            storage_status=StorageStatus.PENDING,
            download_attempts=0,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            # The same recording's other webhook (action or status) created it concurrently.
            found = session.scalar(select(Recording).where(Recording.recording_sid == recording_sid))
            assert found is not None
            row = found
    if row.duration_s is None and duration_s is not None:
        row.duration_s = duration_s
    if row.language is None and language:
        row.language = language
    if not row.call_sid:
        row.call_sid = call_sid
    return row


def apply_status_callback(
    session: Session,
    *,
    recording_sid: str,
    call_sid: str,
    status: str,
    media_url: str,
    duration_s: int | None,
    language: str | None,
    now: datetime,
) -> Recording | None:
    """Apply Twilio's recording status once per (RecordingSid, status); returns None for a repeat."""
    try:
        with session.begin_nested():
            session.add(RecordingCallback(recording_sid=recording_sid, status=status, received_at=now))
            session.flush()
    except IntegrityError:
        return None
    row = note_recording(
        session,
        recording_sid=recording_sid,
        call_sid=call_sid,
        media_url=media_url,
        duration_s=duration_s,
        language=language,
    )
    if status not in TERMINAL_TWILIO_STATUSES or row.status in TERMINAL_TWILIO_STATUSES:
        return row  # in-progress, or a late callback after the final word: nothing to change
    row.status = status
    if status == "completed" and row.storage_status == StorageStatus.PENDING:
        row.next_attempt_at = now  # due for download at once
    elif status in ("absent", "failed") and row.storage_status == StorageStatus.PENDING:
        row.storage_status = StorageStatus.ABSENT if status == "absent" else StorageStatus.UNAVAILABLE
        row.last_error = (
            "Twilio recorded no audio" if status == "absent" else "Twilio reported the recording failed"
        )
    session.flush()
    return row
