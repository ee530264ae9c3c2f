"""Dates for people: Thai with the Buddhist Era year, or English (Gregorian), in the service's time zone."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from infra.clock import as_utc

BUDDHIST_ERA_OFFSET = 543
THAI_MONTHS = (
    "ม.ค.",
    "ก.พ.",
    "มี.ค.",
    "เม.ย.",
    "พ.ค.",
    "มิ.ย.",
    "ก.ค.",
    "ส.ค.",
    "ก.ย.",
    "ต.ค.",
    "พ.ย.",
    "ธ.ค.",
)
ENGLISH_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_datetime(value: datetime, tz: ZoneInfo, locale: str, *, time: bool = True) -> str:
    """'26 พ.ย. 2569 13:34' in Thai, '26 Nov 2026 13:34' in English; the wall time of `tz`."""
    local = as_utc(value).astimezone(tz)
    if locale == "th":
        text = f"{local.day} {THAI_MONTHS[local.month - 1]} {local.year + BUDDHIST_ERA_OFFSET}"
    else:
        text = f"{local.day} {ENGLISH_MONTHS[local.month - 1]} {local.year}"
    return f"{text} {local:%H:%M}" if time else text


def format_age(delta: timedelta, locale: str) -> str:
    """How long ago, coarsely: '3 วัน 4 ชม.' / '3 d 4 h', '25 นาที' / '25 min'."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    th = locale == "th"
    if days:
        return f"{days} วัน {hours} ชม." if th else f"{days} d {hours} h"
    if hours:
        return f"{hours} ชม. {mins} นาที" if th else f"{hours} h {mins} min"
    return f"{mins} นาที" if th else f"{mins} min"
