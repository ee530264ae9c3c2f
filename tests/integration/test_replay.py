"""Replayed webhooks: a captured signed request for a passed step reveals nothing later and changes nothing.

Twilio's signature has no timestamp or nonce, so a request captured once validates for ever. Every request
here is signed exactly as the first time (TwilioCaller signs the same URL and form again): a replay.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from app import get_database
from cases.models import Call
from infra.clock import utcnow
from telephony.validators import speak_digits
from tests.conftest import TwilioCaller
from tests.integration.test_webhooks import (
    FULL_CALL,
    OTHER_FORMS,
    OTHER_NUMBER,
    Recorded,
    Twiml,
    answer,
    events_of,
    export_cases,
    find_call,
    hang_up,
    row_counts,
)

CALLER_FORMS = ("+66812345678", "0812345678", "812345678")


@pytest.fixture
def caller(new_caller: Callable[..., TwilioCaller]) -> TwilioCaller:
    return new_caller()


def steps(caller: TwilioCaller, *inputs: str | Recorded) -> list[Twiml]:
    """Ring and answer each step in turn; every answer, the first (to /twilio/voice) included."""
    said = [Twiml(caller.post("/twilio/voice"))]
    for inp in inputs:
        said.append(answer(caller, said[-1], inp))
    return said


def state_of(app: Flask, caller: TwilioCaller) -> tuple[Any, ...]:
    """Everything a request could change: the call row, its path, and the row count of every table."""
    call = find_call(app, caller.call_sid)
    assert call is not None
    row = (call.seq, call.ivr_state, call.language, call.last_response, call.status, call.ended_at)
    return row, call.caller_number_enc, events_of(app, caller.call_sid), row_counts(app)


def age(app: Flask, caller: TwilioCaller, seconds: float) -> None:
    """Move the call's last write back in time, as if the caller had been quiet that long."""
    with get_database(app).session() as session:
        session.execute(
            update(Call)
            .where(Call.call_sid == caller.call_sid)
            .values(updated_at=utcnow() - timedelta(seconds=seconds))
        )


def assert_reveals_nothing(answer: Twiml, *secrets: str) -> None:
    assert answer.verbs() == [], answer.body
    for secret in secrets:
        assert secret not in answer.body


def number_words(number: str) -> list[str]:
    return [speak_digits(number, lang) for lang in ("th", "en")]


def test_a_replayed_first_webhook_mid_call_reveals_no_number_and_changes_nothing(
    caller: TwilioCaller, app: Flask
) -> None:
    said = steps(caller, "1", "10", "1", "2", OTHER_NUMBER)
    readback = said[-1]
    assert speak_digits(OTHER_NUMBER, "th") in readback.body  # the read-back a replay used to get
    before = state_of(app, caller)

    replayed = Twiml(caller.post("/twilio/voice"))
    # A request of two steps ago, too (the province menu), with what it carried then.
    replayed_mid = answer(caller, said[1], "10")

    for got in (replayed, replayed_mid):
        assert_reveals_nothing(got, *OTHER_FORMS, *number_words(OTHER_NUMBER))
    assert state_of(app, caller) == before
    # The caller on the line is not disturbed: their next key goes on as if nothing had happened.
    message = answer(caller, readback, "1")
    assert "Record" in message.verbs()


def test_replays_after_the_case_is_read_back_reveal_no_reference_and_change_nothing(
    caller: TwilioCaller, app: Flask
) -> None:
    rec = Recorded()
    said = steps(caller, *FULL_CALL, rec, "1")
    [case] = export_cases(app)
    reference = case["reference"]
    assert speak_digits(reference, "th") in said[-1].body
    before = state_of(app, caller)

    replays = [Twiml(caller.post("/twilio/voice"))]
    # Every earlier step again, with what it carried: the menu key, the province, the record action.
    replays += [answer(caller, step, inp) for step, inp in zip(said, [*FULL_CALL, rec], strict=False)]
    for got in replays:
        assert_reveals_nothing(got, reference, *number_words(reference), *CALLER_FORMS)
    assert state_of(app, caller) == before


def test_a_retry_of_the_latest_step_hears_it_again_until_the_window_closes(
    caller: TwilioCaller, app: Flask
) -> None:
    said = steps(caller, "1", "10", "1", "2")
    asked = said[-1]
    readback = answer(caller, asked, OTHER_NUMBER)
    before = state_of(app, caller)

    # Twilio retrying because our answer was slow or lost: the same answer, so the caller is not dropped.
    retried = answer(caller, asked, OTHER_NUMBER)
    assert retried.body == readback.body
    assert state_of(app, caller) == before

    # The same request two minutes later can only be a replay: Twilio's own timeout is 15 s.
    age(app, caller, 120)
    aged = state_of(app, caller)
    late = answer(caller, asked, OTHER_NUMBER)
    assert_reveals_nothing(late, *OTHER_FORMS, *number_words(OTHER_NUMBER))
    assert state_of(app, caller) == aged


def test_the_latest_step_replayed_after_the_call_ended_reveals_no_reference(
    caller: TwilioCaller, app: Flask
) -> None:
    said = steps(caller, *FULL_CALL, Recorded())
    closing = answer(caller, said[-1], "1")
    hang_up(caller)
    [case] = export_cases(app)
    assert speak_digits(case["reference"], "th") in closing.body
    before = state_of(app, caller)

    # Within the window, but the call is over: nobody listens, so nothing is said again.
    replayed = answer(caller, said[-1], "1")
    assert_reveals_nothing(replayed, case["reference"], *number_words(case["reference"]))
    assert state_of(app, caller) == before


def test_an_unapplied_step_sent_long_after_the_call_ended_changes_nothing(
    caller: TwilioCaller, app: Flask
) -> None:
    rec = Recorded()
    said = steps(caller, *FULL_CALL, rec)
    hang_up(caller)  # the caller hung up at "1 send, 2 record again": the message is kept all the same
    [case] = export_cases(app)
    age(app, caller, 600)
    before = state_of(app, caller)

    # "1 send" for the current step, never applied: long after the end it is only a replay.
    late = answer(caller, said[-1], "1")
    assert_reveals_nothing(late, case["reference"], *number_words(case["reference"]))
    assert state_of(app, caller) == before
    assert [c["reference"] for c in export_cases(app)] == [case["reference"]]
