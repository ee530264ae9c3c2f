"""The sweep's erasures, a batch of rows at a time: a few set-based statements per batch, not one per row.

Each function takes the ids a due query of cases.retention.rules selected (and the batch's transaction
checked again) and erases what that kind erases, leaving the same tombstones as the one-row helpers of
cases.retention.sweep, which the subject erasure uses. Nothing is loaded into the session: the bulk
statements skip its synchronisation, so a caller must not hold these rows as objects in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from cases import audit
from cases.models import Call, CallEvent, Case, CaseEvent, Notification, NotificationAttempt, SearchText
from cases.search_index import TRANSCRIPT
from cases.staff import AuditEvent
from transcription.models import Recording, Transcript

TOMBSTONE = "retention_erased"  # the case event each erasure leaves (console: "… erased by retention")
NO_SYNC = {"synchronize_session": False}


Owned = Iterable[tuple[int, dict[str, Any]]]  # (case id, what the tombstone adds to its detail)


def tombstones(session: Session, rows: Owned, what: str, now: datetime) -> None:
    """One case event per (case id, extra detail): "<what> erased by retention on <date>"."""
    values = [
        {
            "case_id": case_id,
            "at": now,
            "actor_id": None,
            "action": TOMBSTONE,
            "detail": {"what": what, "on": now.date().isoformat(), **extra},
        }
        for case_id, extra in rows
    ]
    if values:
        session.execute(insert(CaseEvent), values)


def _numbers_of_cases(session: Session, case_ids: Sequence[int]) -> None:
    session.execute(
        update(Case)
        .where(Case.id.in_(case_ids))
        # The keyed hashes of the last digits (cases.search_index) go with the numbers.
        .values(
            callback_number_enc=None,
            callback_number_masked=None,
            callback_digits_hash=None,
            caller_digits_hash=None,
        )
        .execution_options(**NO_SYNC)
    )
    erase_call_numbers(session, select(Case.call_id).where(Case.id.in_(case_ids)).scalar_subquery())


def erase_call_numbers(session: Session, call_ids: Any) -> None:
    """The caller's number on these calls (a list of ids, or a subquery of them)."""
    session.execute(
        update(Call)
        .where(Call.id.in_(call_ids))
        .values(caller_number_enc=None, caller_number_masked=None)
        .execution_options(**NO_SYNC)
    )


def erase_case_numbers(session: Session, case_ids: Sequence[int], now: datetime) -> None:
    """The reporter's number on these cases and their calls."""
    _numbers_of_cases(session, case_ids)
    tombstones(session, ((c, {}) for c in case_ids), "caller_number", now)


def mark_recordings(session: Session, recording_ids: Sequence[int], now: datetime) -> None:
    """Step one for these recordings: the machine transcripts' words, and the mark (file and Twilio next)."""
    if not recording_ids:
        return
    session.execute(
        update(Transcript)
        .where(Transcript.recording_id.in_(recording_ids))
        .values(text=None, words=None, mean_confidence=None)
        .execution_options(**NO_SYNC)
    )
    session.execute(
        update(Recording)
        .where(Recording.id.in_(recording_ids))
        .values(erased_at=now)
        .execution_options(**NO_SYNC)
    )
    session.execute(  # the transcripts' words leave the search index with them
        delete(SearchText)
        .where(SearchText.kind == TRANSCRIPT, SearchText.source_id.in_(recording_ids))
        .execution_options(**NO_SYNC)
    )


def erase_recordings(session: Session, recording_ids: Sequence[int], now: datetime) -> None:
    """Recordings of resolved cases: step one now, and a tombstone on each one's case."""
    owners = session.execute(select(Recording.id, Recording.case_id).where(Recording.id.in_(recording_ids)))
    mark_recordings(session, recording_ids, now)
    tombstones(session, ((case, {"recording": rec}) for rec, case in owners if case), "recording", now)


def erase_caseless_recordings(session: Session, recording_ids: Sequence[int], now: datetime) -> None:
    """Recordings no case holds (the call ended before one, or a message the case never took).

    The tombstone goes on the case of the recording's call when there is one; otherwise an audit row
    (by no one) says which recording went, so what happened to it can still be told.
    """
    rows = session.execute(
        select(Recording.id, Case.id)
        .outerjoin(Call, Call.call_sid == Recording.call_sid)
        .outerjoin(Case, Case.call_id == Call.id)
        .where(Recording.id.in_(recording_ids))
    ).all()
    mark_recordings(session, recording_ids, now)
    tombstones(session, ((case, {"recording": rec}) for rec, case in rows if case), "recording", now)
    for rec, case_id in rows:
        if case_id is None:
            audit.record(
                session, None, TOMBSTONE, detail={"what": "recording", "recording": rec}, clock=lambda: now
            )


def _clear_paths(session: Session, call_ids: Any) -> None:
    """The calls' events (append-only: the batch runs inside `unlocked`) and their IVR state."""
    session.execute(delete(CallEvent).where(CallEvent.call_id.in_(call_ids)).execution_options(**NO_SYNC))
    session.execute(
        update(Call)
        .where(Call.id.in_(call_ids))
        .values(ivr_state={}, last_response=None)
        .execution_options(**NO_SYNC)
    )


def erase_call_paths(session: Session, call_ids: Sequence[int], now: datetime) -> None:
    """The callers' paths through the menu; a tombstone on each call's case, if it has one."""
    _clear_paths(session, call_ids)
    cases = session.scalars(select(Case.id).where(Case.call_id.in_(call_ids)))
    tombstones(session, ((c, {}) for c in cases), "call_events", now)


def erase_drafts(session: Session, case_ids: Sequence[int], now: datetime) -> None:
    """Cases that never left draft: their numbers, recordings, transcripts and menu paths."""
    _numbers_of_cases(session, case_ids)
    recordings = list(
        session.scalars(
            select(Recording.id).where(Recording.case_id.in_(case_ids), Recording.erased_at.is_(None))
        )
    )
    mark_recordings(session, recordings, now)
    _clear_paths(session, select(Case.call_id).where(Case.id.in_(case_ids)).scalar_subquery())
    # Whatever of the draft was made searchable (a transcript, an agent's correction) goes with it.
    session.execute(delete(SearchText).where(SearchText.case_id.in_(case_ids)).execution_options(**NO_SYNC))
    tombstones(session, ((c, {}) for c in case_ids), "draft", now)


def delete_notifications(session: Session, ids: Sequence[int]) -> None:
    """Notifications and their delivery attempts."""
    session.execute(
        delete(NotificationAttempt)
        .where(NotificationAttempt.notification_id.in_(ids))
        .execution_options(**NO_SYNC)
    )
    session.execute(delete(Notification).where(Notification.id.in_(ids)).execution_options(**NO_SYNC))


def delete_audit_rows(session: Session, ids: Sequence[int]) -> None:
    session.execute(delete(AuditEvent).where(AuditEvent.id.in_(ids)).execution_options(**NO_SYNC))
