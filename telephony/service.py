"""What each Twilio webhook does: load the call, ask the engine, open the case, keep the path."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cases import follow_up
from cases.models import Call, CallbackChoice
from infra.crypto import mask_phone
from telephony import endings, engine, params, replay, twiml
from telephony.callstate import (
    CALLS,
    ENCRYPTED,
    add_events,
    context,
    decrypt_response,
    insert_events,
    load_state,
    note_recording,
    save_state,
    state_from,
    state_node,
    stored_state,
)
from telephony.callstate import (
    Telephony as Telephony,
)
from telephony.callstate import (
    find_call as _find_call,
)
from telephony.flow import LookupNode
from transcription import ingest

log = logging.getLogger(__name__)
CALL_ENDED = ("completed", "busy", "no-answer", "failed", "canceled")
# Effects one caller step may chain (a lookup whose branch reaches a submit, …); the flow check's
# pass-through cycle rule keeps real chains short.
MAX_EFFECTS = 8
# The caller-action fast path reads and writes with Core statements built once: building a statement
# and its cache key each time, and the ORM's unit of work, were most of a key press's CPU time.
_READ_CALL = select(
    CALLS.c.id,
    CALLS.c.seq,
    CALLS.c.language,
    CALLS.c.ivr_state,
    CALLS.c.last_response,
    CALLS.c.caller_number_enc.is_not(None),
    CALLS.c.updated_at,
    CALLS.c.ended_at.is_not(None),
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
_ADD_CALL = insert(CALLS)
# Old names, kept for the tests that make one of them fail on purpose.
_insert_events = insert_events


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
        return _incoming_again(session, tel, call)
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
        return _incoming_again(session, tel, existing)
    outcome = engine.start(tel.flow, context(tel, call))
    return _commit_outcome(session, tel, call, outcome)


def prepare_incoming_call(conn: Connection, tel: Telephony, form: Mapping[str, str]) -> str | NewCall | None:
    """POST /twilio/voice, first half: work out a new call's first step outside the write lock.

    Returns the stored answer for a call we already have, a NewCall for save_prepared, or None when
    incoming_call must answer under the write lock (a known call with no stored answer, an effect).
    """
    p = params.call_params(form)
    row = _read_call(conn, p.call_sid)
    if row is not None:
        _id, current, _lang, _state, stored_response, _cid, updated_at, ended = row
        if current == 0 or replay.is_live_retry(0, current, updated_at, ended, tel.retry_window_s):
            # Twilio asking again about the first step (None: the locked path starts a rescue-made call).
            return decrypt_response(tel, stored_response) if current else None
        log.info("replayed incoming call %s (now at seq %d): neutral answer", p.call_sid, current)
        return replay.neutral()
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
            "ivr_state": stored_state(tel, outcome.state),
            "seq": 1,
            "last_response": ENCRYPTED + tel.cipher.encrypt(body),
        },
        events=outcome.events,
        body=body,
    )


def caller_action(session: Session, tel: Telephony, form: Mapping[str, str], seq: str, kind: str) -> str:
    """POST /twilio/ivr?seq=N&ev=KIND: what the caller did at the step we sent as N."""
    p = params.call_params(form)
    inp = params.caller_input(kind, form)
    call = _find_call(session, p.call_sid)
    if call is None:
        if inp.recording is not None and inp.recording.duration_s != 0:
            # A message for a call we lost: keep it as a rescue message would be kept.
            log.warning("recording for unknown call %s: kept as a rescue message", p.call_sid)
            return rescue_recording(session, tel, form)
        log.warning("ivr action for unknown call %s: taking a message instead", p.call_sid)
        return twiml.render_rescue(tel.flow.rescue, tel.flow.default_language, tel.voices)
    if inp.recording is not None:
        # Whatever the step, a message Twilio holds is the caller's: noted before anything else.
        note_recording(session, call.call_sid, call.language, inp.recording)
    step, ended = params.step_number(seq), call.ended_at is not None
    if step != call.seq or (ended and replay.is_expired(call.updated_at, tel.retry_window_s)):
        # A retried, stale or replayed request: it was applied already (or its call is long over), so it
        # changes nothing; only Twilio's retry of the latest step hears that step's answer again.
        log.info("repeated ivr request for call %s (seq %r, current %d)", call.call_sid, seq[:8], call.seq)
        live = step != call.seq and replay.is_live_retry(
            step, call.seq, call.updated_at, ended, tel.retry_window_s
        )
        answer = (_last_response(tel, call) if live else None) or replay.neutral()
        if inp.recording is not None:
            endings.settle(session, tel, call, caller_gone=inp.caller_hung_up)
        return answer
    state = load_state(tel, call)
    outcome = engine.advance(tel.flow, state, inp, context(tel, call))
    # A caller who hung up while recording has sent the message, the same as one whose call ends later.
    how = "hangup" if inp.caller_hung_up else "caller"
    body = _commit_outcome(session, tel, call, outcome, how=how, caller=p.caller)
    if inp.recording is not None:
        # The end of the call may have come first (Twilio promises no order): settle what it left.
        endings.settle(session, tel, call, caller_gone=inp.caller_hung_up)
    return body


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
    call_id, current, language, stored, stored_response, caller_id_present, updated_at, ended = row
    inp = params.caller_input(kind, form)
    step = params.step_number(seq)
    if inp.recording is not None and (ended or inp.caller_hung_up or step != current):
        # The end of a call: its message is settled into a case under the call's lock (endings.settle).
        return None
    if step != current or (ended and replay.is_expired(updated_at, tel.retry_window_s)):
        log.info("repeated ivr request for call %s (seq %r, current %d)", call_sid, seq[:8], current)
        if step != current and replay.is_live_retry(step, current, updated_at, ended, tel.retry_window_s):
            # Twilio retrying the latest step: its answer again (None: the locked path answers).
            return decrypt_response(tel, stored_response)
        return replay.neutral()
    state = state_from(tel, stored, language, call_sid)
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
        state=stored_state(tel, outcome.state),
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
        note_recording(session, step.call_sid, step.language, step.recording)
    _insert_events(session, step.call_id, step.events)
    return True


def call_status(session: Session, tel: Telephony, form: Mapping[str, str]) -> None:
    """POST /twilio/status: the call ended. What the caller left is settled into a case."""
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
        add_events(session, call, [engine.FlowEvent(state_node(call), "call_ended", {"status": p.status})])
    endings.settle(session, tel, call)


def close_unfinished_call(session: Session, tel: Telephony, call: Call, status: str | None = None) -> None:
    """A call that never got its status callback: mark it ended and keep whatever report it left.

    `status` is the call's final status when Twilio's REST API told it (the reconcile sweep asked).
    """
    call.ended_at = tel.clock()
    if status:
        call.status = status
    elif call.status in ("ringing", "in-progress"):
        call.status = "ended-unreported"
    why = f"{status} (asked Twilio)" if status else "no status callback"
    add_events(session, call, [engine.FlowEvent(state_node(call), "call_ended", {"status": why})])
    endings.settle(session, tel, call)


def recording_status(session: Session, tel: Telephony, form: Mapping[str, str]) -> None:
    """POST /twilio/recording-status: a recording is completed, absent or failed (any order, repeated)."""
    p = params.call_params(form)
    rec = params.recording(form)
    status = form.get("RecordingStatus", "")
    if rec is None or status not in params.RECORDING_STATUSES:
        log.warning("recording status for call %s without a valid RecordingSid/Url/Status", p.call_sid)
        return
    # The call first, then the recording: the order every request about the call takes its locks in.
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
    if row is None or call is None:
        return  # a retried callback changes nothing; a call we do not know is left to the reconcile sweep
    endings.settle(session, tel, call)


def rescue_recording(session: Session, tel: Telephony, form: Mapping[str, str]) -> str:
    """POST /twilio/rescue-recording: the message taken after a fault, kept with a case at once.

    If this raises, the view spools the request to disk (telephony.spool) and still thanks the caller.
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
        keep_message(session, tel, call, rec)
    session.flush()
    return twiml.render_thanks(tel.flow.rescue, call.language, tel.voices)


