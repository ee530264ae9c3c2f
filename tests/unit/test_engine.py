"""Every branch of the hotline flow, walked call by call through the pure IVR engine."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from telephony.engine import (
    CallerInput,
    Context,
    Dial,
    EngineError,
    FlowEvent,
    Gather,
    Hangup,
    Instruction,
    NoInput,
    Outcome,
    Record,
    Recording,
    Say,
    State,
    advance,
    resume,
    start,
)
from telephony.flow import (
    DigitsNode,
    Flow,
    HangupNode,
    MenuNode,
    Node,
    Prompt,
    RecordNode,
    SayNode,
    TransferNode,
    load_flow,
)

FLOW_FILE = Path(__file__).resolve().parents[2] / "ivr_flows" / "hotline.yaml"
TRANSFER_NUMBER = "+6621266565"
# 2025-03-03 is a Monday; Bangkok is UTC+7 all year.
MONDAY_10_BANGKOK = datetime(2025, 3, 3, 3, 0, tzinfo=UTC)
REFERENCE = "40736181"
REFERENCE_TH = "สี่ ศูนย์ เจ็ด สาม หก หนึ่ง แปด หนึ่ง"
REFERENCE_EN = "four zero seven three six one eight one"
CALLBACK_DIGITS = "0812345678"
CALLBACK_E164 = "+66812345678"
N = TypeVar("N", bound=Node)


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow(FLOW_FILE)


def context(
    now: datetime = MONDAY_10_BANGKOK, caller_id: bool = True, transfer: str | None = TRANSFER_NUMBER
) -> Context:
    return Context(now=now, caller_id_present=caller_id, transfer_number=transfer)


@dataclass
class Walk:
    """One simulated call: feeds the caller's inputs to the engine and keeps every outcome."""

    flow: Flow
    ctx: Context
    outcomes: list[Outcome] = field(default_factory=list)

    @classmethod
    def call(
        cls,
        flow: Flow,
        now: datetime = MONDAY_10_BANGKOK,
        caller_id: bool = True,
        transfer: str | None = TRANSFER_NUMBER,
    ) -> Walk:
        walk = cls(flow, context(now, caller_id, transfer))
        walk.outcomes.append(start(flow, walk.ctx))
        return walk

    @property
    def last(self) -> Outcome:
        return self.outcomes[-1]

    @property
    def state(self) -> State:
        return self.last.state

    def feed(self, inp: CallerInput) -> Outcome:
        assert not self.last.ended, "the call has ended"
        assert self.last.effect is None, "the engine is waiting for resume()"
        self.outcomes.append(advance(self.flow, self.state, inp, self.ctx))
        return self.last

    def key(self, digits: str) -> Outcome:
        return self.feed(CallerInput("gather", digits=digits))

    def speak(self, speech: str) -> Outcome:
        return self.feed(CallerInput("gather", speech=speech))

    def silence(self) -> Outcome:
        return self.feed(CallerInput("no_input"))

    def record(self, sid: str = "RE" + "a" * 32, duration: int = 25, hung_up: bool = False) -> Outcome:
        rec = Recording(sid=sid, url=f"https://api.twilio.com/recordings/{sid}", duration_s=duration)
        return self.feed(CallerInput("record", recording=rec, caller_hung_up=hung_up))

    def dial(self, status: str) -> Outcome:
        return self.feed(CallerInput("dial", dial_status=status))

    def resume(self, reference: str = REFERENCE) -> Outcome:
        assert self.last.effect == "open_case"
        state = replace(self.state, vars={**self.state.vars, "reference": reference})
        self.outcomes.append(resume(self.flow, state, self.ctx))
        return self.last

    def looked_up(self, standing: str | None) -> Outcome:
        """The service's answer to lookup_case: the case's standing, or None when no case has it."""
        assert self.last.effect == "lookup_case"
        self.outcomes.append(resume(self.flow, self.state, self.ctx, standing=standing))
        return self.last

    def attached(self) -> Outcome:
        assert self.last.effect == "attach_message"
        self.outcomes.append(resume(self.flow, self.state, self.ctx))
        return self.last

    def events(self) -> list[FlowEvent]:
        return [e for o in self.outcomes for e in o.events]

    def kinds(self, node: str) -> list[str]:
        return [e.kind for e in self.events() if e.node == node]

    # shortcuts through the parts of the flow a test is not about
    def to_province(self) -> Walk:
        self.key("1")
        return self

    def to_callback(self) -> Walk:
        self.to_province().key("50")
        self.key("1")
        return self

    def to_record(self) -> Walk:
        self.to_callback().key("3")
        return self


