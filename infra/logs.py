"""Logging set-up with a last line of defence: phone numbers are masked in every log record."""

from __future__ import annotations

import logging
import re

# Thai national numbers (0x...), E.164 numbers (+...), written with or without separators.
_PHONE = re.compile(r"(?<![\w+])(\+\d[\d\- ]{7,16}\d|0[1-9][\d\- ]{7,10}\d)(?!\w)")


def _mask(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[phone …" + digits[-3:] + "]"


def mask_phones(text: str) -> str:
    """Replace every phone-number-like run in `text` (also used on outgoing notification texts)."""
    return _PHONE.sub(_mask, text)


class PhoneMaskFilter(logging.Filter):
    """Rewrite any phone-number-like run of digits in a record's message before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        masked = mask_phones(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if not any(isinstance(f, PhoneMaskFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(PhoneMaskFilter())
        root.addHandler(handler)
    root.setLevel(level)
    # APScheduler logs every run (and every coalesced one) at INFO/WARNING; our sweeps log what they did.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
