"""Follow-up by phone through the pure engine: key 5, a case reference, its standing, an extra message."""

from __future__ import annotations

import pytest

from telephony.engine import (
    CallerInput,
    EngineError,
    FlowEvent,
    Hangup,
    Record,
    Say,
    advance,
    resume,
)
from telephony.flow import (
    FOLLOWUP_VAR,
    STANDINGS,
    DigitsNode,
    Flow,
    HangupNode,
    LookupNode,
    MenuNode,
    RecordNode,
    load_flow,
)
from telephony.validators import speak_digits
from tests.unit.test_engine import (
    FLOW_FILE,
    REFERENCE,
    REFERENCE_EN,
    REFERENCE_TH,
    Walk,
    en,
    gather,
    node_of,
    said,
    texts,
    th,
    waiting,
)


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow(FLOW_FILE)


BAD_CHECK_DIGIT = REFERENCE[:-1] + str((int(REFERENCE[-1]) + 1) % 10)
SWAPPED = REFERENCE[1] + REFERENCE[0] + REFERENCE[2:]


def lookup(flow: Flow) -> LookupNode:
    return node_of(flow, "ask_reference", LookupNode)


def to_reference(flow: Flow, *, english: bool = False) -> Walk:
    walk = Walk.call(flow)
    if english:
        walk.key("9")
    walk.key("5")
    return walk


def test_five_asks_for_the_reference_eight_keys(flow: Flow) -> None:
    walk = Walk.call(flow)
    out = walk.key("5")

    assert out.state.node == "ask_reference"
    assert out.events == (FlowEvent("main_menu", "key", {"key": "5"}),)
    assert texts(out) == [th(lookup(flow).prompt)]
    g = gather(out)
    assert g.num_digits == 8
    assert g.finish_on_key == "#"
    assert "category" not in out.state.vars  # not a new report


def test_a_well_formed_reference_asks_the_service_to_look_it_up(flow: Flow) -> None:
    walk = to_reference(flow)
    out = walk.key(REFERENCE)

    assert out.effect == "lookup_case"
    assert out.instructions == ()
    assert out.state.node == "ask_reference"
    assert out.state.phase == "lookup"
    assert out.state.pending == {"value": REFERENCE}
    assert out.events == (FlowEvent("ask_reference", "entered", {"via": "keys"}),)


@pytest.mark.parametrize("standing", STANDINGS)
def test_a_found_case_is_told_in_plain_words_then_the_follow_up_menu(flow: Flow, standing: str) -> None:
    walk = to_reference(flow)
    walk.key(REFERENCE)
    out = walk.looked_up(standing)

    words = lookup(flow).standing[standing]
    assert texts(out) == [
        th(words).format(followup_reference=REFERENCE_TH),
        th(node_of(flow, "follow_up_menu", MenuNode).prompt),
    ]
    assert REFERENCE_TH in texts(out)[0]
    assert out.state.node == "follow_up_menu"
    assert out.state.vars == {"followup_reference": REFERENCE}
    assert out.state.pending == {} and out.state.phase == "ask" and out.state.tries == 0
    assert FlowEvent("ask_reference", "found", {"reference": REFERENCE, "standing": standing}) in out.events
    assert gather(out).num_digits == 1


def test_the_standing_words_are_the_plain_ones(flow: Flow) -> None:
    words = {k: th(p) for k, p in lookup(flow).standing.items()}
    assert "ได้รับเรื่องของท่านแล้ว" in words["received"]
    assert "อยู่ระหว่างดำเนินการ" in words["being_worked"]
    assert "ดำเนินการเรียบร้อยแล้ว" in words["resolved"]


def test_an_unknown_reference_counts_a_try_and_asks_again(flow: Flow) -> None:
    walk = to_reference(flow)
    walk.key(REFERENCE)
    out = walk.looked_up(None)

    assert out.effect is None
    assert out.state.node == "ask_reference"
    assert out.state.tries == 1
    assert out.state.phase == "ask" and out.state.pending == {}
    assert "followup_reference" not in out.state.vars
    assert texts(out) == [th(lookup(flow).not_found), th(lookup(flow).prompt)]
    assert th(lookup(flow).not_found) == "ขออภัยค่ะ ไม่พบหมายเลขอ้างอิงนี้"
    assert out.events == (FlowEvent("ask_reference", "not_found", {"try": "1"}),)
    assert gather(out).num_digits == 8