def said(outcome: Outcome) -> list[Say]:
    """Every Say of an outcome, in order, including the prompts inside a Gather."""
    out: list[Say] = []
    for item in outcome.instructions:
        if isinstance(item, Gather):
            out += [p for p in item.prompts if isinstance(p, Say)]
        elif isinstance(item, Say):
            out.append(item)
    return out


def texts(outcome: Outcome) -> list[str]:
    return [s.text for s in said(outcome)]


def th(prompt: Prompt | None) -> str:
    assert prompt is not None
    return prompt.text["th"]


def en(prompt: Prompt | None) -> str:
    assert prompt is not None
    return prompt.text["en"]


def waiting(outcome: Outcome) -> Instruction:
    """The instruction the call waits on (a Gather, Record or Dial), checking the shape around it."""
    waits = [i for i in outcome.instructions if isinstance(i, Gather | Record | Dial)]
    assert len(waits) == 1, outcome.instructions
    wait = waits[0]
    if isinstance(wait, Gather | Record):
        # Twilio falls through to the next verb on silence: that must bring the call back to us.
        assert outcome.instructions[-1] == NoInput()
        assert outcome.instructions[-2] is wait
    assert not outcome.ended
    assert Hangup() not in outcome.instructions
    return wait


def gather(outcome: Outcome) -> Gather:
    wait = waiting(outcome)
    assert isinstance(wait, Gather)
    return wait


def node_of(flow: Flow, node_id: str, kind: type[N]) -> N:
    found = flow.nodes[node_id]
    assert isinstance(found, kind)
    return found


# ---- start and the main path ---------------------------------------------------------------------


def test_call_starts_with_welcome_in_thai_then_waits_at_main_menu(flow: Flow) -> None:
    walk = Walk.call(flow)

    welcome, menu = said(walk.last)
    assert welcome == Say(th(node_of(flow, "welcome", SayNode).prompt), "th")
    assert "191" in welcome.text and "1669" in welcome.text and "1300" in welcome.text
    assert menu.language == "th"
    g = gather(walk.last)
    assert g.num_digits == 1
    assert g.finish_on_key == ""
    assert g.speech_language is None
    assert walk.state == State(node="main_menu", language="th")
    assert walk.events() == [FlowEvent("welcome", "call_started")]


def test_main_path_opens_case_and_close_reads_reference_digit_by_digit(flow: Flow) -> None:
    walk = Walk.call(flow)
    walk.key("1")
    walk.key("50")
    walk.key("1")
    walk.key("1")
    assert walk.state.node == "record_message"
    walk.record(sid="RE" + "b" * 32, duration=42)
    assert walk.state.phase == "confirm"
    sent = walk.key("1")

    assert sent.effect == "open_case"
    assert not sent.ended
    assert sent.instructions == ()
    assert sent.state.node == "submit"
    assert sent.state.vars["category"] == "violence"
    assert sent.state.vars["province_code"] == "50"
    assert sent.state.vars["callback"] == "caller"
    assert sent.state.vars["recording_sid"] == "RE" + "b" * 32
    assert sent.state.vars["recording_duration"] == "42"
    assert "callback_number" not in sent.state.vars
    assert FlowEvent("submit", "submit") in sent.events

    closed = walk.resume(REFERENCE)
    assert closed.ended
    assert closed.effect is None
    assert closed.state.node == "close"
    assert closed.instructions[-1] == Hangup()
    (goodbye,) = said(closed)
    assert goodbye.language == "th"
    # Spoken as words twice, never as the number "40736181" a voice would read as a quantity.
    assert goodbye.text.count(REFERENCE_TH) == 2
    assert REFERENCE not in goodbye.text
    assert FlowEvent("close", "hangup") in closed.events


def test_resume_outside_a_submit_node_is_refused(flow: Flow) -> None:
    walk = Walk.call(flow)
    with pytest.raises(EngineError, match="main_menu"):
        resume(flow, walk.state, walk.ctx)


# ---- main menu ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "category"),
    [("1", "violence"), ("2", "accident"), ("3", "rights_violation"), ("4", "health_harm")],
)
def test_each_hazard_key_sets_category_and_asks_province(flow: Flow, key: str, category: str) -> None:
    walk = Walk.call(flow)
    out = walk.key(key)

    assert out.state.vars == {"category": category}
    assert out.state.node == "ask_province"
    assert texts(out) == [th(node_of(flow, "ask_province", DigitsNode).prompt)]
    assert FlowEvent("main_menu", "key", {"key": key}) in out.events
    assert FlowEvent("main_menu", "set", {"category": category}) in out.events


