"""Outbound calls (the call-back bridge's side): the call Twilio places after ``POST …/Calls.json``, its
status callbacks, its TwiML, and the ``<Dial>`` leg to the party it bridges to, with answering machine
detection."""

from __future__ import annotations

import math
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import urljoin

import requests

from telephony.simulator.config import SimulatorConfig
from telephony.simulator.events import CallEvent, CallResult
from telephony.simulator.player import Call
from telephony.simulator.script import CallScript
from telephony.simulator.twilio_api import API_VERSION, new_sid, rfc2822_now
from telephony.simulator.twiml import Document, int_attr

if TYPE_CHECKING:
    from collections.abc import Callable

    from telephony.simulator.media_server import MediaServer

OperatorPlan = Literal["answer", "no-answer", "busy", "failed"]
ReporterPlan = Literal["answer", "no-answer", "busy", "voicemail", "failed"]


@dataclass(frozen=True)
class OutboundPlan:
    """What happens on one outbound call: does the called phone answer, and how does its <Dial> end.

    ``reporter`` is the party the TwiML ``<Dial>``s: ``answer`` talks ``talk_s`` seconds (answering machine
    detection, if asked for, says ``human``); ``voicemail`` is answered by a machine (``AnsweredBy=
    machine_start``), listened to for ``talk_s`` seconds; the others end the dialled leg with that status.
    """

    operator: OperatorPlan = "answer"
    reporter: ReporterPlan = "answer"
    talk_s: int = 30


@dataclass
class OutboundCall:
    """One call placed through Calls.json: the request's parameters, the plan played, and what happened."""

    sid: str
    to: str
    from_: str
    url: str
    plan: OutboundPlan
    result: CallResult
    status_callback: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def events(self) -> list[CallEvent]:
        return self.result.events


@dataclass(frozen=True)
class StatusCallback:
    """Where and for which events (initiated, ringing, answered, completed) a call's status is posted."""

    url: str | None
    method: str
    events: frozenset[str]


class OutboundPlayer(Call):
    """Plays one call placed through Calls.json (see :class:`.calls_resource.OutboundCalls`)."""

    def __init__(
        self,
        config: SimulatorConfig,
        media: MediaServer,
        call: OutboundCall,
        method: str,
        status_callback: StatusCallback,
        timeout_s: int,
        on_event: Callable[[CallEvent], None] | None,
    ) -> None:
        super().__init__(config, CallScript(), media, requests.Session(), on_event, None)
        self.call = call
        self.call_sid = call.sid
        self.result = call.result
        self.call_status = "queued"
        self.method = method.upper()
        self.status_callback = status_callback
        self.timeout_s = timeout_s
        self.sequence = 0

    def standard_params(self) -> dict[str, str]:
        params = super().standard_params()
        params["Direction"] = "outbound-api"
        return params

    def status(self, event: str, call_status: str, **extra: str) -> None:
        """The call's status callback for one event, if the request asked for it."""
        self.call_status = call_status
        duration = extra.get("CallDuration")
        self.media.call_updated(self.call_sid, call_status, duration_s=int(duration) if duration else None)
        callback = self.status_callback
        if callback.url is None or event not in callback.events:
            return
        params = {
            **self.standard_params(),
            "Timestamp": rfc2822_now(),
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(self.sequence),
            **extra,
        }
        self.sequence += 1
        self.sender.callback(callback.url, callback.method, params, f"status-callback {event}")

    def play(self) -> None:
        try:
            self._play()
        except Exception as exc:  # a bug here must not hang the test that waits for the call
            self.emit(CallEvent(kind="error", text=f"simulator failure: {exc!r}"))
            self.result.ended_by = "error"
        finally:
            self.sender.session.close()
            self.call.done.set()

    def _play(self) -> None:
        plan = self.call.plan
        self.status("initiated", "initiated")
        if plan.operator in ("busy", "failed"):
            self.emit(CallEvent(kind="hangup", text=f"the called phone: {plan.operator}"))
            self.result.call_status = plan.operator
            self.status("completed", plan.operator, CallDuration="0")
            return
        self.status("ringing", "ringing")
        if plan.operator == "no-answer":
            self.clock_s += self.timeout_s
            self.emit(CallEvent(kind="hangup", text=f"the called phone did not answer in {self.timeout_s} s"))
            self.result.call_status = "no-answer"
            self.status("completed", "no-answer", CallDuration="0")
            return
        self.answered = True
        self.status("answered", "in-progress")
        self.follow(self.call.url, self.method, "url")
        self.result.call_status = "completed"
        self.result.duration_s = max(1, math.ceil(self.clock_s))
        self.status("completed", "completed", CallDuration=str(self.result.duration_s))

    def dial(self, doc: Document, el: ET.Element) -> Document | None:
        """The bridge's ``<Dial><Number>``: the leg rings as the plan says, then the Dial action."""
        leg = _Leg.of(self, doc, el)
        action = urljoin(doc.url, el.get("action") or "") if el.get("action") else None
        method = (el.get("method") or "POST").upper()
        plan = self.call.plan
        status, duration = leg.ring(int_attr(el, "timeout", 30))
        self.emit(
            CallEvent(
                kind="dial",
                text=f"{leg.number} (callerId {leg.caller_id})",
                outcome=f"{status} ({plan.reporter})",
                seconds=float(duration),
                url=action,
                method=method if action else None,
            )
        )
        if action is None:
            return None
        params = {"DialCallStatus": status, "DialCallSid": leg.sid, "DialCallDuration": str(duration)}
        return self.load(action, method, params, "dial-action")


