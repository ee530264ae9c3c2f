"""Recordings, the status callbacks Twilio sent about them, and their transcripts."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from infra.clock import utcnow
from infra.db import Base, UTCDateTime


class StorageStatus(enum.StrEnum):
    PENDING = "pending"  # to be downloaded when Twilio says it is complete (or reconciliation says so)
    STORED = "stored"  # verified copy under the data dir
    ABSENT = "absent"  # Twilio recorded no audio: nothing to fetch
    UNAVAILABLE = "unavailable"  # every download attempt failed: staff must be told


class TranscriptStatus(enum.StrEnum):
    QUEUED = "queued"
    DONE = "done"
    NO_SPEECH = "no_speech"
    AUDIO_UNREADABLE = "audio_unreadable"
    NO_MODEL = "no_model"
    FAILED = "failed"
    TIMEOUT = "timeout"


class Recording(Base):
    """One per Twilio RecordingSid: the unit of download and transcription work."""

    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_sid: Mapped[str] = mapped_column(String(64), unique=True)
    call_sid: Mapped[str] = mapped_column(String(64), index=True)
    # Linked by table name only: transcription does not import cases.
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    language: Mapped[str | None] = mapped_column(String(8))
    media_url: Mapped[str] = mapped_column(Text)
    duration_s: Mapped[int | None] = mapped_column(Integer)
    # Twilio's word: reported (action URL seen) -> completed | absent | failed (status callback).
    status: Mapped[str] = mapped_column(String(24), default="reported")
    storage_status: Mapped[StorageStatus] = mapped_column(
        String(16), default=StorageStatus.PENDING, index=True
    )
    stored_path: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    audio_duration_s: Mapped[float | None] = mapped_column(Float)
    download_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    deleted_at_twilio: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Erased by retention: the transcript's text went then; the file and Twilio's copy follow (resumable).
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    transcript: Mapped[Transcript | None] = relationship(back_populates="recording")


class RecordingCallback(Base):
    """Each (RecordingSid, status) Twilio reported, once: retried callbacks change nothing twice."""

    __tablename__ = "recording_callbacks"
    __table_args__ = (UniqueConstraint("recording_sid", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_sid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Transcript(Base):
    """The machine transcript of one recording, and the job row that produces it."""

    __tablename__ = "transcripts"

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), unique=True)
    status: Mapped[TranscriptStatus] = mapped_column(String(24), default=TranscriptStatus.QUEUED, index=True)
    reason: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(8))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str | None] = mapped_column(Text)
    words: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    mean_confidence: Mapped[float | None] = mapped_column(Float)
    engine: Mapped[str | None] = mapped_column(String(32))
    model_id: Mapped[str | None] = mapped_column(String(120))
    upsampled_from: Mapped[int | None] = mapped_column(Integer)
    audio_duration_s: Mapped[float | None] = mapped_column(Float)
    processing_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    recording: Mapped[Recording] = relationship(back_populates="transcript")