def test_no_input_at_main_menu_says_hint_and_counts_a_try(flow: Flow) -> None:
    menu = node_of(flow, "main_menu", MenuNode)
    walk = Walk.call(flow)
    out = walk.silence()

    assert out.state.node == "main_menu"
    assert out.state.tries == 1
    assert texts(out) == [th(menu.no_input), th(menu.prompt)]
    assert gather(out).num_digits == 1
    assert out.events == (FlowEvent("main_menu", "no_input", {"try": "1"}),)


@pytest.mark.parametrize("key", ["6", "7", "8", "#"])
def test_invalid_key_at_main_menu_says_hint_and_counts_a_try(flow: Flow, key: str) -> None:
    menu = node_of(flow, "main_menu", MenuNode)
    walk = Walk.call(flow)
    out = walk.key(key)

    assert out.state.node == "main_menu"
    assert out.state.tries == 1
    assert texts(out) == [th(menu.invalid), th(menu.prompt)]
    assert out.events == (FlowEvent("main_menu", "invalid", {"try": "1"}),)
    assert "category" not in out.state.vars


def test_three_failures_at_main_menu_go_on_unspecified_never_hang_up(flow: Flow) -> None:
    menu = node_of(flow, "main_menu", MenuNode)
    walk = Walk.call(flow)
    walk.silence()
    second = walk.key("7")
    assert second.state.tries == 2
    third = walk.silence()

    assert third.state.node == "ask_province"
    assert third.state.tries == 0
    assert third.state.vars == {"category": "unspecified"}
    assert texts(third) == [
        th(menu.default.prompt),
        th(node_of(flow, "ask_province", DigitsNode).prompt),
    ]
    waiting(third)  # asks the province: not ended, no Hangup
    assert "tries_exhausted" in walk.kinds("main_menu")
    # ...and the caller is still offered to leave a message.
    walk.key("#")
    walk.key("3")
    assert isinstance(waiting(walk.last), Record)


def test_star_repeats_the_menu_without_spending_a_try(flow: Flow) -> None:
    menu = node_of(flow, "main_menu", MenuNode)
    walk = Walk.call(flow)
    walk.silence()
    repeated = walk.key("*")

    assert repeated.state.node == "main_menu"
    assert repeated.state.tries == 1
    assert texts(repeated) == [th(menu.prompt)]
    # Any number of repeats still leaves the caller their remaining tries.
    for _ in range(5):
        walk.key("*")
    assert walk.state.tries == 1
    walk.key("7")
    assert walk.state.node == "main_menu"
    walk.key("7")
    assert walk.state.node == "ask_province"
    assert walk.state.vars["category"] == "unspecified"


def test_nine_switches_to_english_and_replays_welcome_then_prompts_stay_english(flow: Flow) -> None:
    walk = Walk.call(flow)
    walk.silence()
    out = walk.key("9")

    assert out.state.language == "en"
    assert out.state.node == "main_menu"
    assert out.state.tries == 0
    welcome, menu = said(out)
    assert welcome == Say(en(node_of(flow, "welcome", SayNode).prompt), "en")
    assert welcome.text.startswith("Welcome to the Ministry of Education Safety Center")
    assert menu == Say(en(node_of(flow, "main_menu", MenuNode).prompt), "en")
    assert gather(out).prompts == (menu,)
    assert FlowEvent("main_menu", "language", {"language": "en"}) in out.events

    province = walk.key("2")
    assert said(province) == [Say(en(node_of(flow, "ask_province", DigitsNode).prompt), "en")]
    readback = walk.key("50")
    assert readback.state.language == "en"
    assert all(s.language == "en" for s in said(readback))
    assert said(readback)[0].text.startswith("Chiang Mai.")
    walk.key("1")
    walk.key("3")
    walk.record()
    walk.key("1")
    closed = walk.resume(REFERENCE)
    (goodbye,) = said(closed)
    assert goodbye.language == "en"
    assert goodbye.text.count(REFERENCE_EN) == 2


def test_english_errors_are_english(flow: Flow) -> None:
    menu = node_of(flow, "main_menu", MenuNode)
    walk = Walk.call(flow)
    walk.key("9")
    out = walk.key("7")
    assert said(out) == [Say(en(menu.invalid), "en"), Say(en(menu.prompt), "en")]


# ---- transfer to staff -----------------------------------------------------------------------------


