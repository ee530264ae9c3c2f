"""What each Twilio webhook does: load the call, ask the engine, open the case, keep the path."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cases import follow_up
from cases.callback_settings import CallbackSettings
from cases.models import Call, CallbackChoice, CallEvent, Case, HazardGroup
from cases.service import DraftReport, open_draft_case
from infra.clock import Clock, utcnow
from infra.crypto import FieldCipher, mask_phone
from infra.files import make_private_dirs
from telephony import engine, params, twiml
from telephony.flow import FOLLOWUP_VAR, Flow
from transcription import ingest
from transcription.models import Recording

log = logging.getLogger(__name__)
ENCRYPTED = "enc:"
CALL_ENDED = ("completed", "busy", "no-answer", "failed", "canceled")
# Effects one caller step may chain (a lookup whose branch reaches a submit, …); the flow check's
# pass-through cycle rule keeps real chains short.
MAX_EFFECTS = 8
# The caller-action fast path reads and writes with Core statements built once: building a statement
# and its cache key each time, and the ORM's unit of work, were most of a key press's CPU time.
CALLS = cast(Table, Call.__table__)
CALL_EVENTS = cast(Table, CallEvent.__table__)
_READ_CALL = select(
    CALLS.c.id,
    CALLS.c.seq,
    CALLS.c.language,
    CALLS.c.ivr_state,
    CALLS.c.last_response,
    CALLS.c.caller_number_enc.is_not(None),
    CALLS.c.updated_at,
).where(CALLS.c.call_sid == bindparam("call_sid"))
_STEP_VALUES = {
    "seq": bindparam("new_seq", type_=CALLS.c.seq.type),
    "ivr_state": bindparam("new_state", type_=CALLS.c.ivr_state.type),
    "language": bindparam("new_language", type_=CALLS.c.language.type),
    "last_response": bindparam("new_response", type_=CALLS.c.last_response.type),
}
# Guarded by the row as read: it matches nothing once a twin of the request has moved the call on (seq),
# or anything else wrote to the call meanwhile (updated_at; a rescue message changes the state, not seq).
_SAVE_STEP = (
    update(CALLS)
    .where(
        CALLS.c.id == bindparam("call_id"),
        CALLS.c.seq == bindparam("read_seq"),
        CALLS.c.updated_at == bindparam("read_updated_at", type_=CALLS.c.updated_at.type),
    )
    .values(_STEP_VALUES)
)
_SAVE_ANONYMOUS_STEP = _SAVE_STEP.values(caller_number_enc=None, caller_number_masked=None)
_ADD_EVENTS = insert(CALL_EVENTS)
_ADD_CALL = insert(CALLS)
CASES = cast(Table, Case.__table__)
_CASE_OF_CALL = select(CASES.c.id).where(CASES.c.call_id == bindparam("call_id"))


@dataclass(frozen=True)
class Telephony:
    """The dependencies of the webhook service, built once by the app."""

    flow: Flow
    voices: twiml.Voices
    cipher: FieldCipher
    transfer_number: str | None
    spool_dir: Path
    clock: Clock = utcnow
    # The callback rules: a case that asks to be called back gets its due time and reminders.
    callbacks: CallbackSettings | None = None


@dataclass(frozen=True)
class Step:
    """A caller's step worked out from a read of the call, saved by save_step if the call is still there."""

    call_id: int
    call_sid: str
    seq: int  # the step the state was read at: the write applies only while the call is still at it
    updated_at: datetime  # and only if nothing else wrote to the call since it was read
    language: str  # the call's language before the step (a recording is noted in it)
    state: dict[str, Any]  # the new ivr_state, sensitive values encrypted
    new_language: str
    anonymous: bool  # the caller chose not to be called back: their number goes now
    events: tuple[engine.FlowEvent, ...]
    recording: engine.Recording | None
    body: str
    stored_body: str  # the body, encrypted: a read-back of a number being keyed is in it


@dataclass(frozen=True)
class NewCall:
    """A new call worked out outside the write lock, inserted by save_prepared unless a twin was first."""

    row: Mapping[str, Any]  # the calls row, personal values encrypted
    events: tuple[engine.FlowEvent, ...]
    body: str


Prepared = Step | NewCall


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


