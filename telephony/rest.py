"""Twilio's REST API: what we create there (SMS messages, outbound calls) and what we read back
(recordings and calls, for the reconcile sweep).

One small client over `requests`, with HTTP basic auth (account SID, auth token) against TWILIO_API_BASE,
short timeouts, and one error type whose reason is safe to store: Twilio's own error messages quote the
phone numbers, so only the HTTP status and Twilio's error code are kept ("Twilio 400 (code 21211)").

Creating a resource is not idempotent at Twilio: a POST that timed out may still have been accepted, so
a retry after a timeout can send an SMS twice. The outbox accepts that (a reminder twice is better than
none); a 4xx is never retried. Calls are not retried here at all: the operator presses "call" again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import requests

from cases.notifications.channels import DeliveryError

API_VERSION = "2010-04-01"
# Every progress event of a call we place: the call-back bridge needs to know it rang, was answered, ended.
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
MAX_PAGES = 50  # a reconcile sweep reads at most this many pages of a list (1,000 items each)


@dataclass(frozen=True)
class TwilioRecording:
    """One item of Twilio's Recordings list, as the reconcile sweep needs it."""

    sid: str
    call_sid: str
    status: str  # processing | completed | absent | failed | deleted (and in-progress, paused, stopped)
    duration_s: int | None
    media_url: str  # the recording under TWILIO_API_BASE, without an extension (as RecordingUrl is)


class TwilioRestError(DeliveryError):
    """A request to Twilio failed: `status` (None without an answer), Twilio's `code`, a safe `reason`."""

    def __init__(
        self, reason: str, *, status: int | None = None, code: int | None = None, retryable: bool = True
    ) -> None:
        super().__init__(reason, retryable=retryable)
        self.status = status
        self.code = code


class TwilioRest:
    """Twilio's 2010-04-01 REST resources of one account."""

    def __init__(
        self,
        api_base: str,
        account_sid: str,
        auth_token: str,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.account_sid = account_sid
        self._auth = (account_sid, auth_token)
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._session = session or requests.Session()

    def resource_url(self, resource: str) -> str:
        """`Messages` -> {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json"""
        return f"{self.api_base}/{API_VERSION}/Accounts/{self.account_sid}/{resource}.json"

    def create(self, resource: str, form: Mapping[str, str | Sequence[str]]) -> dict[str, Any]:
        """POST a form to create a resource; return Twilio's JSON (201 or 200), or raise TwilioRestError."""
        return self._request("POST", self.resource_url(resource), data=dict(form))

    def read(self, path_or_resource: str, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET a resource (`Calls/CA….json` style, or a `next_page_uri`); Twilio's JSON or TwilioRestError."""
        if path_or_resource.startswith("/"):
            url = self.api_base + path_or_resource  # a next_page_uri: always under our own API base
        else:
            url = f"{self.api_base}/{API_VERSION}/Accounts/{self.account_sid}/{path_or_resource}"
        return self._request("GET", url, params=dict(query or {}))

    def _request(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._session.request(
                method, url, auth=self._auth, timeout=self._timeout, allow_redirects=False, **kwargs
            )
        except requests.Timeout:
            raise TwilioRestError(f"timeout after {self._timeout[1]:g} s") from None
        except requests.RequestException as exc:
            raise TwilioRestError(f"Twilio unreachable ({type(exc).__name__})") from None
        with response:
            try:
                payload = response.json()
            except ValueError:
                payload = None
            status = response.status_code
            if status in (200, 201) and isinstance(payload, dict):
                return payload
            code = payload.get("code") if isinstance(payload, dict) else None
            code = code if isinstance(code, int) else None
            reason = f"Twilio {status}" + (f" (code {code})" if code else "")
            if status in (200, 201):
                reason = f"Twilio {status} without a JSON body"
            # 429: too many requests; 5xx: Twilio's side. Anything else will not change by retrying.
            raise TwilioRestError(reason, status=status, code=code, retryable=status == 429 or status >= 500)

    def recordings_since(self, day: date, *, call_sid: str | None = None) -> Iterator[TwilioRecording]:
        """Every recording of the account created on `day` (UTC) or later, page after page."""
        query = {"DateCreated>=": day.isoformat(), "PageSize": "1000"}
        if call_sid:
            query["CallSid"] = call_sid
        payload = self.read("Recordings.json", query)
        for _ in range(MAX_PAGES):
            for item in payload.get("recordings") or []:
                found = self._recording(item)
                if found is not None:
                    yield found
            nxt = payload.get("next_page_uri")
            if not isinstance(nxt, str) or not nxt.startswith("/") or urlsplit(nxt).netloc:
                return
            payload = self.read(nxt)

    def call_status(self, call_sid: str) -> str | None:
        """The call's status at Twilio (queued, ringing, in-progress, completed, busy, …); None if unknown."""
        try:
            payload = self.read(f"Calls/{call_sid}.json")
        except TwilioRestError as exc:
            if exc.status == 404:
                return None
            raise
        status = payload.get("status")
        return status if isinstance(status, str) else None

    def _recording(self, item: Any) -> TwilioRecording | None:
        if not isinstance(item, dict):
            return None
        sid, call_sid, uri = item.get("sid"), item.get("call_sid"), item.get("uri")
        if not all(isinstance(v, str) and v for v in (sid, call_sid, uri)):
            return None
        assert isinstance(sid, str) and isinstance(call_sid, str) and isinstance(uri, str)
        raw = str(item.get("duration") or "")
        media = uri[: -len(".json")] if uri.endswith(".json") else uri
        return TwilioRecording(
            sid=sid,
            call_sid=call_sid,
            status=str(item.get("status") or ""),
            duration_s=int(raw) if raw.isdigit() else None,
            media_url=self.api_base + media if media.startswith("/") else media,
        )

    def send_sms(self, to: str, body: str, from_: str) -> str:
        """Send one SMS from a number or a Messaging Service (MG…); return the message SID (SM…)."""
        form = {"To": to, "Body": body}
        form["MessagingServiceSid" if from_.startswith("MG") else "From"] = from_
        payload = self.create("Messages", form)
        sid = payload.get("sid")
        if not isinstance(sid, str) or not sid:
            raise TwilioRestError("Twilio answered without a message sid")
        return sid

    def create_call(
        self,
        *,
        to: str,
        from_: str,
        url: str,
        status_callback: str | None = None,
        events: Sequence[str] = CALL_EVENTS,
        timeout_s: int = 30,
    ) -> str:
        """Place an outbound call whose answered leg requests `url` (POST); return the call SID (CA…).

        `status_callback` gets the call's progress `events` by POST (StatusCallbackEvent, a repeated
        parameter). The phone rings `timeout_s` seconds before the call ends as no-answer.
        """
        form: dict[str, str | Sequence[str]] = {
            "To": to,
            "From": from_,
            "Url": url,
            "Method": "POST",
            "Timeout": str(timeout_s),
        }
        if status_callback:
            form.update(
                StatusCallback=status_callback, StatusCallbackMethod="POST", StatusCallbackEvent=list(events)
            )
        payload = self.create("Calls", form)
        sid = payload.get("sid")
        if not isinstance(sid, str) or not sid:
            raise TwilioRestError("Twilio answered without a call sid")
        return sid
