"""The worker's transcription sweeps: download due recordings, transcribe stored ones, reconcile.

Every sweep is idempotent: it claims rows with a lease (infra.claims), does the work outside the
claiming transaction, and writes the result only if the row is still in the state it claimed. A worker
that dies leaves its rows to be claimed again when the lease runs out; nothing is done twice by two
live workers, and nothing is lost.

Every fault a sweep meets (Twilio's, the network's, our own disk's, a bug of ours) is written to the row
at once (`last_error`, or a queued transcript's `reason`), the claim is given back, and a retry is set:
no row waits out its lease in silence. Each fault is logged when a row's fault changes, not at every
retry, and is put in the sweep's SweepReport for `worker --once`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from infra.claims import claim, release
from infra.clock import Clock, utcnow
from infra.db import Database
from infra.files import disk_fault
from infra.sealed import RecordingCipher, RecordingKeyError, SealBroken
from infra.sweeps import SweepReport
from transcription.media import MediaClient, MediaFetchError, MediaRefused, StorageFault, StoredMedia
from transcription.models import Recording, StorageStatus, Transcript, TranscriptStatus
from transcription.pool import PoolClosed, TranscriptOutcome

log = logging.getLogger(__name__)
MAX_UNEXPECTED_ATTEMPTS = 3
# What a stored recording's last_error says when our copy cannot be trusted, and when Twilio's could not
# be deleted: each is cleared only by the step it is about succeeding.
COPY_FAULTS = ("cannot read ", "stored copy ")
DELETE_FAULT = "delete at Twilio: "


class Transcriber(Protocol):
    def transcribe(self, source: Path | bytes, language: str) -> TranscriptOutcome: ...


@dataclass(frozen=True)
class JobSettings:
    download_attempts: int = 6
    backoff_base_s: float = 30.0
    backoff_max_s: float = 3600.0
    lease_s: float = 900.0
    # A recording reported by the Record action but with no status callback this long after is fetched anyway.
    reconcile_after_s: float = 300.0
    delete_after_download: bool = False
    batch: int = 8
    transcribe_parallel: int = 2


@dataclass(frozen=True)
class _Failure:
    """Why a download did not end with a stored copy; `reason` is short and safe to store and print."""

    reason: str
    retryable: bool = True
    # Our disk or our own bug: it says nothing about Twilio's copy (see TranscriptionJobs._note_failure).
    ours: bool = False


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class TranscriptionJobs:
    """The sweeps, with their dependencies handed in by the app (database, media client, transcriber)."""

    def __init__(
        self,
        db: Database,
        media: MediaClient,
        transcriber: Transcriber,
        recordings_dir: Path,
        settings: JobSettings | None = None,
        *,
        clock: Clock = utcnow,
        worker_id: str | None = None,
        on_transcript: Callable[[Session, Transcript], None] | None = None,
    ) -> None:
        self.db = db
        # Called in the transaction that stores a finished transcript (app.py hands in the cases' search
        # index: transcription does not import cases).
        self.on_transcript = on_transcript
        self.media = media
        self.transcriber = transcriber
        self.recordings_dir = recordings_dir
        self.settings = settings or JobSettings()
        self.clock = clock
        self.worker_id = worker_id or default_worker_id()

    # ---- downloads ---------------------------------------------------------------------------------

    def sweep_downloads(self, report: SweepReport | None = None) -> int:
        """Download every recording that is due; returns how many were attempted."""
        report = report if report is not None else SweepReport()
        report.expect("stored", "failed")
        now = self.clock()
        stale = now - timedelta(seconds=self.settings.reconcile_after_s)
        with self.db.session() as session:
            ids = claim(
                session,
                Recording,
                Recording.storage_status == StorageStatus.PENDING,
                or_(
                    Recording.status == "completed",
                    # Reconciliation: reported by the Record action, never confirmed by a callback.
                    and_(Recording.status == "reported", Recording.created_at < stale),
                ),
                or_(Recording.next_attempt_at.is_(None), Recording.next_attempt_at <= now),
                now=now,
                lease=timedelta(seconds=self.settings.lease_s),
                worker_id=self.worker_id,
                limit=self.settings.batch,
            )
        for rec_id in ids:
            try:
                self._download(rec_id, report)
            except Exception as exc:
                # The database failed us between steps (or a bug did): the rest of the batch still runs.
                log.exception("recording %d: download step failed", rec_id)
                report.fault("failed", f"recording {rec_id}: {type(exc).__name__} (see the log)")
                self._give_back(Recording, rec_id)
        return len(ids)

    def _download(self, rec_id: int, report: SweepReport) -> None:
        with self.db.session() as session:
            rec = session.get(Recording, rec_id)
            if rec is None or rec.storage_status != StorageStatus.PENDING or rec.claimed_by != self.worker_id:
                return
            sid, url, reported, previous = rec.recording_sid, rec.media_url, rec.duration_s, rec.last_error
            created = rec.created_at
        dest = self.recordings_dir / f"{created:%Y}" / f"{created:%m}" / f"{sid}.wav.sealed"
        result = self._fetch(url, sid, dest, reported, previous)
        now = self.clock()
        with self.db.session() as session:
            rec = session.get(Recording, rec_id)
            if rec is None or rec.storage_status != StorageStatus.PENDING:
                return
            if isinstance(result, StoredMedia):
                after = rec.last_error
                rec.storage_status = StorageStatus.STORED
                rec.stored_path = str(result.path)
                rec.sha256 = result.sha256
                rec.size_bytes = result.size_bytes
                rec.audio_duration_s = result.duration_s
                rec.last_error = None
                self._queue_transcript(session, rec)
                log.info(
                    "recording %s stored (%d bytes)%s",
                    sid,
                    result.size_bytes,
                    f"; the fault is over: {after}" if after else "",
                )
                report.count("stored")
            else:
                self._note_failure(rec, result, now, report)
            release(session, Recording, rec_id, self.worker_id)
        if isinstance(result, StoredMedia) and self.settings.delete_after_download:
            self._delete_at_twilio(rec_id, report)

    def _fetch(
        self, url: str, sid: str, dest: Path, reported: int | None, previous: str | None
    ) -> StoredMedia | _Failure:
        try:
            fetched = self.media.fetch(url, sid, dest)
        except MediaRefused as exc:
            return _Failure(f"refused: {exc}", retryable=False)
        except MediaFetchError as exc:
            return _Failure(exc.reason, exc.retryable)
        except StorageFault as exc:
            return _Failure(exc.reason, ours=True)
        except Exception as exc:  # a bug of ours must not leave the row claimed until its lease runs out
            reason = f"internal error: {type(exc).__name__}"
            _log_bug(reason != previous, "recording %s: download failed unexpectedly", sid)
            return _Failure(reason, ours=True)
        if reported and abs(fetched.duration_s - reported) > max(1.5, 0.05 * reported):
            try:
                dest.unlink(missing_ok=True)
            except OSError as exc:
                return _Failure(disk_fault("cannot write", dest.parent, exc), ours=True)
            return _Failure(f"truncated: {fetched.duration_s:.1f} s of {reported} s")
        return fetched

    def _note_failure(self, rec: Recording, failure: _Failure, now: datetime, report: SweepReport) -> None:
        """Write a failed download to its row at once, with its retry (the caller gives the claim back)."""
        changed = rec.last_error != failure.reason[:200]
        rec.last_error = failure.reason[:200]
        if failure.ours:
            # Our disk (an unwritable folder, a full disk) or a bug of ours says nothing about Twilio's
            # copy. So it does not count toward download_attempts: their last one marks the recording
            # unavailable, which means Twilio has no usable copy, and such a fault must not use up the tries
            # Twilio's copy is given either. It is tried again every backoff_base_s, not at a growing
            # backoff: it lasts until someone mends the disk, and downloads must then resume within one
            # interval. An unwritable folder costs no request to Twilio (the folder is tried first).
            rec.next_attempt_at = now + timedelta(seconds=self.settings.backoff_base_s)
            line = f"recording {rec.id}: {failure.reason}"
            log.log(
                logging.ERROR if changed else logging.DEBUG,
                "recording %s cannot be stored: %s; tried again at each interval",
                rec.recording_sid,
                failure.reason,
            )
        else:
            rec.download_attempts += 1
            if not failure.retryable or rec.download_attempts >= self.settings.download_attempts:
                rec.storage_status = StorageStatus.UNAVAILABLE
                line = f"recording {rec.id}: {failure.reason} (unavailable after {rec.download_attempts})"
                log.error(
                    "recording %s unavailable after %d attempts: %s",
                    rec.recording_sid,
                    rec.download_attempts,
                    failure.reason,
                )
            else:
                rec.next_attempt_at = now + self._backoff(rec.download_attempts)
                line = f"recording {rec.id}: {failure.reason} (attempt {rec.download_attempts})"
                log.log(
                    logging.WARNING if changed else logging.DEBUG,
                    "recording %s download failed (%s); retry %d",
                    rec.recording_sid,
                    failure.reason,
                    rec.download_attempts,
                )
        report.fault("failed", line)

    def _backoff(self, attempts: int) -> timedelta:
        seconds = min(self.settings.backoff_base_s * 2 ** (attempts - 1), self.settings.backoff_max_s)
        return timedelta(seconds=seconds)

    def _give_back(self, model: Any, row_id: int) -> None:
        """Release a claim after an unexpected error; if even that fails, the lease frees the row later."""
        try:
            with self.db.session() as session:
                release(session, model, row_id, self.worker_id)
        except Exception:
            log.warning("%s %d: claim not given back; its lease frees it", model.__tablename__, row_id)

    def _delete_at_twilio(self, rec_id: int, report: SweepReport) -> None:
        """Delete Twilio's copy, only once ours is stored and verified (read back: size and sha256)."""
        with self.db.session() as session:
            rec = session.get(Recording, rec_id)
            if rec is None or rec.storage_status != StorageStatus.STORED or rec.deleted_at_twilio is not None:
                return
            sid, path, size, sha = rec.recording_sid, rec.stored_path, rec.size_bytes, rec.sha256
            previous = rec.last_error
        fault = copy_fault(self.media.sealer, path, size, sha)
        if fault is None:
            try:
                self.media.delete(sid)
            except MediaFetchError as exc:
                fault = DELETE_FAULT + exc.reason
            except Exception as exc:
                fault = f"{DELETE_FAULT}internal error: {type(exc).__name__}"
                _log_bug(fault != previous, "recording %s: deletion at Twilio failed unexpectedly", sid)
        with self.db.session() as session:
            rec = session.get(Recording, rec_id)
            if rec is None or rec.storage_status != StorageStatus.STORED or rec.deleted_at_twilio is not None:
                return
            if fault is None:
                rec.deleted_at_twilio = self.clock()
                if rec.last_error and rec.last_error.startswith((DELETE_FAULT, *COPY_FAULTS)):
                    rec.last_error = None
                report.count("deleted at Twilio")
                return
            changed = rec.last_error != fault[:200]
            rec.last_error = fault[:200]
        log.log(
            logging.WARNING if changed else logging.DEBUG,
            "recording %s: Twilio's copy kept (%s); tried again at reconcile",
            sid,
            fault,
        )
        report.fault("failed", f"recording {rec_id}: {fault}")

    @staticmethod
    def _queue_transcript(session: Session, rec: Recording) -> None:
        if session.scalar(select(Transcript.id).where(Transcript.recording_id == rec.id)) is None:
            session.add(
                Transcript(
                    recording_id=rec.id,
                    status=TranscriptStatus.QUEUED,
                    language=rec.language or "th",
                    attempts=0,
                )
            )

    # ---- transcription ----------------------------------------------------------------------------

    def sweep_transcripts(self, report: SweepReport | None = None) -> int:
        """Transcribe queued recordings, several at once (each in its own transcriber process)."""
        report = report if report is not None else SweepReport()
        now = self.clock()
        # A transcript put back by a fault waits for its recording's next_attempt_at (see _defer).
        due = select(Recording.id).where(
            or_(Recording.next_attempt_at.is_(None), Recording.next_attempt_at <= now)
        )
        with self.db.session() as session:
            ids = claim(
                session,
                Transcript,
                Transcript.status == TranscriptStatus.QUEUED,
                Transcript.recording_id.in_(due),
                now=now,
                lease=timedelta(seconds=self.settings.lease_s),
                worker_id=self.worker_id,
                limit=self.settings.batch,
            )
        if not ids:
            return 0
        with ThreadPoolExecutor(max_workers=max(1, min(len(ids), self.settings.transcribe_parallel))) as ex:
            list(ex.map(lambda transcript_id: self._transcribe_guarded(transcript_id, report), ids))
        return len(ids)

    def _transcribe_guarded(self, transcript_id: int, report: SweepReport) -> None:
        try:
            self._transcribe(transcript_id, report)
        except Exception as exc:
            log.exception("transcript %d: transcription step failed", transcript_id)
            report.fault("failed", f"transcript {transcript_id}: {type(exc).__name__} (see the log)")
            self._give_back(Transcript, transcript_id)

    def _transcribe(self, transcript_id: int, report: SweepReport) -> None:
        with self.db.session() as session:
            row = session.get(Transcript, transcript_id)
            if row is None or row.status != TranscriptStatus.QUEUED or row.claimed_by != self.worker_id:
                return
            rec = row.recording
            path, size, sha, language = rec.stored_path, rec.size_bytes, rec.sha256, row.language
            row.attempts += 1
            attempts = row.attempts
        # Our copy first: one that is gone, unreadable or fails authentication is our disk's fault (or
        # someone's tampering), not a verdict on the audio: it is never handed to the transcriber.
        audio, fault = open_copy(self.media.sealer, path, size, sha)
        if audio is None or path is None:
            self._defer(transcript_id, fault or "stored copy missing", report, ours=True)
            return
        started = self.clock()
        outcome: TranscriptOutcome | None = None
        failure: str | None = None
        interrupted = False
        try:
            # Opened in memory: the plain audio goes to the transcriber through its pipe, never to disk.
            outcome = self.transcriber.transcribe(audio, language)
            del audio
        except PoolClosed:
            interrupted = True
        except Exception as exc:  # the pool contains crashes; anything else must not stop the sweep
            log.exception("transcription %d failed", transcript_id)
            failure = f"internal error: {type(exc).__name__}"
        if failure is not None and attempts < MAX_UNEXPECTED_ATTEMPTS:
            # No verdict on the recording itself: try again later, a few times, before giving up.
            self._defer(transcript_id, failure, report, ours=False)
            return
        interrupted = interrupted or (outcome is not None and outcome.reason == "pool_closed")
        self._finish(transcript_id, outcome, failure, interrupted, started, report)

    def _finish(
        self,
        transcript_id: int,
        outcome: TranscriptOutcome | None,
        failure: str | None,
        interrupted: bool,
        started: datetime,
        report: SweepReport,
    ) -> None:
        with self.db.session() as session:
            row = session.get(Transcript, transcript_id)
            if row is None or row.status != TranscriptStatus.QUEUED:
                return
            if interrupted:
                # The worker is stopping (SIGTERM, deploy): no verdict on this recording, so it stays
                # queued for the next worker instead of ending "failed".
                log.info("transcription %d interrupted (shutdown); left queued", transcript_id)
                release(session, Transcript, transcript_id, self.worker_id)
                report.count("interrupted")
                return
            row.finished_at = self.clock()
            if outcome is None:
                row.status, row.reason = TranscriptStatus.FAILED, failure
            else:
                _apply_outcome(row, outcome, started, row.finished_at)
                if self.on_transcript is not None:
                    self.on_transcript(session, row)
            rec = row.recording
            if rec.last_error and rec.last_error.startswith(COPY_FAULTS):
                rec.last_error = None  # our copy was read whole this time
            status, reason, rec_id = str(row.status), row.reason, row.recording_id
            release(session, Transcript, transcript_id, self.worker_id)
        if status in (TranscriptStatus.FAILED, TranscriptStatus.TIMEOUT):
            report.fault(status, f"transcript {transcript_id} (recording {rec_id}): {status} ({reason})")
        else:
            report.count(status)

    def _defer(self, transcript_id: int, reason: str, report: SweepReport, *, ours: bool) -> None:
        """Leave the transcript queued with `reason`, give its claim back, and try again in backoff_base_s.

        The time is kept in the recording's next_attempt_at, which nothing else uses once it is stored:
        sweep_transcripts claims no transcript of a recording before it. A fault of our disk (`ours`) is
        also put on the recording (its copy is what failed) and is not counted as a transcriber run.
        """
        reason = reason[:200]
        with self.db.session() as session:
            row = session.get(Transcript, transcript_id)
            if row is None or row.status != TranscriptStatus.QUEUED:
                return
            rec = row.recording
            changed = row.reason != reason
            row.reason = reason
            if ours:
                row.attempts = max(row.attempts - 1, 0)
                rec.last_error = reason
            rec.next_attempt_at = self.clock() + timedelta(seconds=self.settings.backoff_base_s)
            rec_id = rec.id
            release(session, Transcript, transcript_id, self.worker_id)
        log.log(
            logging.ERROR if changed else logging.DEBUG,
            "transcript %d (recording %d) waits: %s; tried again at each interval",
            transcript_id,
            rec_id,
            reason,
        )
        report.fault("waiting", f"transcript {transcript_id} (recording {rec_id}): {reason}")

    # ---- reconciliation -------------------------------------------------------------------------------

    def reconcile(self, report: SweepReport | None = None) -> int:
        """Mend what a crash between steps could leave: stored without transcript, undeleted at Twilio."""
        report = report if report is not None else SweepReport()
        fixed = 0
        with self.db.session() as session:
            orphans = session.scalars(
                select(Recording)
                .outerjoin(Transcript, Transcript.recording_id == Recording.id)
                .where(Recording.storage_status == StorageStatus.STORED, Transcript.id.is_(None))
                .limit(100)
            ).all()
            for rec in orphans:
                self._queue_transcript(session, rec)
                fixed += 1
            undeleted: list[int] = []
            if self.settings.delete_after_download:
                undeleted = list(
                    session.scalars(
                        select(Recording.id)
                        .where(
                            Recording.storage_status == StorageStatus.STORED,
                            Recording.deleted_at_twilio.is_(None),
                        )
                        .limit(100)
                    )
                )
        if fixed:
            report.count("queued for transcription", fixed)
        for rec_id in undeleted:
            self._delete_at_twilio(rec_id, report)
            fixed += 1
        return fixed


