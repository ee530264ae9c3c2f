"""A tiny Twilio-facing app on http.server's ThreadingHTTPServer, for the simulator's own tests.

It answers a fixed call (a prompt, a ``<Record>``, a thank-you), checks ``X-Twilio-Signature`` on every
request and records each one with the time it arrived and the time it was answered, and the thread that
served it, so that a test can tell requests sent in turn from requests in flight together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

from telephony.simulator.config import SimulatorConfig

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
VOICE = "/twilio/voice"
RECORDED = "/twilio/recorded"
RECORDING_STATUS = "/twilio/recording-status"
STATUS = "/twilio/status"
END_OF_CALL_PATHS = {"action": RECORDED, "recording": RECORDING_STATUS, "status": STATUS}
THANKS = "ขอบคุณ"
NOTHING_HEARD = "ไม่ได้ยินเสียง"


def record_twiml(finish_on_key: str = "#", events: str = "completed absent") -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Say language="th-TH" voice="Google.th-TH-Standard-A">เล่าเหตุการณ์หลังเสียงสัญญาณ</Say>'
        f'<Record action="{RECORDED}" maxLength="60" finishOnKey="{finish_on_key}" '
        f'recordingStatusCallback="{RECORDING_STATUS}" recordingStatusCallbackEvent="{events}"/>'
        f'<Say language="th-TH" voice="Google.th-TH-Standard-A">{NOTHING_HEARD}</Say><Hangup/></Response>'
    )


THANKS_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    f'<Say language="th-TH" voice="Google.th-TH-Standard-A">{THANKS}</Say><Hangup/></Response>'
)


@dataclass(frozen=True)
class Hit:
    path: str
    params: dict[str, str]
    signature_ok: bool
    arrived: float  # time.perf_counter() when the request line was read
    departed: float  # ... when the answer was about to be written
    thread: str
    waited_at_gate: bool  # the gate let it through (every gated request was in flight together)


@dataclass
class StandIn:
    """The app's side of the call. ``hold_s`` and ``gate`` apply to the three end-of-call paths only."""

    voice_twiml: str = field(default_factory=record_twiml)
    hold_s: float = 0.0
    gate: threading.Barrier | None = None
    on_request: Callable[[str, dict[str, str]], None] | None = None
    base: str = ""
    hits: list[Hit] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def config(self, **overrides: Any) -> SimulatorConfig:
        values: dict[str, Any] = {
            "connect_base": self.base,
            "public_base": self.base,
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "timeout_s": 10.0,
        }
        values.update(overrides)
        return SimulatorConfig(**values)

    def paths(self) -> list[str]:
        with self._lock:
            return [h.path for h in sorted(self.hits, key=lambda h: h.arrived)]

    def to(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == path]

    def end_of_call(self) -> list[Hit]:
        """The end-of-call requests the app received, in the order they arrived."""
        ends = set(END_OF_CALL_PATHS.values())
        with self._lock:
            return sorted((h for h in self.hits if h.path in ends), key=lambda h: h.arrived)

    def answer(self, path: str, params: dict[str, str], arrived: float) -> tuple[int, str, bool]:
        """(status, TwiML body, passed the gate) for one request; runs on the server's thread."""
        if self.on_request is not None:
            self.on_request(path, params)
        passed = False
        if path in END_OF_CALL_PATHS.values():
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.gate is not None:
                    self.gate.wait(timeout=5)
                    passed = True
                if self.hold_s:
                    time.sleep(self.hold_s)
            except threading.BrokenBarrierError:
                passed = False
            finally:
                with self._lock:
                    self.in_flight -= 1
        if path == VOICE:
            return 200, self.voice_twiml, passed
        if path == RECORDED:
            return 200, THANKS_TWIML, passed
        if path in (RECORDING_STATUS, STATUS):
            return 204, "", passed
        return 404, "", passed


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_POST(self) -> None:
        arrived = time.perf_counter()
        length = int(self.headers.get("Content-Length") or 0)
        params = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
        app = self.server.app
        ok = RequestValidator(AUTH_TOKEN).validate(
            app.base + self.path, params, self.headers.get("X-Twilio-Signature", "")
        )
        status, body, passed = app.answer(self.path, params, arrived) if ok else (403, "", False)
        departed = time.perf_counter()
        hit = Hit(self.path, params, ok, arrived, departed, threading.current_thread().name, passed)
        with app._lock:
            app.hits.append(hit)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: StandIn


@contextmanager
def serving(app: StandIn) -> Iterator[StandIn]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.app = app
    app.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield app
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
