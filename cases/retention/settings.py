"""The retention settings file (HOTLINE_RETENTION_FILE): days to keep each kind of data, checked at start."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cases.settings_files import SettingsFileError, load_yaml
from infra.extensions import Shared

# Days, in the file's order; `audit` must be the longest.
PERIODS = ("caller_numbers", "recordings", "call_events", "notifications", "audit", "drafts")
SETTINGS = (*PERIODS, "batch", "sweep_at")
SWEEP_AT = time(2, 30)  # the default: deep in the Bangkok night, few calls and no staff at work
MAX_DAYS = 100 * 365  # catches a typo (an extra zero), not policy


class RetentionSettingsError(SettingsFileError):
    """The retention file is wrong; the message names the file and the field."""


@dataclass(frozen=True)
class RetentionSettings:
    """Days each kind of personal data is kept after its anchor (see cases/data/retention.yaml)."""

    caller_numbers: int
    recordings: int
    call_events: int
    notifications: int
    audit: int
    drafts: int
    batch: int = 200
    sweep_at: time = SWEEP_AT  # the local time (HOTLINE_TIMEZONE) the worker starts the nightly sweep

    def days(self, kind: str) -> int:
        value: int = getattr(self, kind)
        return value

    def next_sweep(self, now: datetime, zone: ZoneInfo) -> datetime:
        """When the worker next starts the sweep after `now` (aware, in `zone`): today's or tomorrow's."""
        local = now.astimezone(zone)
        day = local.date()
        at = datetime.combine(day, self.sweep_at, tzinfo=zone)
        if at <= local:
            at = datetime.combine(day + timedelta(days=1), self.sweep_at, tzinfo=zone)
        return at


# The settings the app loaded at start (HOTLINE_RETENTION_FILE): the worker, the commands, the privacy page.
retention_settings: Shared[RetentionSettings] = Shared("hotline.retention")


def load_retention_settings(path: Path) -> RetentionSettings:
    """Read and check the file; any wrong value is a RetentionSettingsError naming the file and field."""
    data = load_yaml(path, RetentionSettingsError)
    if not isinstance(data, Mapping):
        raise RetentionSettingsError(path, None, f"must hold a mapping of settings ({', '.join(SETTINGS)})")
    unknown = sorted(str(key) for key in data if key not in SETTINGS)
    if unknown:
        raise RetentionSettingsError(path, unknown[0], f"is not a setting ({', '.join(SETTINGS)})")
    values = {name: _whole(path, name, data.get(name, ...), 1, MAX_DAYS, "days") for name in PERIODS}
    longest = max(values[name] for name in PERIODS if name != "audit")
    if values["audit"] < longest:
        raise RetentionSettingsError(
            path, "audit", f"{values['audit']} days is shorter than another period ({longest} days)"
        )
    batch = _whole(path, "batch", data.get("batch", 200), 1, 10_000, "rows")
    return RetentionSettings(**values, batch=batch, sweep_at=_time_of_day(path, data.get("sweep_at", ...)))


def _time_of_day(path: Path, value: Any) -> time:
    """`sweep_at`: HH:MM, 24-hour (the loader keeps an unquoted 02:30 as text, not YAML 1.1's 150)."""
    if value is ...:
        return SWEEP_AT
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", value) if isinstance(value, str) else None
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise RetentionSettingsError(path, "sweep_at", f"must be a time of day HH:MM (24 h), not {value!r}")
    return time(int(match[1]), int(match[2]))


def _whole(path: Path, name: str, value: Any, low: int, high: int, unit: str) -> int:
    if value is ...:
        raise RetentionSettingsError(path, name, f"is missing (a whole number of {unit})")
    if isinstance(value, bool) or not isinstance(value, int):
        raise RetentionSettingsError(path, name, f"must be a whole number of {unit}, not {value!r}")
    if not low <= value <= high:
        raise RetentionSettingsError(path, name, f"must be between {low} and {high} {unit}, not {value}")
    return value