def keep_message(session: Session, tel: Telephony, call: Call, rec: engine.Recording) -> None:
    """A message taken outside the menu (rescue, spool): noted, and settled into the call's case now."""
    note_recording(session, call.call_sid, call.language, rec)
    state = load_state(tel, call)
    if state.vars.get("recording_sid") != rec.sid:
        state = replace(state, vars={**state.vars, "recording_sid": rec.sid, "recording_url": rec.url})
        save_state(tel, call, state)
        add_events(session, call, [engine.FlowEvent("rescue", "recorded", {"sid": rec.sid})])
    endings.settle(session, tel, call, caller_gone=True, opened_by="rescue")


# ---- internals ----------------------------------------------------------------------------------


def _read_call(
    conn: Connection, call_sid: str
) -> Row[int, int, str, Any, str | None, bool, datetime, bool] | None:
    """What prepare_caller_action needs of a call, as plain values: no ORM object to load or track."""
    return conn.execute(_READ_CALL, {"call_sid": call_sid}).one_or_none()


def _incoming_again(session: Session, tel: Telephony, call: Call) -> str:
    """POST /twilio/voice for a call we have: Twilio retrying the first step, or a replay of it.

    Only the first step's own answer is repeated, and only while Twilio may still be retrying it; a call
    known only from a rescue message (no step yet) is started now.
    """
    if call.seq == 0 and call.ended_at is None:
        return _last_response(tel, call) or _replay(session, tel, call)
    if replay.is_live_retry(0, call.seq, call.updated_at, call.ended_at is not None, tel.retry_window_s):
        return _last_response(tel, call) or replay.neutral()
    log.info("replayed incoming call %s (now at seq %d): neutral answer", call.call_sid, call.seq)
    return replay.neutral()


