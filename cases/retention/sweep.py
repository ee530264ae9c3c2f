"""The nightly retention sweep: what is past its period erased in short batches, resumable, with tombstones.

Idempotent: every batch is one transaction that erases whole rows (a crash rolls the batch back, and the
next run finds the same rows due); the worker runs it at the retention file's `sweep_at`, local time.
A recording goes in two steps: its transcript's words and the `erased_at` mark in the batch's
transaction; then, after the commit, its file and Twilio's copy, each cleared on the row once gone.
A run that stopped between the two steps finishes the second next time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cases.audit import unlocked
from cases.models import Call, CallEvent, Case, CaseEvent, RetentionRun
from cases.retention import batches
from cases.retention.batches import TOMBSTONE
from cases.retention.rules import DUE, KINDS
from cases.retention.settings import RetentionSettings
from cases.search_index import TRANSCRIPT, clear_number_hashes, forget_text
from infra.clock import Clock, as_utc, utcnow
from infra.db import Database
from infra.sweeps import SweepReport
from transcription.media import MediaFetchError
from transcription.models import Recording, Transcript

log = logging.getLogger(__name__)
PURPOSE = "retention"


class RecordingDeleter(Protocol):
    """What retention needs of Twilio (implemented by telephony.rest.TwilioRest)."""

    def delete_recording(self, recording_sid: str) -> None:
        """Delete the recording at Twilio (404 is gone too); MediaFetchError if it may still be there."""
        ...


@dataclass(frozen=True)
class Stone:
    """What an erasure's tombstone event names: retention's (no actor), or an erasure on request's."""

    action: str = TOMBSTONE
    actor_id: int | None = None


BY_RETENTION = Stone()


def tombstone(
    session: Session, case_id: int, what: str, now: datetime, stone: Stone = BY_RETENTION, **detail: Any
) -> None:
    session.add(
        CaseEvent(
            case_id=case_id,
            at=now,
            actor_id=stone.actor_id,
            action=stone.action,
            detail={"what": what, "on": now.date().isoformat(), **detail},
        )
    )


def erase_call_number(call: Call | None) -> None:
    if call is not None:
        call.caller_number_enc = None
        call.caller_number_masked = None


def erase_case_number(session: Session, case: Case, now: datetime, stone: Stone = BY_RETENTION) -> None:
    """The reporter's number on the case and its call."""
    case.callback_number_enc = None
    case.callback_number_masked = None
    clear_number_hashes(case)
    erase_call_number(session.get(Call, case.call_id) if case.call_id else None)
    tombstone(session, case.id, "caller_number", now, stone)


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


def erase_recording_content(
    session: Session, rec: Recording, now: datetime, stone: Stone = BY_RETENTION
) -> None:
    """A recording of a resolved case: step one now, the file and Twilio's copy after the commit."""
    _mark_recording(session, rec, now)
    if rec.case_id is not None:
        tombstone(session, rec.case_id, "recording", now, stone, recording=rec.id)


def erase_call_path(session: Session, call: Call, now: datetime, stone: Stone = BY_RETENTION) -> None:
    """The caller's path through the menu."""
    _clear_path(session, call)
    case_id = session.scalar(select(Case.id).where(Case.call_id == call.id))
    if case_id is not None:
        tombstone(session, case_id, "call_events", now, stone)


def erase_draft(session: Session, case: Case, now: datetime) -> None:
    """A case that never left draft: its number, recordings, transcripts and menu path."""
    case.callback_number_enc = None
    case.callback_number_masked = None
    clear_number_hashes(case)
    call = session.get(Call, case.call_id) if case.call_id else None
    erase_call_number(call)
    for rec in session.scalars(
        select(Recording).where(Recording.case_id == case.id, Recording.erased_at.is_(None))
    ):
        _mark_recording(session, rec, now)
    if call is not None:
        _clear_path(session, call)
    tombstone(session, case.id, "draft", now)


def _erase_batch(session: Session, kind: str, query_index: int, ids: list[int], now: datetime) -> None:
    if kind == "drafts":
        batches.erase_drafts(session, ids, now)
    elif kind == "caller_numbers" and query_index == 0:
        batches.erase_case_numbers(session, ids, now)
    elif kind == "caller_numbers":
        batches.erase_call_numbers(session, ids)  # calls that never became a case: no case to tell
    elif kind == "recordings" and query_index == 0:
        batches.erase_recordings(session, ids, now)
    elif kind == "recordings":
        batches.erase_caseless_recordings(session, ids, now)
    elif kind == "call_events":
        batches.erase_call_paths(session, ids, now)
    elif kind == "notifications":
        batches.delete_notifications(session, ids)
    elif kind == "audit":
        batches.delete_audit_rows(session, ids)


