"""The retention file: the shipped defaults load, and every wrong value names the file and the field."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cases.retention.settings import RetentionSettingsError, load_retention_settings
from infra.config import DEFAULT_RETENTION_FILE, ConfigError

SHIPPED = DEFAULT_RETENTION_FILE.read_text(encoding="utf-8")


def test_the_shipped_defaults_load_and_keep_audit_rows_longest() -> None:
    s = load_retention_settings(DEFAULT_RETENTION_FILE)
    assert (s.caller_numbers, s.recordings, s.call_events, s.notifications, s.drafts) == (30, 90, 180, 90, 60)
    assert s.audit == 1825 and s.batch == 200
    assert s.sweep_at == time(2, 30)


@pytest.mark.parametrize("text", ["sweep_at: 03:05", 'sweep_at: "3:05"'])
def test_sweep_at_is_a_local_time_of_day_also_unquoted(tmp_path: Path, text: str) -> None:
    path = tmp_path / "retention.yaml"
    path.write_text(SHIPPED.replace('sweep_at: "02:30"', text), encoding="utf-8")
    assert load_retention_settings(path).sweep_at == time(3, 5)  # not YAML 1.1's sexagesimal 185


def test_the_next_sweep_is_tonight_s_or_tomorrow_night_s_in_local_time() -> None:
    s = load_retention_settings(DEFAULT_RETENTION_FILE)
    bangkok = ZoneInfo("Asia/Bangkok")
    # 19:29 UTC on the 3rd is 02:29 on the 4th in Bangkok: a minute before the sweep.
    assert s.next_sweep(datetime(2026, 12, 3, 19, 29, tzinfo=UTC), bangkok) == datetime(
        2026, 12, 4, 2, 30, tzinfo=bangkok
    )
    # At 02:30 itself and after, the next one is the following night.
    for minute in (30, 31):
        assert s.next_sweep(datetime(2026, 12, 3, 19, minute, tzinfo=UTC), bangkok) == datetime(
            2026, 12, 5, 2, 30, tzinfo=bangkok
        )


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (SHIPPED.replace("audit: 1825", "audit: 30"), "audit", "shorter than another period"),
        (SHIPPED.replace("recordings: 90", "recordings: ninety"), "recordings", "whole number of days"),
        (SHIPPED.replace("drafts: 60", "drafts: 0"), "drafts", "between 1 and"),
        (SHIPPED.replace("call_events: 180\n", ""), "call_events", "is missing"),
        (SHIPPED + "transcripts: 5\n", "transcripts", "is not a setting"),
        (SHIPPED.replace("batch: 200", "batch: true"), "batch", "whole number of rows"),
        (SHIPPED.replace('sweep_at: "02:30"', 'sweep_at: "24:00"'), "sweep_at", "time of day HH:MM"),
        (SHIPPED.replace('sweep_at: "02:30"', "sweep_at: 2"), "sweep_at", "time of day HH:MM"),
        (SHIPPED.replace('sweep_at: "02:30"', 'sweep_at: "2.30"'), "sweep_at", "time of day HH:MM"),
    ],
)
def test_a_wrong_value_names_the_file_and_the_field(
    tmp_path: Path, text: str, field: str, words: str
) -> None:
    path = tmp_path / "retention.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_retention_settings(path)
    assert isinstance(raised.value, RetentionSettingsError)
    assert str(raised.value).startswith(f"{path}: {field}: "), str(raised.value)
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_a_file_that_is_not_yaml_or_not_a_mapping(tmp_path: Path) -> None:
    for text, words in (("audit: [1", "is not valid YAML"), ("- 1\n", "must hold a mapping")):
        path = tmp_path / "retention.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(RetentionSettingsError, match=words):
            load_retention_settings(path)
