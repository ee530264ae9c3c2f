"""The Twilio webhooks against a real database: signatures, retries, bad input, cases and the CLI.

Every request is signed like Twilio signs it, and every call is walked by following the action URLs of
our own TwiML, parsed as XML.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import MetaData, func, inspect, select, text
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.test import TestResponse

from app import MIGRATIONS_DIR, create_app, get_database, upgrade_database
from cases.models import Call, CallEvent, Case, Office, OfficeKind
from cases.reference import is_valid_reference
from infra.config import Config, ConfigError
from infra.crypto import FieldCipher
from telephony import endings, service
from telephony.flow import Flow
from telephony.validators import speak_digits
from telephony.webhooks import telephony
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PUBLIC_BASE,
    TwilioCaller,
    make_config,
    sign,
)
from transcription.models import Recording

CALLER_FORMS = ("+66812345678", "0812345678", "812345678", "+66 8x xxx x678")
OTHER_NUMBER = "0898765432"  # keyed by the caller as the number to call back on
OTHER_FORMS = ("+66898765432", "0898765432", "898765432", "+66 8x xxx x432")
FERNET_TOKEN = re.compile(r"gAAAAA[A-Za-z0-9_\-]+=*")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
EXPORT_FIELDS = {
    "reference",
    "status",
    "category",
    "ivr_category",
    "language",
    "province_code",
    "office_code",
    "callback_requested",
    "caller_number_masked",
    "opened_by",
    "recording_sid",
    "recording_status",
    "callback_due_at",
    "callback_state",
    "transcript_status",
    "transcript_text",
    "created_at",
}


# ---- walking a call through our own TwiML -----------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """What Twilio posts to a <Record> action: the recording, and the key that ended it."""

    sid: str = field(default_factory=lambda: "RE" + uuid.uuid4().hex)
    duration: int = 12
    digits: str = "#"

    def form(self) -> dict[str, str]:
        url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{self.sid}"
        return {
            "RecordingSid": self.sid,
            "RecordingUrl": url,
            "RecordingDuration": str(self.duration),
            "Digits": self.digits,
        }


NO_INPUT = "<no input>"  # the caller keyed nothing: Twilio follows the <Redirect> after the <Gather>
Input = str | Recorded


def xml_root(data: bytes | str) -> ET.Element:
    return ET.fromstring(data)  # noqa: S314 - our own service's TwiML, in a test


@dataclass
class Twiml:
    """One parsed answer; constructing it asserts it is what Twilio needs to keep the call going."""

    response: TestResponse
    root: ET.Element = field(init=False)

    def __post_init__(self) -> None:
        assert self.response.status_code == 200, self.response.get_data(as_text=True)
        assert self.response.mimetype == "text/xml"
        self.root = xml_root(self.response.data)
        assert self.root.tag == "Response"

    @property
    def body(self) -> str:
        return self.response.get_data(as_text=True)

    def verbs(self) -> list[str]:
        return [child.tag for child in self.root]

    def find(self, verb: str) -> ET.Element:
        found = self.root.find(verb)
        assert found is not None, f"no <{verb}> in {self.body}"
        return found

    def action(self, verb: str) -> str:
        return self.find(verb).attrib["action"]

    def redirect(self) -> str:
        return self.find("Redirect").text or ""

    def says(self) -> list[str]:
        return [el.text or "" for el in self.root.iter("Say")]

    def say_languages(self) -> set[str]:
        return {el.attrib["language"] for el in self.root.iter("Say")}


def answer(caller: TwilioCaller, step: Twiml, inp: Input) -> Twiml:
    """Do what Twilio does with the caller's input at this step of our TwiML."""
    if inp == NO_INPUT:
        url, form = step.redirect(), {}
    elif isinstance(inp, Recorded):
        url, form = step.action("Record"), inp.form()
    else:
        url, form = step.action("Gather"), {"Digits": inp}
    # Twilio calls exactly this URL and signs it: it must be the public one, never the local one.
    assert url.startswith(PUBLIC_BASE + "/twilio/"), url
    return Twiml(caller.post(url, **form))


def walk(caller: TwilioCaller, *inputs: Input) -> Twiml:
    """Ring the hotline and answer each step in turn; return the last answer."""
    step = Twiml(caller.post("/twilio/voice"))
    for inp in inputs:
        step = answer(caller, step, inp)
    return step


def hang_up(caller: TwilioCaller, status: str = "completed") -> TestResponse:
    response = caller.post("/twilio/status", CallStatus=status, CallDuration="95")
    assert response.status_code == 200
    return response


def recording_status(caller: TwilioCaller, rec: Recorded, status: str = "completed") -> TestResponse:
    form = rec.form()
    del form["Digits"]
    return caller.post("/twilio/recording-status", RecordingStatus=status, **form)


def post_signed(client: FlaskClient, path: str, form: dict[str, str]) -> TestResponse:
    """A Twilio-signed POST of exactly this form (the caller fixture always adds the standard fields)."""
    return client.post(path, data=form, headers={"X-Twilio-Signature": sign(PUBLIC_BASE + path, form)})


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


# ---- looking into the database ------------------------------------------------------------------


def find_call(app: Flask, call_sid: str) -> Call | None:
    with get_database(app).session() as session:
        return session.scalar(select(Call).where(Call.call_sid == call_sid))


def events_of(app: Flask, call_sid: str) -> list[tuple[str, str, dict[str, Any]]]:
    with get_database(app).session() as session:
        rows = session.execute(
            select(CallEvent.node, CallEvent.kind, CallEvent.detail)
            .join(Call, Call.id == CallEvent.call_id)
            .where(Call.call_sid == call_sid)
            .order_by(CallEvent.id)
        )
        return [(node, kind, dict(detail)) for node, kind, detail in rows]


