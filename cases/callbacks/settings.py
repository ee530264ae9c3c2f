"""Callback settings: SLAs, working hours, reminder periods and channels, LINE groups, holidays."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import geothai

from cases.callbacks.schedule import WorkingCalendar, WorkingHours
from cases.models import CENTRAL_OFFICE_CODE, Channel, HazardGroup, ReminderKind
from cases.notifications.outbox import ALERT_CHANNELS
from cases.settings_files import SettingsFileError, load_yaml
from infra.config import ConfigError
from infra.extensions import Shared

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A LINE group ID as the Messaging API reports it in a join event.
LINE_GROUP_ID = re.compile(r"C[0-9a-f]{32}")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# Upper bounds catch typos (an extra zero), not policy: a month of round-the-clock minutes.
MAX_MINUTES = 30 * 24 * 60
SETTINGS = (
    "timezone",
    "sla",
    "remind_before",
    "escalate_head_after",
    "escalate_parent_after",
    "max_attempts",
    "retry_after",
    "late_after_seconds",
    "channels",
    "alerts",
    "hours",
    "offices",
)


class CallbackSettingsError(SettingsFileError):
    """A callbacks or holidays file is wrong; the message names the file and the field."""


@dataclass(frozen=True)
class LineTarget:
    group_id: str
    token: str  # resolved from the environment variable the file names (token_env); never in the file

    def __repr__(self) -> str:
        return f"LineTarget(group_id={self.group_id!r}, token=<hidden>)"


@dataclass(frozen=True)
class CallbackSettings:
    """The callback rules of the service, loaded once from the operator's files."""

    timezone: ZoneInfo
    sla_minutes: Mapping[HazardGroup, int]  # working minutes to the due time, per hazard group
    remind_before_minutes: int  # BEFORE_DUE reminder, working minutes before due
    escalate_head_after_minutes: int  # ESCALATE_HEAD, working minutes after due
    escalate_parent_after_minutes: int  # ESCALATE_PARENT, working minutes after the head escalation
    max_attempts: int  # reporter-side failed attempts before GAVE_UP
    retry_after_minutes: int  # a failed attempt sets the next due time this far on (working)
    late_after_seconds: int  # a reminder sent this long after its due_at is marked late
    channels: Mapping[ReminderKind, tuple[Channel, ...]]
    default_hours: WorkingHours
    office_hours: Mapping[str, WorkingHours]  # by office code ("central", "10", "1001")
    line: Mapping[str, LineTarget]  # by office code
    holidays: frozenset[date]
    # How workflow alerts (routed, proposed, decided, assigned, follow-up) reach people.
    alert_channels: tuple[Channel, ...] = ALERT_CHANNELS
    _calendars: dict[WorkingHours, WorkingCalendar] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def hours_for(self, office_code: str) -> WorkingHours:
        """An office's own hours; a district without them uses its province's, then the default."""
        if office_code in self.office_hours:
            return self.office_hours[office_code]
        if len(office_code) == 4 and office_code.isdigit() and office_code[:2] in self.office_hours:
            return self.office_hours[office_code[:2]]
        return self.default_hours

    def calendar_for(self, office_code: str) -> WorkingCalendar:
        """The working calendar of an office (one shared instance per set of hours)."""
        hours = self.hours_for(office_code)
        calendar = self._calendars.get(hours)
        if calendar is None:
            calendar = WorkingCalendar(hours, self.holidays, self.timezone)
            self._calendars[hours] = calendar
        return calendar

    def callback_due(self, office_code: str, group: HazardGroup, opened_at: datetime) -> datetime:
        """When a callback for a case of `group` opened at `opened_at` is due (aware UTC)."""
        return self.calendar_for(office_code).add(opened_at, self.sla_minutes[group])


# The settings the app loaded at start, for the console's views and the worker.
callback_settings: Shared[CallbackSettings] = Shared("hotline.callbacks")


def load_callback_settings(
    callbacks_file: Path,
    holidays_file: Path,
    timezone_name: str,
    environ: Mapping[str, str] | None = None,
) -> CallbackSettings:
    """Read and check both files; any wrong value is a ConfigError naming the file and the field.

    `timezone_name` (the service's HOTLINE_TIMEZONE) applies unless the callbacks file sets its own
    `timezone`. LINE tokens are read from `environ` (default os.environ).
    """
    env = os.environ if environ is None else environ
    holidays = _parse_holidays(holidays_file, load_yaml(holidays_file, CallbackSettingsError))
    r = _Reader(callbacks_file, load_yaml(callbacks_file, CallbackSettingsError))
    if not isinstance(r.data, Mapping):
        raise r.fail(None, "must hold a mapping of settings (sla, hours, channels, …)")
    unknown = sorted(str(key) for key in r.data if key not in SETTINGS)
    if unknown:
        raise r.fail(unknown[0], f"is not a setting ({', '.join(SETTINGS)})")

    tz = _timezone(r, timezone_name)
    sla_minutes = _sla_minutes(r)
    channels = _channels(r)
    default_hours = r.hours("hours", r.get("hours"))
    office_hours, line = _offices(r, env)
    return CallbackSettings(
        timezone=tz,
        sla_minutes=sla_minutes,
        remind_before_minutes=r.minutes("remind_before", r.get("remind_before")),
        escalate_head_after_minutes=r.minutes("escalate_head_after", r.get("escalate_head_after")),
        escalate_parent_after_minutes=r.minutes("escalate_parent_after", r.get("escalate_parent_after")),
        max_attempts=r.whole("max_attempts", r.get("max_attempts"), 1, 20, "attempts"),
        retry_after_minutes=r.minutes("retry_after", r.get("retry_after")),
        late_after_seconds=r.whole("late_after_seconds", r.get("late_after_seconds"), 1, 86400, "seconds"),
        channels=channels,
        default_hours=default_hours,
        office_hours=office_hours,
        line=line,
        holidays=holidays,
        alert_channels=r.channels("alerts", r.get("alerts", list(ALERT_CHANNELS))),
    )


