"""``<Record>``: the recording Twilio makes, its action and status callbacks, a caller hanging up on it."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from telephony.simulator.audio import generate_wav, wav_duration
from telephony.simulator.end_of_call import finish_after_hangup
from telephony.simulator.events import CallEnded, CallEvent
from telephony.simulator.script import ActionKind, CallerAction
from telephony.simulator.sender import FetchError
from telephony.simulator.twilio_api import new_sid, rfc2822_now
from telephony.simulator.twiml import Document, int_attr

if TYPE_CHECKING:
    from telephony.simulator.player import Call


@dataclass(frozen=True)
class RecordVerb:
    """One ``<Record>``'s attributes, with Twilio's defaults."""

    action: str
    method: str
    max_length: int
    timeout: int
    finish: str
    beep: bool
    callback_url: str | None
    callback_method: str
    callback_events: frozenset[str]

    @classmethod
    def of(cls, doc: Document, el: ET.Element) -> RecordVerb:
        rsc = el.get("recordingStatusCallback")
        events = (el.get("recordingStatusCallbackEvent") or "completed").strip()
        return cls(
            action=urljoin(doc.url, el.get("action") or "") if el.get("action") else doc.url,
            method=(el.get("method") or "POST").upper(),
            max_length=int_attr(el, "maxLength", 3600) or 3600,
            timeout=int_attr(el, "timeout", 5),
            finish=el.get("finishOnKey", "1234567890*#"),
            beep=(el.get("playBeep") or "true").lower() != "false",
            callback_url=urljoin(doc.url, rsc) if rsc else None,
            callback_method=(el.get("recordingStatusCallbackMethod") or "POST").upper(),
            callback_events=frozenset(re.split(r"[\s,]+", events)),
        )

    @property
    def prompt(self) -> str:
        return f"record (maxLength={self.max_length}s, finishOnKey={self.finish!r}, timeout={self.timeout}s)"


def record_digits(act: CallerAction, verb: RecordVerb) -> str | None:
    """The action's ``Digits``: what ended the recording (None: maxLength or the silence timeout)."""
    if act.hangup_during:
        return "hangup"
    if act.seconds > verb.max_length:
        return None
    if act.finish_key in verb.finish:
        return act.finish_key
    # The key does not end this recording: the silence timeout does, or the caller's hang-up.
    return "hangup" if act.hangup_after else None


