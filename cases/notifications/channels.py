"""The outbox's delivery channels: e-mail over SMTP, a push to an office's LINE group, SMS through a gateway.

Each sender takes one notification and one recipient (an address, a phone number, an office code) and
returns the provider's reference, or raises DeliveryError with a short reason that is safe to store and
show: no addresses, numbers, tokens or provider messages (Twilio's and relays' messages quote the number
or the address), only codes ("SMTP 550 from relay", "LINE 500", "timeout after 10 s").

SMS goes through the SmsGateway protocol: cases/ does not import telephony/ (telephony.rest.TwilioRest
implements it).
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
import uuid
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol

import requests

from cases.models import Notification

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
LINE_TEXT_LIMIT = 5000  # characters of one LINE text message
SMS_BODY_LIMIT = 1600  # Twilio's limit for Body
# Retry keys and Message-IDs are derived from this namespace and the notification: stable across retries
# and restarts, different for every notification.
_NAMESPACE = uuid.UUID("6f1d0c1e-8a57-4d7b-9a55-6b0f1f3c2a91")


class DeliveryError(RuntimeError):
    """A delivery failed; `reason` is short and safe to store; `retryable` says whether to try again."""

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason[:300]
        self.retryable = retryable


class Sender(Protocol):
    def send(self, notification: Notification, recipient: str) -> str | None:
        """Deliver once; return the provider's reference; raise DeliveryError on failure."""
        ...


class LineTarget(Protocol):
    """An office's LINE group (cases.callbacks.settings.LineTarget has this shape)."""

    @property
    def group_id(self) -> str: ...

    @property
    def token(self) -> str: ...


class SmsGateway(Protocol):
    def send_sms(self, to: str, body: str, from_: str) -> str:
        """Send one SMS; return the provider's message id; raise DeliveryError (or a subclass) on failure."""
        ...


def retry_key(notification: Notification) -> str:
    """A UUID for this notification only: the same on every attempt, on every worker."""
    return str(uuid.uuid5(_NAMESPACE, f"{notification.id}:{notification.dedupe_key}"))


def message_id(notification: Notification, domain: str) -> str:
    """The e-mail Message-ID of a notification: a re-send after a crash carries the same one."""
    digest = hashlib.sha256(f"{notification.id}:{notification.dedupe_key}".encode()).hexdigest()[:16]
    return f"<hotline.n{notification.id}.{digest}@{domain}>"


def message_text(notification: Notification) -> str:
    """Body and link as one text (e-mail, LINE)."""
    if notification.link and notification.link not in notification.body:
        return f"{notification.body}\n\n{notification.link}"
    return notification.body


# ---- e-mail -----------------------------------------------------------------------------------------------


class EmailSender:
    """Plain-text UTF-8 mail through an SMTP relay (STARTTLS and login when configured)."""

    def __init__(
        self,
        host: str,
        port: int,
        mail_from: str,
        *,
        user: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = READ_TIMEOUT_S,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.mail_from = host, port, mail_from
        self.user, self.password, self.starttls = user, password, starttls
        self.timeout_s = timeout_s
        self.tls_context = tls_context
        self.domain = mail_from.rpartition("@")[2] or "localhost"

    def build(self, notification: Notification, recipient: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.mail_from
        msg["To"] = recipient
        msg["Subject"] = notification.subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message_id(notification, self.domain)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the hotline
        msg.set_content(message_text(notification), subtype="plain", charset="utf-8")
        return msg

    def send(self, notification: Notification, recipient: str) -> str | None:
        msg = self.build(notification, recipient)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=self.tls_context or ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            # {address: (code, message)}: keep the code, never the address or the relay's words.
            codes = sorted({code for code, _msg in exc.recipients.values()})
            code = codes[0] if codes else 550
            raise DeliveryError(f"SMTP {code} from relay (recipient refused)", retryable=code < 500) from None
        except smtplib.SMTPResponseException as exc:
            code = exc.smtp_code
            raise DeliveryError(f"SMTP {code} from relay", retryable=not 500 <= code < 600) from None
        except TimeoutError:
            raise DeliveryError(f"timeout after {self.timeout_s:g} s") from None
        except smtplib.SMTPServerDisconnected:
            raise DeliveryError("SMTP relay disconnected") from None
        except ssl.SSLError as exc:
            raise DeliveryError(f"SMTP TLS failed ({type(exc).__name__})") from None
        except smtplib.SMTPException as exc:
            raise DeliveryError(f"SMTP error ({type(exc).__name__})") from None
        except OSError as exc:
            raise DeliveryError(f"SMTP relay unreachable ({type(exc).__name__})") from None
        return str(msg["Message-ID"])


# ---- LINE -------------------------------------------------------------------------------------------------


class LineSender:
    """A text push to an office's LINE group through the Messaging API (POST /v2/bot/message/push).

    Every attempt carries the same `X-Line-Retry-Key`: LINE accepts the push once and answers 409 to a
    retry of an accepted one (after a timeout or a 5xx that did get through), which counts as sent.
    LINE keeps retry keys for 24 hours; the outbox's retries end well within that. 429 and 5xx are
    retried; any other 4xx (a bad token, a group the bot left) is not.
    """

    def __init__(
        self,
        api_base: str,
        targets: Mapping[str, LineTarget],
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
        session: requests.Session | None = None,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.targets = targets
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._session = session or requests.Session()

    def send(self, notification: Notification, recipient: str) -> str | None:
        target = self.targets.get(recipient)
        if target is None:
            raise DeliveryError("no LINE group configured for the office", retryable=False)
        text = message_text(notification)
        if len(text) > LINE_TEXT_LIMIT:
            text = text[: LINE_TEXT_LIMIT - 1] + "…"
        try:
            response = self._session.post(
                f"{self.api_base}/v2/bot/message/push",
                json={"to": target.group_id, "messages": [{"type": "text", "text": text}]},
                headers={
                    "Authorization": f"Bearer {target.token}",
                    "X-Line-Retry-Key": retry_key(notification),
                },
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise DeliveryError(f"timeout after {self._timeout[1]:g} s") from None
        except requests.RequestException as exc:
            raise DeliveryError(f"LINE unreachable ({type(exc).__name__})") from None
        with response:
            status = response.status_code
            if status == 200:
                return response.headers.get("X-Line-Request-Id") or "line"
            if status == 409:
                # Accepted earlier under this retry key: the group has the message.
                return response.headers.get("X-Line-Accepted-Request-Id") or "line (already accepted)"
            retryable = status == 429 or status >= 500
            raise DeliveryError(f"LINE {status}", retryable=retryable)


# ---- SMS --------------------------------------------------------------------------------------------------


class SmsSender:
    """A short SMS (subject and link) through the gateway, from the hotline's number or Messaging Service."""

    def __init__(self, gateway: SmsGateway, from_: str) -> None:
        self.gateway = gateway
        self.from_ = from_

    def send(self, notification: Notification, recipient: str) -> str | None:
        # Thai texts go as UCS-2 (70 characters a segment): the subject and the link, not the whole body.
        text = notification.subject
        if notification.link:
            text = f"{text}\n{notification.link}"
        try:
            return self.gateway.send_sms(recipient, text[:SMS_BODY_LIMIT], self.from_)
        except DeliveryError:
            raise
        except Exception as exc:  # a gateway that breaks its contract must not stop the sweep
            raise DeliveryError(f"SMS gateway error ({type(exc).__name__})") from None
