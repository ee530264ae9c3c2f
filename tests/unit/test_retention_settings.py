"""The retention file: the shipped defaults load, and every wrong value names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from cases.retention.settings import RetentionSettingsError, load_retention_settings
from infra.config import DEFAULT_RETENTION_FILE, ConfigError

SHIPPED = DEFAULT_RETENTION_FILE.read_text(encoding="utf-8")


def test_the_shipped_defaults_load_and_keep_audit_rows_longest() -> None:
    s = load_retention_settings(DEFAULT_RETENTION_FILE)
    assert (s.caller_numbers, s.recordings, s.call_events, s.notifications, s.drafts) == (30, 90, 180, 90, 60)
    assert s.audit == 1825 and s.batch == 200


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (SHIPPED.replace("audit: 1825", "audit: 30"), "audit", "shorter than another period"),
        (SHIPPED.replace("recordings: 90", "recordings: ninety"), "recordings", "whole number of days"),
        (SHIPPED.replace("drafts: 60", "drafts: 0"), "drafts", "between 1 and"),
        (SHIPPED.replace("call_events: 180\n", ""), "call_events", "is missing"),
        (SHIPPED + "transcripts: 5\n", "transcripts", "is not a setting"),
        (SHIPPED.replace("batch: 200", "batch: true"), "batch", "whole number of rows"),
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