def count(app: Flask, model: type[Any]) -> int:
    with get_database(app).session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def row_counts(app: Flask) -> dict[str, int]:
    engine = get_database(app).engine
    with engine.connect() as conn:
        return {
            name: int(conn.execute(text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one())  # noqa: S608 - table names from the schema
            for name in inspect(engine).get_table_names()
        }


def stored_rows(app: Flask) -> str:
    """Every value of every row of every table (but the public offices), one `table.column=value` a line."""
    engine = get_database(app).engine
    metadata = MetaData()
    metadata.reflect(engine)
    chunks: list[str] = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name == "offices":
                continue  # 1006 rows of public names, loaded before any call
            for row in conn.execute(select(table)).mappings():
                chunks.extend(f"{table.name}.{col}={value!r}" for col, value in row.items())
    return "\n".join(chunks)


def stored_text(app: Flask, config: Config) -> str:
    """stored_rows(), with every encrypted value in them decrypted and appended."""
    dump = stored_rows(app)
    cipher = FieldCipher(config.data_key)
    decrypted = [cipher.decrypt(token) for token in FERNET_TOKEN.findall(dump)]
    return dump + "\n" + "\n".join(decrypted)


def export_cases(app: Flask) -> list[dict[str, Any]]:
    result = app.test_cli_runner().invoke(args=["cases", "export", "--format", "json"])
    assert result.exit_code == 0, result.output
    records: list[dict[str, Any]] = json.loads(result.stdout)
    return records


def flow_of(app: Flask) -> Flow:
    flow: Flow = telephony(app).flow
    return flow


def break_table(app: Flask, name: str) -> None:
    """Make the database fail for one table, the way a lost table or a broken migration would."""
    with get_database(app).engine.begin() as conn:
        conn.execute(text(f'ALTER TABLE "{name}" RENAME TO "{name}_gone"'))


def db_down(*_args: Any, **_kwargs: Any) -> Any:
    raise OperationalError("SELECT 1", {}, ConnectionError("database is unreachable"))


# The paths callers take; each list is the input at each step after the welcome.
FULL_CALL: tuple[Input, ...] = ("1", "10", "1", "1")  # violence, Bangkok, confirmed, call back this number


@pytest.fixture
def caller(new_caller: Callable[..., TwilioCaller]) -> TwilioCaller:
    return new_caller()


# ---- signatures ------------------------------------------------------------------------------------


def test_a_signed_request_is_answered(caller: TwilioCaller, app: Flask) -> None:
    step = Twiml(caller.post("/twilio/voice"))
    assert step.verbs() == ["Say", "Gather", "Redirect"]
    assert find_call(app, caller.call_sid) is not None


def _bad_signatures(caller: TwilioCaller) -> dict[str, dict[str, str]]:
    form = caller.params()
    url = PUBLIC_BASE + "/twilio/voice"
    good = sign(url, form)
    return {
        "wrong": {"X-Twilio-Signature": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")},
        "missing": {},
        "empty": {"X-Twilio-Signature": ""},
        "another token": {"X-Twilio-Signature": sign(url, form, token="not-our-token-0123456789abcdef")},
        "tampered": {"X-Twilio-Signature": sign(url, {**form, "From": "+66811111111"})},
        "local url": {"X-Twilio-Signature": sign("http://localhost/twilio/voice", form)},
        "http not https": {"X-Twilio-Signature": sign("http://hotline.example.org/twilio/voice", form)},
        "other host": {"X-Twilio-Signature": sign("https://evil.example.org/twilio/voice", form)},
    }


@pytest.mark.parametrize(
    "kind",
    ["wrong", "missing", "empty", "another token", "tampered", "local url", "http not https", "other host"],
)
def test_a_bad_signature_is_refused_without_a_trace_of_the_caller(
    kind: str, caller: TwilioCaller, client: FlaskClient, app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    before = row_counts(app)
    headers = _bad_signatures(caller)[kind]
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    response = client.post("/twilio/voice", data=caller.params(), headers=headers)
    assert response.status_code == 403
    assert row_counts(app) == before
    assert len(caplog.records) == 1, caplog.text
    assert caplog.records[0].levelno == logging.WARNING
    line = caplog.records[0].getMessage()
    assert "signature" in line
    for form in CALLER_FORMS:
        assert form not in line


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/twilio/ivr?seq=1&ev=gather", {"Digits": "1"}),
        ("/twilio/status", {"CallStatus": "completed"}),
        ("/twilio/recording-status", {"RecordingStatus": "completed"}),
        ("/twilio/rescue-recording", {"Digits": "#"}),
    ],
)
def test_every_webhook_checks_the_signature(
    path: str, extra: dict[str, str], caller: TwilioCaller, client: FlaskClient, app: Flask, config: Config
) -> None:
    walk(caller)
    rec = Recorded()
    form = {**caller.params(), **extra, **{k: v for k, v in rec.form().items() if k != "Digits"}}
    before = row_counts(app)
    state = find_call(app, caller.call_sid)
    assert state is not None
    signed_elsewhere = sign("http://localhost" + path, form)
    response = client.post(path, data=form, headers={"X-Twilio-Signature": signed_elsewhere})
    assert response.status_code == 403
    assert row_counts(app) == before
    after = find_call(app, caller.call_sid)
    assert after is not None
    assert (after.seq, after.status, after.ivr_state) == (state.seq, state.status, state.ivr_state)
    assert not config.spool_dir.exists() or not any(config.spool_dir.iterdir())


def test_behind_a_proxy_the_public_url_is_what_counts(caller: TwilioCaller, client: FlaskClient) -> None:
    # The test client talks to http://localhost, as a TLS-terminating proxy would.
    form = caller.params()
    local = client.post(
        "/twilio/voice",
        data=form,
        headers={"X-Twilio-Signature": sign("http://localhost/twilio/voice", form)},
    )
    assert local.status_code == 403
    public = client.post(
        "/twilio/voice", data=form, headers={"X-Twilio-Signature": sign(PUBLIC_BASE + "/twilio/voice", form)}
    )
    Twiml(public)


def test_forwarded_headers_do_not_move_the_signed_url(caller: TwilioCaller, client: FlaskClient) -> None:
    form = caller.params()
    forged = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example.org",
        "Host": "evil.example.org",
        "X-Twilio-Signature": sign("https://evil.example.org/twilio/voice", form),
    }
    assert client.post("/twilio/voice", data=form, headers=forged).status_code == 403


def test_a_public_base_url_with_a_trailing_slash_still_validates(tmp_path: Path) -> None:
    config = make_config(tmp_path, env={"PUBLIC_BASE_URL": PUBLIC_BASE + "/"})
    upgrade_database(config.database_url)
    app = create_app(config)
    try:
        caller = TwilioCaller(app.test_client(), "CA" + uuid.uuid4().hex)
        step = Twiml(caller.post("/twilio/voice"))
        assert step.action("Gather").startswith(PUBLIC_BASE + "/twilio/ivr?")
    finally:
        get_database(app).dispose()


def test_the_query_string_is_part_of_the_signed_url(
    caller: TwilioCaller, client: FlaskClient, app: Flask
) -> None:
    step = walk(caller)
    action = step.action("Gather")
    path = urlsplit(action).path + "?" + urlsplit(action).query
    form = caller.params(Digits="1")
    for signed_url in (
        PUBLIC_BASE + "/twilio/ivr",  # query left out
        PUBLIC_BASE + "/twilio/ivr?seq=2&ev=gather",  # another step
        PUBLIC_BASE + "/twilio/ivr?ev=gather&seq=1",  # same values, not the URL Twilio called
    ):
        response = client.post(path, data=form, headers={"X-Twilio-Signature": sign(signed_url, form)})
        assert response.status_code == 403, signed_url
    call = find_call(app, caller.call_sid)
    assert call is not None and call.seq == 1
    Twiml(client.post(path, data=form, headers={"X-Twilio-Signature": sign(action, form)}))
    call = find_call(app, caller.call_sid)
    assert call is not None and call.seq == 2


# ---- retried webhooks change nothing twice ---------------------------------------------------------


def test_the_same_incoming_call_five_times_is_one_call(caller: TwilioCaller, app: Flask) -> None:
    answers = [Twiml(caller.post("/twilio/voice")).body for _ in range(5)]
    assert len(set(answers)) == 1
    assert count(app, Call) == 1
    call = find_call(app, caller.call_sid)
    assert call is not None and call.seq == 1
    assert [kind for _n, kind, _d in events_of(app, caller.call_sid)] == ["call_started"]


