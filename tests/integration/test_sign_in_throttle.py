"""The sign-in throttle behind a trusted proxy: by account and real client address, in the database."""

# The console tests' fixtures are imported and used as the test arguments of the same names.
# ruff: noqa: F811

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app import get_database
from cases.accounts import set_password
from cases.staff import SignInFailure, User
from infra.config import Config
from tests.conftest import make_config
from tests.integration.test_console import (  # noqa: F401
    FakeClock,
    World,
    audits,
    clock,
    login,
    text,
    world,
)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """The app behind one proxy at 127.0.0.1 (the test client's address), as the README deploys it."""
    return make_config(tmp_path, env={"HOTLINE_TRUSTED_PROXIES": "127.0.0.1"})


def from_address(app: Flask, address: str) -> FlaskClient:
    """A browser whose requests the proxy forwards as coming from `address`."""
    client = app.test_client()
    client.environ_base["HTTP_X_FORWARDED_FOR"] = address
    return client


def signs_in(client: FlaskClient, username: str, password: str) -> bool:
    answer = login(client, username, password)
    return answer.status_code == 302 and client.get("/console/").status_code == 200


def locked_until(app: Flask, user_id: int) -> object:
    with get_database(app).session() as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.locked_until


def test_twenty_failures_from_one_address_lock_no_other_account(app: Flask, world: World) -> None:
    attacker = from_address(app, "198.51.100.66")
    for name in ["op50"] * 5 + ["head50"] * 6 + [f"guess{i}" for i in range(9)]:
        assert login(attacker, name, "wrong password").status_code == 200
    # The attacking address is now refused, even with a right password...
    assert login(attacker, "op50b", world.password).status_code == 429
    # ...and nobody else is: the accounts it guessed at sign in from their owners' addresses.
    for name in ("op50", "head50", "op50b"):
        assert signs_in(from_address(app, "203.0.113.10"), name, world.password), name
    assert locked_until(app, world.users["op50"]) is None
    assert [a.detail for a in audits(app, "login_locked")] == [{"minutes": 15, "scope": "address"}] * 2


def test_a_forwarded_address_from_an_untrusted_peer_counts_as_the_peer(app: Flask, world: World) -> None:
    """A client talking to the app directly cannot spread its failures over addresses it names."""
    for i in range(20):
        client = app.test_client()
        client.environ_base.update(REMOTE_ADDR="192.0.2.50", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
        login(client, f"guess{i}", "x")
    blocked = app.test_client()
    blocked.environ_base.update(REMOTE_ADDR="192.0.2.50", HTTP_X_FORWARDED_FOR="198.51.100.200")
    assert login(blocked, "op50", world.password).status_code == 429


def test_failures_from_several_addresses_lock_the_account_everywhere(
    app: Flask, world: World, clock: FakeClock
) -> None:
    for address, tries in (("198.51.100.1", 4), ("198.51.100.2", 3), ("198.51.100.3", 3)):
        client = from_address(app, address)
        for _ in range(tries):
            login(client, "head50", "wrong password")
    assert locked_until(app, world.users["head50"]) == clock.now + timedelta(minutes=15)
    assert {"minutes": 15, "scope": "account"} in [a.detail for a in audits(app, "login_locked")]
    assert not signs_in(from_address(app, "203.0.113.10"), "head50", world.password)
    clock.advance(minutes=16)
    assert signs_in(from_address(app, "203.0.113.10"), "head50", world.password)


def test_old_failures_are_pruned_and_a_new_password_forgets_them(
    app: Flask, world: World, clock: FakeClock
) -> None:
    client = from_address(app, "198.51.100.7")
    for _ in range(5):
        login(client, "op50", "wrong password")
    assert "login-error" in text(login(client, "op50", world.password))
    with get_database(app).session() as session:
        user = session.get(User, world.users["op50"])
        assert user is not None
        set_password(session, user, "a brand new password")
        session.commit()
    assert signs_in(client, "op50", "a brand new password")
    login(from_address(app, "198.51.100.8"), "op50b", "wrong password")
    clock.advance(minutes=16)
    login(from_address(app, "198.51.100.9"), "op50b", "wrong password")
    with get_database(app).session() as session:
        assert session.scalar(select(func.count(SignInFailure.id))) == 1
        assert session.scalars(select(SignInFailure.address)).all() == ["198.51.100.9"]