@dataclass
class _Leg:
    """The dialled party's leg of a ``<Dial>``: its status callbacks and answering machine detection."""

    call: OutboundPlayer
    sid: str
    number: str
    caller_id: str
    callback: StatusCallback
    amd_url: str | None
    amd_method: str
    detects: bool
    sequence: int = 0

    @classmethod
    def of(cls, call: OutboundPlayer, doc: Document, el: ET.Element) -> _Leg:
        numbers = [c for c in el if c.tag == "Number"]
        target = numbers[0] if numbers else None
        attrs = target.attrib if target is not None else {}
        leg_callback = urljoin(doc.url, attrs["statusCallback"]) if attrs.get("statusCallback") else None
        leg_events = frozenset(re.split(r"[\s,]+", (attrs.get("statusCallbackEvent") or "completed").strip()))
        leg_method = (attrs.get("statusCallbackMethod") or "POST").upper()
        return cls(
            call=call,
            sid=new_sid("CA"),
            number=((target.text if target is not None else el.text) or "").strip(),
            caller_id=el.get("callerId") or call.call.from_,
            callback=StatusCallback(leg_callback, leg_method, leg_events),
            amd_url=urljoin(doc.url, attrs["amdStatusCallback"]) if attrs.get("amdStatusCallback") else None,
            amd_method=(attrs.get("amdStatusCallbackMethod") or "POST").upper(),
            detects=(attrs.get("machineDetection") or "") in ("Enable", "DetectMessageEnd"),
        )

    def ring(self, timeout: int) -> tuple[str, int]:
        """The leg plays out as the call's plan says; its DialCallStatus and duration."""
        call, plan = self.call, self.call.call.plan
        self.status("initiated", "initiated")
        if plan.reporter in ("busy", "failed"):
            self.status("completed", plan.reporter, CallDuration="0")
            call.clock_s += 1
            return plan.reporter, 0
        self.status("ringing", "ringing")
        if plan.reporter == "no-answer":
            call.clock_s += timeout
            self.status("completed", "no-answer", CallDuration="0")
            return "no-answer", 0
        self.status("answered", "in-progress")
        if self.detects and self.amd_url is not None:
            answered_by = "machine_start" if plan.reporter == "voicemail" else "human"
            amd = {
                "AccountSid": call.config.account_sid,
                "CallSid": self.sid,
                "AnsweredBy": answered_by,
                "MachineDetectionDuration": "2100",
            }
            call.sender.callback(self.amd_url, self.amd_method, amd, "amd-status")
        call.clock_s += plan.talk_s
        self.status("completed", "completed", CallDuration=str(plan.talk_s))
        return "completed", plan.talk_s

    def status(self, event: str, status: str, **extra: str) -> None:
        callback = self.callback
        if callback.url is None or event not in callback.events:
            return
        params = {
            "AccountSid": self.call.config.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.sid,
            "ParentCallSid": self.call.call_sid,
            "CallStatus": status,
            "Direction": "outbound-dial",
            "From": self.caller_id,
            "Caller": self.caller_id,
            "To": self.number,
            "Called": self.number,
            "Timestamp": rfc2822_now(),
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(self.sequence),
            **extra,
        }
        self.sequence += 1
        self.call.sender.callback(callback.url, callback.method, params, f"dial-leg {event}")
