"""The call-back bridge: ring the operator's own phone, then connect them to the reporter under the hotline's
caller ID, so that no member of staff ever sees or keys the reporter's number.

1. The console asks the `TwilioDialer` (cases.callbacks.dialing.Dialer) to ring the operator through
   Twilio's Calls API, from the hotline number, with our `answer` URL and the operator leg's status callback.
2. The operator answers: `operator_answered` answers TwiML that names the case reference digit by digit
   and `<Dial callerId=hotline>`s the reporter, whose number is decrypted here, on the server, and goes
   nowhere but into that TwiML (never into a URL, a log line, a page or a message).
3. The reporter's leg ends: the Dial action (`dial_ended`), the reporter leg's status callback
   (`reporter_status`) and answering machine detection (`amd_result`) each carry the outcome; the first
   final one is recorded (cases.callbacks.record_outcome; retries and the other sources change nothing).
4. The operator's leg ends: `operator_status` records OPERATOR_UNREACHABLE when the bridge never got as
   far as ringing the reporter (the operator did not answer, was busy, or hung up during the prompt).

Every URL carries only the attempt id; every write is keyed on the attempt and checked against its call
SIDs, so a retried or forged-but-signed request for another call changes nothing.

Voicemail: the reporter's `<Number>` has `machineDetection="Enable"` and an `amdStatusCallback`
(Twilio's answering machine detection, supported on `<Dial><Number>`); `AnsweredBy=machine_*` is a
VOICEMAIL outcome, `fax` a FAILED one. Whichever of AMD and the Dial action comes first decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session
from twilio.twiml.voice_response import VoiceResponse

from cases import callbacks
from cases.callbacks.dialing import DialError
from cases.callbacks.settings import CallbackSettings
from cases.models import OPEN_CALLBACK_STATES, AttemptOutcome, Callback, CallbackAttempt, Case
from infra.clock import Clock, utcnow
from infra.crypto import FieldCipher
from telephony import params, twiml
from telephony.rest import TwilioRest, TwilioRestError
from telephony.validators import speak_digits

log = logging.getLogger(__name__)

PREFIX = "/twilio/bridge"
# The webhooks, under PREFIX/<attempt id>/: the URL names the attempt, and nothing else.
ANSWER = "answer"
OPERATOR_STATUS = "operator-status"
DIAL = "dial"
REPORTER_STATUS = "reporter-status"
AMD = "amd"
REPORTER_EVENTS = "initiated ringing answered completed"
MACHINE = frozenset({"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other"})
# The reporter leg's end, from <Dial action> (DialCallStatus) or its own status callback (CallStatus).
REPORTER_END: dict[str, AttemptOutcome] = {
    "completed": AttemptOutcome.REACHED,
    "answered": AttemptOutcome.REACHED,
    "no-answer": AttemptOutcome.NO_ANSWER,
    "busy": AttemptOutcome.BUSY,
    "failed": AttemptOutcome.FAILED,
    # The operator hung up while the reporter's phone rang: nothing to count against the reporter.
    "canceled": AttemptOutcome.OPERATOR_UNREACHABLE,
}
OPERATOR_END = frozenset({"no-answer", "busy", "failed", "canceled", "completed"})

TH = "th"
SAY = {
    "intro": "สายโทรกลับจากศูนย์ความปลอดภัย เรื่องหมายเลข {reference}. กำลังต่อสายถึงผู้แจ้ง กรุณารอสักครู่ค่ะ",
    "closed": "การโทรกลับเรื่องหมายเลข {reference} ปิดไปแล้ว ไม่ต้องโทรอีก ขอบคุณค่ะ",
    "ended": "การโทรกลับเรื่องหมายเลข {reference} ครั้งนี้ถูกยกเลิกแล้ว กรุณากดโทรกลับอีกครั้งจากหน้าเรื่องค่ะ",
    "unknown": "ไม่พบการโทรกลับนี้ในระบบ ขอบคุณค่ะ",
    "error": "ขออภัย ระบบขัดข้อง กรุณากดโทรกลับอีกครั้งจากหน้าเรื่องค่ะ",
    AttemptOutcome.REACHED: "บันทึกว่าติดต่อผู้แจ้งได้แล้ว ขอบคุณค่ะ",
    AttemptOutcome.NO_ANSWER: "ผู้แจ้งไม่รับสาย ระบบบันทึกไว้และจะนัดโทรครั้งต่อไปให้ค่ะ",
    AttemptOutcome.BUSY: "สายของผู้แจ้งไม่ว่าง ระบบบันทึกไว้และจะนัดโทรครั้งต่อไปให้ค่ะ",
    AttemptOutcome.VOICEMAIL: "สายเข้าสู่ระบบฝากข้อความ ระบบบันทึกไว้และจะนัดโทรครั้งต่อไปให้ค่ะ",
    AttemptOutcome.FAILED: "ต่อสายถึงผู้แจ้งไม่ได้ ระบบบันทึกไว้และจะนัดโทรครั้งต่อไปให้ค่ะ",
    AttemptOutcome.OPERATOR_UNREACHABLE: "ยกเลิกการต่อสายแล้ว ขอบคุณค่ะ",
}


@dataclass(frozen=True)
class Bridge:
    """What the bridge's webhooks need: where they are, how to speak, the cipher, and the callback rules."""

    voices: twiml.Voices
    cipher: FieldCipher
    hotline_number: str
    settings: CallbackSettings
    ring_timeout_s: int = 30  # how long the reporter's phone rings
    machine_detection: bool = True
    clock: Clock = utcnow

    def url(self, attempt_id: int, what: str) -> str:
        return self.voices.url(f"{PREFIX}/{attempt_id}/{what}")