def _timezone(r: _Reader, timezone_name: str) -> ZoneInfo:
    tz_name = r.get("timezone", timezone_name)
    try:
        return ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        if "timezone" in r.data:
            raise r.fail("timezone", f"{tz_name!r} is not an IANA time zone") from exc
        raise ConfigError(f"HOTLINE_TIMEZONE={tz_name!r} is not an IANA time zone") from exc


def _sla_minutes(r: _Reader) -> dict[HazardGroup, int]:
    sla = r.mapping("sla")
    for key in sla:
        if key not in HazardGroup.__members__.values():
            raise r.fail(f"sla.{key}", f"is not a hazard group ({', '.join(HazardGroup)})")
    return {g: r.minutes(f"sla.{g.value}", sla.get(g.value, ...)) for g in HazardGroup}


def _channels(r: _Reader) -> dict[ReminderKind, tuple[Channel, ...]]:
    channels_raw = r.mapping("channels")
    for key in channels_raw:
        if key not in ReminderKind.__members__.values():
            raise r.fail(f"channels.{key}", f"is not a reminder kind ({', '.join(ReminderKind)})")
    return {k: r.channels(f"channels.{k.value}", channels_raw.get(k.value, ...)) for k in ReminderKind}


def _offices(r: _Reader, env: Mapping[str, str]) -> tuple[dict[str, WorkingHours], dict[str, LineTarget]]:
    """Per office: its own working hours and its LINE group, by office code."""
    office_hours: dict[str, WorkingHours] = {}
    line: dict[str, LineTarget] = {}
    offices = r.get("offices", None)
    if offices is None:
        offices = {}
    if not isinstance(offices, Mapping):
        raise r.fail("offices", "must map office codes to their hours and line settings")
    seen: set[str] = set()
    for raw_code, office in offices.items():
        code = r.office_code(raw_code)
        where = f"offices.{code}"
        if code in seen:
            raise r.fail(where, "is listed twice")
        seen.add(code)
        if not isinstance(office, Mapping):
            raise r.fail(where, "must be a mapping with hours and/or line")
        for key in office:
            if key not in ("hours", "line"):
                raise r.fail(f"{where}.{key}", "is not an office setting (hours, line)")
        if "hours" in office:
            office_hours[code] = r.hours(f"{where}.hours", office["hours"])
        if "line" in office:
            line[code] = r.line(f"{where}.line", office["line"], env)
    return office_hours, line


def _parse_holidays(path: Path, data: Any) -> frozenset[date]:
    if not isinstance(data, list):
        raise CallbackSettingsError(path, None, "must hold a list of {date, name_th, name_en}")
    seen: dict[date, int] = {}
    for index, entry in enumerate(data):
        where = f"[{index}]"
        if not isinstance(entry, Mapping):
            raise CallbackSettingsError(path, where, "must be a mapping with date, name_th, name_en")
        for key in entry:
            if key not in ("date", "name_th", "name_en"):
                raise CallbackSettingsError(path, f"{where}.{key}", "is not a holiday field")
        for key in ("date", "name_th", "name_en"):
            value = entry.get(key)
            if not isinstance(value, str) or not value.strip():
                raise CallbackSettingsError(path, f"{where}.{key}", "is required (text)")
        raw = entry["date"]
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
                raise ValueError(raw)
            day = date.fromisoformat(raw)
        except ValueError:
            raise CallbackSettingsError(
                path, f"{where}.date", f"{raw!r} is not a date (YYYY-MM-DD)"
            ) from None
        if day in seen:
            raise CallbackSettingsError(
                path, f"{where}.date", f"{day} is listed twice (also at [{seen[day]}])"
            )
        seen[day] = index
    return frozenset(seen)


