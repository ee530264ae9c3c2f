"""Working-time arithmetic: due times counted in an office's working hours, skipping holidays."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from infra.clock import as_utc

# No calendar this module accepts can go longer than this without a working day (days are never
# empty and holidays are a finite list), so a longer search means a bug, not a long holiday.
_MAX_SEARCH_DAYS = 3 * 366
_ZERO = timedelta(0)


@dataclass(frozen=True)
class WorkingHours:
    """The days of the week (0 = Monday … 6 = Sunday) and local times an office works; no lunch break."""

    days: frozenset[int]
    open: time
    close: time

    def __post_init__(self) -> None:
        if not self.days or not self.days <= frozenset(range(7)):
            raise ValueError(f"days must be a non-empty set of 0 (Monday) … 6 (Sunday), got {self.days}")
        if not self.open < self.close:
            raise ValueError(f"close ({self.close}) must be after open ({self.open})")


class WorkingCalendar:
    """Counts working minutes for one set of hours in one time zone; returns aware UTC.

    Takes aware datetimes in any zone; a naive one is read as UTC, like infra.clock.as_utc.

    A working day is one whole span [open, close) in local time, with no lunch break. Times are
    measured in real elapsed time, so a day where daylight saving changes inside the hours is
    shorter or longer (Asia/Bangkok has none). Segments are computed a day at a time and cached,
    so a span of many days costs one step per calendar day, not per minute.
    """

    def __init__(self, hours: WorkingHours, holidays: frozenset[date], tz: ZoneInfo) -> None:
        self.hours = hours
        self.holidays = holidays
        self.tz = tz
        self._segments: dict[date, tuple[datetime, datetime] | None] = {}

    def __repr__(self) -> str:
        h = self.hours
        return f"WorkingCalendar({sorted(h.days)}, {h.open:%H:%M}-{h.close:%H:%M}, {self.tz.key})"

    def segment(self, day: date) -> tuple[datetime, datetime] | None:
        """The working span (UTC open, UTC close) of a local date, or None on a day off."""
        try:
            return self._segments[day]
        except KeyError:
            pass
        span: tuple[datetime, datetime] | None = None
        if day.weekday() in self.hours.days and day not in self.holidays:
            opens = datetime.combine(day, self.hours.open, self.tz).astimezone(UTC)
            closes = datetime.combine(day, self.hours.close, self.tz).astimezone(UTC)
            span = (opens, closes)
        self._segments[day] = span
        return span

    def is_open(self, at: datetime) -> bool:
        """Whether `at` falls in working hours (open included, close excluded)."""
        at = _utc(at)
        span = self.segment(at.astimezone(self.tz).date())
        return span is not None and span[0] <= at < span[1]

    def next_open(self, at: datetime) -> datetime:
        """The first working moment at or after `at`: `at` itself when open, else the next opening."""
        at = _utc(at)
        opens, _ = self._forward_span(at)
        return max(at, opens)

    def add(self, start: datetime, minutes: float) -> datetime:
        """The moment `minutes` working minutes after `start`; counting starts at the next opening.

        Zero minutes gives `start` when open, else the next opening. A span that uses up a day
        exactly ends at that day's close (a 4-hour SLA from 12:30 is due 16:30, not 08:30 next day).
        """
        remaining = _duration(minutes)
        cur = _utc(start)
        while True:
            opens, closes = self._forward_span(cur)
            cur = max(cur, opens)
            if remaining <= closes - cur:
                return cur + remaining
            remaining -= closes - cur
            cur = closes

    def subtract(self, end: datetime, minutes: float) -> datetime:
        """The moment `minutes` working minutes before `end`, the mirror of `add`.

        Counting starts at the last close when `end` is outside working hours; the result is never
        earlier than the opening that the minutes reach back to, so `subtract(add(t, m), m)` is
        `add(t, 0)` and `add(subtract(e, m), m)` is `e` (or the last close before it). Zero minutes
        gives `end` when it is inside working hours (close included), else the last close.
        """
        remaining = _duration(minutes)
        cur = _utc(end)
        if remaining == _ZERO and self._inside(cur):
            return cur
        while True:
            opens, closes = self._backward_span(cur)
            cur = min(cur, closes)
            if remaining <= cur - opens:
                return cur - remaining
            remaining -= cur - opens
            cur = opens

    def _inside(self, at: datetime) -> bool:
        span = self.segment(at.astimezone(self.tz).date())
        return span is not None and span[0] <= at <= span[1]

    def _forward_span(self, at: datetime) -> tuple[datetime, datetime]:
        """The working span that contains `at` or is the first to start after it."""
        day = at.astimezone(self.tz).date()
        for _ in range(_MAX_SEARCH_DAYS):
            span = self.segment(day)
            if span is not None and at < span[1]:
                return span
            day += timedelta(days=1)
        raise ValueError(f"{self!r}: no working day within {_MAX_SEARCH_DAYS} days after {at}")

    def _backward_span(self, at: datetime) -> tuple[datetime, datetime]:
        """The working span that contains `at` (close included) or is the last to end before it."""
        day = at.astimezone(self.tz).date()
        for _ in range(_MAX_SEARCH_DAYS):
            span = self.segment(day)
            if span is not None and span[0] < at:
                return span
            day -= timedelta(days=1)
        raise ValueError(f"{self!r}: no working day within {_MAX_SEARCH_DAYS} days before {at}")


def _utc(value: datetime) -> datetime:
    # Naive values are UTC by the project's convention (SQLite hands back what was stored as UTC).
    return as_utc(value)


def _duration(minutes: float) -> timedelta:
    if isinstance(minutes, bool) or not math.isfinite(minutes) or minutes < 0:
        raise ValueError(f"minutes must be a finite number >= 0, got {minutes!r}")
    return timedelta(minutes=minutes)