def test_transfer_in_office_hours_dials_the_configured_number(flow: Flow) -> None:
    node = node_of(flow, "transfer_staff", TransferNode)
    walk = Walk.call(flow)
    out = walk.key("0")

    assert out.state.node == "transfer_staff"
    assert texts(out) == [th(node.prompt)]
    assert waiting(out) == Dial(TRANSFER_NUMBER, 25)
    assert out.instructions[-1] == Dial(TRANSFER_NUMBER, 25)
    assert FlowEvent("transfer_staff", "transfer_dial") in out.events


def test_transfer_answered_ends_with_goodbye(flow: Flow) -> None:
    walk = Walk.call(flow)
    walk.key("0")
    out = walk.dial("completed")

    assert out.ended
    assert out.state.node == "goodbye"
    assert texts(out) == [th(node_of(flow, "goodbye", HangupNode).prompt)]
    assert out.instructions[-1] == Hangup()
    assert out.effect is None
    assert FlowEvent("transfer_staff", "dial_result", {"status": "completed"}) in out.events


@pytest.mark.parametrize("status", ["no-answer", "busy", "failed", "canceled"])
def test_transfer_not_answered_falls_back_to_leaving_a_report(flow: Flow, status: str) -> None:
    node = node_of(flow, "transfer_staff", TransferNode)
    walk = Walk.call(flow)
    walk.key("0")
    out = walk.dial(status)

    assert not out.ended
    assert out.state.node == "ask_province"
    assert out.state.vars == {"category": "unspecified"}
    assert texts(out) == [
        th(node.unanswered.prompt),
        th(node_of(flow, "ask_province", DigitsNode).prompt),
    ]
    assert FlowEvent("transfer_staff", "dial_result", {"status": status}) in out.events


def test_transfer_dial_request_without_status_counts_as_unanswered(flow: Flow) -> None:
    walk = Walk.call(flow)
    walk.key("0")
    out = walk.feed(CallerInput("no_input"))
    assert out.state.node == "ask_province"
    assert FlowEvent("transfer_staff", "dial_result", {"status": "failed"}) in out.events


@pytest.mark.parametrize(
    "now",
    [
        pytest.param(datetime(2025, 3, 8, 3, 0, tzinfo=UTC), id="saturday-10:00"),
        pytest.param(datetime(2025, 3, 9, 3, 0, tzinfo=UTC), id="sunday-10:00"),
        pytest.param(datetime(2025, 3, 3, 10, 0, tzinfo=UTC), id="monday-17:00"),
        pytest.param(datetime(2025, 3, 3, 9, 30, tzinfo=UTC), id="monday-16:30-closing"),
        pytest.param(datetime(2025, 3, 3, 1, 29, tzinfo=UTC), id="monday-08:29"),
        pytest.param(datetime(2025, 3, 2, 20, 0, tzinfo=UTC), id="sunday-20:00-utc-is-monday-03:00"),
    ],
)
def test_transfer_outside_office_hours_takes_closed_branch(flow: Flow, now: datetime) -> None:
    node = node_of(flow, "transfer_staff", TransferNode)
    walk = Walk.call(flow, now=now)
    out = walk.key("0")

    assert isinstance(waiting(out), Gather)
    assert not any(isinstance(i, Dial) for i in out.instructions)
    assert out.state.node == "ask_province"
    assert out.state.vars == {"category": "unspecified"}
    assert texts(out) == [
        th(node.closed.prompt),
        th(node_of(flow, "ask_province", DigitsNode).prompt),
    ]
    assert FlowEvent("transfer_staff", "transfer_unavailable", {"reason": "closed"}) in out.events


@pytest.mark.parametrize(
    "now",
    [
        pytest.param(datetime(2025, 3, 3, 2, 0, tzinfo=UTC), id="02:00-utc-is-09:00-bangkok"),
        pytest.param(datetime(2025, 3, 3, 1, 30, tzinfo=UTC), id="08:30-opening"),
        pytest.param(datetime(2025, 3, 7, 9, 29, tzinfo=UTC), id="friday-16:29"),
    ],
)
def test_transfer_inside_office_hours_in_bangkok_time(flow: Flow, now: datetime) -> None:
    walk = Walk.call(flow, now=now)
    assert waiting(walk.key("0")) == Dial(TRANSFER_NUMBER, 25)


def test_transfer_without_configured_number_takes_closed_branch(flow: Flow) -> None:
    walk = Walk.call(flow, transfer=None)
    out = walk.key("0")

    assert not any(isinstance(i, Dial) for i in out.instructions)
    assert out.state.node == "ask_province"
    assert texts(out)[0] == th(node_of(flow, "transfer_staff", TransferNode).closed.prompt)
    assert FlowEvent("transfer_staff", "transfer_unavailable", {"reason": "no_number"}) in out.events


