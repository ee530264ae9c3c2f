"""TwiML rendered from the engine's outcomes, asserted on the parsed XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import geothai
import pytest

from telephony.engine import (
    CallerInput,
    Context,
    Outcome,
    Recording,
    State,
    advance,
    render_current,
    resume,
    start,
)
from telephony.flow import Flow, load_flow, parse_flow
from telephony.twiml import Voices, empty, render, render_rescue, render_thanks

FLOW_FILE = Path(__file__).resolve().parents[2] / "ivr_flows" / "hotline.yaml"
BASE = "https://hotline.example.org"
VOICES = Voices(BASE, voice_th="Polly.Thai-Test", voice_en="Polly.English-Test")
TRANSFER_NUMBER = "+6621266565"
MONDAY_10_BANGKOK = datetime(2025, 3, 3, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow(FLOW_FILE)


def ctx(now: datetime = MONDAY_10_BANGKOK) -> Context:
    return Context(now=now, caller_id_present=True, transfer_number=TRANSFER_NUMBER)


def walk(flow: Flow, *inputs: CallerInput | str) -> Outcome:
    """The outcome after a new call and the given inputs (a str is keys pressed)."""
    outcome = start(flow, ctx())
    for inp in inputs:
        caller = CallerInput("gather", digits=inp) if isinstance(inp, str) else inp
        outcome = advance(flow, outcome.state, caller, ctx())
    return outcome


def recorded(duration: int = 20) -> CallerInput:
    sid = "RE" + "a" * 32
    return CallerInput("record", recording=Recording(sid, f"https://api.twilio.com/r/{sid}", duration))


def parse(body: str) -> ET.Element:
    root = ET.fromstring(body)  # noqa: S314 - our own TwiML, not untrusted input
    assert root.tag == "Response"
    return root


def twiml(outcome: Outcome, seq: int = 7, voices: Voices = VOICES) -> ET.Element:
    return parse(render(outcome.instructions, seq, voices))


def tags(element: ET.Element) -> list[str]:
    return [child.tag for child in element]


def url_parts(url: str | None) -> tuple[str, dict[str, list[str]]]:
    assert url is not None
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == BASE
    return parts.path, parse_qs(parts.query)


def assert_no_input_redirect(element: ET.Element, seq: int) -> None:
    assert element.tag == "Redirect"
    assert element.get("method") == "POST"
    assert url_parts(element.text) == ("/twilio/ivr", {"seq": [str(seq)], "ev": ["no_input"]})


# ---- Gather ---------------------------------------------------------------------------------------


def test_welcome_then_menu_gather_with_prompt_inside(flow: Flow) -> None:
    root = twiml(walk(flow), seq=7)

    assert tags(root) == ["Say", "Gather", "Redirect"]
    welcome, gather, redirect = root
    assert welcome.get("language") == "th-TH"
    assert welcome.get("voice") == "Polly.Thai-Test"
    assert welcome.text is not None and "1669" in welcome.text

    assert url_parts(gather.get("action")) == ("/twilio/ivr", {"seq": ["7"], "ev": ["gather"]})
    assert gather.get("method") == "POST"
    assert gather.get("numDigits") == "1"
    assert gather.get("finishOnKey") == ""  # present and empty: '#' and '*' reach us as keys
    assert gather.get("input") == "dtmf"
    assert gather.get("timeout") == "6"
    assert gather.get("language") is None
    assert gather.get("hints") is None

    # The menu is said inside the Gather so a caller can key while it plays.
    assert tags(gather) == ["Say"]
    (menu,) = gather
    assert menu.get("language") == "th-TH"
    assert menu.get("voice") == "Polly.Thai-Test"
    assert menu.text is not None and "กด 1" in menu.text
    assert_no_input_redirect(redirect, 7)


def test_no_input_hint_is_inside_the_gather_before_the_menu(flow: Flow) -> None:
    root = twiml(walk(flow, CallerInput("no_input")), seq=3)

    assert tags(root) == ["Gather", "Redirect"]
    hint, menu = root[0]
    assert hint.text == "ขออภัยค่ะ ไม่ได้รับการกดหมายเลข"
    assert menu.text is not None and menu.text.startswith("เรื่องความรุนแรง กด 1")
    assert_no_input_redirect(root[1], 3)


def test_province_gather_takes_keys_and_thai_speech_with_77_hints(flow: Flow) -> None:
    root = twiml(walk(flow, "1"), seq=12)

    assert tags(root) == ["Gather", "Redirect"]
    gather = root[0]
    assert url_parts(gather.get("action")) == ("/twilio/ivr", {"seq": ["12"], "ev": ["gather"]})
    assert gather.get("input") == "dtmf speech"
    assert gather.get("language") == "th-TH"
    assert gather.get("speechTimeout") == "auto"
    assert gather.get("numDigits") == "2"
    assert gather.get("finishOnKey") == ""
    hints = (gather.get("hints") or "").split(",")
    assert len(hints) == 77
    assert set(hints) == {p.name_th for p in geothai.provinces()}
    assert tags(gather) == ["Say"]
    assert_no_input_redirect(root[1], 12)


def test_province_readback_gather_is_one_key_without_speech(flow: Flow) -> None:
    root = twiml(walk(flow, "1", "50"))
    gather = root[0]
    assert gather.get("input") == "dtmf"
    assert gather.get("numDigits") == "1"
    assert gather.get("hints") is None
    assert [s.text for s in gather] == ["จังหวัดเชียงใหม่ ถูกต้อง กด 1 กดใหม่ กด 2"]


def test_callback_number_gather_finishes_on_pound(flow: Flow) -> None:
    root = twiml(walk(flow, "1", "#", "2"))

    assert tags(root) == ["Gather", "Redirect"]
    gather = root[0]
    assert gather.get("finishOnKey") == "#"
    assert gather.get("numDigits") is None
    assert gather.get("input") == "dtmf"
    assert gather.get("timeout") == "10"


# ---- Record ---------------------------------------------------------------------------------------


def test_record_step(flow: Flow) -> None:
    root = twiml(walk(flow, "1", "#", "3"), seq=21)

    assert tags(root) == ["Say", "Record", "Redirect"]
    prompt, record, redirect = root
    assert prompt.get("language") == "th-TH"
    assert prompt.text is not None and prompt.text.startswith("หลังเสียงสัญญาณ")
    assert url_parts(record.get("action")) == ("/twilio/ivr", {"seq": ["21"], "ev": ["record"]})
    assert record.get("method") == "POST"
    assert record.get("maxLength") == "180"
    assert record.get("finishOnKey") == "#"
    assert record.get("timeout") == "10"
    assert record.get("playBeep") == "true"
    assert url_parts(record.get("recordingStatusCallback")) == ("/twilio/recording-status", {})
    assert record.get("recordingStatusCallbackMethod") == "POST"
    assert record.get("recordingStatusCallbackEvent") == "completed absent"
    assert_no_input_redirect(redirect, 21)


def test_record_again_renders_a_new_record(flow: Flow) -> None:
    root = twiml(walk(flow, "1", "#", "3", recorded(), "2"), seq=30)
    assert tags(root) == ["Say", "Record", "Redirect"]
    assert url_parts(root[1].get("action")) == ("/twilio/ivr", {"seq": ["30"], "ev": ["record"]})


def test_record_confirmation_is_a_one_key_gather(flow: Flow) -> None:
    root = twiml(walk(flow, "1", "#", "3", recorded()))
    assert tags(root) == ["Gather", "Redirect"]
    assert root[0].get("numDigits") == "1"
    assert [s.text for s in root[0]] == ["ส่งข้อความนี้ กด 1 บันทึกใหม่ กด 2"]


# ---- Dial and Hangup ------------------------------------------------------------------------------


def test_transfer_dials_the_configured_number(flow: Flow) -> None:
    root = twiml(walk(flow, "0"), seq=4)

    assert tags(root) == ["Say", "Dial"]  # Twilio requests the Dial action itself: no Redirect
    say, dial = root
    assert say.text == "กำลังโอนสายถึงเจ้าหน้าที่ กรุณารอสักครู่ค่ะ"
    assert url_parts(dial.get("action")) == ("/twilio/ivr", {"seq": ["4"], "ev": ["dial"]})
    assert dial.get("method") == "POST"
    assert dial.get("timeout") == "25"
    assert tags(dial) == ["Number"]
    assert dial[0].text == TRANSFER_NUMBER


def test_answered_transfer_says_goodbye_and_hangs_up(flow: Flow) -> None:
    root = twiml(walk(flow, "0", CallerInput("dial", dial_status="completed")))
    assert tags(root) == ["Say", "Hangup"]
    assert root[0].text == "ขอบคุณที่ติดต่อศูนย์ความปลอดภัย กระทรวงศึกษาธิการค่ะ"


def test_close_reads_reference_then_hangs_up(flow: Flow) -> None:
    sent = walk(flow, "1", "#", "3", recorded(), "1")
    assert sent.effect == "open_case"
    state = State.from_json({**sent.state.to_json(), "vars": {**sent.state.vars, "reference": "12345674"}})
    root = twiml(resume(flow, state, ctx()))
    assert tags(root) == ["Say", "Hangup"]
    assert root[0].text is not None
    assert root[0].text.count("หนึ่ง สอง สาม สี่ ห้า หก เจ็ด สี่") == 2


# ---- language, voice and audio --------------------------------------------------------------------


def test_english_says_en_us_with_the_english_voice(flow: Flow) -> None:
    root = twiml(walk(flow, "9"))

    assert tags(root) == ["Say", "Gather", "Redirect"]
    welcome, gather, _ = root
    for say in (welcome, gather[0]):
        assert say.get("language") == "en-US"
        assert say.get("voice") == "Polly.English-Test"
    assert welcome.text is not None and welcome.text.startswith("Welcome")


def test_voices_are_configurable(flow: Flow) -> None:
    other = Voices("https://other.example", voice_th="Google.th-TH-Standard-B", voice_en="Google.en-US-X")
    root = twiml(walk(flow), voices=other)
    assert root[0].get("voice") == "Google.th-TH-Standard-B"
    action = root[1].get("action") or ""
    assert action.startswith("https://other.example/twilio/ivr?")


AUDIO_FLOW = {
    "flow": "audio",
    "start": "hello",
    "rescue": {"prompt": "ขออภัย", "thanks": "ขอบคุณ"},
    "nodes": [
        {
            "id": "hello",
            "type": "say",
            "prompt": {"th": "สวัสดี", "en": "Hello", "audio": {"th": "hello th.wav"}},
            "next": "menu",
        },
        {
            "id": "menu",
            "type": "menu",
            "prompt": {"th": "กด 1", "audio": {"th": "menu.mp3"}},
            "options": {"1": "bye"},
            "default": "bye",
        },
        {"id": "bye", "type": "hangup"},
    ],
}


def test_audio_prompt_is_played_instead_of_said() -> None:
    audio_flow = parse_flow(AUDIO_FLOW, "audio.yaml")
    root = twiml(start(audio_flow, ctx()), seq=1)

    assert tags(root) == ["Play", "Gather", "Redirect"]
    assert root[0].text == BASE + "/twilio/audio/hello%20th.wav"
    assert tags(root[1]) == ["Play"]
    assert root[1][0].text == BASE + "/twilio/audio/menu.mp3"


def test_prompt_without_audio_in_the_language_is_said() -> None:
    audio_flow = parse_flow(AUDIO_FLOW, "audio.yaml")
    english = State(node="hello", language="en")
    root = twiml(render_current(audio_flow, english, ctx()))
    assert root[0].tag == "Say"
    assert root[0].get("language") == "en-US"
    assert root[0].text == "Hello"
    # No English text or audio for the menu: the Thai recording is played.
    assert root[1][0].tag == "Play"


# ---- rescue and other fixed answers ---------------------------------------------------------------


@pytest.mark.parametrize(("language", "say_language"), [("th", "th-TH"), ("en", "en-US")])
def test_rescue_takes_a_message(flow: Flow, language: str, say_language: str) -> None:
    root = parse(render_rescue(flow.rescue, language, VOICES))

    assert tags(root) == ["Say", "Record", "Say", "Hangup"]
    sorry, record, thanks, _ = root
    assert sorry.text == flow.rescue.prompt.text[language]
    assert thanks.text == flow.rescue.thanks.text[language]
    assert {sorry.get("language"), thanks.get("language")} == {say_language}
    assert url_parts(record.get("action")) == ("/twilio/rescue-recording", {})
    assert record.get("method") == "POST"
    assert record.get("maxLength") == "180"
    assert record.get("finishOnKey") == "#"
    assert url_parts(record.get("recordingStatusCallback")) == ("/twilio/recording-status", {})
    assert record.get("recordingStatusCallbackEvent") == "completed absent"


def test_thanks_after_rescue_recording(flow: Flow) -> None:
    root = parse(render_thanks(flow.rescue, "th", VOICES))
    assert tags(root) == ["Say", "Hangup"]
    assert root[0].text == flow.rescue.thanks.text["th"]


def test_empty_response_for_status_callbacks() -> None:
    root = parse(empty())
    assert list(root) == []