@pytest.mark.parametrize("digits", [BAD_CHECK_DIGIT, SWAPPED, "1234567", "123456789", "abcdefgh"])
def test_a_badly_keyed_reference_is_refused_without_a_lookup(flow: Flow, digits: str) -> None:
    walk = to_reference(flow)
    out = walk.key(digits)

    assert out.effect is None
    assert out.state.tries == 1
    assert texts(out) == [th(lookup(flow).invalid), th(lookup(flow).prompt)]
    assert out.events == (FlowEvent("ask_reference", "invalid", {"try": "1"}),)


def test_three_bad_references_offer_a_new_report(flow: Flow) -> None:
    walk = to_reference(flow)
    walk.key(BAD_CHECK_DIGIT)
    walk.key(BAD_CHECK_DIGIT)
    out = walk.key(BAD_CHECK_DIGIT)

    node = lookup(flow)
    assert out.effect is None
    assert out.state.node == "ask_province"
    assert out.state.vars == {"category": "unspecified"}
    assert texts(out) == [th(node.on_fail.prompt), th(node_of(flow, "ask_province", DigitsNode).prompt)]
    waiting(out)  # not hung up on
    assert walk.kinds("ask_reference") == ["invalid", "invalid", "invalid", "tries_exhausted", "set"]
    # ...and the ordinary report goes on to a message and a new case.
    walk.key("#")
    walk.key("3")
    walk.record()
    assert walk.key("1").effect == "open_case"


def test_wrong_tries_of_every_kind_count_together(flow: Flow) -> None:
    walk = to_reference(flow)
    walk.key(REFERENCE)
    walk.looked_up(None)  # unknown
    walk.key(BAD_CHECK_DIGIT)  # bad check digit
    assert walk.state.tries == 2
    walk.key(REFERENCE)
    out = walk.looked_up(None)  # unknown again: the third wrong try

    assert out.state.node == "ask_province"
    assert out.state.vars == {"category": "unspecified"}
    assert "followup_reference" not in out.state.vars
    assert texts(out)[0] == th(lookup(flow).on_fail.prompt)


def test_silence_at_the_reference_counts_a_try(flow: Flow) -> None:
    walk = to_reference(flow)
    out = walk.silence()
    assert out.state.tries == 1
    assert texts(out) == [th(lookup(flow).no_input), th(lookup(flow).prompt)]
    walk.silence()
    assert walk.silence().state.node == "ask_province"


def test_found_after_a_wrong_try(flow: Flow) -> None:
    walk = to_reference(flow)
    walk.key(BAD_CHECK_DIGIT)
    walk.key(REFERENCE)
    out = walk.looked_up("being_worked")
    assert out.state.node == "follow_up_menu"
    assert out.state.tries == 0


def test_extra_message_is_recorded_confirmed_and_attached(flow: Flow) -> None:
    walk = to_reference(flow)
    walk.key(REFERENCE)
    walk.looked_up("received")
    asked = walk.key("1")

    record = node_of(flow, "follow_up_record", RecordNode)
    assert texts(asked) == [th(record.prompt)]
    assert waiting(asked) == Record(180, "#", 10)
    confirm = walk.record(sid="RE" + "f" * 32)
    assert texts(confirm) == [th(record.confirm.prompt)]
    sent = walk.key("1")

    assert sent.effect == "attach_message"
    assert sent.state.node == "attach_message"
    assert sent.state.vars["recording_sid"] == "RE" + "f" * 32
    assert sent.state.vars["followup_reference"] == REFERENCE
    assert "reference" not in sent.state.vars  # no new case was asked for

    thanks = walk.attached()
    node = node_of(flow, "follow_up_thanks", HangupNode)
    assert thanks.ended
    assert thanks.instructions[-1] == Hangup()
    assert texts(thanks) == [th(node.prompt).format(followup_reference=REFERENCE_TH)]
    assert thanks.instructions[0] == Say(th(node.prompt).format(followup_reference=REFERENCE_TH), "th")


def test_hanging_up_during_the_extra_message_still_attaches_it(flow: Flow) -> None:
    walk = to_reference(flow)
    walk.key(REFERENCE)
    walk.looked_up("resolved")
    walk.key("1")
    out = walk.record(hung_up=True)
    assert out.effect == "attach_message"
    assert "caller_hung_up" in walk.kinds("follow_up_record")