class TwilioDialer:
    """cases.callbacks.dialing.Dialer over Twilio's Calls API: rings the operator, who hears the bridge."""

    def __init__(self, rest: TwilioRest, bridge_urls: Callable[[int, str], str], hotline_number: str) -> None:
        self.rest = rest
        self.urls = bridge_urls
        self.hotline_number = hotline_number

    def call_operator(self, attempt_id: int, operator_phone: str) -> str:
        try:
            return self.rest.create_call(
                to=operator_phone,
                from_=self.hotline_number,
                url=self.urls(attempt_id, ANSWER),
                status_callback=self.urls(attempt_id, OPERATOR_STATUS),
            )
        except TwilioRestError as exc:
            raise DialError(exc.reason) from None


# ---- TwiML ------------------------------------------------------------------------------------------------


def _say(response: VoiceResponse, bridge: Bridge, key: str | AttemptOutcome, **values: str) -> None:
    response.say(SAY[key].format(**values), language=twiml.SAY_LANGUAGES[TH], voice=bridge.voices.voice_th)


def spoken_reference(case: Case) -> str:
    return speak_digits(case.reference, TH)


def render_bridge(bridge: Bridge, attempt: CallbackAttempt, case: Case, number: str) -> str:
    response = VoiceResponse()
    _say(response, bridge, "intro", reference=spoken_reference(case))
    dial = response.dial(
        caller_id=bridge.hotline_number,
        action=bridge.url(attempt.id, DIAL),
        method="POST",
        timeout=bridge.ring_timeout_s,
        record="do-not-record",
    )
    amd: dict[str, str] = {}
    if bridge.machine_detection:
        amd = {
            "machine_detection": "Enable",
            "amd_status_callback": bridge.url(attempt.id, AMD),
            "amd_status_callback_method": "POST",
        }
    dial.number(
        number,
        status_callback=bridge.url(attempt.id, REPORTER_STATUS),
        status_callback_event=REPORTER_EVENTS,
        status_callback_method="POST",
        **amd,
    )
    return str(response.to_xml())


def render_words(bridge: Bridge, key: str | AttemptOutcome, **values: str) -> str:
    """A short sentence to the operator, then hang up."""
    response = VoiceResponse()
    _say(response, bridge, key, **values)
    response.hangup()
    return str(response.to_xml())


def render_error(bridge: Bridge) -> str:
    return render_words(bridge, "error")


# ---- the attempt a request is about ---------------------------------------------------------------------


def _attempt(session: Session, attempt_id: int) -> CallbackAttempt | None:
    # Row-locked on PostgreSQL: the Dial action and the reporter's status callback arrive together.
    return session.get(CallbackAttempt, attempt_id, with_for_update=True, populate_existing=True)


