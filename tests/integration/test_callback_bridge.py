"""Calling a reporter back through the bridge, end to end: the console's button, Twilio's Calls API and the
call it places (the simulator's Calls.json against the app served on a port), the bridge's TwiML, the status
callbacks of both legs for each outcome, and the reporter's number kept out of every page, log line, message
and URL.
"""

from __future__ import annotations

import logging
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.test import TestResponse

from app import get_database
from cases import callbacks
from cases.callbacks import dialing
from cases.callbacks.settings import CallbackSettings
from cases.models import (
    AttemptOutcome,
    Callback,
    CallbackAttempt,
    CallbackState,
    Case,
    CaseEvent,
    Notification,
    Reminder,
)
from cases.staff import User
from infra.config import Config
from infra.crypto import FieldCipher, mask_phone
from infra.db import Base
from telephony.simulator.media_server import MediaServer
from telephony.simulator.outbound import OutboundCall, OutboundPlan
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE, make_config, sign
from tests.support.seed import seed_console

REPORTER = "+66861234567"
# Every way the reporter's number could be written: E.164, national, grouped, digits only.
REPORTER_FORMS = (
    "+66861234567",
    "66861234567",
    "0861234567",
    "861234567",
    "086-123-4567",
    "086 123 4567",
    "+66 86 123 4567",
)
OPERATOR_PHONE = "+66891112222"
HOTLINE = "+6621266565"


@dataclass
class World:
    password: str
    case_id: int  # routed_50: at Chiang Mai, asks to be called back on REPORTER
    anonymous_id: int  # draft_50: no number, no callback
    op50: int
    action50: int


class Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


@pytest.fixture
def twilio() -> Iterator[MediaServer]:
    """Twilio's REST API (Calls.json) and the calls it places."""
    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        yield media


@pytest.fixture
def config(tmp_path: Path, twilio: MediaServer) -> Config:
    return make_config(tmp_path, env={"TWILIO_API_BASE": twilio.base_url})


@pytest.fixture
def live(app: Flask, twilio: MediaServer) -> Iterator[str]:
    """The app on a port, where the simulated Twilio sends the calls' webhooks."""
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    twilio.calls.connect(base, PUBLIC_BASE)
    yield base
    twilio.calls.wait()
    server.shutdown()
    thread.join(5)


def settings(app: Flask) -> CallbackSettings:
    value: CallbackSettings = callbacks.callback_settings(app)
    return value


@pytest.fixture
def world(app: Flask, config: Config) -> World:
    cipher = FieldCipher(config.data_key)
    with get_database(app).session() as session:
        s = seed_console(session, cipher=cipher)
        case = s.cases["routed_50"]
        case.callback_number_enc = cipher.encrypt(REPORTER)
        case.callback_number_masked = mask_phone(REPORTER)
        callbacks.open_callback(session, case, settings(app), datetime.now(UTC))
        verify(s.users["op50"], OPERATOR_PHONE)
        session.flush()
        return World(
            password=s.password,
            case_id=case.id,
            anonymous_id=s.cases["draft_50"].id,
            op50=s.users["op50"].id,
            action50=s.users["action50"].id,
        )


def verify(user: User, phone: str) -> None:
    """A phone verified by its code (tests/integration/test_staff_phones.py tries the code itself)."""
    user.phone, user.phone_verified_at = phone, datetime.now(UTC)


def token(client: FlaskClient) -> str:
    page = client.get("/console/approvals")
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.get_data(as_text=True))
    assert match
    return match.group(1)


