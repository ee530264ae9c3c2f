"""Erasure on request (PDPA s.33): one case's reporter's number, recordings, transcripts and words go.

The case's handling record stays: its states, who did what and when, the summary and the actions. What
goes is what the reporter gave or said: the number (case, calls, the open call back), the recordings (file
and Twilio's copy, as retention erases them: cases.retention.sweep), the machine transcripts and staff
corrections' text, the menu path, and free text of events and proposals that may repeat their words (a
rejection's reason, the outcome, a call-back note). Each part erased leaves a tombstone event with the
actor; the whole is audited with the reason. Running it again changes nothing (no new tombstones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from cases import audit, search_index
from cases.callbacks.promise import close_callback, locked
from cases.models import (
    OPEN_CALLBACK_STATES,
    Call,
    CallbackAttempt,
    CallbackState,
    CallEvent,
    Case,
    CaseEvent,
    ForwardingProposal,
    TranscriptCorrection,
)
from cases.models import Callback as CallbackRow
from cases.reference import is_valid_reference
from cases.retention.sweep import (
    RetentionSweep,
    Stone,
    erase_call_number,
    erase_call_path,
    erase_case_number,
    erase_recording_content,
    tombstone,
)
from cases.texts import N_
from cases.workflow import InvalidInput
from infra.db import Database
from infra.sweeps import SweepReport
from transcription.models import Recording, StorageStatus, Transcript, TranscriptStatus

ERASED = "erased_on_request"  # the case event each erased part leaves (console: "Erased on request")
PURPOSE = "subject erase"
# Keys of a case event's detail that hold staff's free text, which may repeat what the reporter said.
FREE_TEXT_KEYS = ("reason", "outcome", "note")
REASON_LIMIT = 500


class SubjectError(InvalidInput):
    """A request about one reporter's data that cannot be done as asked (the message says why)."""


class UnknownReference(SubjectError):
    def __init__(self) -> None:
        super().__init__(N_("No case has that reference."))


class CaseHeld(SubjectError):
    def __init__(self) -> None:
        super().__init__(
            N_("The case is under legal hold: nothing of it can be erased until a head releases the hold.")
        )


def reference_of(text: str) -> str:
    """'1234-5678', '1234 5678' or '12345678' as stored; UnknownReference for anything else."""
    value = text.replace("-", "").replace(" ", "").strip()
    if not is_valid_reference(value):
        raise UnknownReference()
    return value


def find_case(session: Session, text: str) -> Case:
    case = session.scalar(select(Case).where(Case.reference == reference_of(text)))
    if case is None:
        raise UnknownReference()
    return case


def require_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise SubjectError(N_("Give the reason for the request (who asked, when and how)."))
    return reason[:REASON_LIMIT]


@dataclass
class Erased:
    """What one erasure did: the parts erased this time (none: nothing was left), and the recordings
    whose files and Twilio copies are still to go (step two, after the commit: `finish`)."""

    case_id: int
    parts: list[str] = field(default_factory=list)
    recordings: list[int] = field(default_factory=list)


def calls_of(session: Session, case: Case) -> list[Call]:
    """The call that opened the case and the calls whose messages joined it (follow-ups)."""
    sids = select(Recording.call_sid).where(Recording.case_id == case.id)
    return list(
        session.scalars(
            select(Call).where(or_(Call.id == case.call_id, Call.call_sid.in_(sids))).order_by(Call.id)
        )
    )


def erase_case(
    session: Session,
    case: Case,
    *,
    actor_id: int | None,
    reason: str,
    now: datetime,
    request_id: int | None = None,
) -> Erased:
    """Step one, in the caller's transaction: every part's content and its tombstone, and the audit row."""
    if case.legal_hold_at is not None:
        raise CaseHeld()
    reason = require_reason(reason)
    stone = Stone(ERASED, actor_id)
    done = Erased(case.id)
    with audit.unlocked(session, PURPOSE, actor_id, clock=lambda: now):
        calls = calls_of(session, case)
        _numbers(session, case, calls, now, stone, done)
        _recordings(session, case, now, stone, done)
        _corrections(session, case, now, stone, done)
        _free_text(session, case, now, stone, done)
        _paths(session, case, calls, now, stone, done)
    detail: dict[str, object] = {"parts": done.parts}
    if request_id is not None:
        detail["request"] = request_id
    audit.record(
        session, actor_id, "subject_erased", case_id=case.id, detail=detail, reason=reason, clock=lambda: now
    )
    session.flush()
    done.recordings = list(
        session.scalars(
            select(Recording.id).where(
                Recording.case_id == case.id,
                Recording.erased_at.is_not(None),
                or_(Recording.stored_path.is_not(None), Recording.deleted_at_twilio.is_(None)),
            )
        )
    )
    return done