def prepare_incoming_call(conn: Connection, tel: Telephony, form: Mapping[str, str]) -> str | NewCall | None:
    """POST /twilio/voice, first half: work out a new call's first step outside the write lock.

    Returns the stored answer for a call we already have, a NewCall for save_prepared, or None when
    incoming_call must answer under the write lock (a known call with no stored answer, an effect).
    """
    p = params.call_params(form)
    row = _read_call(conn, p.call_sid)
    if row is not None:
        return _decrypt_response(tel, row.last_response)
    ctx = engine.Context(
        now=tel.clock(), caller_id_present=p.caller is not None, transfer_number=tel.transfer_number
    )
    outcome = engine.start(tel.flow, ctx)
    if outcome.effect is not None:
        return None
    body = twiml.render(outcome.instructions, 1, tel.voices)
    keep_number = p.caller is not None and outcome.state.vars.get("callback") != CallbackChoice.NONE
    return NewCall(
        row={
            "call_sid": p.call_sid,
            "status": p.status or "in-progress",
            "language": outcome.state.language,
            "caller_number_enc": tel.cipher.encrypt(p.caller) if keep_number and p.caller else None,
            "caller_number_masked": mask_phone(p.caller) if keep_number else None,
            "ivr_state": _stored_state(tel, outcome.state),
            "seq": 1,
            "last_response": ENCRYPTED + tel.cipher.encrypt(body),
        },
        events=outcome.events,
        body=body,
    )


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
        _note_recording(session, call.call_sid, call.language, inp.recording)
    state = _load_state(tel, call)
    outcome = engine.advance(tel.flow, state, inp, _context(tel, call))
    return _commit_outcome(session, tel, call, outcome)


def prepare_caller_action(
    conn: Connection, tel: Telephony, form: Mapping[str, str], seq: str, kind: str
) -> str | Step | None:
    """POST /twilio/ivr, first half: work out the step from a read-only connection, outside the write lock.

    Returns the answer itself for a repeated request, a Step for save_step, or None when the request
    needs caller_action under the write lock: an unknown call, a step with an effect (opening a case
    and the like belong in the step's transaction), a repeated request with no stored answer.
    """
    call_sid = params.call_sid(form)
    row = _read_call(conn, call_sid)
    if row is None:
        return None
    call_id, current, language, stored_state, stored_response, caller_id_present, updated_at = row
    if params.step_number(seq) != current:
        answer = _decrypt_response(tel, stored_response)
        if answer is not None:
            log.info("repeated ivr request for call %s (seq %r, current %d)", call_sid, seq[:8], current)
        return answer
    inp = params.caller_input(kind, form)
    state = _state_from(tel, stored_state, language, call_sid)
    ctx = engine.Context(
        now=tel.clock(), caller_id_present=bool(caller_id_present), transfer_number=tel.transfer_number
    )
    outcome = engine.advance(tel.flow, state, inp, ctx)
    if outcome.effect is not None:
        return None
    body = twiml.render(outcome.instructions, current + 1, tel.voices)
    return Step(
        call_id=call_id,
        call_sid=call_sid,
        seq=current,
        updated_at=updated_at,
        language=language,
        state=_stored_state(tel, outcome.state),
        new_language=outcome.state.language,
        anonymous=outcome.state.vars.get("callback") == CallbackChoice.NONE,
        events=outcome.events,
        recording=inp.recording,
        body=body,
        stored_body=ENCRYPTED + tel.cipher.encrypt(body),
    )


def save_prepared(session: Session, prepared: Prepared) -> bool:
    """Second half of a prepared webhook, under the write lock; False if a twin of the request was first."""
    if isinstance(prepared, NewCall):
        return save_new_call(session, prepared)
    return save_step(session, prepared)


def save_new_call(session: Session, new: NewCall) -> bool:
    """POST /twilio/voice, second half: insert the call and its first events; False if it exists already."""
    try:
        with session.begin_nested():
            key = session.connection().execute(_ADD_CALL, new.row).inserted_primary_key
    except IntegrityError:
        return False  # the same webhook, concurrently, created the call first
    assert key is not None
    _insert_events(session, key[0], new.events)
    return True