def test_the_same_key_five_times_is_applied_once(caller: TwilioCaller, app: Flask) -> None:
    menu = walk(caller)
    answers = [answer(caller, menu, "1").body for _ in range(5)]
    assert len(set(answers)) == 1
    call = find_call(app, caller.call_sid)
    assert call is not None
    assert call.seq == 2
    assert call.ivr_state["node"] == "ask_province"
    assert call.ivr_state["vars"]["category"] == "violence"
    events = events_of(app, caller.call_sid)
    assert [e for e in events if e[0] == "main_menu"] == [
        ("main_menu", "key", {"key": "1"}),
        ("main_menu", "set", {"category": "violence"}),
    ]


def test_a_stale_step_changes_nothing_and_hears_nothing_later(caller: TwilioCaller, app: Flask) -> None:
    menu = walk(caller)
    province = answer(caller, menu, "1")
    answer(caller, province, "50")
    before = events_of(app, caller.call_sid)
    # The menu request again, two steps on: nobody waits on it (Twilio follows the latest answer only).
    again = answer(caller, menu, "3")
    # A neutral answer: not the province read-back the call is at now (telephony.replay).
    assert again.verbs() == []
    call = find_call(app, caller.call_sid)
    assert call is not None and call.seq == 3 and call.ivr_state["vars"]["category"] == "violence"
    assert events_of(app, caller.call_sid) == before


def test_sending_the_message_five_times_opens_one_case(caller: TwilioCaller, app: Flask) -> None:
    confirm = walk(caller, *FULL_CALL, Recorded())
    answers = [answer(caller, confirm, "1") for _ in range(5)]
    assert len({a.body for a in answers}) == 1
    assert answers[0].verbs() == ["Say", "Hangup"]
    assert count(app, Case) == 1
    assert [e for e in events_of(app, caller.call_sid) if e[1] == "case_opened"].__len__() == 1


def test_the_same_recording_five_times_is_one_recording(caller: TwilioCaller, app: Flask) -> None:
    rec = Recorded()
    record = walk(caller, *FULL_CALL)
    confirms = [answer(caller, record, rec) for _ in range(5)]
    assert len({c.body for c in confirms}) == 1
    for _ in range(5):
        assert recording_status(caller, rec).status_code == 200
    with get_database(app).session() as session:
        rows = session.scalars(select(Recording)).all()
    assert [(r.recording_sid, r.status, r.duration_s) for r in rows] == [(rec.sid, "completed", 12)]
    assert [e[1] for e in events_of(app, caller.call_sid)].count("recorded") == 1


def test_the_status_callback_twice_ends_the_call_once(caller: TwilioCaller, app: Flask) -> None:
    walk(caller, *FULL_CALL, Recorded())
    hang_up(caller)
    hang_up(caller)
    events = events_of(app, caller.call_sid)
    assert [e[1] for e in events].count("call_ended") == 1
    assert [e[1] for e in events].count("case_opened") == 1
    assert count(app, Case) == 1
    call = find_call(app, caller.call_sid)
    assert call is not None and call.status == "completed" and call.duration_s == 95


