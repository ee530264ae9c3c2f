"""Twilio's webhook parameters, validated: nothing in a request is trusted as it comes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import phonenumbers

from telephony.engine import CallerInput, InputKind, Recording

# \Z, not $: `$` also matches before a trailing newline, which would let "CA…\n" or "1\n" through.
CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}\Z")
RECORDING_SID = re.compile(r"^RE[0-9a-fA-F]{32}\Z")
KEYS = re.compile(r"^[0-9*#]{0,64}\Z")
# The step number our own action URLs carry; str.isdigit() would also pass "²" and "١" (then int() fails or
# reads "١" as 1), and int() refuses more than 4300 digits.
SEQ = re.compile(r"^[0-9]{1,9}\Z")
# What Twilio sends as From when the caller withheld their number.
WITHHELD = {"anonymous", "restricted", "unknown", "private", "+266696687", "+7378742833", "+86282452253"}
DIAL_STATUSES = {"completed", "answered", "busy", "no-answer", "failed", "canceled"}
CALL_STATUSES = {"queued", "ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled"}
RECORDING_STATUSES = {"in-progress", "completed", "absent", "failed"}
# A key the engine will never find in a menu: garbage digits count as an invalid key, not as silence.
INVALID_KEY = "!"


class BadRequest(ValueError):
    """The request lacks something we cannot do without (for example the CallSid)."""


@dataclass(frozen=True)
class CallParams:
    call_sid: str
    caller: str | None  # E.164, or None when withheld or not a phone number
    status: str | None


def call_params(form: Mapping[str, str]) -> CallParams:
    status = form.get("CallStatus")
    return CallParams(
        call_sid(form), caller_number(form.get("From")), status if status in CALL_STATUSES else None
    )


def call_sid(form: Mapping[str, str]) -> str:
    """The CallSid alone, for a webhook that needs nothing else of the caller (no number parsing)."""
    sid = form.get("CallSid", "")
    if not CALL_SID.match(sid):
        raise BadRequest("CallSid missing or malformed")
    return sid


def step_number(raw: str) -> int | None:
    """The seq of one of our action URLs, or None for anything those URLs never carry."""
    return int(raw) if SEQ.match(raw) else None


def caller_number(raw: str | None) -> str | None:
    if not raw or raw.strip().lower() in WITHHELD:
        return None
    try:
        parsed = phonenumbers.parse(raw.strip(), "TH")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def recording(form: Mapping[str, str]) -> Recording | None:
    sid = form.get("RecordingSid", "")
    url = form.get("RecordingUrl", "")
    if not RECORDING_SID.match(sid) or not _is_http_url(url):
        return None
    raw = form.get("RecordingDuration", "")
    duration = int(raw) if raw.isdigit() and len(raw) < 6 else -1
    return Recording(sid=sid, url=url, duration_s=duration)


def caller_input(kind: str, form: Mapping[str, str]) -> CallerInput:
    """The caller's input for an action request of the given kind (from our own action URL)."""
    ev: InputKind = kind if kind in ("gather", "no_input", "record", "dial") else "no_input"  # type: ignore[assignment]
    digits = form.get("Digits", "")
    hung_up = digits == "hangup"
    if hung_up:
        digits = ""
    elif not KEYS.match(digits):
        digits = INVALID_KEY
    if ev == "gather":
        speech = form.get("SpeechResult", "").strip()[:200] or None
        if not digits and not speech:
            return CallerInput("no_input")
        return CallerInput("gather", digits=digits, speech=speech)
    if ev == "record":
        return CallerInput("record", digits=digits, recording=recording(form), caller_hung_up=hung_up)
    if ev == "dial":
        status = form.get("DialCallStatus", "")
        return CallerInput("dial", dial_status=status if status in DIAL_STATUSES else "failed")
    return CallerInput("no_input")


def _is_http_url(value: str) -> bool:
    if len(value) > 500:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
