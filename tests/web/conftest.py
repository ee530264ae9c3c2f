"""A real console server (werkzeug, in a thread) over a seeded SQLite database, and a headless Chromium."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, Playwright, ViewportSize, sync_playwright
from werkzeug.serving import make_server

from app import get_database
from infra.config import Config
from infra.crypto import FieldCipher
from tests.conftest import make_config
from tests.support.ports import free_port
from tests.support.seed import seed_console

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Issue 14's two screens: every role's walk runs on a wide screen and on a phone.
SIZES: dict[str, ViewportSize] = {
    "wide": {"width": 1366, "height": 900},
    "phone": {"width": 390, "height": 844},
}


@dataclass
class World:
    """Ids of what seed_console made, and the server's address."""

    base: str
    password: str
    cases: dict[str, int]
    users: dict[str, int]
    recordings: dict[str, int]
    committee: int
    member_names: dict[str, str]


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def config(tmp_path: Path, port: int) -> Config:
    # Plain http on the loopback: the session cookie is then "hotline" without the Secure flag.
    return make_config(tmp_path, env={"PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"})


@pytest.fixture
def world(app: Flask, config: Config, port: int) -> Iterator[World]:
    with get_database(app).session() as session:
        s = seed_console(
            session,
            cipher=FieldCipher(config.data_key),
            recordings_dir=config.recordings_dir,
            recording_key=config.recording_key,
        )
        seeded = World(
            base=f"http://127.0.0.1:{port}",
            password=s.password,
            cases={k: c.id for k, c in s.cases.items()},
            users={k: u.id for k, u in s.users.items()},
            recordings={k: r.id for k, r in s.recordings.items()},
            committee=s.committees["cm50"].id,
            member_names={k: u.display_name for k, u in s.users.items()},
        )
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="console-server", daemon=True)
    thread.start()
    try:
        yield seeded
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    assert Path(CHROMIUM).is_file() or shutil.which("chromium"), "Debian's chromium is not installed"
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()
