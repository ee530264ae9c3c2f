"""Follow-up by phone through the webhooks: key 5, a case reference, its standing, an extra message.

Every call is walked through our own signed TwiML, as in test_webhooks; the database is real.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import pytest
from flask import Flask
from sqlalchemy import select

import cases.follow_up
from app import get_database
from cases.models import Case as CaseRow
from cases.models import CaseEvent, CaseStatus, Notification, Office
from cases.reference import damm_digit
from cases.staff import Role, RoleAssignment, User
from infra.clock import utcnow
from infra.db import database
from telephony import jobs, service
from telephony.flow import DigitsNode, HangupNode, LookupNode, MenuNode, Node
from telephony.simulator.commands import serve_in_thread
from telephony.simulator.config import SimulatorConfig
from telephony.simulator.run import run_call
from telephony.simulator.script import CallScript
from telephony.validators import speak_digits
from telephony.webhooks import telephony
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE, TwilioCaller
from tests.integration.test_webhooks import (
    FULL_CALL,
    NO_INPUT,
    Recorded,
    Twiml,
    answer,
    db_down,
    events_of,
    export_cases,
    find_call,
    flow_of,
    hang_up,
    recording_status,
    walk,
)
from transcription.models import Recording

CALLER = "+66812345678"
N = TypeVar("N", bound=Node)


@pytest.fixture
def caller(new_caller: Callable[..., TwilioCaller]) -> TwilioCaller:
    return new_caller()


@pytest.fixture
def reported(app: Flask, new_caller: Callable[..., TwilioCaller]) -> tuple[str, str]:
    """A case reported by an earlier call (violence, Bangkok): its reference and first recording."""
    first = Recorded()
    reporter = new_caller()
    walk(reporter, *FULL_CALL, first, "1")
    hang_up(reporter)
    [case] = export_cases(app)
    return case["reference"], first.sid


def set_status(app: Flask, reference: str, status: CaseStatus) -> None:
    with get_database(app).session() as session:
        case = session.scalar(select(CaseRow).where(CaseRow.reference == reference))
        assert case is not None
        case.status = status


def follow_up_events(app: Flask, reference: str) -> list[dict[str, str]]:
    with get_database(app).session() as session:
        case = session.scalar(select(CaseRow).where(CaseRow.reference == reference))
        assert case is not None
        rows = session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.action == "follow_up_message")
        )
        return [dict(e.detail) for e in rows]


def recordings_of(app: Flask, reference: str) -> list[str]:
    with get_database(app).session() as session:
        case = session.scalar(select(CaseRow).where(CaseRow.reference == reference))
        assert case is not None
        return list(
            session.scalars(
                select(Recording.recording_sid).where(Recording.case_id == case.id).order_by(Recording.id)
            )
        )


def node_of(app: Flask, node_id: str, kind: type[N]) -> N:
    found = flow_of(app).nodes[node_id]
    assert isinstance(found, kind)
    return found


def lookup_of(app: Flask) -> LookupNode:
    return node_of(app, "ask_reference", LookupNode)


def words(app: Flask, standing: str, lang: str, reference: str) -> str:
    text = lookup_of(app).standing[standing].text[lang]
    return text.format(followup_reference=speak_digits(reference, lang))


def bad_check_digit(reference: str) -> str:
    return reference[:-1] + str((int(reference[-1]) + 1) % 10)


def unknown_reference(known: str) -> str:
    """A well-formed reference (its check digit holds) that is not the known one."""
    body = "1234567" if not known.startswith("1234567") else "7654321"
    return body + str(damm_digit(body))


# ---- hearing the standing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "standing"),
    [
        (CaseStatus.DRAFT, "received"),
        (CaseStatus.ROUTED, "received"),
        (CaseStatus.PROPOSED, "received"),
        (CaseStatus.ASSIGNED, "being_worked"),
        (CaseStatus.IN_ACTION, "being_worked"),
        (CaseStatus.RESOLVED, "resolved"),
    ],
)
def test_a_valid_reference_hears_its_standing_and_nothing_more(
    app: Flask, reported: tuple[str, str], caller: TwilioCaller, status: CaseStatus, standing: str
) -> None:
    reference, _ = reported
    set_status(app, reference, status)
    asked = walk(caller, "5")
    gather = asked.find("Gather")
    assert gather.attrib["numDigits"] == "8"
    assert asked.says() == [lookup_of(app).prompt.text["th"]]

    told = answer(caller, asked, reference)

    menu = node_of(app, "follow_up_menu", MenuNode).prompt.text["th"]
    assert told.says() == [words(app, standing, "th", reference), menu]
    # Nothing else about the case: no office, no category, no callback, no transcript.
    for secret in ("กรุงเทพ", "ความรุนแรง", "violence", "Bangkok", "10"):
        assert secret not in told.body
    assert told.find("Gather").attrib["numDigits"] == "1"
    call = find_call(app, caller.call_sid)
    assert call is not None and call.ivr_state["vars"] == {"followup_reference": reference}
    assert ("ask_reference", "found", {"reference": reference, "standing": standing}) in events_of(
        app, caller.call_sid
    )
    # ...and "2" ends the call politely; no case is opened for it.
    bye = answer(caller, told, "2")
    assert bye.verbs() == ["Say", "Hangup"]
    hang_up(caller)
    assert len(export_cases(app)) == 1
    assert follow_up_events(app, reference) == []


def test_an_unknown_reference_is_not_found_and_asked_again(
    app: Flask, reported: tuple[str, str], caller: TwilioCaller
) -> None:
    reference, _ = reported
    again = walk(caller, "5", unknown_reference(reference))
    lookup = lookup_of(app)
    assert lookup.not_found is not None
    assert again.says() == [lookup.not_found.text["th"], lookup.prompt.text["th"]]
    assert again.says()[0] == "ขออภัยค่ะ ไม่พบหมายเลขอ้างอิงนี้"
    assert again.find("Gather").attrib["numDigits"] == "8"
    call = find_call(app, caller.call_sid)
    assert call is not None
    assert call.ivr_state["node"] == "ask_reference" and call.ivr_state["tries"] == 1
    assert "followup_reference" not in call.ivr_state["vars"]
    assert events_of(app, caller.call_sid)[-1] == ("ask_reference", "not_found", {"try": "1"})
    # The right one on the second try is still found.
    told = answer(caller, again, reference)
    assert told.says()[0] == words(app, "received", "th", reference)


def test_a_reference_keyed_wrongly_three_times_is_offered_a_new_report(
    app: Flask, reported: tuple[str, str], caller: TwilioCaller
) -> None:
    reference, _ = reported
    step = walk(caller, "5", bad_check_digit(reference), unknown_reference(reference))
    offered = answer(caller, step, bad_check_digit(reference))

    on_fail = lookup_of(app).on_fail.prompt
    assert on_fail is not None
    province = node_of(app, "ask_province", DigitsNode)
    assert offered.says() == [on_fail.text["th"], province.prompt.text["th"]]
    assert offered.find("Gather").attrib["numDigits"] == "2"
    kinds = [k for n, k, _ in events_of(app, caller.call_sid) if n == "ask_reference"]
    assert kinds == ["invalid", "entered", "not_found", "invalid", "tries_exhausted", "set"]
    # The new report goes the ordinary way and opens a case of its own.
    confirm = walk_on(caller, offered, "#", "3", Recorded())
    closing = answer(caller, confirm, "1")
    assert closing.verbs()[-1] == "Hangup"
    cases = export_cases(app)
    assert len(cases) == 2
    new = next(c for c in cases if c["reference"] != reference)
    assert new["category"] == "unspecified"


def walk_on(caller: TwilioCaller, step: Twiml, *inputs: str | Recorded) -> Twiml:
    for inp in inputs:
        step = answer(caller, step, inp)
    return step


def test_a_caller_who_says_nothing_is_offered_a_new_report(app: Flask, caller: TwilioCaller) -> None:
    step = walk(caller, "5", NO_INPUT, NO_INPUT, NO_INPUT)
    assert step.find("Gather").attrib["numDigits"] == "2"  # the province: a new report
    call = find_call(app, caller.call_sid)
    assert call is not None and call.ivr_state["vars"] == {"category": "unspecified"}


# ---- leaving an extra message --------------------------------------------------------------------


def test_an_extra_message_is_attached_to_the_same_case(
    app: Flask, reported: tuple[str, str], caller: TwilioCaller
) -> None:
    reference, first = reported
    with get_database(app).session() as session:
        central = session.scalar(select(Office).where(Office.code == "central"))
        assert central is not None
        agent = User(
            username="agent", display_name="Agent", password_hash="x", session_token=uuid.uuid4().hex
        )
        session.add(agent)
        session.flush()
        session.add(RoleAssignment(user_id=agent.id, office_id=central.id, role=Role.AGENT))

    extra = Recorded(duration=20)
    record = walk(caller, "5", reference, "1")
    assert record.verbs() == ["Say", "Record", "Redirect"]
    confirm = answer(caller, record, extra)
    thanks = answer(caller, confirm, "1")

    assert thanks.verbs() == ["Say", "Hangup"]
    thanks_words = node_of(app, "follow_up_thanks", HangupNode).prompt
    assert thanks_words is not None
    assert thanks.says() == [thanks_words.text["th"].format(followup_reference=speak_digits(reference, "th"))]
    assert recordings_of(app, reference) == [first, extra.sid]
    assert follow_up_events(app, reference) == [{"recording_sid": extra.sid, "via": "caller"}]
    with get_database(app).session() as session:
        rec = session.scalar(select(Recording).where(Recording.recording_sid == extra.sid))
        assert rec is not None and rec.language == "th" and rec.call_sid == caller.call_sid
        [note] = session.scalars(select(Notification).where(Notification.kind == "follow_up_message")).all()
        assert note.user_id == agent.id and note.channel == "console"
        assert CALLER not in note.body and "0812345678" not in note.body
    assert ("attach_message", "message_attached", {"reference": reference, "via": "caller"}) in events_of(
        app, caller.call_sid
    )

    # The call ends: the status and recording callbacks change nothing more, and open no case.
    hang_up(caller)
    recording_status(caller, extra)
    recording_status(caller, extra)
    assert len(export_cases(app)) == 1
    assert recordings_of(app, reference) == [first, extra.sid]
    assert len(follow_up_events(app, reference)) == 1
    with get_database(app).session() as session:
        assert len(session.scalars(select(Notification)).all()) == 1
        call = session.scalar(select(CaseRow.call_id).where(CaseRow.reference == reference))
        assert call is not None  # the case still belongs to the reporting call


def test_retried_send_attaches_once(app: Flask, reported: tuple[str, str], caller: TwilioCaller) -> None:
    reference, _ = reported
    confirm = walk(caller, "5", reference, "1", Recorded())
    thanks = answer(caller, confirm, "1")
    again = answer(caller, confirm, "1")  # Twilio posts the same action again
    assert again.body == thanks.body
    assert len(follow_up_events(app, reference)) == 1


@pytest.mark.parametrize("when", ["during", "after"])
def test_hanging_up_still_attaches_the_message(
    app: Flask, reported: tuple[str, str], caller: TwilioCaller, when: str
) -> None:
    reference, first = reported
    record = walk(caller, "5", reference, "1")
    if when == "during":
        extra = Recorded(digits="hangup")
        answer(caller, record, extra)
    else:
        extra = Recorded()
        answer(caller, record, extra)  # then hangs up at "1 send / 2 again"
    recording_status(caller, extra)
    hang_up(caller)

    assert recordings_of(app, reference) == [first, extra.sid]
    # Hung up while recording or after it, in any order of Twilio's last requests: the same record.
    assert follow_up_events(app, reference) == [{"recording_sid": extra.sid, "via": "hangup"}]
    assert len(export_cases(app)) == 1  # no case of the follow-up call's own
    call = find_call(app, caller.call_sid)
    assert call is not None
    with get_database(app).session() as session:
        assert session.scalar(select(CaseRow.id).where(CaseRow.call_id == call.id)) is None


def test_a_follow_up_call_without_a_status_callback_still_attaches_its_message(
    app: Flask, reported: tuple[str, str], caller: TwilioCaller
) -> None:
    reference, first = reported
    extra = Recorded()
    walk(caller, "5", reference, "1", extra)  # recorded, then nothing more from Twilio
    db = database(app)
    tel: service.Telephony = telephony(app)
    later = dataclasses.replace(tel, clock=lambda: utcnow() + timedelta(hours=3))
    assert jobs.close_stale_calls(db, later) == 1

    assert recordings_of(app, reference) == [first, extra.sid]
    assert follow_up_events(app, reference) == [{"recording_sid": extra.sid, "via": "hangup"}]
    assert len(export_cases(app)) == 1


def test_hanging_up_before_recording_leaves_nothing(
    app: Flask, reported: tuple[str, str], caller: TwilioCaller
) -> None:
    reference, first = reported
    walk(caller, "5", reference, "1")
    hang_up(caller)
    assert recordings_of(app, reference) == [first]
    assert follow_up_events(app, reference) == []
    assert len(export_cases(app)) == 1


def test_a_fault_during_a_follow_up_keeps_the_message_with_the_case(
    app: Flask, reported: tuple[str, str], caller: TwilioCaller, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, first = reported
    extra = Recorded()
    confirm = walk(caller, "5", reference, "1", extra)
    monkeypatch.setattr(cases.follow_up, "attach_follow_up_message", db_down)
    rescue = answer(caller, confirm, "1")
    assert rescue.action("Record") == PUBLIC_BASE + "/twilio/rescue-recording"
    monkeypatch.undo()
    later = Recorded()
    thanks = Twiml(caller.post(rescue.action("Record"), **later.form()))
    assert thanks.verbs() == ["Say", "Hangup"]
    hang_up(caller)

    assert len(export_cases(app)) == 1
    assert recordings_of(app, reference) == [first, extra.sid, later.sid]
    assert [e["via"] for e in follow_up_events(app, reference)] == ["rescue", "rescue"]


def test_follow_up_in_english(app: Flask, reported: tuple[str, str], caller: TwilioCaller) -> None:
    reference, _ = reported
    set_status(app, reference, CaseStatus.IN_ACTION)
    asked = walk(caller, "9", "5")
    assert asked.say_languages() == {"en-US"}
    told = answer(caller, asked, reference)
    assert told.says()[0] == words(app, "being_worked", "en", reference)
    assert told.says()[0] == f"Report {speak_digits(reference, 'en')}: staff are working on it."
    extra = Recorded()
    thanks = walk_on(caller, told, "1", extra, "1")
    assert thanks.say_languages() == {"en-US"}
    assert f"added to report {speak_digits(reference, 'en')}" in thanks.says()[0]
    with get_database(app).session() as session:
        rec = session.scalar(select(Recording).where(Recording.recording_sid == extra.sid))
        assert rec is not None and rec.language == "en"  # transcribed in the call's language


def test_no_phone_number_in_the_follow_up_trail(
    app: Flask, reported: tuple[str, str], caller: TwilioCaller
) -> None:
    reference, _ = reported
    walk(caller, "5", reference, "1", Recorded(), "1")
    hang_up(caller)
    trail = str(events_of(app, caller.call_sid)) + str(follow_up_events(app, reference))
    for form in (CALLER, "0812345678", "812345678"):
        assert form not in trail


# ---- the simulator can drive a follow-up call -----------------------------------------------------


def test_the_simulator_drives_a_follow_up_call(app: Flask, reported: tuple[str, str]) -> None:
    reference, first = reported
    with serve_in_thread(app) as base:
        sim = SimulatorConfig(
            connect_base=base, public_base=PUBLIC_BASE, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN
        )
        result = run_call(sim, CallScript.parse(f"5,{reference},1,record:5,1"))
    assert result.ended_by == "hangup-verb", [e.describe() for e in result.events]
    assert not result.errors()
    assert "อยู่ระหว่างดำเนินการ" not in result.spoken_text()
    assert "ได้รับเรื่องของท่านแล้ว" in result.spoken_text()
    assert recordings_of(app, reference) == [first, *result.recordings]
    assert len(export_cases(app)) == 1


def test_the_simulate_call_command_shows_the_case_the_message_went_to(
    app: Flask, reported: tuple[str, str]
) -> None:
    reference, _ = reported
    result = app.test_cli_runner().invoke(
        args=["simulate-call", "--keys", f"5,{reference},1,record:5,1", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "ended: hangup-verb" in result.output
    assert "message added to case:" in result.output
    assert f'"reference": "{reference}"' in result.output
    assert len(export_cases(app)) == 1