# Kinds that touch append-only rows (call events, audit rows): their batches run inside `unlocked`.
UNLOCKING = frozenset({"drafts", "call_events", "audit"})


class RetentionSweep:
    """Erase what is past its period, `settings.batch` rows per transaction; then files and Twilio copies.

    The due rows are found in a read-only snapshot, outside the write lock (the due queries scan whole
    tables); each batch's short transaction then checks its own ids again by primary key (a hold set or
    a callback reopened meanwhile keeps the row) and erases them with a few set-based statements. On
    SQLite, `pause_s` between batches lets the webhooks waiting for the one write lock go first.
    """

    def __init__(
        self,
        db: Database,
        settings: RetentionSettings,
        twilio: RecordingDeleter | None,
        *,
        clock: Clock = utcnow,
        pause_s: float = 0.0,
        on_batch: Callable[[str], None] | None = None,
    ) -> None:
        self.db, self.settings, self.twilio, self.clock = db, settings, twilio, clock
        self.pause_s = pause_s
        self.on_batch = on_batch  # tests: called in each batch's transaction (to stop a run half-way)

    def sweep(self, report: SweepReport | None = None) -> dict[str, int]:
        """One run at the clock's time: every kind due, then erased recordings' files and Twilio copies.

        A run that finishes leaves a RetentionRun row with its counts (the privacy page's last purge).
        """
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
        with self.db.writing() as session:
            session.add(
                RetentionRun(
                    started_at=now, finished_at=self.clock(), counts=report_counts, faults=len(report.faults)
                )
            )
        return report_counts

    def _due(self, query: Any, now: datetime) -> list[int]:
        session = self.db.read_session()
        try:
            return [row[0] for row in session.execute(query(now, self.settings))]
        finally:
            session.close()

    def _kind(self, kind: str, index: int, query: Any, now: datetime) -> int:
        due = self._due(query, now)
        total = 0
        for start in range(0, len(due), self.settings.batch):
            if start and self.pause_s:
                time.sleep(self.pause_s)  # the webhooks queued on the write lock go first
            chunk = due[start : start + self.settings.batch]
            with self.db.writing() as session:
                due_now = query(now, self.settings)
                # Still due? One read by primary key: what changed since the snapshot is left alone.
                due_now = due_now.where(due_now.selected_columns[0].in_(chunk))
                ids = [row[0] for row in session.execute(due_now)]
                if ids:
                    if kind in UNLOCKING:
                        with unlocked(session, f"{PURPOSE} {kind}", None, clock=self.clock):
                            _erase_batch(session, kind, index, ids, now)
                    else:
                        _erase_batch(session, kind, index, ids, now)
                if self.on_batch is not None:
                    self.on_batch(kind)  # before the commit: a crash here must roll the whole batch back
            total += len(ids)
            log.info("retention: %d %s erased", len(ids), kind)
        return total

    def finish_recordings(self, report: SweepReport, only: Collection[int] | None = None) -> tuple[int, int]:
        """Step two for erased recordings (or `only` these), a page at a time: the file, then Twilio's copy.

        No transaction is open during the file's removal or Twilio's request; each is cleared on its row
        once done, so a run stopped anywhere leaves only what the next run does again harmlessly.
        """
        files = copies = 0
        after = 0
        while True:
            session = self.db.read_session()  # a read: the lock is taken only to clear each row once done
            try:
                rows = session.execute(
                    select(
                        Recording.id,
                        Recording.recording_sid,
                        Recording.stored_path,
                        Recording.deleted_at_twilio,
                    )
                    .where(Recording.erased_at.is_not(None), Recording.id > after)
                    .where(Recording.id.in_(only) if only is not None else Recording.id.is_not(None))
                    .where((Recording.stored_path.is_not(None)) | (Recording.deleted_at_twilio.is_(None)))
                    .order_by(Recording.id)
                    .limit(self.settings.batch)
                ).all()
            finally:
                session.close()
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


def last_run(session: Session) -> RetentionRun | None:
    """The last sweep that finished, with its counts by kind (None before the first)."""
    newest = (RetentionRun.finished_at.desc(), RetentionRun.id.desc())
    return session.scalar(select(RetentionRun).order_by(*newest))


def last_erasure(session: Session) -> datetime | None:
    """When retention last erased anything (the privacy page may show it)."""
    at = session.scalar(
        select(CaseEvent.at).where(CaseEvent.action == TOMBSTONE).order_by(CaseEvent.id.desc())
    )
    return as_utc(at) if at else None
