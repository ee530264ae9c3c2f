"""The nightly retention sweep: what is past its period erased in short batches, resumable, with tombstones.

Idempotent: every batch is one transaction that erases whole rows (a crash rolls the batch back, and the
next run finds the same rows due). A recording goes in two steps: its transcript's words and the
`erased_at` mark in the batch's transaction; then, after the commit, its file and Twilio's copy, each
cleared on the row once gone. A run that stopped between the two steps finishes the second next time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cases.audit import unlocked
from cases.models import Call, CallEvent, Case, CaseEvent, Notification, NotificationAttempt
from cases.retention.rules import DUE, KINDS
from cases.retention.settings import RetentionSettings
from cases.search_index import TRANSCRIPT, clear_number_hashes, forget_text
from cases.staff import AuditEvent
from infra.clock import Clock, as_utc, utcnow
from infra.db import Database
from infra.sweeps import SweepReport
from transcription.media import MediaFetchError
from transcription.models import Recording, Transcript

log = logging.getLogger(__name__)
TOMBSTONE = "retention_erased"  # the case event each erasure leaves (console: "… erased by retention")
PURPOSE = "retention"
NIGHT = range(1, 5)  # local hours in which the nightly sweep may start: few calls, no staff at work


class RecordingDeleter(Protocol):
    """What retention needs of Twilio (implemented by telephony.rest.TwilioRest)."""

    def delete_recording(self, recording_sid: str) -> None:
        """Delete the recording at Twilio (404 is gone too); MediaFetchError if it may still be there."""
        ...


def _tombstone(session: Session, case_id: int, what: str, now: datetime, **detail: Any) -> None:
    session.add(
        CaseEvent(
            case_id=case_id,
            at=now,
            actor_id=None,
            action=TOMBSTONE,
            detail={"what": what, "on": now.date().isoformat(), **detail},
        )
    )


def _erase_call_number(call: Call | None) -> None:
    if call is not None:
        call.caller_number_enc = None
        call.caller_number_masked = None


def erase_case_number(session: Session, case: Case, now: datetime) -> None:
    """The reporter's number on the case and its call."""
    case.callback_number_enc = None
    case.callback_number_masked = None
    clear_number_hashes(case)
    _erase_call_number(session.get(Call, case.call_id) if case.call_id else None)
    _tombstone(session, case.id, "caller_number", now)


def _mark_recording(session: Session, rec: Recording, now: datetime) -> None:
    """Step one: the machine transcript's words, and the mark that the file and Twilio's copy must go."""
    transcript = session.scalar(select(Transcript).where(Transcript.recording_id == rec.id))
    if transcript is not None:
        transcript.text = None
        transcript.words = None
        transcript.mean_confidence = None
    forget_text(session, TRANSCRIPT, rec.id)  # its words leave the search index with it
    rec.erased_at = now


def _clear_path(session: Session, call: Call) -> None:
    """The call's events (append-only: the batch runs inside `unlocked`) and its IVR state."""
    session.execute(delete(CallEvent).where(CallEvent.call_id == call.id))
    call.ivr_state = {}
    call.last_response = None


def erase_recording_content(session: Session, rec: Recording, now: datetime) -> None:
    """A recording of a resolved case: step one now, the file and Twilio's copy after the commit."""
    _mark_recording(session, rec, now)
    if rec.case_id is not None:
        _tombstone(session, rec.case_id, "recording", now, recording=rec.id)


def erase_call_path(session: Session, call: Call, now: datetime) -> None:
    """The caller's path through the menu."""
    _clear_path(session, call)
    case_id = session.scalar(select(Case.id).where(Case.call_id == call.id))
    if case_id is not None:
        _tombstone(session, case_id, "call_events", now)


def erase_draft(session: Session, case: Case, now: datetime) -> None:
    """A case that never left draft: its number, recordings, transcripts and menu path."""
    case.callback_number_enc = None
    case.callback_number_masked = None
    clear_number_hashes(case)
    call = session.get(Call, case.call_id) if case.call_id else None
    _erase_call_number(call)
    for rec in session.scalars(
        select(Recording).where(Recording.case_id == case.id, Recording.erased_at.is_(None))
    ):
        _mark_recording(session, rec, now)
    if call is not None:
        _clear_path(session, call)
    _tombstone(session, case.id, "draft", now)


def _erase(session: Session, kind: str, query_index: int, row_id: int, now: datetime) -> None:
    if kind == "drafts":
        erase_draft(session, session.get_one(Case, row_id), now)
    elif kind == "caller_numbers" and query_index == 0:
        erase_case_number(session, session.get_one(Case, row_id), now)
    elif kind == "caller_numbers":
        _erase_call_number(session.get_one(Call, row_id))  # a call that never became a case
    elif kind == "recordings":
        erase_recording_content(session, session.get_one(Recording, row_id), now)
    elif kind == "call_events":
        erase_call_path(session, session.get_one(Call, row_id), now)
    elif kind == "notifications":
        session.execute(delete(NotificationAttempt).where(NotificationAttempt.notification_id == row_id))
        session.execute(delete(Notification).where(Notification.id == row_id))
    elif kind == "audit":
        session.execute(delete(AuditEvent).where(AuditEvent.id == row_id))


