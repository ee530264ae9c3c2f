"""Callback settings files: the shipped ones load, and every mistake names its file and field."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from cases.callbacks.settings import CallbackSettings, CallbackSettingsError, load_callback_settings
from cases.models import Channel, HazardGroup, ReminderKind
from infra.config import DEFAULT_CALLBACKS_FILE, DEFAULT_HOLIDAYS_FILE, ConfigError

BANGKOK = ZoneInfo("Asia/Bangkok")
GROUP_ID = "C" + "0123456789abcdef" * 2
Mutation = Callable[[Any], object]


def shipped_callbacks() -> dict[str, Any]:
    data = yaml.safe_load(DEFAULT_CALLBACKS_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def shipped_holidays() -> list[dict[str, str]]:
    data = yaml.safe_load(DEFAULT_HOLIDAYS_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, list)
    return [{**entry, "date": str(entry["date"])} for entry in data]


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def load(
    tmp_path: Path,
    callbacks: object | None = None,
    holidays: object | None = None,
    environ: Mapping[str, str] | None = None,
) -> CallbackSettings:
    cb = DEFAULT_CALLBACKS_FILE if callbacks is None else write(tmp_path / "callbacks.yaml", callbacks)
    hd = DEFAULT_HOLIDAYS_FILE if holidays is None else write(tmp_path / "holidays-th.yaml", holidays)
    return load_callback_settings(cb, hd, "Asia/Bangkok", environ={} if environ is None else environ)


def with_office(code: str, office: dict[str, Any]) -> dict[str, Any]:
    data = shipped_callbacks()
    data["offices"] = {code: office}
    return data


def bkk(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), BANGKOK).astimezone(UTC)


# ---- the shipped files ----


def test_the_shipped_settings_load_with_the_documented_values() -> None:
    s = load_callback_settings(DEFAULT_CALLBACKS_FILE, DEFAULT_HOLIDAYS_FILE, "Asia/Bangkok", environ={})
    assert s.timezone == BANGKOK
    assert dict(s.sla_minutes) == {
        HazardGroup.VIOLENCE: 60,
        HazardGroup.ACCIDENT: 240,
        HazardGroup.RIGHTS_VIOLATION: 240,
        HazardGroup.HEALTH_HARM: 240,
        HazardGroup.UNSPECIFIED: 240,
    }
    assert (s.remind_before_minutes, s.escalate_head_after_minutes, s.escalate_parent_after_minutes) == (
        30,
        30,
        120,
    )
    assert (s.max_attempts, s.retry_after_minutes, s.late_after_seconds) == (3, 60, 60)
    assert s.channels[ReminderKind.BEFORE_DUE] == (Channel.CONSOLE, Channel.EMAIL)
    assert s.channels[ReminderKind.AT_DUE] == (Channel.CONSOLE, Channel.EMAIL, Channel.LINE)
    every = (Channel.CONSOLE, Channel.EMAIL, Channel.SMS, Channel.LINE)
    assert s.channels[ReminderKind.ESCALATE_HEAD] == s.channels[ReminderKind.ESCALATE_PARENT] == every
    assert s.default_hours.days == frozenset(range(5))
    assert (s.default_hours.open, s.default_hours.close) == (time(8, 30), time(16, 30))
    assert dict(s.office_hours) == {} and dict(s.line) == {}


def test_the_shipped_hours_match_the_ivr_transfer_hours() -> None:
    flow = yaml.safe_load(
        (DEFAULT_CALLBACKS_FILE.parents[2] / "ivr_flows" / "hotline.yaml").read_text("utf-8")
    )
    (transfer,) = [n for n in flow["nodes"] if n["type"] == "transfer"]
    hours = shipped_callbacks()["hours"]
    assert {k: transfer["hours"][k] for k in ("days", "open", "close")} == hours


def test_the_shipped_holidays_cover_2026_and_2027() -> None:
    s = load_callback_settings(DEFAULT_CALLBACKS_FILE, DEFAULT_HOLIDAYS_FILE, "Asia/Bangkok", environ={})
    for year in (2026, 2027):
        for month, day in [(1, 1), (4, 6), (4, 13), (4, 14), (4, 15), (5, 4), (6, 3), (7, 28), (8, 12)]:
            assert date(year, month, day) in s.holidays, (year, month, day)
        for month, day in [(10, 13), (10, 23), (12, 5), (12, 10), (12, 31)]:
            assert date(year, month, day) in s.holidays, (year, month, day)
    # Lunar holidays (Makha, Visakha, Asanha Bucha, Khao Phansa) and substitution days.
    lunar_and_substitutes = [
        "2026-03-03",
        "2026-05-31",
        "2026-06-01",
        "2026-07-29",
        "2026-07-30",
        "2026-12-07",
        "2027-02-21",
        "2027-02-22",
        "2027-05-20",
        "2027-07-18",
        "2027-07-19",
        "2027-07-20",
        "2027-10-25",
        "2027-12-06",
    ]
    assert {date.fromisoformat(d) for d in lunar_and_substitutes} <= s.holidays
    entries = shipped_holidays()
    assert all(e["name_th"].strip() and e["name_en"].strip() for e in entries)
    assert len(entries) == len(s.holidays)


def test_every_shipped_weekend_holiday_has_a_substitution_day() -> None:
    entries = shipped_holidays()
    by_date = {date.fromisoformat(e["date"]): e for e in entries}
    for day, entry in by_date.items():
        if day.weekday() >= 5:
            substitutes = [
                e for e in entries if e["name_en"].startswith("Substitution") and e["date"] > str(day)
            ]
            assert substitutes, entry
            first = date.fromisoformat(min(e["date"] for e in substitutes))
            assert (first - day) <= timedelta(days=3), entry


def test_a_due_time_over_songkran_with_the_shipped_files() -> None:
    s = load_callback_settings(DEFAULT_CALLBACKS_FILE, DEFAULT_HOLIDAYS_FILE, "Asia/Bangkok", environ={})
    friday, thursday = date(2026, 4, 10), date(2026, 4, 16)
    assert s.callback_due("central", HazardGroup.VIOLENCE, bkk(friday, 16)) == bkk(thursday, 9)
    assert s.callback_due("central", HazardGroup.ACCIDENT, bkk(friday, 16)) == bkk(thursday, 12)
    assert s.callback_due("1001", HazardGroup.VIOLENCE, bkk(friday, 10)) == bkk(friday, 11)


# ---- offices ----


def test_offices_have_their_own_hours_and_districts_fall_back_to_their_province(tmp_path: Path) -> None:
    data = shipped_callbacks()
    data["offices"] = {
        "10": {
            "hours": {"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "open": "08:00", "close": "17:00"}
        },
        "1002": {"hours": {"days": ["mon"], "open": "09:00", "close": "12:00"}},
        "central": {
            "hours": {"days": ["mon", "tue", "wed", "thu", "fri"], "open": "07:00", "close": "19:00"}
        },
    }
    s = load(tmp_path, data)
    bangkok = s.calendar_for("10")
    assert s.calendar_for("1001") is bangkok  # Phra Nakhon district: Bangkok's hours
    assert s.calendar_for("1002").hours.days == frozenset({0})  # its own
    assert s.calendar_for("central").hours.open == time(7, 0)
    assert s.calendar_for("50") is s.calendar_for("5001") is s.calendar_for("unknown")  # the default
    assert s.calendar_for("50").hours == s.default_hours
    saturday = date(2026, 2, 7)
    assert bangkok.is_open(bkk(saturday, 10))
    assert not s.calendar_for("50").is_open(bkk(saturday, 10))
    # Friday 16:00, violence (60): Bangkok still has an hour that day; the default office does not.
    friday = date(2026, 2, 6)
    assert s.callback_due("1001", HazardGroup.VIOLENCE, bkk(friday, 16)) == bkk(friday, 17)
    assert s.callback_due("5001", HazardGroup.VIOLENCE, bkk(friday, 16)) == bkk(date(2026, 2, 9), 9)
    # All offices share the holidays.
    assert s.calendar_for("10").holidays is s.holidays


def test_an_office_line_group_takes_its_token_from_the_environment(tmp_path: Path) -> None:
    data = with_office("10", {"line": {"group_id": GROUP_ID, "token_env": "LINE_TOKEN_BANGKOK"}})
    s = load(tmp_path, data, environ={"LINE_TOKEN_BANGKOK": "secret-token"})
    assert s.line["10"].group_id == GROUP_ID
    assert s.line["10"].token == "secret-token"
    assert "secret-token" not in repr(s)
    assert "10" not in s.office_hours


def test_an_unset_line_token_variable_names_the_file_office_and_variable(tmp_path: Path) -> None:
    data = with_office("10", {"line": {"group_id": GROUP_ID, "token_env": "LINE_TOKEN_BANGKOK"}})
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, data, environ={"LINE_TOKEN_OTHER": "x"})
    message = str(caught.value)
    assert "callbacks.yaml" in message and "offices.10" in message and "LINE_TOKEN_BANGKOK" in message
    with pytest.raises(ConfigError, match="LINE_TOKEN_BANGKOK is not set"):
        load(tmp_path, data, environ={"LINE_TOKEN_BANGKOK": ""})


def test_os_environ_is_the_default_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINE_TOKEN_TEST_OFFICE", "from-os-environ")
    data = with_office("10", {"line": {"group_id": GROUP_ID, "token_env": "LINE_TOKEN_TEST_OFFICE"}})
    path = write(tmp_path / "callbacks.yaml", data)
    s = load_callback_settings(path, DEFAULT_HOLIDAYS_FILE, "Asia/Bangkok")
    assert s.line["10"].token == "from-os-environ"


def test_unquoted_times_codes_and_dates_read_as_meant(tmp_path: Path) -> None:
    """YAML 1.1 reads 16:30 as the number 990 and 10 as a number; the loader does not."""
    cb = tmp_path / "callbacks.yaml"
    text = DEFAULT_CALLBACKS_FILE.read_text(encoding="utf-8").replace('"16:30"', "16:30")
    cb.write_text(
        text.replace("offices: {}", "offices:\n  10: {hours: {days: [mon], open: 9:00, close: 17:45}}")
    )
    hd = tmp_path / "holidays.yaml"
    hd.write_text("- {date: 2026-01-01, name_th: วันขึ้นปีใหม่, name_en: New Year's Day}\n", encoding="utf-8")
    s = load_callback_settings(cb, hd, "Asia/Bangkok", environ={})
    assert s.default_hours.close == time(16, 30)
    assert s.office_hours["10"].open == time(9, 0) and s.office_hours["10"].close == time(17, 45)
    assert s.holidays == frozenset({date(2026, 1, 1)})


def test_the_time_zone_comes_from_the_service_unless_the_file_sets_one(tmp_path: Path) -> None:
    path = write(tmp_path / "callbacks.yaml", shipped_callbacks())
    assert load_callback_settings(path, DEFAULT_HOLIDAYS_FILE, "Asia/Tokyo").timezone == ZoneInfo(
        "Asia/Tokyo"
    )
    data = shipped_callbacks()
    data["timezone"] = "Asia/Bangkok"
    path = write(tmp_path / "callbacks.yaml", data)
    s = load_callback_settings(path, DEFAULT_HOLIDAYS_FILE, "Asia/Tokyo")
    assert s.timezone == BANGKOK
    assert s.calendar_for("central").tz == BANGKOK
    with pytest.raises(ConfigError, match="HOTLINE_TIMEZONE='Mars/Base' is not an IANA time zone"):
        load_callback_settings(DEFAULT_CALLBACKS_FILE, DEFAULT_HOLIDAYS_FILE, "Mars/Base")


# ---- every mistake in callbacks.yaml ----


def _set(path: str, value: Any) -> Mutation:
    def mutate(data: Any) -> None:
        *parents, last = path.split("/")
        for key in parents:
            data = data[key]
        data[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(data: Any) -> None:
        *parents, last = path.split("/")
        for key in parents:
            data = data[key]
        del data[last]

    return mutate


LINE_10 = {"group_id": GROUP_ID, "token_env": "LINE_TOKEN_BANGKOK"}
HOURS = {"days": ["mon", "tue"], "open": "08:30", "close": "16:30"}

CALLBACK_MISTAKES: list[tuple[str, Mutation, str | None, str]] = [
    (
        "negative sla",
        _set("sla/violence", -5),
        "sla.violence",
        "must be a positive number of minutes, got -5",
    ),
    ("zero sla", _set("sla/accident", 0), "sla.accident", "must be a positive number of minutes, got 0"),
    ("text sla", _set("sla/violence", "1h"), "sla.violence", "must be a positive number of minutes"),
    (
        "fractional sla",
        _set("sla/violence", 1.5),
        "sla.violence",
        "must be a whole number of minutes, got 1.5",
    ),
    ("huge sla", _set("sla/violence", 10**9), "sla.violence", "must be at most 43200 minutes"),
    ("unknown group", _set("sla/violense", 60), "sla.violense", "is not a hazard group (violence, accident,"),
    ("missing group", _delete("sla/health_harm"), "sla.health_harm", "is required"),
    ("sla not a mapping", _set("sla", [60]), "sla", "must be a mapping"),
    ("missing sla", _delete("sla"), "sla", "is required"),
    ("negative remind", _set("remind_before", -1), "remind_before", "must be a positive number of minutes"),
    ("missing remind", _delete("remind_before"), "remind_before", "is required"),
    ("zero escalate", _set("escalate_head_after", 0), "escalate_head_after", "must be a positive number"),
    ("bool escalate", _set("escalate_parent_after", True), "escalate_parent_after", "must be a positive"),
    ("zero retry", _set("retry_after", 0), "retry_after", "must be a positive number of minutes"),
    (
        "no attempts",
        _set("max_attempts", 0),
        "max_attempts",
        "must be a whole number of attempts from 1 to 20",
    ),
    (
        "late zero",
        _set("late_after_seconds", 0),
        "late_after_seconds",
        "must be a whole number of seconds from 1 to 86400, got 0",
    ),
    (
        "unknown channel",
        _set("channels/at_due", ["console", "fax"]),
        "channels.at_due",
        "'fax' is not a channel",
    ),
    ("no channels", _set("channels/at_due", []), "channels.at_due", "must be a non-empty list of channels"),
    ("channel twice", _set("channels/at_due", ["sms", "sms"]), "channels.at_due", "'sms' is listed twice"),
    ("unknown kind", _set("channels/soon", ["console"]), "channels.soon", "is not a reminder kind"),
    ("missing kind", _delete("channels/escalate_parent"), "channels.escalate_parent", "is required"),
    (
        "close before open",
        _set("hours/close", "08:00"),
        "hours.close",
        "must be after open (08:30), got 08:00",
    ),
    ("close at open", _set("hours/close", "08:30"), "hours.close", "must be after open"),
    ("bad weekday", _set("hours/days", ["mon", "funday"]), "hours.days", "'funday' is not a day (mon, tue,"),
    ("day twice", _set("hours/days", ["mon", "mon"]), "hours.days", "lists a day twice"),
    ("no days", _set("hours/days", []), "hours.days", "must be a non-empty list"),
    ("missing days", _delete("hours/days"), "hours.days", "is required"),
    ("bad time", _set("hours/open", "8.30"), "hours.open", "must be a time of day HH:MM, got '8.30'"),
    ("hour 25", _set("hours/open", "25:00"), "hours.open", "must be a time of day HH:MM"),
    ("missing close", _delete("hours/close"), "hours.close", "is required (HH:MM)"),
    ("lunch field", _set("hours/lunch", "12:00"), "hours.lunch", "is not an hours field (days, open, close)"),
    ("missing hours", _delete("hours"), "hours", "is required"),
    ("hours text", _set("hours", "08:30-16:30"), "hours", "must be a mapping with days, open, close"),
    ("unknown setting", _set("remind_befor", 30), "remind_befor", "is not a setting (timezone, sla,"),
    (
        "bad timezone",
        _set("timezone", "Asia/Bangkokk"),
        "timezone",
        "'Asia/Bangkokk' is not an IANA time zone",
    ),
    ("offices a list", _set("offices", ["10"]), "offices", "must map office codes"),
    ("unknown province", _set("offices", {"99": {"hours": HOURS}}), "offices.99", "is not an office code"),
    (
        "unknown district",
        _set("offices", {"1099": {"hours": HOURS}}),
        "offices.1099",
        "is not an office code",
    ),
    (
        "not a code",
        _set("offices", {"bangkok": {"hours": HOURS}}),
        "offices.bangkok",
        "is not an office code",
    ),
    ("office twice", _set("offices", {"10": {}, 10: {}}), "offices.10", "is listed twice"),
    ("office text", _set("offices", {"10": "08:00-17:00"}), "offices.10", "must be a mapping with hours"),
    ("office field", _set("offices", {"10": {"lunch": 1}}), "offices.10.lunch", "is not an office setting"),
    (
        "office hours",
        _set("offices", {"1001": {"hours": {**HOURS, "close": "07:00"}}}),
        "offices.1001.hours.close",
        "must be after open",
    ),
    (
        "line group id",
        _set("offices", {"10": {"line": {**LINE_10, "group_id": "U123"}}}),
        "offices.10.line.group_id",
        "must be a LINE group ID (C + 32 hex digits), got 'U123'",
    ),
    (
        "token in the file",
        _set("offices", {"10": {"line": {**LINE_10, "token": "abc"}}}),
        "offices.10.line.token",
        "is not a line field (group_id, token_env)",
    ),
    (
        "token env name",
        _set("offices", {"10": {"line": {**LINE_10, "token_env": "line token"}}}),
        "offices.10.line.token_env",
        "must name an environment variable",
    ),
    (
        "token env unset",
        _set("offices", {"10": {"line": {**LINE_10, "token_env": "LINE_TOKEN_UNSET"}}}),
        "offices.10.line.token_env",
        "the environment variable LINE_TOKEN_UNSET is not set",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "field", "problem"),
    [pytest.param(m, f, p, id=name) for name, m, f, p in CALLBACK_MISTAKES],
)
def test_every_mistake_in_the_callbacks_file_is_named(
    tmp_path: Path, mutate: Mutation, field: str | None, problem: str
) -> None:
    data = copy.deepcopy(shipped_callbacks())
    mutate(data)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, data, environ={"LINE_TOKEN_BANGKOK": "t"})
    err = caught.value
    assert isinstance(err, CallbackSettingsError)
    path = str(tmp_path / "callbacks.yaml")
    assert (err.path, err.field) == (path, field)
    assert str(err).startswith(f"{path}: {field}: {problem}"), str(err)


def test_the_example_message_from_the_issue(tmp_path: Path) -> None:
    data = shipped_callbacks()
    data["sla"]["violence"] = -1
    with pytest.raises(
        ConfigError, match=r"callbacks\.yaml: sla\.violence: must be a positive number of minutes"
    ):
        load(tmp_path, data)


# ---- every mistake in holidays-th.yaml ----

NEW_YEAR = {"date": "2026-01-01", "name_th": "วันขึ้นปีใหม่", "name_en": "New Year's Day"}

HOLIDAY_MISTAKES: list[tuple[str, object, str | None, str]] = [
    ("bad day", [{**NEW_YEAR, "date": "2026-02-30"}], "[0].date", "'2026-02-30' is not a date (YYYY-MM-DD)"),
    ("slashes", [{**NEW_YEAR, "date": "2026/01/01"}], "[0].date", "'2026/01/01' is not a date"),
    ("short", [{**NEW_YEAR, "date": "2026-1-1"}], "[0].date", "'2026-1-1' is not a date"),
    (
        "with a time",
        [{**NEW_YEAR, "date": "2026-01-01 09:00"}],
        "[0].date",
        "'2026-01-01 09:00' is not a date",
    ),
    (
        "twice",
        [NEW_YEAR, {**NEW_YEAR, "name_en": "again"}],
        "[1].date",
        "2026-01-01 is listed twice (also at [0])",
    ),
    ("no thai name", [{"date": "2026-01-01", "name_en": "x"}], "[0].name_th", "is required (text)"),
    ("empty english", [{**NEW_YEAR, "name_en": " "}], "[0].name_en", "is required (text)"),
    ("missing date", [{"name_th": "x", "name_en": "x"}], "[0].date", "is required (text)"),
    ("extra field", [{**NEW_YEAR, "observed": True}], "[0].observed", "is not a holiday field"),
    ("entry text", ["2026-01-01"], "[0]", "must be a mapping with date, name_th, name_en"),
    ("mapping", {"holidays": [NEW_YEAR]}, None, "must hold a list of {date, name_th, name_en}"),
]


@pytest.mark.parametrize(
    ("holidays", "field", "problem"),
    [pytest.param(h, f, p, id=name) for name, h, f, p in HOLIDAY_MISTAKES],
)
def test_every_mistake_in_the_holidays_file_is_named(
    tmp_path: Path, holidays: object, field: str | None, problem: str
) -> None:
    with pytest.raises(CallbackSettingsError) as caught:
        load(tmp_path, holidays=holidays)
    path = str(tmp_path / "holidays-th.yaml")
    where = f"{path}: {field}" if field else path
    assert (caught.value.path, caught.value.field) == (path, field)
    assert str(caught.value).startswith(f"{where}: {problem}"), str(caught.value)


def test_an_empty_holidays_list_is_allowed(tmp_path: Path) -> None:
    assert load(tmp_path, holidays=[]).holidays == frozenset()


# ---- unreadable files ----


@pytest.mark.parametrize("which", ["callbacks", "holidays"])
def test_a_missing_file_is_named(tmp_path: Path, which: str) -> None:
    missing = tmp_path / "nowhere.yaml"
    files = {"callbacks": DEFAULT_CALLBACKS_FILE, "holidays": DEFAULT_HOLIDAYS_FILE, which: missing}
    with pytest.raises(ConfigError, match=rf"^{missing}: cannot be read: .*No such file"):
        load_callback_settings(files["callbacks"], files["holidays"], "Asia/Bangkok", environ={})


@pytest.mark.parametrize("which", ["callbacks", "holidays"])
def test_bad_yaml_is_named_with_its_line(tmp_path: Path, which: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sla:\n  violence: [60\nhours: {\n", encoding="utf-8")
    files = {"callbacks": DEFAULT_CALLBACKS_FILE, "holidays": DEFAULT_HOLIDAYS_FILE, which: bad}
    with pytest.raises(ConfigError, match=rf"^{bad}: is not valid YAML: (?s:.*)line 3"):
        load_callback_settings(files["callbacks"], files["holidays"], "Asia/Bangkok", environ={})


def test_a_settings_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "callbacks.yaml"
    path.write_text("- sla\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}: must hold a mapping of settings"):
        load_callback_settings(path, DEFAULT_HOLIDAYS_FILE, "Asia/Bangkok", environ={})