class Recording:
    """One ``<Record>`` played on a call: the caller's ``record…`` token makes (or does not make) the
    recording the fake Twilio then holds; the action and the recording status callbacks follow."""

    def __init__(self, call: Call, doc: Document, el: ET.Element) -> None:
        self.call = call
        self.verb = RecordVerb.of(doc, el)
        self.sid = new_sid("RE")
        self.started = ""

    def play(self) -> Document | None:
        """The action's document, or None when Twilio goes on with the next verb (nothing recorded)."""
        call, verb, sid = self.call, self.verb, self.sid
        accepts: frozenset[ActionKind] = frozenset({"record", "silence", "hangup"})
        act = call.cursor.take("Record", accepts, verb.prompt)
        if act is None:
            raise call.caller_hangs_up("the script ran out at a <Record>")
        self.started = rfc2822_now()
        if act.kind != "record" or act.seconds == 0:
            return self.empty(act)
        duration = min(act.seconds, verb.max_length)
        digits = record_digits(act, verb)
        wav = call.recording_wav if call.recording_wav is not None else generate_wav(duration)
        measured = wav_duration(wav)
        if call.recording_wav is not None and measured is not None:
            duration = round(measured)
        recording_url = call.media.register(sid, wav, call_sid=call.call_sid, duration_s=duration)
        call.result.recordings.append(sid)
        self.status("in-progress", {"RecordingUrl": recording_url})
        beep = " (beep)" if verb.beep else ""
        outcome = f"RecordingSid={sid} Digits={digits}{beep}"
        seconds = float(duration)
        call.emit(CallEvent(kind="record", text=act.raw, url=recording_url, outcome=outcome, seconds=seconds))
        call.clock_s += duration + (0 if digits else verb.timeout)
        params = {"RecordingUrl": recording_url, "RecordingSid": sid, "RecordingDuration": str(duration)}
        if digits is not None:
            params["Digits"] = digits
        completed = {"RecordingUrl": recording_url, "RecordingDuration": str(duration)}
        if act.hangup_during or act.hangup_after:
            raise self.hang_up(digits, params, self.status_request("completed", completed))
        return self.action(params, completed)

    def action(self, params: Mapping[str, str], completed: Mapping[str, str]) -> Document:
        """The caller stayed: the action is requested, then the ``completed`` recording status callback."""
        try:
            nxt = self.call.load(self.verb.action, self.verb.method, params, "record-action")
        except FetchError as err:
            self.call.error_event(err)
            self.status("completed", completed)
            raise CallEnded("error") from None
        except CallEnded:
            self.status("completed", completed)
            raise
        self.status("completed", completed)
        return nxt

    def empty(self, act: CallerAction) -> Document | None:
        """Nothing recorded: Twilio skips the action and goes on with the next verb (if the caller stayed)."""
        call = self.call
        call.emit(
            CallEvent(kind="record", text=act.raw, outcome="empty recording: action not requested", seconds=0)
        )
        call.clock_s += self.verb.timeout
        call.media.register(self.sid, None, call_sid=call.call_sid, duration_s=0, status="absent")
        absent = self.status_request("absent", {"RecordingDuration": "0", "ErrorCode": "16101"})
        if act.kind == "hangup" or act.hangup_during or act.hangup_after:
            call.caller_hangs_up("at the <Record> beep")
            raise finish_after_hangup(call, {"recording": absent})
        if absent is not None:
            absent()
        return None

    def status_request(self, status: str, extra: Mapping[str, str]) -> Callable[[], None] | None:
        """The recording status callback for `status`, to send; None when the TwiML did not ask for it."""
        verb, call = self.verb, self.call
        url = verb.callback_url
        if url is None or status not in verb.callback_events:
            return None
        params = {
            "AccountSid": call.config.account_sid,
            "CallSid": call.call_sid,
            "RecordingSid": self.sid,
            "RecordingStatus": status,
            "RecordingChannels": "1",
            "RecordingSource": "RecordVerb",
            "RecordingStartTime": self.started,
            **extra,
        }
        return lambda: call.sender.callback(url, verb.callback_method, params, "recording-status")

    def status(self, status: str, extra: Mapping[str, str]) -> None:
        send = self.status_request(status, extra)
        if send is not None:
            send()

    def hang_up(
        self, digits: str | None, params: Mapping[str, str], recording: Callable[[], None] | None
    ) -> CallEnded:
        """The caller hung up during the recording (Digits=hangup) or right after the key that ended it."""
        call, verb = self.call, self.verb
        if digits == "hangup":
            call.emit(CallEvent(kind="hangup", text="caller hangs up during <Record>"))
        else:
            ended = f"pressing {digits!r}" if digits else "the recording ended"
            call.emit(CallEvent(kind="hangup", text=f"caller hangs up at once after {ended}"))
        # A key went in while the call was still up; only Digits=hangup is sent after the caller left.
        action_params = {**params, "CallStatus": "completed" if digits == "hangup" else "in-progress"}

        def action() -> None:
            try:
                call.load(verb.action, verb.method, action_params, "record-action")  # its TwiML is not played
            except FetchError as err:
                call.emit(
                    CallEvent(kind="warning", code=err.code, text=err.message, url=err.url, status=err.status)
                )
            except CallEnded as end:
                call.emit(CallEvent(kind="warning", text=f"record-action not sent: {end.ended_by}"))

        return finish_after_hangup(call, {"action": action, "recording": recording})
