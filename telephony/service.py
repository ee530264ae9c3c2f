"""What each Twilio webhook does: load the call, ask the engine, open the case, keep the path."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cases.models import Call, CallbackChoice, CallEvent, Case, HazardGroup
from cases.service import DraftReport, open_draft_case
from infra.clock import Clock, utcnow
from infra.crypto import FieldCipher, mask_phone
from infra.files import make_private_dirs
from telephony import engine, params, twiml
from telephony.flow import Flow
from transcription import ingest
from transcription.models import Recording

log = logging.getLogger(__name__)
ENCRYPTED = "enc:"
CALL_ENDED = ("completed", "busy", "no-answer", "failed", "canceled")


@dataclass(frozen=True)
class Telephony:
    """The dependencies of the webhook service, built once by the app."""

    flow: Flow
    voices: twiml.Voices
    cipher: FieldCipher
    transfer_number: str | None
    spool_dir: Path
    clock: Clock = utcnow


# ---- webhooks -------------------------------------------------------------------------------------


def incoming_call(session: Session, tel: Telephony, form: Mapping[str, str]) -> str:
    """POST /twilio/voice: a new call (or Twilio asking again about one we already have)."""
    p = params.call_params(form)
    call = _find_call(session, p.call_sid)
    if call is not None:
        return _last_response(tel, call) or _replay(session, tel, call)
    call = Call(call_sid=p.call_sid, status=p.status or "in-progress", language=tel.flow.default_language)
    if p.caller:
        call.caller_number_enc = tel.cipher.encrypt(p.caller)
        call.caller_number_masked = mask_phone(p.caller)
    try:
        with session.begin_nested():
            session.add(call)
            session.flush()
    except IntegrityError:
        # The same webhook, concurrently, created the call first: answer what it answered.
        existing = _find_call(session, p.call_sid)
        assert existing is not None
        return _last_response(tel, existing) or _replay(session, tel, existing)
    outcome = engine.start(tel.flow, _context(tel, call))
    return _commit_outcome(session, tel, call, outcome)


def caller_action(session: Session, tel: Telephony, form: Mapping[str, str], seq: str, kind: str) -> str:
    """POST /twilio/ivr?seq=N&ev=KIND: what the caller did at the step we sent as N."""
    p = params.call_params(form)
    call = _find_call(session, p.call_sid)
    if call is None:
        log.warning("ivr action for unknown call %s: taking a message instead", p.call_sid)
        return twiml.render_rescue(tel.flow.rescue, tel.flow.default_language, tel.voices)
    if params.step_number(seq) != call.seq:
        # A retried or stale request: it was applied already, so answer the same again.
        log.info("repeated ivr request for call %s (seq %r, current %d)", call.call_sid, seq[:8], call.seq)
        return _last_response(tel, call) or _replay(session, tel, call)
    inp = params.caller_input(kind, form)
    if inp.recording is not None:
        _note_recording(session, call, inp.recording)
    state = _load_state(tel, call)
    outcome = engine.advance(tel.flow, state, inp, _context(tel, call))
    return _commit_outcome(session, tel, call, outcome)


def call_status(session: Session, tel: Telephony, form: Mapping[str, str]) -> None:
    """POST /twilio/status: the call ended. A recorded message the caller did not send is kept."""
    p = params.call_params(form)
    call = _find_call(session, p.call_sid)
    if call is None:
        log.info("status for unknown call %s ignored", p.call_sid)
        return
    if p.status:
        call.status = p.status
    raw_duration = form.get("CallDuration", "")
    if raw_duration.isdigit() and len(raw_duration) < 7:
        call.duration_s = int(raw_duration)
    if p.status not in CALL_ENDED:
        return  # the caller may still be on the line: what they left is kept when the call ends
    if call.ended_at is None:
        call.ended_at = tel.clock()
        _add_events(session, call, [engine.FlowEvent(_state_node(call), "call_ended", {"status": p.status})])
    if call.case is None:
        _open_case_for_unfinished_call(session, tel, call)


def close_unfinished_call(session: Session, tel: Telephony, call: Call) -> None:
    """A call that never got its status callback: mark it ended and keep whatever report it left."""
    call.ended_at = tel.clock()
    if call.status in ("ringing", "in-progress"):
        call.status = "ended-unreported"
    _add_events(
        session, call, [engine.FlowEvent(_state_node(call), "call_ended", {"status": "no status callback"})]
    )
    if call.case is None:
        _open_case_for_unfinished_call(session, tel, call)


def recording_status(session: Session, tel: Telephony, form: Mapping[str, str]) -> None:
    """POST /twilio/recording-status: a recording is completed, absent or failed (any order, repeated)."""
    p = params.call_params(form)
    rec = params.recording(form)
    status = form.get("RecordingStatus", "")
    if rec is None or status not in params.RECORDING_STATUSES:
        log.warning("recording status for call %s without a valid RecordingSid/Url/Status", p.call_sid)
        return
    call = _find_call(session, p.call_sid)
    row = ingest.apply_status_callback(
        session,
        recording_sid=rec.sid,
        call_sid=p.call_sid,
        status=status,
        media_url=rec.url,
        duration_s=rec.duration_s if rec.duration_s >= 0 else None,
        language=call.language if call else None,
        now=tel.clock(),
    )
    if row is None:
        return  # this (RecordingSid, status) was applied before: a retried callback changes nothing
    if (
        row.case_id is None
        and call is not None
        and call.case is not None
        and _load_state(tel, call).vars.get("recording_sid") == rec.sid
    ):
        row.case_id = call.case.id


def rescue_recording(session: Session, tel: Telephony, form: Mapping[str, str]) -> str:
    """POST /twilio/rescue-recording: the message taken after a fault, kept with a case.

    If this raises, the view spools the request to disk (spool_rescue) and still thanks the caller.
    """
    p = params.call_params(form)
    rec = params.recording(form)
    call = _find_call(session, p.call_sid)
    if call is None:
        call = Call(call_sid=p.call_sid, status="in-progress", language=tel.flow.default_language)
        if p.caller:
            call.caller_number_enc = tel.cipher.encrypt(p.caller)
            call.caller_number_masked = mask_phone(p.caller)
        session.add(call)
        session.flush()
    if rec is not None and rec.duration_s != 0:
        _note_recording(session, call, rec)
        state = _load_state(tel, call)
        # A message the caller recorded before the fault (say, one that failed at "send") is theirs too.
        earlier = state.vars.get("recording_sid")
        state = replace(state, vars={**state.vars, "recording_sid": rec.sid, "recording_url": rec.url})
        _save_state(tel, call, state)
        _add_events(session, call, [engine.FlowEvent("rescue", "recorded", {"sid": rec.sid})])
        if call.case is None:
            case = _open_case(session, tel, call, state, opened_by="rescue")
            if earlier and earlier != rec.sid:
                session.execute(
                    update(Recording)
                    .where(Recording.recording_sid == earlier, Recording.case_id.is_(None))
                    .values(case_id=case.id)
                )
    session.flush()
    return twiml.render_thanks(tel.flow.rescue, call.language, tel.voices)


def spool_rescue(spool_dir: Path, form: Mapping[str, str]) -> Path | None:
    """Keep what Twilio told us about a message on disk when the database cannot take it."""
    keep = {
        k: form.get(k, "")[:500] for k in ("CallSid", "RecordingSid", "RecordingUrl", "RecordingDuration")
    }
    if not keep["RecordingSid"]:
        return None
    try:
        make_private_dirs(spool_dir)
        sid = "".join(c for c in keep["RecordingSid"] if c.isalnum())
        name = f"{utcnow().strftime('%Y%m%dT%H%M%S')}-{sid}.json"
        path = spool_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({**keep, "received_at": utcnow().isoformat()}, fh)
        return path
    except OSError:
        log.exception("spool directory %s not writable: a recording reference is only in Twilio", spool_dir)
        return None


# ---- internals ----------------------------------------------------------------------------------


def _find_call(session: Session, call_sid: str) -> Call | None:
    return session.scalar(select(Call).where(Call.call_sid == call_sid).with_for_update())


def _context(tel: Telephony, call: Call) -> engine.Context:
    return engine.Context(
        now=tel.clock(),
        caller_id_present=call.caller_number_enc is not None,
        transfer_number=tel.transfer_number,
    )


def _replay(session: Session, tel: Telephony, call: Call) -> str:
    outcome = engine.render_current(tel.flow, _load_state(tel, call), _context(tel, call))
    return _commit_outcome(session, tel, call, outcome)


def _commit_outcome(session: Session, tel: Telephony, call: Call, outcome: engine.Outcome) -> str:
    """Carry out the outcome's effect, store state and events, render TwiML with the next seq."""
    events = list(outcome.events)
    if outcome.effect == "open_case":
        case = call.case or _open_case(session, tel, call, outcome.state, opened_by="caller")
        state = replace(outcome.state, vars={**outcome.state.vars, "reference": case.reference})
        resumed = engine.resume(tel.flow, state, _context(tel, call))
        events.append(engine.FlowEvent(outcome.state.node, "case_opened", {"reference": case.reference}))
        outcome = engine.Outcome(
            resumed.state, outcome.instructions + resumed.instructions, (), resumed.effect, resumed.ended
        )
        events.extend(resumed.events)
    _add_events(session, call, events)
    _save_state(tel, call, outcome.state)
    if outcome.state.vars.get("callback") == CallbackChoice.NONE:
        # Anonymous from the moment it is chosen, not only once a case is opened: a caller who then
        # hangs up leaves no number behind either.
        call.caller_number_enc = None
        call.caller_number_masked = None
    call.language = outcome.state.language
    call.seq += 1
    body = twiml.render(outcome.instructions, call.seq, tel.voices)
    # Encrypted at rest: a read-back of a number being keyed is in it.
    call.last_response = ENCRYPTED + tel.cipher.encrypt(body)
    session.flush()
    return body


