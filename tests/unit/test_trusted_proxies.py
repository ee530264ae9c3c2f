"""HOTLINE_TRUSTED_PROXIES: read as a count or as addresses, and the client address each one yields."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest
from flask import Flask, request

from console.proxies import TrustedProxies, trust_proxies
from infra.config import ConfigError, ProxyNetwork
from tests.conftest import make_config


def setting(tmp_path: Path, value: str) -> int | tuple[ProxyNetwork, ...]:
    return make_config(tmp_path, env={"HOTLINE_TRUSTED_PROXIES": value}).trusted_proxies


def test_the_setting_is_a_count_or_addresses_and_networks(tmp_path: Path) -> None:
    assert make_config(tmp_path).trusted_proxies == 0
    assert setting(tmp_path, "") == 0
    assert setting(tmp_path, "2") == 2
    assert setting(tmp_path, "127.0.0.1, 10.0.0.0/8 ,::1") == (
        ip_network("127.0.0.1/32"),
        ip_network("10.0.0.0/8"),
        ip_network("::1/128"),
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("6", "HOTLINE_TRUSTED_PROXIES='6' must be between 0 and 5"),
        ("-1", "HOTLINE_TRUSTED_PROXIES='-1': '-1' is not a count of proxies, an IP address or a network"),
        ("proxy.example.org", "'proxy.example.org' is not a count of proxies, an IP address or a network"),
        ("10.0.0.1/8", "'10.0.0.1/8' is not a count"),  # host bits set: a typo for 10.0.0.0/8 or /32?
        ("10.0.0.1,,10.0.0.2", "'' is not a count"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        setting(tmp_path, value)
    assert message in str(caught.value) and "HOTLINE_TRUSTED_PROXIES" in str(caught.value)


def seen(app: Flask, peer: str, forwarded: str | None, proto: str | None = None) -> tuple[str, str]:
    """(remote_addr, scheme) the app sees for a request from `peer` with these forwarded headers."""
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    if proto:
        headers["X-Forwarded-Proto"] = proto
    answer = app.test_client().get("/who", headers=headers, environ_base={"REMOTE_ADDR": peer})
    addr, scheme = answer.get_data(as_text=True).split("|")
    return addr, scheme


def who_app(trusted: int | tuple[ProxyNetwork, ...]) -> Flask:
    app = Flask(__name__)

    @app.get("/who")
    def who() -> str:
        return f"{request.remote_addr}|{request.scheme}"

    trust_proxies(app, trusted)
    return app


def test_untrusted_the_forwarded_headers_are_ignored() -> None:
    app = who_app(0)
    assert seen(app, "203.0.113.9", "198.51.100.1", "https") == ("203.0.113.9", "http")


def test_a_count_trusts_that_many_proxies_through_proxyfix() -> None:
    app = who_app(1)
    # The proxy appends the address it saw: a client's own X-Forwarded-For entry to the left is ignored.
    assert seen(app, "127.0.0.1", "6.6.6.6, 198.51.100.1", "https") == ("198.51.100.1", "https")
    assert seen(app, "127.0.0.1", None) == ("127.0.0.1", "http")


def test_addresses_trust_the_headers_only_from_those_proxies() -> None:
    nets = (ip_network("127.0.0.1/32"), ip_network("10.0.0.0/8"))
    app = who_app(nets)
    assert seen(app, "127.0.0.1", "198.51.100.1", "https") == ("198.51.100.1", "https")
    # A client reaching the app directly cannot name its own address.
    assert seen(app, "203.0.113.9", "198.51.100.1", "https") == ("203.0.113.9", "http")
    # Two trusted proxies in a row are skipped; a forged entry left of the real client is not read.
    assert seen(app, "127.0.0.1", "6.6.6.6, 198.51.100.1, 10.1.2.3")[0] == "198.51.100.1"
    # Junk appended by a proxy stops the walk at the last address a trusted proxy vouched for.
    assert seen(app, "127.0.0.1", "198.51.100.1, not-an-address")[0] == "127.0.0.1"
    assert seen(app, "127.0.0.1", "10.1.2.3")[0] == "10.1.2.3"  # only proxies named: the leftmost


def test_the_client_walk_reads_from_the_right() -> None:
    proxies = TrustedProxies(who_app(0).wsgi_app, [ip_network("10.0.0.0/8")])
    assert proxies.client("10.0.0.1", "") == "10.0.0.1"
    assert proxies.client("10.0.0.1", "2001:db8::1, 10.0.0.2") == "2001:db8::1"
    assert not proxies.trusted("not-an-address") and proxies.trusted("10.200.0.1")
