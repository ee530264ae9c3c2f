"""The database budget of a request, and the breaker that shortens it while the database is stalled."""

from __future__ import annotations

import time

import pytest

from infra.deadline import Breaker, DeadlineExceeded, check, deadline, remaining


def test_outside_a_deadline_there_is_no_limit() -> None:
    assert remaining() is None and check("anything") is None


def test_nested_deadlines_keep_the_tighter() -> None:
    with deadline(5.0):
        with deadline(0.05):
            left = remaining()
            assert left is not None and left <= 0.05
        outer = remaining()
        assert outer is not None and 0.05 < outer <= 5.0
        with deadline(60.0):
            inner = remaining()
            assert inner is not None and inner <= 5.0
    assert remaining() is None


def test_a_spent_budget_is_refused_by_name() -> None:
    with deadline(0.0), pytest.raises(DeadlineExceeded, match="the turn to write"):
        check("the turn to write")


def test_the_breaker_shortens_budgets_after_a_miss_and_closes_on_an_answer() -> None:
    breaker = Breaker(short_s=0.5, hold_s=0.2)
    assert breaker.budget(5.0) == 5.0 and not breaker.tripped
    breaker.missed()
    assert breaker.tripped and breaker.budget(5.0) == 0.5
    assert breaker.budget(0.1) == 0.1  # never longer than the normal budget
    breaker.answered()
    assert not breaker.tripped and breaker.budget(5.0) == 5.0
    breaker.missed()
    time.sleep(0.25)  # past hold_s with no new miss: the full budget again
    assert breaker.budget(5.0) == 5.0