def _numbers(
    session: Session, case: Case, calls: Sequence[Call], now: datetime, stone: Stone, done: Erased
) -> None:
    held = [case.callback_number_enc, case.callback_number_masked]
    held += [v for c in calls for v in (c.caller_number_enc, c.caller_number_masked)]
    if any(held):
        erase_case_number(session, case, now, stone)
        for call in calls:
            erase_call_number(call)
        done.parts.append("caller_number")
    callback = session.scalar(select(CallbackRow).where(CallbackRow.case_id == case.id))
    if callback is not None and callback.state in OPEN_CALLBACK_STATES:
        # Nobody is left to call: the promise closes (its reminders with it), by whoever erased.
        close_callback(session, locked(session, callback.id), CallbackState.CANCELLED, stone.actor_id, now)
        tombstone(session, case.id, "callback", now, stone)
        done.parts.append("callback")


def _recordings(session: Session, case: Case, now: datetime, stone: Stone, done: Erased) -> None:
    pending = session.scalars(
        select(Recording)
        .where(Recording.case_id == case.id, Recording.erased_at.is_(None))
        .order_by(Recording.id)
    ).all()
    for rec in pending:
        erase_recording_content(session, rec, now, stone)
        # A recording not yet downloaded or transcribed (a fresh case): its jobs must not bring the audio
        # or words back. The downloader and the transcriber re-check these states before they write.
        if rec.storage_status == StorageStatus.PENDING:
            rec.storage_status = StorageStatus.ABSENT
        transcript = session.scalar(select(Transcript).where(Transcript.recording_id == rec.id))
        if transcript is not None and transcript.status == TranscriptStatus.QUEUED:
            transcript.status, transcript.reason = TranscriptStatus.FAILED, "erased on request"
    if pending:
        done.parts.append("recording")


def _corrections(session: Session, case: Case, now: datetime, stone: Stone, done: Erased) -> None:
    changed = session.scalars(
        select(TranscriptCorrection).where(
            TranscriptCorrection.case_id == case.id, TranscriptCorrection.text != ""
        )
    ).all()
    for correction in changed:
        correction.text = ""  # the row (who corrected, when) stays: it is part of the handling record
        search_index.forget_text(session, search_index.CORRECTION, correction.recording_id)
    if changed:
        tombstone(session, case.id, "corrections", now, stone)
        done.parts.append("corrections")


def _free_text(session: Session, case: Case, now: datetime, stone: Stone, done: Erased) -> None:
    found = False
    for event in session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)):
        detail = event.detail if isinstance(event.detail, dict) else {}
        if any(detail.get(key) for key in FREE_TEXT_KEYS):
            event.detail = {**detail, **{key: "" for key in FREE_TEXT_KEYS if detail.get(key)}}
            found = True
    for proposal in session.scalars(select(ForwardingProposal).where(ForwardingProposal.case_id == case.id)):
        if proposal.note or proposal.reason:
            proposal.note = proposal.reason = None
            found = True
    for attempt in session.scalars(
        select(CallbackAttempt).where(CallbackAttempt.case_id == case.id, CallbackAttempt.note.is_not(None))
    ):
        attempt.note = None
        found = True
    if case.outcome:
        case.outcome = None
        found = True
    if found:
        tombstone(session, case.id, "free_text", now, stone)
        done.parts.append("free_text")


def _paths(
    session: Session, case: Case, calls: Sequence[Call], now: datetime, stone: Stone, done: Erased
) -> None:
    pathed = [
        c
        for c in calls
        if c.ivr_state or c.last_response or session.scalar(select(exists().where(CallEvent.call_id == c.id)))
    ]
    for call in pathed:
        erase_call_path(session, call, now, stone)  # tombstones the case whose own call it is
    if pathed and case.call_id not in {c.id for c in pathed}:
        tombstone(session, case.id, "call_events", now, stone)
    if pathed:
        done.parts.append("call_events")


def erase_subject(
    db: Database, reference: str, *, actor_id: int | None, reason: str, sweep: RetentionSweep, now: datetime
) -> tuple[Erased, SweepReport]:
    """Erase the case with this reference (with or without the dash): step one committed, then step two."""
    with db.writing() as session:
        erased = erase_case(session, find_case(session, reference), actor_id=actor_id, reason=reason, now=now)
    return erased, finish(sweep, erased)


def finish(sweep: RetentionSweep, erased: Erased) -> SweepReport:
    """Step two, after the commit: the erased recordings' files, then Twilio's copies (retention's own)."""
    report = SweepReport()
    report.expect("files", "twilio_copies")
    files, copies = sweep.finish_recordings(report, only=erased.recordings)
    report.count("files", files)
    report.count("twilio_copies", copies)
    return report
