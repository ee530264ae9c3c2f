"""What a call leaves behind: every message it recorded lands in one case, whatever order the end comes in.

When a caller hangs up during <Record>, or presses # and hangs up at once, Twilio sends the <Record>
action, the recording status callback and the call status callback in no promised order, possibly at the
same moment on different threads or hosts. Each of them writes only its own fact (a recording noted, the
call ended) and then calls `settle`, under the call's row lock. `settle` derives the report from all the
facts so far, so the last of the three to arrive sees every fact and the end state is the same for every
order: one case holding each message, with the callback request when one was made; for a follow-up call,
the messages added to the case looked up and no case of its own. It is idempotent, so a repeated request,
the worker's reconcile sweep and a replayed spool file may all call it again.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from cases import follow_up
from cases.models import Call, CallbackChoice, Case, CaseEvent, HazardGroup
from cases.service import DraftReport, open_draft_case
from telephony import engine
from telephony.callstate import Telephony, add_events, case_id_of, load_state
from telephony.flow import FOLLOWUP_VAR
from transcription.models import Recording

log = logging.getLogger(__name__)
MESSAGE_ADDED = "message_added"  # a case event: a message of the call joined its case after it opened


def settle(
    session: Session, tel: Telephony, call: Call, *, caller_gone: bool = False, opened_by: str = "hangup"
) -> None:
    """Make the call's report whole once the caller is gone (or, with caller_gone, now).

    The caller of this function holds the call's row lock and has flushed its own fact. While the caller
    may still be in the menu, nothing happens: what they left is settled when the call ends.
    """
    if call.ended_at is None and not caller_gone:
        return
    state = load_state(tel, call)
    messages = _messages(session, call)
    if state.vars.get(FOLLOWUP_VAR):
        # A follow-up call opens no case of its own: what it recorded goes to the case looked up.
        for sid in messages:
            followed = replace(state, vars={**state.vars, "recording_sid": sid})
            add_events(session, call, attach_follow_up(session, tel, call, followed, via=opened_by))
        return
    case = _case_of(session, tel, call, state, messages, opened_by)
    if case is None or not messages:
        return
    for sid in _link(session, case, messages):
        session.add(
            CaseEvent(
                case_id=case.id,
                at=tel.clock(),
                actor_id=None,
                action=MESSAGE_ADDED,
                from_status=None,
                to_status=None,
                detail={"recording_sid": sid},
            )
        )
    if case.opened_by == "callback_only":
        # The message came after the callback request had opened the case on its own: it is a report now,
        # the same as if the message had come first.
        case.opened_by = opened_by


def _case_of(
    session: Session, tel: Telephony, call: Call, state: engine.State, messages: list[str], opened_by: str
) -> Case | None:
    """The call's case; opened now if there is something to report (a message, a callback request)."""
    case_id = case_id_of(session, call.id)
    if case_id is not None:
        return session.get(Case, case_id)
    if messages:
        chosen = state.vars.get("recording_sid")
        state = replace(
            state, vars={**state.vars, "recording_sid": chosen if chosen in messages else messages[-1]}
        )
    elif _wants_callback(state):
        opened_by = "callback_only"
    else:
        return None  # nothing recorded, no call back asked for: nothing to report
    case = open_case(session, tel, call, state, opened_by=opened_by)
    add_events(session, call, [opened_event(state, case, opened_by)])
    return case


def open_case(session: Session, tel: Telephony, call: Call, state: engine.State, *, opened_by: str) -> Case:
    """The call's draft case from what the caller chose (an existing one gets the message linked)."""
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
    return open_draft_case(session, report, cipher=tel.cipher, clock=tel.clock, callbacks=tel.callbacks)


def opened_event(state: engine.State, case: Case, opened_by: str) -> engine.FlowEvent:
    return engine.FlowEvent(state.node, "case_opened", {"reference": case.reference, "opened_by": opened_by})


def attach_follow_up(
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
        opened = open_case(session, tel, call, state, opened_by=via)
        return [engine.FlowEvent(state.node, "follow_up_case_missing"), opened_event(state, opened, via)]
    if not follow_up.attach_follow_up_message(session, case, sid, via=via, now=tel.clock()):
        return []  # already with the case (the caller pressed send, then the call ended)
    return [engine.FlowEvent(state.node, "message_attached", {"reference": case.reference, "via": via})]


def _messages(session: Session, call: Call) -> list[str]:
    """The SIDs of the call's recordings that hold audio (or may), oldest first."""
    return list(
        session.scalars(
            select(Recording.recording_sid)
            .where(
                Recording.call_sid == call.call_sid,
                Recording.status != "absent",
                (Recording.duration_s.is_(None)) | (Recording.duration_s > 0),
            )
            .order_by(Recording.id)
        )
    )


def _link(session: Session, case: Case, sids: list[str]) -> list[str]:
    """Give the case every message of its call that has no case yet; the SIDs newly linked."""
    added: list[str] = []
    for rec in session.scalars(
        select(Recording)
        .where(Recording.recording_sid.in_(sids), Recording.case_id.is_(None))
        .with_for_update()
    ):
        rec.case_id = case.id
        added.append(rec.recording_sid)
    session.flush()
    return added


def _wants_callback(state: engine.State) -> bool:
    choice = state.vars.get("callback")
    return choice == CallbackChoice.CALLER or (
        choice == CallbackChoice.OTHER and bool(state.vars.get("callback_number"))
    )