def _last_response(tel: Telephony, call: Call) -> str | None:
    stored = call.last_response
    if stored and stored.startswith(ENCRYPTED):
        return tel.cipher.decrypt(stored[len(ENCRYPTED) :])
    return stored


def _open_case(session: Session, tel: Telephony, call: Call, state: engine.State, *, opened_by: str) -> Case:
    v = state.vars
    try:
        category = HazardGroup(v.get("category", HazardGroup.UNSPECIFIED))
    except ValueError:
        category = HazardGroup.UNSPECIFIED
    try:
        callback = CallbackChoice(v.get("callback", CallbackChoice.NONE))
    except ValueError:
        callback = CallbackChoice.NONE
    report = DraftReport(
        call=call,
        category=category,
        language=state.language,
        province_code=v.get("province_code"),
        callback=callback,
        callback_number=v.get("callback_number"),
        recording_sid=v.get("recording_sid"),
        opened_by=opened_by,
        anonymous=v.get("callback") == CallbackChoice.NONE,
    )
    case = open_draft_case(session, report, cipher=tel.cipher, clock=tel.clock)
    if opened_by != "caller":
        _add_events(
            session,
            call,
            [
                engine.FlowEvent(
                    state.node, "case_opened", {"reference": case.reference, "opened_by": opened_by}
                )
            ],
        )
    return case


