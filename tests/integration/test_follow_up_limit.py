"""Key 5's limit: a calling number gets a few wrong case references an hour, across all its calls.

Without it, key 5 answers "is there a case with this reference?" for as many guesses as one can key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select, update

from app import get_database
from cases.models import FollowUpTry
from cases.reference import damm_digit
from infra.clock import utcnow
from telephony.webhooks import telephony
from tests.conftest import TwilioCaller
from tests.integration.test_follow_up import lookup_of, reported, words
from tests.integration.test_webhooks import Twiml, answer, events_of, walk

__all__ = ["reported"]  # the fixture: a case reported by an earlier call
NUMBER = "+66812345678"
OTHER = "+66891112222"


def wrong(i: int) -> str:
    """The i-th well-formed reference (its check digit holds) that names no case."""
    body = str(3000000 + i)
    return body + str(damm_digit(body))


def lookup_kinds(app: Flask, caller: TwilioCaller) -> list[str]:
    return [kind for node, kind, _d in events_of(app, caller.call_sid) if node == "ask_reference"]


def tries_of(app: Flask) -> list[str]:
    with get_database(app).session() as session:
        return list(session.scalars(select(FollowUpTry.caller_hash)))


def assert_locked_out(app: Flask, step: Twiml) -> None:
    """The caller hears why, in Thai, then the new-report offer of on_fail: never a silent hang-up."""
    lookup = lookup_of(app)
    assert lookup.too_many is not None and lookup.on_fail.prompt is not None
    says = step.says()
    assert says[:2] == [lookup.too_many.text["th"], lookup.on_fail.prompt.text["th"]]
    assert step.verbs()[-1] == "Redirect" and "Gather" in step.verbs()  # asked on, not dropped


@pytest.fixture
def ring(new_caller: Callable[..., TwilioCaller]) -> Callable[[str], TwilioCaller]:
    return lambda number: new_caller(number)


def test_the_sixth_wrong_reference_in_an_hour_gets_no_further_tries(
    app: Flask, reported: tuple[str, str], ring: Callable[[str], TwilioCaller]
) -> None:
    reference, _sid = reported
    first = ring(NUMBER)
    # Three wrong references: the call's own tries are spent, it is offered a new report.
    walk(first, "5", wrong(1), wrong(2), wrong(3))
    assert lookup_kinds(app, first).count("not_found") == 3

    second = ring(NUMBER)  # hanging up and calling again buys no more guesses
    asked = walk(second, "5", wrong(4))
    assert lookup_kinds(app, second) == ["entered", "not_found"]
    # The fifth uses the number's last try up: told at once, not asked for another.
    assert_locked_out(app, answer(second, asked, wrong(5)))
    assert lookup_kinds(app, second)[-3:] == ["entered", "tries_locked", "set"]
    assert len(tries_of(app)) == 5

    third = ring(NUMBER)
    # Even the right reference is not looked up now: no standing, no reference read back.
    step = walk(third, "5", reference)
    assert_locked_out(app, step)
    for lang in ("th", "en"):
        assert words(app, "received", lang, reference) not in step.body
    assert lookup_kinds(app, third) == ["entered", "tries_locked", "set"]
    assert len(tries_of(app)) == 5  # nothing was looked up, so nothing more counted


def test_another_number_and_the_next_hour_are_not_locked_out(
    app: Flask, reported: tuple[str, str], ring: Callable[[str], TwilioCaller]
) -> None:
    reference, _sid = reported
    walk(ring(NUMBER), "5", wrong(1), wrong(2), wrong(3))
    walk(ring(NUMBER), "5", wrong(4), wrong(5))

    other = walk(ring(OTHER), "5", reference)
    assert words(app, "received", "th", reference) in other.says()

    with get_database(app).session() as session:
        session.execute(update(FollowUpTry).values(at=utcnow() - timedelta(minutes=61)))
    again = ring(NUMBER)
    step = walk(again, "5", reference)
    assert words(app, "received", "th", reference) in step.says()
    assert "tries_locked" not in lookup_kinds(app, again)
    walk(ring(OTHER), "5", wrong(9))
    assert len(tries_of(app)) == 1  # the tries of the hour before went as this one came


def test_the_count_keeps_no_phone_number(app: Flask, ring: Callable[[str], TwilioCaller]) -> None:
    walk(ring(NUMBER), "5", wrong(1), wrong(2))
    walk(ring(OTHER), "5", wrong(3))
    hashes = tries_of(app)
    assert len(hashes) == 3 and len(set(hashes)) == 2
    for digits in ("812345678", "891112222", "2222", "5678"):
        assert all(digits not in h for h in hashes)


def test_withheld_numbers_share_one_count(app: Flask, ring: Callable[[str], TwilioCaller]) -> None:
    walk(ring("anonymous"), "5", wrong(1), wrong(2), wrong(3))
    walk(ring("+266696687"), "5", wrong(4))  # Twilio's other spelling of a withheld number
    locked = walk(ring("anonymous"), "5", wrong(5))
    assert_locked_out(app, locked)
    assert len(set(tries_of(app))) == 1


def test_a_flow_without_too_many_words_still_goes_on(
    app: Flask, ring: Callable[[str], TwilioCaller], monkeypatch: pytest.MonkeyPatch
) -> None:
    tel = telephony(app)
    lookup = dataclasses.replace(lookup_of(app), too_many=None, tries_per_hour=1)
    monkeypatch.setitem(tel.flow.nodes, "ask_reference", lookup)  # type: ignore[index]
    step = walk(ring(NUMBER), "5", wrong(1))
    assert lookup.on_fail.prompt is not None
    assert step.says()[0] == lookup.on_fail.prompt.text["th"]
    assert "Gather" in step.verbs()