# ---- province -----------------------------------------------------------------------------------------


def test_province_gather_takes_two_keys_or_thai_speech(flow: Flow) -> None:
    walk = Walk.call(flow).to_province()
    g = gather(walk.last)
    assert g.num_digits == 2
    assert g.finish_on_key == ""  # so '#' reaches us as the skip key
    assert g.speech_language == "th-TH"
    assert g.hints is not None
    assert len(g.hints.split(",")) == 77


def test_province_by_keys_is_read_back_then_confirmed(flow: Flow) -> None:
    walk = Walk.call(flow).to_province()
    readback = walk.key("50")

    assert readback.state.node == "ask_province"
    assert readback.state.phase == "confirm"
    assert texts(readback) == ["จังหวัดเชียงใหม่ ถูกต้อง กด 1 กดใหม่ กด 2"]
    assert gather(readback).num_digits == 1
    assert gather(readback).speech_language is None
    assert "province_code" not in readback.state.vars
    assert FlowEvent("ask_province", "entered", {"via": "keys", "value": "50"}) in readback.events

    confirmed = walk.key("1")
    assert confirmed.state.node == "callback_menu"
    assert confirmed.state.vars["province_code"] == "50"
    assert confirmed.state.vars["province_name_th"] == "เชียงใหม่"
    assert confirmed.state.vars["province_name_en"] == "Chiang Mai"
    assert confirmed.state.pending == {}
    assert texts(confirmed) == [th(node_of(flow, "callback_menu", MenuNode).prompt)]
    assert FlowEvent("ask_province", "confirmed") in confirmed.events


@pytest.mark.parametrize(
    ("speech", "code", "name"),
    [
        pytest.param("จังหวัดเชียงใหม่", "50", "เชียงใหม่", id="with-province-word"),
        pytest.param("เกิดที่ขอนแก่นค่ะ", "40", "ขอนแก่น", id="in-a-sentence"),
        pytest.param("กทม", "10", "กรุงเทพมหานคร", id="bangkok-abbreviation"),
    ],
)
def test_province_by_speech(flow: Flow, speech: str, code: str, name: str) -> None:
    walk = Walk.call(flow).to_province()
    readback = walk.speak(speech)

    assert readback.state.phase == "confirm"
    assert texts(readback) == [f"จังหวัด{name} ถูกต้อง กด 1 กดใหม่ กด 2"]
    assert FlowEvent("ask_province", "entered", {"via": "speech", "value": code}) in readback.events
    walk.key("1")
    assert walk.state.vars["province_code"] == code


def test_province_speech_not_understood_is_invalid(flow: Flow) -> None:
    node = node_of(flow, "ask_province", DigitsNode)
    walk = Walk.call(flow).to_province()
    out = walk.speak("ไม่แน่ใจค่ะ")
    assert out.state.phase == "ask"
    assert out.state.tries == 1
    assert texts(out) == [th(node.invalid), th(node.prompt)]


def test_province_skip_with_pound(flow: Flow) -> None:
    walk = Walk.call(flow).to_province()
    out = walk.key("#")

    assert out.state.node == "callback_menu"
    assert "province_code" not in out.state.vars
    assert texts(out) == [th(node_of(flow, "callback_menu", MenuNode).prompt)]
    assert FlowEvent("ask_province", "skipped") in out.events


@pytest.mark.parametrize("digits", ["99", "00", "1", "28", "59"])
def test_province_invalid_code_is_refused_with_hint(flow: Flow, digits: str) -> None:
    node = node_of(flow, "ask_province", DigitsNode)
    walk = Walk.call(flow).to_province()
    out = walk.key(digits)

    assert out.state.node == "ask_province"
    assert out.state.phase == "ask"
    assert out.state.tries == 1
    assert texts(out) == [th(node.invalid), th(node.prompt)]
    assert out.events == (FlowEvent("ask_province", "invalid", {"try": "1"}),)


def test_province_no_input_says_no_input_hint(flow: Flow) -> None:
    node = node_of(flow, "ask_province", DigitsNode)
    walk = Walk.call(flow).to_province()
    out = walk.silence()
    assert out.state.tries == 1
    assert texts(out) == [th(node.no_input), th(node.prompt)]


