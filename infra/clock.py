"""The one place the service reads the time: UTC, injectable in tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Treat naive datetimes read back from SQLite as UTC, which is how they were stored."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with a Z, as the export and notifications give times."""
    return as_utc(value).isoformat().replace("+00:00", "Z")