class _Reader:
    """Reads the callbacks file, turning every wrong or missing value into a CallbackSettingsError."""

    def __init__(self, path: Path, data: Any) -> None:
        self.path, self.data = path, data

    def fail(self, field_name: str | None, problem: str) -> CallbackSettingsError:
        return CallbackSettingsError(self.path, field_name, problem)

    def get(self, key: str, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is required")
            return default
        return self.data[key]

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self.get(key)
        if not isinstance(value, Mapping):
            raise self.fail(key, "must be a mapping")
        return value

    def whole(self, name: str, value: Any, low: int, high: int, unit: str) -> int:
        if value is ...:
            raise self.fail(name, "is required")
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(name, f"must be a whole number of {unit} from {low} to {high}, got {value!r}")
        return value

    def minutes(self, name: str, value: Any) -> int:
        if value is ...:
            raise self.fail(name, "is required")
        if isinstance(value, float) and value > 0:
            raise self.fail(name, f"must be a whole number of minutes, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(name, f"must be a positive number of minutes, got {value!r}")
        if value > MAX_MINUTES:
            raise self.fail(name, f"must be at most {MAX_MINUTES} minutes, got {value!r}")
        return value

    def channels(self, name: str, value: Any) -> tuple[Channel, ...]:
        if value is ...:
            raise self.fail(name, "is required")
        known = ", ".join(Channel)
        if not isinstance(value, list) or not value:
            raise self.fail(name, f"must be a non-empty list of channels ({known})")
        out: list[Channel] = []
        for item in value:
            if item not in Channel.__members__.values():
                raise self.fail(name, f"{item!r} is not a channel ({known})")
            if Channel(item) in out:
                raise self.fail(name, f"{item!r} is listed twice")
            out.append(Channel(item))
        return tuple(out)

    def hours(self, name: str, value: Any) -> WorkingHours:
        if not isinstance(value, Mapping):
            raise self.fail(name, "must be a mapping with days, open, close")
        for key in value:
            if key not in ("days", "open", "close"):
                raise self.fail(f"{name}.{key}", "is not an hours field (days, open, close)")
        days = value.get("days", ...)
        if days is ...:
            raise self.fail(f"{name}.days", "is required")
        if not isinstance(days, list) or not days:
            raise self.fail(f"{name}.days", f"must be a non-empty list of {', '.join(DAY_NAMES)}")
        for day in days:
            if day not in DAY_NAMES:
                raise self.fail(f"{name}.days", f"{day!r} is not a day ({', '.join(DAY_NAMES)})")
        if len(set(days)) != len(days):
            raise self.fail(f"{name}.days", "lists a day twice")
        opens, closes = (
            self.clock(f"{name}.open", value.get("open")),
            self.clock(f"{name}.close", value.get("close")),
        )
        if not opens < closes:
            raise self.fail(f"{name}.close", f"must be after open ({opens:%H:%M}), got {closes:%H:%M}")
        return WorkingHours(frozenset(DAY_NAMES.index(d) for d in days), opens, closes)

    def clock(self, name: str, value: Any) -> time:
        if value is None:
            raise self.fail(name, "is required (HH:MM)")
        match = re.fullmatch(r"(\d{1,2}):(\d{2})", value) if isinstance(value, str) else None
        if match is None or int(match[1]) > 23 or int(match[2]) > 59:
            raise self.fail(name, f"must be a time of day HH:MM, got {value!r}")
        return time(int(match[1]), int(match[2]))

    def office_code(self, raw: Any) -> str:
        code = str(raw)  # an unquoted 10 reads as a number; province codes never start with 0
        if code == CENTRAL_OFFICE_CODE:
            return code
        if isinstance(raw, int | str) and not isinstance(raw, bool):
            if re.fullmatch(r"\d{2}", code) and geothai.province(code) is not None:
                return code
            if re.fullmatch(r"\d{4}", code) and geothai.district(code) is not None:
                return code
        raise self.fail(
            f"offices.{code}",
            f"is not an office code ({CENTRAL_OFFICE_CODE!r}, a province's 2 digits or a district's 4)",
        )

    def line(self, name: str, value: Any, env: Mapping[str, str]) -> LineTarget:
        if not isinstance(value, Mapping):
            raise self.fail(name, "must be a mapping with group_id and token_env")
        for key in value:
            if key not in ("group_id", "token_env"):
                raise self.fail(f"{name}.{key}", "is not a line field (group_id, token_env)")
        group_id = value.get("group_id")
        if not isinstance(group_id, str) or not LINE_GROUP_ID.fullmatch(group_id):
            raise self.fail(
                f"{name}.group_id", f"must be a LINE group ID (C + 32 hex digits), got {group_id!r}"
            )
        token_env = value.get("token_env")
        if not isinstance(token_env, str) or not ENV_NAME.fullmatch(token_env):
            raise self.fail(
                f"{name}.token_env",
                f"must name an environment variable (A-Z, 0-9, _), got {token_env!r}",
            )
        token = env.get(token_env, "")
        if not token:
            raise self.fail(f"{name}.token_env", f"the environment variable {token_env} is not set")
        return LineTarget(group_id=group_id, token=token)