@pytest.mark.parametrize("look", ["_read_call", "_find_call"])
def test_a_twin_request_that_created_the_call_first_is_answered_alike(
    look: str, caller: TwilioCaller, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Twiml(caller.post("/twilio/voice"))
    # _read_call: the read outside the write lock; _find_call: the look under it (no prepared path).
    real_look = getattr(service, look)
    looks = iter([None])  # the twin's row is not yet visible at our first look: we insert and collide

    def racing_look(session: Any, call_sid: str) -> Any:
        return next(looks, real_look(session, call_sid)) if call_sid == caller.call_sid else None

    monkeypatch.setattr(service, look, racing_look)
    if look == "_find_call":
        monkeypatch.setattr(service, "prepare_incoming_call", lambda *_args: None)
    second = Twiml(caller.post("/twilio/voice"))
    assert next(looks, "used") == "used"
    assert second.body == first.body
    assert count(app, Call) == 1
    assert [e[1] for e in events_of(app, caller.call_sid)] == ["call_started"]


def test_five_identical_incoming_calls_at_once_make_one_call(served_app: str, app: Flask) -> None:
    caller = TwilioCaller(app.test_client(), "CA" + uuid.uuid4().hex)
    form = caller.params()
    headers = {"X-Twilio-Signature": sign(PUBLIC_BASE + "/twilio/voice", form)}
    start = threading.Barrier(5)

    def ring() -> tuple[int, str, str]:
        start.wait(timeout=10)
        response = requests.post(served_app + "/twilio/voice", data=form, headers=headers, timeout=30)
        return response.status_code, response.headers["Content-Type"], response.text

    with ThreadPoolExecutor(max_workers=5) as pool:
        results = [f.result() for f in [pool.submit(ring) for _ in range(5)]]
    assert {status for status, _ct, _body in results} == {200}
    assert all(ct.startswith("text/xml") for _s, ct, _b in results)
    assert len({body for _s, _ct, body in results}) == 1
    assert xml_root(results[0][2]).find("Gather") is not None
    assert count(app, Call) == 1
    assert [e[1] for e in events_of(app, caller.call_sid)] == ["call_started"]


def test_a_twin_key_press_saved_first_is_answered_alike(
    caller: TwilioCaller, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    menu = walk(caller)
    real_prepare, real_save = service.prepare_caller_action, service.save_prepared
    prepared: list[object] = []
    saved: list[bool] = []
    twin: list[Twiml] = []

    def racing_prepare(*args: Any) -> Any:
        step = real_prepare(*args)
        prepared.append(step)
        if len(prepared) == 1:
            # The twin reads the same step and saves it while this request still has its own in hand.
            twin.append(answer(caller, menu, "1"))
        return step

    def spying_save(*args: Any) -> bool:
        saved.append(real_save(*args))
        return saved[-1]

    monkeypatch.setattr(service, "prepare_caller_action", racing_prepare)
    monkeypatch.setattr(service, "save_prepared", spying_save)
    first = answer(caller, menu, "1")
    assert all(isinstance(step, service.Step) for step in prepared) and len(prepared) == 2
    assert saved == [True, False]  # the twin's write won; ours found the call moved on
    assert first.body == twin[0].body
    call = find_call(app, caller.call_sid)
    assert call is not None and call.seq == 2 and call.ivr_state["node"] == "ask_province"
    assert [e for e in events_of(app, caller.call_sid) if e[0] == "main_menu"] == [
        ("main_menu", "key", {"key": "1"}),
        ("main_menu", "set", {"category": "violence"}),
    ]


def test_a_write_to_the_call_between_read_and_save_sends_the_step_under_the_lock(
    caller: TwilioCaller, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    menu = walk(caller)
    real_prepare, real_save = service.prepare_caller_action, service.save_prepared
    saved: list[bool] = []

    def racing_prepare(*args: Any) -> Any:
        step = real_prepare(*args)
        # Like a rescue message: the state changes, the seq does not.
        with get_database(app).writing() as session:
            call = session.scalars(select(Call).where(Call.call_sid == caller.call_sid)).one()
            call.ivr_state = {**call.ivr_state, "vars": {**call.ivr_state["vars"], "recording_sid": "RE1"}}
        return step

    def spying_save(*args: Any) -> bool:
        saved.append(real_save(*args))
        return saved[-1]

    monkeypatch.setattr(service, "prepare_caller_action", racing_prepare)
    monkeypatch.setattr(service, "save_prepared", spying_save)
    step = answer(caller, menu, "1")
    assert saved == [False]  # the prepared step was not saved over the other write ...
    assert step.find("Gather") is not None
    call = find_call(app, caller.call_sid)
    assert call is not None and call.seq == 2  # ... the locked path applied it on top of that write
    assert call.ivr_state["node"] == "ask_province"
    assert call.ivr_state["vars"] == {"recording_sid": "RE1", "category": "violence"}


def _at_once(served_app: str, path: str, form: dict[str, str], times: int = 5) -> list[tuple[int, str]]:
    """The same signed webhook, delivered `times` times at the same moment."""
    headers = {"X-Twilio-Signature": sign(PUBLIC_BASE + path, form)}
    start = threading.Barrier(times)

    def post() -> tuple[int, str]:
        start.wait(timeout=10)
        response = requests.post(served_app + path, data=form, headers=headers, timeout=30)
        return response.status_code, response.text

    with ThreadPoolExecutor(max_workers=times) as pool:
        return [f.result() for f in [pool.submit(post) for _ in range(times)]]


def test_the_same_key_five_times_at_once_is_applied_once(served_app: str, app: Flask) -> None:
    caller = TwilioCaller(app.test_client(), "CA" + uuid.uuid4().hex)
    walk(caller)
    results = _at_once(served_app, "/twilio/ivr?seq=1&ev=gather", caller.params(Digits="1"))
    assert {status for status, _body in results} == {200}
    assert len({body for _status, body in results}) == 1
    call = find_call(app, caller.call_sid)
    assert call is not None and call.seq == 2 and call.ivr_state["node"] == "ask_province"
    assert [e[1] for e in events_of(app, caller.call_sid) if e[0] == "main_menu"] == ["key", "set"]


def test_the_same_recording_five_times_at_once_is_noted_once(served_app: str, app: Flask) -> None:
    caller = TwilioCaller(app.test_client(), "CA" + uuid.uuid4().hex)
    record = walk(caller, *FULL_CALL)
    rec = Recorded()
    action = urlsplit(record.action("Record"))
    path = f"{action.path}?{action.query}"
    results = _at_once(served_app, path, caller.params(**rec.form()))
    assert {status for status, _body in results} == {200}
    assert len({body for _status, body in results}) == 1
    with get_database(app).session() as session:
        assert session.scalars(select(Recording.recording_sid)).all() == [rec.sid]
    assert [e[1] for e in events_of(app, caller.call_sid)].count("recorded") == 1


def test_sending_five_times_at_once_opens_one_case(served_app: str, app: Flask) -> None:
    caller = TwilioCaller(app.test_client(), "CA" + uuid.uuid4().hex)
    confirm = walk(caller, *FULL_CALL, Recorded())
    action = urlsplit(confirm.action("Gather"))
    results = _at_once(served_app, f"{action.path}?{action.query}", caller.params(Digits="1"))
    assert {status for status, _body in results} == {200}
    assert len({body for _status, body in results}) == 1
    assert xml_root(results[0][1]).find("Hangup") is not None
    assert count(app, Case) == 1
    assert [e[1] for e in events_of(app, caller.call_sid)].count("case_opened") == 1


def test_a_read_session_does_not_wait_for_the_writer(caller: TwilioCaller, app: Flask) -> None:
    walk(caller)
    db = get_database(app)
    seen: list[int] = []

    def read() -> None:
        with db.reading() as session:
            seen.append(session.scalars(select(Call.seq).where(Call.call_sid == caller.call_sid)).one())

    with db.writing() as session:
        session.execute(text("UPDATE calls SET seq = 99"))
        reader = threading.Thread(target=read)
        reader.start()
        # Under BEGIN IMMEDIATE the reader would queue behind this transaction (busy timeout: 30 s).
        reader.join(timeout=5)
        assert not reader.is_alive()
    assert seen == [1]  # what was committed when it read, not the writer's work in progress


def test_a_read_session_cannot_write_and_leaves_its_connection_writable(
    caller: TwilioCaller, app: Flask
) -> None:
    walk(caller)
    db = get_database(app)
    # PostgreSQL: "read-only transaction"; SQLite (query_only): "attempt to write a readonly database".
    with pytest.raises(DBAPIError, match=r"read-only|readonly"), db.reading() as conn:
        conn.execute(text("UPDATE calls SET seq = 99"))
    for _ in range(12):  # the reader's connection went back to the pool: whichever comes next must write
        with db.writing() as session:
            session.execute(text("UPDATE calls SET duration_s = 1"))
    call = find_call(app, caller.call_sid)
    assert call is not None and call.seq == 1 and call.duration_s == 1


# ---- bad input never costs a caller their message ----------------------------------------------------


def _assert_rescue(step: Twiml) -> None:
    """The rescue answer: apologise, record to the rescue URL, thank, hang up."""
    assert step.verbs() == ["Say", "Record", "Say", "Hangup"]
    assert step.action("Record") == PUBLIC_BASE + "/twilio/rescue-recording"
    assert step.find("Record").attrib["recordingStatusCallback"] == PUBLIC_BASE + "/twilio/recording-status"


def test_an_action_for_an_unknown_call_takes_a_message(caller: TwilioCaller, app: Flask) -> None:
    step = Twiml(caller.post("/twilio/ivr?seq=3&ev=gather", Digits="1"))
    _assert_rescue(step)
    assert count(app, Call) == 0


@pytest.mark.parametrize("path", ["/twilio/voice", "/twilio/ivr?seq=1&ev=gather", "/twilio/rescue-recording"])
@pytest.mark.parametrize(
    "call_sid", [None, "", "CA123", "CA" + "g" * 32, "CA" + "a" * 32 + "\n", "' OR 1=1 --"]
)
def test_a_missing_or_malformed_call_sid_still_gets_twiml(
    path: str, call_sid: str | None, caller: TwilioCaller, client: FlaskClient, app: Flask
) -> None:
    form = caller.params(Digits="1")
    if call_sid is None:
        del form["CallSid"]
    else:
        form["CallSid"] = call_sid
    step = Twiml(post_signed(client, path, form))
    if path == "/twilio/rescue-recording":
        assert step.verbs() == ["Say", "Hangup"]  # the message itself is the request: thank, never loop
    else:
        _assert_rescue(step)
    assert count(app, Call) == 0


@pytest.mark.parametrize(
    "digits",
    [
        "abc",
        "12345678901234567890123456789012345678901234567890123456789012345",
        "๑",  # Thai digit one
        "١",  # Arabic-Indic digit one
        "1\n",
        "1 ",
        "\u0000",
        "☎️",
    ],
)
def test_garbage_keys_count_as_an_invalid_key(digits: str, caller: TwilioCaller, app: Flask) -> None:
    menu = walk(caller)
    step = answer(caller, menu, digits)
    invalid_hint = flow_of(app).nodes["main_menu"].invalid
    assert invalid_hint is not None
    assert step.says()[0] == invalid_hint.text["th"]
    assert query_of(step.action("Gather"))["seq"] == ["2"]
    call = find_call(app, caller.call_sid)
    assert call is not None
    assert call.ivr_state["node"] == "main_menu" and call.ivr_state["tries"] == 1
    assert events_of(app, caller.call_sid)[-1] == ("main_menu", "invalid", {"try": "1"})


def test_garbage_keys_three_times_go_on_as_unspecified(caller: TwilioCaller, app: Flask) -> None:
    step = walk(caller, "abc", "x", "??")
    assert step.find("Gather").attrib["numDigits"] == "2"  # the province question
    call = find_call(app, caller.call_sid)
    assert call is not None and call.ivr_state["vars"]["category"] == "unspecified"


@pytest.mark.parametrize("digits", ["abc", "1\n0", "๑๐", "10" * 40])
def test_garbage_province_keys_are_invalid(digits: str, caller: TwilioCaller, app: Flask) -> None:
    province = walk(caller, "1")
    step = answer(caller, province, digits)
    hint = flow_of(app).nodes["ask_province"].invalid
    assert hint is not None and step.says()[0] == hint.text["th"]
    assert events_of(app, caller.call_sid)[-1] == ("ask_province", "invalid", {"try": "1"})


@pytest.mark.parametrize(
    "query",
    [
        "ev=gather",
        "seq=&ev=gather",
        "seq=abc&ev=gather",
        "seq=-1&ev=gather",
        "seq=1.0&ev=gather",
        "seq=%C2%B2&ev=gather",
        "seq=%D9%A1&ev=gather",
        "seq=" + "1" * 5000 + "&ev=gather",
        "seq=1&seq=2&ev=gather",
    ],
)
def test_a_missing_or_odd_seq_repeats_the_last_answer(
    query: str, caller: TwilioCaller, app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    menu = walk(caller)
    caplog.set_level(logging.INFO)
    step = Twiml(caller.post(f"{PUBLIC_BASE}/twilio/ivr?{query}", Digits="1"))
    if query.startswith("seq=1&"):
        # Only the first seq counts; it is the current step, so this is the caller's key.
        assert query_of(step.action("Gather"))["seq"] == ["2"]
        return
    assert step.body == menu.body
    call = find_call(app, caller.call_sid)
    assert call is not None and call.seq == 1 and call.ivr_state["node"] == "main_menu"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("ev", ["", "bogus", "GATHER", "record%00"])
def test_an_unknown_event_kind_keeps_the_call_going(ev: str, caller: TwilioCaller, app: Flask) -> None:
    walk(caller)
    step = Twiml(caller.post(f"{PUBLIC_BASE}/twilio/ivr?seq=1&ev={ev}", Digits="1"))
    # Treated as no input at the menu: asked again, not moved on and not hung up on.
    assert step.verbs() == ["Gather", "Redirect"]
    call = find_call(app, caller.call_sid)
    assert call is not None and call.ivr_state["node"] == "main_menu"


def test_a_lost_calls_table_gives_the_rescue_on_a_new_call(
    caller: TwilioCaller, app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    break_table(app, "calls")
    caplog.set_level(logging.INFO)
    _assert_rescue(Twiml(caller.post("/twilio/voice")))
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    for form in CALLER_FORMS:
        assert form not in caplog.text


@pytest.mark.parametrize("failing", ["_read_call", "_insert_events"])
def test_a_database_failure_mid_call_gives_the_rescue(
    failing: str, caller: TwilioCaller, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    menu = walk(caller)
    before = events_of(app, caller.call_sid)
    # The read outside the write lock, or the guarded write after its UPDATE matched.
    monkeypatch.setattr(service, failing, db_down)
    _assert_rescue(answer(caller, menu, "1"))
    monkeypatch.undo()
    call = find_call(app, caller.call_sid)
    assert call is not None and call.seq == 1  # nothing half-applied
    assert call.ivr_state["node"] == "main_menu"
    assert events_of(app, caller.call_sid) == before


def test_a_database_failure_on_a_new_call_leaves_no_half_call(
    caller: TwilioCaller, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "_insert_events", db_down)  # after the call's row went in
    _assert_rescue(Twiml(caller.post("/twilio/voice")))
    monkeypatch.undo()
    assert count(app, Call) == 0
    assert Twiml(caller.post("/twilio/voice")).find("Gather") is not None
    assert [e[1] for e in events_of(app, caller.call_sid)] == ["call_started"]


def test_a_failing_case_service_gives_the_rescue_and_the_message_is_kept(
    caller: TwilioCaller, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Recorded()
    confirm = walk(caller, *FULL_CALL, first)
    monkeypatch.setattr(endings, "open_draft_case", db_down)
    rescue = answer(caller, confirm, "1")
    _assert_rescue(rescue)
    monkeypatch.undo()
    rec = Recorded()
    thanks = Twiml(caller.post(rescue.action("Record"), **rec.form()))
    assert thanks.verbs() == ["Say", "Hangup"]
    [case] = export_cases(app)
    assert case["opened_by"] == "rescue"
    assert case["category"] == "violence" and case["office_code"] == "10"
    assert case["recording_sid"] == rec.sid
    # The message recorded before the fault stays with the case, beside the one taken after it.
    with get_database(app).session() as session:
        linked = session.scalars(select(Recording.recording_sid).where(Recording.case_id.is_not(None))).all()
    assert sorted(linked) == sorted([first.sid, rec.sid])


def test_the_rescue_recording_opens_a_case(caller: TwilioCaller, app: Flask) -> None:
    rescue = Twiml(caller.post("/twilio/ivr?seq=7&ev=gather", Digits="1"))
    _assert_rescue(rescue)
    rec = Recorded(duration=30)
    thanks = Twiml(caller.post(rescue.action("Record"), **rec.form()))
    assert thanks.verbs() == ["Say", "Hangup"]
    assert thanks.says() == [flow_of(app).rescue.thanks.text["th"]]
    # Twilio may post the same action again: still one case.
    Twiml(caller.post(rescue.action("Record"), **rec.form()))
    [case] = export_cases(app)
    assert case["opened_by"] == "rescue"
    assert case["recording_sid"] == rec.sid
    assert case["category"] == "unspecified" and case["office_code"] == "central"
    assert case["caller_number_masked"] is None  # no call back was asked for


def test_a_message_for_a_call_we_lost_is_kept_as_a_rescue_message(caller: TwilioCaller, app: Flask) -> None:
    rec = Recorded(duration=30)
    thanks = Twiml(caller.post("/twilio/ivr?seq=7&ev=record", **rec.form()))
    # The caller already spoke: they are thanked, not asked to say it all again.
    assert thanks.verbs() == ["Say", "Hangup"]
    assert thanks.says() == [flow_of(app).rescue.thanks.text["th"]]
    [case] = export_cases(app)
    assert (case["opened_by"], case["recording_sid"]) == ("rescue", rec.sid)
    call = find_call(app, caller.call_sid)
    assert call is not None and call.caller_number_masked == "+66 8x xxx x678"


def test_a_second_rescue_message_joins_the_case_of_the_first(caller: TwilioCaller, app: Flask) -> None:
    first, second = Recorded(), Recorded()
    Twiml(caller.post("/twilio/rescue-recording", **first.form()))
    Twiml(caller.post("/twilio/rescue-recording", **second.form()))
    [case] = export_cases(app)
    with get_database(app).session() as session:
        linked = session.scalars(
            select(Recording.recording_sid).where(Recording.case_id.is_not(None)).order_by(Recording.id)
        ).all()
    assert linked == [first.sid, second.sid]
    assert case["recording_sid"] == second.sid


def test_an_empty_rescue_recording_opens_no_case(caller: TwilioCaller, app: Flask) -> None:
    thanks = Twiml(caller.post("/twilio/rescue-recording", **Recorded(duration=0).form()))
    assert thanks.verbs() == ["Say", "Hangup"]
    assert count(app, Case) == 0


def test_the_rescue_recording_is_spooled_when_the_database_is_down(
    caller: TwilioCaller, app: Flask, config: Config
) -> None:
    break_table(app, "calls")
    rec = Recorded()
    thanks = Twiml(caller.post("/twilio/rescue-recording", **rec.form()))
    assert thanks.verbs() == ["Say", "Hangup"]
    assert thanks.says() == [flow_of(app).rescue.thanks.text["th"]]
    [spooled] = list(config.spool_dir.iterdir())
    assert stat.S_IMODE(spooled.stat().st_mode) == 0o600
    content = spooled.read_text(encoding="utf-8")
    kept = json.loads(content)
    assert (kept["CallSid"], kept["RecordingSid"]) == (caller.call_sid, rec.sid)
    assert kept["RecordingUrl"] == rec.form()["RecordingUrl"]
    for form in CALLER_FORMS:
        assert form not in content


@pytest.mark.parametrize("path", ["/twilio/status", "/twilio/recording-status"])
def test_status_callbacks_are_spooled_when_the_database_fails(
    path: str, caller: TwilioCaller, app: Flask, config: Config
) -> None:
    walk(caller)
    break_table(app, "calls")
    break_table(app, "recordings")
    response = caller.post(path, CallStatus="completed", RecordingStatus="completed", **Recorded().form())
    assert response.status_code == 200
    assert xml_root(response.data).tag == "Response"
    [spooled] = list(config.spool_dir.iterdir())
    kept = json.loads(spooled.read_text(encoding="utf-8"))
    assert kept["kind"] == ("call_status" if path == "/twilio/status" else "recording_status")
    assert kept["CallSid"] == caller.call_sid


@pytest.mark.parametrize("path", ["/twilio/status", "/twilio/recording-status"])
def test_status_callbacks_report_a_failure_nothing_could_keep(
    path: str, caller: TwilioCaller, app: Flask, config: Config
) -> None:
    walk(caller)
    break_table(app, "calls")
    break_table(app, "recordings")
    config.spool_dir.parent.mkdir(parents=True, exist_ok=True)
    config.spool_dir.write_text("not a folder")  # the spool cannot be written either
    response = caller.post(path, CallStatus="completed", RecordingStatus="completed", **Recorded().form())
    assert response.status_code == 500
    assert xml_root(response.data).tag == "Response"


def test_status_callbacks_for_unknown_or_malformed_calls_are_accepted(
    caller: TwilioCaller, client: FlaskClient, app: Flask
) -> None:
    assert hang_up(caller).status_code == 200
    form = caller.params(CallStatus="completed")
    del form["CallSid"]
    assert post_signed(client, "/twilio/status", form).status_code == 200
    assert recording_status(caller, Recorded(), status="exploded").status_code == 200
    assert row_counts(app)["calls"] == 0 and row_counts(app)["recordings"] == 0


# ---- draft cases ----------------------------------------------------------------------------------


def test_a_full_call_exports_a_complete_draft_case(caller: TwilioCaller, app: Flask) -> None:
    rec = Recorded()
    close = walk(caller, *FULL_CALL, rec, "1")
    assert close.verbs() == ["Say", "Hangup"]
    recording_status(caller, rec)
    hang_up(caller)
    [case] = export_cases(app)
    assert set(case) == EXPORT_FIELDS
    assert re.fullmatch(r"[0-9]{8}", case["reference"]) and is_valid_reference(case["reference"])
    assert speak_digits(case["reference"], "th") in close.says()[0]
    assert case == {
        "reference": case["reference"],
        "status": "draft",
        "category": "violence",
        "ivr_category": "violence",
        "language": "th",
        "province_code": "10",
        "office_code": "10",
        "callback_requested": True,
        "caller_number_masked": "+66 8x xxx x678",
        "opened_by": "caller",
        "recording_sid": rec.sid,
        "recording_status": "completed",
        "transcript_status": None,
        "transcript_text": None,
        "created_at": case["created_at"],
        "callback_due_at": case["callback_due_at"],  # violence: one working hour on (test_callbacks.py)
        "callback_state": "pending",
    }
    assert ISO_UTC.match(case["created_at"]) and ISO_UTC.match(case["callback_due_at"])
    created = datetime.fromisoformat(case["created_at"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=2)


def test_a_recording_status_before_the_action_still_counts(caller: TwilioCaller, app: Flask) -> None:
    rec = Recorded()
    record = walk(caller, *FULL_CALL)
    recording_status(caller, rec)  # callbacks may overtake the action request
    answer(caller, answer(caller, record, rec), "1")
    [case] = export_cases(app)
    assert (case["recording_sid"], case["recording_status"]) == (rec.sid, "completed")
    assert count(app, Recording) == 1


def test_no_province_goes_to_the_central_office(caller: TwilioCaller, app: Flask) -> None:
    walk(caller, "2", "#", "1", Recorded(), "1")
    [case] = export_cases(app)
    assert (case["category"], case["province_code"], case["office_code"]) == ("accident", None, "central")


def test_a_province_never_answered_goes_to_the_central_office(caller: TwilioCaller, app: Flask) -> None:
    walk(caller, "4", NO_INPUT, NO_INPUT, NO_INPUT, "1", Recorded(), "1")
    [case] = export_cases(app)
    assert (case["category"], case["province_code"], case["office_code"]) == ("health_harm", None, "central")


def test_an_english_call(caller: TwilioCaller, app: Flask) -> None:
    english = walk(caller, "9")
    assert english.say_languages() == {"en-US"}
    welcome = flow_of(app).nodes["welcome"]
    assert english.says()[0] == " ".join(welcome.prompt.text["en"].split())
    walk_on = english
    for inp in ("3", "50", "1", "1", Recorded(), "1"):
        walk_on = answer(caller, walk_on, inp)
        assert walk_on.say_languages() <= {"en-US"}
    [case] = export_cases(app)
    assert (case["language"], case["category"], case["office_code"]) == ("en", "rights_violation", "50")


def test_callback_on_another_number_is_masked(caller: TwilioCaller, app: Flask) -> None:
    walk(caller, "1", "50", "1", "2", OTHER_NUMBER, "1", Recorded(), "1")
    [case] = export_cases(app)
    assert case["callback_requested"] is True
    assert case["caller_number_masked"] == "+66 8x xxx x432"


def test_an_anonymous_caller_leaves_no_number_anywhere(
    caller: TwilioCaller, app: Flask, config: Config
) -> None:
    rec = Recorded()
    walk(caller, "1", "10", "1", "3", rec, "1")
    recording_status(caller, rec)
    hang_up(caller)
    [case] = export_cases(app)
    assert case["callback_requested"] is False
    assert case["caller_number_masked"] is None
    stored = stored_text(app, config)
    assert caller.call_sid in stored and rec.sid in stored  # the dump does see the call
    for form in CALLER_FORMS:
        assert form not in stored


def test_an_anonymous_caller_who_hangs_up_before_recording_leaves_no_number(
    caller: TwilioCaller, app: Flask, config: Config
) -> None:
    walk(caller, "1", "10", "1", "3")
    hang_up(caller)
    assert count(app, Case) == 0
    stored = stored_text(app, config)
    assert caller.call_sid in stored
    for form in CALLER_FORMS:
        assert form not in stored


def test_hanging_up_after_recording_before_send_opens_a_case(caller: TwilioCaller, app: Flask) -> None:
    rec = Recorded()
    confirm = walk(caller, *FULL_CALL, rec)
    assert confirm.verbs() == ["Gather", "Redirect"]
    hang_up(caller)
    recording_status(caller, rec)
    [case] = export_cases(app)
    assert case["opened_by"] == "hangup"
    assert (case["recording_sid"], case["recording_status"]) == (rec.sid, "completed")
    assert (case["category"], case["office_code"], case["caller_number_masked"]) == (
        "violence",
        "10",
        "+66 8x xxx x678",
    )


def test_hanging_up_during_the_recording_opens_a_case(caller: TwilioCaller, app: Flask) -> None:
    rec = Recorded(digits="hangup")
    walk(caller, *FULL_CALL, rec)
    hang_up(caller)
    [case] = export_cases(app)
    assert case["recording_sid"] == rec.sid
    assert case["category"] == "violence"
    assert count(app, Case) == 1


def test_hanging_up_during_an_empty_recording_opens_no_case_without_a_callback(
    caller: TwilioCaller, app: Flask
) -> None:
    walk(caller, "1", "10", "1", "3", Recorded(duration=0, digits="hangup"))
    hang_up(caller)
    assert count(app, Case) == 0


@pytest.mark.parametrize(
    ("inputs", "masked"),
    [
        (("1", "10", "1", "1"), "+66 8x xxx x678"),
        (("1", "10", "1", "2", OTHER_NUMBER, "1"), "+66 8x xxx x432"),
    ],
)
def test_hanging_up_before_recording_with_a_callback_opens_a_callback_case(
    inputs: tuple[str, ...], masked: str, caller: TwilioCaller, app: Flask
) -> None:
    record = walk(caller, *inputs)
    assert "Record" in record.verbs()
    hang_up(caller)
    [case] = export_cases(app)
    assert case["opened_by"] == "callback_only"
    assert case["caller_number_masked"] == masked
    assert case["recording_sid"] is None


@pytest.mark.parametrize("inputs", [(), ("1",), ("1", "10"), ("1", "10", "1", "2")])
def test_hanging_up_before_any_callback_or_message_opens_no_case(
    inputs: tuple[str, ...], caller: TwilioCaller, app: Flask
) -> None:
    walk(caller, *inputs)
    hang_up(caller)
    assert count(app, Case) == 0
    assert [e[1] for e in events_of(app, caller.call_sid)][-1] == "call_ended"


@pytest.mark.parametrize("status", ["ringing", "in-progress", "", "exploded"])
def test_a_status_callback_before_the_end_opens_no_case(
    status: str, caller: TwilioCaller, app: Flask
) -> None:
    confirm = walk(caller, *FULL_CALL, Recorded())
    assert caller.post("/twilio/status", CallStatus=status).status_code == 200
    assert count(app, Case) == 0
    # The caller, still on the line, sends the message themselves.
    answer(caller, confirm, "1")
    [case] = export_cases(app)
    assert case["opened_by"] == "caller"


def test_a_withheld_number_asked_to_be_called_back_is_asked_for_a_number(
    new_caller: Callable[..., TwilioCaller], app: Flask
) -> None:
    caller = new_caller(from_number="anonymous")
    step = walk(caller, "1", "10", "1", "1")
    gather = step.find("Gather")
    assert gather.attrib["finishOnKey"] == "#"
    asked = flow_of(app).nodes["ask_callback_number"].prompt
    assert step.says()[-1] == asked.text["th"]
    assert ("check_caller_id", "branch", {"to": "ask_callback_number"}) in events_of(app, caller.call_sid)
    walk_on = answer(caller, step, OTHER_NUMBER)
    walk_on = answer(caller, walk_on, "1")
    answer(caller, answer(caller, walk_on, Recorded()), "1")
    [case] = export_cases(app)
    assert case["caller_number_masked"] == "+66 8x xxx x432"


# ---- call events ----------------------------------------------------------------------------------


def test_the_menu_path_is_kept_as_call_events_in_order(caller: TwilioCaller, app: Flask) -> None:
    rec = Recorded()
    walk(caller, "7", "1", "10", "1", "1", rec, "1")
    hang_up(caller)
    path = [(node, kind) for node, kind, _detail in events_of(app, caller.call_sid)]
    expected = [
        ("welcome", "call_started"),
        ("main_menu", "invalid"),
        ("main_menu", "key"),
        ("ask_province", "entered"),
        ("ask_province", "confirmed"),
        ("callback_menu", "key"),
        ("check_caller_id", "branch"),
        ("record_message", "recorded"),
        ("record_message", "send"),
        ("submit", "submit"),
        ("submit", "case_opened"),
        ("close", "hangup"),
        ("close", "call_ended"),
    ]
    positions = [path.index(item) for item in expected]
    assert positions == sorted(positions), path
    assert path[0] == expected[0] and path[-1] == expected[-1]
    details = dict(((n, k), d) for n, k, d in events_of(app, caller.call_sid))
    assert details[("main_menu", "key")] == {"key": "1"}
    assert details[("ask_province", "entered")] == {"via": "keys", "value": "10"}
    assert details[("record_message", "recorded")]["sid"] == rec.sid


def test_no_call_event_holds_a_keyed_callback_number(caller: TwilioCaller, app: Flask) -> None:
    # Keyed wrongly once, re-entered once, then confirmed: every event of the number's path.
    walk(caller, "1", "10", "1", "2", "12345", "0812", OTHER_NUMBER, "2", OTHER_NUMBER, "1", Recorded(), "1")
    events = events_of(app, caller.call_sid)
    assert ("ask_callback_number", "enter_again") in [(n, k) for n, k, _d in events]
    for node, kind, detail in events:
        flat = json.dumps(detail, ensure_ascii=False)
        for form in (*OTHER_FORMS, "12345", "0812"):
            assert form not in flat, (node, kind, detail)
        for key, value in detail.items():
            assert key in ("sid", "reference") or not re.search(r"\d{5,}", str(value)), (node, kind, detail)
    [case] = export_cases(app)
    assert case["caller_number_masked"] == "+66 8x xxx x432"


def test_a_keyed_number_at_its_read_back_is_not_stored_in_clear(
    caller: TwilioCaller, app: Flask, config: Config
) -> None:
    readback = walk(caller, "1", "10", "1", "2", OTHER_NUMBER)
    spoken = speak_digits(OTHER_NUMBER, "th")
    assert any(spoken in said for said in readback.says())  # the caller does hear it read back
    hang_up(caller)  # and hangs up there
    clear = stored_rows(app)
    assert caller.call_sid in clear
    for form in OTHER_FORMS:
        assert form not in clear
    assert spoken not in clear
    assert speak_digits(OTHER_NUMBER, "en") not in clear
    # It is kept, encrypted: the value awaiting confirmation.
    assert "+66898765432" in stored_text(app, config)


# ---- commands -------------------------------------------------------------------------------------


@pytest.fixture
def bare_app(config: Config) -> Iterator[Flask]:
    """The app on a migrated database with no offices loaded."""
    upgrade_database(config.database_url)
    app = create_app(config)
    app.testing = True
    with get_database(app).session() as session:
        session.execute(text("DELETE FROM offices"))  # the test databases are copies that hold them
    yield app
    get_database(app).dispose()


def test_offices_load_is_idempotent(bare_app: Flask) -> None:
    runner = bare_app.test_cli_runner()
    first = runner.invoke(args=["offices", "load"])
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == "offices: 1006 in all, 1006 created, 0 updated"
    second = runner.invoke(args=["offices", "load"])
    assert second.exit_code == 0, second.output
    assert second.stdout.strip() == "offices: 1006 in all, 0 created, 0 updated"

    with get_database(bare_app).session() as session:
        offices = {o.code: o for o in session.scalars(select(Office))}
        by_id = {o.id: o for o in offices.values()}
        kinds = [o.kind for o in offices.values()]
        assert (kinds.count(OfficeKind.CENTRAL), kinds.count(OfficeKind.PROVINCE)) == (1, 77)
        assert kinds.count(OfficeKind.DISTRICT) == 928
        central = offices["central"]
        assert central.parent_id is None and central.province_code is None
        for office in offices.values():
            if office.kind == OfficeKind.PROVINCE:
                assert re.fullmatch(r"\d\d", office.code)
                assert office.parent_id == central.id
                assert office.province_code == office.code
            elif office.kind == OfficeKind.DISTRICT:
                assert re.fullmatch(r"\d{4}", office.code)
                parent = by_id[office.parent_id or 0]
                assert parent.kind == OfficeKind.PROVINCE
                assert parent.code == office.province_code == office.code[:2]
        bangkok = [o for o in offices.values() if o.kind == OfficeKind.DISTRICT and o.province_code == "10"]
        assert len(bangkok) == 50
        assert all("เขต" in o.name_th and "อำเภอ" not in o.name_th for o in bangkok)
        assert offices["1001"].name_th == "กศน. เขตพระนคร"
        assert offices["5001"].name_th == "กศน. อำเภอเมืองเชียงใหม่"
        assert offices["10"].name_th == "สำนักงาน กศน. กทม."
        assert offices["50"].name_th == "สำนักงาน กศน. จังหวัดเชียงใหม่"


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HOTLINE_", "TWILIO_", "FLASK_"))
        and k not in ("DATABASE_URL", "PUBLIC_BASE_URL")
    }
    env.update(
        HOTLINE_INSTANCE_DIR=str(tmp_path / "instance"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}",
    )
    return env


def test_db_upgrade_twice_on_a_fresh_database(tmp_path: Path) -> None:
    env = _cli_env(tmp_path)
    root = Path(__file__).resolve().parents[2]
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "database is at the latest revision" in done.stdout
    engine = get_database_engine(env["DATABASE_URL"])
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"calls", "call_events", "cases", "offices", "recordings", "alembic_version"} <= tables
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        assert versions == [head_revision()]
    finally:
        engine.dispose()


def get_database_engine(url: str) -> Any:
    from infra.db import make_engine

    return make_engine(url)


def head_revision() -> str:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    alembic_cfg = AlembicConfig()
    alembic_cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(alembic_cfg).get_current_head()
    assert head is not None
    return head


# ---- configuration --------------------------------------------------------------------------------


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"HOTLINE_INSTANCE_DIR": str(tmp_path / "instance"), **values}


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Bangkok", "../etc/passwd", "/etc/localtime"])
def test_a_bad_time_zone_is_named(zone: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HOTLINE_TIMEZONE"):
        Config.from_env(environ=_env(tmp_path, HOTLINE_TIMEZONE=zone))


def test_a_good_time_zone_is_kept(tmp_path: Path) -> None:
    config = Config.from_env(environ=_env(tmp_path, HOTLINE_TIMEZONE="Asia/Bangkok"))
    assert config.timezone.key == "Asia/Bangkok"
    assert Config.from_env(environ=_env(tmp_path)).timezone_name == "Asia/Bangkok"


@pytest.mark.parametrize(
    "url",
    [
        "hotline.example.org",
        "ftp://hotline.example.org",
        "https://",
        "https://hotline.example.org/?token=1",
        "https://hotline.example.org/#top",
        "javascript:alert(1)",
    ],
)
def test_a_bad_public_base_url_is_named(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        Config.from_env(environ=_env(tmp_path, PUBLIC_BASE_URL=url))


PRODUCTION_SECRETS = {
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "PUBLIC_BASE_URL": PUBLIC_BASE,
    "DATABASE_URL": "postgresql://hotline@db/hotline",
    "HOTLINE_SECRET_KEY": "s" * 40,
    "HOTLINE_DATA_KEY": "k" * 43 + "=",
    "HOTLINE_RECORDING_KEY": "r" * 43 + "=",
}


def test_production_without_secrets_names_every_missing_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env(environ=_env(tmp_path, HOTLINE_ENV="production"))
    for name in PRODUCTION_SECRETS:
        assert name in str(raised.value)
    assert not (tmp_path / "instance").exists()  # no development secrets written for production


@pytest.mark.parametrize("missing", sorted(PRODUCTION_SECRETS))
def test_production_names_the_one_missing_secret(missing: str, tmp_path: Path) -> None:
    env = _env(tmp_path, HOTLINE_ENV="production", **PRODUCTION_SECRETS)
    env[missing] = ""
    with pytest.raises(ConfigError) as raised:
        Config.from_env(environ=env)
    message = str(raised.value)
    assert missing in message
    assert [name for name in PRODUCTION_SECRETS if name in message] == [missing]


def test_production_needs_https(tmp_path: Path) -> None:
    env = _env(
        tmp_path, HOTLINE_ENV="production", **{**PRODUCTION_SECRETS, "PUBLIC_BASE_URL": "http://x.org"}
    )
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        Config.from_env(environ=env)
    config = Config.from_env(environ=_env(tmp_path, HOTLINE_ENV="production", **PRODUCTION_SECRETS))
    assert config.production and config.public_base_url == PUBLIC_BASE


def test_a_bad_production_flag_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HOTLINE_ENV_PRODUCTION"):
        Config.from_env(environ=_env(tmp_path, HOTLINE_ENV_PRODUCTION="maybe"))
