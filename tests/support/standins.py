"""Local stand-ins for the outside systems the outbox talks to: LINE's Messaging API and an SMTP relay.

Twilio's Messages endpoint is served by telephony.simulator.media_server.MediaServer (one stand-in for
Twilio's REST host, as TWILIO_API_BASE is one host); these two are for tests only.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

from tests.support.ports import free_port

LineFault = Literal["http500", "http503", "http429", "http401", "slow"]
LINE_TEXT_MAX = 5000
LINE_MESSAGES_MAX = 5
BAD_TOKEN = "Authentication failed. Confirm that the access token in the authorization header is valid."


@dataclass(frozen=True)
class LinePush:
    """A push LINE accepted: the group, the texts, the retry key, the request id it answered with."""

    to: str
    texts: list[str]
    retry_key: str | None
    request_id: str


@dataclass
class _LineFault:
    kind: LineFault
    remaining: int | None
    delay_s: float


class _LineHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    line: LineServer


class _LineHandler(BaseHTTPRequestHandler):
    server: _LineHTTPServer
    server_version = "LINE.MessagingApiStandIn/1.0"

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_POST(self) -> None:
        line = self.server.line
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if self.path.split("?", 1)[0] != "/v2/bot/message/push":
            return self._json(404, {"message": "Not found"})
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            return self._json(
                401, {"message": "Authentication failed. Confirm that the access token is valid."}
            )
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self._json(400, {"message": "The request body has 1 error(s)"})
        problem = _check_push(payload)
        if problem:
            return self._json(400, {"message": "The request body has 1 error(s)", "details": [problem]})
        if not line._token_ok(payload["to"], token):
            return self._json(
                401, {"message": "Authentication failed. Confirm that the access token is valid."}
            )
        line._count()
        fault = line._take_fault()
        if fault is not None:
            if fault.kind == "slow":
                if line._closing.wait(fault.delay_s):
                    return
            else:
                status = int(fault.kind[4:])
                return self._json(status, {"message": f"stand-in fault {status}"})
        retry_key = self.headers.get("X-Line-Retry-Key")
        if retry_key is not None:
            try:
                uuid.UUID(retry_key)
            except ValueError:
                return self._json(400, {"message": "The value for the 'X-Line-Retry-Key' header is invalid"})
        request_id = str(uuid.uuid4())
        accepted = line._accept(payload, retry_key, request_id)
        if accepted is not None:
            # An accepted retry key: LINE answers 409 and names the request that was accepted.
            return self._json(
                409,
                {"message": "The retry key is already accepted", "sentMessages": []},
                {"x-line-request-id": request_id, "x-line-accepted-request-id": accepted},
            )
        sent = [{"id": str(secrets.randbelow(10**18)), "quoteToken": secrets.token_urlsafe(16)}]
        self._json(200, {"sentMessages": sent}, {"x-line-request-id": request_id})

    def _json(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client timed out first


def _check_push(payload: Any) -> str | None:
    """The push request's shape as LINE checks it; None when it is good."""
    if not isinstance(payload, dict):
        return "body must be an object"
    if not isinstance(payload.get("to"), str) or not payload["to"]:
        return "to: must be specified"
    messages = payload.get("messages")
    if not isinstance(messages, list) or not 1 <= len(messages) <= LINE_MESSAGES_MAX:
        return f"messages: size must be between 1 and {LINE_MESSAGES_MAX}"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("type") != "text":
            return f"messages[{i}].type: must be text"
        text = m.get("text")
        if not isinstance(text, str) or not text:
            return f"messages[{i}].text: must be specified"
        if len(text) > LINE_TEXT_MAX:
            return f"messages[{i}].text: length must be between 0 and {LINE_TEXT_MAX}"
    return None


class LineServer:
    """LINE's push endpoint: bearer token per group, payload checked, retry keys honoured (409), faults.

    ``tokens`` maps a group id to the channel access token that may push to it; any other token gets
    401, as LINE answers a bad token. :meth:`inject` makes the next pushes fail (5xx, 429, 401) or answer
    late ("slow": accepted after `delay_s`, so a client with a shorter read timeout gives up although the
    push went through; its retry then gets 409).
    """

    def __init__(self, tokens: Mapping[str, str], *, host: str = "127.0.0.1") -> None:
        self.tokens = dict(tokens)
        self._host = host
        self._lock = threading.Lock()
        self._pushes: list[LinePush] = []
        self._accepted: dict[str, str] = {}  # retry key -> request id
        self._faults: list[_LineFault] = []
        self._requests = 0
        self._closing = threading.Event()
        self._server: _LineHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LineServer:
        server = _LineHTTPServer((self._host, 0), _LineHandler)
        server.line = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        assert self._server is not None, "use LineServer as a context manager"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def inject(self, fault: LineFault, *, times: int | None = 1, delay_s: float = 2.0) -> None:
        with self._lock:
            self._faults.append(_LineFault(fault, times, delay_s))

    def pushes(self) -> list[LinePush]:
        with self._lock:
            return list(self._pushes)

    @property
    def requests(self) -> int:
        """Pushes received with a good token and shape (faulted ones included)."""
        with self._lock:
            return self._requests

    def _count(self) -> None:
        with self._lock:
            self._requests += 1

    def _token_ok(self, group: str, token: str) -> bool:
        expected = self.tokens.get(group)
        return expected is not None and hmac.compare_digest(expected.encode(), token.encode())

    def _take_fault(self) -> _LineFault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.pop(0)
            return fault

    def _accept(self, payload: dict[str, Any], retry_key: str | None, request_id: str) -> str | None:
        """Record the push; returns the earlier request id when its retry key was already accepted."""
        with self._lock:
            if retry_key is not None and retry_key in self._accepted:
                return self._accepted[retry_key]
            if retry_key is not None:
                self._accepted[retry_key] = request_id
            texts = [m["text"] for m in payload["messages"]]
            self._pushes.append(LinePush(payload["to"], texts, retry_key, request_id))
            return None


# ---- SMTP (aiosmtpd) -------------------------------------------------------------------------------------


@dataclass
class SmtpRelay:
    """A real SMTP server (aiosmtpd) on a free local port that keeps what it receives.

    ``refuse`` makes it answer RCPT with that reply ("550 …" permanent, "451 …" temporary) `refuse_times`
    times (None: always).
    """

    received: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    refuse: str | None = None
    refuse_times: int | None = None
    host: str = "127.0.0.1"
    port: int = 0
    _controller: Any = None

    def __enter__(self) -> SmtpRelay:
        from aiosmtpd.controller import Controller

        self.port = free_port(self.host)
        self._controller = Controller(_SmtpHandler(self), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._controller is not None:
            self._controller.stop()


class _SmtpHandler:
    def __init__(self, relay: SmtpRelay) -> None:
        self.relay = relay

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        relay = self.relay
        if relay.refuse and (relay.refuse_times is None or relay.refuse_times > 0):
            if relay.refuse_times is not None:
                relay.refuse_times -= 1
            return relay.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.relay.received.append(message)
        self.relay.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"