def _replay(session: Session, tel: Telephony, call: Call) -> str:
    outcome = engine.render_current(tel.flow, load_state(tel, call), context(tel, call))
    return _commit_outcome(session, tel, call, outcome)


def _commit_outcome(
    session: Session,
    tel: Telephony,
    call: Call,
    outcome: engine.Outcome,
    *,
    how: str = "caller",
    caller: str | None = None,
) -> str:
    """Carry out the outcome's effect, store state and events, render TwiML with the next seq.

    `how` says how a case or message this step opens came: "caller" (sent), "hangup" (hung up first);
    `caller` is the calling number of this request, if it had one.
    """
    events = list(outcome.events)
    for _ in range(MAX_EFFECTS):
        if outcome.effect is None:
            break
        resumed, done = _carry_out(session, tel, call, outcome, how, caller)
        events += [*done, *resumed.events]
        outcome = engine.Outcome(
            resumed.state, outcome.instructions + resumed.instructions, (), resumed.effect, resumed.ended
        )
    else:
        raise engine.EngineError(f"more than {MAX_EFFECTS} effects in one step of flow {tel.flow.name!r}")
    add_events(session, call, events)
    save_state(tel, call, outcome.state)
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
    session: Session, tel: Telephony, call: Call, outcome: engine.Outcome, how: str, caller: str | None
) -> tuple[engine.Outcome, list[engine.FlowEvent]]:
    """Do what the engine asked for (under the call's lock), then let it go on; returns the events too."""
    state, ctx = outcome.state, context(tel, call)
    if outcome.effect == "open_case":
        # An existing case (the call's end came first and opened it) gets this message linked instead.
        case = endings.open_case(session, tel, call, state, opened_by=how)
        state = replace(state, vars={**state.vars, "reference": case.reference})
        opened = engine.FlowEvent(state.node, "case_opened", {"reference": case.reference})
        return engine.resume(tel.flow, state, ctx), [opened]
    if outcome.effect == "lookup_case":
        return _look_up(session, tel, call, state, ctx, caller), []
    if outcome.effect == "attach_message":
        return engine.resume(tel.flow, state, ctx), endings.attach_follow_up(
            session, tel, call, state, via=how
        )
    raise engine.EngineError(f"unknown effect {outcome.effect!r}")


def _look_up(
    session: Session, tel: Telephony, call: Call, state: engine.State, ctx: engine.Context, caller: str | None
) -> engine.Outcome:
    """Key 5: the keyed reference's standing, unless the calling number has used up its wrong tries.

    Only the standing goes back to the engine: the caller hears nothing else about the case. The calling
    number is counted by a keyed hash (withheld numbers share one count), across its calls.
    """
    node = tel.flow.nodes[state.node]
    assert isinstance(node, LookupNode)
    number = caller or decrypt_number(tel, call) or "withheld"
    who, now = tel.cipher.lookup_hash("follow-up-tries:" + number), tel.clock()
    used = follow_up.wrong_tries(session, who, now)
    if used >= node.tries_per_hour:
        return engine.resume(tel.flow, state, ctx, locked=True)
    found = follow_up.find_case(session, state.pending.get("value", ""))
    if found is not None:
        return engine.resume(tel.flow, state, ctx, standing=follow_up.standing_of(found))
    follow_up.note_wrong_try(session, who, now)
    # The try that uses the number's last one up hears so now, not after keying yet another reference.
    locked = used + 1 >= node.tries_per_hour
    return engine.resume(tel.flow, state, ctx, standing=None, locked=locked)


def decrypt_number(tel: Telephony, call: Call) -> str | None:
    return tel.cipher.decrypt(call.caller_number_enc) if call.caller_number_enc else None


def _last_response(tel: Telephony, call: Call) -> str | None:
    return decrypt_response(tel, call.last_response)
