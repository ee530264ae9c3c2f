"""Two real server processes behind a proxy: one address's failures lock it out, and nobody else."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from cases.accounts import create_user
from cases.staff import SignInFailure, User
from infra.db import Database
from tests.integration.test_end_to_end import _env, gunicorn

pytestmark = pytest.mark.slow
PASSWORD = "the right password"
ATTACKER, OWNER = "198.51.100.66", "203.0.113.10"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Database, Path]]:
    """gunicorn with two processes behind one proxy (HOTLINE_TRUSTED_PROXIES=1: ProxyFix), two accounts."""
    env = _env(tmp_path) | {"HOTLINE_TRUSTED_PROXIES": "1"}
    access = tmp_path / "access.log"
    flags = ("--workers", "2", "--access-logfile", str(access), "--access-logformat", "%(p)s %(U)s %(s)s")
    with gunicorn(tmp_path, env, *flags) as base:
        db = Database(env["DATABASE_URL"])
        try:
            with db.session() as session:
                for name in ("victim", "bystander"):
                    create_user(session, name, name.title(), PASSWORD)
                session.commit()
            yield base, db, access
        finally:
            db.dispose()


def sign_in(base: str, address: str, username: str, password: str) -> int:
    """A browser behind the proxy: the sign-in page, then the form with its CSRF token and cookie.

    The cookie is __Host- and Secure (PUBLIC_BASE_URL is https), which requests would keep to https:
    it is carried by hand, as the TLS proxy would carry it.
    """
    headers = {"X-Forwarded-For": address}
    page = requests.get(f"{base}/console/login", headers=headers, timeout=10)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    cookie = page.headers["Set-Cookie"].split(";", 1)[0]
    assert token is not None
    answer = requests.post(
        f"{base}/console/login",
        data={"username": username, "password": password, "csrf_token": token.group(1)},
        headers=headers | {"Cookie": cookie},
        allow_redirects=False,
        timeout=10,
    )
    if answer.status_code == 302:
        assert answer.headers["Location"] == "/console/"
    return answer.status_code


def test_twenty_failures_from_one_address_lock_no_other_account(
    server: tuple[str, Database, Path],
) -> None:
    base, db, access = server
    names = ["victim"] * 8 + [f"guess{i}" for i in range(12)]
    # Four at a time, so that both processes take some (each handles one request at a time).
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda name: sign_in(base, ATTACKER, name, "wrong password"), names))
    assert answers == [200] * 20
    served = Counter(
        line.split()[0] for line in access.read_text().splitlines() if line.split()[1] == "/console/login"
    )
    assert len(served) == 2, served  # both processes counted failures: neither saw twenty alone
    # The attacking address is refused by both processes now, whoever it names...
    assert [sign_in(base, ATTACKER, name, PASSWORD) for name in ("victim", "bystander") * 2] == [429] * 4
    # ...and the accounts it tried sign in from their owners' addresses.
    assert sign_in(base, OWNER, "victim", PASSWORD) == 302
    assert sign_in(base, "203.0.113.11", "bystander", PASSWORD) == 302
    with db.session() as session:
        victim = session.scalars(select(User).where(User.username == "victim")).one()
        assert victim.locked_until is None
        counted = session.scalar(
            select(func.count(SignInFailure.id)).where(SignInFailure.address == ATTACKER)
        )
        assert counted == 20