def test_province_enter_again_with_two_at_readback(flow: Flow) -> None:
    node = node_of(flow, "ask_province", DigitsNode)
    walk = Walk.call(flow).to_province()
    walk.key("50")
    again = walk.key("2")

    assert again.state.node == "ask_province"
    assert again.state.phase == "ask"
    assert again.state.pending == {}
    assert texts(again) == [th(node.prompt)]
    assert gather(again).num_digits == 2
    assert FlowEvent("ask_province", "enter_again") in again.events

    walk.key("10")
    walk.key("1")
    assert walk.state.node == "callback_menu"
    assert walk.state.vars["province_code"] == "10"


def test_province_tries_exhausted_goes_on_without_province(flow: Flow) -> None:
    node = node_of(flow, "ask_province", DigitsNode)
    walk = Walk.call(flow).to_province()
    walk.key("99")
    walk.silence()
    out = walk.key("00")

    assert out.state.node == "callback_menu"
    assert "province_code" not in out.state.vars
    assert out.state.vars["category"] == "violence"
    assert texts(out) == [
        th(node.on_fail.prompt),
        th(node_of(flow, "callback_menu", MenuNode).prompt),
    ]
    assert "tries_exhausted" in walk.kinds("ask_province")


def test_province_readback_unanswered_keeps_the_valid_province(flow: Flow) -> None:
    walk = Walk.call(flow).to_province()
    walk.key("50")
    first = walk.silence()
    assert first.state.phase == "confirm"
    assert texts(first)[-1] == "จังหวัดเชียงใหม่ ถูกต้อง กด 1 กดใหม่ กด 2"
    walk.key("7")
    out = walk.silence()
    assert out.state.node == "callback_menu"
    assert out.state.vars["province_code"] == "50"
    assert "confirmed_by_default" in walk.kinds("ask_province")


# ---- callback -------------------------------------------------------------------------------------------


def test_callback_on_this_number_with_caller_id(flow: Flow) -> None:
    walk = Walk.call(flow).to_callback()
    out = walk.key("1")

    assert out.state.node == "record_message"
    assert out.state.vars["callback"] == "caller"
    assert "callback_number" not in out.state.vars
    assert isinstance(waiting(out), Record)
    assert FlowEvent("check_caller_id", "branch", {"to": "record_message"}) in out.events


def test_callback_on_this_number_without_caller_id_asks_for_a_number(flow: Flow) -> None:
    node = node_of(flow, "ask_callback_number", DigitsNode)
    walk = Walk.call(flow, caller_id=False).to_callback()
    asked = walk.key("1")

    assert asked.state.node == "ask_callback_number"
    assert texts(asked)[-1] == th(node.prompt)
    assert gather(asked).finish_on_key == "#"
    walk.key(CALLBACK_DIGITS)
    out = walk.key("1")
    assert out.state.node == "record_message"
    assert out.state.vars["callback_number"] == CALLBACK_E164
    # The number the caller keyed is the one to call back: the case must not look for a caller ID.
    assert out.state.vars["callback"] == "other"


def test_callback_on_another_number_read_back_then_confirmed(flow: Flow) -> None:
    node = node_of(flow, "ask_callback_number", DigitsNode)
    walk = Walk.call(flow).to_callback()
    asked = walk.key("2")

    assert asked.state.node == "ask_callback_number"
    assert asked.state.vars["callback"] == "other"
    g = gather(asked)
    assert g.finish_on_key == "#"
    assert g.num_digits is None
    assert g.speech_language is None
    assert texts(asked) == [th(node.prompt)]

    readback = walk.key(CALLBACK_DIGITS)
    assert readback.state.phase == "confirm"
    assert texts(readback) == ["หมายเลข ศูนย์ แปด หนึ่ง สอง สาม สี่ ห้า หก เจ็ด แปด ถูกต้อง กด 1 กดใหม่ กด 2"]
    confirmed = walk.key("1")
    assert confirmed.state.node == "record_message"
    assert confirmed.state.vars["callback_number"] == CALLBACK_E164
    assert confirmed.state.pending == {}


def test_callback_number_never_appears_in_events(flow: Flow) -> None:
    assert "callback_number" in flow.sensitive_vars
    walk = Walk.call(flow).to_callback()
    walk.key("2")
    walk.key("0899999999")
    walk.key("2")
    walk.key(CALLBACK_DIGITS)
    walk.silence()
    walk.key("1")
    walk.record()
    walk.key("1")
    walk.resume()

    events = walk.events()
    assert any(e.node == "ask_callback_number" and e.kind == "entered" for e in events)
    for event in events:
        for key, value in event.detail.items():
            for digits in ("812345678", "899999999", "แปด หนึ่ง สอง สาม", "eight one two three"):
                assert digits not in key + value, event


