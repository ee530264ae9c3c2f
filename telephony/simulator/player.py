"""The TwiML player: one inbound call, its documents fetched and followed verb by verb as Twilio does."""

from __future__ import annotations

import math
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import requests

from telephony.simulator import record, verbs
from telephony.simulator.config import SimulatorConfig
from telephony.simulator.events import CallEnded, CallEvent, CallResult
from telephony.simulator.script import CallScript, ScriptCursor, ScriptError
from telephony.simulator.sender import FetchError, Sender
from telephony.simulator.twilio_api import API_VERSION, new_sid, rfc2822_now
from telephony.simulator.twiml import SKIPPED_VERBS, Document, read_document

if TYPE_CHECKING:
    from telephony.simulator.media_server import MediaServer


class Call:
    """Plays one call: fetches the voice URL's TwiML, runs each verb against the caller's script, and ends
    the call with its status callback. The verbs themselves live in :mod:`verbs` and :mod:`record`."""

    def __init__(
        self,
        config: SimulatorConfig,
        script: CallScript,
        media: MediaServer,
        session: requests.Session,
        on_event: Callable[[CallEvent], None] | None,
        recording_wav: bytes | None,
    ) -> None:
        self.config = config
        self.cursor = ScriptCursor(script)
        self.media = media
        self.on_event = on_event
        self.recording_wav = recording_wav if recording_wav is not None else config.recording_wav
        self.sender = Sender(config, session, self.emit)
        self.call_sid = new_sid("CA")
        self.result = CallResult(call_sid=self.call_sid)
        self.call_status = config.first_call_status
        self.answered = False
        self.document_requests = 0
        self.clock_s = 0.0
        # The end-of-call requests run on their own threads (concurrent delivery): each collects its
        # events, which the call's thread emits once they are all answered.
        self._local = threading.local()
        # The status callback goes out once per call: at the end of run(), unless the end-of-call
        # delivery took it over (and sent it, or lost it as the hang-up order said).
        self.status_handled = False

    # ---- plumbing ----
    def emit(self, event: CallEvent) -> None:
        buffer: list[CallEvent] | None = getattr(self._local, "events", None)
        if buffer is not None:
            buffer.append(event)
            return
        self.result.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    @contextmanager
    def captured(self, events: list[CallEvent], session: requests.Session | None) -> Iterator[None]:
        """In this thread, collect events in `events` (not the result) and send through `session`."""
        self._local.events = events
        try:
            with self.sender.using(session):
                yield
        finally:
            self._local.events = None

    def standard_params(self) -> dict[str, str]:
        c = self.config
        return {
            "AccountSid": c.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.call_sid,
            "CallStatus": self.call_status,
            "Called": c.to_number,
            "Caller": c.from_number,
            "Direction": "inbound",
            "From": c.from_number,
            "To": c.to_number,
            "FromCountry": c.from_country,
            "ToCountry": c.to_country,
            "CallerCountry": c.from_country,
            "CalledCountry": c.to_country,
        }

    def load(self, public_url: str, method: str, extra: Mapping[str, str], purpose: str) -> Document:
        """Request TwiML and return the validated document (raises FetchError / CallEnded)."""
        if self.document_requests >= self.config.max_requests:
            self.emit(
                CallEvent(
                    kind="error",
                    text=f"loop guard: {self.document_requests} TwiML requests in one call, giving up",
                    url=public_url,
                )
            )
            raise CallEnded("loop-guard")
        self.document_requests += 1
        params = {**self.standard_params(), **extra}
        resp, url = self.sender.send(method, public_url, params, purpose)
        return read_document(resp, url)

    def error_event(self, err: FetchError) -> None:
        self.emit(
            CallEvent(
                kind="error",
                code=err.code,
                text=err.message,
                url=err.url,
                status=err.status,
                body_excerpt=err.excerpt,
            )
        )

    # ---- the call ----
    def follow(self, url: str, method: str, purpose: str) -> CallEnded | None:
        """Fetch the first TwiML, then play each answer until the call ends (a failed fetch ends it too)."""
        try:
            doc = self.load(url, method, {}, purpose)
            while True:
                doc = self.execute(doc)
        except FetchError as err:
            self.error_event(err)
            self.result.ended_by = "error"
            return None
        except CallEnded as end:
            self.result.ended_by = end.ended_by
            return end

    def run(self) -> CallResult:
        script_error: ScriptError | None = None
        c = self.config
        self.media.call_started(self.call_sid, from_number=c.from_number, to_number=c.to_number)
        try:
            end = self.follow(self.config.public_url(self.config.voice_path), "POST", "voice")
            if end is not None:
                self.result.call_status = end.call_status
        except ScriptError as exc:
            script_error = exc
            self.emit(CallEvent(kind="hangup", text=f"caller hangs up: script error: {exc}"))
            self.result.ended_by = "caller-hangup"
        finally:
            params = self.end_call()
            if not self.status_handled:
                self.send_status_callback(params)
        if script_error is not None:
            script_error.result = self.result
            raise script_error
        return self.result

    def end_call(self) -> dict[str, str]:
        """The call is over (the Calls resource says so from now on); the status callback's parameters."""
        self.result.duration_s = 0 if not self.answered else max(1, math.ceil(self.clock_s))
        self.call_status = self.result.call_status
        self.media.call_updated(self.call_sid, self.call_status, duration_s=self.result.duration_s)
        return {
            **self.standard_params(),
            "CallDuration": str(self.result.duration_s),
            "Timestamp": rfc2822_now(),
            "CallbackSource": "call-progress-events",
            "SequenceNumber": "0",
        }

    def send_status_callback(self, params: Mapping[str, str]) -> None:
        self.status_handled = True
        url = self.config.public_url(self.config.status_path)
        self.sender.callback(url, "POST", params, "status-callback")

    def execute(self, doc: Document) -> Document:
        for el in doc.root:
            if el.tag != "Reject":
                self.answer()
            nxt = self.verb(doc, el)
            if nxt is not None:
                return nxt
        self.emit(CallEvent(kind="hangup", text="end of document"))
        raise CallEnded("end-of-document")

    def answer(self) -> None:
        if not self.answered:
            self.answered = True
            self.call_status = "in-progress"

    def caller_hangs_up(self, why: str) -> CallEnded:
        self.emit(CallEvent(kind="hangup", text=f"caller hangs up: {why}"))
        self.call_status = "completed"
        return CallEnded("caller-hangup")

    def verb(self, doc: Document, el: ET.Element) -> Document | None:
        """Run one verb; the next document when the verb moved the call on to one."""
        tag = el.tag
        if tag in ("Say", "Play", "Pause"):
            verbs.speak(self, doc, el)
            return None
        if tag == "Gather":
            return verbs.gather(self, doc, el)
        if tag == "Record":
            return record.Recording(self, doc, el).play()
        if tag == "Dial":
            return self.dial(doc, el)
        if tag == "Redirect":
            url = urljoin(doc.url, (el.text or "").strip())
            method = (el.get("method") or "POST").upper()
            self.emit(CallEvent(kind="redirect", url=url, method=method))
            return self.load(url, method, {}, "redirect")
        if tag == "Hangup":
            self.emit(CallEvent(kind="hangup", text="<Hangup>"))
            raise CallEnded("hangup-verb")
        if tag == "Reject":
            reason = el.get("reason") or "rejected"
            self.emit(CallEvent(kind="reject", text=reason))
            if self.answered:
                raise CallEnded("hangup-verb")
            raise CallEnded("hangup-verb", "busy" if reason == "busy" else "no-answer")
        if tag in SKIPPED_VERBS:
            self.emit(CallEvent(kind="warning", text=f"<{tag}> is not simulated; skipped"))
            return None
        raise FetchError(None, f"<{tag}> is a Twilio verb the simulator does not implement", url=doc.url)

    def dial(self, doc: Document, el: ET.Element) -> Document | None:
        """``<Dial>`` on an inbound call: the script says how it ends (an outbound call rings a leg)."""
        return verbs.dial(self, doc, el)
