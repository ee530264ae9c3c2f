"""Twilio's Calls resource in the fake Twilio: ``POST …/Calls.json`` checked as Twilio checks it, and the
outbound calls it places, each played on its own thread."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from telephony.simulator.config import SimulatorConfig
from telephony.simulator.events import CallEvent, CallResult
from telephony.simulator.outbound import OutboundCall, OutboundPlan, OutboundPlayer, StatusCallback
from telephony.simulator.twilio_api import API_VERSION, E164_RE, new_sid, rfc2822_now, twilio_error

if TYPE_CHECKING:
    from telephony.simulator.media_server import MediaServer

_CALL_EVENTS: Final = frozenset({"initiated", "ringing", "answered", "completed"})
_HTTP_URL_RE: Final = re.compile(r"https?://[^\s/]+(/\S*)?")


def _refusal(form: dict[str, str], events: set[str]) -> tuple[int, dict[str, object]] | None:
    """Twilio's 400 for a call it would not place, or None."""
    to, from_, url = form.get("To", ""), form.get("From", ""), form.get("Url", "")
    method = (form.get("Method") or "POST").upper()
    callback = form.get("StatusCallback") or None
    if not to:
        return twilio_error(400, 21201, "No 'To' number is specified")
    if not E164_RE.fullmatch(to):
        return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if not from_:
        return twilio_error(400, 21603, "A 'From' phone number is required.")
    if not E164_RE.fullmatch(from_):
        return twilio_error(400, 21212, f"The 'From' number {from_} is not a valid phone number.")
    if not _HTTP_URL_RE.fullmatch(url) or method not in ("GET", "POST"):
        return twilio_error(400, 21205, "Url is not a valid URL.")
    if callback is not None and not _HTTP_URL_RE.fullmatch(callback):
        return twilio_error(400, 21205, "StatusCallback is not a valid URL.")
    if not events <= _CALL_EVENTS:
        return twilio_error(400, 21626, "Invalid StatusCallbackEvent.")
    return None


class OutboundCalls:
    """The Calls resource of a :class:`MediaServer` and the calls it places, the way Twilio does.

    ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (basic auth) with To, From (E.164), Url (http(s),
    Method POST or GET), and optionally StatusCallback, StatusCallbackEvent (repeated or space-separated:
    initiated ringing answered completed; ``completed`` by default), StatusCallbackMethod and Timeout
    answers 201 with the call's JSON (a ``CA…`` sid, status ``queued``), or Twilio's 400 (21201/21211 To,
    21603/21212 From, 21205 Url). Then, in a thread, it plays the call against the app at ``connect_base``
    (see :meth:`connect`): the status callbacks (``initiated``, ``ringing``, ``answered`` with
    ``CallStatus=in-progress``, and the final one with the end status and ``CallDuration``), the Url
    fetched with ``Direction=outbound-api`` and its TwiML followed like an inbound call's. A ``<Dial>``
    rings its ``<Number>`` under the ``callerId``: that leg's ``statusCallback`` events (with
    ``ParentCallSid``), answering machine detection's ``amdStatusCallback`` (``CallSid`` of the leg,
    ``AnsweredBy``, ``MachineDetectionDuration``) when ``machineDetection`` is set, then the Dial action
    (``DialCallStatus``, ``DialCallSid``, ``DialCallDuration``). Every request is signed.

    Outcomes follow :meth:`plan` (one :class:`OutboundPlan` per call, in order), then ``default``.
    Failures of the endpoint itself: ``media.inject("Calls", "http503", method="POST")``.
    """

    def __init__(self, media: MediaServer) -> None:
        self.media = media
        self.default = OutboundPlan()
        self.connect_base: str | None = None
        self.public_base: str | None = None
        self.on_event: Callable[[CallEvent], None] | None = None
        self._lock = threading.Lock()
        self._plans: list[OutboundPlan] = []
        self._calls: list[OutboundCall] = []
        self._threads: list[threading.Thread] = []

    def connect(
        self,
        connect_base: str,
        public_base: str | None = None,
        *,
        on_event: Callable[[CallEvent], None] | None = None,
    ) -> None:
        """Where the app that receives the calls' webhooks runs, and the public base URL it signs against."""
        self.connect_base = connect_base.rstrip("/")
        self.public_base = (public_base or connect_base).rstrip("/")
        self.on_event = on_event

    def plan(self, *plans: OutboundPlan) -> None:
        """The outcomes of the next calls, in order (after them, ``default``)."""
        with self._lock:
            self._plans.extend(plans)

    @property
    def calls(self) -> list[OutboundCall]:
        with self._lock:
            return list(self._calls)

    def wait(self, timeout_s: float = 30.0) -> list[OutboundCall]:
        """Wait until every call placed so far has ended (status callbacks included); the calls."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                raise TimeoutError(f"an outbound call is still going after {timeout_s:g} s")
        return self.calls

    def create(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        """``POST …/Calls.json``: 201 with the queued call's JSON (the call then plays), or Twilio's error."""
        events = set(re.split(r"[\s,]+", (form.get("StatusCallbackEvent") or "completed").strip()))
        refused = _refusal(form, events)
        if refused is not None:
            return refused
        raw_timeout = form.get("Timeout", "").strip()
        # Twilio's default is 60 s.
        timeout = int(raw_timeout) if raw_timeout.isdigit() and len(raw_timeout) < 4 else 60
        if self.connect_base is None or self.public_base is None:
            return twilio_error(500, 20500, "the simulator does not know where the app is (connect())")
        call = self._place(form, events, timeout)
        now = rfc2822_now()
        return 201, {
            "account_sid": self.media.account_sid,
            "api_version": API_VERSION,
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "from": call.from_,
            "from_formatted": call.from_,
            "sid": call.sid,
            "status": "queued",
            "to": call.to,
            "to_formatted": call.to,
            "uri": f"/{API_VERSION}/Accounts/{self.media.account_sid}/Calls/{call.sid}.json",
        }

    def _place(self, form: dict[str, str], events: set[str], timeout: int) -> OutboundCall:
        """Start playing the call on its own thread (it is ``queued`` until its first status)."""
        assert self.connect_base is not None and self.public_base is not None
        to, from_ = form["To"], form["From"]
        sid = new_sid("CA")
        with self._lock:
            plan = self._plans.pop(0) if self._plans else self.default
        config = SimulatorConfig(
            connect_base=self.connect_base,
            public_base=self.public_base,
            account_sid=self.media.account_sid,
            auth_token=self.media.auth_token,
            from_number=from_,
            to_number=to,
        )
        callback = form.get("StatusCallback") or None
        call = OutboundCall(sid, to, from_, form["Url"], plan, CallResult(call_sid=sid), callback)
        status = StatusCallback(
            callback, (form.get("StatusCallbackMethod") or "POST").upper(), frozenset(events)
        )
        method = (form.get("Method") or "POST").upper()
        runner = OutboundPlayer(config, self.media, call, method, status, timeout, self.on_event)
        thread = threading.Thread(target=runner.play, name=f"twilio-call-{sid[:10]}", daemon=True)
        media = self.media
        media.call_started(sid, from_number=from_, to_number=to, direction="outbound-api", status="queued")
        with self._lock:
            self._calls.append(call)
            self._threads.append(thread)
        thread.start()
        return call