def save_step(session: Session, step: Step) -> bool:
    """POST /twilio/ivr, second half: store a prepared step; False if the call moved on since it was read.

    One UPDATE guarded by the seq that was read, then the events (and the recording) only if it matched:
    the same webhook delivered five times at once is applied once, whichever copy wins.
    """
    conn = session.connection()
    moved = conn.execute(
        _SAVE_ANONYMOUS_STEP if step.anonymous else _SAVE_STEP,
        {
            "call_id": step.call_id,
            "read_seq": step.seq,
            "read_updated_at": step.updated_at,
            "new_seq": step.seq + 1,
            "new_state": step.state,
            "new_language": step.new_language,
            "new_response": step.stored_body,
        },
    )
    if moved.rowcount != 1:
        return False
    if step.recording is not None:
        _note_recording(session, step.call_sid, step.language, step.recording)
    _insert_events(session, step.call_id, step.events)
    return True


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
    if _case_id(session, call.id) is None:
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
    if row.case_id is None and call is not None:
        case_id = _case_id(session, call.id)
        if case_id is not None and _load_state(tel, call).vars.get("recording_sid") == rec.sid:
            row.case_id = case_id


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
        _note_recording(session, call.call_sid, call.language, rec)
        state = _load_state(tel, call)
        # A message the caller recorded before the fault (say, one that failed at "send") is theirs too.
        earlier = state.vars.get("recording_sid")
        state = replace(state, vars={**state.vars, "recording_sid": rec.sid, "recording_url": rec.url})
        _save_state(tel, call, state)
        _add_events(session, call, [engine.FlowEvent("rescue", "recorded", {"sid": rec.sid})])
        if call.case is None and state.vars.get(FOLLOWUP_VAR):
            # A fault during a follow-up: the messages belong to the case looked up, not to a new one.
            for sid in dict.fromkeys(s for s in (earlier, rec.sid) if s):
                followed = replace(state, vars={**state.vars, "recording_sid": sid})
                _add_events(session, call, _attach_follow_up(session, tel, call, followed, via="rescue"))
        elif call.case is None:
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


def _read_call(conn: Connection, call_sid: str) -> Row[int, int, str, Any, str | None, bool, datetime] | None:
    """What prepare_caller_action needs of a call, as plain values: no ORM object to load or track."""
    return conn.execute(_READ_CALL, {"call_sid": call_sid}).one_or_none()


def _case_id(session: Session, call_id: int) -> int | None:
    """The id of the call's case (flushed ones only), without loading the case (call.case would)."""
    found: int | None = session.connection().execute(_CASE_OF_CALL, {"call_id": call_id}).scalar()
    return found


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
    for _ in range(MAX_EFFECTS):
        if outcome.effect is None:
            break
        resumed, done = _carry_out(session, tel, call, outcome)
        events += [*done, *resumed.events]
        outcome = engine.Outcome(
            resumed.state, outcome.instructions + resumed.instructions, (), resumed.effect, resumed.ended
        )
    else:
        raise engine.EngineError(f"more than {MAX_EFFECTS} effects in one step of flow {tel.flow.name!r}")
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


def _carry_out(
    session: Session, tel: Telephony, call: Call, outcome: engine.Outcome
) -> tuple[engine.Outcome, list[engine.FlowEvent]]:
    """Do what the engine asked for (under the call's lock), then let it go on; returns the events too."""
    state, ctx = outcome.state, _context(tel, call)
    if outcome.effect == "open_case":
        case = call.case or _open_case(session, tel, call, state, opened_by="caller")
        state = replace(state, vars={**state.vars, "reference": case.reference})
        opened = engine.FlowEvent(state.node, "case_opened", {"reference": case.reference})
        return engine.resume(tel.flow, state, ctx), [opened]
    if outcome.effect == "lookup_case":
        # Only the standing goes back to the engine: the caller hears nothing else about the case.
        found = follow_up.find_case(session, state.pending.get("value", ""))
        standing = follow_up.standing_of(found) if found is not None else None
        return engine.resume(tel.flow, state, ctx, standing=standing), []
    if outcome.effect == "attach_message":
        return engine.resume(tel.flow, state, ctx), _attach_follow_up(session, tel, call, state, via="caller")
    raise engine.EngineError(f"unknown effect {outcome.effect!r}")


def _attach_follow_up(
    session: Session, tel: Telephony, call: Call, state: engine.State, *, via: str
) -> list[engine.FlowEvent]:
    """Add a follow-up caller's recorded message to the case they looked up; the call opens no case."""
    sid = state.vars.get("recording_sid")
    if not sid:
        return []  # nothing recorded, nothing to add
    case = follow_up.find_case(session, state.vars.get(FOLLOWUP_VAR, ""))
    if case is None:
        # The case was found earlier in this call; should it be gone, the message still must not be lost.
        log.error("call %s: followed-up case is gone; the message opens a case of its own", call.call_sid)
        _open_case(session, tel, call, state, opened_by=via)
        return [engine.FlowEvent(state.node, "follow_up_case_missing")]
    if not follow_up.attach_follow_up_message(session, case, sid, via=via, now=tel.clock()):
        return []  # already with the case (the caller pressed send, then the call ended)
    return [engine.FlowEvent(state.node, "message_attached", {"reference": case.reference, "via": via})]


