"""Twilio's REST API: what we create there (SMS messages, outbound calls), what we read back
(recordings and calls, for the reconcile sweep), and the recordings' media (transcription's downloads).

The one client over `requests`, with HTTP basic auth (account SID, auth token) sent to TWILIO_API_BASE
only, short timeouts, redirects checked by hand, and reasons that are safe to store: Twilio's own error
messages quote the phone numbers, so only the HTTP status and Twilio's error code are kept ("Twilio 400
(code 21211)"). Media requests raise transcription's errors (it declares the RecordingMedia it needs).

Creating a resource is not idempotent at Twilio: a POST that timed out may still have been accepted, so
a retry after a timeout can send an SMS twice. The outbox accepts that (a reminder twice is better than
none); a 4xx is never retried. Calls are not retried here at all: the operator presses "call" again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from cases.notifications.channels import DeliveryError
from transcription.media import MediaFetchError, MediaRefused, MediaStream

API_VERSION = "2010-04-01"
RECORDING_PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Recordings/(RE[0-9a-fA-F]{32})$")
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 3
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
    """Twilio's 2010-04-01 REST resources of one account, and its recordings' media."""

    def __init__(
        self,
        api_base: str,
        account_sid: str,
        auth_token: str,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 10.0,
        media_read_timeout_s: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.account_sid = account_sid
        self._auth = (account_sid, auth_token)
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._media_timeout = (connect_timeout_s, media_read_timeout_s)
        self._session = session or requests.Session()

    def _ours(self, url: str) -> bool:
        """Whether `url` is at our API base's origin: the only one that ever gets the credentials."""
        target, base = urlsplit(url), urlsplit(self.api_base)
        return (target.scheme, target.hostname, target.port) == (base.scheme, base.hostname, base.port)

    def _send(self, method: str, url: str, *, media: bool = False, **kwargs: Any) -> requests.Response:
        """Every request to Twilio: credentials for our API base only, our timeouts, no redirect followed.

        No answer becomes a TwilioRestError, or for the media a MediaFetchError, with a reason safe to store.
        """
        timeout = self._media_timeout if media else self._timeout
        auth = self._auth if self._ours(url) else None
        try:
            return self._session.request(
                method, url, auth=auth, timeout=timeout, allow_redirects=False, **kwargs
            )
        except requests.Timeout:
            if media:
                raise MediaFetchError("timeout") from None
            raise TwilioRestError(f"timeout after {timeout[1]:g} s") from None
        except requests.RequestException as exc:
            if media:
                raise MediaFetchError(f"connection: {type(exc).__name__}") from None
            raise TwilioRestError(f"Twilio unreachable ({type(exc).__name__})") from None

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
        response = self._send(method, url, **kwargs)
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

    # ---- recordings' media (transcription.media.RecordingMedia) ------------------------------------------

    def media_url(self, recording_url: str, recording_sid: str) -> str:
        """The .wav URL to fetch, after checking the URL is our account's recording at our API base."""
        if not self._ours(recording_url):
            raise MediaRefused("recording URL is not at TWILIO_API_BASE")
        url = urlsplit(recording_url)
        path = url.path.removesuffix(".wav").removesuffix(".mp3")
        found = RECORDING_PATH.match(path)
        if found is None or url.query or url.fragment:
            raise MediaRefused("recording URL is not a Twilio recording path")
        if found.group(1) != self.account_sid or found.group(2) != recording_sid:
            raise MediaRefused("recording URL names another account or recording")
        return f"{self.api_base}{path}.wav"

    @contextmanager
    def open_media(self, url: str, chunk_size: int) -> Iterator[MediaStream]:
        """GET the media; a MediaFetchError with a short reason unless Twilio answers 200."""
        response = self._get_following_redirects(url)
        with response:
            if response.status_code in (401, 403):
                raise MediaFetchError(f"http {response.status_code}: credentials refused")
            if response.status_code == 404:
                raise MediaFetchError("http 404: media not (yet) there")
            if response.status_code != 200:
                raise MediaFetchError(f"http {response.status_code}")
            length = response.headers.get("Content-Length", "")
            yield MediaStream(int(length) if length.isdigit() else None, _chunks(response, chunk_size))

    def _get_following_redirects(self, url: str) -> requests.Response:
        """GET; Twilio may redirect media to a presigned https URL.

        Redirects are followed by hand: at most MAX_REDIRECTS, only to https (or back to the API base's
        own origin), and the credentials are never sent to another host (`_send`).
        """
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send("GET", url, media=True, stream=True)
            if response.status_code not in REDIRECTS:
                return response
            location = response.headers.get("Location", "")
            response.close()
            nxt = urljoin(url, location)
            if not location or not (urlsplit(nxt).scheme == "https" or self._ours(nxt)):
                raise MediaFetchError("redirect refused: not https", retryable=False)
            url = nxt
        raise MediaFetchError("too many redirects", retryable=False)

    def delete_recording(self, recording_sid: str) -> None:
        """Delete the recording at Twilio (404 is gone too); MediaFetchError if it may still be there."""
        response = self._send("DELETE", self.resource_url(f"Recordings/{recording_sid}"), media=True)
        response.close()
        if response.status_code not in (204, 404):
            raise MediaFetchError(f"http {response.status_code}")


def _chunks(response: requests.Response, size: int) -> Iterator[bytes]:
    """The body as it arrives; a transfer that breaks off is a MediaFetchError."""
    try:
        yield from response.iter_content(size)
    except requests.RequestException as exc:
        raise MediaFetchError(f"interrupted: {type(exc).__name__}") from None