def _open_case_for_unfinished_call(session: Session, tel: Telephony, call: Call) -> None:
    """The caller hung up before sending: keep a recorded message, or a request to be called back."""
    state = _load_state(tel, call)
    has_message = session.scalar(
        select(Recording.id).where(Recording.call_sid == call.call_sid, Recording.status != "absent").limit(1)
    )
    if state.vars.get("recording_sid") and has_message:
        _open_case(session, tel, call, state, opened_by="hangup")
    elif state.vars.get("callback") in (CallbackChoice.CALLER, CallbackChoice.OTHER) and (
        state.vars.get("callback") == CallbackChoice.CALLER or state.vars.get("callback_number")
    ):
        _open_case(session, tel, call, state, opened_by="callback_only")


def _note_recording(session: Session, call: Call, rec: engine.Recording) -> Recording:
    return ingest.note_recording(
        session,
        recording_sid=rec.sid,
        call_sid=call.call_sid,
        media_url=rec.url,
        duration_s=rec.duration_s if rec.duration_s >= 0 else None,
        language=call.language,
    )


def _add_events(session: Session, call: Call, events: list[engine.FlowEvent]) -> None:
    now = utcnow()
    for e in events:
        session.add(CallEvent(call_id=call.id, at=now, node=e.node, kind=e.kind, detail=dict(e.detail)))


def _state_node(call: Call) -> str:
    return str(call.ivr_state.get("node", "")) if call.ivr_state else ""


def _load_state(tel: Telephony, call: Call) -> engine.State:
    if not call.ivr_state:
        return engine.State(node=tel.flow.start, language=call.language)
    data: dict[str, Any] = json.loads(json.dumps(call.ivr_state))
    for bucket in ("vars", "pending"):
        values = data.get(bucket, {})
        for key, value in list(values.items()):
            if isinstance(value, str) and value.startswith(ENCRYPTED):
                values[key] = tel.cipher.decrypt(value[len(ENCRYPTED) :])
    state = engine.State.from_json(data)
    if state.node not in tel.flow.nodes:
        # The flow changed under a live call: carry on from the message, not from nowhere.
        log.warning("call %s was at node %r, which the flow no longer has", call.call_sid, state.node)
        return engine.State(node=tel.flow.start, language=state.language, vars=state.vars)
    return state


def _save_state(tel: Telephony, call: Call, state: engine.State) -> None:
    """Store the state; sensitive values (phone numbers being keyed) are encrypted at rest."""
    data = state.to_json()
    for key in tel.flow.sensitive_vars & set(data["vars"]):
        data["vars"][key] = ENCRYPTED + tel.cipher.encrypt(data["vars"][key])
    data["pending"] = {k: ENCRYPTED + tel.cipher.encrypt(v) for k, v in data["pending"].items()}
    call.ivr_state = data
