"""Requests to the app as Twilio sends them: signed over the public URL, sent to where the app listens."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Final
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests
from twilio.request_validator import RequestValidator

from telephony.simulator.config import SimulatorConfig
from telephony.simulator.events import CallEvent

MAX_HTTP_REDIRECTS: Final = 10
EXCERPT_CHARS: Final = 300


class FetchError(Exception):
    """A request Twilio could not complete, or whose answer it cannot use, with Twilio's error code."""

    def __init__(
        self,
        code: int | None,
        message: str,
        *,
        url: str,
        status: int | None = None,
        excerpt: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.url = url
        self.status = status
        self.excerpt = excerpt


def origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


def excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def with_query(url: str, params: Mapping[str, str]) -> str:
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(list(params.items()))


class Sender:
    """Sends one call's requests: each signed like Twilio's, events emitted for each, redirects followed.

    ``using`` lends the current thread its own HTTP session (the end-of-call requests sent at once).
    """

    def __init__(
        self, config: SimulatorConfig, session: requests.Session, emit: Callable[[CallEvent], None]
    ) -> None:
        self.config = config
        self.session = session
        self.emit = emit
        self.validator = RequestValidator(config.auth_token)
        self._public_origin = origin(config.public_base)
        self._public_path = urlsplit(config.public_base).path.rstrip("/")
        self._connect_base = config.connect_base.rstrip("/")
        self._local = threading.local()

    @contextmanager
    def using(self, session: requests.Session | None) -> Iterator[None]:
        """In this thread, send through `session` (None: the call's own)."""
        self._local.session = session
        try:
            yield
        finally:
            self._local.session = None

    def http(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        return session if session is not None else self.session

    def is_public(self, url: str) -> bool:
        if origin(url) != self._public_origin:
            return False
        path = urlsplit(url).path
        return not self._public_path or path == self._public_path or path.startswith(self._public_path + "/")

    def to_connect(self, public_url: str) -> str:
        parts = urlsplit(public_url)
        rest = parts.path[len(self._public_path) :] or "/"
        return self._connect_base + rest + (f"?{parts.query}" if parts.query else "")

    def send(
        self, method: str, public_url: str, params: Mapping[str, str], purpose: str
    ) -> tuple[requests.Response, str]:
        """Signed request to a public URL (mapped onto connect_base); follows HTTP redirects.

        Returns the response (body read) and the public URL that finally answered.
        """
        method = method.upper()
        url = urlunsplit(urlsplit(public_url)._replace(fragment=""))
        for _hop in range(MAX_HTTP_REDIRECTS + 1):
            if not self.is_public(url):
                raise FetchError(
                    11205,
                    f"{url} is not under the public base {self.config.public_base}: Twilio cannot reach it",
                    url=url,
                )
            resp, signed_url = self._send_once(method, url, params, purpose)
            location = resp.headers.get("Location")
            if resp.status_code in (301, 302, 303, 307, 308) and location:
                url = urljoin(signed_url, location)
                if resp.status_code in (301, 302, 303):
                    method = "GET"
                params = {}
                continue
            return resp, signed_url
        raise FetchError(11215, "too many HTTP redirects", url=url)

    def _send_once(
        self, method: str, url: str, params: Mapping[str, str], purpose: str
    ) -> tuple[requests.Response, str]:
        if method == "GET":
            signed_url, body, sign_params = with_query(url, params), None, {}
        else:
            signed_url, body, sign_params = url, dict(params), dict(params)
        headers = {
            "X-Twilio-Signature": self.validator.compute_signature(signed_url, sign_params),
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        started = time.perf_counter()
        try:
            resp = self.http().request(
                method,
                self.to_connect(signed_url),
                data=body,
                headers=headers,
                timeout=self.config.timeout_s,
                allow_redirects=False,
            )
            _ = resp.content  # read the body inside the timeout window, release the connection
        except requests.Timeout:
            self._request_event(method, signed_url, purpose, None, started, params)
            raise FetchError(11205, f"no answer within {self.config.timeout_s:g} s", url=signed_url) from None
        except requests.RequestException as exc:
            self._request_event(method, signed_url, purpose, None, started, params)
            raise FetchError(11205, f"connection failed: {exc}", url=signed_url) from None
        self._request_event(method, signed_url, purpose, resp.status_code, started, params)
        return resp, signed_url

    def _request_event(
        self,
        method: str,
        url: str,
        purpose: str,
        status: int | None,
        started: float,
        params: Mapping[str, str],
    ) -> None:
        self.emit(
            CallEvent(
                kind="request",
                method=method,
                url=url,
                purpose=purpose,
                status=status,
                elapsed_ms=(time.perf_counter() - started) * 1000,
                params=dict(params),
            )
        )

    def callback(self, public_url: str, method: str, params: Mapping[str, str], purpose: str) -> None:
        """A fire-and-forget callback (status, recording status): failures are warnings, not call errors."""
        try:
            resp, url = self.send(method, public_url, params, purpose)
        except FetchError as err:
            self.emit(CallEvent(kind="warning", code=err.code, text=f"{purpose}: {err.message}", url=err.url))
            return
        if not 200 <= resp.status_code < 300:
            self.emit(
                CallEvent(
                    kind="warning",
                    code=11200,
                    text=f"{purpose}: the app answered {resp.status_code}",
                    url=url,
                    status=resp.status_code,
                    body_excerpt=excerpt(resp.text),
                )
            )