@pytest.mark.parametrize(
    "digits", ["12345", "081234567", "08123456789", "0212345678", "14155552671", "66812345678"]
)
def test_callback_invalid_number_is_refused_with_hint(flow: Flow, digits: str) -> None:
    node = node_of(flow, "ask_callback_number", DigitsNode)
    walk = Walk.call(flow).to_callback()
    walk.key("2")
    out = walk.key(digits)

    assert out.state.node == "ask_callback_number"
    assert out.state.phase == "ask"
    assert out.state.tries == 1
    assert out.state.pending == {}
    assert texts(out) == [th(node.invalid), th(node.prompt)]
    assert gather(out).finish_on_key == "#"
    assert out.events == (FlowEvent("ask_callback_number", "invalid", {"try": "1"}),)


def test_callback_enter_again(flow: Flow) -> None:
    node = node_of(flow, "ask_callback_number", DigitsNode)
    walk = Walk.call(flow).to_callback()
    walk.key("2")
    walk.key("0899999999")
    again = walk.key("2")

    assert again.state.phase == "ask"
    assert again.state.pending == {}
    assert texts(again) == [th(node.prompt)]
    assert gather(again).finish_on_key == "#"
    walk.key(CALLBACK_DIGITS)
    walk.key("1")
    assert walk.state.vars["callback_number"] == CALLBACK_E164


def test_callback_tries_exhausted_means_no_callback(flow: Flow) -> None:
    node = node_of(flow, "ask_callback_number", DigitsNode)
    walk = Walk.call(flow).to_callback()
    walk.key("2")
    walk.key("12345")
    walk.silence()
    out = walk.key("99")

    assert out.state.node == "record_message"
    assert out.state.vars["callback"] == "none"
    assert "callback_number" not in out.state.vars
    assert texts(out)[0] == th(node.on_fail.prompt)
    assert isinstance(waiting(out), Record)


def test_callback_anonymous(flow: Flow) -> None:
    walk = Walk.call(flow).to_callback()
    out = walk.key("3")

    assert out.state.node == "record_message"
    assert out.state.vars["callback"] == "none"
    assert "callback_number" not in out.state.vars
    assert texts(out) == [th(node_of(flow, "record_message", RecordNode).prompt)]
    assert isinstance(waiting(out), Record)


def test_callback_menu_failures_mean_no_callback(flow: Flow) -> None:
    menu = node_of(flow, "callback_menu", MenuNode)
    walk = Walk.call(flow).to_callback()
    walk.key("5")
    walk.silence()
    out = walk.key("9")
    assert out.state.node == "record_message"
    assert out.state.vars["callback"] == "none"
    assert texts(out)[0] == th(menu.default.prompt)


# ---- record ---------------------------------------------------------------------------------------------


def test_record_step_records_with_limits_from_flow(flow: Flow) -> None:
    walk = Walk.call(flow).to_record()
    assert waiting(walk.last) == Record(max_length=180, finish_on_key="#", timeout=10)


@pytest.mark.parametrize("how", ["duration-0", "no-input", "record-without-recording"])
def test_no_recording_reprompts(flow: Flow, how: str) -> None:
    node = node_of(flow, "record_message", RecordNode)
    walk = Walk.call(flow).to_record()
    if how == "duration-0":
        out = walk.record(duration=0)
    elif how == "no-input":
        out = walk.silence()
    else:
        out = walk.feed(CallerInput("record"))

    assert out.state.node == "record_message"
    assert out.state.phase == "ask"
    assert out.state.tries == 1
    assert "recording_sid" not in out.state.vars
    assert texts(out) == [th(node.no_input), th(node.prompt)]
    assert isinstance(waiting(out), Record)


def test_record_confirm_prompt_after_recording(flow: Flow) -> None:
    node = node_of(flow, "record_message", RecordNode)
    walk = Walk.call(flow).to_record()
    out = walk.record()
    assert out.state.phase == "confirm"
    assert texts(out) == [th(node.confirm.prompt)]
    assert gather(out).num_digits == 1
    assert FlowEvent("record_message", "recorded", {"sid": "RE" + "a" * 32, "duration_s": "25"}) in out.events


def test_record_again_with_two_replaces_the_recording(flow: Flow) -> None:
    node = node_of(flow, "record_message", RecordNode)
    walk = Walk.call(flow).to_record()
    walk.record(sid="RE" + "1" * 32)
    again = walk.key("2")

    assert again.state.phase == "ask"
    assert again.state.rerecords == 1
    assert texts(again) == [th(node.prompt)]
    assert isinstance(waiting(again), Record)
    walk.record(sid="RE" + "2" * 32)
    sent = walk.key("1")
    assert sent.effect == "open_case"
    assert sent.state.vars["recording_sid"] == "RE" + "2" * 32
    assert walk.kinds("record_message").count("record_again") == 1


