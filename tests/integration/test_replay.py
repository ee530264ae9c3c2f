"""Replayed webhooks: a captured signed request for a passed step reveals nothing later and changes nothing.

Twilio's signature has no timestamp or nonce, so a request captured once validates for ever. Every request
here is signed exactly as the first time (TwilioCaller signs the same URL and form again): a replay.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from sqlalchemy import update
from werkzeug.test import TestResponse
from werkzeug.wrappers import Response

from app import get_database
from cases.models import Call
from infra.clock import utcnow
from telephony.validators import speak_digits
from tests.conftest import PUBLIC_BASE, TwilioCaller, sign
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


def _signed(step: Twiml, inp: str) -> tuple[str, dict[str, str]]:
    """The local path and form Twilio would post for `inp` at `step` (the URL it signs is the public one)."""
    url = step.action("Gather")
    assert url.startswith(PUBLIC_BASE + "/twilio/"), url
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}", {"Digits": inp}


def test_replays_racing_the_live_step_change_nothing_and_the_caller_goes_on(
    caller: TwilioCaller, app: Flask, served_app: str
) -> None:
    """A replay of earlier steps, sent at the moment the caller presses the live key, on a threaded server."""
    said = steps(caller, "1", "10", "1", "2")
    readback = answer(caller, said[-1], OTHER_NUMBER)
    live = _signed(readback, "1")  # "1: the number is right": the next step asks for the message
    at_readback = find_call(app, caller.call_sid)
    assert at_readback is not None
    path_before = events_of(app, caller.call_sid)
    replays = [_signed(said[0], "1"), _signed(said[1], "10"), _signed(said[2], "1")]
    requests_at_once = [live, *replays, *replays]
    start = threading.Barrier(len(requests_at_once))

    def post(request: tuple[str, dict[str, str]]) -> Twiml:
        path, form = request
        form = caller.params(**form)
        headers = {"X-Twilio-Signature": sign(PUBLIC_BASE + path, form)}
        start.wait(timeout=10)
        got = requests.post(served_app + path, data=form, headers=headers, timeout=30)
        # Twiml reads a test client's response; a real one over HTTP has all it looks at.
        kept = Response(got.content, status=got.status_code, content_type=got.headers["Content-Type"])
        return Twiml(cast(TestResponse, kept))

    with ThreadPoolExecutor(max_workers=len(requests_at_once)) as pool:
        heard, *replayed = pool.map(post, requests_at_once)
    assert "Record" in heard.verbs(), heard.body  # the caller's own key was applied, whatever came first
    for got in replayed:
        assert_reveals_nothing(got, *OTHER_FORMS, *number_words(OTHER_NUMBER))
    call = find_call(app, caller.call_sid)
    assert call is not None and call.seq == at_readback.seq + 1, (
        at_readback.seq,
        call.seq,
    )  # one step on, not one per request
    # The path grew by the live key's events only, all at the read-back's node: no replay was applied.
    path = events_of(app, caller.call_sid)
    assert path[: len(path_before)] == path_before
    added = path[len(path_before) :]
    assert added and {node for node, _kind, _detail in added} == {path_before[-1][0]}, added
    # The caller is not disturbed: the message records and the case opens as on a quiet line.
    confirm = answer(caller, heard, Recorded())
    answer(caller, confirm, "1")
    assert len(export_cases(app)) == 1
