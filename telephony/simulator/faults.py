"""Faults a test injects into the fake Twilio: errors, slowness, cut-off or non-audio bodies, in order."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from telephony.simulator.media_server import MediaHandler

MediaFault = Literal["http500", "http503", "http404", "slow", "stall", "truncated", "html"]
MEDIA_FAULTS: Final = frozenset({"http500", "http503", "http404", "slow", "stall", "truncated", "html"})
_ERROR_MESSAGES: Final = {500: "Internal Server Error", 503: "Service Unavailable", 404: "Not Found"}


@dataclass
class Fault:
    kind: MediaFault
    remaining: int | None  # requests it still spoils; None: every one
    delay_s: float


class Faults:
    """The faults waiting for each (method, key) (a recording SID, a resource name, a call SID), in order.

    ``closing`` is set when the server closes: a request held back by ``slow`` or ``stall`` gives up at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[tuple[str, str], list[Fault]] = {}
        self.closing = threading.Event()

    def add(self, method: str, key: str, fault: MediaFault, times: int | None, delay_s: float) -> None:
        if fault not in MEDIA_FAULTS:
            raise ValueError(f"unknown media fault {fault!r}; one of {', '.join(sorted(MEDIA_FAULTS))}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for every request)")
        with self._lock:
            self._queues.setdefault((method, key), []).append(Fault(fault, times, delay_s))

    def clear(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._queues.clear()
            else:
                for queued in [k for k in self._queues if k[1] == key]:
                    del self._queues[queued]

    def take(self, method: str, key: str) -> Fault | None:
        with self._lock:
            queue = self._queues.get((method, key))
            if not queue:
                return None
            fault = queue[0]
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    queue.pop(0)
            return fault

    def misbehave(
        self, handler: MediaHandler, method: str, key: str, wav: bytes | None, *, send_body: bool
    ) -> bool:
        """Answer with the next injected fault for this request, if any; True when it was answered."""
        fault = self.take(method, key)
        if fault is None:
            return False
        try:
            if fault.kind in ("http500", "http503", "http404"):
                _http_error(handler, int(fault.kind[4:]), send_body=send_body)
            elif fault.kind == "slow":
                # Late, but then served normally (unless the server is closing meanwhile).
                return self.closing.wait(fault.delay_s)
            elif fault.kind == "html":
                _html_page(handler, send_body=send_body)
            elif wav is None:  # "stall" and "truncated" only make sense for a recording's body
                handler.send_response(500)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
            else:
                self._half_body(handler, fault, wav, send_body=send_body)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client gave up first, as a timed-out client does
        return True

    def _half_body(self, handler: MediaHandler, fault: Fault, wav: bytes, *, send_body: bool) -> None:
        """``stall`` and ``truncated``: the full length announced, half the body sent, then a wait or not."""
        half = wav[: len(wav) // 2]
        handler.send_response(200)
        handler.send_header("Content-Type", "audio/x-wav")
        handler.send_header("Content-Length", str(len(wav)))
        handler.end_headers()
        if send_body:
            handler.wfile.write(half)
            handler.wfile.flush()
            if fault.kind == "stall":
                self.closing.wait(fault.delay_s)
                handler.wfile.write(wav[len(half) :])
        handler.close_connection = True


def _http_error(handler: MediaHandler, status: int, *, send_body: bool) -> None:
    code = 20404 if status == 404 else 20500
    handler.send_json(
        status,
        f'{{"code": {code}, "message": "{_ERROR_MESSAGES[status]}", "more_info": '
        f'"https://www.twilio.com/docs/errors/{code}", "status": {status}}}',
        send_body=send_body,
        extra={"Retry-After": "1"} if status == 503 else None,
    )


def _html_page(handler: MediaHandler, *, send_body: bool) -> None:
    page = b"<!DOCTYPE html><html><body><h1>Temporarily unavailable</h1></body></html>"
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.send_header("Content-Length", str(len(page)))
    handler.end_headers()
    if send_body:
        handler.wfile.write(page)
