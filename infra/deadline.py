"""A time budget for the database work of one request, carried in a context variable.

Twilio waits 15 s for a webhook and then drops the caller with an error (11205). A webhook therefore runs
its database work inside `deadline(seconds)`; every place that can wait on the database (the SQLite write
gate, SQLite's busy handler, PostgreSQL's statement timeout) asks `remaining()` and gives up when the
budget is spent, so the webhook still has time to answer the caller another way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_ends_at: ContextVar[float | None] = ContextVar("hotline_db_deadline", default=None)


class DeadlineExceeded(TimeoutError):
    """The request's time for the database ran out before the database answered."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound every database wait inside the block to `seconds` in all (nested budgets keep the tighter)."""
    ends = time.monotonic() + seconds
    outer = _ends_at.get()
    token = _ends_at.set(ends if outer is None else min(outer, ends))
    try:
        yield
    finally:
        _ends_at.reset(token)


def remaining() -> float | None:
    """Seconds left of the current budget (never below 0), or None outside any deadline."""
    ends = _ends_at.get()
    return None if ends is None else max(0.0, ends - time.monotonic())


def check(what: str) -> float | None:
    """The seconds left, or DeadlineExceeded naming `what` when none are."""
    left = remaining()
    if left is not None and left <= 0.0:
        raise DeadlineExceeded(f"no time left for {what}")
    return left


class Breaker:
    """After the database missed one request's budget, the next requests try it only briefly.

    During a stall every webhook would hold a server thread for its whole budget, and requests beyond
    the thread count queue behind them: with 16 calls at once on 8 threads, answers took 15 s, past
    Twilio's patience. While tripped (for `hold_s` after the last miss) a request gets `short_s`: long
    enough for a database that is fine again, short enough that the queue drains. One success closes it.
    """

    def __init__(self, short_s: float = 0.5, hold_s: float = 10.0) -> None:
        self.short_s, self.hold_s = short_s, hold_s
        self._tripped_until = 0.0

    def budget(self, normal_s: float) -> float:
        if time.monotonic() < self._tripped_until:
            return min(normal_s, self.short_s)
        return normal_s

    def missed(self) -> None:
        self._tripped_until = time.monotonic() + self.hold_s

    def answered(self) -> None:
        self._tripped_until = 0.0

    @property
    def tripped(self) -> bool:
        return time.monotonic() < self._tripped_until
