"""The call simulator against a tiny Twilio-style Flask app served by werkzeug on a random port.

The test app checks ``X-Twilio-Signature`` on every request with twilio's RequestValidator over the
*public* URL (answering 403 otherwise), so every passing call also proves the simulator signs like Twilio.
"""

from __future__ import annotations

import io
import re
import threading
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from flask import Flask, Response, request
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from telephony.simulator.audio import generate_wav
from telephony.simulator.config import SimulatorConfig
from telephony.simulator.events import CallResult
from telephony.simulator.media_server import MediaServer
from telephony.simulator.run import run_call
from telephony.simulator.script import CallScript, ScriptError, parse_token

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
VOICE = "/twilio/voice"
STATUS = "/twilio/status"
THAI_VOICE = "Google.th-TH-Standard-A"

Reply = str | tuple[str, int, str] | Response
Handler = Callable[[dict[str, str]], Reply]


@dataclass
class Received:
    method: str
    path: str
    query: str
    params: dict[str, str]
    signature_ok: bool


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


@dataclass
class TwimlApp:
    """A stand-in for the product app: routes are plain functions of the request parameters."""

    public_base: str | None = None
    connect_base: str = ""
    auth_token: str = AUTH_TOKEN
    routes: dict[str, Handler] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.flask = Flask(__name__, static_folder=None)
        self.flask.add_url_rule("/", "any", self._dispatch, methods=["GET", "POST"], defaults={"path": ""})
        self.flask.add_url_rule("/<path:path>", "any_path", self._dispatch, methods=["GET", "POST"])
        self.routes.setdefault(STATUS, lambda params: ("", 204, "text/plain"))

    def route(self, path: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.routes[path] = fn
            return fn

        return register

    def _dispatch(self, path: str) -> Response:
        query = request.query_string.decode()
        public = (
            (self.public_base or self.connect_base).rstrip("/")
            + request.path
            + (f"?{query}" if query else "")
        )
        form = request.form if request.method == "POST" else {}
        ok = RequestValidator(self.auth_token).validate(
            public, form, request.headers.get("X-Twilio-Signature", "")
        )
        params = {**request.args.to_dict(), **request.form.to_dict()}
        self.received.append(Received(request.method, request.path, query, params, ok))
        if not ok:
            return Response("invalid signature", 403, content_type="text/plain")
        handler = self.routes.get(request.path)
        if handler is None:
            return Response("not found", 404, content_type="text/plain")
        reply = handler(params)
        if isinstance(reply, str):
            return Response(reply, 200, content_type="text/xml; charset=utf-8")
        if isinstance(reply, tuple):
            body, status, content_type = reply
            return Response(body, status, content_type=content_type)
        return reply

    # helpers for assertions
    def paths(self) -> list[str]:
        return [r.path for r in self.received]

    def calls_to(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def config(self, **overrides: Any) -> SimulatorConfig:
        values: dict[str, Any] = {
            "connect_base": self.connect_base,
            "public_base": self.public_base or self.connect_base,
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "timeout_s": 5.0,
        }
        values.update(overrides)
        return SimulatorConfig(**values)


@pytest.fixture
def serve() -> Iterator[Callable[..., TwimlApp]]:
    servers: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def start(public_base: str | None = None) -> TwimlApp:
        app = TwimlApp(public_base=public_base)
        server = make_server("127.0.0.1", 0, app.flask, threaded=True, request_handler=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        app.connect_base = f"http://127.0.0.1:{server.server_port}"
        servers.append((server, thread))
        return app

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def twiml(response: VoiceResponse) -> str:
    return str(response.to_xml())


def only(verb: str, *args: Any, **attrs: Any) -> str:
    """A document with a single verb (the twilio builders return the verb, not the response)."""
    r = VoiceResponse()
    getattr(r, verb)(*args, **attrs)
    return twiml(r)


def say_and_hangup(text: str) -> str:
    r = VoiceResponse()
    r.say(text, language="th-TH", voice=THAI_VOICE)
    r.hangup()
    return twiml(r)


def gather_menu(action: str = "/twilio/menu", **attrs: Any) -> str:
    r = VoiceResponse()
    g = Gather(action=action, **attrs)
    g.say("กด 1 เพื่อแจ้งเหตุ", language="th-TH", voice=THAI_VOICE)
    r.append(g)
    r.say("ไม่ได้รับข้อมูล", language="th-TH", voice=THAI_VOICE)
    r.hangup()
    return twiml(r)


def assert_all_signed(app: TwimlApp) -> None:
    assert app.received, "the app received nothing"
    assert all(r.signature_ok for r in app.received), [(r.method, r.path) for r in app.received]


def status_params(app: TwimlApp) -> dict[str, str]:
    calls = app.calls_to(STATUS)
    assert len(calls) == 1, app.paths()
    return calls[0].params


# --------------------------------------------------------------------------------------------------
# Gather
# --------------------------------------------------------------------------------------------------


def test_gather_answered_posts_digits_with_standard_params_and_valid_signatures(
    serve: Callable[..., TwimlApp],
) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: gather_menu(numDigits="1")
    app.routes["/twilio/menu"] = lambda p: say_and_hangup(f"คุณเลือก {p['Digits']}")

    result = run_call(app.config(), CallScript.parse("1"))

    assert_all_signed(app)
    assert app.paths() == [VOICE, "/twilio/menu", STATUS]
    assert result.ended_by == "hangup-verb"
    assert re.fullmatch(r"CA[0-9a-f]{32}", result.call_sid)
    first = app.calls_to(VOICE)[0].params
    assert first == {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": result.call_sid,
        "CallStatus": "ringing",
        "Called": "+6621266565",
        "Caller": "+66812345678",
        "Direction": "inbound",
        "From": "+66812345678",
        "To": "+6621266565",
        "FromCountry": "TH",
        "ToCountry": "TH",
        "CallerCountry": "TH",
        "CalledCountry": "TH",
    }
    menu = app.calls_to("/twilio/menu")[0].params
    assert menu["Digits"] == "1"
    assert menu["CallStatus"] == "in-progress"
    assert menu["CallSid"] == result.call_sid
    assert result.spoken_text().splitlines() == ["กด 1 เพื่อแจ้งเหตุ", "คุณเลือก 1"]
    says = result.of_kind("say")
    assert {(e.language, e.voice) for e in says} == {("th-TH", THAI_VOICE)}
    assert [e.kind for e in result.events if e.kind in ("gather-prompt", "input")] == [
        "gather-prompt",
        "input",
    ]
    status = status_params(app)
    assert status["CallStatus"] == "completed"
    assert int(status["CallDuration"]) >= 1
    assert status["CallSid"] == result.call_sid
    requests_made = result.requests()
    assert [e.purpose for e in requests_made] == ["voice", "gather-action", "status-callback"]
    assert all(e.status == 200 or e.status == 204 for e in requests_made)
    assert all(e.elapsed_ms is not None and e.elapsed_ms >= 0 for e in requests_made)


@pytest.mark.parametrize("token", ["-", "silence", "#"])
def test_gather_without_input_falls_through_to_next_verb(serve: Callable[..., TwimlApp], token: str) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: gather_menu()

    result = run_call(app.config(), CallScript.parse(token))

    assert_all_signed(app)
    assert "/twilio/menu" not in app.paths()
    assert app.paths() == [VOICE, STATUS]
    assert result.spoken_text().splitlines()[-1] == "ไม่ได้รับข้อมูล"
    assert result.ended_by == "hangup-verb"


def test_action_on_empty_result_posts_empty_digits(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: gather_menu(actionOnEmptyResult=True)
    app.routes["/twilio/menu"] = lambda p: say_and_hangup("ว่าง" if p["Digits"] == "" else "มีข้อมูล")

    result = run_call(app.config(), CallScript.parse("-"))

    assert_all_signed(app)
    assert app.calls_to("/twilio/menu")[0].params["Digits"] == ""
    assert result.spoken_text().splitlines()[-1] == "ว่าง"


@pytest.mark.parametrize(
    ("attrs", "token", "digits"),
    [
        ({"numDigits": "1"}, "12", "1"),
        ({"numDigits": "3"}, "12#", "12"),
        ({}, "0812345678#", "0812345678"),
        ({"finishOnKey": "*"}, "12#*", "12#"),
        ({"finishOnKey": ""}, "12#", "12#"),
        ({"numDigits": "2", "finishOnKey": "#"}, "9", "9"),
    ],
)
def test_num_digits_and_finish_on_key(
    serve: Callable[..., TwimlApp], attrs: dict[str, str], token: str, digits: str
) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: gather_menu(**attrs)
    app.routes["/twilio/menu"] = lambda p: say_and_hangup("ok")

    run_call(app.config(), CallScript.parse(token))

    assert_all_signed(app)
    assert app.calls_to("/twilio/menu")[0].params["Digits"] == digits


def test_speech_input_posts_speech_result_and_confidence(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: gather_menu(input="speech", language="th-TH", hints="เชียงใหม่, ลำปาง")
    app.routes["/twilio/menu"] = lambda p: say_and_hangup(f"จังหวัด {p['SpeechResult']}")

    result = run_call(app.config(), CallScript.parse("speech:เชียงใหม่"))

    assert_all_signed(app)
    params = app.calls_to("/twilio/menu")[0].params
    assert params["SpeechResult"] == "เชียงใหม่"
    assert params["Confidence"] == "0.9"
    assert "Digits" not in params
    assert result.spoken_text().splitlines()[-1] == "จังหวัด เชียงใหม่"
    prompt = result.of_kind("gather-prompt")[0]
    assert "speech" in prompt.text and "th-TH" in prompt.text


def test_speech_to_a_dtmf_only_gather_is_not_heard(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: gather_menu()

    result = run_call(app.config(), CallScript.parse("speech:หนึ่ง"))

    assert "/twilio/menu" not in app.paths()
    assert result.spoken_text().splitlines()[-1] == "ไม่ได้รับข้อมูล"


def test_gather_with_get_method_sends_params_in_query_and_signs_full_url(
    serve: Callable[..., TwimlApp],
) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: gather_menu(action="/twilio/menu?step=2", method="GET")
    app.routes["/twilio/menu"] = lambda p: say_and_hangup(f"ขั้น {p['step']} เลือก {p['Digits']}")

    result = run_call(app.config(), CallScript.parse("3#"))

    assert_all_signed(app)
    menu = app.calls_to("/twilio/menu")[0]
    assert menu.method == "GET"
    assert menu.query.startswith("step=2&")
    assert menu.params["Digits"] == "3"
    assert menu.params["CallSid"] == result.call_sid
    assert result.spoken_text().splitlines()[-1] == "ขั้น 2 เลือก 3"


# --------------------------------------------------------------------------------------------------
# URLs and signatures
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("public_base", ["https://hotline.example.org", "https://proxy.example.org/hotline"])
def test_public_base_differs_from_connect_base(serve: Callable[..., TwimlApp], public_base: str) -> None:
    app = serve(public_base=public_base)
    # absolute action on the public host, then a relative one
    app.routes[VOICE] = lambda p: gather_menu(action=f"{public_base}/twilio/menu")
    app.routes["/twilio/menu"] = lambda p: gather_menu(action="next")
    app.routes["/twilio/next"] = lambda p: say_and_hangup("จบ")

    result = run_call(app.config(), CallScript.parse("1,2"))

    assert_all_signed(app)
    assert app.paths() == [VOICE, "/twilio/menu", "/twilio/next", STATUS]
    urls = [e.url for e in result.requests()]
    assert urls == [
        f"{public_base}/twilio/voice",
        f"{public_base}/twilio/menu",
        f"{public_base}/twilio/next",
        f"{public_base}/twilio/status",
    ]


def test_wrong_auth_token_is_rejected_by_the_app(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: say_and_hangup("never")

    result = run_call(app.config(auth_token="not-the-token"), CallScript.parse(""))

    assert [r.signature_ok for r in app.received] == [False, False]
    error = result.errors()[0]
    assert (error.code, error.status) == (11200, 403)
    assert result.ended_by == "error"


def test_relative_action_urls_resolve_against_the_document_url(serve: Callable[..., TwimlApp]) -> None:
    app = serve(public_base="https://hotline.example.org")

    def deep(p: dict[str, str]) -> str:
        r = VoiceResponse()
        r.append(Gather(action="choice", numDigits="1"))  # -> /twilio/flows/choice
        return twiml(r)

    def choice(p: dict[str, str]) -> str:
        r = VoiceResponse()
        r.append(Gather(action="../top?x=1", numDigits="1"))  # -> /twilio/top?x=1
        return twiml(r)

    def top(p: dict[str, str]) -> str:
        r = VoiceResponse()
        r.redirect("/twilio/end")  # absolute path on the public host
        return twiml(r)

    app.routes[VOICE] = lambda p: only("redirect", "flows/deep")
    app.routes["/twilio/flows/deep"] = deep
    app.routes["/twilio/flows/choice"] = choice
    app.routes["/twilio/top"] = top
    app.routes["/twilio/end"] = lambda p: say_and_hangup("ปลายทาง")

    result = run_call(app.config(), CallScript.parse("1,2"))

    assert_all_signed(app)
    assert app.paths() == [
        VOICE,
        "/twilio/flows/deep",
        "/twilio/flows/choice",
        "/twilio/top",
        "/twilio/end",
        STATUS,
    ]
    assert app.calls_to("/twilio/top")[0].query == "x=1"
    assert result.ended_by == "hangup-verb"


def test_action_url_outside_the_public_base_is_unreachable(serve: Callable[..., TwimlApp]) -> None:
    app = serve(public_base="https://hotline.example.org")
    # the app leaked its internal address into TwiML: Twilio cannot reach it
    app.routes[VOICE] = lambda p: gather_menu(action=f"{app.connect_base}/twilio/menu")

    result = run_call(app.config(), CallScript.parse("1"))

    assert "/twilio/menu" not in app.paths()
    assert result.errors()[0].code == 11205
    assert result.ended_by == "error"


# --------------------------------------------------------------------------------------------------
# Redirect, Dial, Reject
# --------------------------------------------------------------------------------------------------


def test_redirect_defaults_to_post_and_honours_get(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: only("redirect", "/twilio/second")
    app.routes["/twilio/second"] = lambda p: only("redirect", "/twilio/third?a=b", method="GET")
    app.routes["/twilio/third"] = lambda p: say_and_hangup(f"a={p['a']}")

    result = run_call(app.config(), CallScript.parse(""))

    assert_all_signed(app)
    assert [(r.method, r.path) for r in app.received] == [
        ("POST", VOICE),
        ("POST", "/twilio/second"),
        ("GET", "/twilio/third"),
        ("POST", STATUS),
    ]
    assert app.calls_to("/twilio/third")[0].params["CallSid"] == result.call_sid
    assert [e.method for e in result.of_kind("redirect")] == ["POST", "GET"]
    assert result.spoken_text() == "a=b"


@pytest.mark.parametrize(
    ("token", "status"), [("dial:no-answer", "no-answer"), ("dial:busy", "busy"), ("", "completed")]
)
def test_dial_outcome_is_posted_to_its_action(
    serve: Callable[..., TwimlApp], token: str, status: str
) -> None:
    app = serve()

    def voice(p: dict[str, str]) -> str:
        r = VoiceResponse()
        d = Dial(action="/twilio/dialed", timeout="20", callerId="+6621266565")
        d.number("+6622222222")
        r.append(d)
        r.say("unreachable after a Dial with an action")
        return twiml(r)

    app.routes[VOICE] = voice
    app.routes["/twilio/dialed"] = lambda p: say_and_hangup(f"สาย {p['DialCallStatus']}")

    result = run_call(app.config(), CallScript.parse(token))

    assert_all_signed(app)
    dialed = app.calls_to("/twilio/dialed")[0].params
    assert dialed["DialCallStatus"] == status
    assert re.fullmatch(r"CA[0-9a-f]{32}", dialed["DialCallSid"])
    assert (int(dialed["DialCallDuration"]) > 0) == (status == "completed")
    assert result.spoken_text() == f"สาย {status}"
    assert result.of_kind("dial")[0].text == "+6622222222"


def test_dial_without_action_continues_with_next_verb(serve: Callable[..., TwimlApp]) -> None:
    app = serve()

    def voice(p: dict[str, str]) -> str:
        r = VoiceResponse()
        r.dial("+6622222222")
        r.append(Gather(action="/twilio/menu", numDigits="1"))
        return twiml(r)

    app.routes[VOICE] = voice
    app.routes["/twilio/menu"] = lambda p: say_and_hangup(p["Digits"])

    # the Dial does not use the digit token: it is left for the Gather
    result = run_call(app.config(), CallScript.parse("dial:failed,5"))

    assert result.of_kind("dial")[0].outcome == "failed"
    assert app.calls_to("/twilio/menu")[0].params["Digits"] == "5"
    result2 = run_call(app.config(), CallScript.parse("5"))
    assert result2.of_kind("dial")[0].outcome == "completed"
    assert result2.spoken_text() == "5"


def test_reject_as_first_verb_leaves_the_call_unanswered(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: only("reject", reason="busy")

    result = run_call(app.config(), CallScript.parse(""))

    status = status_params(app)
    assert (status["CallStatus"], status["CallDuration"]) == ("busy", "0")
    assert result.call_status == "busy"
    assert result.ended_by == "hangup-verb"


# --------------------------------------------------------------------------------------------------
# Record and media
# --------------------------------------------------------------------------------------------------


def record_flow(app: TwimlApp, **attrs: Any) -> None:
    def voice(p: dict[str, str]) -> str:
        r = VoiceResponse()
        r.say("เล่าเหตุการณ์หลังเสียงสัญญาณ", language="th-TH", voice=THAI_VOICE)
        r.record(
            action="/twilio/recorded",
            maxLength="60",
            finishOnKey="#",
            recordingStatusCallback="/twilio/recording-status",
            **attrs,
        )
        r.say("ไม่ได้ยินเสียง", language="th-TH", voice=THAI_VOICE)
        return twiml(r)

    app.routes[VOICE] = voice
    app.routes["/twilio/recorded"] = lambda p: say_and_hangup("ขอบคุณ")
    app.routes["/twilio/recording-status"] = lambda p: ("", 204, "text/plain")


def test_record_posts_action_then_status_callback_and_media_needs_basic_auth(
    serve: Callable[..., TwimlApp],
) -> None:
    app = serve()
    record_flow(app)

    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        result = run_call(app.config(), CallScript.parse("record:3"), media=media)

        assert_all_signed(app)
        assert app.paths() == [VOICE, "/twilio/recorded", "/twilio/recording-status", STATUS]
        (sid,) = result.recordings
        assert re.fullmatch(r"RE[0-9a-f]{32}", sid)
        action = app.calls_to("/twilio/recorded")[0].params
        assert action["RecordingSid"] == sid
        assert action["RecordingDuration"] == "3"
        assert action["Digits"] == "#"
        assert (
            action["RecordingUrl"] == f"{media.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}"
        )
        callback = app.calls_to("/twilio/recording-status")[0].params
        assert {k: callback[k] for k in ("RecordingStatus", "RecordingChannels", "RecordingSource")} == {
            "RecordingStatus": "completed",
            "RecordingChannels": "1",
            "RecordingSource": "RecordVerb",
        }
        assert callback["RecordingSid"] == sid
        assert callback["RecordingUrl"] == action["RecordingUrl"]
        assert callback["RecordingDuration"] == "3"
        assert callback["AccountSid"] == ACCOUNT_SID
        assert callback["CallSid"] == result.call_sid
        assert callback["RecordingStartTime"].endswith("+0000")
        assert result.spoken_text().splitlines()[-1] == "ขอบคุณ"

        url = action["RecordingUrl"]
        path = url.removeprefix(media.base_url)
        with requests.Session() as http:
            ok = http.get(url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
            assert ok.status_code == 200
            assert ok.headers["Content-Type"] == "audio/x-wav"
            with wave.open(io.BytesIO(ok.content)) as w:
                assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
                assert w.getnframes() == 3 * 8000
            assert http.get(url + ".wav", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5).status_code == 200

            anonymous = http.get(url, timeout=5)
            assert anonymous.status_code == 401
            assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="Twilio API"'
            assert http.get(url, auth=(ACCOUNT_SID, "wrong"), timeout=5).status_code == 401
            assert http.get(url, auth=("AC" + "2" * 32, AUTH_TOKEN), timeout=5).status_code == 401

            assert http.get(url + ".mp3", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5).status_code == 404
            unknown = url.replace(sid, "RE" + "0" * 32)
            assert http.get(unknown, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5).status_code == 404
            other_account = url.replace(ACCOUNT_SID, "AC" + "2" * 32)
            assert http.get(other_account, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5).status_code == 404

            assert media.request_count(path) == 4  # ok, anonymous, wrong password, wrong user
            assert media.request_count(url) == 4
            assert media.request_count(path + ".wav") == 1

            assert http.delete(url + ".json", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5).status_code == 204
            assert http.get(url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5).status_code == 404
            assert not media.has(sid)


@pytest.mark.parametrize("token", ["record:0", "-"])
def test_empty_recording_skips_the_action_and_reports_absent(
    serve: Callable[..., TwimlApp], token: str
) -> None:
    app = serve()
    record_flow(app, recordingStatusCallbackEvent="completed absent")

    result = run_call(app.config(), CallScript.parse(token))

    assert_all_signed(app)
    assert "/twilio/recorded" not in app.paths()
    assert app.paths() == [VOICE, "/twilio/recording-status", STATUS]
    assert app.calls_to("/twilio/recording-status")[0].params["RecordingStatus"] == "absent"
    assert result.spoken_text().splitlines()[-1] == "ไม่ได้ยินเสียง"
    assert result.recordings == []
    assert result.ended_by == "end-of-document"


def test_empty_recording_without_absent_subscription_posts_no_callback(
    serve: Callable[..., TwimlApp],
) -> None:
    app = serve()
    record_flow(app)

    run_call(app.config(), CallScript.parse("record:0"))

    assert app.paths() == [VOICE, STATUS]


def test_caller_hanging_up_during_record_posts_hangup_and_ignores_the_reply(
    serve: Callable[..., TwimlApp],
) -> None:
    app = serve()
    record_flow(app)

    result = run_call(app.config(), CallScript.parse("record:4:hangup"))

    assert_all_signed(app)
    assert app.paths() == [VOICE, "/twilio/recorded", "/twilio/recording-status", STATUS]
    action = app.calls_to("/twilio/recorded")[0].params
    assert (action["Digits"], action["RecordingDuration"], action["CallStatus"]) == (
        "hangup",
        "4",
        "completed",
    )
    assert "ขอบคุณ" not in result.spoken_text()
    assert result.ended_by == "caller-hangup"
    assert status_params(app)["CallStatus"] == "completed"


def test_given_wav_is_served_and_its_duration_reported(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    record_flow(app)
    wav = generate_wav(2, rate=16000)

    with MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        result = run_call(app.config(), CallScript.parse("record:9"), media=media, recording_wav=wav)
        action = app.calls_to("/twilio/recorded")[0].params
        assert action["RecordingDuration"] == "2"
        got = requests.get(action["RecordingUrl"], auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
        assert got.content == wav
        assert result.recordings == [action["RecordingSid"]]


def test_without_a_media_server_one_runs_for_the_call(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    record_flow(app)
    fetched: list[int] = []

    def recorded(p: dict[str, str]) -> str:
        # the app fetches the media while the call is still up
        fetched.append(requests.get(p["RecordingUrl"], auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5).status_code)
        return say_and_hangup("ขอบคุณ")

    app.routes["/twilio/recorded"] = recorded
    run_call(app.config(), CallScript.parse("record"))
    assert fetched == [200]
    assert app.calls_to("/twilio/recorded")[0].params["RecordingDuration"] == "5"


# --------------------------------------------------------------------------------------------------
# Strictness
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "code", "status"),
    [
        (("boom: stack trace", 500, "text/plain"), 11200, 500),
        (("<Response><Say>unclosed</Response>", 200, "text/xml"), 12100, 200),
        (("not xml at all", 200, "application/xml"), 12100, 200),
        (("<Document><Say>hi</Say></Document>", 200, "text/xml"), 12100, 200),
        (('{"say": "hi"}', 200, "application/json"), 12300, 200),
        (("<Response><say>lower-case verb</say></Response>", 200, "text/xml"), 12200, 200),
        (("<Response><Gather><Record/></Gather></Response>", 200, "text/xml"), 12200, 200),
    ],
)
def test_bad_answers_end_the_call_with_the_twilio_error(
    serve: Callable[..., TwimlApp], reply: tuple[str, int, str], code: int, status: int
) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: reply

    result = run_call(app.config(), CallScript.parse("1"))

    assert result.ended_by == "error"
    (error,) = result.errors()
    assert (error.code, error.status) == (code, status)
    assert error.body_excerpt is not None and error.body_excerpt[:4] == reply[0][:4]
    assert result.of_kind("say") == []  # a bad document is rejected before any verb runs
    assert status_params(app)["CallStatus"] == "completed"


def test_error_on_an_action_after_speech_already_happened(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: gather_menu()
    app.routes["/twilio/menu"] = lambda p: ("oops", 502, "text/html")

    result = run_call(app.config(), CallScript.parse("1#"))

    assert [(e.code, e.status) for e in result.errors()] == [(11200, 502)]
    assert result.spoken_text() == "กด 1 เพื่อแจ้งเหตุ"
    assert app.paths() == [VOICE, "/twilio/menu", STATUS]


def test_text_html_is_parsed_as_twiml_like_twilio_does(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: Response(
        say_and_hangup("html"), 200, content_type="text/html; charset=utf-8"
    )

    result = run_call(app.config(), CallScript.parse(""))

    assert result.errors() == []
    assert result.spoken_text() == "html"


def test_slow_answer_times_out_with_11205(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    release = threading.Event()

    def slow(p: dict[str, str]) -> str:
        release.wait(3)
        return say_and_hangup("too late")

    app.routes[VOICE] = slow
    try:
        result = run_call(app.config(timeout_s=0.3), CallScript.parse(""))
    finally:
        release.set()
    (error,) = result.errors()
    assert error.code == 11205
    assert result.ended_by == "error"
    assert app.calls_to(STATUS)
    time.sleep(0.1)  # let the slow handler finish before the server stops


def test_loop_guard_stops_a_redirect_loop(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: only("redirect", VOICE)

    result = run_call(app.config(max_requests=5), CallScript.parse(""))

    assert result.ended_by == "loop-guard"
    assert len(app.calls_to(VOICE)) == 5
    assert app.paths()[-1] == STATUS


# --------------------------------------------------------------------------------------------------
# The caller and the script
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["hangup", ""])
def test_caller_hang_up_posts_the_status_callback(serve: Callable[..., TwimlApp], script: str) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: gather_menu()

    result = run_call(app.config(), CallScript.parse(script))

    assert result.ended_by == "caller-hangup"
    assert app.paths() == [VOICE, STATUS]
    status = status_params(app)
    assert status["CallStatus"] == "completed"
    assert status["CallSid"] == result.call_sid
    assert status["CallDuration"].isdigit()


def test_script_mismatch_raises_after_ending_the_call(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: gather_menu()

    with pytest.raises(ScriptError, match=r"'record:3' at position 1 does not fit the Gather") as info:
        run_call(app.config(), CallScript.parse("record:3"))

    assert isinstance(info.value.result, CallResult)
    assert info.value.result.ended_by == "caller-hangup"
    assert app.paths() == [VOICE, STATUS]


def test_interactive_input_is_asked_when_the_script_runs_out(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: gather_menu(numDigits="1")
    app.routes["/twilio/menu"] = lambda p: only("record", action="/twilio/recorded")
    app.routes["/twilio/recorded"] = lambda p: say_and_hangup("ขอบคุณ")
    answers = iter(["nonsense", "2", "record:2"])
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    result = run_call(app.config(), CallScript.parse("", input_fn=ask))

    assert app.calls_to("/twilio/menu")[0].params["Digits"] == "2"
    assert app.calls_to("/twilio/recorded")[0].params["RecordingDuration"] == "2"
    assert "Gather" in prompts[0] and "digits" in prompts[0]
    assert "bad script token 'nonsense'" in prompts[1]
    assert "Record" in prompts[2] and "record" in prompts[2]
    assert result.ended_by == "hangup-verb"


def test_script_is_reusable_across_calls(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: gather_menu(numDigits="1")
    app.routes["/twilio/menu"] = lambda p: say_and_hangup(p["Digits"])
    script = CallScript.parse("7")

    first = run_call(app.config(), script)
    second = run_call(app.config(), script)

    assert first.spoken_text().endswith("7") and second.spoken_text().endswith("7")
    assert first.call_sid != second.call_sid


def test_parse_accepts_the_token_grammar() -> None:
    script = CallScript.parse(
        " 1 ,10#,0812345678#,-,silence,speech:เชียงใหม่,record,record:7,record:7:hangup,"
        "record:3:*,dial,dial:busy,dial:completed:42,hangup"
    )
    kinds = [a.kind for a in script.actions]
    assert kinds == [
        "digits", "digits", "digits", "silence", "silence", "speech", "record", "record", "record", "record",
        "dial", "dial", "dial", "hangup",
    ]  # fmt: skip
    record, record7, hang, star = script.actions[6:10]
    assert (record.seconds, record7.seconds, hang.hangup_during, star.finish_key) == (5, 7, True, "*")
    assert script.actions[5].speech == "เชียงใหม่"
    assert script.actions[12].seconds == 42
    assert parse_token("HANGUP").kind == "hangup"
    assert CallScript.parse("").actions == ()


@pytest.mark.parametrize(
    ("text", "bad", "position"),
    [
        ("1,,2", "''", 2),
        ("1,2,abc", "'abc'", 3),
        ("record:x", "'record:x'", 1),
        ("1,dial:maybe", "'dial:maybe'", 2),
        ("speech:", "'speech:'", 1),
        ("12a", "'12a'", 1),
    ],
)
def test_parse_rejects_bad_tokens_naming_token_and_position(text: str, bad: str, position: int) -> None:
    with pytest.raises(ValueError, match=re.escape(f"bad script token {bad} at position {position}")):
        CallScript.parse(text)


def test_text_plain_is_read_aloud_then_the_call_hangs_up(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: ("ระบบปิดปรับปรุง", 200, "text/plain; charset=utf-8")

    result = run_call(app.config(), CallScript.parse(""))

    assert result.spoken_text() == "ระบบปิดปรับปรุง"
    assert result.ended_by == "end-of-document"


def test_play_media_on_the_app_is_fetched_and_events_stream_to_on_event(
    serve: Callable[..., TwimlApp],
) -> None:
    app = serve()

    def voice(p: dict[str, str]) -> str:
        r = VoiceResponse()
        r.play("/media/welcome.wav")
        r.play("/media/missing.wav")
        r.say("no Thai voice", language="th-TH")
        r.pause(length=2)
        return twiml(r)

    app.routes[VOICE] = voice
    app.routes["/media/welcome.wav"] = lambda p: Response(generate_wav(1), 200, content_type="audio/x-wav")
    seen: list[str] = []

    result = run_call(app.config(), CallScript.parse(""), on_event=lambda e: seen.append(e.kind))

    assert_all_signed(app)
    assert seen == [e.kind for e in result.events]
    assert [e.url for e in result.of_kind("play")] == [
        f"{app.connect_base}/media/welcome.wav",
        f"{app.connect_base}/media/missing.wav",
    ]
    warnings = result.of_kind("warning")
    assert [(w.code, w.status) for w in warnings if w.code] == [(11200, 404)]
    assert any("Google" in w.text for w in warnings)  # <Say language="th-TH"> without a Thai voice
    assert result.of_kind("pause")[0].seconds == 2
    assert result.errors() == []
    assert all(e.describe() for e in result.events)


def test_a_verb_the_simulator_does_not_implement_ends_the_call(serve: Callable[..., TwimlApp]) -> None:
    app = serve()
    app.routes[VOICE] = lambda p: "<Response><Say>queue</Say><Enqueue>support</Enqueue></Response>"

    result = run_call(app.config(), CallScript.parse(""))

    assert result.ended_by == "error"
    assert "Enqueue" in result.errors()[0].text
