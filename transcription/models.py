"""The recording row: one per Twilio RecordingSid, the unit of download and transcription work."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from infra.clock import utcnow
from infra.db import Base, UTCDateTime


class Recording(Base):
    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_sid: Mapped[str] = mapped_column(String(64), unique=True)
    call_sid: Mapped[str] = mapped_column(String(64), index=True)
    # Linked by table name only: transcription does not import cases.
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    media_url: Mapped[str] = mapped_column(Text)
    duration_s: Mapped[int | None] = mapped_column(Integer)
    # reported (action URL seen) -> completed | absent | failed (status callback)
    status: Mapped[str] = mapped_column(String(24), default="reported")
    transcript_status: Mapped[str | None] = mapped_column(String(24))
    transcript_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
