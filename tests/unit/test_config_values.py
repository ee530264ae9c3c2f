"""What the configuration accepts and refuses, value by value (the processes: test_config_errors)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from infra.config import Config, ConfigError


def config(tmp_path: Path, **env: str) -> Config:
    return Config.from_env(environ={"HOTLINE_INSTANCE_DIR": str(tmp_path / "instance"), **env})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HOTLINE_VOICE_TH", "Google.th-TH-Neural2-C"),
        ("HOTLINE_VOICE_TH", "Polly.Some_Voice-Neural"),
        ("HOTLINE_VOICE_EN", "alice"),
        ("HOTLINE_VOICE_EN", "Polly.Joanna-Neural"),
        ("HOTLINE_SMTP_HOST", "mail.example.org"),
        ("HOTLINE_SMTP_HOST", "10.0.0.25"),
        ("HOTLINE_SMTP_HOST", "[2001:db8::25]"),
        ("HOTLINE_SMTP_HOST", "localhost"),
        ("HOTLINE_MAIL_FROM", "ศูนย์ความปลอดภัย <safety@moe.go.th>"),
        ("HOTLINE_ENV", "development"),
        ("HOTLINE_ENV", ""),
        ("TWILIO_ACCOUNT_SID", "AC" + "0123456789abcdef" * 2),
    ],
)
def test_real_values_are_accepted(tmp_path: Path, name: str, value: str) -> None:
    config(tmp_path, **{name: value})


def test_smtp_user_and_password_with_their_host_are_accepted(tmp_path: Path) -> None:
    cfg = config(
        tmp_path, HOTLINE_SMTP_HOST="mail.example.org", HOTLINE_SMTP_USER="u", HOTLINE_SMTP_PASSWORD="p"
    )
    assert (cfg.smtp_host, cfg.smtp_user, cfg.smtp_password) == ("mail.example.org", "u", "p")


@pytest.mark.parametrize("secret", ["TWILIO_AUTH_TOKEN", "HOTLINE_SECRET_KEY", "HOTLINE_SMTP_PASSWORD"])
def test_a_control_character_is_refused_without_showing_the_value(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config(tmp_path, HOTLINE_SMTP_HOST="h", HOTLINE_SMTP_USER="u", **{secret: "s3cr3t-value\r"})
    assert secret in str(refused.value)
    assert "s3cr3t" not in str(refused.value)


def test_the_data_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^HOTLINE_DATA_KEY is not a Fernet key") as refused:
        config(tmp_path, HOTLINE_DATA_KEY="k" * 40)
    assert "kkkk" not in str(refused.value)


def test_a_file_where_the_instance_dir_goes_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "instance").write_text("")
    with pytest.raises(ConfigError, match=r"^HOTLINE_INSTANCE_DIR=.* is a file, not a folder"):
        config(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instance"]


def test_generated_secrets_left_readable_are_made_private(tmp_path: Path) -> None:
    first = config(tmp_path)
    path = tmp_path / "instance" / "local-secrets.json"
    os.chmod(path, 0o644)
    again = config(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert again.data_key == first.data_key == json.loads(path.read_text())["data_key"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[]", "must hold a JSON object of secrets, not a list"),
        (b'"secret"', "must hold a JSON object of secrets, not a str"),
        (b"\xff\xfe{}", "is not readable JSON"),
        (b"{", "is not readable JSON"),
        (b'{"secret_key": ""}', "secret_key must be a non-empty line of text"),
        (b'{"secret_key": null}', "secret_key must be a non-empty line of text"),
    ],
)
def test_a_broken_secrets_file_names_the_file_and_field(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "local-secrets.json").write_bytes(content)
    with pytest.raises(ConfigError, match=r"local-secrets\.json:? " + message):
        config(tmp_path)
