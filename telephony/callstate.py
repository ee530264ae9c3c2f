"""A call as the webhooks keep it: its IVR state (sensitive values encrypted), its path, its recordings."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session

from cases.callbacks.settings import CallbackSettings
from cases.models import Call, CallEvent, Case
from infra.clock import Clock, utcnow
from infra.crypto import FieldCipher
from telephony import engine, twiml
from telephony.flow import Flow
from transcription import ingest
from transcription.models import Recording

log = logging.getLogger(__name__)
ENCRYPTED = "enc:"
CALLS = cast(Table, Call.__table__)
CALL_EVENTS = cast(Table, CallEvent.__table__)
CASES = cast(Table, Case.__table__)
_ADD_EVENTS = insert(CALL_EVENTS)
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
    # Seconds a webhook may spend on the database in all before it answers the caller another way.
    db_budget_s: float = 4.0
    # Seconds after a call's latest step during which a request for it may be Twilio's retry: its
    # connection overrides cap all retries of one request at 15 s (`tt`, default and maximum; `rc` 1
    # retry by default). The step's answer is repeated within it, and never later (telephony.replay).
    retry_window_s: float = 60.0


def find_call(session: Session, call_sid: str) -> Call | None:
    """The call, locked for this transaction: every request about one call is applied one at a time."""
    return session.scalar(select(Call).where(Call.call_sid == call_sid).with_for_update())


def case_id_of(session: Session, call_id: int) -> int | None:
    """The id of the call's case (flushed ones only), without loading the case (call.case would)."""
    found: int | None = session.connection().execute(_CASE_OF_CALL, {"call_id": call_id}).scalar()
    return found


def context(tel: Telephony, call: Call) -> engine.Context:
    return engine.Context(
        now=tel.clock(),
        caller_id_present=call.caller_number_enc is not None,
        transfer_number=tel.transfer_number,
    )


def decrypt_response(tel: Telephony, stored: str | None) -> str | None:
    if stored and stored.startswith(ENCRYPTED):
        return tel.cipher.decrypt(stored[len(ENCRYPTED) :])
    return stored


def note_recording(session: Session, call_sid: str, language: str, rec: engine.Recording) -> Recording:
    return ingest.note_recording(
        session,
        recording_sid=rec.sid,
        call_sid=call_sid,
        media_url=rec.url,
        duration_s=rec.duration_s if rec.duration_s >= 0 else None,
        language=language,
    )


def add_events(session: Session, call: Call, events: Sequence[engine.FlowEvent]) -> None:
    # Inserted at once with Core, in the order they come: as ORM objects they cost more than the step.
    insert_events(session, call.id, events)


def insert_events(session: Session, call_id: int, events: Sequence[engine.FlowEvent]) -> None:
    if events:
        now = utcnow()
        session.connection().execute(
            _ADD_EVENTS,
            [
                {"call_id": call_id, "at": now, "node": e.node, "kind": e.kind, "detail": dict(e.detail)}
                for e in events
            ],
        )


def state_node(call: Call) -> str:
    return str(call.ivr_state.get("node", "")) if call.ivr_state else ""


def load_state(tel: Telephony, call: Call) -> engine.State:
    # A deep copy: the ORM must not see the stored state change under it.
    return state_from(tel, json.loads(json.dumps(call.ivr_state or {})), call.language, call.call_sid)


def state_from(tel: Telephony, data: dict[str, Any] | None, language: str, call_sid: str) -> engine.State:
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


def save_state(tel: Telephony, call: Call, state: engine.State) -> None:
    call.ivr_state = stored_state(tel, state)


def stored_state(tel: Telephony, state: engine.State) -> dict[str, Any]:
    """The state as stored; sensitive values (phone numbers being keyed) are encrypted at rest."""
    data = state.to_json()
    for key in tel.flow.sensitive_vars & set(data["vars"]):
        data["vars"][key] = ENCRYPTED + tel.cipher.encrypt(data["vars"][key])
    data["pending"] = {k: ENCRYPTED + tel.cipher.encrypt(v) for k, v in data["pending"].items()}
    return data