def _log_bug(new: bool, message: str, *args: object) -> None:
    """The traceback of an unforeseen error, once while a row keeps failing the same way (then DEBUG)."""
    log.log(logging.ERROR if new else logging.DEBUG, message, *args, exc_info=True)


def copy_fault(sealer: RecordingCipher, path: str | None, size: int | None, sha256: str | None) -> str | None:
    """Why our stored copy cannot be trusted; None when it is there, opens, and is the audio we downloaded."""
    return open_copy(sealer, path, size, sha256)[1] if path else None


def open_copy(
    sealer: RecordingCipher, path: str | None, size: int | None, sha256: str | None
) -> tuple[bytes | None, str | None]:
    """The stored recording's plain audio, opened in memory and checked against its size and sha256, or
    why it cannot be trusted (a short reason naming the folder, never the file)."""
    if not path:
        return None, None
    stored = Path(path)
    try:
        audio = sealer.read_all(stored)
    except OSError as exc:
        return None, disk_fault("cannot read", stored.parent, exc)
    except SealBroken:
        # Not what we sealed (a changed byte fails authentication, a plain file is not sealed): the same
        # verdict as a changed checksum, and the audio is never handed on.
        return None, f"stored copy changed on disk in {stored.parent}"[:200]
    except RecordingKeyError:
        return None, f"stored copy in {stored.parent}: its key is not in HOTLINE_RECORDING_KEY"[:200]
    if (size is not None and len(audio) != size) or (
        sha256 is not None and hashlib.sha256(audio).hexdigest() != sha256
    ):
        return None, f"stored copy changed on disk in {stored.parent}"[:200]
    return audio, None


def _apply_outcome(
    row: Transcript, outcome: TranscriptOutcome, started: datetime, finished: datetime
) -> None:
    status: str = outcome.status
    text = (outcome.text or "").strip()
    if status == "done" and not text:
        status = "no_speech"  # an empty string is never a success
    row.status = TranscriptStatus(status)
    row.reason = outcome.reason
    row.text = text or None
    row.words = [_word(w) for w in outcome.words] or None
    row.mean_confidence = outcome.mean_confidence
    row.engine = outcome.engine
    row.model_id = outcome.model_id
    row.upsampled_from = outcome.upsampled_from
    row.audio_duration_s = outcome.audio_duration_s
    row.processing_ms = outcome.processing_ms or int((finished - started).total_seconds() * 1000)


def _word(w: Any) -> dict[str, Any]:
    if isinstance(w, dict):
        return {k: w[k] for k in ("word", "start", "end", "conf") if k in w}
    return {"word": w.word, "start": w.start, "end": w.end, "conf": w.conf}
