"""Thai dates carry the Buddhist Era year and Bangkok wall time; English dates stay Gregorian."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cases.thai_dates import format_age, format_datetime

BANGKOK = ZoneInfo("Asia/Bangkok")


def test_thai_date_has_the_buddhist_era_year_and_bangkok_time() -> None:
    assert format_datetime(datetime(2026, 11, 26, 6, 34, tzinfo=UTC), BANGKOK, "th") == "26 พ.ย. 2569 13:34"


def test_english_date_is_gregorian() -> None:
    assert format_datetime(datetime(2026, 11, 26, 6, 34, tzinfo=UTC), BANGKOK, "en") == "26 Nov 2026 13:34"


def test_the_local_day_and_year_roll_over_in_bangkok() -> None:
    # 31 Dec 2026 20:00 UTC is already 1 Jan 2027 03:00 in Bangkok: BE 2570.
    value = datetime(2026, 12, 31, 20, 0, tzinfo=UTC)
    assert format_datetime(value, BANGKOK, "th") == "1 ม.ค. 2570 03:00"
    assert format_datetime(value, BANGKOK, "th", time=False) == "1 ม.ค. 2570"


def test_naive_values_from_sqlite_are_read_as_utc() -> None:
    assert format_datetime(datetime(2026, 1, 5, 17, 0), BANGKOK, "en") == "6 Jan 2026 00:00"


def test_every_thai_month() -> None:
    months = [
        format_datetime(datetime(2026, m, 15, 5, tzinfo=UTC), BANGKOK, "th").split()[1] for m in range(1, 13)
    ]
    assert months == [
        "ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.", "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.", "พ.ย.", "ธ.ค.",
    ]  # fmt: skip


def test_ages() -> None:
    assert format_age(timedelta(days=3, hours=4, minutes=5), "th") == "3 วัน 4 ชม."
    assert format_age(timedelta(hours=2, minutes=5), "en") == "2 h 5 min"
    assert format_age(timedelta(minutes=25), "th") == "25 นาที"
    assert format_age(timedelta(seconds=-5), "en") == "0 min"