# Kinds that touch append-only rows (call events, audit rows): their batches run inside `unlocked`.
UNLOCKING = frozenset({"drafts", "call_events", "audit"})


class RetentionSweep:
    """Erase what is past its period, `settings.batch` rows per transaction; then files and Twilio copies."""

    def __init__(
        self,
        db: Database,
        settings: RetentionSettings,
        twilio: RecordingDeleter | None,
        *,
        clock: Clock = utcnow,
        timezone: str = "Asia/Bangkok",
        on_batch: Callable[[str], None] | None = None,
    ) -> None:
        self.db, self.settings, self.twilio, self.clock = db, settings, twilio, clock
        self.zone = ZoneInfo(timezone)
        self.on_batch = on_batch  # tests: called in each batch's transaction (to stop a run half-way)
        self.last_night: date | None = None

    def nightly(self) -> dict[str, int] | None:
        """The scheduler's hourly call: one sweep a night, in the service's early hours (NIGHT, local time).

        Only the date of the last run is remembered, in memory: a worker restarted in the night sweeps
        again, which finds nothing left to do.
        """
        local = self.clock().astimezone(self.zone)
        if local.hour not in NIGHT or self.last_night == local.date():
            return None
        self.last_night = local.date()
        return self.sweep()

    def sweep(self, report: SweepReport | None = None) -> dict[str, int]:
        """One run at the clock's time: every kind due, then erased recordings' files and Twilio copies."""
        report = report if report is not None else SweepReport()
        report.expect(*KINDS)
        now = self.clock()
        done: dict[str, int] = dict.fromkeys(KINDS, 0)
        for kind in KINDS:
            for index, query in enumerate(DUE[kind]):
                done[kind] += self._kind(kind, index, query, now)
        report_counts = dict(done)
        files, copies = self.finish_recordings(report)
        report_counts["files"], report_counts["twilio_copies"] = files, copies
        for outcome, n in report_counts.items():
            report.count(outcome, n)
        return report_counts

    def _kind(self, kind: str, index: int, query: Any, now: datetime) -> int:
        total = 0
        seen: set[int] = set()
        while True:
            with self.db.writing() as session:
                ids = [
                    row[0] for row in session.execute(query(now, self.settings).limit(self.settings.batch))
                ]
                if not ids:
                    return total
                if seen & set(ids):  # a row still due after its erasure: a bug, never loop on it
                    raise RuntimeError(f"retention {kind}: a row is still due after its erasure")
                seen.update(ids)
                if kind in UNLOCKING:
                    with unlocked(session, f"{PURPOSE} {kind}", None, clock=self.clock):
                        for row_id in ids:
                            _erase(session, kind, index, row_id, now)
                else:
                    for row_id in ids:
                        _erase(session, kind, index, row_id, now)
                if self.on_batch is not None:
                    self.on_batch(kind)  # before the commit: a crash here must roll the whole batch back
            total += len(ids)
            log.info("retention: %d %s erased", len(ids), kind)

    def finish_recordings(self, report: SweepReport) -> tuple[int, int]:
        """Step two for erased recordings, a page at a time: remove the file, then Twilio's copy.

        No transaction is open during the file's removal or Twilio's request; each is cleared on its row
        once done, so a run stopped anywhere leaves only what the next run does again harmlessly.
        """
        files = copies = 0
        after = 0
        while True:
            with self.db.writing() as session:
                rows = session.execute(
                    select(
                        Recording.id,
                        Recording.recording_sid,
                        Recording.stored_path,
                        Recording.deleted_at_twilio,
                    )
                    .where(Recording.erased_at.is_not(None), Recording.id > after)
                    .where((Recording.stored_path.is_not(None)) | (Recording.deleted_at_twilio.is_(None)))
                    .order_by(Recording.id)
                    .limit(self.settings.batch)
                ).all()
            if not rows:
                return files, copies
            after = rows[-1][0]
            for rec_id, sid, stored_path, deleted_at_twilio in rows:
                if stored_path is not None:
                    files += self._remove_file(report, rec_id, Path(stored_path))
                if deleted_at_twilio is None and self.twilio is not None:
                    copies += self._delete_at_twilio(self.twilio, report, rec_id, sid)

    def _remove_file(self, report: SweepReport, rec_id: int, path: Path) -> int:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            report.fault("file_failed", f"recording {rec_id}: cannot remove its file ({type(exc).__name__})")
            return 0
        with self.db.writing() as session:
            rec = session.get_one(Recording, rec_id)
            rec.stored_path = None
            rec.sha256 = None
        return 1

    def _delete_at_twilio(self, twilio: RecordingDeleter, report: SweepReport, rec_id: int, sid: str) -> int:
        try:
            twilio.delete_recording(sid)
        except MediaFetchError as exc:
            report.fault("twilio_failed", f"recording {rec_id}: Twilio delete failed ({exc.reason})")
            return 0
        with self.db.writing() as session:
            session.get_one(Recording, rec_id).deleted_at_twilio = self.clock()
        return 1


def last_erasure(session: Session) -> datetime | None:
    """When retention last erased anything (the privacy page may show it)."""
    at = session.scalar(
        select(CaseEvent.at).where(CaseEvent.action == TOMBSTONE).order_by(CaseEvent.id.desc())
    )
    return as_utc(at) if at else None
