"""The worker's transcription sweeps: download due recordings, transcribe stored ones, reconcile.

Every sweep is idempotent: it claims rows with a lease (infra.claims), does the work outside the
claiming transaction, and writes the result only if the row is still in the state it claimed. A worker
that dies leaves its rows to be claimed again when the lease runs out; nothing is done twice by two
live workers, and nothing is lost.
"""

from __future__ import annotations

import logging
import os
import socket
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
from transcription.media import MediaClient, MediaFetchError, MediaRefused, StoredMedia
from transcription.models import Recording, StorageStatus, Transcript, TranscriptStatus
from transcription.pool import PoolClosed, TranscriptOutcome

log = logging.getLogger(__name__)
MAX_UNEXPECTED_ATTEMPTS = 3


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
    ) -> None:
        self.db = db
        self.media = media
        self.transcriber = transcriber
        self.recordings_dir = recordings_dir
        self.settings = settings or JobSettings()
        self.clock = clock
        self.worker_id = worker_id or default_worker_id()

    # ---- downloads ---------------------------------------------------------------------------------

    def sweep_downloads(self) -> int:
        """Download every recording that is due; returns how many were attempted."""
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
            self._download(rec_id)
        return len(ids)

    def _download(self, rec_id: int) -> None:
        with self.db.session() as session:
            rec = session.get(Recording, rec_id)
            if rec is None or rec.storage_status != StorageStatus.PENDING or rec.claimed_by != self.worker_id:
                return
            sid, url, reported = rec.recording_sid, rec.media_url, rec.duration_s
            created = rec.created_at
        dest = self.recordings_dir / f"{created:%Y}" / f"{created:%m}" / f"{sid}.wav"
        error: str | None = None
        retry = True
        stored: StoredMedia | None = None
        try:
            fetched = self.media.fetch(url, sid, dest)
            if reported and abs(fetched.duration_s - reported) > max(1.5, 0.05 * reported):
                dest.unlink(missing_ok=True)
                error = f"truncated: {fetched.duration_s:.1f} s of {reported} s"
            else:
                stored = fetched
        except MediaRefused as exc:
            error, retry = f"refused: {exc}", False
        except MediaFetchError as exc:
            error, retry = exc.reason, exc.retryable
        now = self.clock()
        with self.db.session() as session:
            rec = session.get(Recording, rec_id)
            if rec is None or rec.storage_status != StorageStatus.PENDING:
                return
            if stored is not None:
                rec.storage_status = StorageStatus.STORED
                rec.stored_path = str(stored.path)
                rec.sha256 = stored.sha256
                rec.size_bytes = stored.size_bytes
                rec.audio_duration_s = stored.duration_s
                rec.last_error = None
                self._queue_transcript(session, rec)
                log.info("recording %s stored (%d bytes)", sid, stored.size_bytes)
            else:
                rec.download_attempts += 1
                rec.last_error = (error or "unknown")[:200]
                if not retry or rec.download_attempts >= self.settings.download_attempts:
                    rec.storage_status = StorageStatus.UNAVAILABLE
                    log.error(
                        "recording %s unavailable after %d attempts: %s", sid, rec.download_attempts, error
                    )
                else:
                    rec.next_attempt_at = now + self._backoff(rec.download_attempts)
                    log.warning(
                        "recording %s download failed (%s); retry %d", sid, error, rec.download_attempts
                    )
            release(session, Recording, rec_id, self.worker_id)
        if stored is not None and self.settings.delete_after_download:
            self._delete_at_twilio(rec_id)

    def _backoff(self, attempts: int) -> timedelta:
        seconds = min(self.settings.backoff_base_s * 2 ** (attempts - 1), self.settings.backoff_max_s)
        return timedelta(seconds=seconds)

    def _delete_at_twilio(self, rec_id: int) -> None:
        """Delete Twilio's copy; only ever called once our copy is stored and verified."""
        with self.db.session() as session:
            rec = session.get(Recording, rec_id)
            if rec is None or rec.storage_status != StorageStatus.STORED or rec.deleted_at_twilio is not None:
                return
            sid = rec.recording_sid
        if self.media.delete(sid):
            with self.db.session() as session:
                rec = session.get(Recording, rec_id)
                if rec is not None:
                    rec.deleted_at_twilio = self.clock()

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

    def sweep_transcripts(self) -> int:
        """Transcribe queued recordings, several at once (each in its own transcriber process)."""
        now = self.clock()
        with self.db.session() as session:
            ids = claim(
                session,
                Transcript,
                Transcript.status == TranscriptStatus.QUEUED,
                now=now,
                lease=timedelta(seconds=self.settings.lease_s),
                worker_id=self.worker_id,
                limit=self.settings.batch,
            )
        if not ids:
            return 0
        with ThreadPoolExecutor(max_workers=max(1, min(len(ids), self.settings.transcribe_parallel))) as ex:
            list(ex.map(self._transcribe, ids))
        return len(ids)

    def _transcribe(self, transcript_id: int) -> None:
        with self.db.session() as session:
            row = session.get(Transcript, transcript_id)
            if row is None or row.status != TranscriptStatus.QUEUED or row.claimed_by != self.worker_id:
                return
            path, language = row.recording.stored_path, row.language
            row.attempts += 1
            attempts = row.attempts
        started = self.clock()
        outcome: TranscriptOutcome | None = None
        failure: str | None = None
        interrupted = False
        if not path or not Path(path).is_file():
            failure = "stored recording missing from the data dir"
        else:
            try:
                outcome = self.transcriber.transcribe(Path(path), language)
            except PoolClosed:
                interrupted = True
            except Exception as exc:  # the pool contains crashes; anything else must not stop the sweep
                log.exception("transcription %d failed", transcript_id)
                failure = f"{type(exc).__name__}"
                # No verdict on the recording itself: try again later, a few times, before giving up.
                interrupted = attempts < MAX_UNEXPECTED_ATTEMPTS
            interrupted = interrupted or (outcome is not None and outcome.reason == "pool_closed")
        with self.db.session() as session:
            row = session.get(Transcript, transcript_id)
            if row is None or row.status != TranscriptStatus.QUEUED:
                return
            if interrupted:
                # The worker is stopping (SIGTERM, deploy): no verdict on this recording, so it stays
                # queued for the next worker instead of ending "failed".
                log.info(
                    "transcription %d interrupted (%s); left queued", transcript_id, failure or "shutdown"
                )
                release(session, Transcript, transcript_id, self.worker_id)
                return
            row.finished_at = self.clock()
            if outcome is None:
                row.status, row.reason = TranscriptStatus.FAILED, failure
            else:
                _apply_outcome(row, outcome, started, row.finished_at)
            release(session, Transcript, transcript_id, self.worker_id)

    # ---- reconciliation -------------------------------------------------------------------------------

    def reconcile(self) -> int:
        """Mend what a crash between steps could leave: stored without transcript, undeleted at Twilio."""
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
        for rec_id in undeleted:
            self._delete_at_twilio(rec_id)
            fixed += 1
        return fixed


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
