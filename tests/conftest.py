"""Shared fixtures: a configured app on a fresh database, a client, and signed Twilio requests."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import make_url
from twilio.request_validator import RequestValidator
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.test import TestResponse

from app import create_app, get_database, upgrade_database
from cases.offices import load_offices
from infra.config import Config
from infra.db import Database

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
ACCOUNT_SID = "AC" + "1" * 32
PUBLIC_BASE = "https://hotline.example.org"


_created_databases: set[str] = set()
# Database URLs that are fresh copies of this run's template: migrated to head and holding the offices.
_template_copies: set[str] = set()


def on_postgresql() -> bool:
    return os.environ.get("HOTLINE_TEST_DATABASE") == "postgresql"


def database_url(tmp_path: Path) -> str:
    """SQLite in the test's folder; with HOTLINE_TEST_DATABASE=postgresql, a fresh database per test.

    `./hotline test` starts a private PostgreSQL and sets HOTLINE_TEST_PG_ADMIN_URL for the second run.
    """
    if not on_postgresql():
        return f"sqlite:///{tmp_path / 'hotline.db'}"
    admin = os.environ["HOTLINE_TEST_PG_ADMIN_URL"]
    name = "t_" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]
    if name not in _created_databases:
        template = _pg_template(admin)
        with _pg_admin(admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        _created_databases.add(name)
        _template_copies.add(admin.rsplit("/", 1)[0] + "/" + name)
    return admin.rsplit("/", 1)[0] + "/" + name


def _pg_template(admin: str) -> str:
    """A database migrated once per run, with the offices, copied for each test: that is the slow part."""
    name = f"t_template_{os.getpid()}"
    if name not in _created_databases:
        with _pg_admin(admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        _created_databases.add(name)
        url = admin.rsplit("/", 1)[0] + "/" + name
        upgrade_database(url)
        db = Database(url)
        with db.session() as session:
            load_offices(session)
        db.dispose()
    return name


def _pg_admin(url: str) -> Any:
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    yield
    for template in _sqlite_template:
        shutil.rmtree(template.parent, ignore_errors=True)
    if _created_databases:
        with _pg_admin(os.environ["HOTLINE_TEST_PG_ADMIN_URL"]) as conn:
            for name in sorted(_created_databases):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


_sqlite_template: list[Path] = []


def _migrated_with_offices() -> Path:
    """A SQLite file migrated and holding the offices, made once per run: copying it is the fast part.

    Migrating and loading 1,006 offices took 0.4-0.5 s a test, on every test that builds the app.
    """
    if not _sqlite_template:
        folder = Path(tempfile.mkdtemp(prefix="hotline-template-"))
        path = folder / "template.db"
        upgrade_database(f"sqlite:///{path}")
        db = Database(f"sqlite:///{path}")
        with db.session() as session:
            load_offices(session)
        db.dispose()
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file
        _sqlite_template.append(path)
    return _sqlite_template[0]


@pytest.fixture
def app(config: Config) -> Iterator[Flask]:
    if config.is_sqlite:
        target = Path(str(make_url(config.database_url).database))
        if not target.exists():
            shutil.copyfile(_migrated_with_offices(), target)
            _template_copies.add(config.database_url)
    # A copy of the template is at head with the offices; anything else is migrated and loaded here.
    fresh_copy = config.database_url in _template_copies
    if not fresh_copy:
        upgrade_database(config.database_url)
    app = create_app(config)
    app.testing = True
    if not fresh_copy:
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


@pytest.fixture(scope="session")
def whisper_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding the shipped Whisper base model, joined once for the run and shared by the xdist
    workers (the join writes under a temporary name and renames, so workers joining at once are safe).
    Tests that change the model work on their own copy."""
    folder = tmp_path_factory.getbasetemp().parent / "whisper-data"
    folder.mkdir(exist_ok=True)
    return folder


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


@pytest.fixture
def served_app(app: Flask) -> Iterator[str]:
    """The app on a real threaded werkzeug server: concurrent requests really are concurrent."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