def _operator_leg(attempt: CallbackAttempt, form: Mapping[str, str], *, field: str = "CallSid") -> bool:
    """Whether the request is about this attempt's operator leg (adopting the SID if not known yet).

    Twilio may call the answer URL before the console has stored the SID the Calls API returned.
    """
    sid = form.get(field, "")
    if not params.CALL_SID.match(sid):
        raise params.BadRequest(f"{field} missing or malformed")
    if attempt.operator_call_sid is None:
        attempt.operator_call_sid = sid
        return True
    return attempt.operator_call_sid == sid


def _reporter_leg(attempt: CallbackAttempt, sid: str | None) -> bool:
    """Whether `sid` is this attempt's reporter leg (adopting it when it is the first we hear of)."""
    if not sid or not params.CALL_SID.match(sid):
        return False
    if attempt.reporter_call_sid is None:
        attempt.reporter_call_sid = sid
        return True
    return attempt.reporter_call_sid == sid


def _seconds(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() and len(raw) < 7 else None


def _conclude(
    session: Session,
    bridge: Bridge,
    attempt: CallbackAttempt,
    outcome: AttemptOutcome,
    source: str,
    duration_s: int | None = None,
) -> None:
    """Record a final outcome; the attempt's first one stands (record_outcome ignores any later one)."""
    if attempt.ended_at is not None:
        if attempt.outcome != outcome:
            was = attempt.outcome
            log.info("call-back attempt %d ended %s; %s from %s ignored", attempt.id, was, outcome, source)
        return
    now = bridge.clock()
    callbacks.record_outcome(session, attempt, outcome, bridge.settings, now, duration_s=duration_s)
    log.info("call-back attempt %d: %s (from %s)", attempt.id, outcome, source)


def _reporter_outcome(status: str, answered_by: str) -> AttemptOutcome | None:
    outcome = REPORTER_END.get(status)
    if outcome == AttemptOutcome.REACHED:
        if answered_by in MACHINE:
            return AttemptOutcome.VOICEMAIL
        if answered_by == "fax":
            return AttemptOutcome.FAILED
    return outcome


# ---- the webhooks' service functions ------------------------------------------------------------------


def operator_answered(session: Session, bridge: Bridge, attempt_id: int, form: Mapping[str, str]) -> str:
    """The operator picked up: name the case, then dial the reporter (or say why not, and hang up)."""
    attempt = _attempt(session, attempt_id)
    if attempt is None:
        log.warning("bridge answer for unknown call-back attempt %d", attempt_id)
        return render_words(bridge, "unknown")
    if not _operator_leg(attempt, form):
        log.warning("bridge answer for attempt %d from another call; refused", attempt.id)
        return render_words(bridge, "unknown")
    case = session.get(Case, attempt.case_id)
    callback = session.get(Callback, attempt.callback_id)
    assert case is not None and callback is not None
    reference = spoken_reference(case)
    if callback.state not in OPEN_CALLBACK_STATES:
        # Reached or closed by someone else meanwhile: there is nobody to call.
        if attempt.ended_at is None:
            attempt.note = "the call-back was closed before the bridge"
            _conclude(session, bridge, attempt, AttemptOutcome.OPERATOR_UNREACHABLE, "answer")
        log.info("call-back attempt %d answered, but its callback is %s", attempt.id, callback.state)
        return render_words(bridge, "closed", reference=reference)
    if attempt.ended_at is not None:
        # Given up on our side (Twilio's answer to the Calls request timed out, yet the call came).
        log.info("call-back attempt %d answered after it ended (%s)", attempt.id, attempt.outcome)
        return render_words(bridge, "ended", reference=reference)
    if not case.callback_number_enc:
        attempt.note = "the case has no number to call"
        _conclude(session, bridge, attempt, AttemptOutcome.FAILED, "answer")
        return render_words(bridge, AttemptOutcome.FAILED)
    number = bridge.cipher.decrypt(case.callback_number_enc)
    if attempt.outcome != AttemptOutcome.BRIDGING:
        callbacks.record_outcome(session, attempt, AttemptOutcome.BRIDGING, bridge.settings, bridge.clock())
    log.info("call-back attempt %d: operator answered, dialling the reporter", attempt.id)
    return render_bridge(bridge, attempt, case, number)


def dial_ended(session: Session, bridge: Bridge, attempt_id: int, form: Mapping[str, str]) -> str:
    """<Dial action>: the reporter's leg ended; record what happened and tell the operator."""
    attempt = _attempt(session, attempt_id)
    if attempt is None or not _operator_leg(attempt, form):
        log.warning("dial action for unknown call-back attempt %d or another call; ignored", attempt_id)
        return render_words(bridge, "unknown")
    _reporter_leg(attempt, form.get("DialCallSid"))
    status = form.get("DialCallStatus", "")
    outcome = _reporter_outcome(status, form.get("AnsweredBy", ""))
    if outcome is None:
        log.warning("dial action of attempt %d with DialCallStatus %r", attempt.id, status[:20])
        outcome = AttemptOutcome.FAILED
    duration = _seconds(form.get("DialCallDuration")) if outcome == AttemptOutcome.REACHED else None
    _conclude(session, bridge, attempt, outcome, f"dial {status}", duration)
    return render_words(bridge, attempt.outcome if attempt.outcome in SAY else outcome)


def reporter_status(session: Session, bridge: Bridge, attempt_id: int, form: Mapping[str, str]) -> None:
    """The reporter leg's status callback (<Number statusCallback>): its end is an outcome too."""
    attempt = _attempt(session, attempt_id)
    if attempt is None:
        return
    parent = form.get("ParentCallSid")
    if parent and attempt.operator_call_sid and parent != attempt.operator_call_sid:
        log.warning("reporter status for attempt %d from another call; ignored", attempt.id)
        return
    if not _reporter_leg(attempt, form.get("CallSid")):
        log.warning("reporter status for attempt %d from another leg; ignored", attempt.id)
        return
    status = form.get("CallStatus", "")
    if status == "in-progress" and form.get("AnsweredBy", "") in MACHINE:
        _conclude(session, bridge, attempt, AttemptOutcome.VOICEMAIL, "reporter answered by a machine")
        return
    if status not in REPORTER_END or status == "answered":
        session.flush()  # progress (initiated, ringing, in-progress): only the leg's SID is kept
        return
    outcome = _reporter_outcome(status, form.get("AnsweredBy", ""))
    assert outcome is not None
    duration = _seconds(form.get("CallDuration")) if outcome == AttemptOutcome.REACHED else None
    _conclude(session, bridge, attempt, outcome, f"reporter {status}", duration)


def amd_result(session: Session, bridge: Bridge, attempt_id: int, form: Mapping[str, str]) -> None:
    """Answering machine detection on the reporter's leg: a machine is VOICEMAIL, a fax FAILED."""
    attempt = _attempt(session, attempt_id)
    sid = form.get("CallSid")
    # The detection runs on the reporter's leg; should Twilio name the parent call instead, accept it too.
    if attempt is None or not ((sid and sid == attempt.operator_call_sid) or _reporter_leg(attempt, sid)):
        log.warning("AMD result for attempt %d from another leg; ignored", attempt_id)
        return
    answered_by = form.get("AnsweredBy", "")
    if answered_by in MACHINE:
        _conclude(session, bridge, attempt, AttemptOutcome.VOICEMAIL, f"amd {answered_by}")
    elif answered_by == "fax":
        _conclude(session, bridge, attempt, AttemptOutcome.FAILED, "amd fax")
    else:
        session.flush()  # human or unknown: the Dial action will say how it ended


def operator_status(session: Session, bridge: Bridge, attempt_id: int, form: Mapping[str, str]) -> None:
    """The operator leg's status callback: ringing is progress; an end before the bridge is UNREACHABLE."""
    attempt = _attempt(session, attempt_id)
    if attempt is None or not _operator_leg(attempt, form):
        log.warning("operator status for unknown call-back attempt %d or another call; ignored", attempt_id)
        return
    status = form.get("CallStatus", "")
    if status == "ringing" and attempt.outcome == AttemptOutcome.REQUESTED:
        ringing = AttemptOutcome.OPERATOR_RINGING
        callbacks.record_outcome(session, attempt, ringing, bridge.settings, bridge.clock())
        return
    if status not in OPERATOR_END or attempt.ended_at is not None:
        session.flush()
        return
    if attempt.outcome == AttemptOutcome.BRIDGING and attempt.reporter_call_sid is not None:
        return  # the reporter's leg was placed: its own callbacks carry the outcome
    attempt.note = f"operator leg {status}"[:500]
    _conclude(session, bridge, attempt, AttemptOutcome.OPERATOR_UNREACHABLE, f"operator {status}")
