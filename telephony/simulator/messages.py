"""Twilio's Messages resource in the fake Twilio: ``POST …/Messages.json`` checked as Twilio checks it."""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Final

from telephony.simulator.twilio_api import API_VERSION, E164_RE, new_sid, rfc2822_now, twilio_error

_MESSAGING_SERVICE_RE: Final = re.compile(r"MG[0-9a-fA-F]{32}")
SMS_BODY_MAX: Final = 1600


@dataclass(frozen=True)
class SentMessage:
    """An SMS the Messages endpoint accepted."""

    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str


def _refusal(to: str, from_: str, service: str, body: str) -> tuple[int, dict[str, object]] | None:
    """Twilio's 400 for a message it would not send, or None."""
    # Twilio's messages quote the numbers: a client that stores them stores personal data.
    if not to:
        return twilio_error(400, 21604, "A 'To' phone number is required.")
    if not E164_RE.fullmatch(to):
        return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if not from_ and not service:
        return twilio_error(400, 21603, "A 'From' phone number is required.")
    if from_ and not E164_RE.fullmatch(from_):
        return twilio_error(400, 21212, f"The 'From' number {from_} is not a valid phone number.")
    if service and not _MESSAGING_SERVICE_RE.fullmatch(service):
        return twilio_error(400, 21701, f"The Messaging Service Sid {service} is invalid.")
    if not body.strip():
        return twilio_error(400, 21602, "Message body is required.")
    if len(body) > SMS_BODY_MAX:
        return twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
    return None


class Messages:
    """The SMS one fake Twilio account accepted, in order."""

    def __init__(self, account_sid: str) -> None:
        self.account_sid = account_sid
        self._lock = threading.Lock()
        self._sent: list[SentMessage] = []

    def sent(self) -> list[SentMessage]:
        with self._lock:
            return list(self._sent)

    def create(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        """``POST …/Messages.json``: 201 with the message's JSON, or Twilio's 400."""
        to, from_ = form.get("To", ""), form.get("From", "")
        service, body = form.get("MessagingServiceSid", ""), form.get("Body", "")
        refused = _refusal(to, from_, service, body)
        if refused is not None:
            return refused
        sid = new_sid("SM")
        with self._lock:
            self._sent.append(SentMessage(sid, to, from_ or None, service or None, body))
        now = rfc2822_now()
        ucs2 = any(ord(ch) > 0x7F for ch in body)
        per_segment = (67 if ucs2 else 153) if len(body) > (70 if ucs2 else 160) else len(body) or 1
        return 201, {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_ or None,
            "messaging_service_sid": service or None,
            "num_media": "0",
            "num_segments": str(max(1, math.ceil(len(body) / per_segment))),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {
                "media": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": to,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
