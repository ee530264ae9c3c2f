"""Shared fixtures: a configured app on a fresh database, a client, and signed Twilio requests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

from app import create_app, get_database, upgrade_database
from cases.offices import load_offices
from infra.config import Config

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
ACCOUNT_SID = "AC" + "1" * 32
PUBLIC_BASE = "https://hotline.example.org"


def database_url(tmp_path: Path) -> str:
    """SQLite in the test's folder, or a fresh schema on the PostgreSQL named by HOTLINE_TEST_DATABASE_URL."""
    return os.environ.get("HOTLINE_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'hotline.db'}"


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    env = {
        "HOTLINE_INSTANCE_DIR": str(tmp_path / "instance"),
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "PUBLIC_BASE_URL": PUBLIC_BASE,
        "DATABASE_URL": database_url(tmp_path),
        "HOTLINE_TRANSFER_NUMBER": "+6621266565",
    }
    env.update(overrides.pop("env", {}))
    return Config.from_env(environ=env, **overrides)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def app(config: Config) -> Iterator[Flask]:
    upgrade_database(config.database_url)
    app = create_app(config)
    app.testing = True
    with get_database(app).session() as session:
        load_offices(session)
    yield app
    get_database(app).dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def sign(url: str, form: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, form))


@dataclass
class TwilioCaller:
    """Posts webhooks the way Twilio does for one call: standard parameters, signed."""

    client: FlaskClient
    call_sid: str
    from_number: str = "+66812345678"

    def params(self, **extra: str) -> dict[str, str]:
        base = {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": "in-progress",
            "Called": "+6621266565",
            "Caller": self.from_number,
            "Direction": "inbound",
            "From": self.from_number,
            "To": "+6621266565",
            "FromCountry": "TH",
            "ToCountry": "TH",
        }
        base.update(extra)
        return base

    def post(self, url: str, **extra: str) -> TestResponse:
        """POST to an absolute public URL (as found in our TwiML) or a path."""
        full = url if url.startswith("http") else PUBLIC_BASE + url
        parts = urlsplit(full)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        form = self.params(**extra)
        return self.client.post(path, data=form, headers={"X-Twilio-Signature": sign(full, form)})


@pytest.fixture
def new_caller(client: FlaskClient) -> Callable[..., TwilioCaller]:
    def make(from_number: str = "+66812345678") -> TwilioCaller:
        return TwilioCaller(client, "CA" + uuid.uuid4().hex, from_number)

    return make