def test_record_again_replaces_the_extra_message(flow: Flow) -> None:
    walk = to_reference(flow)
    walk.key(REFERENCE)
    walk.looked_up("received")
    walk.key("1")
    walk.record(sid="RE" + "1" * 32)
    walk.key("2")
    walk.record(sid="RE" + "2" * 32)
    sent = walk.key("1")
    assert sent.effect == "attach_message"
    assert sent.state.vars["recording_sid"] == "RE" + "2" * 32


def test_nothing_recorded_ends_with_goodbye_not_thanks(flow: Flow) -> None:
    walk = to_reference(flow)
    walk.key(REFERENCE)
    walk.looked_up("received")
    walk.key("1")
    walk.silence()
    walk.record(duration=0)
    out = walk.silence()
    assert out.effect is None
    assert out.ended
    assert texts(out)[-1] == th(node_of(flow, "goodbye", HangupNode).prompt)
    assert "tries_exhausted" in walk.kinds("follow_up_record")


@pytest.mark.parametrize("keys", [["2"], [], ["7", "8"]])
def test_no_extra_message_says_goodbye(flow: Flow, keys: list[str]) -> None:
    walk = to_reference(flow)
    walk.key(REFERENCE)
    walk.looked_up("resolved")
    for key in keys:
        walk.key(key)
    while not walk.last.ended:
        walk.silence()
    assert walk.last.effect is None
    assert texts(walk.last)[-1] == th(node_of(flow, "goodbye", HangupNode).prompt)
    assert all(o.effect != "attach_message" for o in walk.outcomes)


def test_follow_up_in_english(flow: Flow) -> None:
    walk = to_reference(flow, english=True)
    assert said(walk.last) == [Say(en(lookup(flow).prompt), "en")]
    walk.key(BAD_CHECK_DIGIT)
    assert said(walk.last)[0] == Say(en(lookup(flow).invalid), "en")
    walk.key(REFERENCE)
    unknown = walk.looked_up(None)
    assert said(unknown)[0] == Say("Sorry, we could not find that reference number.", "en")
    walk.key(REFERENCE)
    found = walk.looked_up("being_worked")
    first = said(found)[0]
    assert first.language == "en"
    assert first.text == en(lookup(flow).standing["being_worked"]).format(followup_reference=REFERENCE_EN)
    walk.key("1")
    walk.record()
    walk.key("1")
    thanks = walk.attached()
    assert all(s.language == "en" for s in said(thanks))
    assert REFERENCE_EN in said(thanks)[0].text
    assert speak_digits(REFERENCE, "en") == REFERENCE_EN


def test_resume_with_a_standing_the_flow_has_no_words_for_raises(flow: Flow) -> None:
    walk = to_reference(flow)
    walk.key(REFERENCE)
    with pytest.raises(EngineError, match="standing 'closed'"):
        resume(flow, walk.state, walk.ctx, standing="closed")


def test_resume_at_a_lookup_node_that_is_not_looking_up_raises(flow: Flow) -> None:
    walk = to_reference(flow)
    with pytest.raises(EngineError, match="ask_reference"):
        resume(flow, walk.state, walk.ctx, standing="received")


def test_a_lookup_state_asked_again_re_asks_the_reference(flow: Flow) -> None:
    """A state saved mid-lookup (it never is) must still lead somewhere sensible."""
    walk = to_reference(flow)
    walk.key(REFERENCE)
    out = advance(flow, walk.state, CallerInput("gather", digits=REFERENCE), walk.ctx)
    assert out.effect == "lookup_case"
    assert out.state.pending == {"value": REFERENCE}


@pytest.mark.parametrize("english", [False, True])
def test_a_locked_out_number_hears_why_then_the_new_report_offer(flow: Flow, english: bool) -> None:
    walk = to_reference(flow, english=english)
    walk.key(REFERENCE)
    out = resume(flow, walk.state, walk.ctx, standing="received", locked=True)  # the standing is ignored

    node = lookup(flow)
    assert node.too_many is not None and node.on_fail.prompt is not None
    speak = en if english else th
    assert texts(out)[:2] == [speak(node.too_many), speak(node.on_fail.prompt)]
    assert out.state.node == node.on_fail.next
    assert FOLLOWUP_VAR not in out.state.vars and out.state.pending == {}
    assert out.events[0] == FlowEvent("ask_reference", "tries_locked")
    assert not any(REFERENCE_TH in t or REFERENCE_EN in t for t in texts(out))
