"""Working-time arithmetic: due times in office hours (Asia/Bangkok), across nights, weekends, holidays."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from cases.callbacks.schedule import WorkingCalendar, WorkingHours

BANGKOK = ZoneInfo("Asia/Bangkok")
WEEKDAYS = frozenset(range(5))
OFFICE = WorkingHours(WEEKDAYS, time(8, 30), time(16, 30))
# 2026: Chakri Day (Mon 6 Apr) and Songkran (Mon 13 - Wed 15 Apr).
HOLIDAYS = frozenset({date(2026, 4, 6), date(2026, 4, 13), date(2026, 4, 14), date(2026, 4, 15)})
MINUTE = timedelta(minutes=1)


def bkk(day: date, hh: int, mm: int = 0) -> datetime:
    """A Bangkok wall-clock time as the aware UTC datetime the service stores."""
    return datetime.combine(day, time(hh, mm), BANGKOK).astimezone(UTC)


# A plain week: Mon 2 - Fri 6 Feb 2026, weekend 7-8 Feb.
MON, TUE, WED, FRI, SAT, SUN = (date(2026, 2, d) for d in (2, 3, 4, 6, 7, 8))
NEXT_MON = date(2026, 2, 9)


@pytest.fixture
def cal() -> WorkingCalendar:
    return WorkingCalendar(OFFICE, HOLIDAYS, BANGKOK)


def test_the_example_week_is_what_the_tests_assume() -> None:
    assert [d.strftime("%a") for d in (MON, TUE, WED, FRI, SAT, SUN, NEXT_MON)] == [
        "Mon",
        "Tue",
        "Wed",
        "Fri",
        "Sat",
        "Sun",
        "Mon",
    ]
    assert [date(2026, 4, d).strftime("%a") for d in (6, 10, 13, 15, 16)] == [
        "Mon",
        "Fri",
        "Mon",
        "Wed",
        "Thu",
    ]


def test_working_hours_are_bangkok_local_and_results_are_utc(cal: WorkingCalendar) -> None:
    nine = bkk(MON, 9)
    assert nine == datetime(2026, 2, 2, 2, 0, tzinfo=UTC)
    due = cal.add(nine, 60)
    assert due == datetime(2026, 2, 2, 3, 0, tzinfo=UTC)
    assert due.tzinfo is UTC
    # An aware time in another zone means the same instant.
    assert cal.add(nine.astimezone(ZoneInfo("Europe/London")), 60) == due


def test_is_open_includes_the_opening_and_excludes_the_close(cal: WorkingCalendar) -> None:
    assert not cal.is_open(bkk(MON, 8, 29))
    assert cal.is_open(bkk(MON, 8, 30))
    assert cal.is_open(bkk(MON, 16, 29))
    assert not cal.is_open(bkk(MON, 16, 30))
    assert not cal.is_open(bkk(SAT, 10))
    assert not cal.is_open(bkk(date(2026, 4, 14), 10))
    # 23:30 UTC on Sunday is 06:30 Monday in Bangkok: closed, but on Monday's date.
    assert not cal.is_open(datetime(2026, 2, 1, 23, 30, tzinfo=UTC))
    assert cal.is_open(datetime(2026, 2, 2, 1, 30, tzinfo=UTC))


def test_a_span_inside_one_day(cal: WorkingCalendar) -> None:
    assert cal.add(bkk(MON, 9), 60) == bkk(MON, 10)
    assert cal.add(bkk(MON, 9), 0.5) == bkk(MON, 9) + timedelta(seconds=30)


def test_there_is_no_lunch_break(cal: WorkingCalendar) -> None:
    assert cal.add(bkk(MON, 11, 30), 120) == bkk(MON, 13, 30)
    assert cal.is_open(bkk(MON, 12, 15))


def test_a_span_that_crosses_the_end_of_the_day_continues_next_morning(cal: WorkingCalendar) -> None:
    assert cal.add(bkk(MON, 16), 60) == bkk(TUE, 9)
    assert cal.add(bkk(MON, 16, 29), 1) == bkk(MON, 16, 30)
    assert cal.add(bkk(MON, 16, 29), 2) == bkk(TUE, 8, 31)


def test_a_span_that_uses_the_day_exactly_ends_at_the_close(cal: WorkingCalendar) -> None:
    # A 4-hour SLA from 12:30 is due at 16:30 the same day, not at 08:30 the next.
    assert cal.add(bkk(MON, 12, 30), 240) == bkk(MON, 16, 30)
    assert cal.add(bkk(MON, 8, 30), 480) == bkk(MON, 16, 30)


def test_weekends_are_skipped(cal: WorkingCalendar) -> None:
    assert cal.add(bkk(FRI, 16), 60) == bkk(NEXT_MON, 9)
    assert cal.add(bkk(FRI, 16), 30) == bkk(FRI, 16, 30)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (bkk(MON, 7), bkk(MON, 9, 30)),  # before opening
        (bkk(MON, 16, 30), bkk(TUE, 9, 30)),  # at the close
        (bkk(MON, 20), bkk(TUE, 9, 30)),  # evening
        (bkk(TUE, 0, 5), bkk(TUE, 9, 30)),  # after midnight local (still the previous day in UTC)
        (bkk(SAT, 10), bkk(NEXT_MON, 9, 30)),
        (bkk(SUN, 23, 59), bkk(NEXT_MON, 9, 30)),
    ],
)
def test_counting_starts_at_the_next_opening(
    cal: WorkingCalendar, start: datetime, expected: datetime
) -> None:
    assert cal.add(start, 60) == expected


def test_zero_minutes(cal: WorkingCalendar) -> None:
    assert cal.add(bkk(MON, 10), 0) == bkk(MON, 10)
    assert cal.add(bkk(MON, 8, 30), 0) == bkk(MON, 8, 30)
    assert cal.add(bkk(MON, 16, 30), 0) == bkk(TUE, 8, 30)
    assert cal.add(bkk(SAT, 12), 0) == bkk(NEXT_MON, 8, 30)
    assert cal.subtract(bkk(MON, 10), 0) == bkk(MON, 10)
    assert cal.subtract(bkk(MON, 16, 30), 0) == bkk(MON, 16, 30)
    assert cal.subtract(bkk(MON, 8, 30), 0) == bkk(MON, 8, 30)
    assert cal.subtract(bkk(SAT, 12), 0) == bkk(FRI, 16, 30)
    assert cal.subtract(bkk(TUE, 7), 0) == bkk(MON, 16, 30)


def test_next_open(cal: WorkingCalendar) -> None:
    assert cal.next_open(bkk(MON, 10)) == bkk(MON, 10)
    assert cal.next_open(bkk(MON, 6)) == bkk(MON, 8, 30)
    assert cal.next_open(bkk(FRI, 16, 30)) == bkk(NEXT_MON, 8, 30)
    assert cal.next_open(bkk(date(2026, 4, 10), 17)) == bkk(date(2026, 4, 16), 8, 30)


def test_holidays_are_skipped_including_the_long_songkran_run(cal: WorkingCalendar) -> None:
    fri_before_songkran, thu_after = date(2026, 4, 10), date(2026, 4, 16)
    assert cal.add(bkk(fri_before_songkran, 16), 60) == bkk(thu_after, 9)
    assert cal.add(bkk(date(2026, 4, 13), 10), 240) == bkk(thu_after, 12, 30)
    assert cal.subtract(bkk(thu_after, 9), 60) == bkk(fri_before_songkran, 16)
    # Chakri Day on a Monday makes a three-day weekend.
    assert cal.add(bkk(date(2026, 4, 3), 16), 60) == bkk(date(2026, 4, 7), 9)


def test_a_holiday_on_a_weekend_changes_nothing() -> None:
    plain = WorkingCalendar(OFFICE, frozenset(), BANGKOK)
    with_saturday = WorkingCalendar(OFFICE, frozenset({SAT}), BANGKOK)
    assert with_saturday.add(bkk(FRI, 16), 60) == plain.add(bkk(FRI, 16), 60) == bkk(NEXT_MON, 9)


def test_spans_of_many_days(cal: WorkingCalendar) -> None:
    assert cal.add(bkk(MON, 8, 30), 5 * 480) == bkk(FRI, 16, 30)
    assert cal.add(bkk(MON, 8, 30), 5 * 480 + 1) == bkk(NEXT_MON, 8, 31)
    # A year of working minutes lands a year on, skipping only weekends (no holidays listed then).
    monday = date(2030, 1, 7)
    last_friday = monday + timedelta(weeks=51, days=4)
    assert (monday.strftime("%a"), last_friday.strftime("%a")) == ("Mon", "Fri")
    start, end = bkk(monday, 8, 30), bkk(last_friday, 16, 30)
    assert cal.add(start, 52 * 5 * 480) == end
    assert cal.subtract(end, 52 * 5 * 480) == start


def test_subtract_counts_back_from_the_due_time(cal: WorkingCalendar) -> None:
    assert cal.subtract(bkk(MON, 9), 30) == bkk(MON, 8, 30)
    assert cal.subtract(bkk(MON, 8, 45), 30) == bkk(date(2026, 1, 30), 16, 15)
    assert cal.subtract(bkk(MON, 16, 30), 30) == bkk(MON, 16)
    # From outside working hours, counting starts at the last close.
    assert cal.subtract(bkk(SAT, 12), 30) == bkk(FRI, 16)
    assert cal.subtract(bkk(TUE, 6), 30) == bkk(MON, 16)


def test_other_hours_and_time_zones() -> None:
    six_days = WorkingHours(frozenset(range(6)), time(7, 0), time(19, 0))
    cal = WorkingCalendar(six_days, frozenset(), BANGKOK)
    assert cal.add(bkk(FRI, 18), 120) == bkk(SAT, 8)
    assert cal.add(bkk(SAT, 18, 30), 60) == bkk(NEXT_MON, 7, 30)
    tokyo = WorkingCalendar(OFFICE, frozenset(), ZoneInfo("Asia/Tokyo"))
    # 08:30 in Tokyo is 23:30 UTC the day before.
    assert tokyo.next_open(datetime(2026, 2, 1, 12, 0, tzinfo=UTC)) == datetime(
        2026, 2, 1, 23, 30, tzinfo=UTC
    )


def test_a_daylight_saving_change_inside_the_hours_counts_real_minutes() -> None:
    # Europe/London springs forward at 01:00 UTC on Sunday 29 Mar 2026; open 00:00-06:00 local.
    night = WorkingHours(frozenset(range(7)), time(0, 0), time(6, 0))
    cal = WorkingCalendar(night, frozenset(), ZoneInfo("Europe/London"))
    start = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)  # 00:00 GMT
    assert cal.add(start, 300) == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)  # 06:00 BST: the close
    assert cal.add(start, 301) == datetime(2026, 3, 29, 23, 1, tzinfo=UTC)  # 00:01 BST next day


def test_results_are_monotonic(cal: WorkingCalendar) -> None:
    start = bkk(date(2026, 4, 9), 8)
    dues = [cal.add(start + timedelta(minutes=7 * i), 60) for i in range(400)]
    assert dues == sorted(dues)
    spans = [cal.add(start, m) for m in range(0, 3000, 11)]
    assert spans == sorted(set(spans))


def _working_minute_counter(cal: WorkingCalendar, first: datetime, days: int) -> dict[datetime, int]:
    """Brute force, independent of add/subtract: open minutes before each whole minute of a window."""
    counts: dict[datetime, int] = {}
    total = 0
    for i in range(days * 24 * 60 + 1):
        moment = first + i * MINUTE
        counts[moment] = total
        total += cal.is_open(moment)
    return counts


def test_add_and_subtract_agree_with_counting_minute_by_minute(cal: WorkingCalendar) -> None:
    """Property-style: for many starts and spans, across weekends, Chakri Day and Songkran."""
    first = bkk(date(2026, 3, 25), 0)
    counted = _working_minute_counter(cal, first, 35)
    april = bkk(date(2026, 4, 1), 0)
    starts = [april + timedelta(minutes=13 * i) for i in range(14 * 24 * 60 // 13)]
    spans = [1, 29, 30, 60, 240, 479, 480, 481, 1500]
    for t, m in itertools.product(starts, spans):
        end = cal.add(t, m)
        assert counted[end] - counted[t] == m, (t, m)
        assert cal.is_open(end - MINUTE), (t, m)  # the earliest such moment
        begin = cal.subtract(t, m)
        assert counted[t] - counted[begin] == m, (t, m)
        assert cal.is_open(begin), (t, m)  # the latest such moment

        # The mirror: back from add(t, m) is where counting started; forward from subtract(t, m) is t,
        # or the last close when t is outside working hours (or exactly at an opening).
        assert cal.subtract(end, m) == cal.add(t, 0), (t, m)
        inside = cal.is_open(t - MINUTE)  # t in (open, close]
        assert cal.add(begin, m) == (t if inside else cal.subtract(t - MINUTE, 0)), (t, m)


@pytest.mark.parametrize("minutes", [-1, float("nan"), float("inf")])
def test_bad_minutes_are_refused(cal: WorkingCalendar, minutes: float) -> None:
    with pytest.raises(ValueError, match="minutes"):
        cal.add(bkk(MON, 9), minutes)
    with pytest.raises(ValueError, match="minutes"):
        cal.subtract(bkk(MON, 9), minutes)


def test_naive_datetimes_are_read_as_utc_like_sqlite_values(cal: WorkingCalendar) -> None:
    assert cal.add(datetime(2026, 2, 2, 2, 0), 60) == bkk(MON, 10)  # stored 02:00 UTC = 09:00 Bangkok
    assert cal.is_open(datetime(2026, 2, 2, 2, 0))


def test_working_hours_are_checked() -> None:
    with pytest.raises(ValueError, match="after open"):
        WorkingHours(WEEKDAYS, time(16, 30), time(8, 30))
    with pytest.raises(ValueError, match="days"):
        WorkingHours(frozenset(), time(8, 30), time(16, 30))
    with pytest.raises(ValueError, match="days"):
        WorkingHours(frozenset({7}), time(8, 30), time(16, 30))