def signed_in(app: Flask, world: World, username: str) -> FlaskClient:
    client = app.test_client()
    page = client.get("/console/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert csrf
    r = client.post(
        "/console/login", data={"username": username, "password": world.password, "csrf_token": csrf.group(1)}
    )
    assert r.status_code == 302
    return client


def post(client: FlaskClient, path: str, **form: str) -> TestResponse:
    return client.post(path, data={"csrf_token": token(client), **form})


def flashes(client: FlaskClient) -> list[tuple[str, str]]:
    with client.session_transaction() as sess:
        return list(sess.get("_flashes", []))


def call_back(
    app: Flask, client: FlaskClient, twilio: MediaServer, world: World, plan: OutboundPlan
) -> OutboundCall:
    """Press "Call back" on the case page and let the simulated Twilio play the whole call."""
    before = len(twilio.calls.calls)
    twilio.calls.plan(plan)
    r = post(client, f"/console/cases/{world.case_id}/callback/call")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/console/cases/{world.case_id}#callback")
    calls = twilio.calls.wait()
    assert len(calls) == before + 1
    call = calls[-1]
    assert not [e for e in call.events if e.kind in ("error", "warning")], [e.describe() for e in call.events]
    return call


def attempts(app: Flask, world: World) -> list[CallbackAttempt]:
    with get_database(app).session() as session:
        return list(
            session.scalars(
                select(CallbackAttempt)
                .where(CallbackAttempt.case_id == world.case_id)
                .order_by(CallbackAttempt.id)
            )
        )


def the_callback(app: Flask, world: World) -> Callback:
    with get_database(app).session() as session:
        found = session.scalar(select(Callback).where(Callback.case_id == world.case_id))
        assert found is not None
        return found


def pending_reminders(app: Flask, callback_id: int) -> list[Reminder]:
    with get_database(app).session() as session:
        return list(
            session.scalars(
                select(Reminder).where(
                    Reminder.callback_id == callback_id,
                    Reminder.sent_at.is_(None),
                    Reminder.cancelled_at.is_(None),
                )
            )
        )


def purposes(call: OutboundCall) -> list[str]:
    return [e.purpose or "" for e in call.result.requests()]


# ---- the bridge's TwiML -------------------------------------------------------------------------------


def test_the_operator_hears_the_reference_and_is_dialled_through_to_the_reporter_under_the_hotline_number(
    app: Flask, client: FlaskClient, world: World
) -> None:
    with get_database(app).session() as session:
        cb = session.scalar(select(Callback).where(Callback.case_id == world.case_id))
        op50 = session.get(User, world.op50)
        assert cb is not None and op50 is not None
        attempt = callbacks.start_attempt(session, cb, op50, datetime.now(UTC))
        attempt_id = attempt.id
        reference = session.get(Case, world.case_id).reference  # type: ignore[union-attr]
    sid = "CA" + "a" * 32
    url = f"{PUBLIC_BASE}/twilio/bridge/{attempt_id}/answer"
    form = {"CallSid": sid, "AccountSid": ACCOUNT_SID, "CallStatus": "in-progress", "To": OPERATOR_PHONE}
    r = client.post(urlsplit(url).path, data=form, headers={"X-Twilio-Signature": sign(url, form)})
    assert r.status_code == 200 and r.mimetype == "text/xml"
    root = ET.fromstring(r.data)  # noqa: S314 - TwiML from the app under test
    say, dial = list(root)
    assert say.tag == "Say" and say.get("language") == "th-TH" and say.get("voice", "").startswith("Google.")
    thai_digits = ["ศูนย์", "หนึ่ง", "สอง", "สาม", "สี่", "ห้า", "หก", "เจ็ด", "แปด", "เก้า"]
    assert " ".join(thai_digits[int(d)] for d in reference) in (say.text or "")
    assert dial.tag == "Dial"
    assert dial.get("callerId") == HOTLINE
    assert dial.get("action") == f"{PUBLIC_BASE}/twilio/bridge/{attempt_id}/dial"
    assert dial.get("record") == "do-not-record" and dial.get("timeout") == "30"
    [number] = list(dial)
    assert number.tag == "Number" and number.text == REPORTER
    assert number.get("statusCallback") == f"{PUBLIC_BASE}/twilio/bridge/{attempt_id}/reporter-status"
    assert number.get("statusCallbackEvent") == "initiated ringing answered completed"
    assert number.get("machineDetection") == "Enable"
    assert number.get("amdStatusCallback") == f"{PUBLIC_BASE}/twilio/bridge/{attempt_id}/amd"
    [row] = attempts(app, world)
    assert row.operator_call_sid == sid and row.outcome == AttemptOutcome.BRIDGING

    # Twilio retries the answer request: the same TwiML, nothing written twice.
    again = client.post(urlsplit(url).path, data=form, headers={"X-Twilio-Signature": sign(url, form)})
    assert again.data == r.data
    # Another call cannot use this attempt's URL.
    other = {**form, "CallSid": "CA" + "b" * 32}
    refused = client.post(urlsplit(url).path, data=other, headers={"X-Twilio-Signature": sign(url, other)})
    assert b"<Dial" not in refused.data and b"<Hangup" in refused.data


def answer_as_twilio(client: FlaskClient, attempt_id: int, sid: str = "CA" + "a" * 32) -> ET.Element:
    url = f"{PUBLIC_BASE}/twilio/bridge/{attempt_id}/answer"
    form = {"CallSid": sid, "AccountSid": ACCOUNT_SID, "CallStatus": "in-progress", "To": OPERATOR_PHONE}
    r = client.post(urlsplit(url).path, data=form, headers={"X-Twilio-Signature": sign(url, form)})
    assert r.status_code == 200
    return ET.fromstring(r.data)  # noqa: S314 - TwiML from the app under test


def start(app: Flask, world: World) -> int:
    with get_database(app).session() as session:
        cb = session.scalar(select(Callback).where(Callback.case_id == world.case_id))
        op50 = session.get(User, world.op50)
        assert cb is not None and op50 is not None
        return callbacks.start_attempt(session, cb, op50, datetime.now(UTC)).id


def test_a_callback_closed_meanwhile_is_not_dialled(app: Flask, client: FlaskClient, world: World) -> None:
    attempt_id = start(app, world)
    with get_database(app).session() as session:
        case = session.get(Case, world.case_id)
        head = session.scalar(select(User).where(User.username == "head50"))
        assert case is not None and head is not None
        callbacks.log_by_hand(
            session, case, head, AttemptOutcome.REACHED, "ผู้แจ้งโทรเข้ามาเอง", settings(app), datetime.now(UTC)
        )
    root = answer_as_twilio(client, attempt_id)
    assert [el.tag for el in root] == ["Say", "Hangup"] and "ปิดไปแล้ว" in (root[0].text or "")
    first = attempts(app, world)[0]
    assert first.outcome == AttemptOutcome.OPERATOR_UNREACHABLE
    assert the_callback(app, world).state == CallbackState.REACHED


def test_a_call_that_comes_after_its_attempt_was_given_up_is_not_dialled(
    app: Flask, client: FlaskClient, world: World
) -> None:
    # The Calls request timed out (so the console ended the attempt), but Twilio placed the call anyway.
    attempt_id = start(app, world)
    with get_database(app).session() as session:
        dialing.dial_failed(session, attempt_id, "timeout after 10 s", settings(app), datetime.now(UTC))
    root = answer_as_twilio(client, attempt_id)
    assert [el.tag for el in root] == ["Say", "Hangup"] and "ยกเลิก" in (root[0].text or "")
    cb = the_callback(app, world)
    assert cb.state == CallbackState.PENDING and cb.attempts == 0


@pytest.mark.parametrize("path", ["answer", "dial", "operator-status", "reporter-status", "amd"])
def test_bridge_webhooks_refuse_unsigned_and_wrongly_signed_requests(
    client: FlaskClient, world: World, path: str
) -> None:
    url = f"{PUBLIC_BASE}/twilio/bridge/1/{path}"
    form = {"CallSid": "CA" + "a" * 32, "CallStatus": "completed", "DialCallStatus": "completed"}
    assert client.post(urlsplit(url).path, data=form).status_code == 403
    bad = sign(url, form, token="another-account-token")
    assert client.post(urlsplit(url).path, data=form, headers={"X-Twilio-Signature": bad}).status_code == 403
    # Signed for another URL (another attempt) is no good either.
    elsewhere = sign(f"{PUBLIC_BASE}/twilio/bridge/2/{path}", form)
    assert (
        client.post(urlsplit(url).path, data=form, headers={"X-Twilio-Signature": elsewhere}).status_code
        == 403
    )
    with get_database(client.application).session() as session:
        assert session.scalar(select(CallbackAttempt.id)) is None


# ---- end to end, one outcome at a time ------------------------------------------------------------------


def test_reached_closes_the_callback_and_stops_its_reminders(
    app: Flask, world: World, twilio: MediaServer, live: str
) -> None:
    op = signed_in(app, world, "op50")
    assert pending_reminders(app, the_callback(app, world).id)
    call = call_back(app, op, twilio, world, OutboundPlan(reporter="answer", talk_s=95))

    assert call.to == OPERATOR_PHONE and call.from_ == HOTLINE
    [dialled] = call.result.of_kind("dial")
    assert dialled.text.startswith(REPORTER) and f"callerId {HOTLINE}" in dialled.text
    assert "ต่อสายถึงผู้แจ้ง" in call.result.spoken_text()
    assert purposes(call)[:2] == ["status-callback initiated", "status-callback ringing"]
    assert "dial-action" in purposes(call) and "amd-status" in purposes(call)
    assert purposes(call)[-1] == "status-callback completed"

    [attempt] = attempts(app, world)
    assert attempt.outcome == AttemptOutcome.REACHED and attempt.duration_s == 95
    assert attempt.operator_call_sid == call.sid and attempt.reporter_call_sid is not None
    cb = the_callback(app, world)
    assert cb.state == CallbackState.REACHED and cb.attempts == 1 and cb.closed_at is not None
    assert pending_reminders(app, cb.id) == []
    page = op.get(f"/console/cases/{world.case_id}").get_data(as_text=True)
    assert "call-back-button" not in page  # nothing left to call


@pytest.mark.parametrize(
    ("reporter", "outcome"),
    [
        ("no-answer", AttemptOutcome.NO_ANSWER),
        ("busy", AttemptOutcome.BUSY),
        ("voicemail", AttemptOutcome.VOICEMAIL),
        ("failed", AttemptOutcome.FAILED),
    ],
)
def test_a_reporter_side_failure_counts_and_schedules_the_next_attempt(
    app: Flask, world: World, twilio: MediaServer, live: str, reporter: str, outcome: AttemptOutcome
) -> None:
    op = signed_in(app, world, "op50")
    first_due = the_callback(app, world).due_at
    call = call_back(app, op, twilio, world, OutboundPlan(reporter=reporter, talk_s=20))  # type: ignore[arg-type]

    [attempt] = attempts(app, world)
    assert attempt.outcome == outcome and attempt.ended_at is not None
    cb = the_callback(app, world)
    assert cb.state == CallbackState.PENDING and cb.attempts == 1 and cb.round == 1
    assert cb.due_at > first_due
    assert {r.round for r in pending_reminders(app, cb.id)} == {1}
    if reporter == "voicemail":
        # The machine answered, so the Dial itself "completed": detection decided, and it stood.
        dial_action = call.result.requests("dial-action")[0]
        assert dial_action.params is not None and dial_action.params["DialCallStatus"] == "completed"
        assert "amd-status" in purposes(call)
    # The operator heard what happened, in Thai, and the page lists the attempt.
    assert "ระบบบันทึกไว้" in call.result.spoken_text()
    page = op.get(f"/console/cases/{world.case_id}").get_data(as_text=True)
    assert f'id="attempt-{attempt.id}"' in page and "call-back-button" in page


@pytest.mark.parametrize("operator", ["no-answer", "busy", "failed"])
def test_an_operator_who_does_not_answer_counts_nothing_against_the_reporter(
    app: Flask, world: World, twilio: MediaServer, live: str, operator: str
) -> None:
    op = signed_in(app, world, "op50")
    call = call_back(app, op, twilio, world, OutboundPlan(operator=operator))  # type: ignore[arg-type]
    assert call.result.of_kind("dial") == [] and "url" not in purposes(call)
    [attempt] = attempts(app, world)
    assert attempt.outcome == AttemptOutcome.OPERATOR_UNREACHABLE and attempt.reporter_call_sid is None
    cb = the_callback(app, world)
    assert cb.state == CallbackState.PENDING and cb.attempts == 0 and cb.round == 0
    assert {r.round for r in pending_reminders(app, cb.id)} == {0}


def test_retried_status_callbacks_are_applied_once(
    app: Flask, client: FlaskClient, world: World, twilio: MediaServer, live: str
) -> None:
    op = signed_in(app, world, "op50")
    call = call_back(app, op, twilio, world, OutboundPlan(reporter="no-answer"))
    before = the_callback(app, world)
    with get_database(app).session() as session:
        events = session.scalar(text("SELECT count(*) FROM case_events"))
        messages = session.scalar(text("SELECT count(*) FROM notifications"))
    # Twilio delivers every callback of the call a second time (as its retries may).
    for request in call.result.requests():
        if request.purpose == "url" or request.params is None or request.url is None:
            continue
        path = urlsplit(request.url).path
        r = client.post(
            path,
            data=dict(request.params),
            headers={"X-Twilio-Signature": sign(request.url, dict(request.params))},
        )
        assert r.status_code == 200
    after = the_callback(app, world)
    assert (after.attempts, after.round, after.due_at, after.state) == (
        before.attempts,
        before.round,
        before.due_at,
        before.state,
    )
    [attempt] = attempts(app, world)
    assert attempt.outcome == AttemptOutcome.NO_ANSWER
    with get_database(app).session() as session:
        assert session.scalar(text("SELECT count(*) FROM case_events")) == events
        assert session.scalar(text("SELECT count(*) FROM notifications")) == messages


def test_the_attempts_run_out_and_the_callback_is_given_up(
    app: Flask, world: World, twilio: MediaServer, live: str
) -> None:
    op = signed_in(app, world, "op50")
    for _ in range(settings(app).max_attempts):
        call_back(app, op, twilio, world, OutboundPlan(reporter="busy"))
    cb = the_callback(app, world)
    assert cb.state == CallbackState.GAVE_UP and cb.attempts == settings(app).max_attempts
    assert pending_reminders(app, cb.id) == []
    r = post(op, f"/console/cases/{world.case_id}/callback/call")
    assert r.status_code == 302 and len(twilio.calls.calls) == settings(app).max_attempts


# ---- the console -----------------------------------------------------------------------------------------


def test_a_dialer_failure_is_shown_and_counts_nothing(
    app: Flask, world: World, twilio: MediaServer, live: str
) -> None:
    op = signed_in(app, world, "op50")
    twilio.inject("Calls", "http503", method="POST")
    r = post(op, f"/console/cases/{world.case_id}/callback/call")
    assert r.status_code == 302
    [(category, message)] = flashes(op)
    assert category == "error" and "503" in message
    [attempt] = attempts(app, world)
    assert attempt.outcome == AttemptOutcome.OPERATOR_UNREACHABLE and attempt.note
    assert "503" in attempt.note
    cb = the_callback(app, world)
    assert cb.state == CallbackState.PENDING and cb.attempts == 0
    # Nothing is stuck: the next press calls.
    call = call_back(app, op, twilio, world, OutboundPlan())
    assert call.to == OPERATOR_PHONE
    assert the_callback(app, world).state == CallbackState.REACHED


def test_an_anonymous_case_has_no_button_and_its_post_is_refused(
    app: Flask, world: World, twilio: MediaServer, live: str
) -> None:
    agent = signed_in(app, world, "agent")
    page = agent.get(f"/console/cases/{world.anonymous_id}")
    assert page.status_code == 200 and "call-back-button" not in page.get_data(as_text=True)
    with get_database(app).session() as session:
        agent_user = session.scalar(select(User).where(User.username == "agent"))
        assert agent_user is not None
        verify(agent_user, OPERATOR_PHONE)
    r = post(agent, f"/console/cases/{world.anonymous_id}/callback/call")
    assert r.status_code == 302
    assert [c for c, _m in flashes(agent)] == ["error"]
    with get_database(app).session() as session:
        assert (
            session.scalar(select(CallbackAttempt.id).where(CallbackAttempt.case_id == world.anonymous_id))
            is None
        )
    assert twilio.calls.calls == []


def test_who_may_call_back(app: Flask, world: World, twilio: MediaServer, live: str) -> None:
    # SC-Action staff not assigned to the case: no button, and the POST is refused.
    action = signed_in(app, world, "action50")
    with get_database(app).session() as session:
        verify(session.get(User, world.action50), "+66899998888")  # type: ignore[arg-type]
    page = action.get(f"/console/cases/{world.case_id}")
    assert page.status_code == 200 and "call-back-button" not in page.get_data(as_text=True)
    post(action, f"/console/cases/{world.case_id}/callback/call")
    assert [c for c, _m in flashes(action)] == ["error"]
    # Another province's SC-Operator does not even see the case.
    other = signed_in(app, world, "op10")
    assert post(other, f"/console/cases/{world.case_id}/callback/call").status_code == 404
    # The case's own SC-Operator without a phone on file is asked to add one first.
    op50b = signed_in(app, world, "op50b")
    page_b = op50b.get(f"/console/cases/{world.case_id}").get_data(as_text=True)
    assert "call-back-button" not in page_b and "หากจะโทรกลับผ่านสายด่วน" in page_b
    post(op50b, f"/console/cases/{world.case_id}/callback/call")
    assert [c for c, _m in flashes(op50b)] == ["error"]
    assert attempts(app, world) == [] and twilio.calls.calls == []
    # With one, the button is there.
    op = signed_in(app, world, "op50")
    assert "call-back-button" in op.get(f"/console/cases/{world.case_id}").get_data(as_text=True)


def test_attempts_show_in_bangkok_time_with_the_buddhist_year_and_can_be_logged_by_hand(
    app: Flask, world: World, twilio: MediaServer, live: str
) -> None:
    op = signed_in(app, world, "op50")
    call_back(app, op, twilio, world, OutboundPlan(reporter="no-answer"))
    [attempt] = attempts(app, world)
    local = attempt.started_at.astimezone(settings(app).timezone)
    page = op.get(f"/console/cases/{world.case_id}").get_data(as_text=True)
    assert f"{local.year + 543} {local:%H:%M}" in page and "ไม่รับสาย" in page and "สมชาย ใจดี" in page

    r = post(op, f"/console/cases/{world.case_id}/callback/log", outcome="reached", note="ผู้แจ้งโทรเข้ามาเอง")
    assert r.status_code == 302 and [c for c, _m in flashes(op)] == ["ok"]
    cb = the_callback(app, world)
    assert cb.state == CallbackState.REACHED and pending_reminders(app, cb.id) == []
    logged = attempts(app, world)[-1]
    assert logged.outcome == AttemptOutcome.LOGGED and logged.note == "ผู้แจ้งโทรเข้ามาเอง"
    assert "ผู้แจ้งโทรเข้ามาเอง" in op.get(f"/console/cases/{world.case_id}").get_data(as_text=True)


# ---- the number stays secret ------------------------------------------------------------------------------


def test_the_reporters_number_appears_nowhere_but_in_the_dial_twiml(
    app: Flask, world: World, twilio: MediaServer, live: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    op = signed_in(app, world, "op50")
    head = signed_in(app, world, "head50")
    calls = [
        call_back(app, op, twilio, world, OutboundPlan(reporter="no-answer")),
        call_back(app, op, twilio, world, OutboundPlan(reporter="voicemail")),
        call_back(app, op, twilio, world, OutboundPlan(reporter="answer")),
    ]

    def leaks(where: str, value: str) -> list[str]:
        return [f"{where}: {form!r}" for form in REPORTER_FORMS if form in value]

    found: list[str] = []
    # Every console page about the case, in both languages, for its operator and the head.
    for client in (op, head):
        for locale in ("th", "en"):
            post(client, "/console/locale", locale=locale, next="/console/")
            for path in (
                f"/console/cases/{world.case_id}",
                "/console/",
                "/console/notifications",
                "/console/me",
            ):
                page = client.get(path)
                found += leaks(f"page {path} ({locale})", page.get_data(as_text=True))
    # Every log line of the run (the bridge's own among them: the capture sees the server's threads).
    assert "call-back attempt 1: no_answer" in caplog.text
    found += leaks("log", caplog.text)
    found += [leak for record in caplog.records for leak in leaks("log record", record.getMessage())]
    # Every notification (all channels), and everything else stored in the database in plain text.
    with get_database(app).session() as session:
        for n in session.scalars(select(Notification)):
            found += leaks(f"notification {n.id}", f"{n.subject}\n{n.body}\n{n.link}")
        for e in session.scalars(select(CaseEvent)):
            found += leaks(f"case event {e.id}", repr(e.detail))
        for table in Base.metadata.sorted_tables:
            for row in session.execute(table.select()):
                found += leaks(f"table {table.name}", repr(tuple(row)))
    # Every URL: those the service gave Twilio, and every one Twilio requested.
    for call in calls:
        found += leaks("Calls.json Url", f"{call.url} {call.status_callback}")
        for request in call.result.requests():
            found += leaks("URL requested", request.url or "")
    for _method, path in twilio.requests():
        found += leaks("REST path", path)
    assert found == []

    # ... and yet the reporter's phone was the one dialled, every time, from the TwiML alone.
    for call in calls:
        [dialled] = call.result.of_kind("dial")
        assert dialled.text.split(" ")[0] == REPORTER


def test_simultaneous_deliveries_of_the_outcome_count_once(app: Flask, world: World, live: str) -> None:
    """The Dial action and the reporter leg's status callback (each delivered four times) race: one count."""
    with get_database(app).session() as session:
        cb = session.scalar(select(Callback).where(Callback.case_id == world.case_id))
        op50 = session.get(User, world.op50)
        assert cb is not None and op50 is not None
        attempt = callbacks.start_attempt(session, cb, op50, datetime.now(UTC))
        attempt.operator_call_sid, attempt.reporter_call_sid = "CA" + "1" * 32, "CA" + "2" * 32
        attempt_id = attempt.id
    common = {"AccountSid": ACCOUNT_SID}
    dial = {
        **common,
        "CallSid": "CA" + "1" * 32,
        "DialCallStatus": "no-answer",
        "DialCallSid": "CA" + "2" * 32,
    }
    leg = {**common, "CallSid": "CA" + "2" * 32, "ParentCallSid": "CA" + "1" * 32, "CallStatus": "no-answer"}
    deliveries = [("dial", dial), ("reporter-status", leg)] * 4
    barrier = threading.Barrier(len(deliveries))
    codes: list[int] = []

    def deliver(what: str, form: dict[str, str]) -> None:
        url = f"{PUBLIC_BASE}/twilio/bridge/{attempt_id}/{what}"
        barrier.wait()
        r = requests.post(
            live + urlsplit(url).path, data=form, headers={"X-Twilio-Signature": sign(url, form)}, timeout=30
        )
        codes.append(r.status_code)

    threads = [threading.Thread(target=deliver, args=d) for d in deliveries]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert codes == [200] * len(deliveries)
    cb_after = the_callback(app, world)
    assert (cb_after.attempts, cb_after.round, cb_after.state) == (1, 1, CallbackState.PENDING)
    [row] = attempts(app, world)
    assert row.outcome == AttemptOutcome.NO_ANSWER
    with get_database(app).session() as session:
        retries = session.scalar(select(func.count(CaseEvent.id)).where(CaseEvent.action == "callback_retry"))
    assert retries == 1
