"""Twilio's 2010-04-01 REST conventions the fake Twilio and the simulated calls share: SIDs, dates, errors."""

from __future__ import annotations

import email.utils
import re
import secrets
from datetime import UTC, datetime
from typing import Final

API_VERSION: Final = "2010-04-01"
E164_RE: Final = re.compile(r"\+[1-9]\d{6,14}")


def new_sid(prefix: str) -> str:
    """A fresh SID such as ``CA…`` or ``RE…`` (prefix and 32 hex digits)."""
    return prefix + secrets.token_hex(16)


def rfc2822(moment: datetime) -> str:
    """A time the way Twilio's JSON and callbacks write it (RFC 2822, UTC, whole seconds)."""
    return email.utils.format_datetime(moment.astimezone(UTC).replace(microsecond=0))


def rfc2822_now() -> str:
    return rfc2822(datetime.now(UTC))


def twilio_error(status: int, code: int, message: str) -> tuple[int, dict[str, object]]:
    """Twilio's JSON error body."""
    return status, {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