def _last_response(tel: Telephony, call: Call) -> str | None:
    return _decrypt_response(tel, call.last_response)


def _decrypt_response(tel: Telephony, stored: str | None) -> str | None:
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
    case = open_draft_case(session, report, cipher=tel.cipher, clock=tel.clock, callbacks=tel.callbacks)
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
    if state.vars.get(FOLLOWUP_VAR):
        # A follow-up call opens no case of its own: what it recorded goes to the case looked up.
        sid = state.vars.get("recording_sid")
        if sid and session.scalar(select(Recording.status).where(Recording.recording_sid == sid)) != "absent":
            _add_events(session, call, _attach_follow_up(session, tel, call, state, via="hangup"))
        return
    has_message = session.scalar(
        select(Recording.id).where(Recording.call_sid == call.call_sid, Recording.status != "absent").limit(1)
    )
    if state.vars.get("recording_sid") and has_message:
        _open_case(session, tel, call, state, opened_by="hangup")
    elif state.vars.get("callback") in (CallbackChoice.CALLER, CallbackChoice.OTHER) and (
        state.vars.get("callback") == CallbackChoice.CALLER or state.vars.get("callback_number")
    ):
        _open_case(session, tel, call, state, opened_by="callback_only")


def _note_recording(session: Session, call_sid: str, language: str, rec: engine.Recording) -> Recording:
    return ingest.note_recording(
        session,
        recording_sid=rec.sid,
        call_sid=call_sid,
        media_url=rec.url,
        duration_s=rec.duration_s if rec.duration_s >= 0 else None,
        language=language,
    )


def _add_events(session: Session, call: Call, events: list[engine.FlowEvent]) -> None:
    # Inserted at once with Core, in the order they come: as ORM objects they cost more than the step.
    _insert_events(session, call.id, events)


def _insert_events(session: Session, call_id: int, events: Sequence[engine.FlowEvent]) -> None:
    if events:
        now = utcnow()
        session.connection().execute(
            _ADD_EVENTS,
            [
                {"call_id": call_id, "at": now, "node": e.node, "kind": e.kind, "detail": dict(e.detail)}
                for e in events
            ],
        )


def _state_node(call: Call) -> str:
    return str(call.ivr_state.get("node", "")) if call.ivr_state else ""


def _load_state(tel: Telephony, call: Call) -> engine.State:
    # A deep copy: the ORM must not see the stored state change under it.
    return _state_from(tel, json.loads(json.dumps(call.ivr_state or {})), call.language, call.call_sid)


def _state_from(tel: Telephony, data: dict[str, Any] | None, language: str, call_sid: str) -> engine.State:
    """The engine's state from a stored ivr_state (decrypted in place: pass a copy nobody else holds)."""
    if not data:
        return engine.State(node=tel.flow.start, language=language)
    for bucket in ("vars", "pending"):
        values = data.get(bucket, {})
        for key, value in list(values.items()):
            if isinstance(value, str) and value.startswith(ENCRYPTED):
                values[key] = tel.cipher.decrypt(value[len(ENCRYPTED) :])
    state = engine.State.from_json(data)
    if state.node not in tel.flow.nodes:
        # The flow changed under a live call: carry on from the message, not from nowhere.
        log.warning("call %s was at node %r, which the flow no longer has", call_sid, state.node)
        return engine.State(node=tel.flow.start, language=state.language, vars=state.vars)
    return state


def _save_state(tel: Telephony, call: Call, state: engine.State) -> None:
    call.ivr_state = _stored_state(tel, state)


def _stored_state(tel: Telephony, state: engine.State) -> dict[str, Any]:
    """The state as stored; sensitive values (phone numbers being keyed) are encrypted at rest."""
    data = state.to_json()
    for key in tel.flow.sensitive_vars & set(data["vars"]):
        data["vars"][key] = ENCRYPTED + tel.cipher.encrypt(data["vars"][key])
    data["pending"] = {k: ENCRYPTED + tel.cipher.encrypt(v) for k, v in data["pending"].items()}
    return data