def test_record_again_is_capped_then_two_sends(flow: Flow) -> None:
    cap = node_of(flow, "record_message", RecordNode).max_rerecords
    assert cap == 3
    walk = Walk.call(flow).to_record()
    for n in range(cap):
        walk.record(sid=f"RE{n:032d}")
        out = walk.key("2")
        assert isinstance(waiting(out), Record)
    walk.record(sid="RE" + "f" * 32)
    sent = walk.key("2")

    assert sent.effect == "open_case"
    assert sent.state.vars["recording_sid"] == "RE" + "f" * 32
    assert "sent_by_default" in walk.kinds("record_message")
    assert walk.kinds("record_message").count("record_again") == cap


def test_record_confirmation_unanswered_three_times_sends(flow: Flow) -> None:
    node = node_of(flow, "record_message", RecordNode)
    walk = Walk.call(flow).to_record()
    walk.record()
    first = walk.silence()
    assert first.state.phase == "confirm"
    assert texts(first) == [th(node.no_input), th(node.confirm.prompt)]
    second = walk.key("5")
    assert texts(second) == [th(node.invalid), th(node.confirm.prompt)]
    assert second.state.tries == 2
    sent = walk.silence()

    assert sent.effect == "open_case"
    assert sent.state.node == "submit"
    assert sent.state.vars["recording_sid"] == "RE" + "a" * 32
    assert "sent_by_default" in walk.kinds("record_message")


def test_caller_hangs_up_during_recording_goes_straight_to_open_case(flow: Flow) -> None:
    walk = Walk.call(flow).to_record()
    out = walk.record(sid="RE" + "c" * 32, duration=30, hung_up=True)

    assert out.effect == "open_case"
    assert out.state.node == "submit"
    assert out.instructions == ()
    assert out.state.vars["recording_sid"] == "RE" + "c" * 32
    assert FlowEvent("record_message", "caller_hung_up") in out.events
    assert "send" not in walk.kinds("record_message")


def test_caller_hangs_up_before_saying_anything_ends_without_effect(flow: Flow) -> None:
    walk = Walk.call(flow).to_record()
    out = walk.record(duration=0, hung_up=True)
    assert out.ended
    assert out.effect is None
    assert out.instructions == ()
    assert "recording_sid" not in out.state.vars


def test_unexpected_input_at_a_submit_node_says_where_the_call_is(flow: Flow) -> None:
    walk = Walk.call(flow).to_record()
    walk.record()
    walk.key("1")
    out = advance(flow, walk.state, CallerInput("gather", digits="1"), walk.ctx)
    assert out.effect == "open_case"
    assert FlowEvent("submit", "unexpected_input", {"kind": "gather"}) in out.events


# ---- call state ----------------------------------------------------------------------------------------


def test_state_json_round_trip_continues_the_same_call(flow: Flow) -> None:
    walk = Walk.call(flow).to_callback()
    walk.key("2")
    walk.key(CALLBACK_DIGITS)
    state = walk.state
    assert state.pending  # mid read-back: value awaiting confirmation

    restored = State.from_json(json.loads(json.dumps(state.to_json())))
    assert restored == state
    direct = advance(flow, state, CallerInput("gather", digits="1"), walk.ctx)
    via_json = advance(flow, restored, CallerInput("gather", digits="1"), walk.ctx)
    assert via_json == direct


def test_state_json_round_trip_keeps_every_field() -> None:
    state = State(
        node="record_message",
        language="en",
        phase="confirm",
        tries=2,
        rerecords=1,
        vars={"category": "health_harm", "callback": "other", "callback_number": CALLBACK_E164},
        pending={"value": "x"},
    )
    data = json.loads(json.dumps(state.to_json()))
    assert data["rerecords"] == 1
    assert State.from_json(data) == state


def test_state_from_json_defaults() -> None:
    assert State.from_json({"node": "main_menu"}) == State(node="main_menu", language="th")


def test_advance_at_a_node_removed_from_the_flow_raises(flow: Flow) -> None:
    walk = Walk.call(flow).to_callback()
    assert walk.state.node == "callback_menu"
    changed = replace(flow, nodes={k: v for k, v in flow.nodes.items() if k != "callback_menu"})

    with pytest.raises(EngineError, match="callback_menu"):
        advance(changed, walk.state, CallerInput("gather", digits="3"), walk.ctx)
